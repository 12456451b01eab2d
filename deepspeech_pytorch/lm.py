"""Language models for beam search: text -> normalised sentences -> KenLM n-gram (ARPA, then binary) + lexicon.

The sentences are normalised by the project's Alphabet, exactly as transcripts are, so the LM's words
are the words the acoustic model spells. A word LM serves lexicon-constrained search (with the
lexicon written beside it); a character LM (`unit="char"`: each label a word, `|` for the space)
serves lexicon-free search. KenLM's lmplz and build_binary come from tools/build_kenlm.sh.
"""

from __future__ import annotations

import collections
import gzip
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Counter, Dict, Iterable, Iterator, List, Optional, Sequence

from deepspeech_pytorch.decoders import MAX_LM_ORDER, WORD_SEPARATOR
from deepspeech_pytorch.labels import Alphabet, TranscriptError

logger = logging.getLogger(__name__)

KENLM_BIN_ENV = "KENLM_BIN"  # a folder holding lmplz and build_binary
CACHE_BIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "kenlm", "bin")
UNITS = ("word", "char")
DEFAULT_ORDER = {"word": 4, "char": MAX_LM_ORDER}
BINARY_TYPES = ("probing", "trie")  # KenLM's data structures: probing is faster, trie smaller
QUANTIZE_BITS = range(2, 26)  # build_binary's -q/-b: bits per stored probability and backoff (trie only)
# A line of running text holds several sentences: cut after . ! ? when a capital letter follows.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z])")
_FALLBACK = re.compile(r"Substituting fallback discounts for order (\d+)")  # 0: unigrams


class KenLMMissing(FileNotFoundError):
    """KenLM's lmplz or build_binary, or its Python module, is not installed."""


class LMBuildError(RuntimeError):
    """lmplz or build_binary failed; the message ends with the tool's own output."""


def find_kenlm_binary(name: str) -> str:
    """Path of KenLM's `name` (lmplz, build_binary): in $KENLM_BIN, the build cache, then PATH."""
    folders = [os.environ[KENLM_BIN_ENV]] if os.environ.get(KENLM_BIN_ENV) else []
    for folder in folders + [CACHE_BIN]:
        path = os.path.join(folder, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return found
    where = ", ".join([f"${KENLM_BIN_ENV}={folders[0]}"] if folders else []) or f"${KENLM_BIN_ENV} (unset)"
    raise KenLMMissing(f"KenLM's {name} was not found in {where}, {CACHE_BIN} or PATH: "
                       f"run tools/build_kenlm.sh to build it")


def read_sentences(paths: Sequence[str]) -> Iterator[str]:
    """Raw sentences from text files (.gz too; several sentences per line are cut apart) and from
    JSON-lines manifests (.jsonl: the "text" of each line)."""
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"text file not found: {path}")
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            manifest = path.endswith((".jsonl", ".jsonl.gz"))
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                if manifest:
                    try:
                        yield str(json.loads(line)["text"])
                    except (ValueError, KeyError, TypeError):
                        raise ValueError(f"{path} line {number}: expected a JSON object with \"text\"") from None
                    continue
                yield from (piece for piece in _SENTENCE_END.split(line.strip()) if piece.strip())


def spell(text: str) -> str:
    """A normalised sentence as a character LM's words: 'the cat' -> 't h e | c a t'."""
    return " ".join(WORD_SEPARATOR if ch == " " else ch for ch in text)


@dataclass
class Corpus:
    """What normalisation kept: sentence and word counts and each word's frequency."""
    sentences: int = 0
    skipped: int = 0  # sentences with characters outside the alphabet, left out whole
    words: int = 0
    counts: Counter = field(default_factory=collections.Counter)


def normalize_sentences(raw: Iterable[str], alphabet: Alphabet, corpus: Optional[Corpus] = None) -> Iterator[str]:
    """Alphabet.normalize each sentence; a sentence that would lose characters outside the alphabet is
    skipped rather than changed (counted in corpus.skipped)."""
    strict = Alphabet(alphabet.labels, alphabet.space, oov_policy="error")
    corpus = corpus if corpus is not None else Corpus()
    for sentence in raw:
        try:
            text = strict.normalize(sentence)
        except TranscriptError:
            corpus.skipped += 1
            continue
        if text:
            words = text.split()
            corpus.sentences += 1
            corpus.words += len(words)
            corpus.counts.update(words)
            yield text


def write_corpus(paths: Sequence[str], output_path: str, alphabet: Alphabet, unit: str = "word") -> Corpus:
    """Normalised sentences, one per line, as words or (unit="char") as spelled characters."""
    corpus = Corpus()
    with open(output_path, "w", encoding="utf-8") as out:
        for text in normalize_sentences(read_sentences(paths), alphabet, corpus):
            out.write((spell(text) if unit == "char" else text) + "\n")
    if corpus.sentences == 0:
        raise ValueError(f"no usable sentences in {', '.join(paths)} ({corpus.skipped} had characters "
                         f"outside the alphabet)")
    return corpus


