"""Live transcription over a websocket: GET /ws/transcribe, and the page at / that uses it.

The protocol follows Vosk's server (docs/streaming.md has the whole of it): the client sends a JSON
config (optional: a stream that starts with audio gets the defaults, 16 kHz, as Vosk's server gives its
own), then binary 16-bit little-endian PCM chunks, then `{"eof": 1}`; the server answers
`{"partial": "..."}` while an utterance goes on and `{"text": "...", "result": [{"conf", "end", "start",
"word"}]}` when one ends (word times in seconds of the stream), then closes with 1000 after the last
final. A problem is one `{"error": "..."}` message, then a close code saying what kind it was.

Each stream owns one `StreamingTranscriber` (deepspeech_pytorch.streaming). Its work is CPU-bound,
so it runs on a small thread pool shared by all streams (one job per stream at a time, so the pool's
queue holds at most `max_streams` jobs); audio that arrives while a stream's job runs is batched into
its next job, so a stream that fell behind catches up in fewer, larger steps. A stream holds at most
`PENDING_SECONDS` of audio that is waiting for the model; past that the server stops reading its
socket (TCP pushes back on the client). A client that goes away leaves nothing: its job finishes,
its transcriber and buffers are dropped, its place is freed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from enum import IntEnum
from importlib import resources
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

import numpy as np
from fastapi import APIRouter, WebSocket
from fastapi.responses import HTMLResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from deepspeech_pytorch.configs import DecoderConfig, ServerConfig
from deepspeech_pytorch.serving.metrics import Counter, Gauge

logger = logging.getLogger(__name__)

PATH = "/ws/transcribe"
MIN_SAMPLE_RATE = 8000  # Hz: telephone audio
MAX_SAMPLE_RATE = 48000  # Hz: what browsers and sound cards record at
PENDING_SECONDS = 10.0  # audio per stream received and not yet given to the model before reading stops
MAX_REASON_BYTES = 123  # a websocket close frame's reason is at most 123 bytes of UTF-8
CONFIG_KEYS = ("sample_rate", "decoder", "words")
DEFAULT_SAMPLE_RATE = 16000  # Hz: a stream without a config (or without sample_rate in it) is 16 kHz PCM

T = TypeVar("T")


class Close(IntEnum):
    """The close codes the server sends (RFC 6455 section 7.4.1; 1013 from the IANA registry)."""
    NORMAL = 1000  # the last final result was sent after the client's {"eof": 1}
    GOING_AWAY = 1001  # the server is shutting down
    UNSUPPORTED = 1003  # a message of the wrong kind: a second config, text that is not {"eof": 1}
    INVALID = 1007  # a malformed message: not JSON, not an object, an odd number of PCM bytes
    POLICY = 1008  # a config value out of range, idle for idle_timeout_seconds, over max_stream_seconds
    TOO_BIG = 1009  # a message over max_message_bytes
    INTERNAL = 1011  # an unexpected server error (see its log)
    TRY_AGAIN = 1013  # max_streams streams are open, or the model is not loaded yet


class StreamError(Exception):
    """Ends a stream: the server sends `{"error": message}`, then closes with `code`."""

    def __init__(self, code: Close, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def close_reason(message: str) -> str:
    """`message` cut to fit a close frame (the whole of it goes in the error message before)."""
    data = message.encode("utf-8")
    if len(data) <= MAX_REASON_BYTES:
        return message
    return data[: MAX_REASON_BYTES - 3].decode("utf-8", errors="ignore") + "..."


# ---- messages -------------------------------------------------------------------------------------

class StreamOptions:
    """What a client's config asks for: its audio's sample rate (Hz), a decoder, word times or not."""

    def __init__(self, sample_rate: int, decoder: str, words: bool):
        self.sample_rate, self.decoder, self.words = sample_rate, decoder, words


def _json_object(text: str, what: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise StreamError(Close.INVALID, f"{what} is not JSON ({error})") from None
    if not isinstance(value, dict):
        raise StreamError(Close.INVALID, f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def parse_config(text: str, decoders: List[str], default_decoder: str) -> StreamOptions:
    """The first message: `{"config": {"sample_rate": 16000, "decoder": "greedy", "words": true}}`, every
    key optional (16000 Hz, the server's decoder, word times). Raises StreamError naming what is wrong."""
    message = _json_object(text, "the first message (the config)")
    if set(message) != {"config"} or not isinstance(message["config"], dict):
        raise StreamError(Close.POLICY, 'the first message must be {"config": {...}} with the keys '
                                        f'{", ".join(CONFIG_KEYS)}; got the keys {", ".join(map(str, message)) or "none"}')
    config = message["config"]
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise StreamError(Close.POLICY, f"unknown config key {unknown[0]!r}; the keys are {', '.join(CONFIG_KEYS)}")
    rate = config.get("sample_rate", DEFAULT_SAMPLE_RATE)
    if isinstance(rate, float) and rate.is_integer():
        rate = int(rate)  # Vosk's clients send 16000.0
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise StreamError(Close.POLICY, f"config sample_rate={json.dumps(rate)[:40]} must be a whole number of "
                                        f"Hz from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE}")
    decoder = config.get("decoder", default_decoder)
    if decoder not in decoders:
        raise StreamError(Close.POLICY, f"config decoder={json.dumps(decoder)[:40]} is not offered by this server; "
                                        f"choose from {', '.join(decoders)}")
    words = config.get("words", True)
    if not isinstance(words, bool):
        raise StreamError(Close.POLICY, f"config words={json.dumps(words)[:40]} must be true or false")
    return StreamOptions(rate, decoder, words)


def is_eof(text: str) -> bool:
    """True for the end message `{"eof": 1}` (any true value); raises StreamError for any other text
    (after the config or the first audio, a text message can only be the end)."""
    message = _json_object(text, "a text message")
    if "config" in message:
        raise StreamError(Close.UNSUPPORTED, "the config may only be sent once, as the first message (a stream that "
                                             "begins with audio keeps the defaults: 16000 Hz)")
    if set(message) != {"eof"} or not message["eof"]:
        raise StreamError(Close.UNSUPPORTED, 'once the stream has begun the server takes binary audio (16-bit '
                                             'little-endian PCM) and the end message {"eof": 1}, nothing else')
    return True


def check_pcm(data: bytes) -> None:
    if len(data) % 2:
        raise StreamError(Close.INVALID, f"an audio message of {len(data)} bytes: 16-bit PCM needs an even number "
                                         "of bytes")


def pcm_samples(data: bytes) -> np.ndarray:
    """16-bit little-endian PCM bytes -> float32 samples in [-1, 1], shape (samples,)."""
    check_pcm(data)
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def final_message(text: str, words: List[Any], with_words: bool) -> Dict[str, Any]:
    """Vosk's result: `{"text", "result": [{"conf", "end", "start", "word"}]}` (times in seconds of the stream;
    conf is 1.0: the decoders give no per-word confidence)."""
    message: Dict[str, Any] = {"text": text}
    if with_words:
        message["result"] = [{"conf": 1.0, "end": round(w.end, 3), "start": round(w.start, 3), "word": w.word}
                             for w in words]
    return message


# ---- one stream -----------------------------------------------------------------------------------

class Stream:
    """One client's audio on its way to its StreamingTranscriber. The event loop appends received bytes
    (`push`); the worker thread takes them all at once (`take` on the loop, then `step` on the thread)."""

    def __init__(self, transcriber: Any, options: StreamOptions):
        self.transcriber = transcriber
        self.options = options
        self.model_rate = int(transcriber.sample_rate)
        self.resampler = None
        if options.sample_rate != self.model_rate:
            import soxr  # a streaming resampler: no edge effects where chunks meet

            self.resampler = soxr.ResampleStream(options.sample_rate, self.model_rate, 1, dtype="float32")
        self.pending: List[bytes] = []
        self.pending_bytes = 0
        self.received_samples = 0  # at the client's rate
        self.ended = False
        self.busy = False  # the model is working on this stream's audio, or its answers are being sent
        self.wake = asyncio.Event()  # pending audio or the end
        self.room = asyncio.Event()  # pending under its limit
        self.room.set()
        self.limit_bytes = int(PENDING_SECONDS * options.sample_rate) * 2

    @property
    def received_seconds(self) -> float:
        return self.received_samples / self.options.sample_rate

    def push(self, data: bytes) -> None:
        self.pending.append(data)
        self.pending_bytes += len(data)
        self.received_samples += len(data) // 2
        self.wake.set()
        if self.pending_bytes >= self.limit_bytes:
            self.room.clear()

    def end(self) -> None:
        self.ended = True
        self.wake.set()

    def take(self) -> Tuple[bytes, bool]:
        data, ended = b"".join(self.pending), self.ended
        self.pending, self.pending_bytes = [], 0
        self.wake.clear()
        self.room.set()
        return data, ended

    def step(self, data: bytes, last: bool) -> Tuple[str, List[Any]]:
        """On a worker thread: feed `data` (PCM at the client's rate) and, when `last`, finish the stream.
        Returns (partial text, utterances ended), the latter inference.Transcription objects."""
        samples = pcm_samples(data)
        if self.resampler is not None:
            samples = self.resampler.resample_chunk(samples, last=last)
        finals: List[Any] = []
        partial = ""
        if len(samples):
            update = self.transcriber.accept_audio(np.ascontiguousarray(samples, dtype=np.float32))
            finals.extend(update.finals)
            partial = update.partial
        if last:
            update = self.transcriber.finish()
            finals.extend(update.finals)
            partial = update.partial
        return partial, finals


# ---- metrics --------------------------------------------------------------------------------------

class StreamMetrics:
    """The websocket's part of /metrics."""

    def __init__(self, prefix: str = "deepspeech"):
        self.prefix = prefix
        self.active = 0  # streams holding a place (the event loop is the only writer)
        self.streams = Counter(f"{prefix}_streams_total", "Websocket streams ended, by close code.", ("code",))
        self.audio_seconds = Counter(f"{prefix}_stream_audio_seconds_total", "Seconds of audio received over "
                                                                               "websocket streams.")
        self.finals = Counter(f"{prefix}_stream_finals_total", "Final results sent over websocket streams.")

    def render(self) -> str:
        gauge = Gauge(f"{self.prefix}_streams_active", "Websocket streams open now (each holds a place of "
                                                       "max_streams).", lambda: float(self.active))
        lines = gauge.render() + self.streams.render() + self.audio_seconds.render() + self.finals.render()
        return "\n".join(lines) + "\n"


# ---- the endpoint ---------------------------------------------------------------------------------

def page_html() -> str:
    """The page at / (static/index.html, shipped as package data)."""
    return resources.files("deepspeech_pytorch.serving").joinpath("static", "index.html").read_text("utf-8")


def worker_count(max_streams: int) -> int:
    """Threads for the streams' model work: one per usable core, at most one per stream."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(max_streams, cores))


def check_stream_model_path(value: str) -> str:
    """streaming.model_path -> the model file it names (a path, or a bundled model's name such as "stream");
    ValueError naming the setting when it is a folder or names nothing."""
    from deepspeech_pytorch.inference import resolve_model_path

    path = resolve_model_path(value)
    if os.path.isdir(path):
        raise ValueError(f"streaming.model_path={value}: is a folder, not a model file")
    if not os.path.isfile(path):
        from deepspeech_pytorch import available_models

        names = ", ".join(available_models()) or "none in this installation"
        raise ValueError(f"streaming.model_path={value}: no such file, nor a bundled model's name ({names})")
    return path


class StreamingEndpoint:
    """GET /ws/transcribe and GET /: admission (max_streams), the shared worker pool, limits, metrics.

    `start(loaded, decoders)` at the app's start-up gives it the model (or loads streaming.model_path)
    and the decoders the server offers; until then, and after `stop()`, streams are refused with 1013."""

    def __init__(self, settings: ServerConfig):
        self.settings = settings
        self.limits = settings.streaming
        for name in ("max_streams", "max_message_bytes"):
            if getattr(self.limits, name) < 1:
                raise ValueError(f"streaming.{name}={getattr(self.limits, name)} must be at least 1")
        for name in ("max_stream_seconds", "idle_timeout_seconds", "endpoint_silence_seconds"):
            value = getattr(self.limits, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"streaming.{name}={value} must be a positive number")
        if self.limits.model_path is not None:
            check_stream_model_path(self.limits.model_path)
        self.factory: Optional[Callable[..., Any]] = None  # StreamingTranscriber, imported at start-up
        self.metrics = StreamMetrics()
        self.loaded: Any = None
        self.decoders: Dict[str, DecoderConfig] = {}
        self.default_decoder = settings.decoder.type
        self.pool: Optional[ThreadPoolExecutor] = None
        self.router = self._build_router()

    # -- life cycle --

    def model_and_mode(self) -> Tuple[Optional[str], Optional[str]]:
        """The streams' model's name and how it streams ("streaming" or "utterance"); (None, None) before start."""
        if self.loaded is None:
            return None, None
        from deepspeech_pytorch.streaming import streams_natively

        return self.loaded.name, "streaming" if streams_natively(self.loaded) else "utterance"

    async def start(self, loaded: Any, decoders: Dict[str, DecoderConfig], stream_model: Any = None) -> None:
        """Serve streams with `loaded` (the server's model) or, when streaming.model_path is set, that model
        (`stream_model` when the caller loaded it already); `decoders`: name -> config, those the server offers."""
        if stream_model is not None:
            loaded = stream_model
        elif self.limits.model_path is not None:
            from deepspeech_pytorch.inference import load_model

            loaded = await asyncio.to_thread(load_model, self.limits.model_path, self.settings.device)
        if self.limits.model_path is not None:
            logger.info("streams use %s (streaming.model_path)", self.limits.model_path)
        from deepspeech_pytorch.streaming import StreamingTranscriber

        self.factory = StreamingTranscriber
        self.decoders = dict(decoders)
        if self.default_decoder not in self.decoders:
            self.default_decoder = next(iter(self.decoders))
        self.pool = ThreadPoolExecutor(worker_count(self.limits.max_streams), thread_name_prefix="stream")
        self.loaded = loaded

    async def stop(self) -> None:
        self.loaded = None  # new streams are refused from here on
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def render_metrics(self) -> str:
        return self.metrics.render()

    # -- routes --

    def _build_router(self) -> APIRouter:
        router = APIRouter()
        page = page_html()

        @router.get("/", response_class=HTMLResponse, include_in_schema=False)
        async def index() -> HTMLResponse:
            return HTMLResponse(page)

        @router.websocket(PATH)
        async def transcribe_stream(websocket: WebSocket) -> None:
            await self.serve(websocket)

        return router

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` on the worker pool. Cancelled, it still waits for the job to finish (a thread
        cannot be stopped), so a stream that ends has no work left running."""
        if self.pool is None:
            raise StreamError(Close.GOING_AWAY, "the server is shutting down")
        future = asyncio.get_running_loop().run_in_executor(self.pool, function, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait([future])  # the job's own result or error no longer matters
            raise

    async def serve(self, websocket: WebSocket) -> None:
        """One stream, from the handshake to the close."""
        await websocket.accept()
        if self.loaded is None or self.pool is None:
            await self._refuse(websocket, Close.TRY_AGAIN, "the model is not loaded yet or the server is shutting "
                                                          "down; try again later")
            return
        if self.metrics.active >= self.limits.max_streams:
            await self._refuse(websocket, Close.TRY_AGAIN, f"the server holds its maximum of {self.limits.max_streams} "
                                                          "streams (streaming.max_streams); try again later")
            return
        self.metrics.active += 1
        processor: Optional[asyncio.Task] = None
        try:
            message = await self._receive(websocket)
            first_audio: Optional[Dict[str, Any]] = None
            if message.get("text") is not None:
                options = parse_config(message["text"], list(self.decoders), self.default_decoder)
            else:  # no config (as Vosk's server allows): the defaults, and this message is the first audio
                check_pcm(message["bytes"])
                options = StreamOptions(DEFAULT_SAMPLE_RATE, self.default_decoder, True)
                first_audio = message
            transcriber = await self._run(self._transcriber, options)
            stream = Stream(transcriber, options)
            processor = asyncio.create_task(self._process(websocket, stream))
            over_limit = await self._read(websocket, stream, processor, first_audio)
            await processor  # the last answers, then the close
            if over_limit is not None:
                raise over_limit
            await websocket.close(Close.NORMAL)
            self.metrics.streams.inc(code=str(int(Close.NORMAL)))
        except StreamError as error:
            await self._stop(processor)
            await self._refuse(websocket, error.code, error.message)
        except WebSocketDisconnect as gone:
            self.metrics.streams.inc(code=f"client_{gone.code}")
        except Exception:  # noqa: BLE001  the stream ends, the server goes on
            logger.exception("websocket stream failed")
            await self._stop(processor)
            await self._refuse(websocket, Close.INTERNAL, "unexpected server error; see the server log")
        finally:
            await self._stop(processor)  # the processor's job, if any, has finished when this returns
            self.metrics.active -= 1

    def _transcriber(self, options: StreamOptions) -> Any:
        return self.factory(self.loaded, self.decoders[options.decoder],
                            endpoint_silence_seconds=self.limits.endpoint_silence_seconds, word_timings=options.words)

    async def _receive(self, websocket: WebSocket, processor: Optional[asyncio.Task] = None,
                       stream: Optional[Stream] = None) -> Dict[str, Any]:
        """The next message, within idle_timeout_seconds of silence from the client while the server owes it
        nothing (time the stream's audio waits for the model does not count: a client may wait for an answer).
        Raises WebSocketDisconnect when the client leaves, the processor's error if it failed meanwhile,
        StreamError when idle or over max_message_bytes."""
        receive = asyncio.ensure_future(websocket.receive())
        waiting = {receive} if processor is None else {receive, processor}
        try:
            while True:
                done, _ = await asyncio.wait(waiting, timeout=self.limits.idle_timeout_seconds,
                                             return_when=asyncio.FIRST_COMPLETED)
                if receive in done:
                    break
                if processor is not None and processor in done:
                    processor.result()  # raises what stopped it
                    raise RuntimeError("the stream's processor ended before the end of the stream")
                if stream is None or not (stream.busy or stream.pending_bytes):
                    raise StreamError(Close.POLICY, f"no message for {self.limits.idle_timeout_seconds:g} s "
                                                    "(streaming.idle_timeout_seconds)")
        finally:
            if not receive.done():
                receive.cancel()
                with suppress(BaseException):
                    await receive
        message = receive.result()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
        size = len(message["bytes"]) if message.get("bytes") is not None else len((message.get("text") or "").encode())
        if size > self.limits.max_message_bytes:
            raise StreamError(Close.TOO_BIG, f"a message of {size} bytes is over the limit of "
                                             f"{self.limits.max_message_bytes} (streaming.max_message_bytes)")
        return message

    async def _read(self, websocket: WebSocket, stream: Stream, processor: asyncio.Task,
                    first: Optional[Dict[str, Any]] = None) -> Optional[StreamError]:
        """Audio into `stream` until the end message (`first`: a message already received, the stream's first
        audio when it came without a config). Over max_stream_seconds, the audio up to the limit is transcribed
        and the error to send after its finals is returned."""
        limit_samples = int(self.limits.max_stream_seconds * stream.options.sample_rate)
        while True:
            if first is not None:
                message, first = first, None
            else:
                message = await self._receive(websocket, processor, stream)
            data = message.get("bytes")
            if data is None:
                is_eof(message["text"])  # or StreamError
                stream.end()
                return None
            check_pcm(data)
            if not data:
                continue
            room = limit_samples - stream.received_samples
            if len(data) // 2 > room:
                stream.push(data[: 2 * room])
                self.metrics.audio_seconds.inc(room / stream.options.sample_rate)
                stream.end()
                return StreamError(Close.POLICY, f"the stream is longer than {self.limits.max_stream_seconds:g} s "
                                                 "(streaming.max_stream_seconds); its audio up to there is transcribed")
            stream.push(data)
            self.metrics.audio_seconds.inc(len(data) / 2 / stream.options.sample_rate)
            if not stream.room.is_set():  # the model is behind by PENDING_SECONDS: stop reading for now
                room_task = asyncio.ensure_future(stream.room.wait())
                try:
                    await asyncio.wait({room_task, processor}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    room_task.cancel()
                if processor.done():
                    processor.result()

    async def _process(self, websocket: WebSocket, stream: Stream) -> None:
        """Give the stream's pending audio to its transcriber, one job at a time, and send the answers:
        a final result per utterance ended, else the partial; after the end, at least one final."""
        while True:
            stream.busy = False
            await stream.wake.wait()
            stream.busy = True
            data, ended = stream.take()
            partial, finals = await self._run(stream.step, data, ended)
            for result in finals:
                await websocket.send_text(json.dumps(final_message(result.text, result.words, stream.options.words)))
                self.metrics.finals.inc()
            if ended:
                if not finals:  # Vosk answers the end message with a final result, empty or not
                    await websocket.send_text(json.dumps(final_message("", [], stream.options.words)))
                return
            if not finals:
                await websocket.send_text(json.dumps({"partial": partial}))

    @staticmethod
    async def _stop(processor: Optional[asyncio.Task]) -> None:
        """Cancel the stream's processor and wait until it (and its job on the pool) has finished."""
        if processor is None:
            return
        if not processor.done():
            processor.cancel()
        with suppress(BaseException):
            await processor

    async def _refuse(self, websocket: WebSocket, code: Close, message: str) -> None:
        """One error message, then the close; quietly nothing when the client has gone already."""
        self.metrics.streams.inc(code=str(int(code)))
        if websocket.application_state != WebSocketState.CONNECTED:
            return
        with suppress(Exception):
            await websocket.send_text(json.dumps({"error": message}))
            await websocket.close(code, close_reason(message))


STREAMING_DESCRIPTION = f"""

**Live transcription** (websocket `GET {PATH}`, Vosk's message shapes; the page at `/` uses it):
send the config `{{"config": {{"sample_rate": 16000, "decoder": "greedy", "words": true}}}}` as text (optional:
a stream that starts with audio is 16 kHz with the server's decoder and word times, as Vosk's server takes it), then
the audio as binary messages of 16-bit little-endian mono PCM, then `{{"eof": 1}}`. The server answers
`{{"partial": "..."}}` while an utterance goes on and `{{"text": "...", "result": [{{"conf", "end", "start",
"word"}}]}}` for each utterance that ends (word times in seconds of the stream), then closes with 1000.
A problem is one `{{"error": "..."}}` message and a close code: 1003 wrong kind of message, 1007 malformed,
1008 bad config value, idle too long or stream too long, 1009 message too big, 1011 server error,
1013 too many streams (try again later). Details: docs/streaming.md.
"""
