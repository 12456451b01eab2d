"""Shared fixtures: real speech synthesized with espeak-ng, written as 16 kHz WAV with a manifest."""

import importlib.util
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from deepspeech_pytorch.audio import load_audio, write_audio

SENTENCES = [
    "the cat sat on the mat",
    "open the door please",
    "a quick brown fox",
    "set blue at four now",
    "she sells sea shells",
    "green light means go",
]


def speak(text: str, path: str, voice: str = "en-us") -> None:
    """Synthesize `text` to a 16 kHz mono WAV at `path`."""
    raw = path + ".raw.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", raw, text], check=True)
    write_audio(path, load_audio(raw))
    os.remove(raw)


@pytest.fixture(scope="session")
def speech_corpus(tmp_path_factory):
    """A few short utterances and a JSON-lines manifest; returns the manifest path."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required for the tests: apt-get install espeak-ng")
    folder = tmp_path_factory.mktemp("speech")
    with open(folder / "manifest.jsonl", "w") as manifest:
        for number, text in enumerate(SENTENCES):
            path = folder / f"utt{number}.wav"
            speak(text, str(path))
            manifest.write(json.dumps({"audio_filepath": path.name, "text": text}) + "\n")
    return str(folder / "manifest.jsonl")


@pytest.fixture
def sine():
    def make(seconds=1.0, rate=16000, freq=440.0, channels=1):
        t = np.arange(int(seconds * rate)) / rate
        wave = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
        return np.stack([wave] * channels, axis=1) if channels > 1 else wave
    return make


def load_script(name: str):
    """The `main` of data/<name>.py, loaded from its file (data/ is not a package)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(f"data_script_{name}", os.path.join(root, "data", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main
