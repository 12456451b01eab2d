"""Hydra structured configs: dataclasses registered in the ConfigStore, overridden as `key=value`.

The feature and model sections are also stored inside every checkpoint, so a model always
carries the exact front end it was trained with.

Every setting that can be wrong carries its rule beside it (`checked(default, rule)`), and
`validate(config, schema)` checks a whole config against them before anything is loaded: one
ConfigError naming the setting, its value and what is allowed. Rules that tie settings together
(min <= max, a decoder option that only beam search uses) are each class's `check_together`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from deepspeech_pytorch.labels import DEFAULT_LABELS


SAMPLE_RATE = 16000  # Hz, the rate every model in this project is trained at
CHUNK_SECONDS = 30.0  # the longest piece of audio given to the model at once; longer speech is split


class ConfigError(ValueError):
    """A setting that cannot work; the message names the setting, its value and what is allowed."""


# ---- rules ----------------------------------------------------------------------------------------

RULE = "rule"  # the dataclass field metadata key that holds a field's Rule
SEED_LIMIT = 2**32 - 1  # numpy seeds are 32-bit


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _bound(number: float) -> str:
    """A rule's bound as people write it: 1, 0.5, 4294967295."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


class Rule:
    """What one setting may be; `check` raises ConfigError naming `key`. None (an unset Optional) passes."""

    def check(self, key: str, value: Any) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class AtLeast(Rule):
    """A number >= low (a count, a size, a non-negative amount)."""
    low: float

    def check(self, key: str, value: Any) -> None:
        if value < self.low:
            raise ConfigError(f"{key}={_show(value)} must be at least {_bound(self.low)}")


@dataclass(frozen=True)
class Positive(Rule):
    """A number > 0 (seconds, rates, scales)."""

    def check(self, key: str, value: Any) -> None:
        if not value > 0:
            raise ConfigError(f"{key}={_show(value)} must be positive")


@dataclass(frozen=True)
class Between(Rule):
    """low <= value <= high, or value < high when `below_high` (a probability, a fraction, a port)."""
    low: float
    high: float
    below_high: bool = False

    def check(self, key: str, value: Any) -> None:
        if value < self.low or value > self.high or (self.below_high and value == self.high):
            upper = f"below {_bound(self.high)}" if self.below_high else f"at most {_bound(self.high)}"
            raise ConfigError(f"{key}={_show(value)} must be at least {_bound(self.low)} and {upper}")


@dataclass(frozen=True)
class OneOf(Rule):
    """One of a few names; `choices` may be a callable, read when checking (e.g. the presets)."""
    choices: Union[Tuple[str, ...], Callable[[], Iterable[str]]]
    ignore_case: bool = False

    def names(self) -> List[str]:
        return list(self.choices() if callable(self.choices) else self.choices)

    def check(self, key: str, value: Any) -> None:
        names = self.names()
        found = str(value).lower() if self.ignore_case else value
        if found not in names:
            raise ConfigError(f"{key}={_show(value)}: choose from {', '.join(names)}")


@dataclass(frozen=True)
class Device(Rule):
    """auto | cpu | cuda | cuda:N, and CUDA (that GPU) must be there when asked for."""

    def check(self, key: str, value: Any) -> None:
        match = re.fullmatch(r"auto|cpu|cuda(?::(\d+))?", str(value))
        if match is None:
            raise ConfigError(f"{key}={_show(value)}: choose from auto, cpu, cuda, cuda:N (N: a GPU number)")
        if not str(value).startswith("cuda"):
            return
        from deepspeech_pytorch.extras import available

        if not available("torch"):  # ONNX Runtime's CUDA provider may run it; the backend checks (torch: its extra)
            return
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={value} was requested but CUDA is not available on this machine "
                              f"(torch {torch.__version__}); use {key}=cpu or {key}=auto")
        if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
            raise ConfigError(f"{key}={value}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                              f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")


@dataclass(frozen=True)
class Text(Rule):
    """A name that is not empty. On the command line its value is taken literally (any character,
    `${...}` included): see cli.prepare_arguments."""
    what: str = "a name"

    def check(self, key: str, value: Any) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{key}={_show(value)}: give {self.what}")


@dataclass(frozen=True)
class Path(Text):
    """A file or folder name, taken literally on the command line."""
    what: str = "a file or folder name"


@dataclass(frozen=True)
class Paths(Path):
    """One path or a non-empty list of them."""

    def check(self, key: str, value: Any) -> None:
        if isinstance(value, (list, tuple)):
            if not value:
                raise ConfigError(f"{key}=[] names no files")
            for number, item in enumerate(value):
                super().check(f"{key}[{number}]", item)
        else:
            super().check(key, value)


