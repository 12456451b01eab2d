"""The transcription server as its clients see it: server.py started as a process, real HTTP on
127.0.0.1, real speech from a model trained here, concurrency, overload, timeouts and bad input."""

import asyncio
import io
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from deepspeech_pytorch.audio import load_audio
from deepspeech_pytorch.configs import DecoderConfig, LanguageModelConfig, TrainConfig
from deepspeech_pytorch.inference import Transcriber, load_model
from deepspeech_pytorch.metrics import cer as corpus_cer
from deepspeech_pytorch.serving.batching import DynamicBatcher, QueueFull
from deepspeech_pytorch.serving.uploads import Part, decode_upload, sniff_format
from deepspeech_pytorch.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_UPLOAD_BYTES = 1_000_000
MAX_AUDIO_SECONDS = 10.0


# ---- a trained model and its offline transcripts --------------------------------------------------

@pytest.fixture(scope="session")
def trained_model(speech_corpus, tmp_path_factory):
    """ds2_tiny overfitted on the six fixture utterances (CER < 0.1 after 60 epochs, ~25 s on 2 cores)."""
    folder = tmp_path_factory.mktemp("server_model")
    config = OmegaConf.structured(TrainConfig)
    config.model = "ds2_tiny"
    config.epochs = 60
    config.data.train_manifest = speech_corpus
    config.data.batch_size = 3
    config.data.num_workers = 0
    config.optim.learning_rate = 3e-3
    config.checkpoint.directory = str(folder)
    config.log_dir = None
    config.validate_every_epoch = False
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as fast on 2 idle cores, and no stalls when other work shares them
    try:
        train(config)
    finally:
        torch.set_num_threads(threads)
    return str(folder / "last.pt")


@pytest.fixture(scope="session")
def utterances(speech_corpus):
    """(wav path, reference text) for each fixture utterance."""
    folder = os.path.dirname(speech_corpus)
    with open(speech_corpus) as manifest:
        lines = [json.loads(line) for line in manifest]
    return [(os.path.join(folder, line["audio_filepath"]), line["text"]) for line in lines]


@pytest.fixture(scope="session")
def offline(trained_model, utterances):
    """What transcribe.py's API gives for each file, one file at a time: path -> Transcription."""
    transcriber = Transcriber(load_model(trained_model))
    return {path: transcriber.transcribe(path) for path, _ in utterances}


def cer(pairs):
    return corpus_cer([reference for reference, _ in pairs], [hypothesis for _, hypothesis in pairs])


# ---- real server processes ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """server.py in a subprocess on a free port, with its own empty TMPDIR and a log file."""

    def __init__(self, folder, model_path, *overrides):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmpdir = folder / "tmp"
        self.tmpdir.mkdir(parents=True)
        self.log_path = folder / "server.log"
        self._log = open(self.log_path, "w")
        # One torch thread each: three servers and the tests share the machine's cores.
        env = {**os.environ, "TMPDIR": str(self.tmpdir), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "server.py"), "host=127.0.0.1", f"port={self.port}",
             f"model_path={model_path}", *overrides],
            cwd=folder, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # what Ctrl-C and `docker stop` (SIGTERM) do: graceful
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@pytest.fixture(scope="session")
def char_lm(speech_corpus, tmp_path_factory):
    """A character LM of the fixture transcripts (KenLM binary), for lexicon-free beam search."""
    from deepspeech_pytorch import lm

    folder = tmp_path_factory.mktemp("lm")
    return lm.build_language_model([speech_corpus], str(folder), unit="char", memory="64M", name="chars").binary


