"""An HTTP upload -> checked mono samples, all in memory.

`read_form` streams a multipart/form-data body, counting bytes as they arrive and refusing the
request (413) as soon as it passes the limit, or before reading anything when Content-Length
already says so. `decode_upload` recognises the container from its first bytes, checks the
declared duration before decoding, reads at most the allowed number of frames (a lying header
cannot make it decode more) and rejects truncated files. Nothing is written to disk.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import AsyncIterator, Dict, List, Optional

import numpy as np
import soundfile as sf
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from deepspeech_pytorch.audio import resample
from deepspeech_pytorch.serving.schemas import ApiError

FORMATS = "WAV, FLAC, OGG or MP3"
UPLOAD_FIELD = "file"


@dataclass
class Part:
    """One field of a multipart form."""
    name: str
    data: bytes
    filename: Optional[str] = None
    content_type: Optional[str] = None


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


class _FormCollector:
    """python-multipart callbacks that keep each part's headers and bytes in memory."""

    def __init__(self) -> None:
        self.parts: List[Part] = []
        self.finished = False
        self._header_name = b""
        self._header_value = b""
        self._headers: Dict[bytes, bytes] = {}
        self._chunks: List[bytes] = []

    def callbacks(self) -> dict:
        return {"on_part_begin": self.on_part_begin, "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end, "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
                "on_end": self.on_end}

    def on_part_begin(self) -> None:
        self._headers, self._chunks = {}, []

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._chunks.append(data[start:end])

    def on_part_end(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            raise ApiError(400, "malformed_multipart", "a multipart part has no Content-Disposition: form-data; name=...")
        filename = options.get(b"filename")
        content_type = self._headers.get(b"content-type")
        self.parts.append(Part(_text(options[b"name"]), b"".join(self._chunks),
                               _text(filename) if filename is not None else None,
                               _text(content_type) if content_type else None))
        self._chunks = []

    def on_end(self) -> None:
        self.finished = True


def _too_large(max_bytes: int, what: str) -> ApiError:
    # Connection: close, because the rest of the body is never read.
    return ApiError(413, "upload_too_large", f"{what}; this server accepts at most {max_bytes} bytes",
                    {"Connection": "close"})


async def read_form(headers: Dict[str, str], body: AsyncIterator[bytes], max_bytes: int) -> List[Part]:
    """Parse a multipart/form-data body from `body` (the request's byte stream) under `max_bytes`.

    `headers` are the request headers with lower-case names.
    """
    content_type = headers.get("content-type", "")
    mime, options = parse_options_header(content_type)
    if mime != b"multipart/form-data":
        shown = content_type or "missing"
        raise ApiError(415, "unsupported_content_type",
                       f"request Content-Type is {shown}; send multipart/form-data with the audio in the field "
                       f"'{UPLOAD_FIELD}' (curl -F {UPLOAD_FIELD}=@audio.wav)")
    boundary = options.get(b"boundary")
    if not boundary:
        raise ApiError(400, "malformed_multipart", "the multipart/form-data Content-Type has no boundary")
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "malformed_multipart", f"Content-Length is not a number: {declared[:40]!r}")
        if int(declared) > max_bytes:
            raise _too_large(max_bytes, f"the request body is {int(declared)} bytes")
        if int(declared) == 0:
            raise ApiError(400, "empty_body", "the request body is empty; send the audio in the form field "
                                              f"'{UPLOAD_FIELD}'")
    collector = _FormCollector()
    try:
        parser = MultipartParser(boundary, collector.callbacks(), max_header_count=16)
    except (ValueError, MultipartParseError) as error:
        raise ApiError(400, "malformed_multipart", f"bad multipart boundary ({error})") from None
    received = 0
    async for chunk in body:
        received += len(chunk)
        if received > max_bytes:
            raise _too_large(max_bytes, f"the request body is larger than {max_bytes} bytes")
        if not chunk:
            continue
        try:
            parser.write(chunk)
        except MultipartParseError as error:
            raise ApiError(400, "malformed_multipart", f"the body is not valid multipart/form-data ({error})") from None
    if received == 0:
        raise ApiError(400, "empty_body", f"the request body is empty; send the audio in the form field '{UPLOAD_FIELD}'")
    if not collector.finished:
        raise ApiError(400, "malformed_multipart", "the multipart body ends before its closing boundary (truncated upload?)")
    return collector.parts


