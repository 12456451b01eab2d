"""WER and CER as corpus totals: edits summed over utterances divided by reference words/characters.

Edit counts come from jiwer (a maintained alignment library), never a hand-written Levenshtein.
Totals are kept as counts so they add across batches and can be summed across processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import jiwer


@dataclass
class ErrorCounts:
    word_edits: int = 0
    reference_words: int = 0
    char_edits: int = 0
    reference_chars: int = 0

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(self.word_edits + other.word_edits, self.reference_words + other.reference_words,
                           self.char_edits + other.char_edits, self.reference_chars + other.reference_chars)

    @property
    def wer(self) -> float:
        return self.word_edits / self.reference_words if self.reference_words else 0.0

    @property
    def cer(self) -> float:
        return self.char_edits / self.reference_chars if self.reference_chars else 0.0

    def as_list(self) -> list:
        return [self.word_edits, self.reference_words, self.char_edits, self.reference_chars]


def error_counts(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorCounts:
    """Word and character edits of hypotheses against references (paired, same length)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    total = ErrorCounts()
    for reference, hypothesis in zip(references, hypotheses):
        total = total + utterance_errors(reference, hypothesis)
    return total


def utterance_errors(reference: str, hypothesis: str) -> ErrorCounts:
    """Edits for one pair; an empty reference counts every hypothesis word/character as an insertion."""
    reference, hypothesis = " ".join(reference.split()), " ".join(hypothesis.split())
    if not reference:
        return ErrorCounts(len(hypothesis.split()), 0, len(hypothesis), 0)
    if not hypothesis:
        return ErrorCounts(len(reference.split()), len(reference.split()), len(reference), len(reference))
    words = jiwer.process_words(reference, hypothesis)
    chars = jiwer.process_characters(reference, hypothesis)
    return ErrorCounts(words.substitutions + words.deletions + words.insertions,
                       words.substitutions + words.deletions + words.hits,
                       chars.substitutions + chars.deletions + chars.insertions,
                       chars.substitutions + chars.deletions + chars.hits)


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    return error_counts(references, hypotheses).wer


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    return error_counts(references, hypotheses).cer
