"""Flight of the Amazon Queen (1995, freeware CD version): ~6,700 acted English speech clips with their script.

The Debian package `flight-of-the-amazon-queen` installs one resource archive, `queen.1c`, rebuilt for
ScummVM: a 15-byte header (`QTBL`, a 6-byte version string such as `CEM10`, floppy and demo flags, the
speech compression (0 none, 1 MP3, 2 Ogg Vorbis, 3 FLAC) and a big-endian entry count), then 21-byte
entries (12-byte NUL-padded 8.3 name, bundle number, absolute offset and size, both big-endian), then the
files. Speech clips are the `.SB` entries: in this package MP3 frames at 11.025 kHz; in uncompressed
releases a 110-byte (version 104) or 122-byte (version 110) header, version at bytes 2-3 little-endian,
followed by unsigned 8-bit PCM at 11.025 kHz.

The lines live in three kinds of script file, and each clip's name says which line it voices:
- dialogues (`*.DOG`, 20-byte header skipped): `<talk key %2d><line id %4x><P|J><segment %1x>`, e.g.
  `020001P2.SB` is segment 2 of the person's line 1 in the dialogue with talk key 2; `SSSS`/`XXXX` instead of
  the id mark Joe's opening line and the "talked before" pair;
- cutaways (`*.CUT`, 20-byte header skipped): the cutaway name padded with `_` to 5 characters, the
  object number `%02d` and the segment, e.g. `C1A__051.SB`;
- Joe's remarks in the text list `QUEEN2.JAS` (CR LF lines): `JOE<number %04d><segment>`, where responses
  1-40 keep their number and object descriptions add 40 to theirs.
A line is cut into segments at `*` commands (`*FL`, `*WT`, `*24`, `*XY00(237,112)`...), each voiced by its
own clip numbered from 1. Spaces in a name become `0` (`%2d` of 2 is " 2").
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import struct
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from deepspeech_pytorch.audio import SAMPLE_RATE, AudioError, audio_duration, resample
from deepspeech_pytorch.corpora import CorpusError
from deepspeech_pytorch.corpora.align import Decision, Recognizer, Thresholds, align
from deepspeech_pytorch.corpora.convert import DurationLimits, Layout, _write_wav
from deepspeech_pytorch.datasets import write_jsonl
from deepspeech_pytorch.labels import Alphabet

logger = logging.getLogger(__name__)

DEFAULT_ARCHIVE = "/usr/share/scummvm/flight-of-the-amazon-queen/queen.1c"
DEBIAN_PACKAGE = "flight-of-the-amazon-queen"
CORPUS = "queen"
SPLIT = "train"

TABLE_MAGIC = b"QTBL"
HEADER = struct.Struct(">4s6sBBBH")  # magic, version string, floppy, demo, compression, entry count
ENTRY = struct.Struct(">12sBII")  # name, bundle, offset, size
COMPRESSIONS = {0: "none", 1: "mp3", 2: "vorbis", 3: "flac"}
SCRIPT_HEADER_BYTES = 20  # skipped before .DOG, .CUT and QUEEN.JAS data
SB_HEADER_BYTES = {104: 110, 110: 122}  # raw .SB header size by its version
SB_RATE = 11025  # Hz, raw 8-bit unsigned PCM of uncompressed .SB files
JOE_RESPONSES = 40  # QUEEN2.JAS: Joe's generic responses, numbered before the object descriptions
CUTAWAY_OBJECT_WORDS = 17  # int16 fields per cutaway object record
CUTAWAY_ANIM_WORDS = 9  # int16 fields per cutaway animation frame (talkie versions carry a song number)
MAX_CUTAWAY_PEOPLE = 6  # persons a cutaway object may turn on
OBJECT_ROOMFADE = -1  # cutaway object number meaning "fade the room in, then Joe"


class QueenError(CorpusError):
    """A resource archive or script file that does not have the expected layout."""


# ---------------------------------------------------------------- the resource archive

@dataclass(frozen=True)
class ResourceEntry:
    name: str  # 8.3 upper-case file name, e.g. "020001P2.SB"
    bundle: int
    offset: int  # bytes from the start of the archive
    size: int  # bytes


class ResourceArchive:
    """Read-only view of a `queen.1c` archive: `names()`, `read(name)`; use as a context manager."""

    def __init__(self, path: str) -> None:
        self.path = path
        if not os.path.isfile(path):
            raise QueenError(f"{path}: resource archive not found; install the Debian package {DEBIAN_PACKAGE} "
                             f"(apt-get install {DEBIAN_PACKAGE}) or pass the path of queen.1c")
        self._handle = open(path, "rb")
        try:
            self._read_table()
        except BaseException:
            self._handle.close()
            raise

    def _read_table(self) -> None:
        size = os.fstat(self._handle.fileno()).st_size
        header = self._handle.read(HEADER.size)
        if len(header) < HEADER.size or not header.startswith(TABLE_MAGIC):
            raise QueenError(f"{self.path}: not a rebuilt FOTAQ resource archive (no {TABLE_MAGIC.decode()} header); "
                             "original CD images need ScummVM's queen.tbl, which this reader does not use")
        _, version, self.floppy, self.demo, self.compression, count = HEADER.unpack(header)
        self.version = version.split(b"\0")[0].decode("ascii", "replace")
        table = self._handle.read(count * ENTRY.size)
        if len(table) < count * ENTRY.size:
            raise QueenError(f"{self.path}: resource table truncated ({count} entries announced)")
        self.entries: "OrderedDict[str, ResourceEntry]" = OrderedDict()
        for index in range(count):
            raw_name, bundle, offset, length = ENTRY.unpack_from(table, index * ENTRY.size)
            name = raw_name.split(b"\0")[0].decode("ascii", "replace").upper()
            if offset + length > size:
                raise QueenError(f"{self.path}: entry {index} ({name}) ends at byte {offset + length}, "
                                 f"past the end of the file ({size} bytes)")
            self.entries[name] = ResourceEntry(name, bundle, offset, length)

    @property
    def language(self) -> str:
        """The version string's language letter: E English, F French, G German, I Italian, S Spanish, H Hebrew."""
        return self.version[1:2]

    def names(self, extension: str = "") -> List[str]:
        """Entry names, in table order, optionally only those ending in `extension` (e.g. ".SB")."""
        extension = extension.upper()
        return [name for name in self.entries if name.endswith(extension)]

    def read(self, name: str) -> bytes:
        entry = self.entries.get(name.upper())
        if entry is None:
            raise QueenError(f"{self.path}: no entry named {name}")
        if entry.bundle != 1:
            raise QueenError(f"{self.path}: {name} lives in bundle queen.{entry.bundle}, which is not supported")
        self._handle.seek(entry.offset)
        return self._handle.read(entry.size)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "ResourceArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- speech clips

