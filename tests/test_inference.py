import numpy as np
import pytest
import soundfile as sf
import torch

from deepspeech_pytorch.audio import AudioError
from deepspeech_pytorch.checkpoint import CheckpointError, model_state, save_checkpoint
from deepspeech_pytorch.configs import FeatureConfig
from deepspeech_pytorch.inference import Transcriber, chunk_boundaries, load_model
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.models import presets
from deepspeech_pytorch.models.deepspeech2 import DeepSpeech2

PRESETS = presets()


@pytest.fixture
def tiny_model_path(tmp_path):
    torch.manual_seed(0)
    model = DeepSpeech2(PRESETS["ds2_tiny"], 161, 29)
    path = tmp_path / "tiny.pt"
    save_checkpoint(str(path), model_state(model, PRESETS["ds2_tiny"], FeatureConfig(), Alphabet()))
    return str(path)


def test_chunks_cover_everything_and_cut_in_silence():
    rate = 16000
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(rate * 25).astype(np.float32)
    signal[int(8.3 * rate): int(8.5 * rate)] = 0.0  # a pause inside the search window of the first cut
    bounds = chunk_boundaries(signal, rate, chunk_seconds=10.0)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(signal)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all(end - start <= 10 * rate for start, end in bounds)
    assert 8.3 * rate <= bounds[0][1] <= 8.5 * rate
    assert chunk_boundaries(signal[:rate], rate, 10.0) == [(0, rate)]


def test_long_audio_is_chunked_with_consistent_timings(tiny_model_path):
    loaded = load_model(tiny_model_path)
    audio = (0.1 * np.random.default_rng(1).standard_normal(16000 * 7)).astype(np.float32)
    chunked = Transcriber(loaded, chunk_seconds=2.0, vad=False).transcribe(audio)  # noise: VAD would drop it
    assert chunked.duration == pytest.approx(7.0)
    starts = [w.start for w in chunked.words]
    assert starts == sorted(starts) and all(0 <= w.start <= w.end <= 7.0 for w in chunked.words)


def test_batched_transcription_equals_one_by_one(tiny_model_path, speech_corpus):
    import json, os
    folder = os.path.dirname(speech_corpus)
    paths = [os.path.join(folder, json.loads(line)["audio_filepath"]) for line in open(speech_corpus)]
    transcriber = Transcriber(load_model(tiny_model_path), batch_size=4)
    together = [r.text for r in transcriber.transcribe_many(paths)]
    assert together == [transcriber.transcribe(p).text for p in paths]


def test_bad_inputs(tiny_model_path, tmp_path):
    transcriber = Transcriber(load_model(tiny_model_path))
    with pytest.raises(AudioError, match="zero-length"):
        transcriber.transcribe(np.zeros(0, dtype=np.float32))
    (tmp_path / "x.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(AudioError, match="x.wav"):
        transcriber.transcribe(str(tmp_path / "x.wav"))
    with pytest.raises(CheckpointError, match="not found"):
        load_model(str(tmp_path / "missing.pt"))


def test_stereo_44k_file_is_handled(tiny_model_path, tmp_path):
    stereo = 0.1 * np.random.default_rng(2).standard_normal((44100, 2))
    sf.write(tmp_path / "st.flac", stereo, 44100)
    result = Transcriber(load_model(tiny_model_path)).transcribe(str(tmp_path / "st.flac"))
    assert result.duration == pytest.approx(1.0, abs=1e-3)


def test_model_info(tiny_model_path):
    info = load_model(tiny_model_path).info
    assert info["architecture"] == "DeepSpeech2 2 x bi-gru 128" and info["parameters"] > 100_000


def test_the_package_face_is_small_and_imports_no_torch():
    import subprocess
    import sys

    probe = ("import sys, deepspeech_pytorch as d; slow = 'importlib.metadata' in sys.modules; "
             "print('torch' in sys.modules, d.__version__, ','.join(d.available_models()), sorted(d.__all__), slow)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False" and out[1][0].isdigit() and out[2] == "default,stream"  # the bundled models
    assert out[-1] == "False"  # the version is read on first use: importing importlib.metadata costs 15-20 ms
    import deepspeech_pytorch

    result = deepspeech_pytorch.transcribe(np.zeros(16000, dtype=np.float32))
    assert result.text == "" and result.duration == pytest.approx(1.0)
    loaded = deepspeech_pytorch.load_model("default")
    assert loaded.name == load_model().name and isinstance(deepspeech_pytorch.Transcriber(loaded), Transcriber)
    with pytest.raises(AttributeError):
        deepspeech_pytorch.no_such_thing


def test_arrays_of_any_layout_and_bad_arrays_through_the_api(tiny_model_path):
    """A stereo array (either orientation) or 16-bit PCM is what a user of the Python API has at hand; it
    transcribes as the mono float signal does. Arrays that cannot be audio are one AudioError naming them."""
    transcriber = Transcriber(load_model(tiny_model_path), vad=False)
    mono = (0.1 * np.random.default_rng(5).standard_normal(16000)).astype(np.float32)
    expected = transcriber.transcribe(mono)
    for variant in (np.stack([mono, mono], axis=1), np.stack([mono, mono]), mono.astype(np.float64)):
        assert transcriber.transcribe(variant).text == expected.text
    pcm = (mono * 32767).astype(np.int16)
    assert transcriber.transcribe(pcm).duration == pytest.approx(1.0)
    for bad, words in ((np.zeros((4, 4, 4), np.float32), "shape"), (np.array([np.nan] * 800, np.float32), "NaN"),
                       (np.zeros(10, np.float32), "too short")):
        with pytest.raises(AudioError, match=words):
            transcriber.transcribe(bad)
