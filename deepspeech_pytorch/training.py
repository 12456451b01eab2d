"""The training loop: plain PyTorch, CTC loss, checkpoints every epoch, exact resume.

No Lightning: the original project's users were broken repeatedly by its API drift.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from omegaconf import MISSING, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from deepspeech_pytorch.audio import AudioError, load_audio
from deepspeech_pytorch.augment import build_augmenters
from deepspeech_pytorch.checkpoint import (CheckpointError, build_model, check_output_folder, load_checkpoint,
                                           model_state, restore_rng_state, rng_state, save_checkpoint)
from deepspeech_pytorch.configs import DEFAULT_MODEL, AugmentConfig, FeatureConfig, TrainConfig
from deepspeech_pytorch.datasets import (Batch, BucketingBatchSampler, LoadFailure, ManifestError, SpeechDataset,
                                         collate, filter_by_duration, read_manifest, too_short_reason)
from deepspeech_pytorch.distributed import all_reduce_sum, any_process, barrier, init_distributed, shutdown
from deepspeech_pytorch.evaluation import evaluate, make_loader
from deepspeech_pytorch.inference import LoadedModel, Transcriber
from deepspeech_pytorch.metrics import ErrorCounts
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.features import measure_statistics, normalization_of
from deepspeech_pytorch.objectives import backward_step, build_objective, forward_loss
from deepspeech_pytorch.models import AcousticModelConfig, count_parameters, model_config, preset
from deepspeech_pytorch import models

logger = logging.getLogger(__name__)

LAST = "last.pt"
STATISTICS_UTTERANCES = 500  # training utterances the global feature statistics are measured on
BEST = "best.pt"
SKIPPED_LIST = "skipped_utterances.jsonl"  # in the checkpoint folder
NAMED_SKIPS = 20  # skipped utterances of each kind named one by one in the log
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def with_measured_statistics(features: FeatureConfig, entries: Sequence[Any], count: int,
                             seed: int) -> Tuple[FeatureConfig, int]:
    """`features` with per-bin mean/std (for global and running normalisation) measured on a seeded random choice
    of up to `count` manifest entries; returns it and how many entries were measured."""
    chosen = random.Random(seed).sample(list(entries), min(count, len(entries)))
    waveforms = (torch.from_numpy(load_audio(entry.audio_path, features.sample_rate)) for entry in chosen)
    mean, std = measure_statistics(waveforms, features)
    return dataclasses.replace(features, mean=mean.tolist(), std=std.tolist()), len(chosen)


@dataclass
class TrainResult:
    epochs_completed: int
    steps: int
    best_wer: Optional[float]
    last_wer: Optional[float]
    last_cer: Optional[float]
    checkpoint_dir: str
    losses: List[float] = field(default_factory=list)  # per optimiser step in this run
    skipped_losses: int = 0
    skipped_gradients: int = 0
    # utterances left out of training, audio path -> why (one line); also in <checkpoint_dir>/skipped_utterances.jsonl
    skipped_too_short: Dict[str, str] = field(default_factory=dict)  # fewer output frames than the transcript needs
    skipped_unreadable: Dict[str, str] = field(default_factory=dict)  # with data.skip_unreadable


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_config_for(config: TrainConfig) -> AcousticModelConfig:
    """The model a training config asks for: its `model` section (a preset's settings, as Hydra's `model=`
    group composes them, or a whole section from a YAML config), a preset's name, or the default preset."""
    model = None if OmegaConf.is_config(config) and OmegaConf.is_missing(config, "model") else config.model
    if model is None or model == MISSING:
        return preset(DEFAULT_MODEL)
    if isinstance(model, str):
        return preset(model)
    return model_config(model)


def alphabet_for(config: TrainConfig) -> Alphabet:
    if config.data.labels_path:
        try:
            return Alphabet.from_json(config.data.labels_path, oov_policy=config.data.oov_policy)
        except ValueError as error:
            raise ValueError(f"data.labels_path: {error}") from None
    return Alphabet(labels=tuple(config.data.labels), oov_policy=config.data.oov_policy)