@pytest.fixture(scope="module")
def servers(trained_model, char_lm, tmp_path_factory):
    """Three servers started together: the main one (small limits, to test them), one that overloads
    (queue of 1, no batching: at most 2 requests admitted) and also has a language model, so requests
    may choose beam search, and one whose every request times out."""
    started = {
        "main": Server(tmp_path_factory.mktemp("main"), trained_model, f"max_upload_bytes={MAX_UPLOAD_BYTES}",
                       f"max_audio_seconds={MAX_AUDIO_SECONDS}"),
        "overload": Server(tmp_path_factory.mktemp("overload"), trained_model, "max_queue=1", "max_batch_size=1",
                           "max_batch_wait_ms=0", f"decoder.lm.path={char_lm}"),
        # One request at a time and 0.3 s each: of 8 long clips sent together, the later ones run out of time.
        "timeout": Server(tmp_path_factory.mktemp("timeout"), trained_model, "request_timeout_seconds=0.3",
                          "max_batch_size=1", "max_batch_wait_ms=0"),
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def main(servers):
    return servers["main"]


def post_audio(url, data, filename="audio.wav", content_type="audio/wav", field="file", params=None, timeout=60):
    return httpx.post(url + "/transcribe", files={field: (filename, data, content_type)}, params=params,
                      timeout=timeout)


def encode(samples, rate, format, subtype=None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=format, subtype=subtype)
    return buffer.getvalue()


def read_bytes(path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def metric_values(text):
    """{'name{labels}': value} from Prometheus text, checking every line's grammar on the way."""
    values = {}
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? '
                        r'(-?[0-9.e+-]+|\+Inf|-Inf|NaN)$')
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = sample.match(line)
        assert match, f"not Prometheus text format: {line!r}"
        values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return values


# ---- correct transcripts --------------------------------------------------------------------------

def test_transcripts_match_offline_transcriber_and_references(main, utterances, offline):
    hypotheses = []
    for path, reference in utterances:
        response = post_audio(main.url, read_bytes(path), os.path.basename(path))
        assert response.status_code == 200, response.text
        body = response.json()
        expected = offline[path]
        assert body["transcript"] == expected.text
        assert [w["word"] for w in body["words"]] == [w.word for w in expected.words]
        for word, offline_word in zip(body["words"], expected.words):
            assert word["start"] == pytest.approx(offline_word.start, abs=1e-3)
            assert word["end"] == pytest.approx(offline_word.end, abs=1e-3)
            assert 0 <= word["start"] < word["end"] <= body["duration"] + 0.05
        assert body["duration"] == pytest.approx(expected.duration, abs=1e-3)
        assert body["model"] == "last" and body["decoder"] == "greedy"
        assert 0 < body["processing_time"] < 30
        hypotheses.append((reference, body["transcript"]))
    assert cer(hypotheses) < 0.1, hypotheses


def test_silence_around_an_upload_changes_nothing_and_silence_alone_is_empty(main, utterances, offline):
    """The shared/cases/silence-padding fault, through HTTP: 3 s of digital silence before an utterance and
    4 s of a quiet room's noise after it give the clean clip's transcript, word times moved by 3 s
    (test_vad.py checks the bundled model's transcripts stay exactly the same)."""
    path, reference = utterances[0]
    samples = load_audio(path)
    room = (3e-4 * np.random.default_rng(0).standard_normal(4 * 16000)).astype(np.float32)
    padded = np.concatenate([np.zeros(3 * 16000, np.float32), samples, room])  # under the server's 10 s limit
    response = post_audio(main.url, encode(padded, 16000, "WAV", "PCM_16"))
    assert response.status_code == 200, response.text
    body = response.json()
    # the tiny test model overfits its clips to the sample, so the padded one may differ by a letter
    assert cer([(reference, body["transcript"])]) <= cer([(reference, offline[path].text)]) + 0.1
    assert len(body["words"]) == len(offline[path].words)
    for word, offline_word in zip(body["words"], offline[path].words):
        assert word["start"] == pytest.approx(offline_word.start + 3.0, abs=0.25)  # the tiny model, in new context
    near_silence = np.random.default_rng(1).integers(-1, 2, 5 * 16000).astype(np.float32) / 32768
    body = post_audio(main.url, encode(near_silence, 16000, "WAV", "PCM_16")).json()
    assert body["transcript"] == "" and body["words"] == [] and body["duration"] == pytest.approx(5.0)


def test_word_timings_can_be_turned_off_by_query_or_form(main, utterances, offline):
    path = utterances[0][0]
    by_query = post_audio(main.url, read_bytes(path), params={"word_timings": "false"})
    by_form = httpx.post(main.url + "/transcribe", files={"file": ("a.wav", read_bytes(path), "audio/wav")},
                         data={"word_timings": "false", "decoder": "greedy"}, timeout=60)
    for response in (by_query, by_form):
        assert response.status_code == 200, response.text
        assert response.json()["words"] == [] and response.json()["transcript"] == offline[path].text


def test_a_request_chooses_beam_search_where_the_server_has_a_language_model(servers, trained_model, char_lm,
                                                                           utterances, offline):
    server = servers["overload"]
    beam = Transcriber(load_model(trained_model), decoder=DecoderConfig(type="beam", lm=LanguageModelConfig(path=char_lm)))
    assert httpx.get(server.url + "/ready").json()["decoders"] == ["greedy", "beam"]
    schema = httpx.get(server.url + "/openapi.json").json()
    assert schema["paths"]["/transcribe"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"][
        "properties"]["decoder"]["enum"] == ["greedy", "beam"]
    hypotheses = []
    for path, reference in utterances[:3]:
        by_beam = post_audio(server.url, read_bytes(path), params={"decoder": "beam"})
        by_default = post_audio(server.url, read_bytes(path))
        assert by_beam.status_code == 200 and by_default.status_code == 200, (by_beam.text, by_default.text)
        assert by_beam.json()["decoder"] == "beam" and by_default.json()["decoder"] == "greedy"
        assert by_beam.json()["transcript"] == beam.transcribe(path).text
        assert by_default.json()["transcript"] == offline[path].text
        hypotheses.append((reference, by_beam.json()["transcript"]))
    assert cer(hypotheses) < 0.1, hypotheses


@pytest.mark.parametrize("format,subtype,exact", [("FLAC", "PCM_16", True), ("OGG", "VORBIS", False),
                                                  ("MP3", "MPEG_LAYER_III", False)])
def test_flac_ogg_mp3_and_stereo_44k(main, utterances, offline, format, subtype, exact):
    path, reference = utterances[1]
    samples, rate = sf.read(path, dtype="float32")
    if not exact:  # lossy formats as a phone would send them: stereo, 44.1 kHz
        samples = np.stack([samples, samples], axis=1)
        samples = np.stack([load_audio(encode(samples[:, c], rate, "WAV"), 44100) for c in range(2)], axis=1)
        rate = 44100
    response = post_audio(main.url, encode(samples, rate, format, subtype), f"speech.{format.lower()}",
                          "application/octet-stream")
    assert response.status_code == 200, response.text
    if exact:
        assert response.json()["transcript"] == offline[path].text
    else:
        assert cer([(reference, response.json()["transcript"])]) < 0.35, response.json()
        assert response.json()["duration"] == pytest.approx(len(samples) / rate, abs=0.1)


def test_server_decodes_uploads_exactly_as_load_audio(utterances):
    """The server's bounded in-memory decoder and audio.load_audio must never drift apart."""
    samples, rate = sf.read(utterances[2][0], dtype="float32")
    stereo = np.stack([samples, 0.5 * samples], axis=1)
    for data in (read_bytes(utterances[2][0]), encode(stereo, rate, "FLAC"), encode(stereo, 22050, "OGG", "VORBIS"),
                 encode(samples, 44100, "MP3", "MPEG_LAYER_III")):
        assert sniff_format(data) is not None
        served = decode_upload(Part("file", data), 16000, max_seconds=60)
        np.testing.assert_array_equal(served, load_audio(data, 16000))


def test_sixteen_concurrent_clients_are_batched_and_all_correct(main, utterances, offline):
    before = metric_values(httpx.get(main.url + "/metrics").text)
    jobs = [utterances[i % len(utterances)][0] for i in range(16)]
    barrier = threading.Barrier(len(jobs))

    def client(path):
        with httpx.Client(timeout=120) as session:
            data = read_bytes(path)
            barrier.wait()
            return path, session.post(main.url + "/transcribe", files={"file": ("a.wav", data, "audio/wav")})

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(client, jobs))
    for path, response in results:
        assert response.status_code == 200, response.text
        assert response.json()["transcript"] == offline[path].text
    after = metric_values(httpx.get(main.url + "/metrics").text)
    batches = after["deepspeech_batch_size_count"] - before["deepspeech_batch_size_count"]
    batched = after["deepspeech_batch_size_sum"] - before["deepspeech_batch_size_sum"]
    assert batched == 16 and batches < 16, f"16 requests ran in {batches} forward passes"
    assert after['deepspeech_http_requests_total{method="POST",path="/transcribe",status="200"}'] \
        - before['deepspeech_http_requests_total{method="POST",path="/transcribe",status="200"}'] == 16


