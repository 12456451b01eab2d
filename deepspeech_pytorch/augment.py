"""Data augmentation: SpecAugment on features; on waveforms, what real recordings go through.

Pure functions do the math (here and in `channel.py`); `WaveformAugmenter` / `FeatureAugmenter` hold
the config and run in the data workers with a generator seeded per (seed, epoch, utterance), so
augmentation is reproducible. Disabled augmentation returns its input untouched (the same object),
and draws nothing from the generator, so switching on one effect leaves the others' draws alone
only when it comes later in the chain.

The waveform chain, in this fixed order (each step switchable, each with its own probability):

    speed -> silences -> room reverb -> gain -> babble -> noise/music -> band limit | telephone -> codec

The talker's timing first (speed, pauses, leading and trailing silence), then the room around the
talker (reverb, which also rings into the inserted pauses), the level, the other sounds in the room
(babble of other utterances, noise and music clips), and last what the recording chain does to it
all (a band-limited microphone or the 8 kHz telephone channel, then a lossy codec). Every step keeps
the length except speed and silences; the transcript never changes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from torch import Tensor

from deepspeech_pytorch.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, AudioError, load_audio, resample, write_audio
from deepspeech_pytorch.channel import (band_limit, codec, floor_noise, insert_silences, quiet_point,
                                        random_room, reverberate, room_impulse_response, telephone)
from deepspeech_pytorch.configs import (AugmentConfig, BabbleAugmentConfig, ChannelAugmentConfig, ConfigError,
                                        NoiseAugmentConfig, PerturbConfig, RoomAugmentConfig, SilenceAugmentConfig,
                                        SpecAugmentConfig, validate)

logger = logging.getLogger(__name__)

NOISE_CACHE_CLIPS = 64  # decoded noise (or babble) clips kept per worker
ROOM_POOL_SEED = 20240611  # the simulated rooms are the same family in every run and worker


SECTIONS = {"room": RoomAugmentConfig, "channel": ChannelAugmentConfig, "silence": SilenceAugmentConfig,
            "babble": BabbleAugmentConfig}


def augment_section(config: Any, key: str) -> Any:
    """`config.<key>` (room, channel, silence, babble) as its dataclass, checked against its rules (the
    default, off, where it is missing). Accepts a dataclass, an OmegaConf node or a dict."""
    cls = SECTIONS[key]
    value = getattr(config, key, None) if not isinstance(config, dict) else config.get(key)
    if value is None:
        return cls()
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    try:
        return validate(value, cls)
    except ConfigError as error:  # name the setting as the command line spells it
        raise ConfigError(f"augment.{key}.{error}") from None


# ---- pure functions ---------------------------------------------------------------------------------

def spec_augment(features: Tensor, rng: np.random.Generator, freq_masks: int, max_freq_width: int,
                 time_masks: int, max_time_width: int, max_time_fraction: float = 1.0) -> Tensor:
    """Zero random frequency bands and time spans of (freq, frames) features (normalised, so zero is the mean)."""
    features = features.clone()
    bins, frames = features.shape
    for _ in range(freq_masks):
        width = int(rng.integers(0, min(max_freq_width, bins) + 1))
        start = int(rng.integers(0, bins - width + 1))
        features[start:start + width, :] = 0.0
    time_limit = min(max_time_width, int(max_time_fraction * frames))
    for _ in range(time_masks):
        width = int(rng.integers(0, max(time_limit, 0) + 1))
        start = int(rng.integers(0, frames - width + 1))
        features[:, start:start + width] = 0.0
    return features


def power(samples: np.ndarray) -> float:
    return float(np.mean(np.square(samples, dtype=np.float64)))


def loop_segment(noise: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """`length` samples of `noise`, looped as needed, from a random offset."""
    if len(noise) == 0:
        raise ValueError("noise clip is empty")
    repeats = int(np.ceil((length + len(noise)) / len(noise)))
    offset = int(rng.integers(0, len(noise)))
    return np.tile(noise, repeats)[offset: offset + length]


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """signal + noise (same length) scaled to `snr_db` below the signal; the signal itself if either is silent."""
    signal_power, noise_power = power(signal), power(noise)
    if noise_power == 0.0 or signal_power == 0.0:
        return signal
    scale = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (signal + scale * noise).astype(np.float32)


def add_noise(signal: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Mix `noise` (looped or cut at a random offset to the signal's length) at `snr_db` below the signal."""
    return mix_at_snr(signal, loop_segment(noise, len(signal), rng), snr_db)


