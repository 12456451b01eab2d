"""English text for the beam search's language model: Debian text packages, the training games' script
lines and the synthetic training sentence pool, normalised to the model's alphabet, with every sentence of
the evaluation splits removed.

Unlike `sentences` (text to synthesize, where a sentence the synthesizer might read differently is dropped),
an LM sentence is rewritten into the words a person would say: "Mr." -> "mister", "1984" -> "nineteen
eighty four", "3rd" -> "third", "$5" -> "five dollars". What still has characters outside the alphabet
(placeholders such as "<ship>", symbols, foreign scripts) is dropped whole.

Sources read files of Debian packages under `root` ("/" normally; a fixture folder in the tests), so a
source whose package is missing is named with the `apt-get install` line that provides it.
"""

from __future__ import annotations

import collections
import functools
import gzip
import json
import logging
import os
import re
import shutil
import subprocess
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from tqdm import tqdm

from deepspeech_pytorch.corpora import CorpusError
from deepspeech_pytorch.labels import Alphabet, TranscriptError

logger = logging.getLogger(__name__)

FORTUNE_DIR = "usr/share/games/fortunes"
WORDNET_DIR = "usr/share/wordnet"
GCIDE_FILE = "usr/share/dictd/gcide.dict.dz"
DEVIL_FILE = "usr/share/dictd/devil.dict.dz"
ENDLESS_SKY_DIR = "usr/share/games/endless-sky/data"
CATACLYSM_NPC_DIR = "usr/share/games/cataclysm-dda/json/npcs"
FREEDROID_DIR = "usr/share/freedroidrpg/data"  # dialogs/*.lua under base/ and each storyline act
SWORD_WEB_MODULE = "engWEB2015eb"  # sword-text-web: the World English Bible, read with mod2imp
SWORD_WEB_CONF = "usr/share/sword/mods.d/engWEB2015eb.conf"
BIBLE_ALL_VERSES = "gen1:1-rev22:21"
MIN_CONTAINED_WORDS = 4  # an excluded line this long is also removed where it occurs inside a sentence


class TextUnavailable(CorpusError):
    """A requested text source is not installed; the message names the apt packages that provide it."""


# ---- numbers and abbreviations as spoken --------------------------------------------------------------

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand"), (100, "hundred"))
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}


def spell_cardinal(number: int) -> str:
    """'1234' as words: 'one thousand two hundred thirty four' (up to 999,999,999,999)."""
    if number < 0:
        return "minus " + spell_cardinal(-number)
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + (" " + _ONES[ones] if ones else "")
    for size, name in _SCALES:
        if number >= size:
            high, rest = divmod(number, size)
            return f"{spell_cardinal(high)} {name}" + (f" {spell_cardinal(rest)}" if rest else "")
    raise AssertionError(number)


def spell_ordinal(number: int) -> str:
    """3 -> 'third', 21 -> 'twenty first', 40 -> 'fortieth'."""
    words = spell_cardinal(number).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def spell_year(number: int) -> str:
    """A four-digit year as said: 1984 -> 'nineteen eighty four', 1900 -> 'nineteen hundred', 2005 ->
    'two thousand five'."""
    high, low = divmod(number, 100)
    if low < 10 and high % 10 == 0:  # 2000, 2005, 1007
        return spell_cardinal(number)
    if low == 0:
        return f"{spell_cardinal(high)} hundred"
    return f"{spell_cardinal(high)} {'oh ' + _ONES[low] if low < 10 else spell_cardinal(low)}"


_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "messrs": "messieurs", "st": None}
_ABBREVIATION = re.compile(r"\b(Mr|Mrs|Dr|Messrs|MR|MRS|DR)\.", )
_MONEY = re.compile(r"\$(\d[\d,]*)(?:\.(\d\d))?\b")
_PERCENT = re.compile(r"\b(\d[\d,]*)\s?%")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_NUMBER = re.compile(r"\b\d{1,3}(?:,\d{3})+\b|\b\d+\b")


def _number_words(match: re.Match) -> str:
    text = match.group(0)
    value = int(text.replace(",", ""))
    if "," not in text and len(text) == 4 and 1000 <= value <= 2099:
        return spell_year(value)
    if len(text) > 1 and text.startswith("0"):
        return " ".join(_ONES[int(digit)] for digit in text)  # "007": digit by digit
    return spell_cardinal(value)


