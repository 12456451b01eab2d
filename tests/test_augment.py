import subprocess
import sys
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from deepspeech_pytorch.augment import (FeatureAugmenter, WaveformAugmenter, add_noise, build_augmenters, change_gain,
                                        change_speed, power, spec_augment)
from deepspeech_pytorch.configs import AugmentConfig, NoiseAugmentConfig, PerturbConfig, SpecAugmentConfig
from deepspeech_pytorch.audio import load_audio, resample

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rng(seed=0):
    return np.random.default_rng(seed)


def test_spec_augment_masks_within_bounds():
    features = torch.randn(161, 500) + 5.0  # offset so masked (zero) cells are recognisable
    for seed in range(20):
        out = spec_augment(features, rng(seed), 2, 27, 2, 40, 0.1)
        assert out.shape == features.shape
        masked_rows = int((out == 0).all(dim=1).sum())
        masked_cols = int((out == 0).all(dim=0).sum())
        assert masked_rows <= 2 * 27 and masked_cols <= 2 * 40
        assert float((out == 0).float().mean()) <= (2 * 27 * 500 + 2 * 40 * 161) / (161 * 500)
    masked = [float((spec_augment(features, rng(s), 2, 27, 2, 40, 0.1) == 0).float().mean()) for s in range(50)]
    assert 0.05 < np.mean(masked) < 0.4  # masks actually happen, on average a sizeable share


def test_spec_augment_respects_time_fraction_and_keeps_input():
    features = torch.randn(161, 100) + 5.0
    copy = features.clone()
    out = spec_augment(features, rng(3), 0, 0, 5, 40, 0.1)
    assert int((out == 0).all(dim=0).sum()) <= 5 * 10
    assert torch.equal(features, copy)  # pure: the input is not modified


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_noise_at_requested_snr(snr):
    t = np.arange(32000) / 16000
    signal = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    noise = rng(1).standard_normal(7000).astype(np.float32)  # shorter than the signal: looped
    mixed = add_noise(signal, noise, snr, rng(2))
    measured = 10 * np.log10(power(signal) / power(mixed - signal))
    assert abs(measured - snr) < 0.5


def test_speed_and_gain():
    signal = rng(0).standard_normal(16000).astype(np.float32) * 0.1
    assert len(change_speed(signal, 1.1, 16000)) == pytest.approx(16000 / 1.1, abs=2)
    assert len(change_speed(signal, 0.9, 16000)) == pytest.approx(16000 / 0.9, abs=2)
    louder = change_gain(signal, 6.0)
    assert 10 * np.log10(power(louder) / power(signal)) == pytest.approx(6.0, abs=1e-3)


def noise_config(tmp_path, **overrides):
    sf.write(tmp_path / "n.wav", rng(5).standard_normal(8000).astype(np.float32) * 0.2, 16000)
    values = dict(enabled=True, directory=str(tmp_path), probability=1.0, min_snr_db=5.0, max_snr_db=5.0)
    values.update(overrides)
    return NoiseAugmentConfig(**values)


def test_augmenters_are_deterministic_for_a_seed(tmp_path):
    perturb = PerturbConfig(speed_enabled=True, gain_enabled=True)
    augmenter = WaveformAugmenter(perturb, noise_config(tmp_path), 16000)
    signal = rng(0).standard_normal(16000).astype(np.float32) * 0.1
    a, b, c = augmenter(signal, rng(7)), augmenter(signal, rng(7)), augmenter(signal, rng(8))
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)
    features = torch.randn(161, 200)
    spec = FeatureAugmenter(SpecAugmentConfig(enabled=True))
    assert torch.equal(spec(features, rng(1)), spec(features, rng(1)))


def test_off_means_bit_identical(tmp_path):
    signal = rng(0).standard_normal(16000).astype(np.float32)
    features = torch.randn(161, 100)
    waveform, feature = build_augmenters(AugmentConfig(), 16000)
    assert waveform is None and feature is None
    off = WaveformAugmenter(PerturbConfig(), NoiseAugmentConfig(), 16000)
    assert off(signal, rng(0)) is signal
    assert FeatureAugmenter(SpecAugmentConfig(enabled=False))(features, rng(0)) is features
    zero_probability = WaveformAugmenter(PerturbConfig(), noise_config(tmp_path, probability=0.0), 16000)
    assert zero_probability(signal, rng(0)) is signal


