"""CTC decoders: per-frame label scores -> text with word start/end times in seconds.

GreedyDecoder takes the best label per frame. BeamSearchDecoder runs flashlight-text's CTC beam
search with an optional KenLM n-gram model, in one of two modes:

- lexicon-free (no lexicon): any spelling can come out; the LM, if given, must be a character LM
  (its words are the alphabet's labels, with `|` for the space), as `data/build_lm.py --unit char`
  writes. flashlight scores an LM once per emitted label, so a word LM cannot serve here.
- lexicon-constrained (`lexicon_path`): only words of the lexicon come out; the LM is a word LM
  (or a character LM) and scores each word as it is completed.

Without an LM the beam search still runs (flashlight's zero LM): a plain CTC prefix search, or a
search restricted to the lexicon's words.

Log-probabilities come in as torch tensors (the torch backend) or numpy arrays (the onnxruntime backend);
both are read as float32 numpy, so decoding never imports torch.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol, Sequence, Tuple, Union

import numpy as np

from deepspeech_pytorch.configs import DecoderConfig, LanguageModelConfig
from deepspeech_pytorch.labels import Alphabet

if TYPE_CHECKING:  # decoding needs no torch: tensors and numpy arrays alike are read as numpy
    from torch import Tensor

Array = Union[np.ndarray, "Tensor"]
WORD_SEPARATOR = "|"  # the alphabet's space as flashlight, lexicons and character LMs spell it
MAX_LM_ORDER = 6  # the KenLM inside flashlight-text reads n-gram models up to this order
LOG10_TO_LN = math.log(10.0)  # KenLM scores are log10; acoustic scores are natural logs
UNKNOWN_WORD = "<unk>"
_PROBE = "<deepspeech-probe>"  # a word no model contains: its score is KenLM's unknown-word score
_FORBIDDEN = -1.0e9  # log-probability of the labels the appended word-closing frame rules out


@dataclass
class WordTiming:
    word: str
    start: float  # seconds
    end: float  # seconds


@dataclass
class Hypothesis:
    text: str
    words: List[WordTiming] = field(default_factory=list)
    score: Optional[float] = None  # greedy: sum of best-path frame log-probs; beam: search score (see below)


class DecoderError(ValueError):
    """A decoder that cannot be built as configured: a missing package, LM or lexicon file."""


def as_numpy(log_probs: Array) -> np.ndarray:
    """Log-probabilities (a torch tensor on any device and of any float type, or an array) as float32 numpy."""
    if hasattr(log_probs, "detach"):  # a torch tensor, read without importing torch here
        log_probs = log_probs.detach().cpu().float().numpy()
    return np.asarray(log_probs, dtype=np.float32)


def as_lengths(lengths: Array) -> np.ndarray:
    """Valid frames per utterance (a tensor or array of shape (batch,)) as int64 numpy."""
    if hasattr(lengths, "detach"):
        lengths = lengths.detach().cpu().numpy()
    return np.asarray(lengths, dtype=np.int64).reshape(-1)


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


def collapse_path(path: Union[Sequence[int], np.ndarray], blank: int = 0) -> Tuple[List[int], List[int], List[int]]:
    """CTC collapse of a per-frame label path (merge repeats, drop blanks): the emitted labels with
    each one's first and last frame (inclusive). Vectorised: runs of one label are found at once."""
    path = np.asarray(path, dtype=np.int64).reshape(-1)
    if path.size == 0:
        return [], [], []
    changes = np.flatnonzero(path[1:] != path[:-1]) + 1
    run_starts = np.concatenate(([0], changes))
    run_ends = np.concatenate((changes - 1, [path.size - 1]))
    keep = path[run_starts] != blank
    return path[run_starts][keep].tolist(), run_starts[keep].tolist(), run_ends[keep].tolist()