def vocabulary(counts: Counter, max_words: Optional[int] = None, keep: Iterable[str] = ()) -> List[str]:
    """Words by falling frequency (ties alphabetical), the max_words most frequent when given, followed by
    the words of `keep` that the corpus has but the limit left out (e.g. every word of the training transcripts)."""
    words = sorted(counts, key=lambda word: (-counts[word], word))
    if not max_words:
        return words
    chosen = words[:max_words]
    keep = set(keep) - set(chosen)
    return chosen + [word for word in words[max_words:] if word in keep]


def write_lexicon(words: Iterable[str], path: str) -> int:
    """flashlight's lexicon format, one word a line: `cat<TAB>c a t |`. Returns the number of words."""
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for word in words:
            handle.write(f"{word}\t{' '.join(word)} {WORD_SEPARATOR}\n")
            count += 1
    return count


def _run(command: List[str], what: str) -> str:
    """Run a KenLM tool; its output (progress and warnings go to stderr) is returned or put in the error."""
    logger.info("running %s", " ".join(command))
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise LMBuildError(f"{what} failed (exit {result.returncode}): {' '.join(command)}\n{tail}")
    return result.stderr


def check_prune(prune: Sequence[int], order: int) -> List[int]:
    """lmplz's --prune: count thresholds per order from unigrams on, non-decreasing, unigrams never pruned."""
    prune = [int(value) for value in prune]
    if not prune:
        return prune
    if len(prune) > order:
        raise ValueError(f"prune has {len(prune)} thresholds but the order is {order}")
    if prune[0] != 0:
        raise ValueError("prune: unigrams cannot be pruned; the first threshold must be 0")
    if any(b < a for a, b in zip(prune, prune[1:])) or any(value < 0 for value in prune):
        raise ValueError(f"prune thresholds must be non-negative and non-decreasing, got {prune}")
    return prune


def run_lmplz(corpus_path: str, arpa_path: str, order: int, prune: Sequence[int] = (), memory: str = "1G",
              vocabulary_path: Optional[str] = None, temp_dir: Optional[str] = None) -> List[int]:
    """Estimate a modified Kneser-Ney ARPA model. --discount_fallback is always on: it acts only when
    the closed-form discounts cannot be estimated (tiny corpora, no singletons), and then the orders
    it applied to are returned (and logged)."""
    command = [find_kenlm_binary("lmplz"), "-o", str(order), "-S", memory, "-T", temp_dir or tempfile.gettempdir(),
               "--text", corpus_path, "--arpa", arpa_path, "--discount_fallback"]
    if prune:
        command += ["--prune", *map(str, prune)]
    if vocabulary_path:
        command += ["--limit_vocab_file", vocabulary_path]
    log = _run(command, "lmplz")
    fallback = sorted({int(order) + 1 for order in _FALLBACK.findall(log)})  # lmplz counts orders from 0
    if fallback:
        logger.warning("corpus too small to estimate Kneser-Ney discounts for order(s) %s: lmplz used its "
                       "fallback discounts; fine for tests, use more text for a real model", fallback)
    return fallback


def check_quantize(bits: Optional[int], kind: str) -> Optional[int]:
    """Quantized probabilities exist only in KenLM's trie; 8 bits costs next to nothing in accuracy."""
    if bits is None:
        return None
    if kind != "trie":
        raise ValueError(f"quantizing needs the trie binary type, not {kind!r} (--binary-type trie)")
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in QUANTIZE_BITS:
        raise ValueError(f"quantize bits must be {QUANTIZE_BITS.start} to {QUANTIZE_BITS.stop - 1}, not {bits}")
    return bits


def build_binary(arpa_path: str, binary_path: str, kind: str = "probing", temp_dir: Optional[str] = None,
                 quantize_bits: Optional[int] = None) -> None:
    """ARPA -> KenLM binary (loads in a fraction of the time, memory-mapped). quantize_bits stores each
    probability and backoff in that many bits (trie only) and compresses the trie's pointers (lossless,
    `-a 64`): the bundled 5-gram takes 14 MB instead of 31."""
    if kind not in BINARY_TYPES:
        raise ValueError(f"binary type must be one of {BINARY_TYPES}, not {kind!r}")
    quantize_bits = check_quantize(quantize_bits, kind)
    command = [find_kenlm_binary("build_binary")]
    if quantize_bits is not None:
        # -a: the most bits the pointer-offset array may take (KenLM's usage suggests up to 255)
        command += ["-q", str(quantize_bits), "-b", str(quantize_bits), "-a", "64"]
    if kind == "trie":
        command += ["-T", temp_dir or tempfile.gettempdir()]
    _run(command + [kind, arpa_path, binary_path], "build_binary")


def perplexity(model_path: str, sentences: Iterable[str], unit: str = "word") -> float:
    """Corpus perplexity of normalised sentences (end-of-sentence included), via the kenlm module."""
    try:
        import kenlm
    except ImportError:
        raise KenLMMissing("the kenlm Python module is not installed: run tools/build_kenlm.sh") from None
    model = kenlm.Model(model_path)
    total, tokens = 0.0, 0
    for text in sentences:
        line = spell(text) if unit == "char" else text
        total += model.score(line, bos=True, eos=True)
        tokens += len(line.split()) + 1
    if tokens == 0:
        raise ValueError("perplexity needs at least one sentence")
    return 10.0 ** (-total / tokens)