def test_noise_without_files_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no noise files"):
        WaveformAugmenter(PerturbConfig(), NoiseAugmentConfig(enabled=True, directory=str(tmp_path)), 16000)


def test_noise_inject_script(tmp_path, speech_corpus):
    speech = os.path.join(os.path.dirname(speech_corpus), "utt0.wav")
    sf.write(tmp_path / "noise.flac", rng(4).standard_normal(44100).astype(np.float32) * 0.3, 44100)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "noise_inject.py"), f"input_path={speech}",
                             f"noise_path={tmp_path}/noise.flac", f"output_path={tmp_path}/mixed.wav", "snr_db=10"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    mixed, clean = load_audio(str(tmp_path / "mixed.wav")), load_audio(speech)
    assert len(mixed) == len(clean)
    gain = np.dot(mixed, clean) / np.dot(clean, clean)  # undo any anti-clipping scale
    measured = 10 * np.log10(power(clean) / power(mixed / gain - clean))
    assert abs(measured - 10.0) < 0.5
    missing = subprocess.run([sys.executable, os.path.join(ROOT, "noise_inject.py"), f"input_path={speech}",
                              "noise_path=nope.wav", f"output_path={tmp_path}/x.wav"], capture_output=True, text=True)
    assert missing.returncode == 1 and "nope.wav" in missing.stderr and "Traceback" not in missing.stderr


# ---- channel and room augmentation ---------------------------------------------------------------

from types import SimpleNamespace  # noqa: E402

from deepspeech_pytorch.augment import augment_section, babble  # noqa: E402
from deepspeech_pytorch.configs import (BabbleAugmentConfig, ChannelAugmentConfig, RoomAugmentConfig,  # noqa: E402
                                        SilenceAugmentConfig)
from deepspeech_pytorch.channel import (CODECS, MP3_BITRATES, band_limit, codec, fit_length, insert_silences,  # noqa: E402
                                        mp3_compression_level, quiet_point, random_room, reverberate,
                                        room_impulse_response, telephone)
from deepspeech_pytorch.configs import ConfigError  # noqa: E402

RATE = 16000


@pytest.fixture(scope="module")
def speech(speech_corpus):
    """Two espeak-ng utterances, 16 kHz float32."""
    folder = os.path.dirname(speech_corpus)
    return [load_audio(os.path.join(folder, f"utt{n}.wav")) for n in range(2)]


def tones(*freqs, seconds=1.0):
    t = np.arange(int(seconds * RATE)) / RATE
    return sum(0.2 * np.sin(2 * np.pi * f * t) for f in freqs).astype(np.float32)


def level_db(signal, freq):
    """Level of one tone in `signal` (dB re full-scale sine), from the windowed spectrum."""
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    bin_ = int(round(freq * len(signal) / RATE))
    return 20 * np.log10(spectrum[bin_ - 2: bin_ + 3].max() / (len(signal) / 4) + 1e-12)


def energy_above(signal, hz):
    spectrum = np.abs(np.fft.rfft(signal)) ** 2
    return spectrum[int(hz * len(signal) / RATE):].sum() / spectrum.sum()


def snr_after_gain(reference, degraded):
    """SNR (dB) of `degraded` against the best-scaled reference, and that scale."""
    gain = np.dot(degraded, reference) / np.dot(reference, reference)
    return 10 * np.log10(power(gain * reference) / power(degraded - gain * reference)), gain


def best_lag(reference, degraded):
    from scipy.signal import correlate

    return int(np.argmax(correlate(degraded, reference, "full", method="fft"))) - (len(reference) - 1)


def test_telephone_keeps_the_voice_band_and_drops_the_rest(speech):
    signal = tones(150, 1000, 2500, 6000)
    phone = telephone(signal, RATE)
    assert len(phone) == len(signal) and phone.dtype == np.float32
    for kept in (1000, 2500):
        assert abs(level_db(phone, kept) - level_db(signal, kept)) < 1.5
    assert level_db(phone, 6000) < level_db(signal, 6000) - 60  # above 4 kHz: gone
    assert level_db(phone, 150) < level_db(signal, 150) - 15  # below 300 Hz: strongly cut
    voice = telephone(speech[0], RATE)
    assert energy_above(speech[0], 4000) > 1e-3 and energy_above(voice, 4000) < 1e-6


