"""Transcription behind the HTTP layer: the loaded model, one Transcriber per decoder, the batcher.

The decoders a request may choose are built once at start-up; requests that chose the same
decoder share a forward pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from deepspeech_pytorch.audio import AudioError
from deepspeech_pytorch.configs import ServerConfig
from deepspeech_pytorch.decoders import DecoderError, decoder_choices
from deepspeech_pytorch.inference import (CHUNK_SECONDS, LoadedModel, Transcriber, Transcription, choose_backend,
                                          resolve_model_path)
from deepspeech_pytorch.serving.batching import Closed, DynamicBatcher, QueueFull
from deepspeech_pytorch.serving.metrics import Metrics
from deepspeech_pytorch.serving.schemas import ApiError

logger = logging.getLogger(__name__)


def check_settings(settings: ServerConfig) -> None:
    """Refuse settings that cannot work, naming the setting."""
    for name in ("max_upload_bytes", "max_batch_size", "max_queue"):
        if getattr(settings, name) < 1:
            raise ValueError(f"{name}={getattr(settings, name)} must be at least 1")
    for name in ("max_audio_seconds", "request_timeout_seconds"):
        if not getattr(settings, name) > 0:
            raise ValueError(f"{name}={getattr(settings, name)} must be positive")
    if settings.max_batch_wait_ms < 0:
        raise ValueError(f"max_batch_wait_ms={settings.max_batch_wait_ms} must not be negative")
    decoder_choices(settings.decoder)
    if settings.model_path is not None or settings.backend == "onnxruntime":  # before the model loads: a backend
        choose_backend(resolve_model_path(settings.model_path, settings.backend), settings.backend)  # that cannot run it


def check_backend(settings: ServerConfig, loaded: LoadedModel) -> None:
    """The loaded model runs on the backend the settings ask for (auto: any)."""
    if settings.backend not in ("auto", loaded.backend):
        raise ValueError(f"backend={settings.backend}, but the model {loaded.path or loaded.name} runs with "
                         f"backend={loaded.backend}")


class TranscriptionService:
    """Queue decoded audio for batched transcription, with the server's limits."""

    def __init__(self, settings: ServerConfig, loaded: LoadedModel, metrics: Optional[Metrics] = None):
        check_backend(settings, loaded)
        self.settings = settings
        self.loaded = loaded
        self.metrics = metrics or Metrics()
        self.default_decoder = settings.decoder.type
        # One Transcriber per decoder, all sharing the model; batch_size: chunks per forward pass.
        self.transcribers: Dict[str, Transcriber] = {}
        asked_for_beam = settings.decoder.type == "beam" or bool(settings.decoder.lm.path)
        for name, config in decoder_choices(settings.decoder, loaded.language_model is not None).items():
            try:
                self.transcribers[name] = Transcriber(loaded, decoder=config, chunk_seconds=CHUNK_SECONDS,
                                                      batch_size=settings.max_batch_size, vad=settings.vad)
            except DecoderError as error:
                if name != "beam" or asked_for_beam:
                    raise
                # offered only because the model ships an LM: serve greedy rather than not at all
                logger.warning("beam search with the model's language model is unavailable (%s); serving "
                               "greedy decoding only", error)
        self.batcher: DynamicBatcher[np.ndarray, Transcription] = DynamicBatcher(
            self._transcribe_batch, settings.max_batch_size, settings.max_batch_wait_ms / 1000.0, settings.max_queue,
            on_batch=self.metrics.batch_size.observe)
        self.metrics.queue_depth = lambda: float(self.batcher.depth)
        self.active = 0  # requests admitted and not yet answered (the event loop is the only writer)
        self.max_active = settings.max_queue + settings.max_batch_size

    @property
    def sample_rate(self) -> int:
        return self.loaded.features.sample_rate

    @property
    def decoders(self) -> List[str]:
        return list(self.transcribers)

    async def start(self) -> None:
        await self.batcher.start()
        self.metrics.model_loaded = True
        logger.info("serving %s with decoders %s", self.loaded.info["architecture"], ", ".join(self.decoders))

    async def stop(self) -> None:
        self.metrics.model_loaded = False
        await self.batcher.stop()

    def _transcribe_batch(self, decoder: str, waveforms: Sequence[np.ndarray]) -> List[Transcription]:
        """Runs on the inference thread: one call, batched forward passes."""
        return self.transcribers[decoder].transcribe_many(list(waveforms), word_timings=True)

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of the server's request places from before the upload is read to the answer, or
        refuse at once (503). Places: max_queue waiting plus max_batch_size in the forward pass, so
        memory stays bounded by about that many uploads whatever the number of connections."""
        if self.active >= self.max_active or self.batcher.full():
            raise self._overloaded()
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    def _overloaded(self) -> ApiError:
        # A rough wait: the queue drains a batch per forward pass.
        return ApiError(503, "overloaded", f"the server is busy ({self.settings.max_queue} requests waiting); "
                                           "retry shortly", {"Retry-After": "1"})

    async def transcribe(self, samples: np.ndarray, decoder: Optional[str], timeout: float) -> Transcription:
        """Transcribe mono samples at the model's rate with `decoder` (None: the default), within `timeout`
        seconds (what is left of the request's request_timeout_seconds)."""
        name = decoder or self.default_decoder
        if name not in self.transcribers:
            raise ApiError(422, "invalid_parameter", f"decoder {name!r} is not offered by this server; "
                                                     f"choose from {', '.join(self.decoders)}")
        started = time.perf_counter()
        try:
            return await self.batcher.submit(samples, name, timeout=timeout)
        except AudioError as error:  # the inference API's own checks, should the upload checks miss one
            raise ApiError(422, "invalid_audio", str(error)) from None
        except QueueFull:
            raise self._overloaded() from None
        except Closed as error:
            raise ApiError(503, "not_ready", str(error), {"Retry-After": "1"}) from None
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"the transcription did not finish within request_timeout_seconds="
                                           f"{self.settings.request_timeout_seconds:g} (it waited "
                                           f"{time.perf_counter() - started:.3g} s for the model); retry later or "
                                           "send shorter audio") from None