class GreedyDecoder:
    """Best path: argmax per frame, merge repeats, drop blanks."""

    def __init__(self, alphabet: Alphabet, seconds_per_frame: float):
        self.alphabet = alphabet
        self.seconds_per_frame = seconds_per_frame

    def decode(self, log_probs: Array, lengths: Array) -> List[Hypothesis]:
        """log_probs: (batch, time, classes), a tensor or numpy array; lengths: (batch,) valid output frames."""
        log_probs, lengths = as_numpy(log_probs), as_lengths(lengths)
        best = log_probs.argmax(axis=-1)  # the first of equal maxima, as torch.max
        scores = np.take_along_axis(log_probs, best[..., None], axis=-1)[..., 0]
        hypotheses = []
        for row in range(best.shape[0]):
            length = int(lengths[row])
            labels, starts, ends = collapse_path(best[row, :length])
            text = " ".join(self.alphabet.decode(labels).split())
            words = words_from_frames(labels, starts, ends, self.alphabet, self.seconds_per_frame)
            hypotheses.append(Hypothesis(text, words, float(scores[row, :length].sum())))
        return hypotheses

    def decode_n_best(self, log_probs: Array, lengths: Array) -> List[List[Hypothesis]]:
        """BeamSearchDecoder's interface: alternatives per utterance, here just the one best path."""
        return [[hypothesis] for hypothesis in self.decode(log_probs, lengths)]


def _flashlight() -> Tuple[Any, Any, Any]:
    """flashlight-text's decoder module, Dictionary and KenLM, imported only when beam search is asked for."""
    try:
        from flashlight.lib.text import decoder
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary
    except ImportError:
        raise DecoderError("beam search needs flashlight-text: pip install 'deepspeech-pytorch[lm]' "
                           "(or pip install flashlight-text)") from None
    return decoder, Dictionary, KenLM


def read_lexicon(path: str, alphabet: Alphabet) -> List[Tuple[str, List[str]]]:
    """Read a lexicon: one `word<TAB>spelling` per line, the spelling's tokens separated by spaces and
    `|` standing for the word separator (`cat<TAB>c a t |`). A missing trailing `|` is added; a word
    may have several lines (spellings). Returns (word, tokens) pairs in file order."""
    if not os.path.isfile(path):
        raise DecoderError(f"lexicon not found: {path}")
    known = {WORD_SEPARATOR if label == alphabet.space else label for label in alphabet.labels[1:]}
    entries: List[Tuple[str, List[str]]] = []
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")  # one read: a bundled lexicon has ~50k lines, read at every start
    for number, line in enumerate(lines, 1):
        word, tab, spelling = line.partition("\t")
        tokens = spelling.split()
        word = word.strip()
        if tab and word and tokens and "\t" not in spelling and known.issuperset(tokens) \
                and WORD_SEPARATOR not in tokens[:-1]:  # the usual line, checked in one go
            if tokens[-1] != WORD_SEPARATOR:
                tokens.append(WORD_SEPARATOR)
            if len(tokens) >= 2:
                entries.append((word, tokens))
                continue
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split(None, 1)
        if len(parts) != 2 or not parts[0].strip() or not parts[1].split():
            raise DecoderError(f"{path} line {number}: expected 'word<TAB>spelling', got {line.strip()!r}")
        word, tokens = parts[0].strip(), parts[1].split()
        unknown = sorted(set(tokens) - known)
        if unknown:
            raise DecoderError(f"{path} line {number}: spelling of {word!r} uses tokens outside the "
                               f"alphabet: {' '.join(unknown)}")
        if tokens[-1] != WORD_SEPARATOR:
            tokens.append(WORD_SEPARATOR)
        if WORD_SEPARATOR in tokens[:-1] or len(tokens) < 2:
            raise DecoderError(f"{path} line {number}: the spelling of {word!r} must be letters, "
                               f"optionally ended by '{WORD_SEPARATOR}'")
        entries.append((word, tokens))
    if not entries:
        raise DecoderError(f"{path}: the lexicon is empty")
    return entries


DEFAULT_ALPHA = 0.5  # LM weight when neither the user nor the model's LM settings give one
DEFAULT_BETA = 1.0  # word bonus, likewise
DEFAULT_BEAM_SIZE = 100  # hypotheses kept per frame, likewise


