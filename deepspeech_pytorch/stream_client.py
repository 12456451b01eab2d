"""Stream audio to a running server's websocket (GET /ws/transcribe) and show the transcript as it comes.

    deepspeech-stream speech.wav                          # in real time, partials overwrite one line
    deepspeech-stream speech.wav --speed 0 > out.jsonl    # as fast as the server takes it, one JSON line a message
    arecord -q -f S16_LE -r 16000 -c 1 -t raw | deepspeech-stream -   # the microphone (raw PCM on stdin)

`stream_audio()` is the library part: it sends 16-bit PCM in chunks, paced to `speed` x real time, while
it receives the server's messages; `main()` is the command line (stream.py at the repository root).
The protocol is in docs/streaming.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import sys
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Sequence

import numpy as np

STREAM_PATH = "/ws/transcribe"  # the server's websocket (serving.streaming.PATH)
DEFAULT_URL = f"ws://127.0.0.1:8000{STREAM_PATH}"
CHUNK_SECONDS = 0.1  # audio per message: what a microphone client sends
SAMPLE_RATE = 16000  # Hz: files are sent at the model's rate (the server would resample any other)


class StreamRefused(Exception):
    """The server ended the stream with an error: its close code, reason and `{"error"}` message."""

    def __init__(self, code: Optional[int], reason: str, message: Optional[str] = None):
        self.code, self.reason, self.message = code, reason, message
        super().__init__(f"the server closed the stream ({code}): {message or reason or 'no reason given'}")


def to_pcm16(samples: np.ndarray) -> bytes:
    """float samples in [-1, 1], shape (samples,) -> 16-bit little-endian PCM bytes (clipped)."""
    scaled = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767.0
    return np.round(scaled).astype("<i2").tobytes()


async def chunks_of(pcm: bytes, sample_rate: int, speed: float, chunk_seconds: float = CHUNK_SECONDS
                    ) -> AsyncIterator[bytes]:
    """`pcm` in chunks of `chunk_seconds`, each released when it would have been recorded at `speed` x real
    time (speed 0: all at once)."""
    step = max(1, int(chunk_seconds * sample_rate)) * 2
    loop = asyncio.get_running_loop()
    started = loop.time()
    for number, first in enumerate(range(0, len(pcm), step)):
        if speed > 0:
            due = started + (number + 1) * chunk_seconds / speed  # a chunk exists once its last sample is spoken
            await asyncio.sleep(max(0.0, due - loop.time()))
        yield pcm[first: first + step]


async def stdin_chunks(sample_rate: int, chunk_seconds: float = CHUNK_SECONDS) -> AsyncIterator[bytes]:
    """Raw 16-bit PCM from standard input as it arrives (a recorder's pace), `chunk_seconds` at a time."""
    size = max(1, int(chunk_seconds * sample_rate)) * 2
    carry = b""
    while True:
        data = await asyncio.to_thread(sys.stdin.buffer.read1, size)
        if not data:
            break
        data = carry + data
        even = len(data) - len(data) % 2
        carry = data[even:]
        if even:
            yield data[:even]


def refusal_message(url: str, status: int) -> str:
    """One line for a websocket handshake the server answered with HTTP `status`: which URL it refused and, when
    the path is not the server's, where its websocket is (Starlette answers 403 for a path it has no route for)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.path != STREAM_PATH:
        expected = urlunsplit((parts.scheme, parts.netloc, STREAM_PATH, "", ""))
        return (f"the server refused the websocket at {url} (HTTP {status}): its path is {parts.path or '/'!r}, "
                f"the server's stream is at {STREAM_PATH} (try --url {expected})")
    return (f"the server refused the websocket at {url} (HTTP {status}); is it a deepspeech-pytorch server "
            "(python server.py), and does a proxy in between pass websockets on?")


async def stream_audio(url: str, chunks: AsyncIterator[bytes], sample_rate: int, *, decoder: Optional[str] = None,
                       words: bool = True, on_message: Optional[Callable[[Dict[str, Any]], None]] = None,
                       open_timeout: float = 10.0, stop: Optional[asyncio.Event] = None) -> List[Dict[str, Any]]:
    """Send the config, every chunk of 16-bit PCM from `chunks` and the end message to the websocket at `url`,
    receiving meanwhile; `on_message` sees every message from the server. `stop`, once set, ends the audio early:
    the end message goes out and the server's last final still comes. Returns the final results
    (`{"text", "result"}`). Raises StreamRefused when the server closes with an error, OSError when it
    cannot be reached or refuses the websocket (one line naming the URL; for a wrong path, the server's)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

    config: Dict[str, Any] = {"sample_rate": sample_rate, "words": words}
    if decoder is not None:
        config["decoder"] = decoder
    finals: List[Dict[str, Any]] = []
    error: List[str] = []
    try:
        websocket = await connect(url, open_timeout=open_timeout, max_size=None, ping_interval=None)
    except InvalidStatus as refused:
        raise OSError(refusal_message(url, refused.response.status_code)) from None
    except (InvalidHandshake, InvalidURI, OSError, asyncio.TimeoutError) as problem:
        raise OSError(f"cannot open a websocket to {url}: {problem}") from None
    async with websocket:
        async def receive() -> None:
            try:
                async for text in websocket:  # ends at a close with 1000 or 1001
                    message = json.loads(text)
                    if "error" in message:
                        error.append(message["error"])
                    elif "text" in message:
                        finals.append(message)
                    if on_message is not None:
                        on_message(message)
            except ConnectionClosed:  # any other close code: told below
                pass

        receiver = asyncio.create_task(receive())
        try:
            await websocket.send(json.dumps({"config": config}))
            async for chunk in chunks:
                if receiver.done() or (stop is not None and stop.is_set()):  # the server closed early, or the user
                    break
                await websocket.send(chunk)
            if not receiver.done():
                await websocket.send(json.dumps({"eof": 1}))
        except ConnectionClosed:
            pass  # the receiver has the server's last words
        await receiver
    if websocket.close_code != 1000:
        reason = websocket.close_reason or ""
        raise StreamRefused(websocket.close_code, reason, error[0] if error else None)
    return finals


# ---- the command line -----------------------------------------------------------------------------

class Display:
    """Messages to standard output: on a terminal the partial overwrites one line and each final gets its own;
    otherwise (or with --json) one JSON line per message."""

    def __init__(self, stream: Any, as_json: bool):
        self.stream = stream
        self.as_json = as_json
        self.width = max(20, shutil.get_terminal_size().columns - 1)

    def __call__(self, message: Dict[str, Any]) -> None:
        if self.as_json:
            self.stream.write(json.dumps(message) + "\n")
        elif "partial" in message:
            text = message["partial"]
            shown = text if len(text) <= self.width else "..." + text[-(self.width - 3):]
            self.stream.write("\r\033[K" + shown)
        elif message.get("text"):
            self.stream.write("\r\033[K" + message["text"] + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.as_json:
            self.stream.write("\r\033[K")
            self.stream.flush()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """deepspeech-stream: stream a file (or raw PCM on stdin) to the server; exit 0 when the stream ended well."""
    from deepspeech_pytorch.cli import ArgumentParser, number, setup_logging

    parser = ArgumentParser(prog="stream.py", description="Stream audio to a deepspeech-pytorch server's websocket and "
                                                          "print partial and final results as they arrive.")
    parser.add_argument("audio", help="an audio file (WAV, FLAC, OGG, MP3), or - for raw 16-bit mono PCM on "
                                      "standard input (arecord -q -f S16_LE -r 16000 -c 1 -t raw | ... -)")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the server's websocket (default {DEFAULT_URL})")
    parser.add_argument("--decoder", choices=("greedy", "beam"), help="default: the server's")
    parser.add_argument("--no-words", action="store_true", help="finals without word times")
    parser.add_argument("--speed", type=number(float, low=0), default=1.0,
                        help="x real time for a file (default 1: as a microphone would; 0: as fast as possible)")
    parser.add_argument("--rate", type=number(int, low=8000, high=48000), default=SAMPLE_RATE,
                        help="sample rate of the PCM on standard input, Hz (default 16000)")
    parser.add_argument("--chunk-ms", type=number(int, low=10, high=5000), default=int(CHUNK_SECONDS * 1000),
                        help="milliseconds of audio per message (default 100)")
    parser.add_argument("--json", action="store_true", help="one JSON line per message even on a terminal")
    args = parser.parse_args(argv)
    setup_logging()
    chunk_seconds = args.chunk_ms / 1000
    if args.audio == "-":
        rate, chunks = args.rate, stdin_chunks(args.rate, chunk_seconds)
    else:
        from deepspeech_pytorch.audio import AudioError, load_audio

        try:
            samples = load_audio(args.audio, SAMPLE_RATE)
        except (AudioError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        rate, chunks = SAMPLE_RATE, chunks_of(to_pcm16(samples), SAMPLE_RATE, args.speed, chunk_seconds)
    display = Display(sys.stdout, args.json or not sys.stdout.isatty())

    async def run() -> None:
        # The first Ctrl-C ends the audio (the end message goes out, the last final comes); a second one aborts.
        stop, loop = asyncio.Event(), asyncio.get_running_loop()

        def interrupted() -> None:
            stop.set()
            loop.remove_signal_handler(signal.SIGINT)

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # no signal handlers here
            loop.add_signal_handler(signal.SIGINT, interrupted)
        await stream_audio(args.url, chunks, rate, decoder=args.decoder, words=not args.no_words,
                           on_message=display, stop=stop)

    try:
        asyncio.run(run())
    except (StreamRefused, OSError) as error:
        display.close()
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        display.close()
        return 130
    display.close()
    return 0


def console_main() -> None:
    """The console script (deepspeech-stream)."""
    sys.exit(main())