def _as_dataclass(cls, value):
    """A config section as its dataclass (nested sections too), whether it came as a dataclass,
    an OmegaConf node or a plain dict."""
    if isinstance(value, cls):
        return value
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), value))


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    optim = config.optim
    if optim.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=optim.learning_rate, betas=tuple(optim.betas),
                                 weight_decay=optim.weight_decay)
    if optim.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=optim.learning_rate, momentum=optim.momentum,
                               nesterov=True, weight_decay=optim.weight_decay)
    raise ValueError(f"unknown optimizer {optim.optimizer!r}; choose adamw or sgd")


class EpochSchedule(torch.optim.lr_scheduler.LRScheduler):
    """Learning rate = the configured rate x factor ** epoch: `anneal` (factor < 1) or `constant` (factor 1).

    A function of the epoch alone, so a resumed run rebuilds it from its config: more epochs, another
    batch size or a new learning rate need no saved position. The trainer calls `set_epoch` as each
    epoch starts; `step()` (once per optimiser step) keeps the rate.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factor: float):
        self.factor, self.epoch = factor, 0
        super().__init__(optimizer)

    def get_lr(self) -> List[float]:
        return [base * self.factor ** self.epoch for base in self.base_lrs]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """Per-step schedule. OneCycle spans all epochs (its length is fixed when built); anneal multiplies
    the LR by its factor once per epoch; constant keeps it."""
    optim = config.optim
    if optim.schedule == "onecycle":
        total = max(1, config.epochs * steps_per_epoch)
        warmup = optim.warmup_fraction
        if warmup * total - 1 <= 0:  # PyTorch's OneCycleLR divides by (warm-up steps - 1): at least 2 of them
            warmup = min(0.9, 2.0 / total) if total >= 3 else 0.75
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=optim.learning_rate, total_steps=total,
                                                   pct_start=warmup, anneal_strategy="cos")
    if optim.schedule == "anneal":
        return EpochSchedule(optimizer, optim.anneal_factor)
    if optim.schedule == "constant":
        return EpochSchedule(optimizer, 1.0)
    raise ValueError(f"unknown schedule {optim.schedule!r}; choose onecycle, anneal or constant")


def _fresh_start_hint(path: str) -> str:
    return (f"to train on from its weights with the new settings, start a new run: checkpoint.finetune_from={path} "
            f"checkpoint.directory=<a new folder>")


class Trainer:
    """Holds the model, data and optimiser state of one training run; `fit()` runs it."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.dist, self.device = init_distributed(config.device)
        if not self.dist.is_main:
            logging.getLogger("deepspeech_pytorch").setLevel(logging.WARNING)
        if config.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {config.precision!r}; choose from {sorted(PRECISIONS)}")
        seed_everything(config.seed)
        self.features = _as_dataclass(FeatureConfig, config.features)
        self.model_config = model_config_for(config)
        self.alphabet = alphabet_for(config)
        self.model = models.build_model(self.model_config, self.features.num_features, len(self.alphabet)).to(self.device)
        data = config.data
        self.skip_unreadable = bool(getattr(data, "skip_unreadable", False))
        self.directory = config.checkpoint.directory
        if self.dist.is_main:
            check_output_folder(self.directory, "checkpoint.directory")
        # Utterances left out, audio path -> why; kept in checkpoints so a resumed run reports them all.
        self.skipped_too_short: Dict[str, str] = {}
        self.skipped_unreadable: Dict[str, str] = {}
        unreadable: Optional[Dict[str, str]] = {} if self.skip_unreadable else None
        train_entries = filter_by_duration(read_manifest(data.train_manifest, unreadable), data.min_duration,
                                           data.max_duration)
        for path, reason in (unreadable or {}).items():  # missing or unreadable when the manifest was read
            self._note_skipped(self.skipped_unreadable, path, reason.split(": ", 1)[-1])
        if not train_entries:
            raise ValueError(f"{data.train_manifest}: no utterances left after the duration filter")
        self.features = self._with_statistics(self.features, train_entries)
        waveform_augment, feature_augment = build_augmenters(  # babble, when on, draws from the training set
            _as_dataclass(AugmentConfig, config.augment), self.features.sample_rate,
            speech_paths=[entry.audio_path for entry in train_entries])
        self.train_set = SpeechDataset(train_entries, self.alphabet, self.features, waveform_augment,
                                       feature_augment, seed=config.seed)
        self._drop_too_short()
        self.sampler = BucketingBatchSampler(self.train_set.durations(), data.batch_size, shuffle=True,
                                             seed=config.seed, sorted_first_epoch=data.sorted_first_epoch,
                                             num_replicas=self.dist.world_size, rank=self.dist.rank)
        self.train_loader = DataLoader(self.train_set, batch_sampler=self.sampler, num_workers=data.num_workers,
                                       collate_fn=collate, pin_memory=self.device.type == "cuda")
        self.val_loader = None
        if data.val_manifest:
            left_out: Optional[Dict[str, str]] = {} if self.skip_unreadable else None
            shard = read_manifest(data.val_manifest, left_out)[self.dist.rank:: self.dist.world_size]
            if left_out and self.dist.is_main:
                logger.warning("validation leaves out %d unreadable audio files of %s, e.g. %s", len(left_out),
                               data.val_manifest, next(iter(left_out.values())))
            self.val_loader = make_loader(SpeechDataset(shard, self.alphabet, self.features), data.batch_size,
                                          data.num_workers)
        self.optimizer = build_optimizer(self.model, config)
        self.steps_per_epoch = len(self.sampler.batches)
        self.scheduler = build_scheduler(self.optimizer, config, self.steps_per_epoch)
        # Utterances CTC cannot align are left out before the loss (train_step), so an infinite loss is a
        # real fault: it is skipped and counted, never turned into a silent zero (zero_infinity).
        self.objective = build_objective(config.objective, blank=0)  # the alphabet's blank is label 0
        self.autocast_dtype = PRECISIONS[config.precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        self.best_wer: Optional[float] = None
        self.skipped_losses = self.skipped_gradients = 0
        self.empty_batches = 0  # batches with no utterance left to train on (this run)
        self.trained_indices = torch.zeros(0, dtype=torch.long)
        self._sample_log = None  # open handle of config.sample_log while fit() runs
        self._restore()
        # Wrapped after restoring, so every process starts from the same (loaded) weights.
        self.network = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None) \
            if self.dist.enabled else self.model
        logger.info("model: %s, %d parameters; %d training utterances, %d batches per epoch",
                    self.model_config, count_parameters(self.model), len(self.train_set), self.steps_per_epoch)

    def _with_statistics(self, features: FeatureConfig, entries) -> FeatureConfig:
        """Global and running normalisation need per-bin feature statistics: those the config gives, else
        the checkpoint's this run resumes or fine-tunes from, else measured on (up to STATISTICS_UTTERANCES
        of) the training utterances, the same on every process. Stored in the checkpoints' feature config."""
        if normalization_of(features) not in ("global", "running") or features.mean is not None:
            return features
        last = os.path.join(self.config.checkpoint.directory, LAST)
        source = last if self.config.checkpoint.resume and os.path.isfile(last) else self.config.checkpoint.finetune_from
        if source:
            stored = load_checkpoint(source).get("feature_config") or {}
            if stored.get("mean") is not None:
                return dataclasses.replace(features, mean=list(stored["mean"]), std=list(stored["std"]))
        features, count = with_measured_statistics(features, entries, STATISTICS_UTTERANCES, self.config.seed)
        logger.info("feature statistics measured on %d training utterances", count)
        return features

    # ---- checkpoints -------------------------------------------------------------------------
    def _restore(self) -> None:
        last = os.path.join(self.directory, LAST)
        if self.config.checkpoint.resume and os.path.isfile(last):
            state = load_checkpoint(last)
            self._check_compatible(state, last)
            saved_config = state.get("config") or {}
            self._check_resumable(saved_config.get("optim") or {}, last)
            self.model.load_state_dict(state["model_state"])
            self.optimizer.load_state_dict(state["optimizer_state"])
            self._optimizer_settings_from_config()
            if self.config.optim.schedule == "onecycle":
                self.scheduler.load_state_dict(state["scheduler_state"])
            # else: an EpochSchedule, rebuilt from the config (fit() sets its epoch)
            if state.get("scaler_state"):
                self.scaler.load_state_dict(state["scaler_state"])
            self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
            repeated = self._check_batch_layout(state, (saved_config.get("data") or {}).get("batch_size"))
            if self.config.optim.schedule == "onecycle":
                self._check_cycle_length(state["scheduler_state"].get("total_steps"), last, repeated)
            self.best_wer = state.get("best_wer")
            self.skipped_losses = state.get("skipped_losses", 0)
            self.skipped_gradients = state.get("skipped_gradients", 0)
            self.skipped_too_short = {**state.get("skipped_too_short", {}), **self.skipped_too_short}
            self.skipped_unreadable = {**state.get("skipped_unreadable", {}), **self.skipped_unreadable}
            restore_rng_state(state.get("rng"))
            logger.info("resumed from %s: epoch %d, batch %d, step %d", last, self.epoch, self.batch_in_epoch, self.step)
        elif self.config.checkpoint.finetune_from:
            path = self.config.checkpoint.finetune_from
            state = load_checkpoint(path)
            self._check_compatible(state, path)
            model, _, _ = build_model(state, path)
            self.model.load_state_dict(model.state_dict())
            logger.info("fine-tuning from the weights in %s", path)

    def _check_resumable(self, saved: Dict[str, Any], path: str) -> None:
        """Refuse, in one line that says how to go on, the optimiser changes a saved state cannot carry."""
        optim = self.config.optim
        if saved.get("optimizer", optim.optimizer) != optim.optimizer:
            raise CheckpointError(f"{path} was trained with optim.optimizer={saved['optimizer']}, its state cannot "
                                  f"continue as {optim.optimizer}; {_fresh_start_hint(path)}")
        schedule = saved.get("schedule", optim.schedule)
        if optim.schedule == "onecycle" and schedule != "onecycle":
            raise CheckpointError(f"{path} was trained with optim.schedule={schedule}; a one-cycle schedule cannot "
                                  f"take over mid-run: keep optim.schedule={schedule}, or {_fresh_start_hint(path)}")
        if optim.schedule == "onecycle" and saved.get("learning_rate", optim.learning_rate) != optim.learning_rate:
            logger.warning("optim.learning_rate=%s is ignored: the resumed one-cycle schedule keeps its peak %s "
                           "(a new peak needs a new run: checkpoint.finetune_from=%s)", optim.learning_rate,
                           saved["learning_rate"], path)

    def _optimizer_settings_from_config(self) -> None:
        """A loaded optimizer state brings back the old hyperparameters; the configured ones apply instead
        (the moment estimates stay). The rate itself is the scheduler's; one-cycle also drives the momentum."""
        optim = self.config.optim
        settings: Dict[str, Any] = {"weight_decay": optim.weight_decay}
        if optim.schedule != "onecycle":
            if optim.optimizer == "adamw":
                settings["betas"] = tuple(optim.betas)
            else:
                settings["momentum"] = optim.momentum
        for group in self.optimizer.param_groups:
            group.update(settings)

    def _check_batch_layout(self, state: Dict[str, Any], saved_batch_size: Optional[int]) -> int:
        """The saved position in an epoch counts batches: with other batches it means nothing, so the
        interrupted epoch restarts from its first batch. Returns how many batches' worth is trained again."""
        changes = []
        saved_world = state.get("world_size", 1)
        if saved_world != self.dist.world_size:
            changes.append(f"{self.dist.world_size} processes instead of {saved_world}")
        batch_size = self.config.data.batch_size
        if saved_batch_size is not None and saved_batch_size != batch_size:
            changes.append(f"data.batch_size={batch_size} instead of {saved_batch_size}")
        saved_batches = state.get("steps_per_epoch")
        if not changes and saved_batches is not None and saved_batches != self.steps_per_epoch:
            changes.append(f"{self.steps_per_epoch} batches per epoch instead of {saved_batches} "
                           "(another training set)")
        repeated = 0
        if changes and self.batch_in_epoch:
            logger.warning("resuming with %s: epoch %d restarts from its first batch", " and ".join(changes),
                           self.epoch + 1)
            repeated, self.batch_in_epoch = self.batch_in_epoch, 0
        return repeated

    def _check_cycle_length(self, total_steps: Optional[int], path: str, repeated: int = 0) -> None:
        """A one-cycle schedule's length is fixed when it starts, and PyTorch refuses to step past it. The
        batches of an epoch restarted after a layout change (`repeated`) may overrun it: those last steps
        keep the schedule's final rate (see train_step). More is refused, in one line saying how to go on."""
        config = self.config
        planned = self.step
        if self.epoch < config.epochs:
            later_epochs = config.epochs - self.epoch - 1
            planned += (self.steps_per_epoch - self.batch_in_epoch) + later_epochs * self.steps_per_epoch
        if config.max_steps is not None:
            planned = min(planned, max(config.max_steps, self.step))
        if total_steps is not None and planned > total_steps + repeated:
            raise CheckpointError(
                f"{path}: its one-cycle learning-rate schedule was planned for {total_steps} steps and cannot stretch "
                f"to the {planned} that epochs={config.epochs} with {self.steps_per_epoch} batches per epoch needs; "
                f"to train more epochs from its weights, start a new schedule: checkpoint.finetune_from={path} "
                f"checkpoint.directory=<a new folder> epochs=<epochs to add> "
                f"(or resume with the old epochs and batch size)")
        if total_steps is not None and planned > total_steps:
            logger.warning("the restarted epoch makes the run %d steps longer than its one-cycle schedule; "
                           "those steps keep its final learning rate", planned - total_steps)

    def _check_compatible(self, state: Dict[str, Any], path: str) -> None:
        if tuple(state["labels"]) != self.alphabet.labels:
            raise CheckpointError(f"{path}: checkpoint alphabet {state['labels']} differs from the configured one")
        if model_config(state["model_config"]) != self.model_config:  # format 1 stored no architecture
            raise CheckpointError(f"{path}: checkpoint model {state['model_config']} differs from the configured "
                                  f"{dataclasses.asdict(self.model_config)}")
        if state.get("feature_config") != dataclasses.asdict(self.features):
            raise CheckpointError(f"{path}: checkpoint features differ from the configured ones")

    def save(self, name: str, wer: Optional[float] = None, cer: Optional[float] = None) -> str:
        """Write a checkpoint (main process only; the others wait so no one races ahead of it)."""
        path = os.path.join(self.directory, name)
        if not self.dist.is_main:
            barrier()
            return path
        save_checkpoint(path, {
            **model_state(self.model, self.model_config, self.features, self.alphabet),
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(),
            "scaler_state": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
            "world_size": self.dist.world_size, "steps_per_epoch": self.steps_per_epoch,
            "best_wer": self.best_wer, "wer": wer, "cer": cer,
            "skipped_losses": self.skipped_losses, "skipped_gradients": self.skipped_gradients,
            "skipped_too_short": dict(self.skipped_too_short), "skipped_unreadable": dict(self.skipped_unreadable),
            "rng": rng_state(),
            "config": OmegaConf.to_container(OmegaConf.structured(self.config), resolve=True),
        })
        self._write_skipped_list()
        barrier()
        return path

    # ---- utterances left out ----------------------------------------------------------------
    @property
    def skipped_list_path(self) -> str:
        return os.path.join(self.directory, SKIPPED_LIST)

    def _write_skipped_list(self) -> None:
        """<checkpoint dir>/skipped_utterances.jsonl: every utterance left out so far, and why."""
        if not (self.skipped_too_short or self.skipped_unreadable):
            return
        os.makedirs(self.directory, exist_ok=True)
        temporary = self.skipped_list_path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            for kind, found in (("too_short", self.skipped_too_short), ("unreadable", self.skipped_unreadable)):
                for path, reason in found.items():
                    handle.write(json.dumps({"audio_filepath": path, "kind": kind, "reason": reason}) + "\n")
        os.replace(temporary, self.skipped_list_path)

    def _note_skipped(self, found: Dict[str, str], path: str, reason: str, log: bool = True) -> None:
        """Record an audio file left out and why; the first few of each kind are named in the log."""
        if path in found:
            return
        if reason.startswith(f"{path}: "):
            reason = reason[len(path) + 2:]
        found[path] = reason
        if log and len(found) <= NAMED_SKIPS:
            logger.warning("skipped %s: %s", path, reason)
        elif log and len(found) == NAMED_SKIPS + 1:
            logger.warning("further skipped utterances are not logged one by one; all are listed in %s",
                           self.skipped_list_path)

    def _drop_too_short(self) -> None:
        """Leave out utterances whose duration gives the model fewer output frames than their transcript
        needs under CTC (or than BatchNorm needs): their loss would be infinite, or training would stop."""
        dataset = self.train_set
        found = dataset.too_short(self.model.output_lengths)
        if not found:
            return
        for index, reason in found.items():
            self._note_skipped(self.skipped_too_short, dataset.entries[index].audio_path, reason, log=self.dist.is_main)
        manifest = self.config.data.train_manifest
        if len(found) == len(dataset):
            first = next(iter(found))
            raise ManifestError(f"{manifest}: no utterance left to train on: all {len(found)} are too short "
                                f"(e.g. {dataset.entries[first].audio_path}: {found[first]})")
        if self.dist.is_main:
            logger.warning("%s: left out %d of %d utterances as too short to train on", manifest, len(found),
                           len(dataset))
        kept = [entry for index, entry in enumerate(dataset.entries) if index not in found]
        self.train_set = SpeechDataset(kept, self.alphabet, self.features, dataset.waveform_augment,
                                       dataset.feature_augment, seed=dataset.seed)

    def _trainable(self, batch: Batch) -> Tuple[Batch, Optional[LoadFailure]]:
        """The batch without the utterances that cannot be trained on: unreadable ones (with
        data.skip_unreadable; otherwise the first is returned as fatal) and ones whose features give fewer
        output frames than their transcript needs (shorter audio than its manifest says, or speed-perturbed)."""
        fatal = None
        for failure in batch.failures:
            if self.skip_unreadable and failure.unreadable:
                self._note_skipped(self.skipped_unreadable, failure.audio_path, failure.message)
            elif fatal is None:
                fatal = failure
        frames = self.model.output_lengths(batch.feature_lengths).tolist()
        keep = []
        for row, (index, count) in enumerate(zip(batch.indices.tolist(), frames)):
            reason = too_short_reason(int(count), self.train_set.ctc_frames[index])
            if reason is None:
                keep.append(row)
            else:
                path = self.train_set.entries[index].audio_path
                self._note_skipped(self.skipped_too_short, path, f"as loaded, {reason}")
        return (batch if len(keep) == len(batch) else batch.select(keep)), fatal

    # ---- the loop ----------------------------------------------------------------------------
    def train_step(self, batch: Batch) -> Optional[float]:
        """One optimiser step; returns the loss, or None when the loss or gradients were not finite or no
        utterance of the batch could be trained on (on any process: all processes skip together).
        An unreadable utterance raises AudioError naming it, unless data.skip_unreadable."""
        batch, fatal = self._trainable(batch)
        stop, empty = (value > 0 for value in all_reduce_sum([float(fatal is not None), float(len(batch) == 0)],
                                                             self.device))
        if stop:
            if fatal is None:
                raise AudioError("training stopped: another process could not read an utterance (see its error)")
            hint = " (data.skip_unreadable=true leaves such files out)" if fatal.unreadable else ""
            raise AudioError(fatal.message + hint)
        if empty:
            self.empty_batches += 1
            return None
        self.trained_indices = batch.indices  # (rows,) dataset indices this step trains on
        if self._sample_log is not None:
            # written before the gradients are exchanged: a process killed after that exchange (its step
            # done, and maybe checkpointed by rank 0) has its samples on record; a step that never finishes
            # is replayed after a restart under the same (rank, step) and its record replaced
            self._log_samples(self._sample_log, batch.indices)
        batch = batch.to(self.device)
        # BatchNorm statistics are updated in the forward pass; keep a copy (a few KB) so a
        # skipped step leaves no trace of a NaN in them.
        buffers = [(buffer, buffer.detach().clone()) for buffer in self.model.buffers()]
        loss = forward_loss(self.network, self.objective, batch.features, batch.feature_lengths, batch.targets,
                            batch.target_lengths, self.autocast_dtype)
        if any_process(not bool(torch.isfinite(loss)), self.device):
            self._restore_buffers(buffers)
            self.skipped_losses += 1
            logger.warning("step %d: non-finite loss skipped (%d so far)", self.step, self.skipped_losses)
            return None
        # gradients are all-reduced, so every process sees the same norm and skips together
        if backward_step(loss, self.model.parameters(), self.optimizer, self.scaler,
                         self.config.optim.max_grad_norm) is None:
            self._restore_buffers(buffers)
            self.skipped_gradients += 1
            logger.warning("step %d: non-finite gradient skipped (%d so far)", self.step, self.skipped_gradients)
            return None
        if not (isinstance(self.scheduler, torch.optim.lr_scheduler.OneCycleLR)
                and self.scheduler.last_epoch >= self.scheduler.total_steps):  # at its end: keep the final rate
            self.scheduler.step()
        self.step += 1
        return float(loss.detach())

    @staticmethod
    def _restore_buffers(buffers) -> None:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)

    def validate(self) -> tuple[Optional[float], Optional[float]]:
        if self.val_loader is None:
            return None, None
        loaded = LoadedModel(self.model, self.alphabet, self.features, "validation")
        counts = evaluate(Transcriber(loaded, device=self.device), self.val_loader,
                          skip_unreadable=self.skip_unreadable).counts
        counts = ErrorCounts(*[int(v) for v in all_reduce_sum(counts.as_list(), self.device)])
        return counts.wer, counts.cer

    def _log_samples(self, handle, indices) -> None:
        record = {"epoch": self.epoch, "batch": self.batch_in_epoch + 1, "step": self.step + 1, "rank": self.dist.rank,
                  "pid": os.getpid(), "indices": [int(i) for i in indices]}
        handle.write(json.dumps(record) + "\n")
        handle.flush()

    def fit(self) -> TrainResult:
        config = self.config
        main = self.dist.is_main
        writer = _summary_writer(config.log_dir) if main else None
        sample_log = open(f"{config.sample_log}.rank{self.dist.rank}", "a") if config.sample_log else None
        self._sample_log = sample_log
        losses: List[float] = []
        last_wer = last_cer = None
        stopped = config.max_steps is not None and self.step >= config.max_steps
        deadline = None if config.max_minutes is None else time.time() + 60 * config.max_minutes
        every = config.checkpoint.every_steps
        try:
            while self.epoch < config.epochs and not stopped:
                self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
                self.train_set.set_epoch(self.epoch)
                if isinstance(self.scheduler, EpochSchedule):
                    self.scheduler.set_epoch(self.epoch)
                self.model.train()
                started, epoch_loss, epoch_steps = time.time(), 0.0, 0
                epoch_batches, empty_before = 0, self.empty_batches
                bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}/{config.epochs}", leave=False,
                           initial=self.batch_in_epoch, total=self.steps_per_epoch, disable=None if main else True)
                waited, mark = 0.0, time.time()  # seconds spent waiting for the data workers: tells a data-bound run
                try:
                    for batch in bar:
                        waited += time.time() - mark
                        loss = self.train_step(batch)
                        self.batch_in_epoch += 1
                        epoch_batches += 1
                        if loss is not None:
                            losses.append(loss)
                            epoch_loss, epoch_steps = epoch_loss + loss, epoch_steps + 1
                            bar.set_postfix(loss=f"{loss:.3f}")
                            if main and bar.disable and self.batch_in_epoch % PROGRESS_LOG_STEPS == 0:
                                # no terminal for the bar (a background run): progress goes to the log
                                elapsed = time.time() - started
                                logger.info("epoch %d: batch %d/%d, loss %.3f, %.3f s/batch (%.0f%% waiting for data)",
                                            self.epoch + 1, self.batch_in_epoch, self.steps_per_epoch, loss,
                                            elapsed / max(1, epoch_steps), 100 * waited / max(elapsed, 1e-9))
                            if writer is not None:
                                writer.add_scalar("train/loss", loss, self.step)
                                writer.add_scalar("train/learning_rate", self.scheduler.get_last_lr()[0], self.step)
                        out_of_time = deadline is not None and any_process(time.time() > deadline, self.device)
                        if (config.max_steps is not None and self.step >= config.max_steps) or out_of_time:
                            stopped = True
                            break
                        if every and loss is not None and self.step % every == 0 and self.batch_in_epoch < self.steps_per_epoch:
                            self.save(LAST)
                        mark = time.time()
                finally:  # on an error too: the bar is cleared before the error is printed
                    bar.close()
                if stopped and self.batch_in_epoch < self.steps_per_epoch:
                    self.save(LAST)  # mid-epoch: resume continues with the next batch
                    break
                total_loss, total_steps = all_reduce_sum([epoch_loss, epoch_steps], self.device)
                if (not total_steps and epoch_batches == self.steps_per_epoch
                        and self.empty_batches - empty_before == epoch_batches):
                    raise ManifestError(
                        f"{config.data.train_manifest}: epoch {self.epoch + 1} trained nothing: no batch had an "
                        f"utterance left ({len(self.skipped_too_short)} audio files too short to train on, "
                        f"{len(self.skipped_unreadable)} unreadable; see the warnings above)")
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                validate = config.validate_every_epoch or self.epoch == config.epochs
                try:
                    last_wer, last_cer = self.validate() if validate else (None, None)
                except Exception:
                    self.save(LAST)  # the epoch is trained: a failed validation must not lose it
                    raise
                logger.info("epoch %d: train loss %s, val WER %s, CER %s, %.0f s (%.0f s waiting for data)", self.epoch,
                            f"{total_loss / total_steps:.3f}" if total_steps else "n/a (no optimiser step)",
                            _percent(last_wer), _percent(last_cer), time.time() - started, waited)
                if writer is not None and last_wer is not None:
                    writer.add_scalar("val/wer", last_wer, self.step)
                    writer.add_scalar("val/cer", last_cer, self.step)
                improved = last_wer is not None and (self.best_wer is None or last_wer < self.best_wer)
                if improved:
                    self.best_wer = last_wer
                self.save(LAST, last_wer, last_cer)
                if improved:
                    self.save(BEST, last_wer, last_cer)
                if config.checkpoint.keep_every_epoch:
                    self.save(f"epoch_{self.epoch:03d}.pt", last_wer, last_cer)
        finally:
            if writer is not None:
                writer.close()
            if sample_log is not None:
                sample_log.close()
                self._sample_log = None
        if self.skipped_losses or self.skipped_gradients:
            logger.warning("skipped %d non-finite losses and %d non-finite gradients", self.skipped_losses, self.skipped_gradients)
        if main and (self.skipped_too_short or self.skipped_unreadable):
            logger.warning("left out %d audio files too short to train on and %d unreadable ones; listed in %s",
                           len(self.skipped_too_short), len(self.skipped_unreadable), self.skipped_list_path)
        return TrainResult(self.epoch, self.step, self.best_wer, last_wer, last_cer, self.directory, losses,
                           self.skipped_losses, self.skipped_gradients, dict(self.skipped_too_short),
                           dict(self.skipped_unreadable))


PROGRESS_LOG_STEPS = 50  # log a progress line this often when the progress bar cannot be shown


def _percent(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _summary_writer(log_dir: Optional[str]):
    if not log_dir:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.warning("tensorboard is not installed; scalars will not be logged")
        return None
    return SummaryWriter(log_dir=log_dir)


def train(config: TrainConfig) -> TrainResult:
    """Train (or resume) a model as configured; checkpoints go to config.checkpoint.directory.

    Under torchrun every process calls this; they train one model with DistributedDataParallel.
    """
    try:
        return Trainer(config).fit()
    finally:
        shutdown()
