"""Drascula: The Vampire Strikes Back: real English voice acting, the project's real-speech val/test set.

Evaluation only, never trained on. The Debian package `drascula` ships the English speech as clips in
`/usr/share/scummvm/drascula/en/`; `scummvm-data` ships the subtitles in `/usr/share/scummvm/drascula.dat`.

Clips: `<prefix><n>.ALS`, headerless unsigned 8-bit mono PCM at 11,025 Hz (the engine skips 32 bytes at
each end). The prefix names the text array of drascula.dat whose entry n is what the clip says, and
the character who says it (`PREFIXES`); `S<n>` and `F<n>` are sound effects with no text. Clips `D<n>`
are Count Drascula's lines except d56-d67 (John Hacker talking to the blind man), d68-d78 (the blind
man), d82 (the bartender) and d83 (the talking trunk) (`D_CHARACTERS`).

drascula.dat (version 6, big-endian): "DRASCULA", a version byte, 13 tables of fixed-size records (a
uint16 count, then the records; `RECORD_TABLES`), a uint16 language count, then 15 text arrays
(`TEXT_ARRAYS`), each a uint16 entry count followed, per language, by a uint16 byte total, 2 bytes of
padding and, per entry, a uint16 size (counting itself and the padding to 4 bytes) and a NUL-terminated
string. English is language 0, in code page 437 like the DOS original ("TOUP\\x90" is "TOUPÉ").

Subtitles are the game's, not verbatim transcripts: a typo ("DON'T DE AFRAID") or a word the actor
changed stays in; a subtitle far longer than its clip (a sentence the recording lacks) is dropped.

Splits are by character, so no character is in both (though one voice actor may play several; the
files cannot tell). John Hacker says nearly half of all the audio (21.6 of 44.5 minutes), so he goes
to `val` with three small parts (`VAL_CHARACTERS`: the drunk, the pianist, the trunk) and the eight
other characters make `test`: 484 clips / 23.3 minutes and 249 clips / 21.2 minutes. Test is thus
the many-voices set; val is mostly the hero's voice, fine for tuning decoder weights.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from deepspeech_pytorch.audio import SAMPLE_RATE, resample, write_audio
from deepspeech_pytorch.corpora import CorpusError
from deepspeech_pytorch.corpora.convert import DurationLimits
from deepspeech_pytorch.datasets import write_jsonl
from deepspeech_pytorch.labels import Alphabet, TranscriptError

logger = logging.getLogger(__name__)

GAME_DIR = "/usr/share/scummvm/drascula"  # Debian package `drascula`
DAT_PATH = "/usr/share/scummvm/drascula.dat"  # Debian package `scummvm-data`
LANGUAGE_DIR = "en"
INSTALL_HINT = "drascula is not installed (apt-get install drascula scummvm-data)"
SOURCE = "drascula"

CLIP_RATE = 11025  # Hz, unsigned 8-bit mono
EDGE_BYTES = 32  # the engine does not play the first and last 32 bytes of a clip
SILENCE_LEVEL = 2  # |sample - 128| at most this is silence when trimming a clip's ends
KEEP_SILENCE = 0.3  # seconds of silence kept before the first and after the last sound
MAX_CHARS_PER_SECOND = 25.0  # a subtitle faster than this (letters and spaces) says more than the clip

DAT_MAGIC = b"DRASCULA"
DAT_VERSION = 6
ENGLISH = 0  # language index in drascula.dat
RECORD_TABLES: Tuple[Tuple[str, int], ...] = (  # (table, bytes per record) before the text arrays
    ("charMap", 4), ("itemLocations", 4), ("x_pol/y_pol", 4), ("verbBarX", 2), ("x1d_menu/y1d_menu", 4),
    ("frameX", 2), ("candleX/candleY", 4), ("pianistX", 2), ("drunkX", 2), ("roomPreUpdates", 20),
    ("roomUpdates", 20), ("roomActions", 10), ("talkSequences", 8))
TEXT_ARRAYS: Tuple[str, ...] = ("text", "textd", "textb", "textbj", "texte", "texti", "textl", "textp", "textt",
                                "textvb", "textsys", "texthis", "textverbs", "textmisc", "textd1")

# clip-name prefix -> (text array, character)
PREFIXES: Dict[str, Tuple[str, str]] = {
    "": ("text", "john_hacker"),
    "D": ("textd", "drascula"),
    "B": ("textb", "drunk"),
    "BJ": ("textbj", "bj"),
    "E": ("texte", "desiderio"),
    "I": ("texti", "igor"),
    "L": ("textl", "werewolf"),
    "P": ("textp", "pianist"),
    "T": ("textt", "bartender"),
    "VB": ("textvb", "von_braun"),
}
# D clips not spoken by Drascula: (first, last, character)
D_CHARACTERS: Tuple[Tuple[int, int, str], ...] = (
    (56, 67, "john_hacker"), (68, 78, "blind_man"), (82, 82, "bartender"), (83, 83, "trunk"))
CHARACTERS: Tuple[str, ...] = tuple(OrderedDict.fromkeys(
    [character for _, character in PREFIXES.values()] + [character for _, _, character in D_CHARACTERS]))
VAL_CHARACTERS: Tuple[str, ...] = ("john_hacker", "drunk", "pianist", "trunk")
SPLITS = ("val", "test")

_CLIP_NAME = re.compile(r"^(?P<prefix>[A-Za-z]*)(?P<index>\d+)\.als$", re.IGNORECASE)


@dataclass(frozen=True)
class Clip:
    """One speech clip and the subtitle entry it says."""

    name: str  # file name, e.g. "D57.ALS"
    path: str
    array: str  # text array of drascula.dat
    index: int  # entry in that array
    character: str

    @property
    def utterance_id(self) -> str:
        return f"{self.character}_{os.path.splitext(self.name)[0].lower()}"


class _Reader:
    """Big-endian reads from drascula.dat that name the file and offset when it ends too soon."""

    def __init__(self, data: bytes, path: str) -> None:
        self.data, self.path, self.position = data, path, 0

    def take(self, size: int, what: str) -> bytes:
        if self.position + size > len(self.data):
            raise CorpusError(f"{self.path}: truncated at byte {len(self.data)} while reading {what}")
        piece = self.data[self.position:self.position + size]
        self.position += size
        return piece

    def uint16(self, what: str) -> int:
        return struct.unpack(">H", self.take(2, what))[0]


def require(path: str) -> str:
    """`path` when it exists; otherwise CorpusError naming it and the packages to install."""
    if not os.path.exists(path):
        raise CorpusError(f"{path} not found: {INSTALL_HINT}")
    return path


def read_texts(dat_path: str = DAT_PATH, language: int = ENGLISH) -> Dict[str, List[str]]:
    """Every text array of drascula.dat in one language: array name -> entries (entry 0 is unused, empty)."""
    with open(require(dat_path), "rb") as handle:
        reader = _Reader(handle.read(), dat_path)
    if reader.take(len(DAT_MAGIC), "the header") != DAT_MAGIC:
        raise CorpusError(f"{dat_path}: not a drascula.dat file (it does not start with {DAT_MAGIC.decode()})")
    version = reader.take(1, "the version")[0]
    if version != DAT_VERSION:
        raise CorpusError(f"{dat_path}: version {version}; this reader knows version {DAT_VERSION}")
    for table, record_size in RECORD_TABLES:
        reader.take(reader.uint16(f"the {table} count") * record_size, f"the {table} table")
    languages = reader.uint16("the language count")
    if not 0 <= language < languages:
        raise CorpusError(f"{dat_path}: has {languages} languages, no language {language}")
    texts: Dict[str, List[str]] = {}
    for array in TEXT_ARRAYS:
        count = reader.uint16(f"the {array} count")
        for current in range(languages):
            what = f"{array} (language {current})"
            total = reader.uint16(f"the size of {what}")
            start = reader.position
            reader.take(2, what)  # padding
            entries = []
            for number in range(count):
                size = reader.uint16(f"{what} entry {number}")
                if size < 3:
                    raise CorpusError(f"{dat_path}: {what} entry {number} has an impossible size {size}")
                entries.append(reader.take(size - 2, f"{what} entry {number}").split(b"\0", 1)[0].decode("cp437"))
            if reader.position - start != total:
                raise CorpusError(f"{dat_path}: {what} takes {reader.position - start} bytes but says {total}")
            if current == language:
                texts[array] = entries
    if reader.position != len(reader.data):
        raise CorpusError(f"{dat_path}: {len(reader.data) - reader.position} unexpected bytes after the text arrays")
    return texts


def identify(name: str) -> Optional[Tuple[str, int, str]]:
    """(text array, entry, character) for a clip's file name; None for sound effects and other files."""
    match = _CLIP_NAME.match(name)
    if not match or match.group("prefix").upper() not in PREFIXES:
        return None
    prefix, index = match.group("prefix").upper(), int(match.group("index"))
    array, character = PREFIXES[prefix]
    if prefix == "D":
        character = next((who for first, last, who in D_CHARACTERS if first <= index <= last), character)
    return array, index, character