class BeamSearchDecoder:
    """CTC beam search with an optional KenLM n-gram model and lexicon, by flashlight-text.

    A hypothesis scores  sum of frame log-probs + alpha * ln P_LM + beta * words  (P_LM from KenLM,
    converted from log10 to natural log so alpha weighs it on the acoustic scale, as ctcdecode and
    pyctcdecode do). beam_threshold drops hypotheses scoring that far below the best at a frame;
    tokens_per_frame limits the labels tried per frame to the most probable ones.

    log_probs are (batch, time, classes) log-softmax outputs, blank at index 0; the alphabet's space
    separates words. With a lexicon beta is a bonus per word. Without one the LM must be a character
    LM (see the module docstring) and beta is flashlight's bonus for each frame that emits the word
    separator: it favours more words, and also longer pauses, which do not change the text.
    Alignments of the same prefix are merged by log-adding their scores (proper CTC prefix search).
    """

    def __init__(self, alphabet: Alphabet, seconds_per_frame: float, lm_path: Optional[str] = None,
                 lexicon_path: Optional[str] = None, alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA,
                 beam_size: int = DEFAULT_BEAM_SIZE,
                 beam_threshold: float = 25.0, tokens_per_frame: int = 29, n_best: int = 1):
        if alphabet.space not in alphabet.labels:
            raise DecoderError("beam search needs a word separator: the alphabet has no space label")
        if beam_size < 1 or tokens_per_frame < 1 or n_best < 1:
            raise DecoderError("beam_size, tokens_per_frame and n_best must be at least 1")
        self.alphabet = alphabet
        self.seconds_per_frame = seconds_per_frame
        self.alpha, self.beta = float(alpha), float(beta)
        self.beam_size, self.beam_threshold = int(beam_size), float(beam_threshold)
        self.tokens_per_frame, self.n_best = int(tokens_per_frame), int(n_best)
        self.lm_path, self.lexicon_path = lm_path, lexicon_path
        self._fl, dictionary_class, self._kenlm = _flashlight()
        self.space = alphabet.labels.index(alphabet.space)
        tokens = [WORD_SEPARATOR if label == alphabet.space else label for label in alphabet.labels]
        lexicon = read_lexicon(lexicon_path, alphabet) if lexicon_path else []
        # A word's label in the search is its index in self.words; the LM's dictionary maps labels
        # (or, for a character LM, token ids) to its vocabulary. Two extra entries, '|' and a probe
        # no model contains, tell a character LM from a word LM (see _load_lm).
        self.words: List[str] = list(dict.fromkeys(word for word, _ in lexicon))
        if UNKNOWN_WORD not in self.words:
            self.words.append(UNKNOWN_WORD)
        self._unknown = self.words.index(UNKNOWN_WORD)
        self.lm, self.token_lm = None, False
        if lm_path:
            if lexicon_path:
                self.lm, self.token_lm = self._load_lm(lm_path, dictionary_class, self.words)
            if not lexicon_path or self.token_lm:
                self.lm, self.token_lm = self._load_lm(lm_path, dictionary_class, tokens)
            if not lexicon_path and not self.token_lm:
                raise DecoderError(f"{lm_path} is a word LM: lexicon-free search needs a character LM "
                                   f"(data/build_lm.py --unit char); for a word LM give lm.lexicon_path "
                                   f"(data/build_lm.py writes one beside the model)")
        self.trie = self._build_trie(lexicon, tokens) if lexicon_path else None

    def _load_lm(self, path: str, dictionary_class: Any, entries: List[str]) -> Tuple[Any, bool]:
        """KenLM over `entries` and whether it is a character LM: one knows '|', while a word LM
        built from normalised text never does, so there '|' scores as the unknown word."""
        if not os.path.isfile(path):
            raise DecoderError(f"language model not found: {path}")
        probes = [entry for entry in (WORD_SEPARATOR, _PROBE) if entry not in entries]
        try:
            lm = self._kenlm(path, dictionary_class(list(entries) + probes))
        except RuntimeError as error:
            lines = str(error).strip().splitlines()
            detail = lines[-1] if lines else type(error).__name__
            if "max_order" in str(error) or "compiled" in str(error):
                detail = f"its order is above {MAX_LM_ORDER}, the most flashlight-text's KenLM reads"
            raise DecoderError(f"{path}: cannot load as a KenLM model (ARPA or binary): {detail}") from None
        start = lm.start(False)
        separator = lm.score(start, (list(entries) + probes).index(WORD_SEPARATOR))[1]
        unknown = lm.score(start, len(entries) + len(probes) - 1)[1]
        return lm, separator != unknown

    def _build_trie(self, lexicon: List[Tuple[str, List[str]]], tokens: List[str]) -> Any:
        """The lexicon's spellings as a trie over token ids. Words are scored by the LM when complete,
        with no look-ahead inside them: flashlight can smear each word's unigram score over its prefixes,
        but a context-free score lets frequent words crowd out words that are rare overall and likely in
        context (GRID validation set, same weights: 17.1% WER with it, 14.9% without)."""
        trie = self._fl.Trie(len(tokens), self.space)
        labels = {word: i for i, word in enumerate(self.words)}
        insert = trie.insert
        if len(tokens) < 256 and all(len(token) == 1 for token in tokens):  # one character a token: ids in C
            ids = str.maketrans({token: chr(i) for i, token in enumerate(tokens)})
            for word, spelling in lexicon:
                insert(list("".join(spelling).translate(ids).encode("latin-1")), labels[word], 0.0)
            return trie
        index = {token: i for i, token in enumerate(tokens)}
        for word, spelling in lexicon:
            insert([index[token] for token in spelling], labels[word], 0.0)
        return trie

    @property
    def mode(self) -> str:
        lm = "no LM" if self.lm is None else ("character LM" if self.token_lm else "word LM")
        return f"{'lexicon' if self.trie is not None else 'lexicon-free'}, {lm}"

    def with_weights(self, alpha: float, beta: float) -> "BeamSearchDecoder":
        """A decoder sharing this one's LM and lexicon with other LM weight and word bonus (for tuning)."""
        other = copy.copy(self)
        other.alpha, other.beta = float(alpha), float(beta)
        return other

    def new_search(self) -> Any:
        """A fresh flashlight decoder (they keep per-utterance state), so decoding is thread-safe."""
        fl = self._fl
        lm = self.lm if self.lm is not None else fl.ZeroLM()
        weight = self.alpha * LOG10_TO_LN
        token_count = len(self.alphabet)
        if self.trie is None:
            options = fl.LexiconFreeDecoderOptions(
                beam_size=self.beam_size, beam_size_token=min(self.tokens_per_frame, token_count),
                beam_threshold=self.beam_threshold, lm_weight=weight, sil_score=self.beta, log_add=True,
                criterion_type=fl.CriterionType.CTC)
            return fl.LexiconFreeDecoder(options, lm, self.space, 0, [])
        options = fl.LexiconDecoderOptions(
            beam_size=self.beam_size, beam_size_token=min(self.tokens_per_frame, token_count),
            beam_threshold=self.beam_threshold, lm_weight=weight, word_score=self.beta, unk_score=-math.inf,
            sil_score=0.0, log_add=True, criterion_type=fl.CriterionType.CTC)
        return fl.LexiconDecoder(options, self.trie, lm, self.space, 0, self._unknown, [], self.token_lm)

    def decode(self, log_probs: Array, lengths: Array) -> List[Hypothesis]:
        """log_probs: (batch, time, classes); lengths: (batch,) valid output frames. The best per utterance."""
        return [alternatives[0] for alternatives in self.decode_n_best(log_probs, lengths)]

    def decode_n_best(self, log_probs: Array, lengths: Array) -> List[List[Hypothesis]]:
        """Up to n_best distinct transcripts per utterance, best first."""
        log_probs, lengths = as_numpy(log_probs), as_lengths(lengths)
        if log_probs.ndim != 3 or log_probs.shape[-1] != len(self.alphabet):
            raise ValueError(f"expected log-probabilities (batch, time, {len(self.alphabet)}), "
                             f"got {tuple(log_probs.shape)}")
        return [self.decode_one(log_probs[row, : int(lengths[row])]) for row in range(log_probs.shape[0])]

    def decode_one(self, log_probs: Array) -> List[Hypothesis]:
        """One utterance: log_probs (time, classes), a tensor or numpy array."""
        emissions = as_numpy(log_probs)
        frames = emissions.shape[0]
        if frames == 0:
            return [Hypothesis("", [], 0.0)]
        if self.trie is not None:
            # A lexicon word ends on '|', and a CTC model emits no space after the last word: one
            # extra frame that can only be '|' lets the last word end there. It costs nothing.
            closing = np.full((1, emissions.shape[1]), _FORBIDDEN, dtype=np.float32)
            closing[0, self.space] = 0.0
            emissions = np.concatenate([emissions, closing])
        emissions = np.ascontiguousarray(emissions, dtype=np.float32)  # flashlight reads the raw float buffer
        results = self.new_search().decode(emissions.ctypes.data, emissions.shape[0], emissions.shape[1])
        alternatives: List[Hypothesis] = []
        seen = set()
        for result in results:
            hypothesis = self.hypothesis(result, frames)
            if hypothesis.text in seen:
                continue
            seen.add(hypothesis.text)
            alternatives.append(hypothesis)
            if len(alternatives) == self.n_best:
                break
        return alternatives or [Hypothesis("", [], None)]

    def hypothesis(self, result: Any, frames: int) -> Hypothesis:
        """flashlight's result lists a token (and a word label, or -1) per search step: step 0 is
        the start, steps 1..T the frames, then the closing steps."""
        path = list(result.tokens)[1: frames + 1]
        labels, starts, ends = collapse_path(path)
        words = words_from_frames(labels, starts, ends, self.alphabet, self.seconds_per_frame)
        if self.trie is None:
            text = " ".join(self.alphabet.decode(labels).split())
        else:
            spoken = [self.words[label] for label in result.words if label >= 0]
            text = " ".join(spoken)
            if len(spoken) == len(words):  # the lexicon's word, which may differ from its spelling
                words = [WordTiming(word, timing.start, timing.end) for word, timing in zip(spoken, words)]
        return Hypothesis(text, words, float(result.score))


