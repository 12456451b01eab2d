"""Offline speech synthesizers (espeak-ng, flite, festival): the voices we may train on, and rendering one sentence.

This module is what synthesis worker processes import, so it stays light: numpy, soundfile, soxr and
the project's audio helpers, no torch.
"""

from __future__ import annotations

import fnmatch
import functools
import math
import os
import random
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from deepspeech_pytorch.audio import SAMPLE_RATE, resample, write_audio

ENGINES = ("espeak-ng", "flite", "festival")
ENGINE_PACKAGES: Dict[str, Tuple[str, ...]] = {
    "espeak-ng": ("espeak-ng",),
    "flite": ("flite",),
    "festival": ("festival", "festvox-kallpc16k", "festvox-kdlpc16k"),
}

# Voices held back from every training corpus, so tests on them measure generalisation to unseen
# voices: neural piper voices, the CMU SLT speaker in any engine, and recordings of real people.
RESERVED_VOICES = ("piper:*", "*:*slt*", "recorded:*", "human:*")

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                  "en-029", "en-us-nyc")
# Human-sounding variants (`espeak-ng --voices=variant`); robotic and whispering ones are left out.
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
                   "klatt", "klatt2", "klatt3", "Andy", "Annie", "aunty", "belinda", "david", "grandma",
                   "grandpa", "Lee", "linda", "Michael", "paul", "quincy", "rob", "shelby", "steph",
                   "travis", "victor")
# Variants reserved for babble noise, disjoint from the corpus ones so no corpus voice is heard in noise.
BABBLE_VARIANTS = ("adam", "Alex", "benjamin", "caleb", "Denis", "edward", "john", "max", "michel",
                   "Mike", "norbert", "robert", "sandro", "anika", "steph2")

# flite voice -> (speaker, default mean f0 in Hz, or None where int_f0_target_mean has no effect)
FLITE_VOICES: Dict[str, Tuple[str, Optional[float]]] = {"kal16": ("kal", 95.0), "awb": ("awb", 125.0),
                                                        "rms": ("rms", None)}
# festival voice -> (speaker, default mean f0 in Hz); kal_diphone is the speaker of flite's kal16
FESTIVAL_VOICES: Dict[str, Tuple[str, float]] = {"kal_diphone": ("kal", 105.0), "ked_diphone": ("ked", 105.0)}
FESTIVAL_DEFAULT_STRETCH = 1.1  # Duration_Stretch both diphone voices set

ESPEAK_DEFAULT_RATE = 175  # words per minute
TIMEOUT = 120  # seconds for one synthesizer call


class SynthesizerMissing(RuntimeError):
    """A synthesizer or its voices are not installed; the message names the apt packages."""


class SynthesisError(RuntimeError):
    """A synthesizer ran but produced no usable audio."""


def is_reserved(voice_id: str) -> bool:
    return any(fnmatch.fnmatchcase(voice_id.lower(), pattern) for pattern in RESERVED_VOICES)


@dataclass(frozen=True)
class Voice:
    engine: str
    name: str  # what the engine calls it: "en-gb-scotland+f3", "kal16", "kal_diphone"
    speaker: str  # voices of one speaker are kept in one split

    def __post_init__(self) -> None:
        if is_reserved(self.id):
            raise ValueError(f"voice {self.id} is reserved for evaluation and must never be used to build a corpus")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown synthesizer {self.engine!r}; choose from {ENGINES}")

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"


@dataclass(frozen=True)
class Prosody:
    """Per-utterance variation, relative to the voice's defaults."""

    rate: float = 1.0  # speaking rate; 1.25 is a quarter faster
    pitch: float = 1.0  # mean f0 factor
    warp: float = 1.0  # tape-speed resampling factor (> 1 raises pitch and formants and shortens)


def missing_message(engine: str, what: str) -> str:
    return f"{what} not found: install it with `apt-get install {' '.join(ENGINE_PACKAGES[engine])}`"


def engine_binary(engine: str) -> str:
    """Path of the engine's program, or SynthesizerMissing naming the package (looked up on PATH)."""
    if engine not in ENGINE_PACKAGES:
        raise ValueError(f"unknown synthesizer {engine!r}; choose from {ENGINES}")
    path = shutil.which(engine)
    if path is None:
        raise SynthesizerMissing(missing_message(engine, f"speech synthesizer '{engine}'"))
    return path


def _run(command: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), capture_output=True, text=True, errors="replace", timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


@functools.lru_cache(maxsize=None)
def _installed_voice_names(engine: str, binary: str) -> frozenset:
    if engine == "espeak-ng":
        names = set()
        for listing in ("--voices=en", "--voices=variant"):
            for line in _run([binary, listing]).stdout.splitlines()[1:]:
                fields = line.split()
                if len(fields) >= 5:
                    names.add(fields[1])  # language, e.g. en-gb-scotland
                    names.add(fields[4].split("/")[-1])  # variant file, e.g. m3
        return frozenset(names)
    if engine == "flite":
        output = _run([binary, "-lv"]).stdout
        return frozenset(output.split(":", 1)[-1].split())
    output = _run([binary, "--batch", "(print (voice.list))"]).stdout
    return frozenset(re.findall(r"[\w-]+", output))


def list_voices(engines: Sequence[str] = ENGINES, variants: Sequence[str] = ESPEAK_VARIANTS) -> List[Voice]:
    """Every installed, unreserved voice of the given engines (espeak-ng: accent x variant)."""
    voices: List[Voice] = []
    for engine in engines:
        binary = engine_binary(engine)
        installed = _installed_voice_names(engine, binary)
        if engine == "espeak-ng":
            found = [Voice(engine, f"{accent}+{variant}", f"espeak-{accent}+{variant}")
                     for accent in ESPEAK_ACCENTS if accent in installed
                     for variant in variants if variant in installed]
        else:
            table = FLITE_VOICES if engine == "flite" else FESTIVAL_VOICES
            found = [Voice(engine, name, speaker) for name, (speaker, _) in table.items() if name in installed]
        if not found:
            raise SynthesizerMissing(missing_message(engine, f"English voices for '{engine}'"))
        voices.extend(found)
    return voices


