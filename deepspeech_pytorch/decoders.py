"""CTC decoders: per-frame label scores -> text with word start/end times in seconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Union

from torch import Tensor

from deepspeech_pytorch.configs import DecoderConfig
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


def words_from_frames(labels: Sequence[int], starts: Sequence[int], ends: Sequence[int], alphabet: Alphabet,
                      seconds_per_frame: float) -> List[WordTiming]:
    """Group emitted labels into words; a word spans its first character's first frame to its
    last character's last frame (`ends` are inclusive frame indices)."""
    words: List[WordTiming] = []
    space = alphabet.labels.index(alphabet.space) if alphabet.space in alphabet.labels else -1
    current: List[str] = []
    word_start = word_end = 0
    for label, start, end in zip(labels, starts, ends):
        if label == space:
            if current:
                words.append(WordTiming("".join(current), word_start * seconds_per_frame, (word_end + 1) * seconds_per_frame))
            current = []
            continue
        if not current:
            word_start = start
        current.append(alphabet.labels[label])
        word_end = end
    if current:
        words.append(WordTiming("".join(current), word_start * seconds_per_frame, (word_end + 1) * seconds_per_frame))
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
            labels: List[int] = []
            starts: List[int] = []
            ends: List[int] = []
            previous = 0
            for frame, label in enumerate(path):
                if label != 0 and label == previous:
                    ends[-1] = frame
                elif label != 0:
                    labels.append(label)
                    starts.append(frame)
                    ends.append(frame)
                previous = label
            text = " ".join(self.alphabet.decode(labels).split())
            words = words_from_frames(labels, starts, ends, self.alphabet, self.seconds_per_frame)
            hypotheses.append(Hypothesis(text, words, float(scores[row, :length].sum())))
        return hypotheses


def build_decoder(config: Union[DecoderConfig, str], alphabet: Alphabet, seconds_per_frame: float) -> GreedyDecoder:
    """The decoder a DecoderConfig (or just its type name) asks for."""
    kind = config if isinstance(config, str) else config.type
    if kind == "greedy":
        return GreedyDecoder(alphabet, seconds_per_frame)
    raise ValueError(f"unknown decoder {kind!r}; available: greedy")


def move_word_times(words: Sequence[WordTiming], offset: float) -> List[WordTiming]:
    return [WordTiming(w.word, w.start + offset, w.end + offset) for w in words]

