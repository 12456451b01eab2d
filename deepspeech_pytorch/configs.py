"""Hydra structured configs: dataclasses registered in the ConfigStore, overridden as `key=value`.

The feature and model sections are also stored inside every checkpoint, so a model always
carries the exact front end it was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import MISSING

from deepspeech_pytorch.labels import DEFAULT_LABELS


@dataclass
class FeatureConfig:
    sample_rate: int = 16000  # Hz
    window_size: float = 0.02  # seconds (320 samples at 16 kHz)
    window_stride: float = 0.01  # seconds (160 samples at 16 kHz)
    window: str = "hamming"  # hamming | hann | blackman | bartlett
    kind: str = "linear"  # linear: log(1 + |STFT|), 161 bins; mel: log-mel filterbank
    n_mels: int = 80
    normalize: bool = True  # per-utterance mean/std over the valid frames

    @property
    def n_fft(self) -> int:
        return int(round(self.sample_rate * self.window_size))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.window_stride))

    @property
    def num_features(self) -> int:
        return self.n_mels if self.kind == "mel" else self.n_fft // 2 + 1


@dataclass
class ModelConfig:
    rnn_type: str = "gru"  # lstm | gru | rnn
    hidden_size: int = 512
    hidden_layers: int = 3
    bidirectional: bool = True
    lookahead_context: int = 20  # frames, for unidirectional models only
    conv_channels: int = 32


PRESETS = {
    # CPU-sized default: 3 x bi-GRU 512 over the 161-bin spectrogram.
    "ds2_small": ModelConfig(rnn_type="gru", hidden_size=512, hidden_layers=3, bidirectional=True),
    # The original deepspeech.pytorch default: 5 x bi-LSTM 1024 (about 86.6 M parameters).
    "ds2_original": ModelConfig(rnn_type="lstm", hidden_size=1024, hidden_layers=5, bidirectional=True),
    # 4 x bi-GRU 320 over 64 log-mel bins (4.9 M parameters), sized so CPU training is feasible and
    # CPU inference runs about 70-100x faster than real time: configs/bundled.yaml's preset.
    "ds2_cpu": ModelConfig(rnn_type="gru", hidden_size=320, hidden_layers=4, bidirectional=True, conv_channels=16),
    # The bundled default model: 4 x bi-GRU 512 over 64 log-mel bins (11.9 M parameters), about 40x
    # faster than real time on 2 CPU cores; trained on a GPU (tools/train_bundled_gpu.sh).
    "ds2_cpu_wide": ModelConfig(rnn_type="gru", hidden_size=512, hidden_layers=4, bidirectional=True, conv_channels=16),
    # A few-hundred-thousand-parameter model for tests and quick experiments.
    "ds2_tiny": ModelConfig(rnn_type="gru", hidden_size=128, hidden_layers=2, bidirectional=True, conv_channels=16),
}


@dataclass
class DataConfig:
    train_manifest: str = MISSING
    val_manifest: Optional[str] = None
    labels: List[str] = field(default_factory=lambda: list(DEFAULT_LABELS))
    labels_path: Optional[str] = None  # JSON list of labels; overrides `labels`
    oov_policy: str = "drop"  # drop | error: characters outside the alphabet
    batch_size: int = 16
    num_workers: int = 2
    min_duration: float = 0.0  # seconds
    max_duration: float = 30.0  # seconds
    sorted_first_epoch: bool = True  # SortaGrad: shortest batches first in epoch 0


@dataclass
class SpecAugmentConfig:
    enabled: bool = False
    freq_masks: int = 2
    max_freq_width: int = 27  # bins per frequency mask (161-bin spectrogram)
    time_masks: int = 2
    max_time_width: int = 40  # frames (10 ms each) per time mask
    max_time_fraction: float = 0.1  # a time mask never covers more than this fraction of the utterance


@dataclass
class NoiseAugmentConfig:
    enabled: bool = False
    manifest: Optional[str] = None  # noise clips, e.g. from data/noise.py
    directory: Optional[str] = None  # or: every audio file under this folder
    probability: float = 0.4  # of an utterance getting noise
    min_snr_db: float = 10.0
    max_snr_db: float = 30.0


@dataclass
class PerturbConfig:
    speed_enabled: bool = False
    min_speed: float = 0.9  # speed perturbation (tempo and pitch together, as Kaldi's speed perturbation)
    max_speed: float = 1.1
    gain_enabled: bool = False
    min_gain_db: float = -6.0
    max_gain_db: float = 6.0


@dataclass
class AugmentConfig:
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    noise: NoiseAugmentConfig = field(default_factory=NoiseAugmentConfig)
    perturb: PerturbConfig = field(default_factory=PerturbConfig)


@dataclass
class OptimConfig:
    optimizer: str = "adamw"  # adamw | sgd
    learning_rate: float = 1.5e-3
    weight_decay: float = 1e-5
    momentum: float = 0.9  # sgd only
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw only
    schedule: str = "onecycle"  # onecycle | anneal | constant
    anneal_factor: float = 0.95  # per epoch, for schedule=anneal
    warmup_fraction: float = 0.1  # onecycle only
    max_grad_norm: float = 400.0


@dataclass
class CheckpointConfig:
    directory: str = "checkpoints"
    resume: bool = True  # continue from directory/last.pt when it exists
    finetune_from: Optional[str] = None  # start fresh from these weights (new optimizer and schedule)
    keep_every_epoch: bool = False
    every_steps: Optional[int] = None  # also save last.pt every N steps (mid-epoch resume after a crash)


@dataclass
class TrainConfig:
    preset: str = "ds2_small"
    model: Optional[ModelConfig] = None  # overrides the preset when given, in a YAML config (OmegaConf cannot
    # merge command-line model.* fields into this unset node; on the command line, pick a preset)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    epochs: int = 30
    max_steps: Optional[int] = None  # stop after this many optimiser steps (for smoke runs)
    max_minutes: Optional[float] = None  # stop (checkpointed, resumable) after this much training time
    seed: int = 123456
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun: each process's local GPU)
    precision: str = "fp32"  # fp32 | fp16 (with loss scaling) | bf16: torch.amp autocast; CTC loss stays fp32
    log_dir: Optional[str] = "runs"  # TensorBoard; null disables
    validate_every_epoch: bool = True
    sample_log: Optional[str] = None  # JSON lines of the utterance indices each process trained on, per step


@dataclass
class LanguageModelConfig:
    path: Optional[str] = None  # KenLM model (ARPA or binary): a word LM with lexicon_path, or a character LM without
    lexicon_path: Optional[str] = None  # word -> spelling list; given: lexicon-constrained search
    # null: the values tuned for the model's own LM (see inference.load_model), else 0.5 and 1.0
    alpha: Optional[float] = None  # LM weight
    beta: Optional[float] = None  # word insertion bonus
    use_model_lm: bool = True  # beam search without `path` uses the LM the model ships (false: no LM)


@dataclass
class DecoderConfig:
    type: str = "greedy"  # greedy | beam
    beam_size: Optional[int] = None  # null: the beam the model's own LM was tuned with, else 100
    beam_threshold: float = 25.0  # drop hypotheses scoring this far below the best
    tokens_per_frame: int = 29  # candidate labels considered per frame (top-k)
    n_best: int = 1
    lm: LanguageModelConfig = field(default_factory=LanguageModelConfig)


@dataclass
class EvalConfig:
    model_path: Optional[str] = None
    test_manifest: str = MISSING
    batch_size: int = 16
    num_workers: int = 2
    device: str = "auto"
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    report_path: Optional[str] = None  # JSON lines: reference, hypothesis, errors per utterance
    save_outputs: Optional[str] = None  # .pt file of log-probabilities for LM tuning
    verbose: bool = False


@dataclass
class TranscribeConfig:
    model_path: Optional[str] = None
    audio_path: Any = MISSING  # one path or a list: audio_path=a.wav or audio_path=[a.wav,b.flac]
    batch_size: int = 8  # chunks decoded per forward pass
    device: str = "auto"
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    chunk_seconds: float = 30.0  # longer audio is split at quiet points into chunks of at most this
    word_timings: bool = True


@dataclass
class BenchmarkConfig:
    mode: str = "speed"  # speed: step time and RTF at one batch size | throughput: a table over batch sizes
    preset: str = "ds2_small"  # random weights of this preset...
    model_path: Optional[str] = None  # ...or this checkpoint (speed mode)
    bundled: bool = False  # ...or the bundled default model (speed mode)
    batch_size: int = 8
    seconds: float = 5.0  # length of each input
    device: str = "auto"
    warmup: int = 2
    repeats: int = 5
    batch_sizes: List[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])  # throughput mode
    precisions: List[str] = field(default_factory=lambda: ["fp32", "bf16"])  # throughput mode
    find_largest_batch: bool = False  # throughput mode, CUDA only


@dataclass
class ServerConfig:
    model_path: Optional[str] = None  # null: the bundled default model
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "auto"
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    max_upload_bytes: int = 20_000_000
    max_audio_seconds: float = 120.0
    max_batch_size: int = 8  # requests grouped into one forward pass
    max_batch_wait_ms: float = 10.0  # how long the batcher waits to fill a batch
    max_queue: int = 64  # waiting requests beyond this are answered 503
    request_timeout_seconds: float = 60.0
    log_level: str = "info"


@dataclass
class NoiseInjectConfig:
    input_path: str = MISSING
    noise_path: str = MISSING
    output_path: str = MISSING
    snr_db: float = 10.0  # signal-to-noise ratio of the result
    seed: int = 0  # picks the noise offset


def register_configs() -> None:
    """Register the primary configs for the entry scripts.

    Each script's primary config is its dataclass schema plus Hydra settings: run in the current
    folder without creating output folders and leave logging to the library (transcribe.py's
    standard output carries only JSON).
    """
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group="hydra/output", name="in_place", package="hydra",
                node={"run": {"dir": "."}, "sweep": {"dir": "multirun", "subdir": "${hydra.job.num}"}})
    for name, schema in (("train", TrainConfig), ("eval", EvalConfig), ("transcribe", TranscribeConfig),
                         ("benchmark", BenchmarkConfig), ("server", ServerConfig),
                         ("noise_inject", NoiseInjectConfig)):
        store.store(name=f"{name}_schema", node=schema)
        store.store(name=name, node={"defaults": [
            f"{name}_schema", "_self_",
            {"override hydra/output": "in_place"},
            {"override hydra/job_logging": "none"},
            {"override hydra/hydra_logging": "none"},
        ], "hydra": {"output_subdir": None}})