def pick_upload(parts: List[Part]) -> Part:
    """The one `file` field of the form, or 422 naming what was sent instead."""
    uploads = [part for part in parts if part.name == UPLOAD_FIELD]
    if not uploads:
        sent = ", ".join(sorted({repr(part.name) for part in parts})) or "no fields"
        raise ApiError(422, "missing_file", f"the form has no field '{UPLOAD_FIELD}' (it has {sent}); "
                                            f"send the audio as {UPLOAD_FIELD}=@audio.wav")
    if len(uploads) > 1:
        raise ApiError(422, "duplicate_file", f"the form has {len(uploads)} '{UPLOAD_FIELD}' fields; send one file per request")
    if not uploads[0].data:
        raise ApiError(422, "empty_file", f"the uploaded file{_named(uploads[0])} is empty (0 bytes)")
    return uploads[0]


def _named(part: Part) -> str:
    return f" {part.filename!r}" if part.filename else ""


def sniff_format(data: bytes) -> Optional[str]:
    """The container named by the first bytes: wav, flac, ogg, mp3, or None."""
    if data[:4] in (b"RIFF", b"RF64") and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:4] == b"OggS":
        return "ogg"
    if data[:3] == b"ID3":
        return "mp3"
    # An MPEG audio frame header: 11 sync bits, a valid version and a valid layer.
    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0 and data[1] & 0x18 != 0x08 and data[1] & 0x06:
        return "mp3"
    return None


def wav_shortfall(data: bytes) -> Optional[str]:
    """For a RIFF WAV whose data chunk claims more bytes than the upload holds: what is missing."""
    if data[:4] != b"RIFF":
        return None
    position = 12
    while position + 8 <= len(data):
        chunk, size = data[position: position + 4], int.from_bytes(data[position + 4: position + 8], "little")
        if chunk == b"data":
            available = len(data) - position - 8
            if 0 < size < 0xFFFFFFFF and size > available:  # 0 and 0xFFFFFFFF: written by a stream, size unknown
                return f"its header declares {size} bytes of samples but the upload holds {available}"
            return None
        position += 8 + size + (size & 1)
    return None


def _decode_error(part: Part, error: Exception) -> ApiError:
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if message.startswith("Error opening"):  # "Error opening <_io.BytesIO object at 0x..>: reason"
        message = message.split(": ", 1)[-1]
    return ApiError(422, "invalid_audio", f"cannot decode the uploaded file{_named(part)}: {message}")


def decode_upload(part: Part, sample_rate: int, max_seconds: float) -> np.ndarray:
    """Checked mono float32 samples at `sample_rate`, shape (samples,); ApiError 413/415/422 otherwise.

    Runs in a worker thread: decoding is CPU work.
    """
    kind = sniff_format(part.data)
    if kind is None:
        declared = f" (declared as {part.content_type})" if part.content_type else ""
        raise ApiError(415, "unsupported_audio_type",
                       f"the uploaded file{_named(part)}{declared} is not {FORMATS} audio")
    if kind == "wav":
        shortfall = wav_shortfall(part.data)
        if shortfall:
            raise ApiError(422, "invalid_audio", f"the uploaded WAV file{_named(part)} is truncated: {shortfall}")
    too_long = (f"the audio{_named(part)} is longer than this server's limit of {max_seconds:g} seconds; "
                "split it or raise max_audio_seconds")
    try:
        with sf.SoundFile(io.BytesIO(part.data)) as audio:
            rate, declared_frames = audio.samplerate, audio.frames
            if rate <= 0:
                raise ApiError(422, "invalid_audio", f"the uploaded file{_named(part)} has sample rate {rate}")
            if declared_frames / rate > max_seconds:
                raise ApiError(413, "audio_too_long", f"{too_long} (its header says {declared_frames / rate:.1f} s)")
            limit = int(max_seconds * rate) + 1  # one frame past the limit tells "too long" from "exactly at it"
            samples = audio.read(frames=limit, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, EOFError, ValueError) as error:
        raise _decode_error(part, error) from None
    if len(samples) >= limit:
        raise ApiError(413, "audio_too_long", too_long)
    if len(samples) == 0:
        raise ApiError(422, "invalid_audio", f"the uploaded file{_named(part)} holds no samples (zero-length audio)")
    if kind == "flac" and len(samples) < declared_frames:
        raise ApiError(422, "invalid_audio", f"the uploaded FLAC file{_named(part)} is truncated: its header declares "
                                             f"{declared_frames} frames, {len(samples)} could be decoded")
    if not np.all(np.isfinite(samples)):
        raise ApiError(422, "invalid_audio", f"the uploaded file{_named(part)} contains NaN or infinite samples")
    # The same steps as audio.load_audio, so the server hears exactly what transcribe.py hears.
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    resampled = resample(mono, rate, sample_rate)
    if len(resampled) == 0:
        raise ApiError(422, "invalid_audio", f"the uploaded file{_named(part)} is too short: {len(samples)} samples at "
                                             f"{rate} Hz are none at {sample_rate} Hz")
    return resampled