def _sort_key(name: str) -> Tuple[str, int, str]:
    match = _CLIP_NAME.match(name)
    return (match.group("prefix").upper(), int(match.group("index")), name) if match else ("~", 0, name)


def clip_names(speech_dir: str) -> List[str]:
    """The .ALS files in `speech_dir`, ordered by prefix then number (1, 2, ..., 10, not 1, 10, 2)."""
    names = [name for name in os.listdir(require(speech_dir)) if name.lower().endswith(".als")]
    if not names:
        raise CorpusError(f"{speech_dir}: no .ALS speech clips: {INSTALL_HINT}")
    return sorted(names, key=_sort_key)


def decode_clip(path: str) -> np.ndarray:
    """A clip as float32 samples in [-1, 1) at CLIP_RATE, shape (samples,); empty when it is all silence.

    The engine's 32-byte edges are dropped and the silence at either end is cut to KEEP_SILENCE
    seconds (one clip, 3.ALS, starts with 6.7 seconds of it).
    """
    raw = np.fromfile(path, dtype=np.uint8)[EDGE_BYTES:-EDGE_BYTES]
    centred = raw.astype(np.int16) - 128
    sound = np.flatnonzero(np.abs(centred) > SILENCE_LEVEL)
    if sound.size == 0:
        return np.zeros(0, dtype=np.float32)
    keep = int(round(KEEP_SILENCE * CLIP_RATE))
    first, last = max(0, sound[0] - keep), min(len(centred), sound[-1] + 1 + keep)
    return (centred[first:last] / 128.0).astype(np.float32)