class Decoder(Protocol):
    """What every decoder offers: log-probabilities (batch, time, classes) and valid lengths (batch,) in,
    one hypothesis per utterance (or the n best) out, with word times in seconds from the first frame."""

    def decode(self, log_probs: Array, lengths: Array) -> List[Hypothesis]: ...

    def decode_n_best(self, log_probs: Array, lengths: Array) -> List[List[Hypothesis]]: ...


@dataclass(frozen=True)
class ModelLanguageModel:
    """The language model a model folder ships (`<stem>.lm.json`): its files and tuned alpha/beta, and the
    beam size they were tuned with, if recorded."""

    settings: LanguageModelConfig
    beam_size: Optional[int] = None


def resolve_decoder(config: Union[DecoderConfig, str], model_lm: Optional[ModelLanguageModel] = None) -> DecoderConfig:
    """The one place a decoder request meets the model's own LM. A type name stands for its default config.
    Beam search given no LM files uses the model's LM; alpha/beta and beam size left unset take its tuned
    values; `lm.use_model_lm=false` searches without it."""
    config = DecoderConfig(type=config) if isinstance(config, str) else config
    lm = config.lm
    if model_lm is None or config.type != "beam" or lm.path is not None or lm.lexicon_path is not None \
            or not lm.use_model_lm:
        return config
    own = model_lm.settings
    lm = replace(own, alpha=own.alpha if lm.alpha is None else lm.alpha, beta=own.beta if lm.beta is None else lm.beta)
    beam_size = model_lm.beam_size if config.beam_size is None else config.beam_size
    return replace(config, lm=lm, beam_size=beam_size)