def spell_numbers(text: str) -> str:
    """Numbers, ordinals, money and percentages as the words a reader says; other text unchanged."""
    text = _MONEY.sub(lambda m: f"{m.group(1)} dollars" + (f" {int(m.group(2))} cents" if m.group(2) and
                                                          int(m.group(2)) else ""), text)
    text = _PERCENT.sub(lambda m: f"{m.group(1)} percent", text)
    text = _ORDINAL.sub(lambda m: spell_ordinal(int(m.group(1))), text)
    text = _DECIMAL.sub(lambda m: f"{m.group(1)} point {' '.join(_ONES[int(d)] for d in m.group(2))}", text)
    return _NUMBER.sub(_number_words, text)


def expand_abbreviations(text: str) -> str:
    """Titles read as words: 'Mr. Smith' -> 'mister Smith' (their period would otherwise end a sentence)."""
    return _ABBREVIATION.sub(lambda m: _ABBREVIATIONS[m.group(1).lower()], text)


# ---- sentences -----------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+")
_EDGE_APOSTROPHES = re.compile(r"(?<![a-z])'+|'+(?![a-z])")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2026": " ", "\u00a0": " "})


def split_sentences(passage: str) -> List[str]:
    """A passage (paragraph, verse, cookie) cut into sentences after . ! ? (titles expanded first)."""
    passage = " ".join(expand_abbreviations(passage).split())
    return [piece for piece in _SENTENCE_END.split(passage) if piece.strip()]


@functools.lru_cache(maxsize=8)
def _strict(alphabet: Alphabet) -> Alphabet:
    """The alphabet raising on characters outside it, so such a sentence is dropped rather than edited."""
    return Alphabet(alphabet.labels, alphabet.space, oov_policy="error")


def normalize_text(sentence: str, alphabet: Alphabet) -> Optional[str]:
    """One sentence as LM text: numbers spelled, punctuation and quote marks removed, lowercase words of
    the alphabet; None when something outside the alphabet would remain (the sentence is dropped whole)."""
    text = unicodedata.normalize("NFKC", sentence).translate(_QUOTES)
    text = spell_numbers(text)
    try:
        text = _strict(alphabet).normalize(text)
    except TranscriptError:
        return None
    # apostrophes that quote rather than elide ("'hello'") go; the plural possessive ("vampires'") stays
    words = []
    for word in text.split():
        kept = word.strip("'") if not word.endswith("s'") else word.lstrip("'")
        if kept:
            words.append(kept)
    return " ".join(words) or None


# ---- sources -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """A named reader of raw passages from the files of Debian packages under a root folder."""
    name: str
    packages: Tuple[str, ...]
    read: Callable[[str], Iterator[str]]  # root folder -> passages; raises TextUnavailable when missing
    about: str = ""


def _path(root: str, relative: str) -> str:
    return os.path.join(root, relative)


def _missing(source: str, what: str, packages: Sequence[str]) -> TextUnavailable:
    return TextUnavailable(f"text source {source}: {what} not found; install it with: "
                           f"apt-get install {' '.join(packages)}")


def parse_fortunes(content: str) -> Iterator[str]:
    """Cookies of a fortune file (separated by '%' lines), attributions ('-- Mark Twain') removed."""
    for cookie in re.split(r"^%\s*$", content, flags=re.MULTILINE):
        lines = []
        for line in cookie.splitlines():
            if line.strip().startswith("--") or re.match(r"^\s{8,}-", line):
                break
            lines.append(line)
        if lines:
            yield " ".join(lines)


def read_fortunes(root: str) -> Iterator[str]:
    folder = _path(root, FORTUNE_DIR)
    names = sorted(name for name in os.listdir(folder) if not name.endswith((".dat", ".u8"))
                   and os.path.isfile(os.path.join(folder, name))) if os.path.isdir(folder) else []
    if not names:
        raise _missing("fortunes", f"fortune files in {folder}", ("fortunes", "fortunes-min"))
    for name in names:
        with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as handle:
            yield from parse_fortunes(handle.read())


