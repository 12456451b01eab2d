"""The page at / in a real headless Chromium (Debian's `chromium`), driven over the DevTools protocol: its fake
microphone plays a speech WAV, the page streams it over the websocket, and the transcript that appears on the page
is checked; the file upload too. Skipped only when chromium is not installed (apt-get install chromium)."""

import itertools
import json
import os
import shutil
import subprocess
import time
from contextlib import ExitStack

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from deepspeech_pytorch.audio import load_audio, write_audio
from deepspeech_pytorch.inference import Transcriber, default_model_path, load_model
from test_server import Server, metric_values

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "deepspeech_pytorch", "pretrained", "samples")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


def reference(name: str) -> str:
    with open(os.path.join(SAMPLES, "samples.jsonl")) as manifest:
        return next(line["text"] for line in map(json.loads, manifest) if line["audio_filepath"] == name)


class Browser:
    """Headless Chromium with a fake microphone that plays `wav` once, driven over the DevTools protocol."""

    def __init__(self, folder, wav):
        self.folder = folder
        self.log_path = folder / "chromium.log"
        self._stack = ExitStack()
        log = self._stack.enter_context(open(self.log_path, "w"))
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--remote-debugging-port=0", f"--user-data-dir={folder / 'profile'}",
             "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={wav}%noloop", "--autoplay-policy=no-user-gesture-required",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=log)
        try:
            port_file = folder / "profile" / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not (port_file.exists() and port_file.read_text().strip()):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"chromium did not start:\n{self.log_path.read_text()[-3000:]}")
                time.sleep(0.1)
            port = port_file.read_text().split()[0]
            page = next(t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page")
            self.devtools = self._stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None))
        except BaseException:
            self.close()
            raise
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        number = next(self.ids)
        self.devtools.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:  # events and other answers go by
            message = json.loads(self.devtools.recv(timeout=60))
            if message.get("id") == number:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, every: float = 0.1):
        """Poll `expression` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"still false after {timeout} s: {expression}; page state "
                                     f"{self.js('document.body.dataset.state')}, status {self.js(STATUS)!r}")
            time.sleep(every)

    def open(self, url: str) -> None:
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && document.getElementById('model').textContent !== '…'")

    def close(self) -> None:
        self._stack.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


STATUS = "document.getElementById('status').textContent"
FINALS = "[...document.querySelectorAll('#finals .final .text')].map(e => e.textContent)"
PARTIAL = "document.getElementById('partial').textContent"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = Server(tmp_path_factory.mktemp("page_server"), default_model_path(), "streaming.max_streams=1")
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """sample4.wav with 0.5 s of silence before and 2 s after (the endpoint needs trailing silence)."""
    samples = load_audio(os.path.join(SAMPLES, "sample4.wav"))
    path = tmp_path_factory.mktemp("fake_microphone") / "speech.wav"
    write_audio(str(path), np.concatenate([np.zeros(8000, np.float32), samples, np.zeros(32000, np.float32)]))
    return str(path)


@pytest.fixture
def browser(tmp_path, speech):
    opened = Browser(tmp_path, speech)
    try:
        yield opened
    finally:
        opened.close()


@needs_chromium
def wait_for_a_free_stream_place(server, timeout=30.0):
    deadline = time.monotonic() + timeout
    while metric_values(httpx.get(server.url + "/metrics").text)["deepspeech_streams_active"] > 0:
        assert time.monotonic() < deadline, "the server's stream place was not freed"
        time.sleep(0.05)


def test_the_page_transcribes_the_microphone_live_over_the_websocket(server, browser):
    wait_for_a_free_stream_place(server)  # the server holds one stream
    browser.open(server.url + "/")
    assert browser.js("[...document.getElementById('decoder').options].map(o => o.value)") == ["greedy", "beam"]
    browser.js("document.getElementById('decoder').value = 'beam'")  # the lexicon spells what the browser's
    browser.js("document.getElementById('record').click()")           # resampling leaves slightly changed
    browser.wait_for("document.body.dataset.state === 'recording'", timeout=30)
    assert browser.js(STATUS) == "listening (16000 Hz)"
    partials = set()
    deadline = time.monotonic() + 60
    while not browser.js(FINALS):  # the final comes once the speech is followed by endpoint silence
        assert time.monotonic() < deadline, f"no final result; partials {partials}"
        partials.add(browser.js(PARTIAL))
        time.sleep(0.05)
    browser.js("document.getElementById('stop').click()")
    browser.wait_for("document.body.dataset.state === 'done'", timeout=30)
    finals = browser.js(FINALS)
    assert " ".join(finals) == reference("sample4.wav")
    assert len([p for p in partials if p]) >= 3, partials  # words appeared while the speech went on
    assert browser.js(STATUS) == "done"


@needs_chromium
def test_the_page_uploads_a_file_to_post_transcribe(server, browser):
    path = os.path.join(SAMPLES, "sample2.wav")
    expected = Transcriber(load_model()).transcribe(path)  # the server's default decoder: greedy
    browser.open(server.url + "/")
    document = browser.call("DOM.getDocument")["root"]["nodeId"]
    field = browser.call("DOM.querySelector", nodeId=document, selector="#file")["nodeId"]
    browser.call("DOM.setFileInputFiles", files=[path], nodeId=field)
    browser.js("document.getElementById('send').click()")
    assert browser.wait_for("document.body.dataset.upload !== 'busy' && document.body.dataset.upload") == "done", \
        browser.js("document.getElementById('upload-status').textContent")
    assert browser.js("document.getElementById('upload-result').textContent") == expected.text
    shown = browser.js("document.getElementById('upload-words').textContent").split(", ")
    assert [item.split(" ")[0] for item in shown] == [w.word for w in expected.words]
    assert "s of audio in" in browser.js("document.getElementById('upload-status').textContent")


@needs_chromium
def test_the_page_says_why_the_server_refused_the_stream(server, browser):
    """With the server's one stream place taken, Start ends in the server's reason, and the page can start again."""
    browser.open(server.url + "/")
    with connect(f"ws://127.0.0.1:{server.port}/ws/transcribe") as held:
        held.send(json.dumps({"config": {"sample_rate": 16000}}))
        held.send(bytes(3200))
        assert "partial" in json.loads(held.recv(timeout=60))  # it holds the place
        browser.js("document.getElementById('record').click()")
        browser.wait_for("document.body.dataset.state === 'error'", timeout=30)
        assert browser.js(STATUS) == ("stream closed (1013): the server holds its maximum of 1 streams "
                                      "(streaming.max_streams); try again later")
        assert browser.js("document.getElementById('record').disabled") is False
        assert browser.js("document.getElementById('stop').disabled") is True


def test_the_page_ships_as_package_data():
    """The server reads static/index.html at start-up, so a wheel without it would not start."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        patterns = tomllib.load(handle)["tool"]["setuptools"]["package-data"]["deepspeech_pytorch"]
    assert any(fnmatch.fnmatch("serving/static/index.html", pattern) for pattern in patterns), patterns
