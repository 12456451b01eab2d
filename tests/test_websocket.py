"""The websocket stream (GET /ws/transcribe) as its clients see it: server.py as a process with the bundled
model, real speech streamed over real websockets on 127.0.0.1, every limit and malformed message, clients
that vanish mid-stream, and the command-line client stream.py."""

import json
import os
import socket
from contextlib import ExitStack, contextmanager
import struct
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import soxr
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from deepspeech_pytorch.audio import load_audio
from deepspeech_pytorch.inference import Transcriber, default_model_path, load_model
from deepspeech_pytorch.stream_client import to_pcm16
from test_server import Server, metric_values

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "deepspeech_pytorch", "pretrained", "samples")
RATE = 16000
MAX_STREAMS = 2
MAX_STREAM_SECONDS = 12.0
IDLE_SECONDS = 3.0
MAX_MESSAGE_BYTES = 64000


def sample(number: int) -> str:
    return os.path.join(SAMPLES, f"sample{number}.wav")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = Server(tmp_path_factory.mktemp("ws_server"), default_model_path(),
                     f"streaming.max_streams={MAX_STREAMS}", f"streaming.max_stream_seconds={MAX_STREAM_SECONDS}",
                     f"streaming.idle_timeout_seconds={IDLE_SECONDS}", f"streaming.max_message_bytes={MAX_MESSAGE_BYTES}")
    try:
        started.wait_ready()
        started.ws_url = f"ws://127.0.0.1:{started.port}/ws/transcribe"
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def transcribers():
    """The bundled model's offline Transcribers (VAD on, as transcribe.py and POST /transcribe): decoder -> one."""
    loaded = load_model()
    return {decoder: Transcriber(loaded, decoder=decoder) for decoder in ("greedy", "beam")}


@pytest.fixture(scope="module")
def offline(transcribers):
    """The offline transcripts of the bundled samples: (decoder, path) -> Transcription."""
    results = {}
    for decoder, transcriber in transcribers.items():
        for number in range(1, 5):
            results[decoder, sample(number)] = transcriber.transcribe(sample(number))
    return results


# ---- a websocket client -------------------------------------------------------------------------------

@contextmanager
def open_stream(server, config=None):
    with connect(server.ws_url, open_timeout=20, max_queue=None, max_size=None) as websocket:
        if config is not None:
            websocket.send(json.dumps({"config": config}))
        yield websocket


def until_closed(websocket, timeout=120.0):
    """Every message the server sends until it closes: (messages, close code, close reason)."""
    messages, deadline = [], time.monotonic() + timeout
    try:
        while True:
            messages.append(json.loads(websocket.recv(timeout=max(0.1, deadline - time.monotonic()))))
    except ConnectionClosed:
        pass
    return messages, websocket.close_code, websocket.close_reason


def stream(server, pcm: bytes, config=None, chunk_bytes=2 * 1999, end=True):
    """Send the config, `pcm` in messages of `chunk_bytes` and the end message as fast as the socket takes them."""
    with open_stream(server, {"sample_rate": RATE} if config is None else config) as websocket:
        for first in range(0, len(pcm), chunk_bytes):
            websocket.send(pcm[first: first + chunk_bytes])
        if end:
            websocket.send(json.dumps({"eof": 1}))
        return until_closed(websocket)


def refused(messages, code, reason, expected_code, *words):
    """One error message naming the problem, then the close code."""
    assert code == expected_code, (code, reason, messages)
    errors = [m for m in messages if "error" in m]
    assert len(errors) == 1 and messages[-1] is errors[0], messages
    for word in words:
        assert word in errors[0]["error"], errors[0]
    assert reason and errors[0]["error"].startswith(reason.rstrip(".")), (reason, errors[0])


def finals_of(messages):
    return [m for m in messages if "text" in m]


def pcm_of(path, rate=RATE) -> bytes:
    return to_pcm16(load_audio(path, rate))