def test_band_limit_cuts_at_the_asked_frequencies():
    signal = tones(100, 1500, 5000)
    out = band_limit(signal, RATE, low_hz=300.0, high_hz=3000.0)
    assert abs(level_db(out, 1500) - level_db(signal, 1500)) < 1.0
    assert level_db(out, 5000) < level_db(signal, 5000) - 40
    assert level_db(out, 100) < level_db(signal, 100) - 30
    assert band_limit(signal, RATE, None, 9000.0) is signal  # above Nyquist and no high-pass: untouched
    with pytest.raises(ValueError, match="not below"):
        band_limit(signal, RATE, 3000.0, 2000.0)


def test_random_rooms_keep_talker_and_microphone_inside_and_apart():
    for seed in range(40):
        room = random_room(rng(seed), (0.2, 0.8), (3.0, 10.0), (2.4, 4.0), distance=(0.5, 2.0))
        assert 0.5 <= room.distance <= 2.0 + 1e-9
        for point in (room.source, room.microphone):
            assert all(0.5 - 1e-9 <= value <= side - 0.5 + 1e-9 for value, side in zip(point, room.size))
        assert 1.2 <= room.source[2] <= 1.9 and 0.6 <= room.microphone[2] <= 1.6
    assert random_room(rng(1), (0.2, 0.8), (3.0, 10.0), (2.4, 4.0)) == random_room(rng(1), (0.2, 0.8), (3.0, 10.0), (2.4, 4.0))


def test_simulated_room_reverberates_with_its_rt60(speech):
    import pyroomacoustics as pra

    room = random_room(rng(3), (0.5, 0.5), (5.0, 6.0), (3.0, 3.0))
    assert 0.0 < room.absorption < 1.0 and room.distance > 0
    rir = room_impulse_response(room, RATE, seed=11)
    assert 0.3 < pra.experimental.measure_rt60(rir, RATE) < 0.9
    np.testing.assert_array_equal(rir, room_impulse_response(room, RATE, seed=11))  # its ray tracing is seeded
    burst = np.concatenate([tones(500, 1200, seconds=0.3), np.zeros(RATE, dtype=np.float32)])
    wet = reverberate(burst, rir)
    assert len(wet) == len(burst)
    assert power(wet) == pytest.approx(power(burst), rel=1e-3)  # the level is kept
    after = slice(int(0.35 * RATE), int(0.6 * RATE))  # 50-300 ms after the burst ends
    assert power(burst[after]) == 0.0
    assert 10 * np.log10(power(wet[after]) / power(wet[: int(0.3 * RATE)])) > -40  # a tail rings on
    clean = speech[0]
    reverberant = reverberate(clean, rir)
    assert len(reverberant) == len(clean) and best_lag(clean, reverberant) == 0  # aligned on the direct sound
    assert not np.allclose(reverberant, clean, atol=1e-3)


@pytest.mark.parametrize("name", CODECS)
def test_codecs_are_close_but_lossy(speech, name):
    clean = speech[0]
    out = codec(clean, RATE, name, bitrate_kbps=16.0)
    assert len(out) == len(clean) and out.dtype == np.float32
    assert not np.array_equal(out, clean)
    assert best_lag(clean, out) == 0  # the encoder's delay is taken out
    reference = fit_length(resample(resample(clean, RATE, 8000), 8000, RATE), len(clean)) if name == "gsm" else clean
    snr, gain = snr_after_gain(reference, out)
    floor = {"mulaw": 30.0, "alaw": 30.0, "gsm": 3.0}.get(name, 8.0)  # dB; GSM 06.10 rings on into silences
    assert floor < snr < 60.0 and 0.6 < gain < 1.2
    if name == "gsm":
        assert energy_above(out, 4000) < 1e-4  # GSM is 8 kHz telephony


def test_mp3_bitrate_is_the_one_asked():
    import io

    signal = rng(0).standard_normal(3 * RATE).astype(np.float32) * 0.1
    for kbps in (8, 16, 32):
        buffer = io.BytesIO()
        sf.write(buffer, signal, RATE, format="MP3", subtype="MPEG_LAYER_III", bitrate_mode="CONSTANT",
                 compression_level=mp3_compression_level(kbps, RATE))
        assert buffer.tell() * 8 / 3 / 1000 == pytest.approx(kbps, rel=0.15)
    assert RATE in MP3_BITRATES
    low, high = codec(signal, RATE, "mp3", 8.0), codec(signal, RATE, "mp3", 32.0)
    assert snr_after_gain(signal, low)[0] < snr_after_gain(signal, high)[0]
    with pytest.raises(ValueError, match="unknown codec"):
        codec(signal, RATE, "aac")


