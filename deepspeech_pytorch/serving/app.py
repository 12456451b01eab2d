"""The HTTP layer: `create_app(settings)` builds the FastAPI app, `run_server(settings, model)` serves it with uvicorn.

Routes: POST /transcribe, GET /health (alive), GET /ready (model loaded), GET /metrics (Prometheus);
POST /v1/audio/transcriptions, OpenAI's API with OpenAI's error shape (serving/openai_api.py);
GET /ws/transcribe, live transcription over a websocket, and the page at / that uses it (serving/streaming.py).
Every error is an ErrorResponse `{"code", "detail"}` with the status the OpenAPI page documents.
"""

# No `from __future__ import annotations`: the route signatures use types built in create_app.

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from http import HTTPStatus
from importlib import metadata
from typing import Annotated, Any, Dict, List, Literal, Optional, Set

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from omegaconf import OmegaConf
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from deepspeech_pytorch.configs import ServerConfig
from deepspeech_pytorch.inference import (LoadedModel, default_model_path, load_model,
                                          ships_language_model)
from deepspeech_pytorch.serving.metrics import Metrics
from deepspeech_pytorch.serving.schemas import (NOT_READY, TRANSCRIBE_ERRORS, ApiError, ErrorResponse, HealthResponse,
                                                ReadyResponse, TranscriptionResponse, Word)
from deepspeech_pytorch.decoders import decoder_choices
from deepspeech_pytorch.serving.openai_api import build_openai_router
from deepspeech_pytorch.serving.pipeline import transcribe_request
from deepspeech_pytorch.serving.service import TranscriptionService, check_settings
from deepspeech_pytorch.serving.streaming import STREAMING_DESCRIPTION, StreamingEndpoint
from deepspeech_pytorch.serving.uploads import FORMATS, UPLOAD_FIELD, Part

logger = logging.getLogger(__name__)

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
SHUTDOWN_GRACE_SECONDS = 10  # uvicorn waits this long for requests in flight before stopping


class PrometheusResponse(PlainTextResponse):
    media_type = "text/plain; version=0.0.4"  # Starlette adds "; charset=utf-8"


def _version() -> str:
    try:
        return metadata.version("deepspeech-pytorch")
    except metadata.PackageNotFoundError:
        return "0.0.0"


# ---- dependencies -------------------------------------------------------------------------------

def get_settings(request: Request) -> ServerConfig:
    return request.app.state.settings


def get_service(request: Request) -> TranscriptionService:
    service = request.app.state.service
    if service is None:
        raise ApiError(503, "not_ready", "the model is not loaded yet or the server is shutting down",
                       {"Retry-After": "1"})
    return service


Settings = Annotated[ServerConfig, Depends(get_settings)]
Service = Annotated[TranscriptionService, Depends(get_service)]


# ---- request options --------------------------------------------------------------------------

_BOOL = TypeAdapter(bool)


def _form_option(parts: List[Part], name: str) -> Optional[str]:
    values = [part.data.decode("utf-8", errors="replace").strip() for part in parts if part.name == name]
    if len(values) > 1:
        raise ApiError(422, "invalid_parameter", f"the form field {name!r} is given {len(values)} times")
    return values[0] if values else None


OPTION_NAMES = ("word_timings", "decoder")  # what POST /transcribe takes besides the file


def _refuse_unknown(query_names: List[str], parts: List[Part]) -> None:
    """422 for a query parameter or form field POST /transcribe does not take (a typo, or `vad=false`), which
    would otherwise be silently ignored."""
    for where, names in (("query parameter", query_names),
                         ("form field", [part.name for part in parts if part.name != UPLOAD_FIELD])):
        unknown = sorted(set(names) - set(OPTION_NAMES))
        if unknown:
            raise ApiError(422, "invalid_parameter", f"unknown {where} {unknown[0][:40]!r}; this endpoint takes "
                                                     f"{UPLOAD_FIELD} and {', '.join(OPTION_NAMES)}")


def _options(parts: List[Part], word_timings: Optional[bool], decoder: Optional[str],
             decoders: List[str]) -> Dict[str, Any]:
    """word_timings and decoder from the query or the form (both: they must agree)."""
    form_timings, form_decoder = _form_option(parts, "word_timings"), _form_option(parts, "decoder")
    if form_timings is not None:
        try:
            parsed = _BOOL.validate_python(form_timings)
        except ValidationError:
            raise ApiError(422, "invalid_parameter",
                           f"form field word_timings={form_timings[:40]!r} is not a boolean (true or false)") from None
        if word_timings is not None and parsed != word_timings:
            raise ApiError(422, "invalid_parameter", "word_timings differs between the query and the form")
        word_timings = parsed
    if form_decoder is not None:
        if form_decoder not in decoders:
            raise ApiError(422, "invalid_parameter", f"form field decoder={form_decoder[:40]!r} is not offered by this "
                                                     f"server; choose from {', '.join(decoders)}")
        if decoder is not None and form_decoder != decoder:
            raise ApiError(422, "invalid_parameter", "decoder differs between the query and the form")
        decoder = form_decoder
    return {"word_timings": True if word_timings is None else word_timings, "decoder": decoder}