@dataclass(frozen=True)
class ListOf(Rule):
    """A list whose every item meets `item` (and is at least `min_length` long, exactly `length` if set)."""
    item: Rule
    min_length: int = 1
    length: Optional[int] = None

    def check(self, key: str, value: Any) -> None:
        if self.length is not None and len(value) != self.length:
            raise ConfigError(f"{key}={list(value)} must have {self.length} items")
        if len(value) < self.min_length:
            raise ConfigError(f"{key}={list(value)} must have at least {self.min_length} item(s)")
        for number, item in enumerate(value):
            self.item.check(f"{key}[{number}]", item)


def checked(default: Any, rule: Rule) -> Any:
    """A dataclass field with a default and the rule its value must meet."""
    return field(default=default, metadata={RULE: rule})


def checked_list(factory: Callable[[], list], rule: Rule) -> Any:
    """A list field (built by `factory`) with the rule its value must meet."""
    return field(default_factory=factory, metadata={RULE: rule})


def _uses_cuda(device: str) -> bool:
    """Whether a (valid) device setting runs on a GPU."""
    if device == "auto":
        from deepspeech_pytorch.extras import available

        if not available("torch"):  # no torch, no torch CUDA (the command then says it needs PyTorch)
            return False
        import torch

        return torch.cuda.is_available()
    return device.startswith("cuda")


def _ordered(config: Any, name: Callable[[str], str], low: str, high: str) -> None:
    """A min/max pair: low <= high."""
    if getattr(config, low) > getattr(config, high):
        raise ConfigError(f"{name(low)}={getattr(config, low)} is more than {name(high)}={getattr(config, high)}")

# ---- the configs ------------------------------------------------------------------------------------

PRECISION_NAMES = ("fp32", "fp16", "bf16")
WINDOW_NAMES = ("hamming", "hann", "blackman", "bartlett")


@dataclass
class FeatureConfig:
    sample_rate: int = checked(SAMPLE_RATE, AtLeast(1000))  # Hz
    window_size: float = checked(0.02, Positive())  # seconds (320 samples at 16 kHz)
    window_stride: float = checked(0.01, Positive())  # seconds (160 samples at 16 kHz)
    window: str = checked("hamming", OneOf(WINDOW_NAMES))
    kind: str = checked("linear", OneOf(("linear", "mel")))  # linear: log(1 + |STFT|), 161 bins; mel: log-mel filterbank
    n_mels: int = checked(80, AtLeast(1))
    normalize: bool = True  # per-utterance mean/std over the valid frames (when normalization is unset)
    # utterance | global (statistics stored with the model) | running (causal, for streaming) | none;
    # unset: utterance when `normalize`, else none (checkpoints from before this setting)
    normalization: Optional[str] = checked(None, OneOf(("utterance", "global", "running", "none")))
    # per-bin feature statistics for global/running normalisation, measured on the training data when training
    # starts (or given) and stored with the model in its checkpoint
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None

    @property
    def n_fft(self) -> int:
        return int(round(self.sample_rate * self.window_size))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.window_stride))

    @property
    def num_features(self) -> int:
        return self.n_mels if self.kind == "mel" else self.n_fft // 2 + 1

    def check_together(self, name: Callable[[str], str]) -> None:
        if self.n_fft < 2:
            raise ConfigError(f"{name('window_size')}={self.window_size} is under two samples at "
                              f"{name('sample_rate')}={self.sample_rate}")
        if self.hop_length < 1:
            raise ConfigError(f"{name('window_stride')}={self.window_stride} is under one sample at "
                              f"{name('sample_rate')}={self.sample_rate}")


MODEL_PRESETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "presets")
DEFAULT_MODEL = "ds2_small"


def model_presets() -> Dict[str, Dict[str, Any]]:
    """The model presets (`models/presets/<name>.yaml`: an `architecture` and its settings) by name. Read
    once per process, without importing torch; `deepspeech_pytorch.models.presets()` gives them as config
    dataclasses. Each call returns fresh dicts, so a caller may change them."""
    return {name: dict(values) for name, values in _read_model_presets().items()}


@functools.lru_cache(maxsize=1)
def _read_model_presets() -> Dict[str, Dict[str, Any]]:
    return {file[:-5]: OmegaConf.to_container(OmegaConf.load(os.path.join(MODEL_PRESETS_DIR, file)))
            for file in sorted(os.listdir(MODEL_PRESETS_DIR)) if file.endswith(".yaml")}