def decode_speech(data: bytes, name: str = "clip") -> Tuple[np.ndarray, int]:
    """Samples (float32, shape (samples,)) and their rate of one .SB payload: MP3/Ogg/FLAC or raw SB.

    Compressed payloads are decoded by libsndfile; a raw SB has its header stripped and its unsigned 8-bit
    PCM rescaled to [-1, 1).
    """
    if not data:
        raise AudioError(f"{name}: empty speech clip")
    compressed = data[:3] == b"ID3" or data[:4] in (b"OggS", b"fLaC") or (
        len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)
    if compressed:
        try:
            samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError, EOFError) as error:
            raise AudioError(f"{name}: cannot decode speech clip ({error})") from None
        if samples.shape[0] == 0:
            raise AudioError(f"{name}: speech clip has zero length")
        return samples.mean(axis=1).astype(np.float32), rate
    if len(data) < 4:
        raise AudioError(f"{name}: speech clip too short for an SB header ({len(data)} bytes)")
    version = struct.unpack_from("<H", data, 2)[0]
    header = SB_HEADER_BYTES.get(version)
    if header is None:
        raise AudioError(f"{name}: neither compressed audio nor a raw SB clip (SB version {version}; "
                         f"known: {sorted(SB_HEADER_BYTES)})")
    pcm = np.frombuffer(data[header:], dtype=np.uint8)
    if pcm.size == 0:
        raise AudioError(f"{name}: SB clip has a header but no samples")
    return (pcm.astype(np.float32) - 128.0) / 128.0, SB_RATE


# ---------------------------------------------------------------- script lines

@dataclass(frozen=True)
class ScriptLine:
    clip: str  # speech file name without ".SB", e.g. "020001P2"
    text: str  # the segment as written in the script (commands removed)
    source: str  # script file it comes from, e.g. "CHEF.DOG"
    speaker: Optional[str] = None  # "joe", the dialogue's person or the cutaway object's name; None if unknown