def _upload_schema(settings: ServerConfig, decoders: List[str]) -> Dict[str, Any]:
    """The multipart body, documented by hand: the route streams it itself to enforce the size limit."""
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": [UPLOAD_FIELD], "properties": {
            UPLOAD_FIELD: {"type": "string", "format": "binary",
                           "description": f"the audio: {FORMATS}, any sample rate, mono or multi-channel; at most "
                                          f"{settings.max_upload_bytes} bytes of request body and "
                                          f"{settings.max_audio_seconds:g} seconds"},
            "word_timings": {"type": "boolean", "description": "as the query parameter"},
            "decoder": {"type": "string", "enum": decoders, "description": "as the query parameter"},
        }},
        "encoding": {UPLOAD_FIELD: {"contentType": "audio/wav, audio/flac, audio/ogg, audio/mpeg, "
                                                   "application/octet-stream"}},
    }}}}


# ---- routes -------------------------------------------------------------------------------------

def build_router(settings: ServerConfig, model_has_lm: bool = False) -> APIRouter:
    decoders = list(decoder_choices(settings.decoder, model_has_lm))
    DecoderName = Literal[tuple(decoders)]  # the enum on the OpenAPI page is what this server offers
    router = APIRouter()

    @router.post("/transcribe", response_model=TranscriptionResponse, responses=TRANSCRIBE_ERRORS,
                 openapi_extra=_upload_schema(settings, decoders), summary="Transcribe an audio file",
                 description=f"Send the audio as the multipart form field `{UPLOAD_FIELD}` "
                             f"(`curl -F {UPLOAD_FIELD}=@audio.wav http://HOST:PORT/transcribe`). Concurrent requests "
                             "are batched into shared forward passes.")
    async def transcribe(
        request: Request,
        service: Service,
        settings: Settings,
        word_timings: Annotated[Optional[bool], Query(description="return each word's start and end seconds "
                                                                  "(default true)")] = None,
        decoder: Annotated[Optional[DecoderName], Query(description=f"default: {settings.decoder.type}; beam is "
                                                                    "offered only by servers with a language model")] = None,
    ) -> TranscriptionResponse:
        def read_options(parts: List[Part]):
            _refuse_unknown(list(request.query_params.keys()), parts)
            options = _options(parts, word_timings, decoder, service.decoders)
            return options["decoder"], options

        # the one path of an upload (serving/pipeline.py), shared with POST /v1/audio/transcriptions
        result, options, received = await transcribe_request(request, service, settings, read_options)
        words = [Word(word=w.word, start=round(w.start, 3), end=round(w.end, 3)) for w in result.words]
        return TranscriptionResponse(transcript=result.text, words=words if options["word_timings"] else [],
                                     duration=round(result.duration, 3),
                                     processing_time=round(time.perf_counter() - received, 4),
                                     model=service.loaded.name, decoder=options["decoder"] or service.default_decoder)

    @router.get("/health", response_model=HealthResponse, summary="Liveness: the process answers")
    async def health() -> HealthResponse:
        return HealthResponse()

    @router.get("/ready", response_model=ReadyResponse, responses=NOT_READY,
                summary="Readiness: the model is loaded and requests are served")
    async def ready(request: Request, service: Service, settings: Settings) -> ReadyResponse:
        streams = getattr(request.app.state, "streaming", None)
        stream_model, stream_mode = streams.model_and_mode() if streams is not None else (None, None)
        return ReadyResponse(model=service.loaded.name, decoders=service.decoders,
                             max_upload_bytes=settings.max_upload_bytes, max_audio_seconds=settings.max_audio_seconds,
                             streaming_model=stream_model, streaming_mode=stream_mode)

    @router.get("/metrics", response_class=PrometheusResponse,
                summary="Prometheus metrics: requests, errors, latency, audio seconds, batch sizes")
    async def metrics(request: Request) -> PrometheusResponse:
        streaming = getattr(request.app.state, "streaming", None)  # the websocket's part (serving/streaming.py)
        return PrometheusResponse(request.app.state.metrics.render() + (streaming.render_metrics() if streaming else ""))

    return router


# ---- errors and metrics -------------------------------------------------------------------------