PRESET = OneOf(lambda: sorted(model_presets()))


@dataclass
class DataConfig:
    train_manifest: str = checked(MISSING, Path())
    val_manifest: Optional[str] = checked(None, Path())
    labels: List[str] = field(default_factory=lambda: list(DEFAULT_LABELS))
    labels_path: Optional[str] = checked(None, Path())  # JSON list of labels; overrides `labels`
    oov_policy: str = checked("drop", OneOf(("drop", "error")))  # characters outside the alphabet
    batch_size: int = checked(16, AtLeast(1))
    num_workers: int = checked(2, AtLeast(0))
    min_duration: float = checked(0.0, AtLeast(0))  # seconds
    max_duration: float = checked(30.0, Positive())  # seconds
    sorted_first_epoch: bool = True  # SortaGrad: shortest batches first in epoch 0
    skip_unreadable: bool = False  # leave out (count and list) utterances whose audio cannot be read, not stop

    def check_together(self, name: Callable[[str], str]) -> None:
        _ordered(self, name, "min_duration", "max_duration")


@dataclass
class SpecAugmentConfig:
    enabled: bool = False
    freq_masks: int = checked(2, AtLeast(0))
    max_freq_width: int = checked(27, AtLeast(0))  # bins per frequency mask (161-bin spectrogram)
    time_masks: int = checked(2, AtLeast(0))
    max_time_width: int = checked(40, AtLeast(0))  # frames (10 ms each) per time mask
    max_time_fraction: float = checked(0.1, Between(0, 1))  # a time mask never covers more than this fraction


@dataclass
class NoiseAugmentConfig:
    enabled: bool = False
    manifest: Optional[str] = checked(None, Path())  # noise clips, e.g. from data/noise.py
    directory: Optional[str] = checked(None, Path())  # or: every audio file under this folder
    probability: float = checked(0.4, Between(0, 1))  # of an utterance getting noise
    min_snr_db: float = 10.0
    max_snr_db: float = 30.0

    def check_together(self, name: Callable[[str], str]) -> None:
        _ordered(self, name, "min_snr_db", "max_snr_db")
        if self.enabled and not (self.manifest or self.directory):
            raise ConfigError(f"{name('enabled')}=true needs {name('manifest')} or {name('directory')}")


@dataclass
class PerturbConfig:
    speed_enabled: bool = False
    min_speed: float = checked(0.9, Positive())  # speed perturbation (tempo and pitch together, as Kaldi's)
    max_speed: float = checked(1.1, Positive())
    gain_enabled: bool = False
    min_gain_db: float = -6.0
    max_gain_db: float = 6.0

    def check_together(self, name: Callable[[str], str]) -> None:
        _ordered(self, name, "min_speed", "max_speed")
        _ordered(self, name, "min_gain_db", "max_gain_db")


CODEC_NAMES = ("mp3", "gsm", "mulaw", "alaw", "opus")  # = deepspeech_pytorch.channel.CODECS


@dataclass
class RoomAugmentConfig:
    """Reverb of a simulated shoebox room (pyroomacoustics), or of measured impulse responses."""
    enabled: bool = False
    probability: float = checked(0.3, Between(0, 1))  # of an utterance being reverberated
    min_rt60: float = checked(0.15, Positive())  # seconds, reverberation time (wall absorption follows, by Sabine)
    max_rt60: float = checked(0.8, Positive())
    min_side: float = checked(3.0, AtLeast(2))  # metres, room length and width (talker and mic keep 0.5 m off the walls)
    max_side: float = checked(10.0, AtLeast(2))
    min_height: float = checked(2.4, AtLeast(2))  # metres
    max_height: float = checked(4.0, AtLeast(2))
    min_distance: float = checked(0.3, Positive())  # metres from the talker's mouth to the microphone
    max_distance: float = checked(3.0, Positive())
    rooms: int = checked(256, AtLeast(1))  # simulated rooms to draw from; each simulated once per worker, on first use
    directory: Optional[str] = checked(None, Path())  # measured impulse responses (audio files) instead of simulated rooms

    def check_together(self, name: Callable[[str], str]) -> None:
        _ordered(self, name, "min_rt60", "max_rt60")
        _ordered(self, name, "min_side", "max_side")
        _ordered(self, name, "min_height", "max_height")
        _ordered(self, name, "min_distance", "max_distance")