_NUMBERED_COMMAND = re.compile(r"\d\d")
_WALK_COMMAND = "XY"  # *XY00(237,112): two digits and "(x,y)" follow the letters
_WALK_ARGUMENT_LENGTH = 11
_SILENT_COMMANDS = ("GD", "GM")  # grab down / grab middle: the engine speaks nothing for the segment before them


def split_segments(sentence: str) -> List[Tuple[int, str]]:
    """(segment number from 1, text) of each voiced segment of a script sentence, as the engine cuts it.

    Every `*` command ends a segment and advances the number, whether or not the text before it is empty;
    segments before a silent command (`*GD`, `*GM`) and empty segments are left out.
    """
    segments = []
    index = 0  # segment number - 1
    start = 0
    position = 0
    while position < len(sentence):
        if sentence[position] != "*":
            position += 1
            continue
        text = sentence[start:position]
        command = sentence[position + 1:position + 3]
        position += 3
        if command == _WALK_COMMAND:
            position += _WALK_ARGUMENT_LENGTH
        if command not in _SILENT_COMMANDS and text.strip():
            segments.append((index + 1, text))
        index += 1
        start = position
    if start < len(sentence) and sentence[start:].strip():
        segments.append((index + 1, sentence[start:]))
    return [(number, text.strip()) for number, text in segments]


def _clip_name(prefix: str, segment: int) -> str:
    name = f"{prefix}{segment:1x}"
    return (name[:8].replace(" ", "0") + name[8:]).upper()


def _segment_lines(prefix: str, sentence: str, source: str, speaker: Optional[str]) -> List[ScriptLine]:
    return [ScriptLine(_clip_name(prefix, number), text, source, speaker)
            for number, text in split_segments(sentence)]