def babble(clips: Sequence[np.ndarray], length: int, rng: np.random.Generator) -> np.ndarray:
    """Talkers mixed at equal level: each clip looped or cut at a random offset to `length`, at unit RMS."""
    mix = np.zeros(length, dtype=np.float64)
    for clip in clips:
        segment = loop_segment(clip, length, rng)
        level = power(segment)
        if level > 0.0:
            mix += segment / np.sqrt(level)
    return mix.astype(np.float32)


def change_speed(signal: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Play `factor` times faster (shorter and higher), by resampling."""
    if factor == 1.0:
        return signal
    return resample(signal, int(round(sample_rate * factor)), sample_rate)


def change_gain(signal: np.ndarray, gain_db: float) -> np.ndarray:
    return (signal * 10.0 ** (gain_db / 20.0)).astype(np.float32)


# ---- clip sources -----------------------------------------------------------------------------------

def audio_files(manifest: Optional[str], directory: Optional[str], what: str, section: str) -> List[str]:
    """Audio file paths from a manifest and/or every audio file under a folder; ValueError naming
    augment.<section> when there are none."""
    paths: List[str] = []
    if manifest:
        from deepspeech_pytorch.datasets import read_manifest

        paths += [entry.audio_path for entry in read_manifest(manifest)]
    if directory:
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"{what} directory not found: {directory}")
        for root, _, names in sorted(os.walk(directory)):
            paths += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith(AUDIO_EXTENSIONS)]
    if not paths:
        raise ValueError(f"{what} augmentation is enabled but no {what} files were found "
                         f"(set augment.{section}.manifest or .directory)")
    return paths


def noise_files(config: NoiseAugmentConfig) -> List[str]:
    """Noise clip paths from the configured manifest and/or folder."""
    return audio_files(config.manifest, config.directory, "noise", "noise")


class ClipCache:
    """Decoded clips by path at one sample rate, the `size` last used kept (one per data worker)."""

    def __init__(self, sample_rate: int, what: str, size: int = NOISE_CACHE_CLIPS):
        self.sample_rate, self.what, self.size = sample_rate, what, size
        self._clips: "OrderedDict[str, np.ndarray]" = OrderedDict()

    def __call__(self, path: str) -> np.ndarray:
        if path in self._clips:
            self._clips.move_to_end(path)
            return self._clips[path]
        try:
            clip = load_audio(path, self.sample_rate)
        except AudioError as error:
            raise AudioError(f"{self.what} clip unusable: {error}") from None
        self._clips[path] = clip
        if len(self._clips) > self.size:
            self._clips.popitem(last=False)
        return clip


class RoomReverb:
    """Impulse responses for `reverberate`: from measured files, or from a fixed family of `rooms`
    simulated rooms (room k is the same in every worker and run; it is simulated on first use)."""

    def __init__(self, config: RoomAugmentConfig, sample_rate: int):
        self.config, self.sample_rate = config, sample_rate
        self.files = audio_files(None, config.directory, "impulse response", "room") if config.directory else []
        self._files = ClipCache(sample_rate, "impulse response", size=max(len(self.files), 1))
        self._simulated: Dict[int, np.ndarray] = {}

    def room(self, number: int):
        """The simulated room `number` of the family and its pyroomacoustics seed."""
        c = self.config
        rng = np.random.default_rng([ROOM_POOL_SEED, number])
        room = random_room(rng, (c.min_rt60, c.max_rt60), (c.min_side, c.max_side), (c.min_height, c.max_height),
                           (c.min_distance, c.max_distance))
        return room, int(rng.integers(0, 2**32))

    def impulse_response(self, rng: np.random.Generator) -> np.ndarray:
        if self.files:
            return self._files(self.files[int(rng.integers(0, len(self.files)))])
        number = int(rng.integers(0, self.config.rooms))
        if number not in self._simulated:
            room, seed = self.room(number)
            self._simulated[number] = room_impulse_response(room, self.sample_rate, seed)
        return self._simulated[number]


def _require(module: str, section: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"augment.{section}.enabled=true needs the {module} package: pip install {module}")


# ---- wrappers ---------------------------------------------------------------------------------------

class WaveformAugmenter:
    """The waveform chain (see the module docstring for its order); each step switchable."""

    def __init__(self, perturb: PerturbConfig, noise: NoiseAugmentConfig, sample_rate: int,
                 room: Optional[RoomAugmentConfig] = None, channel: Optional[ChannelAugmentConfig] = None,
                 silence: Optional[SilenceAugmentConfig] = None, babble: Optional[BabbleAugmentConfig] = None,
                 speech_paths: Sequence[str] = ()):
        self.perturb, self.noise, self.sample_rate = perturb, noise, sample_rate
        self.room = room or RoomAugmentConfig()
        self.channel = channel or ChannelAugmentConfig()
        self.silence = silence or SilenceAugmentConfig()
        self.babble = babble or BabbleAugmentConfig()
        self.noise_paths: Sequence[str] = noise_files(noise) if noise.enabled else ()
        self._noise = ClipCache(sample_rate, "noise")
        self._reverb: Optional[RoomReverb] = None
        if self.room.enabled:
            _require("scipy", "room")
            if not self.room.directory:
                _require("pyroomacoustics", "room")
            self._reverb = RoomReverb(self.room, sample_rate)
        if self.channel.enabled:
            _require("scipy", "channel")
        self.babble_paths: Sequence[str] = ()
        if self.babble.enabled:
            if self.babble.manifest:
                self.babble_paths = audio_files(self.babble.manifest, None, "babble", "babble")
            elif speech_paths:
                self.babble_paths = list(speech_paths)
            else:
                raise ValueError("babble augmentation is enabled but has no utterances "
                                 "(set augment.babble.manifest, or train with a training manifest)")
        self._babble = ClipCache(sample_rate, "babble")

    @property
    def active(self) -> bool:
        return (self.perturb.speed_enabled or self.perturb.gain_enabled or self.noise.enabled or self.room.enabled
                or self.channel.enabled or self.silence.enabled or self.babble.enabled)

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.perturb.speed_enabled:
            samples = change_speed(samples, float(rng.uniform(self.perturb.min_speed, self.perturb.max_speed)), self.sample_rate)
        if self.silence.enabled and rng.random() < self.silence.probability:
            samples = self._silences(samples, rng)
        if self._reverb is not None and rng.random() < self.room.probability:
            samples = reverberate(samples, self._reverb.impulse_response(rng))
        if self.perturb.gain_enabled:
            samples = change_gain(samples, float(rng.uniform(self.perturb.min_gain_db, self.perturb.max_gain_db)))
        if self.babble.enabled and rng.random() < self.babble.probability:
            samples = self._babble_mix(samples, rng)
        if self.noise.enabled and rng.random() < self.noise.probability:
            clip = self._noise(self.noise_paths[int(rng.integers(0, len(self.noise_paths)))])
            samples = add_noise(samples, clip, float(rng.uniform(self.noise.min_snr_db, self.noise.max_snr_db)), rng)
        if self.channel.enabled:
            samples = self._recording_chain(samples, rng)
        return samples

    def _silences(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c, rate = self.silence, self.sample_rate
        floor = None if rng.random() < c.digital_probability else float(rng.uniform(c.min_floor_dbfs, c.max_floor_dbfs))
        lead = floor_noise(int(rng.uniform(c.min_lead, c.max_lead) * rate), rng, floor)
        trail = floor_noise(int(rng.uniform(c.min_trail, c.max_trail) * rate), rng, floor)
        pause, pause_at = floor_noise(0, rng, None), 0
        if rng.random() < c.pause_probability:
            pause_at = quiet_point(samples, rate, rng)
            pause = floor_noise(int(rng.uniform(c.min_pause, c.max_pause) * rate), rng, floor)
        return insert_silences(samples, lead, trail, pause, pause_at)

    def _babble_mix(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.babble
        talkers = int(rng.integers(c.min_talkers, c.max_talkers + 1))
        picks = rng.integers(0, len(self.babble_paths), size=talkers)
        background = babble([self._babble(self.babble_paths[int(p)]) for p in picks], len(samples), rng)
        return mix_at_snr(samples, background, float(rng.uniform(c.min_snr_db, c.max_snr_db)))

    def _recording_chain(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.channel
        if rng.random() < c.telephone_probability:
            samples = telephone(samples, self.sample_rate)
        elif rng.random() < c.bandlimit_probability:
            high = float(rng.uniform(c.min_lowpass_hz, c.max_lowpass_hz))
            low = float(rng.uniform(c.min_highpass_hz, c.max_highpass_hz))
            samples = band_limit(samples, self.sample_rate, low if low > 0 else None, high)
        if rng.random() < c.codec_probability:
            name = c.codecs[int(rng.integers(0, len(c.codecs)))]
            samples = codec(samples, self.sample_rate, name, float(rng.uniform(c.min_bitrate_kbps, c.max_bitrate_kbps)))
        return samples


class FeatureAugmenter:
    """SpecAugment on (freq, frames) features."""

    def __init__(self, config: SpecAugmentConfig):
        self.config = config

    def __call__(self, features: Tensor, rng: np.random.Generator) -> Tensor:
        c = self.config
        if not c.enabled:
            return features
        return spec_augment(features, rng, c.freq_masks, c.max_freq_width, c.time_masks, c.max_time_width,
                            c.max_time_fraction)


def build_augmenters(config: AugmentConfig, sample_rate: int, speech_paths: Sequence[str] = ()):
    """(waveform_augment, feature_augment) for SpeechDataset; None where nothing is enabled.

    `speech_paths`: the training utterances' audio files, which babble mixes when augment.babble has
    no manifest of its own. The room, channel, silence and babble sections are read from `config`
    where it has them, else left off.
    """
    sections = {key: augment_section(config, key) for key in SECTIONS}
    waveform = WaveformAugmenter(config.perturb, config.noise, sample_rate, speech_paths=speech_paths, **sections)
    return (waveform if waveform.active else None,
            FeatureAugmenter(config.spec_augment) if config.spec_augment.enabled else None)


def inject_noise_file(input_path: str, noise_path: str, output_path: str, snr_db: float, seed: int = 0,
                      sample_rate: int = SAMPLE_RATE) -> float:
    """Mix a noise file into an audio file at `snr_db` and write the result, for listening.

    Returns the measured SNR of the written mix (before 16-bit quantisation) in dB.
    """
    signal = load_audio(input_path, sample_rate)
    noise = load_audio(noise_path, sample_rate)
    mixed = add_noise(signal, noise, snr_db, np.random.default_rng(seed))
    peak = float(np.abs(mixed).max())
    scale = 0.99 / peak if peak > 0.99 else 1.0  # avoid clipping; keeps the SNR
    write_audio(output_path, mixed * scale)
    residual = mixed - signal
    return 10.0 * np.log10(power(signal) / max(power(residual), 1e-20))