# ---- bad input: always a 4xx JSON error naming the problem, never a 500 -------------------------------

def wav_header(rate, frames):
    """A 16-bit mono PCM WAV with any sample rate written in its header."""
    data = bytes(2 * frames)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, (2 * rate) % 2 ** 32, 2, 16)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def wav(utterances):
    return read_bytes(utterances[0][0])


def multipart(parts, boundary="xYzBoundary"):
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


MULTIPART = {"content-type": "multipart/form-data; boundary=xYzBoundary"}

BAD_REQUESTS = {
    # name: (request arguments from the fixture audio, status, code, words the detail must contain)
    "empty body": (lambda u: dict(content=b"", headers=MULTIPART), 400, "empty_body", "empty"),
    "multipart without boundary": (lambda u: dict(content=b"x", headers={"content-type": "multipart/form-data"}),
                                   400, "malformed_multipart", "boundary"),
    "multipart cut short": (lambda u: dict(content=multipart([("file", "a.wav", wav(u))])[:-30], headers=MULTIPART),
                            400, "malformed_multipart", "closing boundary"),
    "not multipart": (lambda u: dict(json={"file": "a.wav"}), 415, "unsupported_content_type", "multipart/form-data"),
    "raw audio body": (lambda u: dict(content=wav(u), headers={"content-type": "audio/wav"}), 415,
                       "unsupported_content_type", "audio/wav"),
    "wrong field name": (lambda u: dict(files={"audio": ("a.wav", wav(u), "audio/wav")}), 422, "missing_file",
                         "'audio'"),
    "two files": (lambda u: dict(content=multipart([("file", "a.wav", wav(u)), ("file", "b.wav", wav(u))]),
                                 headers=MULTIPART), 422, "duplicate_file", "one file"),
    "empty file": (lambda u: dict(files={"file": ("a.wav", b"", "audio/wav")}), 422, "empty_file", "empty"),
    "non-audio bytes": (lambda u: dict(files={"file": ("notes.txt", b"hello, not audio\n" * 50, "text/plain")}), 415,
                        "unsupported_audio_type", "notes.txt"),
    "image": (lambda u: dict(files={"file": ("x.png", b"\x89PNG\r\n\x1a\n" + bytes(200), "image/png")}), 415,
              "unsupported_audio_type", "image/png"),
    "unsupported audio format (AIFF)": (lambda u: dict(files={"file": ("a.aiff", encode(np.zeros(1600), 16000, "AIFF"),
                                                                       "audio/aiff")}),
                                        415, "unsupported_audio_type", "WAV, FLAC, OGG or MP3"),
    "truncated WAV": (lambda u: dict(files={"file": ("a.wav", wav(u)[: len(wav(u)) // 2], "audio/wav")}), 422,
                      "invalid_audio", "truncated"),
    "WAV header only": (lambda u: dict(files={"file": ("a.wav", wav(u)[:20], "audio/wav")}), 422, "invalid_audio",
                        "cannot decode"),
    "truncated FLAC": (lambda u: dict(files={"file": ("a.flac", encode(load_audio(wav(u)), 16000, "FLAC")[:3000],
                                                      "audio/flac")}),
                       422, "invalid_audio", "a.flac"),
    "zero-length WAV": (lambda u: dict(files={"file": ("a.wav", encode(np.zeros(0), 16000, "WAV"), "audio/wav")}),
                        422, "invalid_audio", "zero-length"),
    "NaN samples": (lambda u: dict(files={"file": ("a.wav", encode(np.full(1600, np.nan, np.float32), 16000, "WAV",
                                                                   "FLOAT"), "audio/wav")}),
                    422, "invalid_audio", "NaN"),
    "too short to resample (100 samples at 2 GHz)": (lambda u: dict(files={"file": ("a.wav", wav_header(2 ** 31 - 1, 100),
                                                                                       "audio/wav")}),
                                                     422, "invalid_audio", "too short"),
    "audio too long": (lambda u: dict(files={"file": ("long.wav", encode(np.zeros(int(8000 * (MAX_AUDIO_SECONDS + 1))),
                                                                         8000, "WAV"), "audio/wav")}),
                       413, "audio_too_long", "10 seconds"),
    "upload too large": (lambda u: dict(files={"file": ("big.wav", bytes(MAX_UPLOAD_BYTES + 1), "audio/wav")}), 413,
                         "upload_too_large", f"{MAX_UPLOAD_BYTES} bytes"),
    "beam without a language model": (lambda u: dict(files={"file": ("a.wav", wav(u), "audio/wav")},
                                                     params={"decoder": "beam"}), 422, "invalid_parameter", "greedy"),
    "word_timings not a boolean": (lambda u: dict(files={"file": ("a.wav", wav(u), "audio/wav")},
                                                  params={"word_timings": "maybe"}), 422, "invalid_parameter",
                                   "word_timings"),
    "form and query disagree": (lambda u: dict(files={"file": ("a.wav", wav(u), "audio/wav")},
                                               params={"word_timings": "true"}, data={"word_timings": "false"}),
                                422, "invalid_parameter", "differs"),
    "unknown query parameter (was ignored)": (lambda u: dict(files={"file": ("a.wav", wav(u), "audio/wav")},
                                                             params={"vad": "false"}),
                                              422, "invalid_parameter", "unknown query parameter 'vad'"),
    "misspelt form field (was ignored)": (lambda u: dict(files={"file": ("a.wav", wav(u), "audio/wav")},
                                                         data={"decoder_type": "beam"}),
                                          422, "invalid_parameter", "unknown form field 'decoder_type'"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_is_a_4xx_json_error_naming_the_problem(main, utterances, case):
    arguments, status, code, words = BAD_REQUESTS[case]
    response = httpx.post(main.url + "/transcribe", timeout=60, **arguments(utterances))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["code"] == code
    assert words in response.json()["detail"]


def test_wrong_method_and_unknown_path_are_json_errors(main):
    assert httpx.get(main.url + "/transcribe").json()["code"] == "method_not_allowed"
    assert httpx.get(main.url + "/nope").status_code == 404


def raw_request(port, head: bytes, chunks=(), pause=0.002) -> bytes:
    """Send `head` and then `chunks` until the server answers (or all are sent); return the response.

    Returns whatever arrived, so a server that waits for the whole body makes this time out."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(head)
        for chunk in chunks:
            if select.select([connection], [], [], 0)[0]:
                break  # the server has answered: stop sending
            try:
                connection.sendall(chunk)
            except OSError:
                break
            time.sleep(pause)
        response = b""
        try:
            while not response.endswith(b"}"):
                data = connection.recv(65536)
                if not data:
                    break
                response += data
        except ConnectionResetError:
            pass
    return response


def test_too_large_by_content_length_is_refused_before_the_body_is_read(main):
    head = (b"POST /transcribe HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=xYzBoundary\r\n"
            b"Content-Length: 1000000000\r\n\r\n")
    started = time.monotonic()
    response = raw_request(main.port, head)  # not one byte of the gigabyte is sent
    assert response.startswith(b"HTTP/1.1 413"), response
    assert b'"upload_too_large"' in response and b"1000000000 bytes" in response
    assert time.monotonic() - started < 10


def test_too_large_chunked_upload_is_cut_off_while_streaming(main):
    head = (b"POST /transcribe HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=xYzBoundary\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    part = b'--xYzBoundary\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    block = bytes(64 * 1024)
    chunks = [b"%x\r\n%s\r\n" % (len(part), part)] + [b"%x\r\n%s\r\n" % (len(block), block)] * 200  # 13 MB
    response = raw_request(main.port, head, chunks)
    assert response.startswith(b"HTTP/1.1 413"), response
    assert b'"upload_too_large"' in response


def test_bad_input_left_the_server_healthy_and_wrote_no_files(main, utterances, offline):
    path = utterances[3][0]
    response = post_audio(main.url, read_bytes(path))
    assert response.status_code == 200 and response.json()["transcript"] == offline[path].text
    assert os.listdir(main.tmpdir) == []
    assert "Traceback" not in main.log()


# ---- overload, timeouts, start-up ------------------------------------------------------------------

def long_clip(utterances) -> bytes:
    """All fixture utterances in one WAV (~12 s): a slow forward pass."""
    return encode(np.concatenate([load_audio(path) for path, _ in utterances]), 16000, "WAV")


def send_together(url, data, clients=16):
    barrier = threading.Barrier(clients)

    def client(_):
        with httpx.Client(timeout=120) as session:
            barrier.wait()
            return session.post(url + "/transcribe", files={"file": ("long.wav", data, "audio/wav")})

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(client, range(clients)))


def test_overload_is_answered_503_with_retry_after(servers, utterances):
    server = servers["overload"]
    responses = send_together(server.url, long_clip(utterances))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 1 and statuses.count(200) >= 1, statuses
    assert len({r.json()["transcript"] for r in responses if r.status_code == 200}) == 1
    for response in responses:
        if response.status_code == 503:
            assert response.json()["code"] == "overloaded" and int(response.headers["retry-after"]) >= 1
    assert httpx.get(server.url + "/ready").status_code == 200


def test_request_timeout_is_504(servers, utterances):
    server = servers["timeout"]
    responses = send_together(server.url, long_clip(utterances), clients=8)
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 504} and 504 in statuses, statuses
    for response in responses:
        if response.status_code == 504:
            assert response.json()["code"] == "timeout"
            assert "did not finish within request_timeout_seconds=0.3" in response.json()["detail"]
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}


@pytest.mark.parametrize("args,message", [
    (["model_path=nothing/here.pt"], "nothing/here.pt: checkpoint not found"),
    (["model_path=missing.pt"], "missing.pt: checkpoint not found"),
    (["model_path=x.pt", "max_batch_size=0"], "max_batch_size=0 must be at least 1"),
    (["model_path=x.pt", "decoder.type=viterbi"], "decoder.type='viterbi'"),
])
def test_start_up_failures_are_one_line(tmp_path, args, message):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "server.py"), f"port={free_port()}", *args],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# ---- health, readiness, metrics, the OpenAPI page --------------------------------------------------

def test_health_ready_and_metrics(main):
    assert httpx.get(main.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(main.url + "/ready").json()
    assert ready["model"] == "last" and ready["decoders"] == ["greedy"]
    assert ready["max_upload_bytes"] == MAX_UPLOAD_BYTES
    response = httpx.get(main.url + "/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = metric_values(response.text)
    assert values["deepspeech_model_loaded"] == 1
    assert values["deepspeech_transcriptions_total"] >= 20 and values["deepspeech_audio_seconds_total"] > 20
    assert values['deepspeech_errors_total{code="audio_too_long"}'] >= 1
    assert values['deepspeech_http_requests_total{method="POST",path="/transcribe",status="415"}'] >= 1
    buckets = [v for k, v in values.items() if k.startswith("deepspeech_transcribe_latency_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == values["deepspeech_transcribe_latency_seconds_count"]
    assert values['deepspeech_transcribe_latency_seconds_bucket{le="+Inf"}'] == buckets[-1]


def test_openapi_page_documents_the_api(main):
    schema = httpx.get(main.url + "/openapi.json").json()
    operation = schema["paths"]["/transcribe"]["post"]
    assert set(operation["responses"]) == {"200", "400", "413", "415", "422", "503", "504"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/TranscriptionResponse")
    assert "Retry-After" in operation["responses"]["503"]["headers"]
    body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"] and body["properties"]["file"]["format"] == "binary"
    assert body["properties"]["decoder"]["enum"] == ["greedy"]
    assert {p["name"] for p in operation["parameters"]} == {"word_timings", "decoder"}
    fields = schema["components"]["schemas"]["TranscriptionResponse"]["properties"]
    assert {"transcript", "words", "duration", "processing_time", "model", "decoder"} <= set(fields)
    assert "text/plain; version=0.0.4" in schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(schema["paths"]) == {"/transcribe", "/health", "/ready", "/metrics", "/v1/audio/transcriptions"}


def test_schemathesis_finds_no_server_errors_or_undocumented_responses(main, tmp_path):
    """Property-based requests generated from the OpenAPI page: no 5xx, and every status, header, content
    type and body is the one documented. (positive_data_acceptance is left out: a schema can say
    "binary", not "decodable audio", so schema-valid random bytes are rightly refused with 415.)"""
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", main.url + "/openapi.json", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance", "--max-examples", "60", "--seed", "6",
         "--workers", "2", "--request-timeout", "30", "--no-shrink"],
        cwd=tmp_path, capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "passed" in result.stdout


def test_graceful_shutdown_and_no_tracebacks_in_any_log(servers):
    """Last: stops the servers (SIGINT, as Ctrl-C; uvicorn treats SIGTERM the same) and reads their logs."""
    for name, server in servers.items():
        assert server.stop() == 0, server.log()
        log = server.log_path.read_text()
        assert "Traceback" not in log and "Exception in ASGI application" not in log, f"{name}:\n{log}"
        assert "Application shutdown complete" in log
        assert os.listdir(server.tmpdir) == []


# ---- the Docker image is set up exactly as CI sets up ---------------------------------------------

def test_dockerfile_installs_with_setup_sh_and_runs_the_server():
    with open(os.path.join(ROOT, "Dockerfile")) as handle:
        lines = [line.strip() for line in handle.read().replace("\\\n", " ").splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0].startswith("FROM python:3.11-slim-bookworm")
    runs = [line for line in instructions if line.startswith("RUN ")]
    assert any(re.search(r"(^|&&|;)\s*bash setup\.sh\s*($|&&|;)", run[4:]) for run in runs), runs
    assert not any("pip install" in run and "torch" not in run for run in runs), "install only through setup.sh"
    assert any(line.startswith("COPY . ") for line in instructions)
    entry = " ".join(line for line in instructions if line.startswith(("ENTRYPOINT", "CMD")))
    for word in (".venv/bin/python", "server.py", "host=0.0.0.0", "port=8000"):
        assert word in entry
    with open(os.path.join(ROOT, ".dockerignore")) as handle:
        ignored = {line.strip().rstrip("/") for line in handle if line.strip() and not line.startswith("#")}
    assert ".venv" in ignored  # a copied host venv would make setup.sh skip creating the image's own
    for needed in ("setup.sh", "pyproject.toml", "setup.py", "server.py", "deepspeech_pytorch", "data", "configs"):
        assert needed not in ignored


# ---- the batcher alone (in-process, no model) ----------------------------------------------------------

def run_batcher(items, run, groups=None, timeout=None, **settings):
    """Submit `items` at once to a DynamicBatcher around `run`; return the results (or exceptions)."""
    async def scenario():
        batcher = DynamicBatcher(run, **settings)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(item, (groups or {}).get(item, ""), timeout) for item in items),
                                        return_exceptions=True)
        finally:
            await batcher.stop()
    return asyncio.run(scenario())


def test_batcher_groups_up_to_max_batch_size_and_keeps_decoders_apart():
    calls = []

    def run(group, items):
        calls.append((group, list(items)))
        return [item * 10 for item in items]

    results = run_batcher([1, 2, 3, 4, 5, 6], run, groups={6: "beam"}, max_batch_size=4, max_wait=0.2)
    assert results == [10, 20, 30, 40, 50, 60]
    assert calls == [("", [1, 2, 3, 4]), ("", [5]), ("beam", [6])]


def test_batcher_does_not_block_the_event_loop_and_waits_at_most_max_wait():
    async def scenario():
        batcher = DynamicBatcher(lambda group, items: time.sleep(0.3) or list(items), max_batch_size=8, max_wait=0.05)
        await batcher.start()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        started = time.perf_counter()
        result = await batcher.submit("x")
        elapsed = time.perf_counter() - started
        ticking.cancel()
        await batcher.stop()
        return result, elapsed, ticks

    result, elapsed, ticks = asyncio.run(scenario())
    assert result == "x" and 0.35 <= elapsed < 2.0
    assert ticks >= 15, f"the event loop ran only {ticks} times in {elapsed:.2f} s: inference blocked it"


def test_batcher_refuses_when_full_and_skips_jobs_that_timed_out():
    seen = []

    def run(group, items):
        seen.extend(items)
        time.sleep(0.3)
        return list(items)

    async def scenario():
        batcher = DynamicBatcher(run, max_batch_size=1, max_wait=0.0, max_queue=2)
        await batcher.start()
        first = asyncio.create_task(batcher.submit("a", timeout=5))
        await asyncio.sleep(0.05)  # "a" is running; "b" and "c" fill the queue, "d" finds it full
        results = await asyncio.gather(*(batcher.submit(item, timeout=0.1) for item in "bcd"), return_exceptions=True)
        results.append(await first)
        await batcher.stop()
        return results

    late_b, late_c, full_d, a = asyncio.run(scenario())
    assert a == "a" and isinstance(full_d, QueueFull)
    assert isinstance(late_b, asyncio.TimeoutError) and isinstance(late_c, asyncio.TimeoutError)
    assert seen == ["a"]  # the jobs abandoned before their turn were never run


def test_one_bad_input_does_not_fail_its_batch_neighbours():
    def run(group, items):
        if "bad" in items:
            raise ValueError("cannot transcribe bad")
        return [item.upper() for item in items]

    results = run_batcher(["ok", "bad", "fine"], run, max_batch_size=8, max_wait=0.1)
    assert results[0] == "OK" and results[2] == "FINE"
    assert isinstance(results[1], ValueError)