def random_prosody(voice: Voice, rng: random.Random) -> Prosody:
    """Speaking rate within about +-25% and mean pitch within -15%..+20%, log-uniform."""
    rate = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
    pitch = math.exp(rng.uniform(math.log(0.85), math.log(1.2)))
    warp = 1.0
    if voice.engine == "flite" and FLITE_VOICES.get(voice.name, ("", 0.0))[1] is None:
        warp, pitch = math.exp(rng.uniform(math.log(0.93), math.log(1.07))), 1.0  # pitch only by resampling
    return Prosody(round(rate, 4), round(pitch, 4), round(warp, 4))


def _command(text: str, voice: Voice, prosody: Prosody, binary: str, output: str) -> List[str]:
    if voice.engine == "espeak-ng":
        pitch = int(round(min(99, max(0, 50 + 150 * (prosody.pitch - 1)))))  # espeak's 0-99 scale, 50 default
        return [binary, "-v", voice.name, "-s", str(int(round(ESPEAK_DEFAULT_RATE * prosody.rate))),
                "-p", str(pitch), "-w", output, text]
    if voice.engine == "flite":
        command = [binary, "-voice", voice.name, "--setf", f"duration_stretch={1 / prosody.rate:.4f}"]
        base_f0 = FLITE_VOICES[voice.name][1]
        if base_f0 is not None:
            command += ["--setf", f"int_f0_target_mean={base_f0 * prosody.pitch:.1f}"]
        return command + ["-t", text, "-o", output]
    base_f0 = FESTIVAL_VOICES[voice.name][1]
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return [binary, "--batch", f"(voice_{voice.name})",
            f"(Parameter.set 'Duration_Stretch {FESTIVAL_DEFAULT_STRETCH / prosody.rate:.4f})",
            f"(set! int_lr_params '((target_f0_mean {base_f0 * prosody.pitch:.1f}) (target_f0_std 14) "
            f"(model_f0_mean 170) (model_f0_std 34)))",
            f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{output}" \'riff)']


def synthesize(text: str, voice: Voice, prosody: Prosody = Prosody()) -> np.ndarray:
    """Speak `text` with `voice`; mono float32 at SAMPLE_RATE, shape (samples,), untrimmed."""
    if is_reserved(voice.id):
        raise ValueError(f"voice {voice.id} is reserved for evaluation")
    binary = engine_binary(voice.engine)
    handle, output = tempfile.mkstemp(suffix=".wav", prefix="tts-")
    os.close(handle)
    try:
        result = _run(_command(text, voice, prosody, binary, output))
        if result.returncode != 0 or os.path.getsize(output) <= 44:
            detail = (result.stderr or result.stdout).strip().replace("\n", " ")[:300]
            raise SynthesisError(f"{voice.id} produced no audio for {text!r} (exit {result.returncode}): {detail}")
        samples, rate = sf.read(output, dtype="float32", always_2d=True)
    finally:
        os.unlink(output)
    samples = samples.mean(axis=1)
    return resample(samples, int(round(rate * prosody.warp)), SAMPLE_RATE)


def trim_silence(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, keep: float = 0.15,
                 threshold_db: float = -40.0) -> np.ndarray:
    """Cut leading and trailing silence down to `keep` seconds (shorter silences are left alone).

    Silence is any 10 ms frame whose RMS is `threshold_db` below the loudest frame's.
    """
    frame = max(1, sample_rate // 100)
    count = len(samples) // frame
    if count == 0:
        return samples
    energy = np.sqrt(np.mean(np.square(samples[: count * frame].reshape(count, frame), dtype=np.float64), axis=1))
    if energy.max() <= 0:
        return samples
    active = np.flatnonzero(energy > energy.max() * 10 ** (threshold_db / 20))
    margin = int(round(keep * sample_rate))
    start = max(0, active[0] * frame - margin)
    end = min(len(samples), (active[-1] + 1) * frame + margin)
    return samples[start:end]


@dataclass(frozen=True)
class RenderJob:
    """Everything needed to make one corpus utterance; picklable so worker processes can run it."""

    text: str
    voice: Voice
    prosody: Prosody
    path: str
    keep: float = 0.15  # seconds of silence kept at each end
    peak: float = 0.9  # peak amplitude after normalisation


def render(job: RenderJob) -> float:
    """Synthesize, trim, normalise and write job.path atomically; returns the duration in seconds.

    The audio goes to a `.partial.wav` name first and is renamed when complete, so a killed build
    never leaves a file that looks finished.
    """
    samples = trim_silence(synthesize(job.text, job.voice, job.prosody), SAMPLE_RATE, job.keep)
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak < 1e-3 or len(samples) < SAMPLE_RATE // 5:
        raise SynthesisError(f"{job.voice.id} produced silence or under 0.2 s of audio for {job.text!r}")
    samples = samples * (job.peak / peak)
    os.makedirs(os.path.dirname(job.path) or ".", exist_ok=True)
    partial = partial_path(job.path)
    write_audio(partial, samples, SAMPLE_RATE)
    os.replace(partial, job.path)
    return len(samples) / SAMPLE_RATE


def partial_path(path: str) -> str:
    root, extension = os.path.splitext(path)
    return f"{root}.partial{extension}"