def _wordnet_lines(root: str, source: str) -> Iterator[str]:
    folder = _path(root, WORDNET_DIR)
    paths = [os.path.join(folder, f"data.{part}") for part in ("noun", "verb", "adj", "adv")]
    paths = [path for path in paths if os.path.isfile(path)]
    if not paths:
        raise _missing(source, f"{folder}/data.noun", ("wordnet-base",))
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.startswith(" ") and "|" in line:  # lines starting with a space: licence
                    yield line.split("|", 1)[1]


def read_wordnet_examples(root: str) -> Iterator[str]:
    """Usage examples quoted in WordNet glosses: "he drove the car to work"."""
    for gloss in _wordnet_lines(root, "wordnet-examples"):
        yield from re.findall(r'"([^"]+)"', gloss)


def read_wordnet_glosses(root: str) -> Iterator[str]:
    """WordNet's definitions themselves, without their quoted examples: "a motor vehicle with four wheels"."""
    for gloss in _wordnet_lines(root, "wordnet-glosses"):
        for part in gloss.split('"', 1)[0].split(";"):
            if part.strip():
                yield part.strip()


def _bible_command(name: str, source: str, packages: Sequence[str]) -> str:
    command = shutil.which(name)
    if command is None:
        raise _missing(source, f"the {name} command", packages)
    return command


def parse_bible_kjv(output: str) -> Iterator[str]:
    """Verses printed by `bible -f` ('Ge1:1 In the beginning God created...')."""
    for line in output.splitlines():
        match = re.match(r"^\S+\d+:\d+\s+(.*)$", line)
        if match:
            yield match.group(1)


def read_bible_kjv(root: str) -> Iterator[str]:
    command = _bible_command("bible", "bible-kjv", ("bible-kjv",))
    result = subprocess.run([command, "-f", BIBLE_ALL_VERSES], capture_output=True, text=True, errors="replace",
                            env={**os.environ, "COLUMNS": "100000"})
    if result.returncode != 0 or not result.stdout.strip():
        raise _missing("bible-kjv", f"the King James text (bible said: {result.stderr.strip()[:200]})", ("bible-kjv",))
    yield from parse_bible_kjv(result.stdout)


