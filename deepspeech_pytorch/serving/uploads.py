"""An HTTP upload -> checked mono samples, all in memory.

`read_form` streams a multipart/form-data body, counting bytes as they arrive and refusing the
request (413) as soon as it passes the limit, or before reading anything when Content-Length
already says so. `decode_upload` decodes through audio.load_audio (the same checks and messages as
transcribe.py: the container recognised from its first bytes, truncated files refused, streaming
headers read to the end), limited to the common formats and to the allowed duration: the declared
duration is checked before decoding and at most the allowed number of frames is read. Nothing is
written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Dict, List, Optional

import numpy as np
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from deepspeech_pytorch.audio import (COMMON_FORMATS, AudioError, AudioTooLongError, UnsupportedAudioError,
                                      format_names, load_audio, sniff_format)
from deepspeech_pytorch.serving.schemas import ApiError

__all__ = ["FORMATS", "UPLOAD_FIELD", "Part", "read_form", "pick_upload", "upload_name", "decode_upload",
           "sniff_format"]  # sniff_format: audio's, for callers that check an upload's container themselves

FORMATS = format_names(COMMON_FORMATS)  # "WAV, FLAC, OGG or MP3"
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


def upload_name(part: Part) -> str:
    """What errors call an upload: "the uploaded file 'name.wav'" (or without a name when none was sent)."""
    return f"the uploaded file{_named(part)}"


def decode_upload(part: Part, sample_rate: int, max_seconds: float) -> np.ndarray:
    """Checked mono float32 samples at `sample_rate`, shape (samples,); ApiError 413/415/422 otherwise.

    Decoded by audio.load_audio, so the server hears exactly what transcribe.py hears and refuses what it
    refuses, with the same words. The server accepts only the common formats (COMMON_FORMATS), refuses
    truncated files (an upload cut in transit can be sent again) and reads at most `max_seconds` (checked on
    the header first: a lying header cannot make it decode more).
    Runs in a worker thread: decoding is CPU work.
    """
    try:
        return load_audio(part.data, sample_rate, name=upload_name(part), max_seconds=max_seconds,
                          formats=COMMON_FORMATS, refuse_truncated=True)
    except UnsupportedAudioError as error:
        declared = f" (sent as {part.content_type})" if part.content_type else ""
        raise ApiError(415, "unsupported_audio_type", f"{error}{declared}") from None
    except AudioTooLongError as error:
        stated = f" (its header says {error.seconds:.1f} s)" if error.seconds is not None else ""
        raise ApiError(413, "audio_too_long", f"the audio{_named(part)} is longer than this server's limit of "
                                              f"{max_seconds:g} seconds{stated}; split it or raise "
                                              "max_audio_seconds") from None
    except AudioError as error:
        raise ApiError(422, "invalid_audio", str(error)) from None
