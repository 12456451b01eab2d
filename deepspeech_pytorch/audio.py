"""Audio decoding: any file libsndfile reads -> mono float32 in [-1, 1] at the model's rate.

soundfile (libsndfile) decodes WAV, FLAC, OGG (Vorbis, Opus), MP3 (libsndfile >= 1.1), AIFF, CAF, AU, W64,
NIST SPHERE and more; soxr resamples. torchaudio is deliberately not used: no build of it exists for the
CPU torch we target.

Every path in (transcribe.py, the Python API, the server, training) goes through `load_audio`, so one
file gets one answer everywhere. Before libsndfile sees a file, its first bytes are checked: a container
libsndfile does not read (an M4A renamed .mp3, a WebM voice note, an HTML error page saved as .wav) is
refused with what it looks like, rather than with libsndfile's misleading "file does not exist" and the
notes its MP3 decoder prints while trying. Header sizes left unfinished by streaming writers (0 or
0xFFFFFFFF) are read to the end of the file, as ffmpeg does; a file cut short of the size its header
promises is decoded as far as it goes with a warning (the server refuses it instead).
"""

from __future__ import annotations

import functools
import io
import logging
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf
import soxr

from deepspeech_pytorch.configs import SAMPLE_RATE

logger = logging.getLogger(__name__)

MIN_SECONDS = 0.02  # one analysis window (FeatureConfig.window_size): less audio than this makes no feature frame
HEAD_BYTES = 512  # read to recognise a container (a tar header's magic sits at byte 257)

AudioSource = Union[str, os.PathLike, bytes, BinaryIO]

# A header size this large on a file far smaller is a placeholder left by a writer that could not seek back
# (0xFFFFFFFF by ffmpeg and arecord, 0x7FFFF000 or 0x7F000008 by sox, 0x7FFFFFFF by others), not a promise of 2 GiB.
_PLACEHOLDER_SIZE = 0x7F000000
_UNKNOWN_FRAMES = 2 ** 62  # libsndfile's frame count for a stream that does not state its length


class AudioError(ValueError):
    """Audio that cannot be used: missing, undecodable, empty, too short or containing NaN/inf samples."""


class UnsupportedAudioError(AudioError):
    """Data in a container this library does not decode (the server answers 415)."""


class AudioTooLongError(AudioError):
    """Audio longer than the caller's `max_seconds` (the server answers 413)."""

    def __init__(self, message: str, limit: float, seconds: Optional[float]):
        super().__init__(message)
        self.limit = limit
        self.seconds = seconds  # the length the header states; None when only decoding found it out


# ---- which containers -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Container:
    """A file format libsndfile reads: `key` as `sniff_format` names it, `label` for people."""
    key: str
    label: str
    libsndfile: str  # the name in soundfile.available_formats()
    extensions: Tuple[str, ...]


_CONTAINERS = (
    Container("wav", "WAV", "WAV", (".wav", ".wave")),
    Container("flac", "FLAC", "FLAC", (".flac",)),
    Container("ogg", "OGG", "OGG", (".ogg", ".oga", ".opus")),
    Container("mp3", "MP3", "MP3", (".mp3",)),
    Container("aiff", "AIFF", "AIFF", (".aiff", ".aif", ".aifc")),
    Container("caf", "CAF", "CAF", (".caf",)),
    Container("au", "AU", "AU", (".au", ".snd")),
    Container("w64", "W64", "W64", (".w64",)),
    Container("rf64", "RF64", "RF64", (".rf64",)),
    Container("nist", "NIST SPHERE", "NIST", (".sph", ".nist")),
    Container("ircam", "IRCAM", "IRCAM", (".sf", ".ircam")),
    Container("voc", "VOC", "VOC", (".voc",)),
    Container("svx", "IFF 8SVX", "SVX", (".8svx", ".16sv", ".svx")),
    Container("paf", "PAF", "PAF", (".paf",)),
    Container("mat5", "MAT5", "MAT5", (".mat",)),
    Container("pvf", "PVF", "PVF", (".pvf",)),
    Container("xi", "XI", "XI", (".xi",)),
    Container("avr", "AVR", "AVR", (".avr",)),
    Container("wve", "WVE", "WVE", (".wve",)),
)
# Formats libsndfile reads that have no magic bytes: only a file's extension says what they are.
_MAGICLESS = {"HTK": (".htk",), "MAT4": (".mat",), "SD2": (".sd2",), "SDS": (".sds",)}