@dataclass
class ChannelAugmentConfig:
    """The recording chain: a band-limited microphone or the telephone channel, then a lossy codec."""
    enabled: bool = False
    telephone_probability: float = checked(0.1, Between(0, 1))  # down to 8 kHz, band-pass 300-3400 Hz, back up
    bandlimit_probability: float = checked(0.2, Between(0, 1))  # (when not telephone) a random low-pass and high-pass
    min_lowpass_hz: float = checked(3000.0, Positive())
    max_lowpass_hz: float = checked(7500.0, Positive())  # at or above the Nyquist frequency: no low-pass
    min_highpass_hz: float = checked(0.0, AtLeast(0))  # 0: no high-pass
    max_highpass_hz: float = checked(300.0, AtLeast(0))
    codec_probability: float = checked(0.2, Between(0, 1))  # of one codec, drawn from `codecs`
    codecs: List[str] = checked_list(lambda: ["mp3", "gsm", "mulaw"], ListOf(OneOf(CODEC_NAMES)))  # also alaw, opus (slow)
    min_bitrate_kbps: float = checked(8.0, Positive())  # mp3 and opus
    max_bitrate_kbps: float = checked(32.0, Positive())

    def check_together(self, name: Callable[[str], str]) -> None:
        _ordered(self, name, "min_lowpass_hz", "max_lowpass_hz")
        _ordered(self, name, "min_highpass_hz", "max_highpass_hz")
        _ordered(self, name, "max_highpass_hz", "min_lowpass_hz")
        _ordered(self, name, "min_bitrate_kbps", "max_bitrate_kbps")


@dataclass
class SilenceAugmentConfig:
    """Silence before, after and inside the speech, as real recordings have (the transcript is unchanged)."""
    enabled: bool = False
    probability: float = checked(0.5, Between(0, 1))  # of an utterance getting leading and trailing silence
    min_lead: float = checked(0.0, AtLeast(0))  # seconds before the speech
    max_lead: float = checked(1.0, AtLeast(0))
    min_trail: float = checked(0.0, AtLeast(0))  # seconds after it
    max_trail: float = checked(1.0, AtLeast(0))
    pause_probability: float = checked(0.3, Between(0, 1))  # of a pause inside as well, at a quiet point
    min_pause: float = checked(0.2, AtLeast(0))  # seconds
    max_pause: float = checked(1.0, AtLeast(0))
    digital_probability: float = checked(0.3, Between(0, 1))  # of exact zeros, else low-level noise
    min_floor_dbfs: float = checked(-90.0, Between(-200, 0))  # that noise's RMS level, dB below full scale
    max_floor_dbfs: float = checked(-60.0, Between(-200, 0))

    def check_together(self, name: Callable[[str], str]) -> None:
        for low, high in (("min_lead", "max_lead"), ("min_trail", "max_trail"), ("min_pause", "max_pause"),
                          ("min_floor_dbfs", "max_floor_dbfs")):
            _ordered(self, name, low, high)


@dataclass
class BabbleAugmentConfig:
    """Several other utterances mixed as background talk, at a random SNR."""
    enabled: bool = False
    probability: float = checked(0.1, Between(0, 1))  # of an utterance getting babble
    manifest: Optional[str] = checked(None, Path())  # utterances to babble from; unset: the training set
    min_talkers: int = checked(3, AtLeast(1))
    max_talkers: int = checked(6, AtLeast(1))
    min_snr_db: float = 10.0  # dB
    max_snr_db: float = 25.0

    def check_together(self, name: Callable[[str], str]) -> None:
        _ordered(self, name, "min_talkers", "max_talkers")
        _ordered(self, name, "min_snr_db", "max_snr_db")


@dataclass
class AugmentConfig:
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    noise: NoiseAugmentConfig = field(default_factory=NoiseAugmentConfig)
    perturb: PerturbConfig = field(default_factory=PerturbConfig)
    room: RoomAugmentConfig = field(default_factory=RoomAugmentConfig)
    channel: ChannelAugmentConfig = field(default_factory=ChannelAugmentConfig)
    silence: SilenceAugmentConfig = field(default_factory=SilenceAugmentConfig)
    babble: BabbleAugmentConfig = field(default_factory=BabbleAugmentConfig)


@dataclass
class OptimConfig:
    optimizer: str = checked("adamw", OneOf(("adamw", "sgd")))
    learning_rate: float = checked(1.5e-3, Positive())
    weight_decay: float = checked(1e-5, AtLeast(0))
    momentum: float = checked(0.9, Between(0, 1, below_high=True))  # sgd only
    betas: List[float] = checked_list(lambda: [0.9, 0.999], ListOf(Between(0, 1, below_high=True), length=2))  # adamw
    schedule: str = checked("onecycle", OneOf(("onecycle", "anneal", "constant")))
    anneal_factor: float = checked(0.95, Between(0, 1))  # per epoch, for schedule=anneal
    warmup_fraction: float = checked(0.1, Between(0, 1, below_high=True))  # onecycle only
    max_grad_norm: float = checked(400.0, Positive())