class _Reader:
    """Big-endian int16 and length-prefixed strings out of one script file's data, naming it in errors."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name

    def int16(self, offset: int) -> int:
        if offset < 0 or offset + 2 > len(self.data):
            raise QueenError(f"{self.name}: read past the end of the data at byte {offset}")
        return struct.unpack_from(">h", self.data, offset)[0]

    def uint16(self, offset: int) -> int:
        return self.int16(offset) & 0xFFFF

    def string(self, offset: int, align: int = 2) -> Tuple[str, int]:
        """The string at `offset` (one length byte, then the text) and the offset after it, padded to `align`."""
        if offset >= len(self.data):
            raise QueenError(f"{self.name}: string offset {offset} lies past the end of the data")
        length = self.data[offset]
        offset += 1
        if not length:
            return "", offset
        if offset + length > len(self.data):
            raise QueenError(f"{self.name}: string of {length} bytes at {offset - 1} runs past the end of the data")
        text = self.data[offset:offset + length].decode("latin-1")
        return text, (offset + length + align - 1) & ~(align - 1)


def dialogue_speaker(name: str, persons: Sequence[str] = ()) -> str:
    """A dialogue's person from its file name: the one person whose name the stem starts ("SEC1.DOG" ->
    "secretary") or names a word of ("BOB1.DOG" -> "trader bob"), else the stem itself ("TAM2.DOG" -> "tam")."""
    stem = re.sub(r"\d+$", "", os.path.splitext(name)[0]).lower() or os.path.splitext(name)[0].lower()
    for rule in (lambda p: p == stem, lambda p: p.replace(" ", "").startswith(stem),
                 lambda p: stem in p.replace("-", " ").split()):
        found = [person for person in persons if rule(person)]
        if len(found) == 1:
            return found[0]
        if found:
            break
    return stem


def dialogue_lines(data: bytes, name: str, persons: Sequence[str] = ()) -> List[ScriptLine]:
    """The voiced lines of one .DOG file (its raw bytes, header included); `persons` helps name the speaker."""
    reader = _Reader(data[SCRIPT_HEADER_BYTES:], name)
    level_max = abs(reader.int16(0))
    talk_key = reader.int16(4)
    joe_max = reader.int16(6)
    person_max = reader.int16(8)
    person1 = reader.uint16(22)
    person2 = reader.uint16(26)
    joe_start = 32 + level_max * 96
    person = dialogue_speaker(name, persons)
    lines: List[ScriptLine] = []

    def table(offset: int, count: int, letter: str, speaker: str) -> None:
        for _ in range(count):
            offset += 2
            line_id = reader.int16(offset)
            offset += 2
            text, offset = reader.string(offset, align=4)
            if text and line_id > 0:
                lines.extend(_segment_lines(f"{talk_key:2d}{line_id:4x}{letter}", text, name, speaker))

    if not reader.uint16(joe_start + 2):  # Joe opens the dialogue
        opening, _ = reader.string(joe_start + 4)
        if opening and not opening.startswith("0"):
            lines.extend(_segment_lines(f"{talk_key:2d}SSSSJ", opening, name, "joe"))
    table(joe_start, joe_max, "J", "joe")
    table(person1, person_max, "P", person)
    again_person, offset = reader.string(person2)
    again_joe, _ = reader.string(offset)
    if again_person:
        lines.extend(_segment_lines(f"{talk_key:2d}XXXXP", again_person, name, person))
    if again_joe and not again_joe.startswith("0"):
        lines.extend(_segment_lines(f"{talk_key:2d}XXXXJ", again_joe, name, "joe"))
    return lines


@dataclass(frozen=True)
class GameText:
    """What QUEEN.JAS and QUEEN2.JAS say: descriptions, object names, Joe's responses and each object's name and image."""

    descriptions: List[str]
    object_names: List[str]
    joe_responses: List[str]
    objects: List[Tuple[int, int]]  # (name index, image) per object number; index 0 unused

    def object_name(self, number: int) -> Optional[str]:
        if 0 < number < len(self.objects):
            index = abs(self.objects[number][0])
            if 0 < index <= len(self.object_names):
                return self.object_names[index - 1]
        return None

    def is_person(self, number: int) -> bool:
        return 0 < number < len(self.objects) and self.objects[number][1] in (-3, -4)

    def person_names(self) -> List[str]:
        """Lower-case names of the objects that are persons, sorted."""
        return sorted({self.object_name(n).lower() for n in range(1, len(self.objects))
                       if self.is_person(n) and self.object_name(n)})


def read_game_text(jas: bytes, jas2: bytes) -> GameText:
    """Object names, descriptions and Joe's responses from QUEEN.JAS (counts, objects) and QUEEN2.JAS (text)."""
    reader = _Reader(jas[SCRIPT_HEADER_BYTES:], "QUEEN.JAS")
    rooms, names, count, descriptions = (reader.uint16(offset) for offset in (0, 2, 4, 6))
    objects = [(0, 0)] + [(reader.int16(8 + 16 * number), reader.int16(8 + 16 * number + 14))
                          for number in range(count)]
    strings = jas2.decode("latin-1").replace("\r\n", "\n").split("\n")
    needed = descriptions + names + rooms + 12 + JOE_RESPONSES
    if len(strings) < needed:
        raise QueenError(f"QUEEN2.JAS: {len(strings)} lines, expected at least {needed} "
                         f"({descriptions} descriptions, {names} names, {rooms} rooms, 12 verbs, "
                         f"{JOE_RESPONSES} responses)")
    first_response = descriptions + names + rooms + 12
    return GameText(strings[:descriptions], strings[descriptions:descriptions + names],
                    strings[first_response:first_response + JOE_RESPONSES], objects)


def joe_remark_lines(text: GameText) -> List[ScriptLine]:
    """Joe's voiced responses and object descriptions (lines that only name a cutaway are skipped)."""
    lines = []
    for number, sentence in enumerate(text.joe_responses, start=1):
        lines.extend(_segment_lines(f"JOE{number:04d}", sentence, "QUEEN2.JAS", "joe"))
    for number, sentence in enumerate(text.descriptions, start=1):
        if sentence.upper().endswith(".CUT"):
            continue
        lines.extend(_segment_lines(f"JOE{number + JOE_RESPONSES:04d}", sentence, "QUEEN2.JAS", "joe"))
    return lines


@dataclass(frozen=True)
class _CutawayObject:
    number: int  # object number: 0 Joe, >0 an object of QUEEN.JAS, -2/-3 spoken text, -4 displayed text
    voiced: bool  # whether the engine speaks the object's sentence
    speaker: Optional[str]


