"""Background-noise clips for noise injection, made offline from Debian packages.

Kinds: white, pink and brown noise and mains hum (50/60 Hz with harmonics) from sox's synth;
babble, several espeak-ng talkers mixed (variants kept apart from every corpus voice, so no corpus
voice is heard in noise); and music from Extreme Tux Racer's soundtrack (Debian extremetuxracer-data, free
licences; Asterisk's music-on-hold is never used: Asterisk sound packages are kept for evaluation). Every clip is 16 kHz mono
16-bit WAV at a common RMS level, listed in a JSON-lines manifest whose text is the kind's name.
"""

from __future__ import annotations

import glob
import logging
import os
import random
import shutil
import subprocess
import tempfile
import time
from typing import Dict, List, Sequence

import numpy as np
import soundfile as sf
from tqdm import tqdm

from deepspeech_pytorch.audio import SAMPLE_RATE, resample, write_audio
from deepspeech_pytorch.datasets import ManifestEntry, write_manifest
from deepspeech_pytorch.corpora.sentences import gather_sentences, interleave
from deepspeech_pytorch.corpora.tts import BABBLE_VARIANTS, list_voices, random_prosody, synthesize, trim_silence

logger = logging.getLogger(__name__)

NOISE_KINDS = ("white", "pink", "brown", "hum", "babble", "music")
SOX_COLOURS = {"white": "whitenoise", "pink": "pinknoise", "brown": "brownnoise"}
MUSIC_DIR = "/usr/share/games/etr/music"  # extremetuxracer-data's soundtrack (Ogg Vorbis)
MUSIC_PACKAGE = "extremetuxracer-data"
TARGET_RMS = 0.1  # -20 dBFS; injection rescales clips to the wanted SNR anyway
BABBLE_TALKERS = (3, 7)  # voices mixed in one babble clip
BABBLE_TEXT = "wordnet,fortunes"


class NoiseSetError(RuntimeError):
    """A noise kind cannot be made; the message names the apt package to install."""