@dataclass
class CheckpointConfig:
    directory: str = checked("checkpoints", Path())
    resume: bool = True  # continue from directory/last.pt when it exists
    finetune_from: Optional[str] = checked(None, Path())  # start fresh from these weights (new optimizer and schedule)
    keep_every_epoch: bool = False
    every_steps: Optional[int] = checked(None, AtLeast(1))  # also save last.pt every N steps (mid-epoch resume)


@dataclass
class TrainConfig:
    # the acoustic model: a preset from the `model` group (model=ds2_tiny), any of its settings overridable
    # (model.hidden_size=768); a YAML config may give a whole `model:` section (architecture and settings)
    model: Any = MISSING
    objective: str = checked("ctc", OneOf(("ctc",)))  # the training loss (objectives.py)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    epochs: int = checked(30, AtLeast(1))
    max_steps: Optional[int] = checked(None, AtLeast(1))  # stop after this many optimiser steps (for smoke runs)
    max_minutes: Optional[float] = checked(None, Positive())  # stop (checkpointed, resumable) after this long
    seed: int = checked(123456, Between(0, SEED_LIMIT))
    device: str = checked("auto", Device())  # auto | cpu | cuda | cuda:N (under torchrun: each process's local GPU)
    precision: str = checked("fp32", OneOf(PRECISION_NAMES))  # fp16 (with loss scaling) | bf16: torch.amp autocast
    log_dir: Optional[str] = checked("runs", Path())  # TensorBoard; null disables
    validate_every_epoch: bool = True
    sample_log: Optional[str] = checked(None, Path())  # JSON lines of the utterance indices each process trained on


@dataclass
class LanguageModelConfig:
    # KenLM model (ARPA or binary): a word LM with lexicon_path, or a character LM without
    path: Optional[str] = checked(None, Path())
    lexicon_path: Optional[str] = checked(None, Path())  # word -> spelling list; given: lexicon-constrained search
    # null: the values tuned for the model's own LM (see inference.load_model), else 0.5 and 1.0
    alpha: Optional[float] = None  # LM weight
    beta: Optional[float] = None  # word insertion bonus
    use_model_lm: bool = True  # beam search without `path` uses the LM the model ships (false: no LM)


@dataclass
class DecoderConfig:
    type: str = checked("greedy", OneOf(("greedy", "beam")))
    beam_size: Optional[int] = checked(None, AtLeast(1))  # null: the beam the model's own LM was tuned with, else 100
    beam_threshold: float = checked(25.0, Positive())  # drop hypotheses scoring this far below the best
    tokens_per_frame: int = checked(29, AtLeast(1))  # candidate labels considered per frame (top-k)
    n_best: int = checked(1, AtLeast(1))
    lm: LanguageModelConfig = field(default_factory=LanguageModelConfig)

    def check_together(self, name: Callable[[str], str]) -> None:
        if self.beam_size is not None and self.n_best > self.beam_size:
            raise ConfigError(f"{name('n_best')}={self.n_best} is more than {name('beam_size')}={self.beam_size}")


def _beam_only(decoder: DecoderConfig, name: Callable[[str], str]) -> None:
    """A beam-search setting given with greedy decoding would be silently ignored: refuse it."""
    if decoder.type == "beam":
        return
    for key, value in (("beam_size", decoder.beam_size), ("lm.path", decoder.lm.path),
                       ("lm.lexicon_path", decoder.lm.lexicon_path), ("lm.alpha", decoder.lm.alpha),
                       ("lm.beta", decoder.lm.beta)):
        if value is not None:
            raise ConfigError(f"{name('decoder.' + key)} is a beam-search setting; add "
                              f"{name('decoder.type')}=beam (it is {decoder.type})")


@dataclass
class EvalConfig:
    model_path: Optional[str] = checked(None, Path())
    test_manifest: str = checked(MISSING, Path())
    batch_size: int = checked(16, AtLeast(1))
    num_workers: int = checked(2, AtLeast(0))
    device: str = checked("auto", Device())
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    report_path: Optional[str] = checked(None, Path())  # JSON lines: reference, hypothesis, errors per utterance
    save_outputs: Optional[str] = checked(None, Path())  # .pt file of log-probabilities for LM tuning
    verbose: bool = False
    skip_unreadable: bool = False  # leave out (count and list) utterances whose audio cannot be read, not stop
    # WER/CER per value of this manifest field too: source, engine, voice, speaker (the data scripts write them)
    breakdown: Optional[str] = checked(None, Text("a manifest field name"))

    def check_together(self, name: Callable[[str], str]) -> None:
        _beam_only(self.decoder, name)


