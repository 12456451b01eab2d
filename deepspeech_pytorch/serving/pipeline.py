"""The one path an upload takes on every transcription route (POST /transcribe, POST /v1/audio/transcriptions):
a place in the server (or 503), the multipart form read under max_upload_bytes, its `file` field, the
route's own options, the audio decoded under max_audio_seconds, the batched model, all within
request_timeout_seconds. Routes differ only in the options they read and in how they answer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, List, Optional, Tuple, TypeVar

from starlette.requests import Request

from deepspeech_pytorch.configs import ServerConfig
from deepspeech_pytorch.inference import Transcription
from deepspeech_pytorch.serving.schemas import ApiError
from deepspeech_pytorch.serving.service import TranscriptionService
from deepspeech_pytorch.serving.uploads import Part, decode_upload, pick_upload, read_form

Options = TypeVar("Options")

# The route's own form fields (and query), read after the file is found and before it is decoded:
# returns the decoder chosen (None: the server's default) and whatever else the route needs.
ReadOptions = Callable[[List[Part]], Tuple[Optional[str], Options]]


async def transcribe_request(request: Request, service: TranscriptionService, settings: ServerConfig,
                             read_options: ReadOptions) -> Tuple[Transcription, Options, float]:
    """Transcribe the upload of `request`: (the transcription with word timings, the route's options, the
    perf_counter time at which the whole upload had arrived). Raises ApiError (4xx, 503, 504) otherwise."""
    with service.admit():
        parts = await read_form({k.lower(): v for k, v in request.headers.items()}, request.stream(),
                                settings.max_upload_bytes)
        upload = pick_upload(parts)
        decoder, options = read_options(parts)
        received = time.perf_counter()
        timeout = settings.request_timeout_seconds
        try:
            samples = await asyncio.wait_for(asyncio.to_thread(decode_upload, upload, service.sample_rate,
                                                               settings.max_audio_seconds), timeout)
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"decoding the upload took longer than request_timeout_seconds="
                                           f"{timeout:g}") from None
        del parts, upload  # the samples are all that is needed from here on
        remaining = timeout - (time.perf_counter() - received)
        result = await service.transcribe(samples, decoder, max(remaining, 0.0))
    service.metrics.audio_seconds.inc(result.duration)
    service.metrics.transcriptions.inc()
    return result, options, received
