"""POST /v1/audio/transcriptions: OpenAI's audio transcription API, so the clients people already have (the
`openai` packages, tools built on them) work against this server by changing their base URL.

The request is OpenAI's multipart form; the upload takes the same path as POST /transcribe
(serving/pipeline.py: the same limits, decoding and batched model):

- `file`: the audio, WAV, FLAC, OGG or MP3, within max_upload_bytes and max_audio_seconds.
- `model`: accepted whatever it names (OpenAI clients send `whisper-1`): this server's one model answers.
- `response_format`: `json` (default), `text`, `srt`, `vtt` or `verbose_json`.
- `timestamp_granularities[]`: `word` and/or `segment` (default `segment`), with `verbose_json` only.
- `language`: English only (`en`, `en-US`, `english`, ...); another language is refused with 400
  unsupported_language, since the model would transcribe it as English words.
- `prompt`: accepted and ignored (a CTC model takes no prompt).
- `temperature`: accepted (a number from 0 to 1) and ignored: greedy and beam search are deterministic.
- `decoder`: this server's own addition, `greedy` or `beam` as on POST /transcribe.
- `stream=true` is refused (400); OpenAI's other fields (`include[]`, `chunking_strategy`, ...) are accepted and
  ignored; any other form field, and any query parameter (the route takes none), is refused (400 naming it), so
  that a misspelt one (`respone_format`) is not silently ignored.

The answer, by response_format: `json` {"text", "usage"}; `text` the transcript and a newline; `srt` and
`vtt` subtitles cut at pauses by deepspeech_pytorch.subtitles, as transcribe.py writes them;
`verbose_json` {"task", "language", "duration", "text", "segments", "words", "usage"} with `segments`
and/or `words` as the granularities ask. A segment has OpenAI's fields; those a CTC model has no
measure of are constant: `tokens` [] (no BPE tokens), `temperature` 0.0, `avg_logprob` 0.0 (not
measured), `no_speech_prob` 0.0 (the voice-activity detector already removed non-speech). `seek` is the
segment's start in 10 ms frames and `compression_ratio` is measured on its text as Whisper does.

Errors are OpenAI's: status 400 for every invalid request (as OpenAI answers a missing file, a file it cannot
decode or an unknown parameter), 413 only for a body over max_upload_bytes, 503 (with Retry-After) and 504
for the server's own state; the body is `{"error": {"message", "type", "param", "code"}}`, type
invalid_request_error (4xx) or server_error (5xx), `code` POST /transcribe's machine-readable codes
(missing_file, invalid_audio, invalid_parameter, ...), `param` the request field at fault, and `message` one line
that names it. (POST /transcribe keeps its own statuses: 415 and 422 there are 400 here.)
"""

# No `from __future__ import annotations`: FastAPI reads the route signature's types.

import logging
import re
import zlib
from dataclasses import dataclass
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from deepspeech_pytorch.configs import ServerConfig
from deepspeech_pytorch.decoders import decoder_choices
from deepspeech_pytorch.inference import Transcription
from deepspeech_pytorch.serving.pipeline import transcribe_request
from deepspeech_pytorch.serving.schemas import RETRY_AFTER, ApiError
from deepspeech_pytorch.serving.uploads import FORMATS, UPLOAD_FIELD, Part
from deepspeech_pytorch.subtitles import Segment, format_srt, format_vtt, segments_of

logger = logging.getLogger(__name__)

PATH = "/v1/audio/transcriptions"
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")
GRANULARITY_FIELDS = ("timestamp_granularities[]", "timestamp_granularities")  # the client's name, and curl's
# OpenAI's own form fields this server accepts and ignores (a client may send them)
IGNORED_OPENAI_FIELDS = ("include[]", "include", "chunking_strategy", "known_speaker_names[]",
                         "known_speaker_references[]")
LANGUAGE = "english"  # what verbose_json says, as OpenAI names languages there
ENGLISH = {"en", "eng", "english"}  # ISO 639-1, 639-2 and the name; a region (en-US, en_GB) may follow
FRAMES_PER_SECOND = 100  # `seek` counts 10 ms frames, as Whisper's does


# ---- what the endpoint says ----------------------------------------------------------------------

class OpenAIWord(BaseModel):
    word: str
    start: float = Field(description="seconds from the start of the audio")
    end: float = Field(description="seconds from the start of the audio")


class OpenAISegment(BaseModel):
    id: int
    seek: int = Field(description="the segment's start in 10 ms frames")
    start: float = Field(description="seconds from the start of the audio")
    end: float = Field(description="seconds from the start of the audio")
    text: str
    tokens: List[int] = Field(description="always empty: the model emits characters, not tokens")
    temperature: float = Field(description="always 0.0: decoding is deterministic")
    avg_logprob: float = Field(description="always 0.0: not measured")
    compression_ratio: float = Field(description="the text's length over its zlib-compressed length")
    no_speech_prob: float = Field(description="always 0.0: voice-activity detection removed non-speech")


class OpenAIUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float = Field(description="length of the audio, seconds")


class OpenAITranscription(BaseModel):
    """response_format=json"""
    text: str
    usage: OpenAIUsage


class OpenAIVerboseTranscription(BaseModel):
    """response_format=verbose_json"""
    task: Literal["transcribe"] = "transcribe"
    language: str = LANGUAGE
    duration: float = Field(description="length of the audio, seconds")
    text: str
    segments: Optional[List[OpenAISegment]] = Field(None, description="with timestamp_granularities[]=segment "
                                                                      "(the default)")
    words: Optional[List[OpenAIWord]] = Field(None, description="with timestamp_granularities[]=word")
    usage: OpenAIUsage


class OpenAIErrorDetail(BaseModel):
    message: str = Field(description="the problem, for people")
    type: str = Field(description="invalid_request_error (4xx) or server_error (5xx)")
    param: Optional[str] = Field(description="the request field at fault, if one is")
    code: Optional[str] = Field(description="the problem, machine-readable: POST /transcribe's codes")


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorDetail


class OpenAIError(ApiError):
    """An ApiError that names the request field at fault."""

    def __init__(self, status: int, code: str, detail: str, param: Optional[str] = None):
        super().__init__(status, code, detail)
        self.param = param


# POST /transcribe's error codes about the upload itself: OpenAI's `param` for them is the file field.
FILE_CODES = {"missing_file", "duplicate_file", "empty_file", "invalid_audio", "unsupported_audio_type",
              "audio_too_long"}
KEPT_STATUSES = {413: "upload_too_large"}  # OpenAI's 413 is the request's size; every other 4xx is its 400


def openai_status(error: ApiError) -> int:
    """The status OpenAI gives for `error`: 400 for an invalid request (POST /transcribe's 415 and 422, and
    413 for audio that is too long rather than a body too large), the rest as they are."""
    if 400 <= error.status < 500 and KEPT_STATUSES.get(error.status) != error.code:
        return 400
    return error.status


def one_line(message: str, param: Optional[str]) -> str:
    """`message` on one line, naming `param` (prefixed with it when the message does not say it)."""
    text = " ".join(message.split())
    if param and not re.search(rf"(?<![\w\[]){re.escape(param)}(?![\w\]])", text):
        text = f"{param}: {text}"
    return text


def error_response(error: ApiError) -> JSONResponse:
    """`error` in OpenAI's shape and with OpenAI's status, with its headers."""
    param = getattr(error, "param", None) or (UPLOAD_FIELD if error.code in FILE_CODES else None)
    body = OpenAIErrorResponse(error=OpenAIErrorDetail(
        message=one_line(error.detail, param), type="server_error" if error.status >= 500 else "invalid_request_error",
        param=param, code=error.code))
    return JSONResponse(body.model_dump(), status_code=openai_status(error), headers=error.headers or None)