def test_silences_add_exactly_their_length_and_leave_the_speech_alone(speech):
    clean = speech[0]
    at = quiet_point(clean, RATE, rng(0))
    assert 0.1 * len(clean) <= at <= 0.9 * len(clean)
    frames = clean[: len(clean) // 160 * 160].reshape(-1, 160)
    energies = np.mean(frames.astype(np.float64) ** 2, axis=1)
    assert energies[at // 160] <= np.quantile(energies[len(energies) // 10: 9 * len(energies) // 10], 0.2)
    silence = SilenceAugmentConfig(enabled=True, probability=1.0, pause_probability=1.0, digital_probability=0.0,
                                   min_lead=0.5, max_lead=0.5, min_trail=0.3, max_trail=0.3, min_pause=0.4,
                                   max_pause=0.4)
    augmenter = WaveformAugmenter(PerturbConfig(), NoiseAugmentConfig(), RATE, silence=silence)
    out = augmenter(clean, rng(5))
    lead, trail, pause = int(0.5 * RATE), int(0.3 * RATE), int(0.4 * RATE)
    assert len(out) == len(clean) + lead + trail + pause
    inside = out[lead: len(out) - trail]
    point = int(np.flatnonzero(inside[:len(clean)] != clean)[0])  # where the pause begins
    assert 0.1 * len(clean) <= point <= 0.9 * len(clean)
    np.testing.assert_array_equal(inside[:point], clean[:point])
    np.testing.assert_array_equal(inside[point + pause:], clean[point:])  # the speech, every sample of it
    for stretch in (out[:lead], out[-trail:], inside[point: point + pause]):
        level = 10 * np.log10(power(stretch))
        assert -91.0 < level < -59.0  # low-level noise, not digital silence
    digital = WaveformAugmenter(PerturbConfig(), NoiseAugmentConfig(), RATE,
                                silence=SilenceAugmentConfig(enabled=True, probability=1.0, digital_probability=1.0,
                                                             min_lead=0.2, max_lead=0.2))(clean, rng(1))
    assert not np.any(digital[: int(0.2 * RATE)]) and np.array_equal(digital[int(0.2 * RATE): int(0.2 * RATE) + len(clean)],
                                                                      clean)
    assert len(insert_silences(clean, clean[:0], clean[:0], clean[:0], 0)) == len(clean)


def test_babble_mixes_other_utterances_at_the_snr(speech_corpus, speech):
    folder = os.path.dirname(speech_corpus)
    paths = [os.path.join(folder, f"utt{n}.wav") for n in range(2, 6)]
    config = BabbleAugmentConfig(enabled=True, probability=1.0, min_talkers=3, max_talkers=3, min_snr_db=12.0,
                                 max_snr_db=12.0)
    augmenter = WaveformAugmenter(PerturbConfig(), NoiseAugmentConfig(), RATE, babble=config, speech_paths=paths)
    clean = speech[0]
    out = augmenter(clean, rng(4))
    assert len(out) == len(clean)
    assert 10 * np.log10(power(clean) / power(out - clean)) == pytest.approx(12.0, abs=0.1)
    talker = load_audio(paths[0])
    alone = babble([talker], len(clean), rng(1))  # one talker: that utterance from a random offset, looped, unit RMS
    offset = int(rng(1).integers(0, len(talker)))
    segment = np.tile(talker, len(clean) // len(talker) + 2)[offset: offset + len(clean)]
    np.testing.assert_allclose(alone, segment / np.sqrt(power(segment)), rtol=1e-4, atol=1e-6)
    both = babble([talker, load_audio(paths[1])], len(clean), rng(1))
    assert 1.0 < power(both) < 3.0  # two unit-RMS talkers, near independent
    from_manifest = WaveformAugmenter(PerturbConfig(), NoiseAugmentConfig(), RATE,
                                      babble=BabbleAugmentConfig(enabled=True, probability=1.0, manifest=speech_corpus))
    assert len(from_manifest.babble_paths) == 6
    with pytest.raises(ValueError, match="babble augmentation is enabled but has no utterances"):
        WaveformAugmenter(PerturbConfig(), NoiseAugmentConfig(), RATE, babble=BabbleAugmentConfig(enabled=True))


def every_effect(tmp_path, speech_corpus):
    """WaveformAugmenter keyword arguments with every effect on, always."""
    folder = os.path.dirname(speech_corpus)
    return dict(perturb=PerturbConfig(speed_enabled=True, gain_enabled=True),
                noise=noise_config(tmp_path),
                room=RoomAugmentConfig(enabled=True, probability=1.0, rooms=2),
                channel=ChannelAugmentConfig(enabled=True, bandlimit_probability=1.0, codec_probability=1.0),
                silence=SilenceAugmentConfig(enabled=True, probability=1.0, pause_probability=1.0),
                babble=BabbleAugmentConfig(enabled=True, probability=1.0),
                speech_paths=[os.path.join(folder, f"utt{n}.wav") for n in range(6)])


def make(settings):
    settings = dict(settings)
    return WaveformAugmenter(settings.pop("perturb"), settings.pop("noise"), RATE, **settings)


def test_whole_chain_is_reproducible_across_workers(tmp_path, speech_corpus, speech):
    settings = every_effect(tmp_path, speech_corpus)
    worker_a, worker_b = make(settings), make(settings)  # as two data workers, each simulating its rooms
    clean = speech[0]
    for seed in (0, 1, 2):
        a = worker_a(clean, np.random.default_rng([7, 0, seed]))
        b = worker_b(clean, np.random.default_rng([7, 0, seed]))
        np.testing.assert_array_equal(a, b)
        assert np.all(np.isfinite(a)) and len(a) > len(clean)  # silences were added
    other_epoch = worker_a(clean, np.random.default_rng([7, 1, 0]))
    assert not np.array_equal(other_epoch[: len(clean)], worker_a(clean, np.random.default_rng([7, 0, 0]))[: len(clean)])


def test_new_sections_off_change_nothing(tmp_path, speech):
    """With room, channel, silence and babble off, the chain draws and returns exactly what speed, gain
    and noise alone did."""
    clean = speech[0]
    noise = noise_config(tmp_path, min_snr_db=5.0, max_snr_db=20.0)
    perturb = PerturbConfig(speed_enabled=True, gain_enabled=True)
    augmenter = WaveformAugmenter(perturb, noise, RATE, room=RoomAugmentConfig(), channel=ChannelAugmentConfig(),
                                  silence=SilenceAugmentConfig(), babble=BabbleAugmentConfig())
    out = augmenter(clean, rng(9))
    generator = rng(9)  # the original chain, by hand: speed, gain, noise
    expected = change_speed(clean, float(generator.uniform(0.9, 1.1)), RATE)
    expected = change_gain(expected, float(generator.uniform(-6.0, 6.0)))
    assert generator.random() < 1.0
    generator.integers(0, 1)
    clip = load_audio(str(tmp_path / "n.wav"))
    expected = add_noise(expected, clip, float(generator.uniform(5.0, 20.0)), generator)
    np.testing.assert_array_equal(out, expected)
    off = WaveformAugmenter(PerturbConfig(), NoiseAugmentConfig(), RATE, room=RoomAugmentConfig(),
                            channel=ChannelAugmentConfig(), silence=SilenceAugmentConfig(), babble=BabbleAugmentConfig())
    assert not off.active and off(clean, rng(0)) is clean
    never = WaveformAugmenter(PerturbConfig(), NoiseAugmentConfig(), RATE,
                              room=RoomAugmentConfig(enabled=True, probability=0.0),
                              channel=ChannelAugmentConfig(enabled=True, telephone_probability=0.0,
                                                           bandlimit_probability=0.0, codec_probability=0.0),
                              silence=SilenceAugmentConfig(enabled=True, probability=0.0))
    assert never(clean, rng(0)) is clean


def test_sections_are_read_from_the_augment_config_when_it_has_them(speech):
    assert build_augmenters(AugmentConfig(), RATE) == (None, None)  # no such fields yet: all off
    config = SimpleNamespace(spec_augment=SpecAugmentConfig(), noise=NoiseAugmentConfig(), perturb=PerturbConfig(),
                             channel={"enabled": True, "telephone_probability": 1.0, "codecs": ["mulaw"]},
                             silence=SilenceAugmentConfig(enabled=True, probability=1.0, min_lead=0.1, max_lead=0.1))
    waveform, feature = build_augmenters(config, RATE)
    assert feature is None and isinstance(waveform.channel, ChannelAugmentConfig)
    assert waveform.channel.telephone_probability == 1.0 and waveform.channel.codecs == ["mulaw"]
    out = waveform(speech[0], rng(0))
    assert len(out) >= len(speech[0]) + int(0.1 * RATE) and energy_above(out, 4000) < 1e-6


@pytest.mark.parametrize("key,values,message", [
    ("channel", {"codecs": ["aac"]}, "augment.channel.codecs[0]='aac': choose from mp3"),
    ("channel", {"codecs": []}, "augment.channel.codecs=[] must have at least 1 item(s)"),
    ("channel", {"min_lowpass_hz": 200.0}, "augment.channel.max_highpass_hz=300.0 is more than min_lowpass_hz=200.0"),
    ("room", {"probability": 1.5}, "augment.room.probability=1.5 must be at least 0 and at most 1"),
    ("room", {"min_rt60": 0.9}, "augment.room.min_rt60=0.9 is more than max_rt60=0.8"),
    ("room", {"min_side": 1.0}, "augment.room.min_side=1.0 must be at least 2"),
    ("silence", {"max_floor_dbfs": 3.0}, "augment.silence.max_floor_dbfs=3.0 must be at least -200 and at most 0"),
    ("silence", {"min_pause": -1.0}, "augment.silence.min_pause=-1.0 must be at least 0"),
    ("babble", {"min_talkers": 0}, "augment.babble.min_talkers=0 must be at least 1"),
])
def test_wrong_settings_are_one_clear_error(key, values, message):
    with pytest.raises(ConfigError) as error:
        augment_section(SimpleNamespace(**{key: values}), key)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_measured_impulse_responses_from_a_folder(tmp_path, speech):
    decay = np.exp(-np.arange(RATE // 4) / (0.05 * RATE)) * rng(2).standard_normal(RATE // 4)
    decay[0] = 5.0  # the direct sound
    sf.write(tmp_path / "hall.wav", (decay / 6.0).astype(np.float32), RATE)
    augmenter = WaveformAugmenter(PerturbConfig(), NoiseAugmentConfig(), RATE,
                                  room=RoomAugmentConfig(enabled=True, probability=1.0, directory=str(tmp_path)))
    clean = speech[0]
    out = augmenter(clean, rng(0))
    from scipy.signal import oaconvolve

    expected = oaconvolve(clean.astype(np.float64), load_audio(str(tmp_path / "hall.wav")).astype(np.float64))[: len(clean)]
    np.testing.assert_allclose(out, expected * np.sqrt(power(clean) / power(expected)), atol=1e-5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no impulse response files"):
        WaveformAugmenter(PerturbConfig(), NoiseAugmentConfig(), RATE,
                          room=RoomAugmentConfig(enabled=True, directory=str(tmp_path / "empty")))


def test_preview_tool_writes_every_effect(tmp_path, speech_corpus):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import augment_preview
    finally:
        sys.path.pop(0)
    speech_path = os.path.join(os.path.dirname(speech_corpus), "utt1.wav")
    assert augment_preview.main([speech_path, "--output", str(tmp_path / "out")]) == 0
    written = sorted(os.listdir(tmp_path / "out"))
    assert {"room.wav", "telephone.wav", "mp3.wav", "gsm.wav", "mulaw.wav", "silence.wav", "all.wav"} <= set(written)
    clean = load_audio(speech_path)
    assert len(load_audio(str(tmp_path / "out" / "telephone.wav"))) == len(clean)
    assert len(load_audio(str(tmp_path / "out" / "silence.wav"))) > len(clean)
    assert augment_preview.main(["missing.wav", "--output", str(tmp_path / "x")]) == 1


def test_the_codec_names_a_config_may_give_are_the_codecs_there_are():
    from deepspeech_pytorch.channel import CODECS
    from deepspeech_pytorch.configs import CODEC_NAMES

    assert set(CODEC_NAMES) == set(CODECS)