def active_streams(server) -> float:
    return metric_values(httpx.get(server.url + "/metrics").text)["deepspeech_streams_active"]


def wait_no_active_streams(server, timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    while active_streams(server) != 0:
        assert time.monotonic() < deadline, f"streams still active after {timeout} s:\n{server.log()[-3000:]}"
        time.sleep(0.05)


# ---- transcripts ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_streamed_transcript_equals_the_offline_transcript(server, offline, decoder):
    for number in range(1, 5):
        path = sample(number)
        messages, code, _ = stream(server, pcm_of(path), {"sample_rate": RATE, "decoder": decoder, "words": True})
        assert code == 1000, messages
        expected = offline[decoder, path]
        finals = finals_of(messages)
        assert len(finals) == 1 and messages[-1] is finals[0], messages
        assert finals[0]["text"] == expected.text
        assert [w["word"] for w in finals[0]["result"]] == [w.word for w in expected.words]
        for word, offline_word in zip(finals[0]["result"], expected.words):
            assert set(word) == {"conf", "end", "start", "word"}
            assert word["start"] == pytest.approx(offline_word.start, abs=0.02)
            assert word["end"] == pytest.approx(offline_word.end, abs=0.02)
        assert all(set(m) == {"partial"} for m in messages[:-1]), messages


def test_partials_grow_while_audio_arrives_in_real_time(server, offline):
    """Sent at 4x real time in 0.1 s messages: partials that are more and more of the utterance, then the final."""
    path = sample(4)
    pcm = pcm_of(path)
    step = 2 * RATE // 10
    with open_stream(server, {"sample_rate": RATE}) as websocket:
        for first in range(0, len(pcm), step):
            websocket.send(pcm[first: first + step])
            time.sleep(0.025)
        websocket.send(json.dumps({"eof": 1}))
        messages, code, _ = until_closed(websocket)
    assert code == 1000
    partials = [m["partial"] for m in messages if "partial" in m]
    words = [len(p.split()) for p in partials]
    assert max(words) >= 8 and len(set(partials)) >= 4, partials  # it was heard word by word, not all at the end
    assert finals_of(messages)[-1]["text"] == offline["greedy", path].text


def test_two_utterances_give_two_finals_in_the_stream_timeline(server, offline):
    first, second = load_audio(sample(2)), load_audio(sample(4))
    gap = np.zeros(int(1.5 * RATE), np.float32)
    messages, code, _ = stream(server, to_pcm16(np.concatenate([first, gap, second])))
    assert code == 1000
    finals = finals_of(messages)
    assert [f["text"] for f in finals] == [offline["greedy", sample(2)].text, offline["greedy", sample(4)].text]
    offset = (len(first) + len(gap)) / RATE
    assert finals[1]["result"][0]["start"] == pytest.approx(offline["greedy", sample(4)].words[0].start + offset,
                                                            abs=0.05)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_other_sample_rates_are_resampled_by_the_server(server, transcribers, offline, rate):
    """Audio at `rate`, streamed in chunks, gives what the same audio resampled in one go gives offline (and at
    44.1/48 kHz what the 16 kHz original gives: the speech band is all there)."""
    path = sample(2)
    pcm = to_pcm16(soxr.resample(load_audio(path), RATE, rate, quality="VHQ"))
    messages, code, _ = stream(server, pcm, {"sample_rate": rate}, chunk_bytes=2 * (rate // 7))
    assert code == 1000
    (final,) = finals_of(messages)
    received = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    expected = transcribers["greedy"].transcribe(soxr.resample(received, rate, RATE, quality="HQ"))
    assert final["text"] == expected.text
    if rate > RATE:
        assert final["text"] == offline["greedy", path].text
    assert final["result"][-1]["end"] == pytest.approx(expected.words[-1].end, abs=0.05)


def test_words_false_leaves_out_the_word_list_and_silence_gives_one_empty_final(server):
    messages, code, _ = stream(server, pcm_of(sample(2)), {"sample_rate": RATE, "words": False})
    assert code == 1000 and "result" not in finals_of(messages)[0] and finals_of(messages)[0]["text"]
    silence = to_pcm16(1e-4 * np.random.default_rng(0).standard_normal(2 * RATE))
    messages, code, _ = stream(server, silence)
    assert code == 1000 and messages[-1] == {"text": "", "result": []}, messages
    assert all(m == {"partial": ""} for m in messages[:-1])


def test_vosk_style_client_with_float_rate_and_spaced_eof(server, offline):
    """Vosk's example client: config with a float rate, 8000-byte chunks, one answer read per chunk sent,
    then '{"eof" : 1}'."""
    pcm = pcm_of(sample(2))
    with open_stream(server) as websocket:
        websocket.send('{ "config" : { "sample_rate" : 16000.0 } }')
        answers = []
        for first in range(0, len(pcm), 8000):
            websocket.send(pcm[first: first + 8000])
            answers.append(json.loads(websocket.recv(timeout=60)))
        websocket.send('{"eof" : 1}')
        rest, code, _ = until_closed(websocket)
    assert code == 1000
    assert all("partial" in a or "text" in a for a in answers)
    texts = [m["text"] for m in answers + rest if "text" in m]
    assert " ".join(t for t in texts if t) == offline["greedy", sample(2)].text


def test_vosk_client_without_a_config_streams_at_the_default_16_khz(server, offline):
    """Vosk's server takes a stream whose first message is audio (its default rate); ours refused it with 1003.
    The first message is audio, then more audio, then the end: the offline transcript, word times and all."""
    pcm = pcm_of(sample(2))
    with open_stream(server) as websocket:
        for first in range(0, len(pcm), 8000):
            websocket.send(pcm[first: first + 8000])
        websocket.send('{"eof" : 1}')
        messages, code, _ = until_closed(websocket)
    assert code == 1000, messages
    (final,) = finals_of(messages)
    expected = offline["greedy", sample(2)]
    assert final["text"] == expected.text and [w["word"] for w in final["result"]] == [w.word for w in expected.words]
    assert final["result"][-1]["end"] == pytest.approx(expected.words[-1].end, abs=0.02)


@pytest.mark.parametrize("first,second,code,words", [
    (b"\x00" * 3201, None, 1007, "3201 bytes"),
    (b"\x00" * 3200, '{"config": {"sample_rate": 8000}}', 1003, "only be sent once"),
])
def test_a_stream_that_begins_with_audio_still_checks_its_messages(server, first, second, code, words):
    with open_stream(server) as websocket:
        websocket.send(first)
        if second is not None:
            websocket.send(second)
        refused(*until_closed(websocket), code, words)


def test_streaming_model_path_gives_the_streams_their_own_model(tmp_path, offline):
    """The server's model is an untrained tiny one; streaming.model_path=<the bundled model> serves the streams."""
    from test_checkpoint import tiny_checkpoint

    tiny_checkpoint(tmp_path / "tiny.pt")
    started = Server(tmp_path / "server", str(tmp_path / "tiny.pt"), f"streaming.model_path={default_model_path()}")
    try:
        started.wait_ready()
        started.ws_url = f"ws://127.0.0.1:{started.port}/ws/transcribe"
        messages, code, _ = stream(started, pcm_of(sample(2)))
        assert code == 1000 and finals_of(messages)[0]["text"] == offline["greedy", sample(2)].text
        upload = httpx.post(started.url + "/transcribe", files={"file": ("a.wav", open(sample(2), "rb").read())},
                            timeout=60)
        assert upload.status_code == 200 and upload.json()["transcript"] != offline["greedy", sample(2)].text
        ready = httpx.get(started.url + "/ready", timeout=10).json()
        assert ready["model"] == "tiny" and ready["streaming_model"] == "ds2-cpu-synthetic-en"
        assert ready["streaming_mode"] == "utterance"  # a bidirectional model
    finally:
        started.stop()
    missing = subprocess.run([sys.executable, os.path.join(ROOT, "server.py"), f"model_path={tmp_path / 'tiny.pt'}",
                              f"streaming.model_path={tmp_path / 'nowhere.pt'}"], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path)
    assert missing.returncode == 1 and missing.stderr.strip().count("\n") == 0, missing.stderr
    assert missing.stderr.startswith("error: ") and "nowhere.pt" in missing.stderr and "streaming.model_path" in \
        missing.stderr


# ---- limits and malformed messages ---------------------------------------------------------------------

def test_streams_past_max_streams_are_refused_with_1013_until_one_ends(server):
    wait_no_active_streams(server)
    with ExitStack() as stack:
        held = [stack.enter_context(open_stream(server, {"sample_rate": RATE})) for _ in range(MAX_STREAMS)]
        for websocket in held:  # each has a place once it answers
            websocket.send(bytes(3200))
            assert "partial" in json.loads(websocket.recv(timeout=60))
        with open_stream(server) as extra:
            messages, code, reason = until_closed(extra)
        refused(messages, code, reason, 1013, f"maximum of {MAX_STREAMS} streams", "streaming.max_streams")
        held[0].send(json.dumps({"eof": 1}))
        assert until_closed(held[0])[1] == 1000
        wait_no_active_streams_but(server, MAX_STREAMS - 1)
        messages, code, _ = stream(server, pcm_of(sample(2)))
        assert code == 1000 and finals_of(messages)[0]["text"]
    wait_no_active_streams(server)


def wait_no_active_streams_but(server, count, timeout=30.0):
    deadline = time.monotonic() + timeout
    while active_streams(server) > count:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_message_over_max_message_bytes_is_refused_with_1009(server):
    messages, code, reason = stream(server, bytes(MAX_MESSAGE_BYTES + 2), chunk_bytes=MAX_MESSAGE_BYTES + 2)
    refused(messages, code, reason, 1009, f"{MAX_MESSAGE_BYTES + 2} bytes", "streaming.max_message_bytes")
    with open_stream(server) as websocket:  # a text config as large
        websocket.send(json.dumps({"config": {"sample_rate": RATE, "decoder": "x" * MAX_MESSAGE_BYTES}}))
        refused(*until_closed(websocket), 1009, "streaming.max_message_bytes")
    messages, code, _ = stream(server, pcm_of(sample(2)), chunk_bytes=MAX_MESSAGE_BYTES)  # exactly at the limit
    assert code == 1000 and finals_of(messages)[0]["text"]


def test_an_idle_stream_is_closed_with_1008(server):
    for config in (None, {"sample_rate": RATE}):  # silent before the config, and after it
        with open_stream(server, config) as websocket:
            if config is not None:
                websocket.send(bytes(3200))
            refused(*until_closed(websocket, timeout=IDLE_SECONDS + 30), 1008, f"no message for {IDLE_SECONDS:g} s",
                    "streaming.idle_timeout_seconds")
    wait_no_active_streams(server)


@pytest.fixture(scope="module")
def impatient_server(tmp_path_factory):
    """A server that closes a stream after 0.5 s without a message from its client."""
    started = Server(tmp_path_factory.mktemp("ws_impatient"), default_model_path(),
                     "streaming.idle_timeout_seconds=0.5")
    try:
        started.wait_ready()
        started.ws_url = f"ws://127.0.0.1:{started.port}/ws/transcribe"
        yield started
    finally:
        started.stop()


def test_a_client_waiting_for_its_answer_is_not_idle(impatient_server, offline):
    """4 s of audio per message, each answer awaited before the next is sent: the model takes longer than the
    idle timeout over each, and that time is the server's, not the client's."""
    pcm = pcm_of(sample(1))
    with open_stream(impatient_server, {"sample_rate": RATE}) as websocket:
        answers = []
        for first in range(0, len(pcm), 4 * 2 * RATE):
            websocket.send(pcm[first: first + 4 * 2 * RATE])
            answers.append(json.loads(websocket.recv(timeout=120)))
        websocket.send(json.dumps({"eof": 1}))
        rest, code, reason = until_closed(websocket)
    assert code == 1000, (reason, answers, rest)
    assert " ".join(m["text"] for m in answers + rest if m.get("text")) == offline["greedy", sample(1)].text
    with open_stream(impatient_server, {"sample_rate": RATE}) as websocket:  # while the server owes nothing: idle
        refused(*until_closed(websocket, timeout=30), 1008, "no message for 0.5 s")


def test_a_stream_past_max_stream_seconds_gets_its_finals_then_1008(server, transcribers):
    """Three copies of a 3.2 s sample 1.5 s apart (12.6 s): the first two utterances are transcribed as offline,
    the third is cut at 12 s and what was heard of it transcribed; then the error."""
    speech, gap = load_audio(sample(2)), np.zeros(int(1.5 * RATE), np.float32)
    pcm = to_pcm16(np.concatenate([speech, gap, speech, gap, speech]))
    messages, code, reason = stream(server, pcm)
    refused(messages, code, reason, 1008, f"longer than {MAX_STREAM_SECONDS:g} s", "streaming.max_stream_seconds")
    finals = finals_of(messages)
    assert len(finals) == 3 and messages.index(finals[2]) == len(messages) - 2  # the finals come before the error
    heard = transcribers["greedy"].transcribe(np.concatenate([speech, gap, speech, gap, speech])[:int(12 * RATE)])
    assert " ".join(f["text"] for f in finals) == heard.text
    assert 0 < len(finals[2]["result"]) < len(finals[1]["result"])
    assert finals[2]["result"][-1]["end"] <= MAX_STREAM_SECONDS


CONFIG_ERRORS = [
    ("sample_rate=16000", 1007, "not JSON"),
    ("[16000]", 1007, "JSON object"),
    ('{"sample_rate": 16000}', 1008, '{"config": {...}}'),
    ('{"config": 16000}', 1008, '{"config": {...}}'),
    ('{"config": {"sample_rate": 4000}}', 1008, "sample_rate=4000"),
    ('{"config": {"sample_rate": 96000}}', 1008, "sample_rate=96000"),
    ('{"config": {"sample_rate": "16000"}}', 1008, 'sample_rate="16000"'),
    ('{"config": {"sample_rate": 16000.5}}', 1008, "sample_rate=16000.5"),
    ('{"config": {"sample_rate": true}}', 1008, "sample_rate=true"),
    ('{"config": {"decoder": "viterbi"}}', 1008, 'decoder="viterbi"'),
    ('{"config": {"words": "yes"}}', 1008, 'words="yes"'),
    ('{"config": {"samplerate": 16000}}', 1008, "unknown config key 'samplerate'"),
]


@pytest.mark.parametrize("first,code,words", CONFIG_ERRORS, ids=[str(c[0])[:30] for c in CONFIG_ERRORS])
def test_a_bad_config_is_one_error_and_a_close_code(server, first, code, words):
    with open_stream(server) as websocket:
        websocket.send(first)
        refused(*until_closed(websocket), code, words)


MID_STREAM_ERRORS = [
    (b"\x00" * 3201, 1007, "3201 bytes"),
    ("hello", 1007, "not JSON"),
    ('{"eof": 0}', 1003, '{"eof": 1}'),
    ('{"text": "hi"}', 1003, '{"eof": 1}'),
    ('{"config": {"sample_rate": 16000}}', 1003, "only be sent once"),
]


@pytest.mark.parametrize("message,code,words", MID_STREAM_ERRORS, ids=[str(c[0])[:30] for c in MID_STREAM_ERRORS])
def test_a_bad_message_mid_stream_is_one_error_and_a_close_code(server, message, code, words):
    with open_stream(server, {"sample_rate": RATE}) as websocket:
        websocket.send(pcm_of(sample(2))[:16000])
        websocket.send(message)
        refused(*until_closed(websocket), code, words)


# ---- clients that go away --------------------------------------------------------------------------------

def abort(websocket) -> None:
    """Drop the TCP connection without a websocket close (a crashed client, a lost network): RST."""
    raw = websocket.socket
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()


@pytest.mark.parametrize("how", ["abort", "close"])
def test_a_client_that_leaves_mid_stream_leaves_nothing_behind(server, how):
    wait_no_active_streams(server)
    before = metric_values(httpx.get(server.url + "/metrics").text)
    pcm = pcm_of(sample(1)) * 2  # 11.5 s sent at once: the model is busy with it when the client goes
    with open_stream(server, {"sample_rate": RATE}) as websocket:
        for first in range(0, len(pcm), 32000):
            websocket.send(pcm[first: first + 32000])
        assert "partial" in json.loads(websocket.recv(timeout=60))
        assert active_streams(server) == 1
        if how == "abort":
            abort(websocket)
        else:
            websocket.close()
    wait_no_active_streams(server)  # the place is freed only once the stream's model work has finished
    after = metric_values(httpx.get(server.url + "/metrics").text)
    ended = {key: after[key] - before.get(key, 0) for key in after if key.startswith("deepspeech_streams_total")}
    assert sum(ended.values()) == 1 and list(k for k, v in ended.items() if v)[0].startswith(
        'deepspeech_streams_total{code="client_'), ended
    messages, code, _ = stream(server, pcm_of(sample(2)))  # and the server goes on
    assert code == 1000 and finals_of(messages)[0]["text"]
    assert "Traceback" not in server.log()


def test_metrics_count_streams_and_their_audio(server):
    wait_no_active_streams(server)
    before = metric_values(httpx.get(server.url + "/metrics").text)
    pcm = pcm_of(sample(3))
    assert stream(server, pcm)[1] == 1000
    after = metric_values(httpx.get(server.url + "/metrics").text)
    seconds = after["deepspeech_stream_audio_seconds_total"] - before["deepspeech_stream_audio_seconds_total"]
    assert seconds == pytest.approx(len(pcm) / 2 / RATE, abs=1e-3)
    key = 'deepspeech_streams_total{code="1000"}'
    assert after[key] - before.get(key, 0) == 1
    assert after["deepspeech_stream_finals_total"] - before["deepspeech_stream_finals_total"] == 1


def test_the_page_and_the_api_page_describe_the_stream(server):
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "ws/transcribe" in page.text and "getUserMedia" in page.text
    description = httpx.get(server.url + "/openapi.json").json()["info"]["description"]
    assert "/ws/transcribe" in description and '{"eof": 1}' in description


# ---- the command-line client ----------------------------------------------------------------------------

def run_client(server, *arguments, timeout=120):
    return subprocess.run([sys.executable, os.path.join(ROOT, "stream.py"), *arguments, "--url", server.ws_url],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_stream_py_prints_one_json_line_per_message_and_the_offline_finals(server, offline, tmp_path):
    first, second = load_audio(sample(3)), load_audio(sample(2))
    path = tmp_path / "two.wav"
    from deepspeech_pytorch.audio import write_audio

    write_audio(str(path), np.concatenate([first, np.zeros(RATE, np.float32), second]))
    done = run_client(server, str(path), "--speed", "0", "--decoder", "beam")
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    assert [m["text"] for m in finals_of(messages)] == [offline["beam", sample(3)].text, offline["beam", sample(2)].text]
    assert all(set(m) in ({"partial"}, {"text", "result"}) for m in messages)


def test_stream_py_in_real_time_shows_partials_before_the_final(server, offline):
    done = run_client(server, sample(2), "--speed", "2", "--chunk-ms", "200", "--no-words")
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    assert messages[-1] == {"text": offline["greedy", sample(2)].text}
    assert any(m.get("partial") for m in messages[:-1]), messages


def test_ctrl_c_in_stream_py_ends_the_audio_and_still_prints_the_last_final(server):
    """The first SIGINT sends the end message: the utterance under way gets its final, the stream closes with 1000
    (exit 0), and the server counts no error close."""
    import signal

    def errors():
        return {k: v for k, v in metric_values(httpx.get(server.url + "/metrics").text).items()
                if k.startswith("deepspeech_streams_total") and 'code="1000"' not in k}

    before = errors()
    client = subprocess.Popen([sys.executable, os.path.join(ROOT, "stream.py"), sample(1), "--speed", "1",
                               "--url", server.ws_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT)
    deadline = time.monotonic() + 60
    partial = ""
    while not partial and time.monotonic() < deadline:  # wait for the first partial: speech is under way
        line = client.stdout.readline()
        if line:
            partial = json.loads(line).get("partial", "")
    os.kill(client.pid, signal.SIGINT)
    out, err = client.communicate(timeout=60)
    assert client.returncode == 0, err
    messages = [json.loads(line) for line in out.splitlines()]
    finals = finals_of(messages)
    assert len(finals) == 1 and finals[0]["text"].startswith(partial.split()[0]), (partial, messages)
    wait_no_active_streams(server)
    assert errors() == before


def test_stream_py_reports_a_refused_stream_in_one_line(server, tmp_path):
    path = tmp_path / "long.wav"
    from deepspeech_pytorch.audio import write_audio

    write_audio(str(path), np.tile(load_audio(sample(1)), 3))
    done = run_client(server, str(path), "--speed", "0")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: the server closed the stream (1008): the stream is longer than {MAX_STREAM_SECONDS:g} s "
        "(streaming.max_stream_seconds); its audio up to there is transcribed"]
    assert finals_of([json.loads(line) for line in done.stdout.splitlines()])  # what came before the limit
    nowhere = subprocess.run([sys.executable, os.path.join(ROOT, "stream.py"), sample(2), "--url",
                              "ws://127.0.0.1:9/ws/transcribe"], capture_output=True, text=True, timeout=60)
    assert nowhere.returncode == 1 and nowhere.stderr.startswith("error: cannot open a websocket to ws://127.0.0.1:9")


@pytest.mark.parametrize("path", ["/ws", "/transcribe", "/ws/transcribe/", "/"])
def test_stream_py_names_the_refused_url_and_the_servers_path(server, path):
    """A wrong path showed only "server rejected WebSocket connection: HTTP 403"."""
    from deepspeech_pytorch.serving.streaming import PATH
    from deepspeech_pytorch.stream_client import STREAM_PATH

    assert STREAM_PATH == PATH
    url = f"ws://127.0.0.1:{server.port}{path}"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "stream.py"), sample(2), "--url", url],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"error: the server refused the websocket at {url} (HTTP 403): its path is {path!r}, the server's stream is "
        f"at /ws/transcribe (try --url {server.ws_url})"]


def test_stream_py_streams_raw_pcm_from_standard_input(server, offline):
    """`arecord ... | stream.py -`: raw 16-bit PCM on stdin, here 44.1 kHz, as a recorder would give it."""
    pcm = to_pcm16(soxr.resample(load_audio(sample(4)), RATE, 44100, quality="VHQ"))
    done = subprocess.run([sys.executable, os.path.join(ROOT, "stream.py"), "-", "--rate", "44100", "--url",
                           server.ws_url], input=pcm, capture_output=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert " ".join(m["text"] for m in finals_of(messages) if m["text"]) == offline["greedy", sample(4)].text


@pytest.mark.parametrize("value, words", [("folder", ["is a folder"]), ("notes.txt", ["notes.txt"]),
                                          ("nosuchmodel", ["no such file", "bundled model"])])
def test_an_unusable_streaming_model_path_stops_the_server_in_one_line(tmp_path, value, words):
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("not a model\n")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "server.py"), f"streaming.model_path={value}"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith(f"error: streaming.model_path={value}") and all(w in result.stderr for w in words)