def _level(samples: np.ndarray) -> np.ndarray:
    """Scale to TARGET_RMS, lowered if needed so the peak stays below full scale."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if rms <= 0:
        raise NoiseSetError("generated a silent noise clip")
    gain = min(TARGET_RMS / rms, 0.99 / float(np.max(np.abs(samples))))
    return (samples * gain).astype(np.float32)


def _sox(arguments: Sequence[str]) -> np.ndarray:
    """Run `sox -n <file> <arguments>` (a synth command line) and return the mono 16 kHz result."""
    binary = shutil.which("sox")
    if binary is None:
        raise NoiseSetError("sox not found: install it with `apt-get install sox`")
    handle, path = tempfile.mkstemp(suffix=".wav", prefix="noise-")
    os.close(handle)
    try:
        # -R: sox's repeatable random numbers, so a seed always gives the same noise
        result = subprocess.run([binary, "-R", "-n", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", path, *arguments],
                                capture_output=True, text=True, errors="replace")
        if result.returncode != 0:
            raise NoiseSetError(f"sox {' '.join(arguments)} failed: {result.stderr.strip()[:300]}")
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    finally:
        os.unlink(path)
    return resample(samples.mean(axis=1), rate, SAMPLE_RATE)


def coloured_noise(kind: str, count: int, seconds: float, seed: int) -> List[np.ndarray]:
    """`count` clips of white, pink or brown noise cut from one sox stream started at a seeded offset."""
    lead = round(random.Random(f"{seed}/{kind}").uniform(0, 60), 2)  # decorrelates kinds and seeds
    stream = _sox(["synth", f"{lead + count * seconds:.3f}", SOX_COLOURS[kind], "trim", f"{lead:.3f}"])
    size = int(seconds * SAMPLE_RATE)
    return [stream[i * size: (i + 1) * size] for i in range(count)]


def mains_hum(count: int, seconds: float, seed: int) -> List[np.ndarray]:
    """Hum at 50 Hz (even clips) or 60 Hz (odd clips), +-0.4% drift, with 3 to 8 weighted harmonics."""
    clips = []
    for index in range(count):
        rng = random.Random(f"{seed}/hum/{index}")
        base = (50.0 if index % 2 == 0 else 60.0) * (1 + rng.uniform(-0.004, 0.004))
        harmonics = rng.randint(3, 8)
        tilt = rng.uniform(0.5, 1.5)  # how fast harmonics fade
        weights = [rng.uniform(0.3, 1.0) / k ** tilt for k in range(1, harmonics + 1)]
        tones = [part for k in range(1, harmonics + 1) for part in ("sine", f"{base * k:.3f}")]
        mix = ",".join(f"{k}v{w:.4f}" for k, w in enumerate(weights, start=1))
        clips.append(_sox(["synth", f"{seconds:.3f}", *tones, "remix", mix]))
    return clips


def babble(count: int, seconds: float, seed: int, text_source: str = BABBLE_TEXT) -> List[np.ndarray]:
    """Several espeak-ng talkers (babble-only variants) each reading sentences back to back, mixed."""
    try:
        voices = list_voices(["espeak-ng"], variants=BABBLE_VARIANTS)
    except RuntimeError as error:
        raise NoiseSetError(f"babble needs espeak-ng: {error}") from None
    sentences = interleave(gather_sentences(text_source), seed)
    rng = random.Random(f"{seed}/babble")
    size = int(seconds * SAMPLE_RATE)
    clips = []
    for _ in range(count):
        mixture = np.zeros(size, dtype=np.float64)
        for voice in rng.sample(voices, rng.randint(*BABBLE_TALKERS)):
            talk: List[np.ndarray] = [np.zeros(int(rng.uniform(0, 1.5) * SAMPLE_RATE), dtype=np.float32)]
            filled = len(talk[0])
            while filled < size:
                spoken = synthesize(rng.choice(sentences).spoken, voice, random_prosody(voice, rng))
                speech = trim_silence(spoken, keep=0.05)
                pause = np.zeros(int(rng.uniform(0.05, 0.4) * SAMPLE_RATE), dtype=np.float32)
                talk += [speech, pause]
                filled += len(speech) + len(pause)
            track = np.concatenate(talk)[:size]
            rms = np.sqrt(np.mean(np.square(track, dtype=np.float64))) or 1.0
            mixture += track / rms * 10 ** (rng.uniform(-6, 0) / 20)
        clips.append(mixture.astype(np.float32))
    return clips


def music(count: int, seconds: float, seed: int, directory: str = MUSIC_DIR) -> List[np.ndarray]:
    """Excerpts of the music tracks (WAV, Ogg or FLAC files in `directory`), taken in turn from each file at
    seeded offsets. Tracks shorter than a clip (jingles) are passed over; NoiseSetError when none is long enough."""
    found = sorted(path for pattern in ("*.wav", "*.ogg", "*.flac") for path in glob.glob(os.path.join(directory, pattern)))
    if not found:
        raise NoiseSetError(f"no music in {directory}: install it with `apt-get install {MUSIC_PACKAGE}`")
    infos = {path: sf.info(path) for path in found}
    files = [path for path in found if infos[path].frames > int(seconds * infos[path].samplerate)]
    if not files:
        raise NoiseSetError(f"{directory}: no music track is longer than a {seconds:g} s clip")
    rng = random.Random(f"{seed}/music")
    clips = []
    for index in range(count):
        path = files[index % len(files)]
        info = infos[path]
        length = int(seconds * info.samplerate)
        for _ in range(10):  # avoid the near-silent gaps between pieces
            start = rng.randrange(0, info.frames - length)
            excerpt, _ = sf.read(path, start=start, frames=length, dtype="float32", always_2d=True)
            excerpt = excerpt.mean(axis=1)
            if np.sqrt(np.mean(np.square(excerpt))) > 0.01:
                break
        clips.append(resample(excerpt, info.samplerate, SAMPLE_RATE))
    return clips


def _make(kind: str, count: int, seconds: float, seed: int) -> List[np.ndarray]:
    if kind in SOX_COLOURS:
        return coloured_noise(kind, count, seconds, seed)
    if kind == "hum":
        return mains_hum(count, seconds, seed)
    if kind == "babble":
        return babble(count, seconds, seed)
    if kind == "music":
        return music(count, seconds, seed)
    raise ValueError(f"unknown noise kind {kind!r}; choose from {NOISE_KINDS}")


def build_noise_set(output_dir: str, clips_per_kind: int = 12, clip_seconds: float = 10.0,
                    kinds: Sequence[str] = NOISE_KINDS, seed: int = 0, progress: bool = True) -> dict:
    """Write output_dir/<kind>/<kind>-NNN.wav and output_dir/noise.jsonl; returns a summary dict.

    The same seed gives the same clips. Missing tools raise NoiseSetError naming the apt package.
    """
    started = time.monotonic()
    unknown = [kind for kind in kinds if kind not in NOISE_KINDS]
    if unknown:
        raise ValueError(f"unknown noise kinds {unknown}; choose from {list(NOISE_KINDS)}")
    if clips_per_kind < 1 or clip_seconds <= 0:
        raise ValueError("clips_per_kind must be at least 1 and clip_seconds positive")
    output_dir = os.path.abspath(output_dir)
    entries: List[ManifestEntry] = []
    per_kind: Dict[str, dict] = {}
    for kind in tqdm(list(kinds), desc="noise", unit="kind", disable=not progress):
        folder = os.path.join(output_dir, kind)
        os.makedirs(folder, exist_ok=True)
        clips = _make(kind, clips_per_kind, clip_seconds, seed)
        for index, clip in enumerate(clips):
            path = os.path.join(folder, f"{kind}-{index:03d}.wav")
            partial = os.path.join(folder, f"{kind}-{index:03d}.partial.wav")
            write_audio(partial, _level(clip), SAMPLE_RATE)
            os.replace(partial, path)
            entries.append(ManifestEntry(path, kind, len(clip) / SAMPLE_RATE, f"{kind}-{index:03d}"))
        per_kind[kind] = {"clips": len(clips), "seconds": round(sum(len(c) for c in clips) / SAMPLE_RATE, 2)}
        logger.info("noise %s: %d clips", kind, len(clips))
    manifest = os.path.join(output_dir, "noise.jsonl")
    write_manifest(manifest, entries)
    return {"output_dir": output_dir, "manifest": manifest, "kinds": per_kind, "clips": len(entries),
            "seconds": round(sum(k["seconds"] for k in per_kind.values()), 2),
            "build_seconds": round(time.monotonic() - started, 2)}