def _cutaway_objects(reader: _Reader, count: int, text: GameText) -> Optional[List[_CutawayObject]]:
    """Each cutaway object record in order, or None when the walk through the records goes astray.

    Whether a record is followed by animation frames depends on its object's image in QUEEN.JAS: Joe and
    persons without an animation list speak; copied objects, text records and records without `execute`
    carry no frames. The walk must end just before the game-state block the file's header points to.
    """
    objects: List[_CutawayObject] = []
    offset = 12
    try:
        for _ in range(count):
            fields = [reader.int16(offset + 2 * k) for k in range(CUTAWAY_OBJECT_WORDS)]
            offset += 2 * CUTAWAY_OBJECT_WORDS
            number, anim_list, execute, from_object = fields[0], fields[4], fields[5], fields[12]
            if number == OBJECT_ROOMFADE:
                number = 0  # a room fade, then Joe
            people = reader.int16(offset)
            if not 0 <= people <= MAX_CUTAWAY_PEOPLE:
                return None
            offset += 2 + 2 * people
            if number == 0:
                person, speaker = not anim_list, "joe"
            elif number > 0:
                name = text.object_name(number)
                person, speaker = not anim_list and text.is_person(number), name.lower() if name else None
            else:
                person, speaker = False, None
            if number in (-2, -3):
                objects.append(_CutawayObject(number, True, None))
                continue
            objects.append(_CutawayObject(number, person and from_object <= 0, speaker))
            if not person and from_object <= 0 and number != -4 and execute:
                while True:  # animation frames, up to a -2
                    header = reader.int16(offset)
                    offset += 2
                    if header == -2:
                        break
                    if header > 1000:
                        return None
                    offset += 2 * CUTAWAY_ANIM_WORDS
    except QueenError:
        return None
    game_state = reader.uint16(6)
    if not 0 < game_state - offset <= 4:  # a 2-byte terminator, or an unread empty frame list and terminator
        return None
    return objects


def cutaway_lines(data: bytes, name: str, text: GameText) -> List[ScriptLine]:
    """The voiced lines of one .CUT file (its raw bytes, header included).

    Object i's sentence is the i-th string after the entry string; persons' sentences are cut into
    segments (`<name>_<i %02d><segment>`), spoken text records are one clip (`...1`). When the object
    records cannot be walked, every sentence is taken as a person's, with no speaker.
    """
    reader = _Reader(data[SCRIPT_HEADER_BYTES:], name)
    count = abs(reader.int16(2))
    offset = reader.uint16(8)
    _, offset = reader.string(offset)  # the entry string: how Joe faces when the cutaway starts
    objects = _cutaway_objects(reader, count, text)
    if objects is None:
        logger.debug("%s: object records could not be walked; speakers unknown", name)
    base = os.path.splitext(name)[0].upper()
    lines: List[ScriptLine] = []
    for index in range(1, count + 1):
        sentence, offset = reader.string(offset)
        if not sentence or sentence == "*" or sentence.startswith("#"):
            continue
        item = objects[index - 1] if objects is not None else _CutawayObject(0, True, None)
        if not item.voiced:
            continue
        prefix = (base + "_" * 5)[:5] + f"{index:02d}"[:2]
        if item.number in (-2, -3):
            lines.append(ScriptLine(_clip_name(prefix, 1), _strip_commands(sentence), name, None))
        else:
            lines.extend(_segment_lines(prefix, sentence, name, item.speaker))
    return lines


def _strip_commands(sentence: str) -> str:
    return " ".join(text for _, text in split_segments(sentence))


def script_lines(archive: ResourceArchive) -> List[ScriptLine]:
    """Every voiced script segment of the archive: Joe's remarks, then dialogues, then cutaways (table order)."""
    for required in ("QUEEN.JAS", "QUEEN2.JAS"):
        if required not in archive.entries:
            raise QueenError(f"{archive.path}: no {required} in the archive; is this a FOTAQ data file?")
    text = read_game_text(archive.read("QUEEN.JAS"), archive.read("QUEEN2.JAS"))
    persons = text.person_names()
    lines = joe_remark_lines(text)
    for name in archive.names(".DOG"):
        lines.extend(dialogue_lines(archive.read(name), name, persons))
    for name in archive.names(".CUT"):
        lines.extend(cutaway_lines(archive.read(name), name, text))
    return lines


_CUE = re.compile(r"^\s*[(<\[].*[)>\]]\s*$")  # a whole segment like "(sigh)" or "<gulp>": a sound, not words
_NOT_SPOKEN_AS_WRITTEN = re.compile(r"[0-9#$%&/@^_<>()\[\]{}*=+|~\\]")  # digits, symbols: read aloud otherwise