def _write_wav(target: str, samples: np.ndarray) -> None:
    """Write through a temporary name so an interrupted run never leaves a truncated WAV behind."""
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    temporary = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.partial.wav")
    write_audio(temporary, samples, SAMPLE_RATE)
    os.replace(temporary, target)


def _split_of(character: str, val_characters: Sequence[str]) -> str:
    return "val" if character in val_characters else "test"


def prepare(target_dir: str, game_dir: str = GAME_DIR, dat_path: str = DAT_PATH,
            limits: DurationLimits = DurationLimits(), workers: int = 1, alphabet: Optional[Alphabet] = None,
            val_characters: Sequence[str] = VAL_CHARACTERS, max_chars_per_second: float = MAX_CHARS_PER_SECOND,
            progress: bool = True) -> Dict[str, str]:
    """Convert the English clips to 16 kHz WAV and write `val.jsonl`, `test.jsonl` and `summary.json`.

    Clips are dropped, counted and logged when they have no subtitle (sound effects, empty entries),
    when the subtitle cannot be written in the alphabet without deleting something (digits: how the
    actor read "512" is unknown), when the subtitle is too long for the clip (more than
    `max_chars_per_second`), or when they fall outside `limits`. Returns {"val": path, "test": path}.
    """
    unknown = sorted(set(val_characters) - set(CHARACTERS))
    if unknown:
        raise CorpusError(f"unknown Drascula characters {unknown}; choose from {list(CHARACTERS)}")
    speech_dir = os.path.join(game_dir, LANGUAGE_DIR)
    require(game_dir)
    texts = read_texts(dat_path)
    names = clip_names(speech_dir)
    alphabet = alphabet or Alphabet()
    strict = Alphabet(labels=alphabet.labels, space=alphabet.space, oov_policy="error")
    dropped: Dict[str, List[str]] = OrderedDict()

    def drop(reason: str, name: str) -> None:
        dropped.setdefault(reason, []).append(name)

    listed: List[Tuple[Clip, str]] = []
    for name in names:
        identity = identify(name)
        if identity is None:
            drop("no text array (a sound effect)", name)
            continue
        array, index, character = identity
        entries = texts[array]
        raw_text = entries[index].strip() if index < len(entries) else ""
        if not raw_text:
            drop("no subtitle (empty or missing entry)", name)
            continue
        try:
            text = strict.normalize(raw_text, utterance=name)
        except TranscriptError as error:
            logger.info("%s (%r): dropped: %s", name, raw_text, error)
            drop("subtitle has characters outside the alphabet", name)
            continue
        if not text:
            drop("no subtitle (empty or missing entry)", name)
            continue
        listed.append((Clip(name, os.path.join(speech_dir, name), array, index, character), text))

    def convert(item: Tuple[Clip, str]) -> Tuple[Clip, str, Optional[float], Optional[str]]:
        clip, text = item
        samples = decode_clip(clip.path)
        if samples.size == 0:
            return clip, text, None, "silent clip"
        samples = resample(samples, CLIP_RATE, SAMPLE_RATE)
        duration = len(samples) / SAMPLE_RATE
        if len(text) / duration > max_chars_per_second:
            return clip, text, duration, f"subtitle too long for the clip (over {max_chars_per_second:g} characters/s)"
        if not limits.admits(duration):
            return clip, text, duration, "outside the duration limits"
        split = _split_of(clip.character, val_characters)
        _write_wav(os.path.join(target_dir, "wav", split, f"{clip.utterance_id}.wav"), samples)
        return clip, text, duration, None

    records: Dict[str, List[dict]] = {split: [] for split in SPLITS}
    per_character: Dict[str, Dict[str, float]] = OrderedDict()
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        with tqdm(total=len(listed), desc="drascula", unit=" clips", disable=not progress) as bar:
            for clip, text, duration, reason in pool.map(convert, listed):
                bar.update(1)
                if reason:
                    logger.info("%s (%s, %r): dropped: %s", clip.name, clip.character, text, reason)
                    drop(reason, clip.name)
                    continue
                split = _split_of(clip.character, val_characters)
                records[split].append({
                    "audio_filepath": os.path.join("wav", split, f"{clip.utterance_id}.wav"),
                    "text": text, "duration": round(duration, 4), "speaker": clip.character, "source": SOURCE})
                stats = per_character.setdefault(clip.character, {"clips": 0, "seconds": 0.0})
                stats["clips"] += 1
                stats["seconds"] += duration
    finally:
        pool.shutdown(cancel_futures=True)
    for split in SPLITS:
        if not records[split]:
            raise CorpusError(f"{speech_dir}: no usable clips for the {split} split")
    os.makedirs(target_dir, exist_ok=True)
    manifests = {}
    for split in SPLITS:
        manifests[split] = os.path.join(target_dir, f"{split}.jsonl")
        write_jsonl(manifests[split], records[split])
    summary = _summary(names, per_character, dropped, val_characters, records)
    with open(os.path.join(target_dir, "summary.json.tmp"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    os.replace(os.path.join(target_dir, "summary.json.tmp"), os.path.join(target_dir, "summary.json"))
    _log_summary(summary)
    return manifests


def _summary(names: Sequence[str], per_character: Dict[str, Dict[str, float]], dropped: Dict[str, List[str]],
             val_characters: Sequence[str], records: Dict[str, List[dict]]) -> dict:
    characters = OrderedDict(
        (character, {"split": _split_of(character, val_characters), "clips": int(stats["clips"]),
                     "minutes": round(stats["seconds"] / 60, 2)})
        for character, stats in sorted(per_character.items(), key=lambda item: -item[1]["seconds"]))
    splits = {split: {"clips": len(records[split]),
                      "minutes": round(sum(r["duration"] for r in records[split]) / 60, 2),
                      "characters": [c for c, s in characters.items() if s["split"] == split]}
              for split in SPLITS}
    return {"source": SOURCE, "clip_files": len(names), "kept": sum(len(r) for r in records.values()),
            "minutes": round(sum(r["duration"] for split in records.values() for r in split) / 60, 2), "splits": splits,
            "characters": characters, "dropped": {reason: list(clips) for reason, clips in dropped.items()}}


def _log_summary(summary: dict) -> None:
    logger.info("%d of %d clip files kept, %.1f minutes", summary["kept"], summary["clip_files"], summary["minutes"])
    logger.info("%-12s %-5s %6s %8s", "character", "split", "clips", "minutes")
    for character, stats in summary["characters"].items():
        logger.info("%-12s %-5s %6d %8.2f", character, stats["split"], stats["clips"], stats["minutes"])
    for split, stats in summary["splits"].items():
        logger.info("%s: %d clips, %.2f minutes, %d characters", split, stats["clips"], stats["minutes"],
                    len(stats["characters"]))
    for reason, clips in summary["dropped"].items():
        logger.warning("dropped %d clips: %s: %s", len(clips), reason, " ".join(clips))