_NOTE = re.compile(r"<note\b.*?</note>", re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def parse_sword_imp(content: str) -> Iterator[str]:
    """Verses of a SWORD module exported by mod2imp ('$$$Genesis 1:1' then OSIS text); footnotes,
    headings and the chapter-0 front matter left out."""
    keep = False
    for line in content.splitlines():
        if line.startswith("$$$"):
            keep = bool(re.search(r" \d+:[1-9]\d*$", line)) and not re.search(r" 0:\d+$", line)
            continue
        if keep:
            line = re.sub(r"<title\b.*?</title>", " ", _NOTE.sub(" ", line))
            text = " ".join(_TAG.sub(" ", line).split())
            text = re.sub(r"([\u201c\u2018(])\s+", r"\1", re.sub(r"\s+([,.;:!?\u201d\u2019])", r"\1", text))
            if text:
                yield text


def read_bible_web(root: str) -> Iterator[str]:
    packages = ("sword-text-web", "libsword-utils")
    if not os.path.isfile(_path(root, SWORD_WEB_CONF)):
        raise _missing("bible-web", _path(root, SWORD_WEB_CONF), packages)
    command = _bible_command("mod2imp", "bible-web", packages)
    result = subprocess.run([command, SWORD_WEB_MODULE], capture_output=True, text=True, errors="replace")
    if result.returncode != 0 or "$$$" not in result.stdout:
        raise _missing("bible-web", f"the module {SWORD_WEB_MODULE} (mod2imp said: {result.stderr.strip()[:200]})",
                       packages)
    yield from parse_sword_imp(result.stdout)


def _dict_text(root: str, relative: str, source: str, packages: Sequence[str]) -> str:
    path = _path(root, relative)
    if not os.path.isfile(path):
        raise _missing(source, path, packages)
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as handle:
        return handle.read()


_ATTRIBUTION = re.compile(r"\s*--\s*(?=[A-Z])")


def parse_gcide(content: str) -> Tuple[List[str], List[str]]:
    """(definitions, quotations) of GCIDE's dictd text: definitions are the 3-space-indented senses
    ('To renounce upon oath; to forswear.'), quotations the deeper-indented literary examples, authors removed."""
    start = content.find("[1913 Webster]")  # skips the licence preamble
    definitions: List[str] = []
    quotations: List[str] = []
    block: List[str] = []
    kind = ""

    def flush() -> None:
        if block:
            text = " ".join(block)
            if kind == "quote":
                quotations.append(text)
            else:
                text = re.sub(r"\[[^\]]*\]|\{|\}|\([A-Z][a-z]*\.\)", " ", text)  # [Obs.] {links} (Hort.)
                definitions.append(_ATTRIBUTION.split(text, maxsplit=1)[0])
        block.clear()

    header_brackets = 0  # an entry's head line opens [etymology] that may go on over indented lines
    for line in content[max(start, 0):].splitlines():
        indent = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if body and (indent == 0 or header_brackets > 0):
            header_brackets = max(0, header_brackets + body.count("[") - body.count("]"))
            flush()
            continue
        if not body or body.startswith("[") or body.startswith(("Syn:", "Note:")):
            flush()
            continue
        if indent >= 12:
            if kind != "quote":
                flush()
                kind = "quote"
            parts = _ATTRIBUTION.split(body, maxsplit=1)
            block.append(parts[0])
            if len(parts) > 1:
                flush()
        elif indent in (3, 6):
            if kind != "sense":
                flush()
                kind = "sense"
            body = re.sub(r"^\d+\.\s*", "", body)
            block.append(body)
    flush()
    return definitions, quotations


def read_gcide_quotations(root: str) -> Iterator[str]:
    yield from parse_gcide(_dict_text(root, GCIDE_FILE, "gcide-quotations", ("dict-gcide",)))[1]


def read_gcide_definitions(root: str) -> Iterator[str]:
    yield from parse_gcide(_dict_text(root, GCIDE_FILE, "gcide-definitions", ("dict-gcide",)))[0]


_DEVIL_ENTRY = re.compile(r"^[A-Z][A-Z' -]*,\s+[a-z]+\.", re.MULTILINE)  # "ABASEMENT, n."


def parse_devil(content: str) -> Iterator[str]:
    """Paragraphs of Bierce's Devil's Dictionary, the 'WORD, n.' head of each entry removed; the dictd
    header, the licence notice and the preface before the first entry are skipped."""
    first = _DEVIL_ENTRY.search(content)
    for paragraph in re.split(r"\n\s*\n", content[first.start() if first else len(content):]):
        lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
        if not lines:
            continue
        text = " ".join(lines)
        text = re.sub(r"^[A-Z][A-Z' -]+,\s*(?:[a-z]+\.\s*)+", "", text)  # "ABSOLUTE, adj."
        text = re.sub(r"\[[^\]]*\]|\{|\}", " ", text)
        if text.strip():
            yield text


def read_devil(root: str) -> Iterator[str]:
    yield from parse_devil(_dict_text(root, DEVIL_FILE, "devil", ("dict-devil",)))


def parse_endless_sky(content: str) -> Iterator[str]:
    """Conversation text (`...` lines) and quoted descriptions of Endless Sky's data files."""
    for line in content.splitlines():
        body = line.strip()
        if body.startswith("#"):
            continue
        for text in re.findall(r"`([^`]+)`", body):
            yield text
        match = re.match(r'^(?:description|spaceport|dialog)\s+"(.+)"$', body)
        if match:
            yield match.group(1)


def read_endless_sky(root: str) -> Iterator[str]:
    folder = _path(root, ENDLESS_SKY_DIR)
    names = sorted(name for name in os.listdir(folder) if name.endswith(".txt")) if os.path.isdir(folder) else []
    if not names:
        raise _missing("endless-sky", f"{folder}/*.txt", ("endless-sky-data",))
    for name in names:
        with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as handle:
            yield from parse_endless_sky(handle.read())


_CATACLYSM_KEYS = ("dynamic_line", "text", "yes", "no")


def parse_cataclysm(data: object) -> Iterator[str]:
    """Spoken lines of Cataclysm: DDA's NPC dialogue JSON: every string under a dynamic_line, text, yes or no."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in _CATACLYSM_KEYS and isinstance(value, str):
                yield value
            elif key in _CATACLYSM_KEYS and isinstance(value, dict) and isinstance(value.get("str"), str):
                yield value["str"]
            else:
                yield from parse_cataclysm(value)
    elif isinstance(data, list):
        for item in data:
            yield from parse_cataclysm(item)


def read_cataclysm(root: str) -> Iterator[str]:
    folder = _path(root, CATACLYSM_NPC_DIR)
    paths = sorted(os.path.join(top, name) for top, _, names in os.walk(folder) for name in names
                   if name.endswith(".json"))
    if not paths:
        raise _missing("cataclysm", f"{folder}/*.json", ("cataclysm-dda-data",))
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as handle:
            try:
                data = json.load(handle)
            except ValueError:
                logger.warning("cataclysm: %s is not JSON; skipped", path)
                continue
        yield from parse_cataclysm(data)


_LUA_STRING = re.compile(r'_"((?:[^"\\]|\\.)*)"')  # a translatable string: _"I'll keep that in mind."
_MARKUP = re.compile(r"\[/?[a-z]+\]")  # [b]HUD[/b]


def parse_freedroid(content: str) -> Iterator[str]:
    """The translatable strings of a FreedroidRPG dialog script (what the characters and Tux say)."""
    for text in _LUA_STRING.findall(content):
        yield _MARKUP.sub("", text.replace('\\"', '"').replace("\\n", " "))


def read_freedroid(root: str) -> Iterator[str]:
    folder = _path(root, FREEDROID_DIR)
    paths = sorted(os.path.join(top, name) for top, _, names in os.walk(folder) for name in names
                   if name.endswith(".lua") and os.path.basename(top) == "dialogs")
    if not paths:
        raise _missing("freedroidrpg", f"{folder}/.../dialogs/*.lua", ("freedroidrpg-data",))
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as handle:
            yield from parse_freedroid(handle.read())


SOURCES: Dict[str, Source] = {source.name: source for source in (
    Source("fortunes", ("fortunes", "fortunes-min"), read_fortunes, "fortune cookies"),
    Source("wordnet-examples", ("wordnet-base",), read_wordnet_examples, "WordNet usage examples"),
    Source("wordnet-glosses", ("wordnet-base",), read_wordnet_glosses, "WordNet definitions"),
    Source("bible-kjv", ("bible-kjv",), read_bible_kjv, "King James Bible"),
    Source("bible-web", ("sword-text-web", "libsword-utils"), read_bible_web, "World English Bible (modern)"),
    Source("gcide-quotations", ("dict-gcide",), read_gcide_quotations, "literary quotations in GCIDE"),
    Source("gcide-definitions", ("dict-gcide",), read_gcide_definitions, "GCIDE definitions"),
    Source("devil", ("dict-devil",), read_devil, "Bierce's Devil's Dictionary"),
    Source("endless-sky", ("endless-sky-data",), read_endless_sky, "Endless Sky mission conversations"),
    Source("cataclysm", ("cataclysm-dda-data",), read_cataclysm, "Cataclysm: DDA NPC dialogue"),
    Source("freedroidrpg", ("freedroidrpg-data",), read_freedroid, "FreedroidRPG character dialogue"),
)}
# Dictionary definitions (wordnet-glosses, gcide-definitions) are left out by default: on the real-speech
# validation text they raised the LM's perplexity (336 instead of 285) although they add 4 M words.
DEFAULT_SOURCES = ("fortunes", "wordnet-examples", "bible-kjv", "bible-web", "gcide-quotations", "devil",
                   "endless-sky", "cataclysm", "freedroidrpg")


def packages_for(names: Iterable[str]) -> List[str]:
    """The Debian packages the named sources read."""
    return sorted({package for name in names for package in SOURCES[name].packages})


# ---- exclusion -----------------------------------------------------------------------------------------

@dataclass
class Exclusion:
    """Sentences that must never reach the LM: each excluded line, and the lines long enough to be
    searched for inside a sentence (shorter ones, "yes", "not really", are ordinary English)."""
    lines: Set[str] = field(default_factory=set)
    min_contained_words: int = MIN_CONTAINED_WORDS

    @property
    def contained(self) -> Dict[int, Set[Tuple[str, ...]]]:
        by_length: Dict[int, Set[Tuple[str, ...]]] = collections.defaultdict(set)
        for line in self.lines:
            words = tuple(line.split())
            if len(words) >= self.min_contained_words:
                by_length[len(words)].add(words)
        return by_length

    def matcher(self) -> Callable[[str], Optional[str]]:
        """A function: sentence -> 'equal' or 'contains' when it must go, None when it may stay."""
        lines, by_length = frozenset(self.lines), self.contained
        lengths = sorted(by_length)

        def match(sentence: str) -> Optional[str]:
            if sentence in lines:
                return "equal"
            words = sentence.split()
            for length in lengths:
                if length > len(words):
                    break
                grams = by_length[length]
                if any(tuple(words[start:start + length]) in grams for start in range(len(words) - length + 1)):
                    return "contains"
            return None
        return match


def synthetic_heldout_sentences(seed: int = 0, val_fraction: float = 0.05, test_fraction: float = 0.05,
                                alphabet: Optional[Alphabet] = None) -> List[str]:
    """The val and test sentence pools of the synthetic corpus that `data/synthetic.py --seed SEED` builds
    from the Debian text sources: its evaluation sentences, which the same Debian text contains."""
    from deepspeech_pytorch.corpora.sentences import gather_sentences, interleave
    from deepspeech_pytorch.corpora.synthetic import split_text

    pools = split_text(interleave(gather_sentences("debian", Alphabet((alphabet or Alphabet()).labels,
                                                                      oov_policy="error")), seed),
                       val_fraction, test_fraction)
    return sorted({sentence.text for split in ("val", "test") for sentence in pools[split]})


def read_manifest_texts(path: str) -> List[str]:
    """The "text" of each line of a JSON-lines manifest."""
    if not os.path.isfile(path):
        raise CorpusError(f"manifest not found: {path}")
    texts = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                texts.append(str(json.loads(line)["text"]))
            except (ValueError, KeyError, TypeError):
                raise CorpusError(f"{path} line {number}: expected a JSON object with \"text\"") from None
    return texts


def read_text_lines(path: str) -> List[str]:
    if not os.path.isfile(path):
        raise CorpusError(f"text file not found: {path}")
    with open(path, encoding="utf-8", errors="replace") as handle:
        return [line.strip() for line in handle if line.strip()]


def exclusion_from(paths: Sequence[str], alphabet: Alphabet, min_contained_words: int = MIN_CONTAINED_WORDS,
                   extra_lines: Iterable[str] = ()) -> Exclusion:
    """The excluded lines of manifests (.jsonl: their text), text files (one line each) and extra_lines,
    normalised."""
    lines = {text for text in (normalize_text(line, alphabet) for line in extra_lines) if text}
    for path in paths:
        raw = read_manifest_texts(path) if path.endswith(".jsonl") else read_text_lines(path)
        lines.update(text for text in (normalize_text(line, alphabet) for line in raw) if text)
    return Exclusion(lines, min_contained_words)


# ---- the corpus ----------------------------------------------------------------------------------------

@dataclass
class SourceCount:
    passages: int = 0
    sentences: int = 0  # kept
    words: int = 0
    dropped: int = 0  # characters outside the alphabet
    duplicates: int = 0
    excluded: Dict[str, int] = field(default_factory=lambda: {"equal": 0, "contains": 0})


@dataclass
class LMText:
    corpus: str
    training_words: Optional[str]
    summary: str
    sources: Dict[str, SourceCount]
    sentences: int
    words: int
    vocabulary: int

    def to_dict(self) -> Dict:
        return asdict(self)


def _sentences(passages: Iterable[str], alphabet: Alphabet, presplit: bool) -> Iterator[Optional[str]]:
    for passage in passages:
        for piece in ([passage] if presplit else split_sentences(passage)):
            yield normalize_text(piece, alphabet)


def build_lm_text(output_path: str, sources: Sequence[str] = DEFAULT_SOURCES, root: str = "/",
                  transcripts: Sequence[str] = (), texts: Sequence[str] = (), exclude: Sequence[str] = (),
                  alphabet: Optional[Alphabet] = None, min_contained_words: int = MIN_CONTAINED_WORDS,
                  exclude_lines: Iterable[str] = (), progress: bool = False) -> LMText:
    """Write the LM corpus (one normalised sentence a line, each sentence once) and beside it
    `<stem>.training_words.txt` (every word of the transcripts and text files: the training text, which the
    lexicon keeps whatever its size) and `<stem>.summary.json` (counts per source).

    sources: Debian sources by name (SOURCES); transcripts: manifests whose "text" the model trains on (game
    script lines); texts: text files of training sentences, one a line (the synthetic pool); exclude:
    manifests or text files of evaluation sentences (and exclude_lines, sentences), removed when equal to a corpus sentence or, from
    min_contained_words words on, found inside one. Raises TextUnavailable naming the packages to install when a
    requested source is missing, before anything is written.
    """
    alphabet = alphabet or Alphabet()
    unknown = [name for name in sources if name not in SOURCES]
    if unknown:
        raise ValueError(f"unknown text source(s) {', '.join(unknown)}; choose from {', '.join(SOURCES)}")
    readers: List[Tuple[str, Callable[[], Iterable[str]], bool]] = []
    for name in sources:
        passages = SOURCES[name].read(root)
        first = next(passages, None)  # a missing package raises here, before any output
        readers.append((name, _chain(first, passages), False))
    for path in transcripts:
        readers.append((f"transcripts:{os.path.basename(path)}", read_manifest_texts(path), True))
    for path in texts:
        readers.append((f"text:{os.path.basename(path)}", read_text_lines(path), True))
    if not readers:
        raise ValueError("no text: give sources, transcripts or text files")
    match = exclusion_from(exclude, alphabet, min_contained_words, exclude_lines).matcher()

    stem = output_path[:-4] if output_path.endswith(".txt") else output_path
    words_path = f"{stem}.training_words.txt" if (transcripts or texts) else None
    summary_path = f"{stem}.summary.json"
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    counts: Dict[str, SourceCount] = {}
    seen: Set[str] = set()
    training_words: collections.Counter = collections.Counter()
    vocabulary: Set[str] = set()
    temporary = output_path + ".partial"
    with open(temporary, "w", encoding="utf-8") as out:
        for name, passages, presplit in tqdm(readers, desc="text sources", disable=not progress):
            count = counts.setdefault(name, SourceCount())
            training = name.startswith(("transcripts:", "text:"))
            for sentence in _sentences(_counting(passages, count), alphabet, presplit):
                if sentence is None:
                    count.dropped += 1
                    continue
                why = match(sentence)
                if why:
                    count.excluded[why] += 1
                    continue
                if training:
                    training_words.update(sentence.split())
                if sentence in seen:
                    count.duplicates += 1
                    continue
                seen.add(sentence)
                words = sentence.split()
                vocabulary.update(words)
                count.sentences += 1
                count.words += len(words)
                out.write(sentence + "\n")
            logger.info("%s: %d sentences, %d words (%d dropped, %d duplicates, excluded %s)", name,
                        count.sentences, count.words, count.dropped, count.duplicates, count.excluded)
    os.replace(temporary, output_path)
    if words_path:
        with open(words_path, "w", encoding="utf-8") as handle:
            handle.writelines(f"{word}\n" for word in sorted(training_words))
    result = LMText(os.path.abspath(output_path), words_path and os.path.abspath(words_path),
                    os.path.abspath(summary_path), counts, sum(c.sentences for c in counts.values()),
                    sum(c.words for c in counts.values()), len(vocabulary))
    with open(summary_path, "w", encoding="utf-8") as handle:
        json.dump(result.to_dict(), handle, indent=2)
    return result


def _chain(first: Optional[str], rest: Iterator[str]) -> Iterator[str]:
    if first is not None:
        yield first
        yield from rest


def _counting(passages: Iterable[str], count: SourceCount) -> Iterator[str]:
    for passage in passages:
        count.passages += 1
        yield passage