BACKENDS = ("auto", "torch", "onnxruntime")  # auto: onnxruntime for a .onnx model file, torch otherwise
OUTPUT_FORMATS = ("json", "txt", "srt", "vtt")


@dataclass
class TranscribeConfig:
    model_path: Optional[str] = checked(None, Path())
    # one path or a list: audio_path=a.wav, audio_path=[a.wav,b.flac] or just the names: transcribe.py a.wav b.flac
    audio_path: Any = checked(MISSING, Paths())
    batch_size: int = checked(8, AtLeast(1))  # chunks decoded per forward pass
    device: str = checked("auto", Device())
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    chunk_seconds: float = checked(CHUNK_SECONDS, AtLeast(1))  # longer audio is split at quiet points into chunks of at most this
    word_timings: bool = True  # (txt/srt/vtt always compute word times)
    vad: bool = True  # transcribe only where voice-activity detection hears speech (silence: empty transcript)
    backend: str = checked("auto", OneOf(BACKENDS))  # inference engine; onnxruntime runs without importing torch
    # json: one JSON line per file on stdout; txt | srt | vtt: plain text or subtitles (segments cut at pauses)
    output_format: str = checked("json", OneOf(OUTPUT_FORMATS))
    output_dir: Optional[str] = checked(None, Path())  # write <name>.<format> here; null: stdout (txt/srt/vtt: one input)

    def check_together(self, name: Callable[[str], str]) -> None:
        _beam_only(self.decoder, name)


@dataclass
class BenchmarkConfig:
    # speed: step time and RTF at one batch size | throughput: a table over batch sizes | profile: FLOPs and
    # parameters per layer, time per stage (model_path, or the bundled model)
    mode: str = checked("speed", OneOf(("speed", "throughput", "profile")))
    preset: str = checked("ds2_small", PRESET)  # random weights of this preset...
    model_path: Optional[str] = checked(None, Path())  # ...or this checkpoint (speed mode)
    bundled: bool = False  # ...or the bundled default model (speed mode)
    batch_size: int = checked(8, AtLeast(1))
    seconds: float = checked(5.0, Positive())  # length of each input
    device: str = checked("auto", Device())
    warmup: int = checked(2, AtLeast(0))
    repeats: int = checked(5, AtLeast(1))
    batch_sizes: List[int] = checked_list(lambda: [1, 2, 4, 8, 16], ListOf(AtLeast(1)))  # throughput mode
    precisions: List[str] = checked_list(lambda: ["fp32", "bf16"], ListOf(OneOf(PRECISION_NAMES)))  # throughput mode
    find_largest_batch: bool = False  # throughput mode, CUDA only
    profile_batch_sizes: List[int] = checked_list(lambda: [1, 8], ListOf(AtLeast(1)))  # profile mode
    profile_audio: Any = checked(None, Paths())  # profile mode: speech clips, cut or repeated to `seconds`; null: the bundled samples

    def check_together(self, name: Callable[[str], str]) -> None:
        if self.mode == "throughput" and (self.model_path is not None or self.bundled):
            raise ConfigError(f"{name('model_path')} and {name('bundled')} are for {name('mode')}=speed; "
                              f"throughput mode measures presets")
        if self.model_path is not None and self.bundled:
            raise ConfigError(f"give {name('model_path')} or {name('bundled')}=true, not both")
        if self.mode == "profile" and self.preset != BenchmarkConfig.preset:  # it profiled the bundled model instead
            raise ConfigError(f"{name('preset')}={self.preset} is for {name('mode')}=speed or throughput (random "
                              f"weights); {name('mode')}=profile measures {name('model_path')}= or the bundled model")
        if self.find_largest_batch and self.mode != "throughput":
            raise ConfigError(f"{name('find_largest_batch')}=true is for {name('mode')}=throughput")
        if self.find_largest_batch and not _uses_cuda(self.device):
            raise ConfigError(f"{name('find_largest_batch')}=true needs a CUDA device ({name('device')}={self.device})")


