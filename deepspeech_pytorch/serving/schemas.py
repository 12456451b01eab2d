"""What the server says: pydantic response models and the one error shape, so the OpenAPI page is the truth."""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional

from pydantic import BaseModel, Field


class Word(BaseModel):
    word: str
    start: float = Field(description="seconds from the start of the audio")
    end: float = Field(description="seconds from the start of the audio")


class TranscriptionResponse(BaseModel):
    transcript: str = Field(description="the recognised text, lower case, words separated by single spaces")
    words: List[Word] = Field(description="each word with its start and end; empty when word_timings=false")
    duration: float = Field(description="length of the uploaded audio, seconds")
    processing_time: float = Field(description="seconds from receiving the whole upload to answering")
    model: str = Field(description="name of the model that transcribed the audio")
    decoder: str = Field(description="the decoder used: greedy or beam")


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    status: Literal["ready"] = "ready"
    model: str = Field(description="name of the loaded model")
    decoders: List[str] = Field(description="decoders a request may choose")
    max_upload_bytes: int
    max_audio_seconds: float
    streaming_model: Optional[str] = Field(None, description="name of the model websocket streams use")
    streaming_mode: Optional[Literal["streaming", "utterance"]] = Field(
        None, description="streaming: the model runs incrementally on each chunk; utterance: a bidirectional model "
                          "re-transcribes each utterance (VAD) for partials and finals")


class ErrorResponse(BaseModel):
    code: str = Field(description="the problem, machine-readable (e.g. upload_too_large, invalid_audio)")
    detail: str = Field(description="the problem, for people")


class ApiError(Exception):
    """A request the server answers with an error status and an ErrorResponse body."""

    def __init__(self, status: int, code: str, detail: str, headers: Optional[Dict[str, str]] = None):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}}


def _error(description: str, headers: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    response: Dict[str, Any] = {"model": ErrorResponse, "description": description}
    if headers:
        response["headers"] = headers
    return response


# Every error /transcribe can answer, documented on the OpenAPI page.
TRANSCRIBE_ERRORS: Dict[int | str, Dict[str, Any]] = {
    400: _error("The body is not a well-formed multipart form (empty_body, malformed_multipart)."),
    413: _error("The upload is larger than max_upload_bytes (upload_too_large; answered before the rest of "
                "the body is read) or the audio is longer than max_audio_seconds (audio_too_long)."),
    415: _error("The request is not multipart/form-data (unsupported_content_type) or the file is not "
                "WAV, FLAC, OGG or MP3 (unsupported_audio_type)."),
    422: _error("The form has no `file` field or several (missing_file, duplicate_file), the file is empty, "
                "truncated, undecodable or has no samples (empty_file, invalid_audio), or a parameter is "
                "invalid (invalid_parameter)."),
    503: _error("The model is not loaded yet or the server is shutting down (not_ready), or the queue is full "
                "(overloaded); retry after Retry-After seconds.", RETRY_AFTER),
    504: _error("The transcription did not finish within request_timeout_seconds (timeout)."),
}

NOT_READY = {503: _error("The model is not loaded yet or the server is shutting down (not_ready).", RETRY_AFTER)}