COMMON_FORMATS = ("wav", "flac", "ogg", "mp3")  # what the server accepts


@functools.lru_cache(maxsize=None)
def readable_containers() -> Dict[str, Container]:
    """The containers this installation's libsndfile decodes, by key (MP3 needs libsndfile >= 1.1)."""
    available = sf.available_formats()
    containers = {}
    for container in _CONTAINERS:
        if container.libsndfile not in available:
            continue
        if container.key == "ogg" and "OPUS" not in sf.available_subtypes("OGG"):
            container = Container("ogg", "OGG", "OGG", (".ogg", ".oga"))
        containers[container.key] = container
    return containers


def _audio_extensions() -> Tuple[str, ...]:
    extensions: List[str] = []
    for container in readable_containers().values():
        extensions.extend(container.extensions)
    available = sf.available_formats()
    for name, names in _MAGICLESS.items():
        if name in available:
            extensions.extend(names)
    return tuple(dict.fromkeys(extensions))


AUDIO_EXTENSIONS = _audio_extensions()  # what folder listings pick up: every extension libsndfile reads
_MAGICLESS_EXTENSIONS = tuple(ext for names in _MAGICLESS.values() for ext in names)

# Audio and video containers people have that libsndfile does not read, by extension: named when skipped.
FOREIGN_EXTENSIONS = {
    ".m4a": "M4A (MP4/AAC)", ".m4b": "M4B (MP4/AAC audiobook)", ".mp4": "MP4", ".aac": "AAC", ".3gp": "3GP",
    ".3ga": "3GP audio", ".amr": "AMR", ".awb": "AMR-WB", ".wma": "WMA", ".asf": "ASF", ".webm": "WebM",
    ".weba": "WebM audio", ".mka": "Matroska audio", ".mkv": "Matroska video", ".mov": "QuickTime", ".avi": "AVI",
    ".ac3": "AC-3", ".eac3": "E-AC-3", ".dts": "DTS", ".ape": "Monkey's Audio", ".wv": "WavPack", ".tta": "TTA",
    ".mpc": "Musepack", ".dsf": "DSF", ".dff": "DFF", ".ra": "RealAudio", ".rm": "RealMedia", ".mid": "MIDI",
    ".midi": "MIDI", ".spx": "Speex", ".gsm": "GSM", ".vox": "Dialogic VOX", ".aa": "Audible", ".aax": "Audible",
}


def format_names(formats: Sequence[str]) -> str:
    """People's names of container keys: ("wav", "flac", "ogg", "mp3") -> "WAV, FLAC, OGG or MP3"."""
    known = readable_containers()
    labels = [known[key].label if key in known else key.upper() for key in formats]
    if len(labels) > 8:
        return ", ".join(labels[:8]) + ", ..."
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]


# ---- recognising a container from its first bytes ------------------------------------------------