@dataclass
class LanguageModel:
    """The files build_language_model wrote and what went into them."""
    unit: str
    order: int
    arpa: str
    binary: Optional[str]
    lexicon: str
    corpus: str
    sentences: int
    skipped: int
    words: int
    vocabulary: int
    fallback_discounts: List[int] = field(default_factory=list)
    quantize_bits: Optional[int] = None
    dev_perplexity: Optional[float] = None
    seconds: float = 0.0

    @property
    def path(self) -> str:
        """The model to decode with: the binary when built."""
        return self.binary or self.arpa

    def decoder_overrides(self) -> str:
        """The test.py / transcribe.py settings that use this model."""
        overrides = f"decoder.type=beam decoder.lm.path={self.path}"
        return overrides + (f" decoder.lm.lexicon_path={self.lexicon}" if self.unit == "word" else "")

    def to_dict(self) -> Dict:
        return {**asdict(self), "path": self.path, "decoder_overrides": self.decoder_overrides()}


def build_language_model(text_paths: Sequence[str], output_dir: str, order: Optional[int] = None, unit: str = "word",
                         prune: Sequence[int] = (), max_words: Optional[int] = None, binary: bool = True,
                         binary_type: str = "probing", alphabet: Optional[Alphabet] = None, memory: str = "1G",
                         dev_paths: Sequence[str] = (), name: str = "lm",
                         quantize_bits: Optional[int] = None, keep_words: Iterable[str] = ()) -> LanguageModel:
    """Text files -> {name}.corpus.txt -> {name}.arpa -> {name}.bin, plus {name}.lexicon.txt and {name}.json.

    unit "word" (for lexicon search) or "char" (for lexicon-free search); order 2..6 (default 4 for
    words, 6 for characters); prune: lmplz
    count thresholds per order (e.g. [0, 0, 1] drops singleton trigrams); max_words keeps the most
    frequent words in the LM and lexicon; memory: lmplz's sort memory (e.g. "1G", "20%");
    quantize_bits: bits per probability in a trie binary (e.g. 8), None to store them whole; keep_words:
    words kept in the LM and lexicon beyond max_words when the corpus has them (the training transcripts' words).
    """
    started = time.monotonic()
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, not {unit!r}")
    order = order or DEFAULT_ORDER[unit]
    if not 2 <= order <= MAX_LM_ORDER:
        raise ValueError(f"order must be 2 to {MAX_LM_ORDER} (the most flashlight-text's KenLM reads), not {order}")
    prune = check_prune(prune, order)
    if quantize_bits is not None and not binary:
        raise ValueError("quantizing applies to the binary; it cannot be combined with no binary")
    quantize_bits = check_quantize(quantize_bits, binary_type)
    if not text_paths:
        raise ValueError("no text files given")
    alphabet = alphabet or Alphabet()
    os.makedirs(output_dir, exist_ok=True)
    stem = os.path.join(output_dir, name)
    corpus_path, arpa_path, lexicon_path = f"{stem}.corpus.txt", f"{stem}.arpa", f"{stem}.lexicon.txt"
    binary_path = f"{stem}.bin" if binary else None
    find_kenlm_binary("lmplz")  # fail before the corpus pass, not after
    if binary:
        find_kenlm_binary("build_binary")

    corpus = write_corpus(text_paths, corpus_path, alphabet, unit)
    words = vocabulary(corpus.counts, max_words, keep_words)
    logger.info("%d sentences, %d words, %d distinct (%d sentences skipped: characters outside the alphabet)",
                corpus.sentences, corpus.words, len(corpus.counts), corpus.skipped)
    write_lexicon(words, lexicon_path)
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".lmplz-") as temp_dir:
        vocabulary_path = None
        if max_words and unit == "word" and len(words) < len(corpus.counts):
            vocabulary_path = os.path.join(temp_dir, "vocabulary.txt")
            with open(vocabulary_path, "w", encoding="utf-8") as handle:
                handle.write("\n".join(words) + "\n")
        fallback = run_lmplz(corpus_path, arpa_path, order, prune, memory, vocabulary_path, temp_dir)
        if binary_path:
            build_binary(arpa_path, binary_path, binary_type, temp_dir, quantize_bits)
    model = LanguageModel(unit, order, arpa_path, binary_path, lexicon_path, corpus_path, corpus.sentences,
                          corpus.skipped, corpus.words, len(words), fallback, quantize_bits)
    if dev_paths:
        dev = list(normalize_sentences(read_sentences(dev_paths), alphabet))
        model.dev_perplexity = round(perplexity(model.path, dev, unit), 3)
    model.seconds = round(time.monotonic() - started, 2)
    with open(f"{stem}.json", "w", encoding="utf-8") as handle:
        json.dump(model.to_dict(), handle, indent=2)
    return model

