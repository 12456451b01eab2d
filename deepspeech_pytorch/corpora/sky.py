"""Beneath a Steel Sky (Revolution Software 1994, CD release v0.0372, freeware): acted English lines with subtitles.

The Debian package `beneath-a-steel-sky` installs `sky.dnr` and `sky.dsk` in /usr/share/scummvm/beneath-a-steel-sky.
About 3,500 spoken lines (1.9 hours, 8-bit unsigned mono at 11,025 Hz, mostly RNC-packed) are matched with
the text of the same line, which becomes the transcript. The layout, from ScummVM's description of the
engine and checked on the real files (see `prepare`'s checks):

- `sky.dnr`: a little-endian uint32 entry count, then 8 bytes per file: uint16 file number, 24-bit offset
  into `sky.dsk` (bit 23 set: the other bits count 16-byte units), 24-bit size (bits 0-21 bytes; bit 22:
  a packed file's 22-byte header is not kept when unpacking; bit 23: the file is stored as is).
- A file starts with a 22-byte header of eleven little-endian uint16 fields; field 0 bit 7 set means the
  rest is an RNC method 1 block (see `rnc`) whose unpacked size is `(field0 & 0xFF00) << 8 | field6`.
- Text: files 60600-60607 hold the eight English sections (stored as is, no header): uint16 offset of
  the skip table, uint16 offset of the bit data, then for each block of 32 texts the uint16 sum of its
  texts' lengths; the skip table has one byte per text (its length; bit 7 set: `(byte & 0x7F) * 8`).
  Lengths count 2-bit units; each text is Huffman-coded characters (first bit most significant), ended
  by a 0 character. Text number `section << 12 | index`.
- Speech: the line with text number `section << 12 | index` is file `50000 + SPEECH_SECTION_START[section]
  + index`, the 22-byte header followed by the samples. Files of the CD introduction (59494 and up) map to
  no text number and are not used.

Transcripts keep letters, apostrophes inside words and spaces (capitals, used for stress, are folded);
lines with digits or other symbols whose spoken form is unknown are dropped and counted. The game's
licence allows redistribution and modification (modified versions marked as such); `prepare` copies
the package's copyright file beside the manifest.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import struct
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from deepspeech_pytorch.audio import SAMPLE_RATE, AudioError, audio_duration, resample, write_audio
from deepspeech_pytorch.corpora import CorpusError
from deepspeech_pytorch.corpora.convert import DurationLimits, Layout
from deepspeech_pytorch.corpora.rnc import RNCError, is_rnc, unpack
from deepspeech_pytorch.datasets import write_jsonl
from deepspeech_pytorch.labels import Alphabet

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "/usr/share/scummvm/beneath-a-steel-sky"
COPYRIGHT_FILE = "/usr/share/doc/beneath-a-steel-sky/copyright"
DIRECTORY_FILE = "sky.dnr"
DATA_FILE = "sky.dsk"
SPLIT = "train"
SOURCE = "sky"

CD_RELEASE_ENTRIES = 5097  # files in sky.dnr of the CD release v0.0372, whose text code is below
FILE_HEADER_SIZE = 22  # bytes: eleven uint16 fields
SPEECH_RATE = 11025  # Hz, 8-bit unsigned mono, 128 = silence
SPEECH_FILE_BASE = 50000
SPEECH_SECTION_START = (0, 600, 1100, 2430, 3380, 4530, 5080, 5230)  # file-number offset of each text section
TEXT_FILE_BASE = 60600  # English text sections are files 60600..60607
TEXT_SECTIONS = 8
TEXT_INDEX_LIMIT = 4096  # a text number has 12 bits of index
SPEECH_FILE_END = SPEECH_FILE_BASE + SPEECH_SECTION_START[-1] + TEXT_INDEX_LIMIT  # first file past the scheme
GAME_FILE_BASE = 60000  # files 60000 and up are the engine's own (fonts, text, sprites...)
TEXT_UNIT = 2  # bits: text offsets and lengths count 2-bit units

# The Huffman code of the v0.0372 texts, as `code:character` pairs (code bits first to last, character in
# hex; 00 ends a text). The tree is not in the data files but in the game's executable; this is its
# content as ScummVM tabulates it (engines/sky/hufftext.cpp, `_huffTree_00372`), written out as codes.
# The last code stands for '|' as in v0.0368's table (ScummVM lists '!' twice for v0.0372); no English
# text uses it. Checked on the real data: all 5,168 English texts end within the length their section
# records, and the spoken ones read as the lines heard.
_HUFFMAN_CODES = """
000:20 0010:65 0011:61 0111:72 01000:6f 01001:73 01010:74 01011:6e 01100:2e 01101:69 10001:75 10010:6d
10011:41 10111:54 100000:00 100001:45 101000:6c 101001:49 101010:64 101011:52 101100:4e 101101:53 110001:63
110010:44 110011:67 110111:4d 1100000:4f 1100001:68 1101000:4c 1101001:43 1101010:70 1101011:55 1101100:21
1101101:79 1110001:48 1110010:3f 1110011:62 1110101:2c 1110110:47 1110111:42 11100000:50 11100001:76
11101000:27 11101001:66 11110001:46 11110010:71 11110011:77 11110101:57 11110110:4a 11110111:2a 111100000:56
111100001:6b 111101000:4b 111101001:2d 111110000:7a 111110001:59 111110010:6a 111110011:2b 111110101:29
111110111:3c 1111101000:51 1111101001:85 1111101100:5a 1111101101:8b 1111110001:8a 1111110010:87
1111110011:3a 1111110101:23 1111110111:91 11111100000:95 11111100001:7e 11111101000:7f 11111101001:5d
11111101100:78 11111101101:58 11111110001:32 11111110011:31 11111110101:3d 11111110110:86 11111110111:5e
111111100000:88 111111100001:60 111111100100:30 111111100101:83 111111101000:2f 111111101001:28
111111110000:33 111111110001:39 111111110010:98 111111110011:34 111111110101:5c 111111110110:22
111111110111:90 1111111101000:7d 1111111101001:38 1111111110000:26 1111111110001:8d 1111111110010:35
1111111110011:36 1111111110100:92 1111111110101:8f 1111111110110:8e 1111111110111:93 1111111111001:80
11111111110000:8c 11111111110001:37 11111111110100:81 11111111110101:99 11111111110110:24 11111111110111:40
11111111111001:5f 11111111111010:3e 11111111111011:96 11111111111101:09 111111111110000:5b
111111111110001:9a 111111111111000:82 111111111111001:25 111111111111100:9c 111111111111101:97
111111111111110:7b 1111111111111110:94 1111111111111111:7c
"""

# character code -> its bit string ("0"/"1"); public so that tests can write texts in the real code
HUFFMAN_CODE: Dict[int, str] = {int(character, 16): code for code, character in
                                (pair.split(":") for pair in _HUFFMAN_CODES.split())}
_DECODE: Dict[str, int] = {code: character for character, code in HUFFMAN_CODE.items()}
_LONGEST_CODE = max(len(code) for code in _DECODE)

_SPOKEN_CHARACTERS = re.compile(r"^[A-Za-z .,!?'`\"-]*$")  # anything else (digits, symbols) has no known spoken form
_QUOTE_APOSTROPHE = re.compile(r"(?<![A-Za-z])'|'(?![A-Za-z])")  # quotes and clipped ends ("doin'"), not "don't"


@dataclass(frozen=True)
class DirectoryEntry:
    """Where one numbered file lies in sky.dsk and how it is stored."""

    number: int
    offset: int  # bytes into sky.dsk
    size: int  # bytes stored
    stored_as_is: bool  # never packed, even when its first field has bit 7 set
    header_dropped: bool  # a packed file unpacks without its 22-byte header


def read_directory(path: str) -> Dict[int, DirectoryEntry]:
    """File number -> entry, from sky.dnr."""
    with open(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4:
        raise CorpusError(f"{path}: {len(data)} bytes is too short for a Beneath a Steel Sky file directory")
    (count,) = struct.unpack_from("<I", data)
    if count == 0 or len(data) != 4 + 8 * count:
        raise CorpusError(f"{path}: header says {count} entries of 8 bytes, "
                          f"the file has {len(data) - 4} bytes after it")
    entries = {}
    for index in range(count):
        base = 4 + 8 * index
        (number,) = struct.unpack_from("<H", data, base)
        offset = int.from_bytes(data[base + 2:base + 5], "little")
        size = int.from_bytes(data[base + 5:base + 8], "little")
        if offset & 0x800000:
            offset = (offset & 0x7FFFFF) << 4
        entries[number] = DirectoryEntry(number, offset, size & 0x3FFFFF, bool(size & 0x800000), bool(size & 0x400000))
    return entries


class GameData:
    """The numbered files of sky.dnr/sky.dsk, unpacked as the game engine sees them. Safe to share between threads."""

    def __init__(self, data_dir: str) -> None:
        self.directory_path = os.path.join(data_dir, DIRECTORY_FILE)
        self.data_path = os.path.join(data_dir, DATA_FILE)
        for path in (self.directory_path, self.data_path):
            if not os.path.isfile(path):
                raise CorpusError(f"{path} not found: install the Debian package beneath-a-steel-sky "
                                  f"(apt-get install beneath-a-steel-sky) or point --data-dir at sky.dnr and sky.dsk")
        self.entries = read_directory(self.directory_path)
        self.data_size = os.path.getsize(self.data_path)
        self._lock = threading.Lock()

    def __contains__(self, number: int) -> bool:
        return number in self.entries

    def stored(self, number: int) -> bytes:
        """File `number` as stored in sky.dsk."""
        entry = self.entries.get(number)
        if entry is None:
            raise CorpusError(f"{self.directory_path}: has no file {number}")
        if entry.offset + entry.size > self.data_size:
            raise CorpusError(f"{self.data_path}: file {number} ({entry.size} bytes at {entry.offset}) runs past "
                              f"the end ({self.data_size} bytes): truncated data file?")
        with self._lock, open(self.data_path, "rb") as handle:
            handle.seek(entry.offset)
            return handle.read(entry.size)

    def load(self, number: int) -> bytes:
        """File `number` unpacked: with its 22-byte header unless the directory says the header is dropped."""
        entry = self.entries.get(number)
        data = self.stored(number)
        if entry.stored_as_is or len(data) < FILE_HEADER_SIZE or not data[0] & 0x80:
            return data
        where = f"{self.data_path} file {number}"
        body = data[FILE_HEADER_SIZE:]
        if not is_rnc(body):
            raise CorpusError(f"{where}: its header says packed but no RNC method 1 block follows")
        flag, total = struct.unpack_from("<H", data, 0)[0], struct.unpack_from("<H", data, 12)[0]
        expected = ((flag & 0xFF00) << 8) | total  # unpacked size, header included
        try:
            unpacked = unpack(body, where)
        except RNCError as error:
            raise CorpusError(str(error)) from None
        if len(unpacked) + FILE_HEADER_SIZE != expected:
            raise CorpusError(f"{where}: unpacked to {len(unpacked) + FILE_HEADER_SIZE} bytes with its header, "
                              f"the header says {expected}")
        return unpacked if entry.header_dropped else data[:FILE_HEADER_SIZE] + unpacked


def decode_text_section(data: bytes, where: str) -> List[str]:
    """Every text of one section file, in index order (characters as Latin-1).

    Each text must end (with its 0 character) inside the length the skip table gives it, which checks
    both the layout and the Huffman code; CorpusError names the text that does not.
    """
    if len(data) < 4:
        raise CorpusError(f"{where}: {len(data)} bytes is too short for a text section")
    skip_table, bit_data = struct.unpack_from("<HH", data)
    if not 4 <= skip_table <= bit_data <= len(data) or (skip_table - 4) % 2:
        raise CorpusError(f"{where}: skip table at {skip_table} and text data at {bit_data} do not fit a "
                          f"{len(data)}-byte text section")
    block_sums = struct.unpack_from(f"<{(skip_table - 4) // 2}H", data, 4)
    count = bit_data - skip_table
    if count > 32 * (len(block_sums) + 1):
        raise CorpusError(f"{where}: {count} texts need {(count - 1) // 32} block sums, "
                          f"the section has {len(block_sums)}")
    bits = "".join(f"{byte:08b}" for byte in data[bit_data:])
    texts, offset = [], 0  # offset in 2-bit units from the start of the bit data
    for index in range(count):
        if index % 32 == 0 and offset != sum(block_sums[:index // 32]):
            raise CorpusError(f"{where}: texts 0-{index - 1} take {offset} units, the block sums say "
                              f"{sum(block_sums[:index // 32])}")
        skip = data[skip_table + index]
        units = (skip & 0x7F) << 3 if skip & 0x80 else skip
        start, end = offset * TEXT_UNIT, (offset + units) * TEXT_UNIT
        characters, code, position = [], "", start
        while True:
            if position >= end or len(code) >= _LONGEST_CODE:
                raise CorpusError(f"{where}: text {index} does not end within its {units * TEXT_UNIT} bits "
                                  f"(wrong text code for this game version, or a damaged file)")
            code += bits[position]
            position += 1
            character = _DECODE.get(code)
            if character is None:
                continue
            if character == 0:
                break
            characters.append(character)
            code = ""
        if end - position >= (16 if skip & 0x80 else TEXT_UNIT):
            raise CorpusError(f"{where}: text {index} ends {end - position} bits before its recorded length")
        texts.append(bytes(characters).decode("latin-1"))
        offset += units
    return texts


def text_number_of_speech(file_number: int) -> Optional[Tuple[int, int]]:
    """(section, index) of the text spoken in speech file `file_number`; None for files outside the scheme."""
    if not SPEECH_FILE_BASE <= file_number < SPEECH_FILE_END:
        return None
    position = file_number - SPEECH_FILE_BASE
    section = max(s for s, start in enumerate(SPEECH_SECTION_START) if start <= position)
    return section, position - SPEECH_SECTION_START[section]


def speech_samples(data: bytes) -> np.ndarray:
    """Float32 samples in [-1, 1) at SPEECH_RATE from a speech file with its header; shape (samples,)."""
    body = np.frombuffer(data, dtype=np.uint8, offset=FILE_HEADER_SIZE)
    return (body.astype(np.float32) - 128.0) / 128.0


def clean_text(text: str, alphabet: Alphabet, utterance_id: str = "") -> str:
    """The transcript of one line in the alphabet's form; "" when the line has no usable transcript."""
    if not _SPOKEN_CHARACTERS.match(text):
        return ""
    text = _QUOTE_APOSTROPHE.sub(" ", text.replace("`", " "))
    return alphabet.normalize(text, utterance=utterance_id)