def _error_response(status: int, code: str, detail: str, headers: Optional[Dict[str, str]] = None) -> JSONResponse:
    return JSONResponse(ErrorResponse(code=code, detail=detail).model_dump(), status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        metrics.errors.inc(code=error.code)
        if error.status >= 500:
            logger.warning("%s %s: %s", request.url.path, error.code, error.detail)
        return _error_response(error.status, error.code, error.detail, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_parameter(request: Request, error: RequestValidationError) -> JSONResponse:
        metrics.errors.inc(code="invalid_parameter")
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
                             for e in error.errors())
        return _error_response(422, "invalid_parameter", problems or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = HTTPStatus(error.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        metrics.errors.inc(code=code)
        return _error_response(error.status_code, code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, error: ClientDisconnect) -> JSONResponse:
        metrics.errors.inc(code="client_disconnected")
        return _error_response(400, "client_disconnected", "the client closed the connection during the upload")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        metrics.errors.inc(code="internal_error")
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error_response(500, "internal_error", f"unexpected {type(error).__name__}; see the server log")


class RequestMetrics:
    """Pure ASGI middleware (it does not buffer bodies): count every response, time /transcribe."""

    METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}

    def __init__(self, app, metrics: Metrics, paths: Set[str]):
        self.app = app
        self.metrics = metrics
        self.paths = paths  # label values; any other path counts as "other"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_and_note(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = scope["path"] if scope["path"] in self.paths else "other"  # no label per fuzzed URL
            method = scope["method"] if scope["method"] in self.METHODS else "other"
            self.metrics.requests.inc(method=method, path=path, status=str(status["code"]))
            if path == "/transcribe":
                self.metrics.latency.observe(time.perf_counter() - started)


# ---- the app ------------------------------------------------------------------------------------

def create_app(settings: ServerConfig, model: Optional[LoadedModel] = None,
               stream_model: Optional[LoadedModel] = None) -> FastAPI:
    """The FastAPI app for `settings`. The model is loaded in the lifespan (at start-up, once) unless a
    loaded one is given (run_server loads it first, to fail fast); the batcher runs from start-up to shutdown."""
    check_settings(settings)
    metrics = Metrics()
    # Given a model, the decoders are built here, so a setting they refuse stops run_server before the port opens.
    prepared = TranscriptionService(settings, model, metrics) if model is not None else None
    streaming = StreamingEndpoint(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service = prepared
        if service is None:
            loaded = await asyncio.to_thread(load_model, settings.model_path, settings.device, settings.backend)
            service = TranscriptionService(settings, loaded, metrics)
        await service.start()
        offered = decoder_choices(settings.decoder, service.loaded.language_model is not None)
        await streaming.start(service.loaded, {name: offered[name] for name in service.decoders}, stream_model)
        app.state.service = service
        try:
            yield
        finally:
            app.state.service = None  # /ready and /transcribe answer 503 from here on
            await streaming.stop()
            await service.stop()

    app = FastAPI(title="deepspeech-pytorch transcription server", version=_version(), lifespan=lifespan,
                  description=f"DeepSpeech2 speech recognition over HTTP. Upload {FORMATS} audio to "
                              "POST /transcribe; errors are JSON `{code, detail}`." + STREAMING_DESCRIPTION)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = None
    if model is not None:
        model_has_lm = model.language_model is not None
    else:  # loaded later, in the lifespan: look for its LM settings file now, for the routes' decoder list
        model_has_lm = ships_language_model(settings.model_path or default_model_path())
    router = build_router(settings, model_has_lm)
    app.include_router(router)
    app.include_router(streaming.router)  # GET /ws/transcribe and the page at /
    openai_router = build_openai_router(settings, model_has_lm)  # POST /v1/audio/transcriptions
    app.include_router(openai_router)
    app.state.streaming = streaming
    _install_error_handlers(app, metrics)
    paths = {route.path for route in router.routes + openai_router.routes} | {app.openapi_url, app.docs_url,
                                                                              app.redoc_url}
    app.add_middleware(RequestMetrics, metrics=metrics, paths={path for path in paths if path})
    return app


def server_settings(config: Any) -> ServerConfig:
    """A ServerConfig from a Hydra/OmegaConf config (or a ServerConfig)."""
    if isinstance(config, ServerConfig):
        return config
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ServerConfig), config))


def run_server(settings: ServerConfig, model: LoadedModel, stream_model: Optional[LoadedModel] = None) -> None:
    """Serve `model` (and `stream_model` on the websocket, when streaming.model_path names one) with uvicorn until
    interrupted (SIGINT/SIGTERM: a graceful shutdown). The CLI (cli.run_serve) checks the settings and loads the
    models first, so mistakes stop before the port opens."""
    import uvicorn

    app = create_app(settings, model=model, stream_model=stream_model)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS)