def _error(description: str, headers: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    response: Dict[str, Any] = {"model": OpenAIErrorResponse, "description": description}
    if headers:
        response["headers"] = headers
    return response


RESPONSES: Dict[Union[int, str], Dict[str, Any]] = {
    200: {"model": Union[OpenAITranscription, OpenAIVerboseTranscription],
          "description": "json or verbose_json: a JSON object; text and srt: text/plain; vtt: text/vtt",
          "content": {"text/plain": {"schema": {"type": "string"}}, "text/vtt": {"schema": {"type": "string"}}}},
    400: _error("An invalid request, `param` naming the field at fault: a parameter invalid, unsupported or "
                "unknown, a query parameter (invalid_parameter, unsupported_language); the body not a well-formed "
                "multipart form (empty_body, malformed_multipart, unsupported_content_type); no `file` field or "
                f"several (missing_file, duplicate_file); the file empty, not {FORMATS}, truncated or undecodable "
                "(empty_file, unsupported_audio_type, invalid_audio), or longer than max_audio_seconds "
                "(audio_too_long)."),
    413: _error("The upload is larger than max_upload_bytes (upload_too_large)."),
    503: _error("The model is not loaded yet or the server is shutting down (not_ready), or the queue is full "
                "(overloaded); retry after Retry-After seconds.", RETRY_AFTER),
    504: _error("The transcription did not finish within request_timeout_seconds (timeout)."),
}


# ---- the request's fields ------------------------------------------------------------------------

@dataclass
class Options:
    response_format: str = "json"
    granularities: Tuple[str, ...] = ("segment",)
    decoder: Optional[str] = None


FORM_FIELDS = (UPLOAD_FIELD, "model", "response_format", GRANULARITY_FIELDS[0], "language", "prompt", "temperature",
               "decoder")  # what an error lists


def check_query(names: List[str]) -> None:
    """400 for any query parameter: the route takes its fields in the form, and OpenAI refuses what it does not
    know rather than ignore it (a misspelt or misplaced option would otherwise change nothing, silently)."""
    if names:
        name = sorted(names)[0]
        raise OpenAIError(400, "invalid_parameter", f"unrecognized query parameter {_shown(name)}: this endpoint "
                                                    "takes no query parameters; send the fields "
                                                    f"({', '.join(FORM_FIELDS)}) in the multipart form", name[:40])


def _values(parts: List[Part], *names: str) -> List[str]:
    return [part.data.decode("utf-8", errors="replace").strip() for part in parts if part.name in names]


def _single(parts: List[Part], name: str) -> Optional[str]:
    values = _values(parts, name)
    if len(values) > 1:
        raise OpenAIError(400, "invalid_parameter", f"the form field {name!r} is given {len(values)} times", name)
    return values[0] if values and values[0] else None


def _shown(value: str) -> str:
    return repr(value[:40])


def read_options(parts: List[Part], decoders: List[str]) -> Tuple[Optional[str], Options]:
    """The form's fields besides the file, checked (400 naming the field) before the audio is decoded."""
    options = Options()
    response_format = _single(parts, "response_format")
    if response_format is not None:
        if response_format not in RESPONSE_FORMATS:
            raise OpenAIError(400, "invalid_parameter", f"response_format={_shown(response_format)} is not one of "
                                                        f"{', '.join(RESPONSE_FORMATS)}", "response_format")
        options.response_format = response_format
    granularities = [value for value in _values(parts, *GRANULARITY_FIELDS) if value]
    for value in granularities:
        if value not in GRANULARITIES:
            raise OpenAIError(400, "invalid_parameter", f"timestamp_granularities[]={_shown(value)} is not one of "
                                                        f"{', '.join(GRANULARITIES)}", GRANULARITY_FIELDS[0])
    if granularities:
        if options.response_format != "verbose_json":
            raise OpenAIError(400, "invalid_parameter", "timestamp_granularities[] needs response_format="
                                                        f"verbose_json (it is {options.response_format})",
                              GRANULARITY_FIELDS[0])
        options.granularities = tuple(dict.fromkeys(granularities))
    language = _single(parts, "language")
    if language is not None and language.lower().replace("_", "-").split("-")[0] not in ENGLISH:
        raise OpenAIError(400, "unsupported_language", f"language={_shown(language)} is not supported: this "
                                                       "server's model transcribes English only (language=en)",
                          "language")
    temperature = _single(parts, "temperature")
    if temperature is not None:
        try:
            number = float(temperature)
        except ValueError:
            number = float("nan")
        if not 0.0 <= number <= 1.0:
            raise OpenAIError(400, "invalid_parameter", f"temperature={_shown(temperature)} is not a number from 0 "
                                                        "to 1", "temperature")
    stream = _single(parts, "stream")
    if stream is not None and stream.lower() not in ("false", "0"):
        raise OpenAIError(400, "invalid_parameter", "stream=true is not supported by this endpoint: the answer comes "
                                                    "whole (send stream=false or leave it out)", "stream")
    _single(parts, "model")  # any name; once
    _single(parts, "prompt")  # ignored; once
    known = {UPLOAD_FIELD, "model", "prompt", "response_format", "language", "temperature", "stream", "decoder",
             *GRANULARITY_FIELDS, *IGNORED_OPENAI_FIELDS}
    unknown = sorted({part.name for part in parts} - known)
    if unknown:
        raise OpenAIError(400, "invalid_parameter", f"unrecognized form field {_shown(unknown[0])}; this endpoint "
                                                    f"takes {', '.join(FORM_FIELDS)}", unknown[0][:40])
    decoder = _single(parts, "decoder")
    if decoder is not None and decoder not in decoders:
        raise OpenAIError(400, "invalid_parameter", f"decoder={_shown(decoder)} is not offered by this server; "
                                                    f"choose from {', '.join(decoders)}", "decoder")
    options.decoder = decoder
    return decoder, options


# ---- the answer ----------------------------------------------------------------------------------

def compression_ratio(text: str) -> float:
    """Bytes of `text` over bytes of its zlib compression (Whisper's check for repetitive output)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _segment(number: int, segment: Segment) -> OpenAISegment:
    return OpenAISegment(id=number, seek=round(segment.start * FRAMES_PER_SECOND), start=round(segment.start, 3),
                         end=round(segment.end, 3), text=segment.text, tokens=[], temperature=0.0, avg_logprob=0.0,
                         compression_ratio=round(compression_ratio(segment.text), 4), no_speech_prob=0.0)


def answer(result: Transcription, options: Options) -> Response:
    """The transcription as options.response_format asks."""
    usage = OpenAIUsage(seconds=round(result.duration, 3))
    if options.response_format == "json":
        return JSONResponse(OpenAITranscription(text=result.text, usage=usage).model_dump())
    if options.response_format == "text":
        return PlainTextResponse(result.text + "\n")
    segments = segments_of(result.text, result.words, result.duration)
    if options.response_format == "srt":
        return PlainTextResponse(format_srt(segments))
    if options.response_format == "vtt":
        return PlainTextResponse(format_vtt(segments), media_type="text/vtt")
    verbose = OpenAIVerboseTranscription(duration=round(result.duration, 3), text=result.text, usage=usage)
    if "segment" in options.granularities:
        verbose.segments = [_segment(number, segment) for number, segment in enumerate(segments)]
    if "word" in options.granularities:
        verbose.words = [OpenAIWord(word=w.word, start=round(w.start, 3), end=round(w.end, 3)) for w in result.words]
    return JSONResponse(verbose.model_dump(exclude_none=True))


# ---- the route -----------------------------------------------------------------------------------

def _request_body(settings: ServerConfig, decoders: List[str]) -> Dict[str, Any]:
    """The multipart body, documented by hand: the route streams it itself to enforce the size limit."""
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": [UPLOAD_FIELD], "properties": {
            UPLOAD_FIELD: {"type": "string", "format": "binary",
                           "description": f"the audio: {FORMATS}; at most {settings.max_upload_bytes} bytes of "
                                          f"request body and {settings.max_audio_seconds:g} seconds"},
            "model": {"type": "string", "description": "any name (e.g. whisper-1): this server's model answers"},
            "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "json"},
            GRANULARITY_FIELDS[0]: {"type": "array", "items": {"type": "string", "enum": list(GRANULARITIES)},
                                    "description": "with response_format=verbose_json; default segment"},
            "language": {"type": "string", "description": "English only: en (or absent)"},
            "prompt": {"type": "string", "description": "accepted and ignored"},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1, "description": "accepted and ignored"},
            "decoder": {"type": "string", "enum": decoders, "description": "this server's addition, as on "
                                                                           "POST /transcribe"},
        }},
        "encoding": {UPLOAD_FIELD: {"contentType": "audio/wav, audio/flac, audio/ogg, audio/mpeg, "
                                                   "application/octet-stream"}},
    }}}}


def build_openai_router(settings: ServerConfig, model_has_lm: bool = False) -> APIRouter:
    """The router of POST /v1/audio/transcriptions for `settings` (decoders offered as POST /transcribe's)."""
    decoders = list(decoder_choices(settings.decoder, model_has_lm))
    router = APIRouter()

    @router.post(PATH, response_model=None, responses=RESPONSES, openapi_extra=_request_body(settings, decoders),
                 summary="Transcribe an audio file (OpenAI-compatible)", tags=["OpenAI-compatible"],
                 description="OpenAI's `POST /v1/audio/transcriptions`: point an OpenAI client's base URL at "
                             "`http://HOST:PORT/v1`. `model` may name anything; `language` must be English; "
                             "`prompt` and `temperature` are accepted and ignored. Errors are OpenAI's "
                             "`{\"error\": {message, type, param, code}}`.")
    async def transcriptions(request: Request) -> Response:
        metrics = request.app.state.metrics
        try:
            service = request.app.state.service
            if service is None:
                raise ApiError(503, "not_ready", "the model is not loaded yet or the server is shutting down",
                               {"Retry-After": "1"})
            check_query(list(request.query_params.keys()))
            result, options, _ = await transcribe_request(request, service, request.app.state.settings,
                                                          lambda parts: read_options(parts, service.decoders))
            return answer(result, options)
        except ApiError as error:
            metrics.errors.inc(code=error.code)
            if error.status >= 500:
                logger.warning("%s %s: %s", PATH, error.code, error.detail)
            return error_response(error)
        except ClientDisconnect:
            raise  # nobody to answer: the app's handler counts it
        except Exception as error:  # the app's handler would answer in POST /transcribe's shape
            metrics.errors.inc(code="internal_error")
            logger.exception("unexpected error on POST %s", PATH)
            return error_response(ApiError(500, "internal_error", f"unexpected {type(error).__name__}; see the "
                                                                  "server log"))

    return router