@dataclass(frozen=True)
class Line:
    """One spoken line: its speech file and its transcript."""

    file_number: int
    section: int
    index: int
    raw_text: str  # as the game shows it
    text: str  # normalised with the alphabet

    @property
    def utterance_id(self) -> str:
        return utterance_id(self.section, self.index)


def utterance_id(section: int, index: int) -> str:
    return f"sky-{section}-{index:04d}"


def list_lines(game: GameData, alphabet: Alphabet) -> Tuple[List[Line], Counter]:
    """Every speech file with a text, in file order, and the count of files left out, by reason."""
    dropped: Counter = Counter()
    sections: Dict[int, List[str]] = {}
    lines = []
    for number in sorted(game.entries):
        if not SPEECH_FILE_BASE <= number < GAME_FILE_BASE:
            continue
        position = text_number_of_speech(number)
        if position is None:  # 59494 and up: voice-over and animation of the CD introduction
            dropped["no text number (CD introduction files)"] += 1
            continue
        section, index = position
        if section not in sections:
            text_file = TEXT_FILE_BASE + section
            if text_file not in game:
                raise CorpusError(f"{game.directory_path}: has speech file {number} "
                                  f"but no text section file {text_file}")
            sections[section] = decode_text_section(game.load(text_file), f"{game.data_path} file {text_file}")
        if index >= len(sections[section]):
            dropped["no text with that number"] += 1
            continue
        raw_text = sections[section][index]
        text = clean_text(raw_text, alphabet, utterance_id(section, index))
        if not text:
            dropped["unusable text (digits, symbols or empty)"] += 1
            logger.info("%s: text %r has no usable transcript; left out", utterance_id(section, index), raw_text)
            continue
        lines.append(Line(number, section, index, raw_text, text))
    return lines, dropped


