"""The alphabet: one object that maps text to CTC label ids and back, for training, decoding and metrics."""

from __future__ import annotations

import json
import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, List

logger = logging.getLogger(__name__)

BLANK = "_"
DEFAULT_LABELS: List[str] = [BLANK, "'", *"abcdefghijklmnopqrstuvwxyz", " "]

# Typographic variants folded before the alphabet check, so "don’t" and "don't" are one word.
_FOLD = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'", "-": " ", "\u2013": " ", "\u2014": " ", "_": " "})
_PUNCTUATION = re.compile(r"[.,!?;:\"()\[\]{}\u201c\u201d\u00ab\u00bb]")
_SPACES = re.compile(r"\s+")


class TranscriptError(ValueError):
    """A transcript that cannot be used with the alphabet (empty, or with characters outside it)."""


@dataclass(frozen=True)
class Alphabet:
    """CTC labels: index 0 is the blank; `space` separates words.

    oov_policy says what to do with characters outside the alphabet after normalisation:
    "drop" removes them and logs a warning naming the utterance; "error" raises TranscriptError.
    """

    labels: tuple = tuple(DEFAULT_LABELS)
    space: str = " "
    oov_policy: str = "drop"

    def __post_init__(self) -> None:
        if len(self.labels) < 2 or self.labels[0] != BLANK:
            raise ValueError(f"the alphabet must start with the blank '{BLANK}' and have at least one other label")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("the alphabet has duplicate labels")
        if any(len(label) != 1 for label in self.labels):
            raise ValueError("every label must be a single character")
        if self.oov_policy not in ("drop", "error"):
            raise ValueError(f"oov_policy must be 'drop' or 'error', not {self.oov_policy!r}")
        object.__setattr__(self, "_index", {label: i for i, label in enumerate(self.labels)})

    @classmethod
    def from_json(cls, path: str, oov_policy: str = "drop") -> "Alphabet":
        """Load a JSON list of labels, blank first (the original project's labels.json format)."""
        if not os.path.isfile(path):
            raise ValueError(f"{path}: labels file not found" if not os.path.isdir(path)
                             else f"{path}: is a folder, not a labels file")
        try:
            with open(path, encoding="utf-8") as handle:
                labels = json.load(handle)
        except UnicodeDecodeError:
            raise ValueError(f"{path}: labels file is not UTF-8 text; save it as UTF-8") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: labels file is not JSON ({error.msg}, line {error.lineno}); "
                             f"expected a JSON list of single-character strings") from None
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise ValueError(f"{path}: expected a JSON list of single-character strings")
        return cls(labels=tuple(labels), oov_policy=oov_policy)

    def to_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(list(self.labels), handle, ensure_ascii=False)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lowercase(self) -> bool:
        letters = [label for label in self.labels if label.isalpha()]
        return not letters or any(label.islower() for label in letters)

    def normalize(self, text: str, utterance: str = "") -> str:
        """Fold case, quotes, dashes and punctuation, then apply the out-of-alphabet policy."""
        text = unicodedata.normalize("NFKC", text).translate(_FOLD)
        text = text.lower() if self.lowercase else text.upper()
        text = _PUNCTUATION.sub(" ", text)
        text = "".join(ch if ch in self._index else self._strip_accent(ch) for ch in text)
        outside = sorted({ch for ch in text if ch not in self._index and not ch.isspace()})
        if outside:
            where = f" in {utterance}" if utterance else ""
            if self.oov_policy == "error":
                raise TranscriptError(f"characters outside the alphabet{where}: {''.join(outside)!r}")
            logger.warning("dropping characters outside the alphabet%s: %r", where, "".join(outside))
            text = "".join(ch for ch in text if ch in self._index or ch.isspace())
        return _SPACES.sub(" ", text).strip()

    def _strip_accent(self, ch: str) -> str:
        """'é' -> 'e' when the alphabet has 'e' but not 'é' (Common Voice, VoxForge English)."""
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        return base if base and all(c in self._index for c in base) else ch

    def encode(self, text: str) -> List[int]:
        """Label ids for already-normalised text (no blanks)."""
        try:
            return [self._index[ch] for ch in text]
        except KeyError as error:
            raise TranscriptError(f"character {error.args[0]!r} is not in the alphabet") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text for label ids, skipping blanks (no CTC collapsing: see decoders)."""
        return "".join(self.labels[i] for i in ids if i != 0)