@dataclass
class StreamingConfig:
    """Limits and endpointing of the websocket stream (GET /ws/transcribe)."""
    # null: the server's model; or a checkpoint, or a bundled model's name ("stream": the bundled streaming model)
    model_path: Optional[str] = checked(None, Path())
    max_streams: int = checked(16, AtLeast(1))  # concurrent streams; more are refused with a close code
    max_stream_seconds: float = checked(3600.0, Positive())  # audio per stream
    idle_timeout_seconds: float = checked(15.0, Positive())  # no message this long: the stream is closed
    max_message_bytes: int = checked(1_000_000, AtLeast(1))  # one websocket message (config or audio chunk)
    endpoint_silence_seconds: float = checked(0.8, Positive())  # trailing silence that ends an utterance


@dataclass
class ServerConfig:
    model_path: Optional[str] = checked(None, Path())  # null: the bundled default model
    host: str = checked("127.0.0.1", Text("a host name or address"))
    port: int = checked(8000, Between(1, 65535))
    device: str = checked("auto", Device())
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    max_upload_bytes: int = checked(20_000_000, AtLeast(1))
    max_audio_seconds: float = checked(120.0, Positive())
    max_batch_size: int = checked(8, AtLeast(1))  # requests grouped into one forward pass
    max_batch_wait_ms: float = checked(10.0, AtLeast(0))  # how long the batcher waits to fill a batch
    max_queue: int = checked(64, AtLeast(1))  # waiting requests beyond this are answered 503
    request_timeout_seconds: float = checked(60.0, Positive())
    vad: bool = True  # transcribe only where voice-activity detection hears speech
    backend: str = checked("auto", OneOf(BACKENDS))  # inference engine; onnxruntime runs without importing torch
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    log_level: str = checked("info", OneOf(("critical", "error", "warning", "info", "debug", "trace"), ignore_case=True))


@dataclass
class NoiseInjectConfig:
    input_path: str = checked(MISSING, Path())
    noise_path: str = checked(MISSING, Path())
    output_path: str = checked(MISSING, Path())
    snr_db: float = 10.0  # signal-to-noise ratio of the result
    seed: int = checked(0, Between(0, SEED_LIMIT))  # picks the noise offset


# The primary config of each entry script.
@dataclass
class ExportConfig:
    model_path: Optional[str] = checked(None, Path())  # null: the bundled default model
    output_dir: str = checked("exported", Path())
    # onnx (ONNX Runtime, opset 17) | onnx_int8 (ONNX Runtime quantization) | torchscript (traced, for mobile/C++)
    # | torchscript_int8 (static int8 convolutions, dynamic int8 recurrent and linear layers)
    formats: List[str] = checked_list(lambda: ["onnx", "onnx_int8", "torchscript", "torchscript_int8"],
                                      ListOf(OneOf(("onnx", "onnx_int8", "torchscript", "torchscript_int8"))))
    check_audio: Any = checked(None, Paths())  # files the export must reproduce; null: the bundled samples
    calibration_audio: Any = checked(None, Paths())  # int8 convolutions' activation ranges; null: the check audio
    static_conv: bool = True  # int8 formats: statically quantized (calibrated) convolutions; false: they stay fp32
    int8_max_cer: float = checked(0.02, Between(0.0, 1.0))  # int8 greedy transcripts may differ from fp32's by this CER


SCHEMAS: Dict[str, type] = {"train": TrainConfig, "eval": EvalConfig, "transcribe": TranscribeConfig,
                            "benchmark": BenchmarkConfig, "server": ServerConfig, "noise_inject": NoiseInjectConfig,
                            "export": ExportConfig}


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
    for preset, values in model_presets().items():  # the `model` group: model=ds2_tiny picks one
        store.store(group="model", name=preset, node=values)
    for name, schema in SCHEMAS.items():
        store.store(name=f"{name}_schema", node=schema)
        groups = [{"model": DEFAULT_MODEL}] if name == "train" else []
        store.store(name=name, node={"defaults": [
            f"{name}_schema", *groups, "_self_",
            {"override hydra/output": "in_place"},
            {"override hydra/job_logging": "none"},
            {"override hydra/hydra_logging": "none"},
        ], "hydra": {"output_subdir": None}})


# ---- checking a whole config --------------------------------------------------------------------------

def _numbers(value: Any) -> Iterator[Tuple[str, float]]:
    """(suffix, number) for a float or the floats in a list."""
    if isinstance(value, float):
        yield "", value
    elif isinstance(value, (list, tuple)):
        for number, item in enumerate(value):
            if isinstance(item, float):
                yield f"[{number}]", item