def decoder_choices(config: DecoderConfig, model_has_lm: bool = False) -> Dict[str, DecoderConfig]:
    """The decoders a service offers for a configured decoder: greedy always; beam when configured with a
    language model, when the model ships one, or explicitly with decoder.type=beam. Raises ValueError when
    the configured type is not among them."""
    choices: Dict[str, DecoderConfig] = {"greedy": replace(config, type="greedy")}
    if config.type == "beam" or config.lm.path or model_has_lm:
        choices["beam"] = replace(config, type="beam")
    if config.type not in choices:
        raise ValueError(f"decoder.type={config.type!r} is not a decoder on offer; choose greedy or beam")
    return choices


def build_decoder(config: Union[DecoderConfig, str], alphabet: Alphabet, seconds_per_frame: float,
                  model_lm: Optional[ModelLanguageModel] = None) -> Decoder:
    """The decoder a DecoderConfig (or just its type name; "beam" alone: no LM) asks for, with the model's own
    LM filled in where the config leaves it to the model (see `resolve_decoder`)."""
    config = resolve_decoder(config, model_lm)
    if config.type == "greedy":
        return GreedyDecoder(alphabet, seconds_per_frame)
    if config.type == "beam":
        alpha = DEFAULT_ALPHA if config.lm.alpha is None else config.lm.alpha
        beta = DEFAULT_BETA if config.lm.beta is None else config.lm.beta
        beam_size = DEFAULT_BEAM_SIZE if config.beam_size is None else config.beam_size
        return BeamSearchDecoder(alphabet, seconds_per_frame, lm_path=config.lm.path,
                                 lexicon_path=config.lm.lexicon_path, alpha=alpha, beta=beta,
                                 beam_size=beam_size, beam_threshold=config.beam_threshold,
                                 tokens_per_frame=config.tokens_per_frame, n_best=config.n_best)
    raise ValueError(f"unknown decoder {config.type!r}; available: greedy, beam")


def move_word_times(words: Sequence[WordTiming], offset: float) -> List[WordTiming]:
    return [WordTiming(w.word, w.start + offset, w.end + offset) for w in words]
