"""The training loop: plain PyTorch, CTC loss, checkpoints every epoch, exact resume.

No Lightning: the original project's users were broken repeatedly by its API drift.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from deepspeech_pytorch.augment import build_augmenters
from deepspeech_pytorch.checkpoint import (CheckpointError, build_model, load_checkpoint, model_state,
                                           restore_rng_state, rng_state, save_checkpoint)
from deepspeech_pytorch.configs import PRESETS, AugmentConfig, FeatureConfig, ModelConfig, TrainConfig
from deepspeech_pytorch.datasets import (BucketingBatchSampler, SpeechDataset, collate, filter_by_duration,
                                         read_manifest)
from deepspeech_pytorch.distributed import all_reduce_sum, any_process, barrier, init_distributed, shutdown
from deepspeech_pytorch.evaluation import evaluate, make_loader
from deepspeech_pytorch.inference import LoadedModel, Transcriber
from deepspeech_pytorch.metrics import ErrorCounts
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.model import DeepSpeech2, count_parameters

logger = logging.getLogger(__name__)

LAST = "last.pt"
BEST = "best.pt"
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_config_for(config: TrainConfig) -> ModelConfig:
    if config.model is not None:
        return _as_dataclass(ModelConfig, config.model)
    if config.preset not in PRESETS:
        raise ValueError(f"unknown preset {config.preset!r}; choose from {sorted(PRESETS)}")
    return PRESETS[config.preset]


def alphabet_for(config: TrainConfig) -> Alphabet:
    if config.data.labels_path:
        return Alphabet.from_json(config.data.labels_path, oov_policy=config.data.oov_policy)
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


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """Per-step schedule. OneCycle spans all epochs; anneal multiplies the LR once per epoch."""
    optim = config.optim
    if optim.schedule == "onecycle":
        total = max(1, config.epochs * steps_per_epoch)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=optim.learning_rate, total_steps=total,
                                                   pct_start=optim.warmup_fraction, anneal_strategy="cos")
    if optim.schedule == "anneal":
        factor, per_epoch = optim.anneal_factor, max(1, steps_per_epoch)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor ** (step // per_epoch))
    if optim.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise ValueError(f"unknown schedule {optim.schedule!r}; choose onecycle, anneal or constant")


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
        data = config.data
        train_entries = filter_by_duration(read_manifest(data.train_manifest), data.min_duration, data.max_duration)
        if not train_entries:
            raise ValueError(f"{data.train_manifest}: no utterances left after the duration filter")
        waveform_augment, feature_augment = build_augmenters(_as_dataclass(AugmentConfig, config.augment),
                                                             self.features.sample_rate)
        self.train_set = SpeechDataset(train_entries, self.alphabet, self.features, waveform_augment,
                                       feature_augment, seed=config.seed)
        self.sampler = BucketingBatchSampler(self.train_set.durations(), data.batch_size, shuffle=True,
                                             seed=config.seed, sorted_first_epoch=data.sorted_first_epoch,
                                             num_replicas=self.dist.world_size, rank=self.dist.rank)
        self.train_loader = DataLoader(self.train_set, batch_sampler=self.sampler, num_workers=data.num_workers,
                                       collate_fn=collate, pin_memory=self.device.type == "cuda")
        self.val_loader = None
        if data.val_manifest:
            shard = read_manifest(data.val_manifest)[self.dist.rank:: self.dist.world_size]
            self.val_loader = make_loader(SpeechDataset(shard, self.alphabet, self.features), data.batch_size,
                                          data.num_workers)
        self.model = DeepSpeech2(self.model_config, self.features.num_features, len(self.alphabet)).to(self.device)
        self.optimizer = build_optimizer(self.model, config)
        self.steps_per_epoch = len(self.sampler.batches)
        self.scheduler = build_scheduler(self.optimizer, config, self.steps_per_epoch)
        self.ctc_loss = nn.CTCLoss(blank=0, reduction="mean", zero_infinity=True)
        self.autocast_dtype = PRECISIONS[config.precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        self.directory = config.checkpoint.directory
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        self.best_wer: Optional[float] = None
        self.skipped_losses = self.skipped_gradients = 0
        self._restore()
        # Wrapped after restoring, so every process starts from the same (loaded) weights.
        self.network = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None) \
            if self.dist.enabled else self.model
        logger.info("model: %s, %d parameters; %d training utterances, %d batches per epoch",
                    self.model_config, count_parameters(self.model), len(self.train_set), self.steps_per_epoch)

    # ---- checkpoints -------------------------------------------------------------------------
    def _restore(self) -> None:
        last = os.path.join(self.directory, LAST)
        if self.config.checkpoint.resume and os.path.isfile(last):
            state = load_checkpoint(last)
            self._check_compatible(state, last)
            self.model.load_state_dict(state["model_state"])
            self.optimizer.load_state_dict(state["optimizer_state"])
            self.scheduler.load_state_dict(state["scheduler_state"])
            if state.get("scaler_state"):
                self.scaler.load_state_dict(state["scaler_state"])
            self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
            saved_world = state.get("world_size", 1)
            if saved_world != self.dist.world_size and self.batch_in_epoch:
                # Global batches depend on the number of processes: the saved position means nothing now.
                logger.warning("resuming with %d processes instead of %d: epoch %d restarts from its first batch",
                               self.dist.world_size, saved_world, self.epoch + 1)
                self.batch_in_epoch = 0
            self.best_wer = state.get("best_wer")
            self.skipped_losses = state.get("skipped_losses", 0)
            self.skipped_gradients = state.get("skipped_gradients", 0)
            restore_rng_state(state.get("rng"))
            logger.info("resumed from %s: epoch %d, batch %d, step %d", last, self.epoch, self.batch_in_epoch, self.step)
        elif self.config.checkpoint.finetune_from:
            path = self.config.checkpoint.finetune_from
            state = load_checkpoint(path)
            self._check_compatible(state, path)
            model, _, _ = build_model(state, path)
            self.model.load_state_dict(model.state_dict())
            logger.info("fine-tuning from the weights in %s", path)

    def _check_compatible(self, state: Dict[str, Any], path: str) -> None:
        if tuple(state["labels"]) != self.alphabet.labels:
            raise CheckpointError(f"{path}: checkpoint alphabet {state['labels']} differs from the configured one")
        if state["model_config"] != dataclasses.asdict(self.model_config):
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
            "world_size": self.dist.world_size,
            "best_wer": self.best_wer, "wer": wer, "cer": cer,
            "skipped_losses": self.skipped_losses, "skipped_gradients": self.skipped_gradients,
            "rng": rng_state(),
            "config": OmegaConf.to_container(OmegaConf.structured(self.config), resolve=True),
        })
        barrier()
        return path

    # ---- the loop ----------------------------------------------------------------------------
    def train_step(self, batch) -> Optional[float]:
        """One optimiser step; returns the loss, or None when the loss or gradients were not finite
        (on any process: all processes skip together)."""
        batch = batch.to(self.device)
        # BatchNorm statistics are updated in the forward pass; keep a copy (a few KB) so a
        # skipped step leaves no trace of a NaN in them.
        buffers = [(buffer, buffer.detach().clone()) for buffer in self.model.buffers()]
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            logits, output_lengths = self.network(batch.features, batch.feature_lengths)
        log_probs = torch.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (time, batch, classes), fp32
        loss = self.ctc_loss(log_probs, batch.targets, output_lengths, batch.target_lengths)
        self.optimizer.zero_grad(set_to_none=True)
        if any_process(not bool(torch.isfinite(loss)), self.device):
            self._restore_buffers(buffers)
            self.skipped_losses += 1
            logger.warning("step %d: non-finite loss skipped (%d so far)", self.step, self.skipped_losses)
            return None
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.max_grad_norm)
        if not torch.isfinite(norm):  # gradients are all-reduced, so every process sees the same norm
            self._restore_buffers(buffers)
            self.skipped_gradients += 1
            self.scaler.update()  # with fp16: lower the loss scale
            self.optimizer.zero_grad(set_to_none=True)
            logger.warning("step %d: non-finite gradient skipped (%d so far)", self.step, self.skipped_gradients)
            return None
        self.scaler.step(self.optimizer)
        self.scaler.update()
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
        counts = evaluate(Transcriber(loaded, device=self.device), self.val_loader).counts
        counts = ErrorCounts(*[int(v) for v in all_reduce_sum(counts.as_list(), self.device)])
        return counts.wer, counts.cer

    def _log_samples(self, handle, indices) -> None:
        record = {"epoch": self.epoch, "batch": self.batch_in_epoch, "step": self.step, "rank": self.dist.rank,
                  "pid": os.getpid(), "indices": [int(i) for i in indices]}
        handle.write(json.dumps(record) + "\n")
        handle.flush()

    def fit(self) -> TrainResult:
        config = self.config
        main = self.dist.is_main
        writer = _summary_writer(config.log_dir) if main else None
        sample_log = open(f"{config.sample_log}.rank{self.dist.rank}", "a") if config.sample_log else None
        losses: List[float] = []
        last_wer = last_cer = None
        stopped = config.max_steps is not None and self.step >= config.max_steps
        deadline = None if config.max_minutes is None else time.time() + 60 * config.max_minutes
        every = config.checkpoint.every_steps
        try:
            while self.epoch < config.epochs and not stopped:
                self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
                self.train_set.set_epoch(self.epoch)
                self.model.train()
                started, epoch_loss, epoch_steps = time.time(), 0.0, 0
                bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}/{config.epochs}", leave=False,
                           initial=self.batch_in_epoch, total=self.steps_per_epoch, disable=None if main else True)
                for batch in bar:
                    loss = self.train_step(batch)
                    self.batch_in_epoch += 1
                    if loss is not None:
                        losses.append(loss)
                        epoch_loss, epoch_steps = epoch_loss + loss, epoch_steps + 1
                        bar.set_postfix(loss=f"{loss:.3f}")
                        if main and bar.disable and self.batch_in_epoch % PROGRESS_LOG_STEPS == 0:
                            # no terminal for the bar (a background run): progress goes to the log
                            logger.info("epoch %d: batch %d/%d, loss %.3f, %.1f s/batch", self.epoch + 1,
                                        self.batch_in_epoch, self.steps_per_epoch, loss,
                                        (time.time() - started) / max(1, epoch_steps))
                        if writer is not None:
                            writer.add_scalar("train/loss", loss, self.step)
                            writer.add_scalar("train/learning_rate", self.scheduler.get_last_lr()[0], self.step)
                        if sample_log is not None:
                            self._log_samples(sample_log, batch.indices)
                    out_of_time = deadline is not None and any_process(time.time() > deadline, self.device)
                    if (config.max_steps is not None and self.step >= config.max_steps) or out_of_time:
                        stopped = True
                        break
                    if every and loss is not None and self.step % every == 0 and self.batch_in_epoch < self.steps_per_epoch:
                        self.save(LAST)
                bar.close()
                if stopped and self.batch_in_epoch < self.steps_per_epoch:
                    self.save(LAST)  # mid-epoch: resume continues with the next batch
                    break
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                validate = config.validate_every_epoch or self.epoch == config.epochs
                last_wer, last_cer = self.validate() if validate else (None, None)
                total_loss, total_steps = all_reduce_sum([epoch_loss, epoch_steps], self.device)
                logger.info("epoch %d: train loss %.3f, val WER %s, CER %s, %.0f s", self.epoch,
                            total_loss / total_steps if total_steps else math.nan,
                            _percent(last_wer), _percent(last_cer), time.time() - started)
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
        if self.skipped_losses or self.skipped_gradients:
            logger.warning("skipped %d non-finite losses and %d non-finite gradients", self.skipped_losses, self.skipped_gradients)
        return TrainResult(self.epoch, self.step, self.best_wer, last_wer, last_cer, self.directory, losses,
                           self.skipped_losses, self.skipped_gradients)


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