def _write_wav(target: str, samples: np.ndarray) -> None:
    """Write through a temporary name so an interrupted run never leaves a truncated WAV behind."""
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    temporary = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.partial.wav")
    write_audio(temporary, samples, SAMPLE_RATE)
    os.replace(temporary, target)


def _convert(game: GameData, line: Line, target: str) -> float:
    """Write the line's 16 kHz WAV (unless an earlier run did) and return its duration in seconds."""
    if os.path.isfile(target):
        try:
            return audio_duration(target)
        except AudioError:
            pass  # unreadable leftover: convert again
    samples = speech_samples(game.load(line.file_number))
    if samples.size == 0:
        return 0.0
    audio = resample(samples, SPEECH_RATE, SAMPLE_RATE)
    _write_wav(target, audio)
    return len(audio) / SAMPLE_RATE


def prepare(target_dir: str, data_dir: str = DEFAULT_DATA_DIR, limits: DurationLimits = DurationLimits(),
            workers: int = 1, alphabet: Optional[Alphabet] = None, progress: bool = True,
            copyright_file: str = COPYRIGHT_FILE) -> Dict[str, str]:
    """Convert the spoken lines to 16 kHz WAV and write `sky_train.jsonl`; returns {"train": manifest path}.

    Records: audio_filepath (relative), text, duration (seconds), source ("sky"), text_id (section-index).
    Lines without a text, with an unusable text or outside `limits` are left out and counted in the log.
    """
    alphabet = alphabet or Alphabet()
    game = GameData(data_dir)
    if len(game.entries) != CD_RELEASE_ENTRIES:
        logger.warning("%s has %d files, the CD release v0.0372 has %d: other releases use other text codes, "
                       "so decoding may fail", game.directory_path, len(game.entries), CD_RELEASE_ENTRIES)
    lines, dropped = list_lines(game, alphabet)
    if not lines:
        raise CorpusError(f"{game.directory_path}: no speech file has a usable text")
    layout = Layout(target_dir, SOURCE)
    targets = [layout.wav(SPLIT, line.utterance_id) for line in lines]
    pool = ThreadPoolExecutor(max_workers=max(1, workers))  # resampling and WAV writing run without the GIL
    try:
        with tqdm(total=len(lines), desc="sky", unit=" lines", disable=not progress) as bar:
            futures = [pool.submit(_convert, game, line, target) for line, target in zip(lines, targets)]
            durations = []
            for future in futures:
                durations.append(future.result())
                bar.update(1)
    finally:
        pool.shutdown(cancel_futures=True)  # on an error or Ctrl-C, stop instead of converting the rest
    records = []
    for line, target, duration in zip(lines, targets, durations):
        if duration <= 0 or not limits.admits(duration):
            dropped["outside the duration limits"] += 1
            continue
        records.append({"audio_filepath": os.path.relpath(target, target_dir), "text": line.text,
                        "duration": round(duration, 4), "source": SOURCE, "text_id": f"{line.section}-{line.index}"})
    if not records:
        raise CorpusError(f"{layout.manifest(SPLIT)}: no lines to write: all {len(lines)} were outside the duration "
                          f"limits [{limits.minimum}, {limits.maximum}] s")
    manifest = layout.manifest(SPLIT)
    write_jsonl(manifest, records)
    if os.path.isfile(copyright_file):
        shutil.copyfile(copyright_file, os.path.join(target_dir, "COPYRIGHT-beneath-a-steel-sky.txt"))
    hours = sum(record["duration"] for record in records) / 3600
    logger.info("wrote %s: %d lines, %.3f hours; left out: %s", manifest, len(records), hours,
                ", ".join(f"{count} {reason}" for reason, count in sorted(dropped.items())) or "none")
    return {SPLIT: manifest}
