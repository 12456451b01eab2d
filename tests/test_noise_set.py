"""The noise-injection clip set: every kind made, 16 kHz mono, audible, of the right character, reproducible."""

import os

import numpy as np
import pytest
import soundfile as sf

from deepspeech_pytorch.audio import SAMPLE_RATE, load_audio
from deepspeech_pytorch.datasets import read_manifest
from deepspeech_pytorch.corpora.noise_set import NOISE_KINDS, NoiseSetError, build_noise_set, music
from deepspeech_pytorch.corpora.tts import BABBLE_VARIANTS, ESPEAK_VARIANTS

CLIPS, SECONDS = 2, 3.0


@pytest.fixture(scope="module")
def noise_set(tmp_path_factory):
    return build_noise_set(str(tmp_path_factory.mktemp("noise")), clips_per_kind=CLIPS, clip_seconds=SECONDS,
                           seed=0, progress=False)


def spectrum(samples):
    power = np.abs(np.fft.rfft(samples)) ** 2
    return np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE), power


def centroid(samples):
    frequencies, power = spectrum(samples)
    return float((frequencies * power).sum() / power.sum())


def clips(noise_set, kind):
    return [load_audio(e.audio_path) for e in read_manifest(noise_set["manifest"]) if e.text == kind]


def test_every_kind_is_made_as_16khz_mono_audible_clips(noise_set):
    entries = read_manifest(noise_set["manifest"])
    assert sorted({e.text for e in entries}) == sorted(NOISE_KINDS)
    assert len(entries) == noise_set["clips"] == CLIPS * len(NOISE_KINDS)
    for entry in entries:
        info = sf.info(entry.audio_path)
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        assert abs(entry.duration - SECONDS) < 1e-3 and abs(info.frames / SAMPLE_RATE - SECONDS) < 1e-3
        samples = load_audio(entry.audio_path)
        rms = np.sqrt(np.mean(samples ** 2))
        assert 0.05 < rms < 0.2 and np.max(np.abs(samples)) < 1.0, entry.audio_path
        assert os.path.basename(os.path.dirname(entry.audio_path)) == entry.text


def test_noise_colours_and_hum_have_their_spectra(noise_set):
    white, pink, brown = (np.mean([centroid(c) for c in clips(noise_set, k)]) for k in ("white", "pink", "brown"))
    assert white > 3000 and white > pink > brown
    for index, clip in enumerate(clips(noise_set, "hum")):
        frequencies, power = spectrum(clip)
        harmonic = frequencies[np.argmax(power)] / (50.0 if index % 2 == 0 else 60.0)  # even clips 50 Hz, odd 60 Hz
        assert harmonic >= 0.9 and abs(harmonic - round(harmonic)) < 0.05
        assert power[frequencies > 1000].sum() < 1e-3 * power.sum()  # nothing but low harmonics


def test_babble_and_music_are_not_steady_noise(noise_set):
    for kind in ("babble", "music"):
        for clip in clips(noise_set, kind):
            frames = clip[: len(clip) // 400 * 400].reshape(-1, 400)
            energy = np.sqrt(np.mean(frames ** 2, axis=1))
            assert energy.std() / energy.mean() > 0.1, kind  # level moves (white noise: about 0.03)
    white = clips(noise_set, "white")[0][:48000].reshape(-1, 400)
    assert np.sqrt(np.mean(white ** 2, axis=1)).std() / np.sqrt(np.mean(white ** 2, axis=1)).mean() < 0.06
    assert not set(BABBLE_VARIANTS) & set(ESPEAK_VARIANTS)  # no corpus voice is heard in babble


def test_same_seed_same_clips(noise_set, tmp_path):
    again = build_noise_set(str(tmp_path), clips_per_kind=CLIPS, clip_seconds=SECONDS, seed=0,
                            kinds=("white", "hum", "babble", "music"), progress=False)
    first = {os.path.basename(e.audio_path): e.audio_path for e in read_manifest(noise_set["manifest"])}
    for entry in read_manifest(again["manifest"]):
        with open(entry.audio_path, "rb") as new, open(first[os.path.basename(entry.audio_path)], "rb") as old:
            assert new.read() == old.read(), entry.audio_path
    white = [load_audio(e.audio_path) for e in read_manifest(again["manifest"]) if e.text == "white"]
    assert not np.allclose(white[0], white[1])  # clips are different stretches of noise


def test_missing_tools_are_named(monkeypatch, tmp_path):
    with pytest.raises(NoiseSetError, match="apt-get install extremetuxracer-data"):
        music(1, 1.0, 0, directory=str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NoiseSetError, match="apt-get install sox"):
        build_noise_set(str(tmp_path / "n"), clips_per_kind=1, clip_seconds=1.0, kinds=("pink",), progress=False)
    with pytest.raises(NoiseSetError, match="apt-get install espeak-ng"):
        build_noise_set(str(tmp_path / "n"), clips_per_kind=1, clip_seconds=1.0, kinds=("babble",), progress=False)
    with pytest.raises(ValueError, match="unknown noise kinds"):
        build_noise_set(str(tmp_path / "n"), kinds=("rain",), progress=False)


def test_music_passes_over_tracks_shorter_than_a_clip(tmp_path):
    """Extreme Tux Racer ships two 6.3 s jingles: data/noise.py with 10 s clips stopped on the first one."""
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "a_jingle.ogg", 0.3 * rng.standard_normal(3 * 22050), 22050)
    sf.write(tmp_path / "b_track.ogg", 0.3 * rng.standard_normal(12 * 22050), 22050)
    clips = music(3, 10.0, 0, directory=str(tmp_path))
    assert len(clips) == 3 and all(len(clip) == 10 * 16000 for clip in clips)
    with pytest.raises(NoiseSetError, match="no music track is longer than a 20 s clip"):
        music(1, 20.0, 0, directory=str(tmp_path))