def clean_line(text: str) -> Optional[str]:
    """The words a segment speaks, or None when it is a sound cue, a file reference or not plain words.

    "^_" (the game's trademark sign) and "@@" (singing marks) are dropped; digits and symbols would be
    read aloud as words the text does not hold, so such segments are left out.
    """
    text = text.replace("^_", "").replace("@@", " ").strip()
    if not text or _CUE.match(text) or re.search(r"\.(DOG|CUT)$", text, re.IGNORECASE):
        return None
    if _NOT_SPOKEN_AS_WRITTEN.search(text):
        return None
    return " ".join(text.split())


# ---------------------------------------------------------------- preparation

@dataclass(frozen=True)
class _Kept:
    clip: str
    text: str  # normalised transcript
    speaker: Optional[str]
    method: str  # "name" or "alignment"


def _name_map(lines: Sequence[ScriptLine], clips: Sequence[str]) -> Dict[str, List[int]]:
    """Clip -> indexes of the usable lines its name points to."""
    present = set(clips)
    mapping: Dict[str, List[int]] = {}
    for index, line in enumerate(lines):
        if line.clip in present and clean_line(line.text) is not None:
            mapping.setdefault(line.clip, []).append(index)
    return mapping


def _load_clip(archive: ResourceArchive, clip: str) -> np.ndarray:
    samples, rate = decode_speech(archive.read(f"{clip}.SB"), f"{archive.path}:{clip}.SB")
    return resample(samples, rate, SAMPLE_RATE)


def _convert(archive: ResourceArchive, kept: Sequence[_Kept], layout: Layout, limits: DurationLimits,
             workers: int, progress: bool) -> List[Tuple[_Kept, str, float]]:
    """Write each kept clip as a 16 kHz WAV (skipping ones an earlier run wrote); (kept, path, seconds) in order."""
    payloads = {item.clip: archive.read(f"{item.clip}.SB") for item in kept}  # one file handle: read serially

    def convert(item: _Kept) -> Optional[Tuple[_Kept, str, float]]:
        target = layout.wav(SPLIT, item.clip)
        if os.path.isfile(target):
            try:
                return item, target, audio_duration(target)
            except AudioError:
                pass
        try:
            samples, rate = decode_speech(payloads[item.clip], f"{archive.path}:{item.clip}.SB")
        except AudioError as error:
            logger.warning("skipping undecodable clip: %s", error)
            return None
        samples = resample(samples, rate, SAMPLE_RATE)
        duration = len(samples) / SAMPLE_RATE
        if limits.admits(duration):
            _write_wav(target, samples)
        return item, target, duration

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(tqdm(pool.map(convert, kept), total=len(kept), desc="queen wav", unit=" clips",
                            disable=not progress))
    return [result for result in results if result is not None]


def _write_manifest(path: str, rows: Sequence[Tuple[_Kept, str, float]]) -> None:
    """JSON lines with audio paths relative to the manifest, written through a temporary file."""
    base = os.path.dirname(os.path.abspath(path))
    records = []
    for item, audio, duration in rows:
        record = {"audio_filepath": os.path.relpath(audio, base), "text": item.text, "duration": round(duration, 4)}
        if item.speaker:
            record["speaker"] = item.speaker
        record["source"] = CORPUS
        records.append(record)
    write_jsonl(path, records)


def _rate(value: Optional[float]) -> Optional[float]:
    return None if value is None or math.isinf(value) else round(value, 4)


def _write_alignment_report(path: str, decisions: Mapping[str, Decision], lines: Sequence[ScriptLine]) -> None:
    """One JSON line per clip: the decision, the recognizer's transcript and the chosen script text."""
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        for clip, decision in decisions.items():
            line = lines[int(decision.line)] if decision.line is not None else None
            handle.write(json.dumps({
                "clip": clip, "method": decision.method, "hypothesis": decision.hypothesis,
                "script": line.text if line else None, "source": line.source if line else None,
                "cer": _rate(decision.cer), "runner_up_cer": _rate(decision.runner_up),
                "named_cer": _rate(decision.named_cer),
            }, ensure_ascii=False) + "\n")
    os.replace(temporary, path)