def _check_object(config: Any, prefix: str) -> None:
    name = lambda key: prefix + key  # noqa: E731  a setting's full dotted name
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            _check_object(value, name(item.name) + ".")
            continue
        for suffix, number in _numbers(value):
            if not math.isfinite(number):
                raise ConfigError(f"{name(item.name)}{suffix}={number} must be a finite number")
        if value is None and item.default == MISSING:  # e.g. audio_path=null
            raise ConfigError(f"{name(item.name)} is not set: give {name(item.name)}=...")
        rule = item.metadata.get(RULE)
        if rule is not None and value is not None:
            rule.check(name(item.name), value)
    together = getattr(config, "check_together", None)
    if together is not None:
        together(name)


def unknown_setting(key: str, schema: type) -> str:
    """The message for a setting `schema` does not have, with the closest one it does."""
    close = difflib.get_close_matches(key, list(settings_of(schema)), n=1)
    return f"unknown setting {key!r}" + (f"; did you mean {close[0]}?" if close else "")


def _unknown_keys(values: Dict[str, Any], schema: type, prefix: str = "") -> Iterator[str]:
    """Keys of a plain config dict that `schema` has no field for (e.g. added with Hydra's +key=...)."""
    hints = typing.get_type_hints(schema)
    for key, value in values.items():
        if key not in hints:
            yield prefix + str(key)
        elif isinstance(value, dict):
            nested = [kind for kind in (hints[key], *typing.get_args(hints[key])) if dataclasses.is_dataclass(kind)]
            if nested:
                yield from _unknown_keys(value, nested[0], f"{prefix}{key}.")


def _deleted_keys(config: Any, schema: type, prefix: str = "") -> Iterator[str]:
    """Settings of `schema` missing from a config composed from it (Hydra's ~key deletes them; the task then
    fails on the first use): a composed config has every one."""
    hints = typing.get_type_hints(schema)
    present = set(config.keys())  # not `in config`: a setting left ??? (not given yet) is not "in" a DictConfig
    for item in dataclasses.fields(schema):
        if item.name not in present:
            yield prefix + item.name
            continue
        value = config._get_node(item.name)
        nested = [kind for kind in (hints[item.name], *typing.get_args(hints[item.name])) if dataclasses.is_dataclass(kind)]
        if nested and OmegaConf.is_dict(value):
            yield from _deleted_keys(value, nested[0], f"{prefix}{item.name}.")


def validate(config: Any, schema: type) -> Any:
    """Check every setting of `config` (a DictConfig from Hydra, a plain dict, or a `schema` instance)
    against its rules, before anything is loaded. Returns the config as a `schema` instance; raises
    ConfigError naming the first wrong setting."""
    if isinstance(config, schema):
        config = OmegaConf.structured(config)
    if OmegaConf.is_dict(config) and OmegaConf.get_type(config) is schema:  # composed from the schema
        deleted = list(_deleted_keys(config, schema))
        if deleted:
            raise ConfigError(f"{deleted[0]}: settings cannot be deleted (~{deleted[0]}); set the value you want instead")
    try:
        unknown = list(_unknown_keys(OmegaConf.to_container(OmegaConf.create(config), resolve=False), schema))
        if unknown:
            raise ConfigError(unknown_setting(unknown[0], schema))
        structured = OmegaConf.merge(OmegaConf.structured(schema), config)
        missing = sorted(OmegaConf.missing_keys(structured))
        if missing:
            raise ConfigError(f"{missing[0]} is not set: give {missing[0]}=...")
        instance = OmegaConf.to_object(structured)
    except OmegaConfBaseException as error:
        raise ConfigError(f"{error.full_key}: {first_line(error)}" if error.full_key else first_line(error)) from None
    _check_object(instance, "")
    return instance


def first_line(error: BaseException) -> str:
    """An OmegaConf/Hydra message without its `full_key:`/`object_type=` detail lines."""
    lines = [line.strip() for line in str(error).splitlines()]
    return " ".join(line for line in lines if line and not line.startswith(("full_key:", "object_type=", "reference_type=",
                                                                              "See https://")))


def settings_of(schema: type, prefix: str = "") -> Dict[str, dataclasses.Field]:
    """Every setting of a schema by its dotted name (nested configs included, also Optional ones)."""
    hints = typing.get_type_hints(schema)
    found: Dict[str, dataclasses.Field] = {}
    for item in dataclasses.fields(schema):
        kind = hints[item.name]
        inner = [arg for arg in typing.get_args(kind) if dataclasses.is_dataclass(arg)]
        nested = kind if dataclasses.is_dataclass(kind) else (inner[0] if inner else None)
        if nested is not None:
            found.update(settings_of(nested, f"{prefix}{item.name}."))
        else:
            found[prefix + item.name] = item
    return found
