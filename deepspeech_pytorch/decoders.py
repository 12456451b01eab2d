"""CTC decoders: per-frame label scores -> text with word start/end times in seconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from torch import Tensor

from deepspeech_pytorch.labels import Alphabet


@dataclass
class WordTiming:
    word: str
    start: float  # seconds
    end: float  # seconds


@dataclass
class Hypothesis:
    text: str
    words: List[WordTiming] = field(default_factory=list)
    score: Optional[float] = None  # log-probability (greedy: sum of best-path frame scores)


def words_from_frames(labels: Sequence[int], frames: Sequence[int], alphabet: Alphabet,
                      seconds_per_frame: float) -> List[WordTiming]:
    """Group emitted labels into words; a word spans its first to its last character's frame."""
    words: List[WordTiming] = []
    space = alphabet.labels.index(alphabet.space) if alphabet.space in alphabet.labels else -1
    current, start, last = [], 0, 0
    for label, frame in zip(labels, frames):
        if label == space:
            if current:
                words.append(WordTiming("".join(current), start * seconds_per_frame, (last + 1) * seconds_per_frame))
            current = []
            continue
        if not current:
            start = frame
        current.append(alphabet.labels[label])
        last = frame
    if current:
        words.append(WordTiming("".join(current), start * seconds_per_frame, (last + 1) * seconds_per_frame))
    return words


class GreedyDecoder:
    """Best path: argmax per frame, merge repeats, drop blanks."""

    def __init__(self, alphabet: Alphabet, seconds_per_frame: float):
        self.alphabet = alphabet
        self.seconds_per_frame = seconds_per_frame

    def decode(self, log_probs: Tensor, lengths: Tensor) -> List[Hypothesis]:
        """log_probs: (batch, time, classes); lengths: (batch,) valid output frames."""
        scores, best = log_probs.max(dim=-1)
        hypotheses = []
        for row in range(best.shape[0]):
            length = int(lengths[row])
            path = best[row, :length].tolist()
            labels, frames, previous = [], [], 0
            for frame, label in enumerate(path):
                if label != previous and label != 0:
                    labels.append(label)
                    frames.append(frame)
                previous = label
            text = " ".join(self.alphabet.decode(labels).split())
            words = words_from_frames(labels, frames, self.alphabet, self.seconds_per_frame)
            hypotheses.append(Hypothesis(text, words, float(scores[row, :length].sum())))
        return hypotheses


def build_decoder(kind: str, alphabet: Alphabet, seconds_per_frame: float) -> GreedyDecoder:
    if kind == "greedy":
        return GreedyDecoder(alphabet, seconds_per_frame)
    raise ValueError(f"unknown decoder {kind!r}; available: greedy")


def move_word_times(words: Sequence[WordTiming], offset: float) -> List[WordTiming]:
    return [WordTiming(w.word, w.start + offset, w.end + offset) for w in words]