_IRCAM_VERSIONS = (b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x04\x00")  # after the 64 a3 magic


def _mpeg_frame(head: bytes) -> bool:
    """An MPEG-1/2/2.5 audio frame header: 11 sync bits, a valid version, layer, bitrate and sample rate."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and layer != 0 and bitrate != 15 and rate != 3


def _id3_size(head: bytes) -> int:
    """Bytes taken by an ID3v2 tag at the start (header, body, footer)."""
    size = 0
    for byte in head[6:10]:
        size = (size << 7) | (byte & 0x7F)
    return 10 + size + (10 if head[5] & 0x10 else 0)


def sniff_format(head: bytes) -> Optional[str]:
    """The container named by a file's first bytes (a few hundred suffice): "wav", "flac", "ogg", "mp3",
    "aiff", ... (a key of `readable_containers`, whether or not this libsndfile reads it), or None.

    ID3-tagged data is "mp3" unless the bytes after the tag are known; `load_audio` looks there itself.
    """
    four = head[:4]
    if four in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        return "wav"
    if four in (b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "rf64"
    if four == b"riff" and head[24:28] == b"wave":
        return "w64"
    if four == b"fLaC":
        return "flac"
    if four == b"OggS":
        return "ogg"
    if four == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if four == b"FORM" and head[8:12] in (b"8SVX", b"16SV"):
        return "svx"
    if four == b"caff":
        return "caf"
    if four in (b".snd", b"dns."):
        return "au"
    if head.startswith(b"NIST_1A"):
        return "nist"
    if head[:2] == b"\x64\xa3" and head[2:4] in _IRCAM_VERSIONS or \
            head[2:4] == b"\xa3\x64" and head[:2] in (v[::-1] for v in _IRCAM_VERSIONS):
        return "ircam"
    if head.startswith(b"Creative Voice File\x1a"):
        return "voc"
    if four in (b" paf", b"fap "):
        return "paf"
    if head.startswith(b"MATLAB 5.0 MAT-file"):
        return "mat5"
    if head.startswith(b"PVF1\n"):
        return "pvf"
    if head.startswith(b"Extended Instrument: "):
        return "xi"
    if four == b"2BIT":
        return "avr"
    if head.startswith(b"ALawSoundFile**"):
        return "wve"
    if head[:3] == b"ID3" or _mpeg_frame(head):
        return "mp3"
    return None


_RIFF_TYPES = {b"AVI ": "AVI video", b"WEBP": "a WebP image", b"RMID": "MIDI (notes, not recorded sound)",
               b"CDXA": "a video CD track", b"ACON": "an animated cursor"}
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


def identify_foreign(head: bytes) -> Optional[str]:
    """What a file that libsndfile does not read looks like, for an error message ("MP4/AAC (M4A)",
    "an HTML page ..."), from its first bytes; None when nothing is recognised."""
    four = head[:4]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B ", b"M4P "):
            return "MP4/AAC (M4A)"
        if brand.startswith(b"3g"):
            return "3GP (AMR or AAC)"
        if brand == b"qt  ":
            return "QuickTime (MOV)"
        return "MP4 (AAC audio or video)"
    if head[:1] == b"\x00" and head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "MP4/QuickTime"
    if four == b"\x1a\x45\xdf\xa3":
        return "WebM/Matroska (as browsers and messengers record)"
    if head[:16] == _ASF_GUID:
        return "WMA/ASF (Windows Media)"
    if head.startswith(b"#!AMR"):
        return "AMR (a phone's voice recording)"
    if head[:2] == b"\x0b\x77":
        return "AC-3 (Dolby Digital)"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "AAC (ADTS)"
    foreign = {b"MAC ": "Monkey's Audio (APE)", b"wvpk": "WavPack", b"MPCK": "Musepack", b"TTA1": "TTA",
               b"DSD ": "DSF (DSD audio)", b"FRM8": "DFF (DSD audio)", b"MThd": "MIDI (notes, not recorded sound)",
               b".RMF": "RealMedia", b".ra\xfd": "RealAudio"}
    if foreign.get(four):
        return foreign[four]
    if head[:3] == b"MP+":
        return "Musepack"
    if head[:3] == b"FLV":
        return "Flash video (FLV)"
    if four == b"RIFF" and head[8:12] in _RIFF_TYPES:  # any other RIFF is more likely a damaged WAV header
        return _RIFF_TYPES[head[8:12]]
    if four == b"FORM":
        return f"an IFF file of type {head[8:12]!r}, not AIFF"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "an MPEG transport stream (video)"
    if four == b"\x00\x00\x01\xba":
        return "an MPEG program stream (video)"
    binary = {b"\x89PNG": "a PNG image", b"GIF8": "a GIF image", b"%PDF": "a PDF document",
              b"PK\x03\x04": "a ZIP archive (extract it first)", b"\x7fELF": "a program (ELF executable)"}
    if four in binary:
        return binary[four]
    if head[:3] == b"\xff\xd8\xff":
        return "a JPEG image"
    if head[:2] == b"\x1f\x8b":
        return "a gzip-compressed file (decompress it first)"
    if head[:3] == b"BZh" or head[:6] in (b"\xfd7zXZ\x00", b"7z\xbc\xaf\x27\x1c"):
        return "a compressed archive (extract it first)"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "a tar archive (extract it first)"
    return _describe_text(head)


def _describe_text(head: bytes) -> Optional[str]:
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself (run git lfs pull)"
    if head and not any(head):
        return "only zero bytes"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not just a character cut at the end of the head
            return None
        text = head[: error.start].decode("utf-8")
    if not text or sum(c.isprintable() or c in "\t\r\n" for c in text) < 0.95 * len(text):
        return None
    start = text.lstrip().lower()
    if start.startswith(("<!doctype html", "<html")):
        return "an HTML page (an error page saved in place of a download?)"
    if start.startswith(("{", "[")):
        return "JSON text"
    snippet = " ".join(text.split())[:40]
    return f"text ({snippet!r})"


# ---- reading a source ----------------------------------------------------------------------------

def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return name
    return "<audio bytes>"


class _Bytes:
    """A source's bytes, read on demand: a path stays on disk, bytes and file objects are in memory."""

    def __init__(self, source: AudioSource, name: str):
        self.name = name
        self.path: Optional[str] = None
        self.data: Optional[bytes] = None
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if not os.path.exists(path):
                raise AudioError(f"{name}: audio file not found")
            if os.path.isdir(path):
                raise AudioError(f"{name}: is a folder, not an audio file")
            if not os.path.isfile(path):
                raise AudioError(f"{name}: not a regular file (a pipe or a device?); save the audio to a file first")
            self.path = path
            try:
                self.size = os.path.getsize(path)
                self._handle: Optional[BinaryIO] = open(path, "rb")
            except OSError as error:
                raise AudioError(f"{name}: cannot read the file ({error.strerror or error})") from None
        elif isinstance(source, (bytes, bytearray, memoryview)):
            self.data = bytes(source)
        elif hasattr(source, "read"):
            try:
                data = source.read()
            except (OSError, ValueError) as error:
                raise AudioError(f"{name}: cannot read the audio ({error})") from None
            if not isinstance(data, (bytes, bytearray)):
                raise AudioError(f"{name}: the file object gave {type(data).__name__}, not bytes; "
                                 "open it in binary mode")
            self.data = bytes(data)
        else:
            raise AudioError(f"{name}: expected a file path, bytes or a binary file object, not "
                             f"{type(source).__name__}; give samples to as_mono_waveform")
        if self.data is not None:
            self.size = len(self.data)
            self._handle = None
        if self.size == 0:
            self.close()
            raise AudioError(f"{name}: empty audio data (0 bytes)")

    def read_at(self, offset: int, count: int) -> bytes:
        if self.data is not None:
            return self.data[offset: offset + count]
        self._handle.seek(offset)
        return self._handle.read(count)

    def everything(self) -> bytearray:
        return bytearray(self.data if self.data is not None else self.read_at(0, self.size))

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "_Bytes":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _container_of(source: _Bytes, formats: Optional[Sequence[str]]) -> Optional[str]:
    """The container key of `source`, or None for a file to leave to libsndfile as it is: a magic-less
    format (HTK, MAT4) or a file whose damaged header is not recognised but whose name promises a format
    libsndfile reads (it then says what it cannot decode; not for .mp3, whose decoder prints notes).

    Raises UnsupportedAudioError naming what the data looks like when it is not one of `formats`
    (None: all that libsndfile reads here)."""
    name = source.name
    head = source.read_at(0, HEAD_BYTES)
    key = sniff_format(head)
    if head[:3] == b"ID3" and len(head) >= 10:  # look past the tag: ID3 also fronts FLAC and AAC files
        after = source.read_at(_id3_size(head), HEAD_BYTES)
        inner = sniff_format(after)
        if inner not in (None, "mp3"):
            key = inner
        elif inner is None:
            foreign = identify_foreign(after)
            if foreign is not None and not foreign.startswith(("text", "only zero")):
                raise UnsupportedAudioError(_unsupported(name, formats, f"{foreign} behind an ID3 tag"))
    readable = readable_containers()
    allowed = tuple(readable) if formats is None else tuple(formats)
    if key is not None and key in readable and key in allowed:
        return key
    extension = os.path.splitext(name)[1].lower() if source.path else ""
    promised = [c for c in readable.values() if extension in c.extensions]
    if key is not None:
        looks = readable[key].label if key in readable else key.upper()
        if key not in readable:
            looks += " (this libsndfile cannot decode it)"
    else:
        looks = identify_foreign(head)
        if looks is None:
            if formats is None and extension in _MAGICLESS_EXTENSIONS:
                return None  # an HTK or MAT4 file, say: libsndfile knows it by its extension
            if promised and promised[0].key != "mp3" and promised[0].key in allowed:
                return None  # a damaged header under a name libsndfile reads: its own error says what is wrong
            shown = " ".join(f"{byte:02x}" for byte in head[:8])
            looks = f"unrecognised content (it starts with bytes {shown})"
    promised = [c.label for c in promised]
    if promised and not looks.startswith(promised[0]):
        looks += f", although its name ends in {extension}"
    raise UnsupportedAudioError(_unsupported(name, formats, looks))


def _unsupported(name: str, formats: Optional[Sequence[str]], looks: str) -> str:
    listed = format_names(tuple(readable_containers()) if formats is None else formats)
    # audio in another format can be converted; an image, archive, web page or text is the wrong file
    hint = "" if looks.startswith(("a ", "an ", "text", "JSON", "only zero", "unrecognised")) else \
        "; convert it to WAV or FLAC first (e.g. with ffmpeg)"
    return f"{name}: not a supported audio format ({listed}): looks like {looks}{hint}"


# ---- header sizes: streaming placeholders and truncation ------------------------------------------

def _chunks(source: _Bytes, start: int, size_bytes: int, big_endian: bool, limit: int = 256):
    """(id, size, payload offset) of the chunks of a RIFF/IFF/CAF-style file from `start`."""
    position, order = start, ">" if big_endian else "<"
    code = {4: "I", 8: "q"}[size_bytes]
    for _ in range(limit):
        header = source.read_at(position, 4 + size_bytes)
        if len(header) < 4 + size_bytes:
            return
        chunk = header[:4]
        (size,) = struct.unpack(order + code, header[4:])
        yield chunk, size, position + 4 + size_bytes
        if size < 0 or (size_bytes == 4 and size >= _PLACEHOLDER_SIZE):
            return  # a size to the end of the file: nothing can follow
        position += 4 + size_bytes + size + (size & 1 if size_bytes == 4 else 0)


def _data_size_field(source: _Bytes, key: str) -> Optional[Tuple[int, int, int, str]]:
    """(declared data size, offset of its size field, payload offset, field struct format) of the sample data
    of a WAV, AIFF, AU or CAF file, or None when there is no sample data chunk to check."""
    if key == "wav":
        big = source.read_at(0, 4) == b"RIFX"
        for chunk, size, payload in _chunks(source, 12, 4, big):
            if chunk == b"data":
                return size, payload - 4, payload, (">I" if big else "<I")
    elif key == "aiff":
        for chunk, size, payload in _chunks(source, 12, 4, True):
            if chunk == b"SSND":
                return size, payload - 4, payload, ">I"
    elif key == "caf":
        for chunk, size, payload in _chunks(source, 8, 8, True):
            if chunk == b"data":
                return size, payload - 8, payload, ">q"
    elif key == "au":
        header = source.read_at(0, 12)
        if len(header) == 12:
            order = ">" if header[:4] == b".snd" else "<"
            offset, size = struct.unpack(order + "II", header[4:12])
            return size, 8, offset, order + "I"
    return None


def _truncation(name: str, label: str, declared: int, available: int, unit: str, refuse: bool,
                warn: bool = True) -> None:
    """Refuse a cut-off file (AudioError), or log once per file that only what is there is decoded."""
    problem = (f"{name}: truncated {label} file: its header declares {declared} {unit} but only {available} "
               f"{'follow' if unit.startswith('bytes') else 'could be decoded'}")
    if refuse:
        raise AudioError(f"{problem} (an incomplete copy, download or upload?)")
    if warn and name not in _WARNED_TRUNCATED:
        _WARNED_TRUNCATED.add(name)
        logger.warning("%s; decoding what is there", problem)


_WARNED_TRUNCATED: set = set()


def _checked_header(source: _Bytes, key: Optional[str], refuse_truncated: bool,
                    warn: bool = True) -> Optional[bytearray]:
    """The file's bytes with its data size set to what follows, when a streaming writer left the size 0
    (or CAF's -1) that libsndfile would read as "no samples", or when the file is cut short of the size its
    header declares; None when the header can be used as it is.

    A cut-off file raises AudioError when `refuse_truncated`, else it is logged (once, when `warn`) and what
    is there is decoded, as ffmpeg does."""
    found = _data_size_field(source, key) if key in ("wav", "aiff", "caf", "au") else None
    if found is None:
        return None
    declared, field, payload, layout = found
    available = source.size - payload
    label = readable_containers()[key].label
    if key == "au" and declared == 0xFFFFFFFF:
        return None  # AU's own "size unknown", which libsndfile reads to the end
    unknown = declared in (0, -1) or (layout.endswith("I") and declared >= _PLACEHOLDER_SIZE)
    if unknown:
        if available <= 0 or declared >= _PLACEHOLDER_SIZE:
            return None  # nothing to read, or a huge placeholder libsndfile already stops at the file's end
        logger.info("%s: the %s header's data size is %d (left by a streaming writer): reading to the end of "
                    "the file", source.name, label, declared)
    elif declared > available > 0:
        _truncation(source.name, label, declared, available, "bytes of samples", refuse_truncated, warn)
    else:
        return None
    data = source.everything()
    data[field: field + struct.calcsize(layout)] = struct.pack(layout, available)
    return data


# ---- decoding --------------------------------------------------------------------------------------

def _libsndfile_message(error: Exception) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if message.startswith("Error opening"):  # "Error opening <_io.BytesIO object at 0x..>: reason" / "'x.wav': reason"
        message = message.split(": ", 1)[-1]
    return message.rstrip(".")


def _read_unknown_length(audio: sf.SoundFile, name: str, limit: Optional[int]) -> np.ndarray:
    """Decode a stream whose header does not state its length (a FLAC written to a pipe) block by block.

    soundfile's own read seeks after every block, which libsndfile refuses for such a stream, so the
    blocks are read through libsndfile's C function."""
    reader = getattr(getattr(sf, "_snd", None), "sf_readf_float", None)
    if reader is None:
        raise AudioError(f"{name}: its header does not state its length (written to a pipe?) and this soundfile "
                         "cannot read such a stream; re-encode it (e.g. with ffmpeg)")
    block, blocks, total = 65536, [], 0
    while limit is None or total < limit:
        out = np.empty((block, audio.channels), dtype=np.float32)
        count = reader(audio._file, sf._ffi.cast("float *", out.ctypes.data), block)
        if count <= 0:
            break
        blocks.append(out[:count])
        total += count
        if count < block:
            break
    return np.concatenate(blocks) if blocks else np.zeros((0, audio.channels), np.float32)


def _decode(source: Union[str, io.BytesIO], key: Optional[str], name: str, max_seconds: Optional[float],
            refuse_truncated: bool) -> Tuple[np.ndarray, int]:
    """(samples (frames, channels) float32, sample rate) of an opened source, within `max_seconds`."""
    label = readable_containers()[key].label + " " if key in readable_containers() else ""
    try:
        with sf.SoundFile(source) as audio:
            rate, declared = audio.samplerate, audio.frames
            if rate <= 0:
                raise AudioError(f"{name}: its header gives an invalid sample rate ({rate} Hz)")
            unknown = declared >= _UNKNOWN_FRAMES
            if max_seconds is not None and not unknown and declared / rate > max_seconds:
                raise AudioTooLongError(f"{name}: {declared / rate:.1f} s of audio, longer than the limit of "
                                        f"{max_seconds:g} seconds", max_seconds, declared / rate)
            limit = None if max_seconds is None else int(max_seconds * rate) + 1  # one past: "too long" vs "at it"
            if unknown:
                samples = _read_unknown_length(audio, name, limit)
            else:
                samples = audio.read(frames=-1 if limit is None else min(limit, declared), dtype="float32",
                                     always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, EOFError, ValueError, MemoryError) as error:
        raise AudioError(f"{name}: cannot decode {label}audio ({_libsndfile_message(error)})") from None
    if limit is not None and len(samples) >= limit:
        raise AudioTooLongError(f"{name}: longer than the limit of {max_seconds:g} seconds", max_seconds, None)
    if key == "flac" and not unknown and 0 < len(samples) < declared:
        _truncation(name, "FLAC", declared, len(samples), "frames", refuse_truncated)
    return samples, rate


def _min_samples(min_seconds: float, sample_rate: int) -> int:
    return max(1, int(round(min_seconds * sample_rate)))


def _too_short(name: str, count: int, rate: int, min_seconds: float) -> AudioError:
    plural = "" if count == 1 else "s"
    return AudioError(f"{name}: too short: {count} sample{plural} at {rate} Hz ({1000 * count / rate:.3g} ms); "
                      f"at least {1000 * min_seconds:g} ms (one analysis window) is needed")


def load_audio(source: AudioSource, sample_rate: int = SAMPLE_RATE, *, name: Optional[str] = None,
               min_seconds: float = MIN_SECONDS, max_seconds: Optional[float] = None,
               formats: Optional[Sequence[str]] = None, refuse_truncated: bool = False) -> np.ndarray:
    """Decode `source` (a path, raw bytes or a binary file object) to mono float32 at `sample_rate` Hz.

    Returns shape (samples,), at least `min_seconds` long. Stereo is averaged to mono, other rates are
    resampled. `name` is what errors call the source (default: its path). `max_seconds` bounds the decoding
    (AudioTooLongError past it, checked on the header first); `formats` limits the accepted containers to
    these keys (default: every one libsndfile reads here). A file cut short of the length its header declares
    is decoded as far as it goes with a logged warning, as ffmpeg does, or refused when `refuse_truncated`
    (the server: an upload cut in transit can be sent again). Raises AudioError naming the source for
    anything unusable: UnsupportedAudioError for data in another format, with what it looks like.
    """
    name = name or _describe(source)
    with _Bytes(source, name) as data:
        key = _container_of(data, formats)
        patched = _checked_header(data, key, refuse_truncated)
    opened: Union[str, io.BytesIO]
    if patched is not None:
        opened = io.BytesIO(bytes(patched))
    elif data.data is not None:
        opened = io.BytesIO(data.data)
    else:
        opened = data.path
    samples, rate = _decode(opened, key, name, max_seconds, refuse_truncated)
    if len(samples) == 0:
        raise AudioError(f"{name}: holds no samples (zero-length audio)")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    needed = _min_samples(min_seconds, sample_rate)
    if len(mono) * sample_rate < needed * rate:
        raise _too_short(name, len(mono), rate, min_seconds)
    resampled = resample(mono, rate, sample_rate)
    if len(resampled) < needed:
        raise _too_short(name, len(mono), rate, min_seconds)
    return resampled


# ---- samples handed over directly ----------------------------------------------------------------

_INTEGER_SCALE = {np.dtype(np.int8): 128.0, np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}
MAX_CHANNELS = 8  # 7.1: a longer axis than this is time, not channels


def as_mono_waveform(array: object, name: str = "<samples>", sample_rate: int = SAMPLE_RATE,
                     min_seconds: float = MIN_SECONDS) -> np.ndarray:
    """Check samples given as an array (numpy, a list, a CPU torch tensor) and return them as mono float32,
    shape (samples,), assumed to be at `sample_rate` Hz already.

    Accepts float samples in [-1, 1] and integer PCM (int8/int16/int32, scaled to [-1, 1]; uint8 centred
    at 128). Shape (samples,), or (samples, channels) / (channels, samples) with up to MAX_CHANNELS
    channels: the shorter axis is taken as the channels and averaged. Raises AudioError naming `name`
    for anything else: other dtypes, more dimensions, NaN/inf, or fewer samples than `min_seconds`.
    """
    if hasattr(array, "detach") and hasattr(array, "cpu"):  # a torch tensor, without importing torch here
        array = array.detach().cpu().numpy()
    try:
        samples = np.asarray(array)
    except (ValueError, TypeError) as error:
        raise AudioError(f"{name}: not an array of samples ({error})") from None
    dtype = samples.dtype
    if dtype.kind == "f":
        samples = samples.astype(np.float32)
    elif dtype in _INTEGER_SCALE:
        samples = (samples.astype(np.float32) / _INTEGER_SCALE[dtype]).astype(np.float32)
    elif dtype == np.uint8:
        samples = ((samples.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    else:
        kind = {"b": "booleans", "c": "complex numbers", "O": "Python objects", "U": "text", "S": "bytes"}.get(
            dtype.kind, f"{dtype} integers")
        raise AudioError(f"{name}: samples must be floats in [-1, 1] or int16/int32 PCM, not {kind} ({dtype}); "
                         "for 16-bit PCM held in a wider type use samples.astype(np.int16) or samples / 32768")
    shape = samples.shape
    if samples.ndim > 1 and sum(size > 1 for size in shape) <= 1:
        samples = samples.reshape(-1)  # (1, n), (n, 1), (1, 1, n): one channel
    if samples.ndim == 0:
        raise AudioError(f"{name}: a single number, not an array of samples")
    if samples.ndim == 2:
        channel_axis = int(np.argmin(shape))
        if shape[channel_axis] > MAX_CHANNELS:
            raise AudioError(f"{name}: shape {shape} is not a waveform: expected (samples,) or (samples, channels) "
                             f"with at most {MAX_CHANNELS} channels (a batch? give one waveform at a time)")
        samples = samples.mean(axis=channel_axis, dtype=np.float32)
    elif samples.ndim > 2:
        raise AudioError(f"{name}: shape {shape} is not a waveform: expected (samples,) or (samples, channels)")
    if samples.size == 0:
        raise AudioError(f"{name}: holds no samples (zero-length audio)")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    if samples.size < _min_samples(min_seconds, sample_rate):
        raise _too_short(name, samples.size, sample_rate, min_seconds)
    return np.ascontiguousarray(samples, dtype=np.float32)


def to_waveform(audio: Union[AudioSource, np.ndarray], sample_rate: int = SAMPLE_RATE, name: Optional[str] = None,
                min_seconds: float = MIN_SECONDS) -> np.ndarray:
    """One input of the transcription API -> checked mono float32 at `sample_rate`: a path, bytes or a binary
    file object is decoded with `load_audio`; an array (or tensor, or list) is checked with `as_mono_waveform`."""
    if isinstance(audio, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(audio, "read"):
        return load_audio(audio, sample_rate, name=name, min_seconds=min_seconds)
    return as_mono_waveform(audio, name or "<samples>", sample_rate, min_seconds)


# ---- the rest --------------------------------------------------------------------------------------

def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a mono float32 signal with soxr's high-quality filter."""
    if from_rate == to_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    return soxr.resample(samples, from_rate, to_rate, quality="HQ").astype(np.float32, copy=False)


def audio_duration(path: Union[str, os.PathLike]) -> float:
    """Duration in seconds from the file header, without decoding the samples (except for a stream whose
    header does not state its length). A header size left 0 by a streaming writer counts to the end of the
    file; a cut-off file gives the length of what is there (`load_audio` refuses it). Raises AudioError as
    `load_audio` would for anything else: a missing file, another format, an unreadable header."""
    name = str(path)
    with _Bytes(path, name) as data:
        key = _container_of(data, None)
        patched = _checked_header(data, key, refuse_truncated=False, warn=False)
    try:
        info = sf.info(io.BytesIO(bytes(patched)) if patched is not None else name)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioError(f"{path}: cannot read audio header ({_libsndfile_message(error)})") from None
    if info.samplerate <= 0:
        raise AudioError(f"{path}: invalid sample rate {info.samplerate}")
    if info.frames >= _UNKNOWN_FRAMES:
        samples, rate = _decode(name, key, name, None, refuse_truncated=False)
        return len(samples) / rate
    return info.frames / info.samplerate


def write_audio(path: Union[str, os.PathLike], samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono float samples; WAV and FLAC as 16-bit PCM, other formats by their default."""
    subtype = "PCM_16" if str(path).lower().endswith((".wav", ".flac")) else None
    sf.write(str(path), np.clip(samples, -1.0, 1.0), sample_rate, subtype=subtype)


# ---- folders ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SkippedFile:
    """An entry of a folder that a listing of its audio left out, and why.

    kind: "unsupported" (audio or video in a format libsndfile does not read), "folder" (not searched),
    "hidden" (a dot file with an audio extension, such as macOS's '._' copies), "special" (not a
    regular file) or "other" (no audio extension)."""
    path: str
    kind: str
    reason: str


def scan_audio_folder(folder: Union[str, os.PathLike]) -> Tuple[List[str], List[SkippedFile]]:
    """(audio files directly inside `folder`, sorted by name; the entries left out, with why).

    Audio files are those with an extension libsndfile reads (AUDIO_EXTENSIONS: .wav, .flac, .ogg, .opus,
    .mp3, .aiff, .caf, .au, .w64, .sph, ...); their content is checked when they are decoded. Hidden
    files without an audio extension are not listed as skipped."""
    folder = os.fspath(folder)
    files: List[str] = []
    skipped: List[SkippedFile] = []
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        extension = os.path.splitext(entry)[1].lower()
        if entry.startswith("."):
            if extension in AUDIO_EXTENSIONS or extension in FOREIGN_EXTENSIONS:
                skipped.append(SkippedFile(path, "hidden", "a hidden file (macOS writes '._' copies that are not "
                                                           "audio); rename it to include it"))
            continue
        if os.path.isdir(path):
            skipped.append(SkippedFile(path, "folder", "a folder: only the files directly inside are transcribed"))
        elif not os.path.isfile(path):
            skipped.append(SkippedFile(path, "special", "not a regular file (a broken link, pipe or device?)"))
        elif extension in AUDIO_EXTENSIONS:
            files.append(path)
        elif extension in FOREIGN_EXTENSIONS:
            skipped.append(SkippedFile(path, "unsupported", f"{FOREIGN_EXTENSIONS[extension]} is not a supported "
                                                            "audio format; convert it to WAV or FLAC first (e.g. "
                                                            "with ffmpeg)"))
        else:
            skipped.append(SkippedFile(path, "other", f"not an audio file extension ({extension or 'none'})"))
    return files, skipped


def audio_files_in(folder: Union[str, os.PathLike]) -> List[str]:
    """Audio files directly inside `folder`, sorted by name (`scan_audio_folder` also says what was left out)."""
    return scan_audio_folder(folder)[0]