def _choose_by_name(lines: Sequence[ScriptLine], named: Mapping[str, List[int]]) -> Dict[str, Tuple[int, str]]:
    """Clip -> (line index, "name") for clips whose name points to one text; ambiguous names are skipped."""
    chosen = {}
    for clip, indexes in named.items():
        texts = {clean_line(lines[i].text) for i in indexes}
        if len(texts) == 1:
            chosen[clip] = (indexes[0], "name")
        else:
            logger.warning("%s: its name points to %d different lines; skipped (align to choose)", clip, len(texts))
    return chosen


def _choose_by_recognizer(archive: ResourceArchive, lines: Sequence[ScriptLine], clips: Sequence[str],
                          named: Mapping[str, List[int]], recognizer: Recognizer, thresholds: Thresholds,
                          layout: Layout, progress: bool) -> Dict[str, Tuple[int, str]]:
    """Clip -> (line index, method) for the clips the aligner keeps; writes queen_alignment.jsonl."""
    candidates = {str(i): clean_line(line.text) for i, line in enumerate(lines) if clean_line(line.text) is not None}
    expected = {clip: [str(i) for i in indexes] for clip, indexes in named.items()}
    cache = os.path.join(layout.root, "transcripts", f"{getattr(recognizer, 'name', 'recognizer')}.jsonl")
    decisions = align(clips, lambda clip: _load_clip(archive, clip), candidates, recognizer, expected, thresholds,
                      cache, progress)
    _write_alignment_report(os.path.join(layout.root, f"{CORPUS}_alignment.jsonl"), decisions, lines)
    return {clip: (int(d.line), d.method) for clip, d in decisions.items() if d.line is not None}


def prepare(target_dir: str, archive_path: str = DEFAULT_ARCHIVE, recognizer: Optional[Recognizer] = None,
            thresholds: Thresholds = Thresholds(), limits: DurationLimits = DurationLimits(), workers: int = 1,
            alphabet: Optional[Alphabet] = None, progress: bool = True) -> Dict[str, str]:
    """Write `<target_dir>/queen_train.jsonl` and its 16 kHz WAVs from the game's speech and script.

    Clips whose file name points to exactly one usable script segment are kept with that segment's text.
    With a `recognizer` (16 kHz samples -> text; see `align.WhisperRecognizer`) every clip is transcribed
    (transcripts cached under `transcripts/`): named clips must be confirmed, the others (and named ones
    that fail) may be aligned to another line under `thresholds`, and `queen_alignment.jsonl` records every
    decision. Returns {"train": manifest path}.
    """
    alphabet = alphabet or Alphabet()
    layout = Layout(target_dir, CORPUS)
    with ResourceArchive(archive_path) as archive:
        if archive.language != "E":
            raise QueenError(f"{archive_path}: version {archive.version} is not the English release")
        lines = script_lines(archive)
        clips = [name[:-len(".SB")] for name in archive.names(".SB")]
        if not clips:
            raise QueenError(f"{archive_path}: no .SB speech clips in the archive")
        named = _name_map(lines, clips)
        logger.info("%s: %d speech clips, %d script segments; %d clips named by a usable segment",
                    archive_path, len(clips), len(lines), len(named))
        if recognizer is None:
            chosen = _choose_by_name(lines, named)
        else:
            chosen = _choose_by_recognizer(archive, lines, clips, named, recognizer, thresholds, layout, progress)
        kept = []
        for clip in clips:
            if clip not in chosen:
                continue
            index, method = chosen[clip]
            text = alphabet.normalize(clean_line(lines[index].text), utterance=clip)
            if text:
                kept.append(_Kept(clip, text, lines[index].speaker, method))
        by_method = {method: sum(item.method == method for item in kept) for method in ("name", "alignment")}
        logger.info("kept %d of %d clips: %d by name, %d by alignment%s", len(kept), len(clips),
                    by_method["name"], by_method["alignment"], f" ({thresholds})" if recognizer else "")
        if not kept:
            raise QueenError(f"{archive_path}: no clip could be matched to a script line")
        rows = _convert(archive, kept, layout, limits, workers, progress)
    rows = [row for row in rows if limits.admits(row[2])]
    if not rows:
        raise QueenError(f"{layout.manifest(SPLIT)}: no clips within the duration limits "
                         f"[{limits.minimum}, {limits.maximum}] s")
    manifest = layout.manifest(SPLIT)
    _write_manifest(manifest, rows)
    logger.info("wrote %s: %d utterances, %.3f hours", manifest, len(rows), sum(row[2] for row in rows) / 3600)
    return {SPLIT: manifest}
