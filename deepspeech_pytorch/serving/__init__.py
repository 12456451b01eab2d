"""The transcription server: FastAPI over the one inference API.

    app.py       create_app(settings), routes, error handlers, run_server(settings, model)
    uploads.py   multipart body under a byte limit -> checked, decoded samples (in memory)
    service.py   the model, a Transcriber per decoder, the batcher, the limits
    batching.py  dynamic batching on one inference thread, bounded queue, timeouts
    schemas.py   pydantic response and error models (what the OpenAPI page shows)
    metrics.py   Prometheus text format
    pipeline.py  one request path (limits, form, decoding, model) for POST /transcribe and the OpenAI route
    openai_api.py  POST /v1/audio/transcriptions, OpenAI's shapes (json, text, srt, vtt, verbose_json)
    streaming.py GET /ws/transcribe (websocket, Vosk's message shapes) and the page at /; static/index.html
"""

from deepspeech_pytorch.extras import ensure

ensure("fastapi", "deepspeech_pytorch.serving (the HTTP server)")  # one clear ImportError without the server extra
from deepspeech_pytorch.serving.app import create_app, run_server  # noqa: E402

__all__ = ["create_app", "run_server"]
