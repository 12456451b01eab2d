"""What happens to speech between the mouth and the file: room reverb, band limits, codecs, silences.

Pure functions on mono float32 waveforms, shape (samples,), at `sample_rate` Hz. Randomness comes
only from the numpy Generator passed in. The work is done by libraries: pyroomacoustics simulates
rooms, scipy.signal filters and convolves, soxr resamples, libsndfile (soundfile) runs the codecs
(MP3 through LAME/mpg123, GSM 6.10, G.711 mu-law and A-law, Opus). pyroomacoustics and scipy are
imported on first use, so a run without these effects never loads them.

Every effect keeps the utterance's length (the codecs' encoder delay is removed, resampling is cut
back to the input's length) except `insert_silences`, which adds exactly the stretches it inserts.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import soundfile as sf

from deepspeech_pytorch.audio import AudioError, resample

TELEPHONE_RATE = 8000  # Hz, narrow-band telephony (G.711, GSM)
TELEPHONE_BAND = (300.0, 3400.0)  # Hz, the telephone pass band (ITU-T G.712)
FILTER_ORDER = 8  # Butterworth order of the band limits: 48 dB/octave beyond the cut-off
CODECS = ("mp3", "gsm", "mulaw", "alaw", "opus")
# MPEG layer III sample rates (Hz) -> the constant bit rates (kbps) LAME can use there
MP3_BITRATES = {**{rate: (32, 320) for rate in (32000, 44100, 48000)},  # MPEG-1
                **{rate: (8, 160) for rate in (16000, 22050, 24000)},  # MPEG-2
                **{rate: (8, 64) for rate in (8000, 11025, 12000)}}  # MPEG-2.5
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # Hz
OPUS_KBPS = (6.0, 262.0)  # libsndfile spans about this range of Opus bit rates by compression level 1 .. 0 (measured)
MAX_CODEC_DELAY = 4096  # samples: an encoder delay (LAME: 1105) is looked for up to this far
DELAY_SEARCH = 65536  # samples of the signal the delay is measured on (4 s at 16 kHz)
PAUSE_FRAME = 0.01  # seconds: frames over which the quietest point for a pause is looked for
PAUSE_SPAN = (0.1, 0.9)  # a pause goes somewhere in this part of the utterance (fractions of its length)
ROOM_WALL_MARGIN = 0.5  # metres: talker and microphone keep at least this far from every wall
ROOM_PLACEMENT_TRIES = 100  # talker positions drawn to meet the distance range
ROOM_ISM_ORDER = 3  # image-source order of the early reflections; ray tracing does the late tail
SPEED_OF_SOUND = 343.0  # m/s


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad (samples,) to `length` samples, as float32."""
    samples = samples[:length]
    if len(samples) < length:
        samples = np.concatenate([samples, np.zeros(length - len(samples), dtype=samples.dtype)])
    return np.ascontiguousarray(samples, dtype=np.float32)


def _power(samples: np.ndarray) -> float:
    return float(np.mean(np.square(samples, dtype=np.float64))) if len(samples) else 0.0


# ---- room reverb ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Room:
    """A shoebox room with one talker and one microphone; lengths in metres, `rt60` in seconds."""
    size: Tuple[float, float, float]  # length, width, height
    rt60: float  # the reverberation time asked for (Sabine)
    absorption: float  # energy absorption coefficient of every wall, from rt60 and size
    source: Tuple[float, float, float]
    microphone: Tuple[float, float, float]

    @property
    def distance(self) -> float:
        return float(np.linalg.norm(np.subtract(self.source, self.microphone)))


def sabine_absorption(rt60: float, size: Tuple[float, float, float]) -> float:
    """The wall energy absorption that gives `rt60` seconds in a room of `size` metres (Sabine),
    capped at 0.99 where the room is too large for so short a reverberation."""
    import pyroomacoustics as pra

    try:
        absorption, _ = pra.inverse_sabine(rt60, list(size))
    except ValueError:  # more than total absorption would be needed
        return 0.99
    return float(min(absorption, 0.99))


def random_room(rng: np.random.Generator, rt60: Tuple[float, float], side: Tuple[float, float],
                height: Tuple[float, float], distance: Tuple[float, float] = (0.3, 3.0)) -> Room:
    """A room of random size and reverberation time, with a microphone (0.6-1.6 m high) and a talker
    (1.2-1.9 m high) at random places at least ROOM_WALL_MARGIN from the walls, the talker `distance`
    metres from the microphone (drawn until one fits, else pulled straight towards the microphone).

    rt60, side, height, distance: (low, high) ranges in seconds and metres.
    """
    size = (float(rng.uniform(*side)), float(rng.uniform(*side)), float(rng.uniform(*height)))
    reverb = float(rng.uniform(*rt60))

    def place(low: float, high: float) -> np.ndarray:
        x = rng.uniform(ROOM_WALL_MARGIN, size[0] - ROOM_WALL_MARGIN)
        y = rng.uniform(ROOM_WALL_MARGIN, size[1] - ROOM_WALL_MARGIN)
        z = rng.uniform(low, min(high, size[2] - ROOM_WALL_MARGIN))
        return np.array([x, y, z])

    microphone = place(0.6, 1.6)
    for _ in range(ROOM_PLACEMENT_TRIES):
        source = place(1.2, 1.9)
        if distance[0] <= np.linalg.norm(source - microphone) <= distance[1]:
            break
    else:  # the segment to the microphone stays inside the room (a box is convex)
        offset = source - microphone
        source = microphone + offset * min(distance[1] / max(float(np.linalg.norm(offset)), 1e-9), 1.0)
    return Room(size, reverb, sabine_absorption(reverb, size), tuple(float(v) for v in source),
                tuple(float(v) for v in microphone))


def room_impulse_response(room: Room, sample_rate: int, seed: int) -> np.ndarray:
    """The room's impulse response (taps,) float32, simulated by pyroomacoustics: image sources up to
    ROOM_ISM_ORDER for the early reflections, ray tracing for the late tail (fast and close to the
    asked RT60 where a full image-source model would take seconds). Starts a few taps before the
    direct sound. pyroomacoustics' own generator is seeded with `seed` so the tail is reproducible.
    """
    import pyroomacoustics as pra

    pra.random.seed(numpy=seed)
    simulated = pra.ShoeBox(list(room.size), fs=sample_rate, materials=pra.Material(room.absorption),
                            max_order=ROOM_ISM_ORDER, ray_tracing=True, air_absorption=True)
    simulated.set_ray_tracing(receiver_radius=0.5, energy_thres=1e-5, time_thres=1.25 * room.rt60 + 0.05)
    simulated.add_source(list(room.source))
    simulated.add_microphone(list(room.microphone))
    simulated.compute_rir()
    rir = np.asarray(simulated.rir[0][0], dtype=np.float32)
    start = max(int(np.argmax(np.abs(rir))) - 64, 0)  # the direct sound, less its interpolation filter's lead
    return np.ascontiguousarray(rir[start:])


def reverberate(signal: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with an impulse response (taps,), aligned on its strongest tap (the direct sound) and
    cut to the signal's length, at the signal's RMS level (the reverb tail spreads into pauses and
    the end, whose room echo is cut with the rest)."""
    from scipy.signal import oaconvolve

    if len(rir) == 0:
        raise AudioError("room impulse response is empty")
    signal_power = _power(signal)
    if signal_power == 0.0:
        return signal
    peak = int(np.argmax(np.abs(rir)))
    wet = oaconvolve(signal.astype(np.float64), rir.astype(np.float64))[peak: peak + len(signal)]
    wet_power = _power(wet)
    if wet_power == 0.0:
        return signal
    return fit_length((wet * np.sqrt(signal_power / wet_power)).astype(np.float32), len(signal))


# ---- band limits ------------------------------------------------------------------------------------

def band_limit(signal: np.ndarray, sample_rate: int, low_hz: Optional[float] = None,
               high_hz: Optional[float] = None, order: int = FILTER_ORDER) -> np.ndarray:
    """Butterworth high-pass at `low_hz` and/or low-pass at `high_hz` (None or out of range: that
    side is left open), as a cheap microphone or a low sample rate would."""
    from scipy.signal import butter, sosfilt

    nyquist = sample_rate / 2.0
    low = low_hz if low_hz is not None and 0.0 < low_hz < nyquist else None
    high = high_hz if high_hz is not None and 0.0 < high_hz < nyquist else None
    if low is None and high is None:
        return signal
    if low is not None and high is not None:
        if low >= high:
            raise ValueError(f"band limit: low cut-off {low} Hz is not below high cut-off {high} Hz")
        sos = butter(order, [low, high], btype="bandpass", fs=sample_rate, output="sos")
    elif low is not None:
        sos = butter(order, low, btype="highpass", fs=sample_rate, output="sos")
    else:
        sos = butter(order, high, btype="lowpass", fs=sample_rate, output="sos")
    return sosfilt(sos, signal).astype(np.float32)


def telephone(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    """The narrow-band telephone channel: down to 8 kHz, band-pass 300-3400 Hz, back up."""
    narrow = resample(signal, sample_rate, TELEPHONE_RATE)
    narrow = band_limit(narrow, TELEPHONE_RATE, *TELEPHONE_BAND)
    return fit_length(resample(narrow, TELEPHONE_RATE, sample_rate), len(signal))


# ---- codecs -----------------------------------------------------------------------------------------

def _roundtrip(signal: np.ndarray, sample_rate: int, container: str, subtype: str, **options) -> np.ndarray:
    """Encode with libsndfile into memory and decode again."""
    buffer = io.BytesIO()
    try:
        sf.write(buffer, np.clip(signal, -1.0, 1.0), sample_rate, format=container, subtype=subtype, **options)
        buffer.seek(0)
        decoded, _ = sf.read(buffer, dtype="float32")
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioError(f"{subtype} codec at {sample_rate} Hz failed: {error}") from None
    return decoded


def _undelay(decoded: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`decoded` with an encoder's leading delay removed, cut to the reference's length: the lag (up to
    MAX_CODEC_DELAY samples) where the two correlate best."""
    from scipy.signal import correlate

    extra = min(len(decoded) - len(reference), MAX_CODEC_DELAY)
    if extra <= 0:
        return fit_length(decoded, len(reference))
    span = min(len(reference), DELAY_SEARCH)
    scores = correlate(decoded[:span + extra], reference[:span], mode="valid", method="fft")
    lag = int(np.argmax(scores[:extra + 1]))
    return fit_length(decoded[lag:], len(reference))


def mp3_compression_level(bitrate_kbps: float, sample_rate: int) -> float:
    """libsndfile's compression level (0 best .. 1 smallest) for a constant MP3 bit rate: it spans the
    bit rates of the sample rate's MPEG version linearly."""
    low, high = MP3_BITRATES[sample_rate]
    return float(np.clip((high - bitrate_kbps) / (high - low), 0.0, 0.999))


def codec(signal: np.ndarray, sample_rate: int, name: str, bitrate_kbps: float = 16.0) -> np.ndarray:
    """Encode with a lossy codec and decode again, same length and rate.

    mp3: constant `bitrate_kbps` (LAME; at a sample rate MPEG has, else through 16 kHz);
    gsm: GSM 06.10 full rate (13 kbps) at 8 kHz; mulaw / alaw: G.711 8-bit companding at the signal's
    rate; opus: `bitrate_kbps` roughly (libsndfile sets Opus by compression level), through 16 kHz
    where the rate is not one Opus has.
    """
    if name == "mulaw" or name == "alaw":
        return fit_length(_roundtrip(signal, sample_rate, "WAV", "ULAW" if name == "mulaw" else "ALAW"), len(signal))
    if name == "gsm":
        narrow = resample(signal, sample_rate, TELEPHONE_RATE)
        decoded = fit_length(_roundtrip(narrow, TELEPHONE_RATE, "WAV", "GSM610"), len(narrow))
        return fit_length(resample(decoded, TELEPHONE_RATE, sample_rate), len(signal))
    if name == "mp3":
        rate = sample_rate if sample_rate in MP3_BITRATES else 16000
        coded = resample(signal, sample_rate, rate)
        decoded = _roundtrip(coded, rate, "MP3", "MPEG_LAYER_III", bitrate_mode="CONSTANT",
                             compression_level=mp3_compression_level(bitrate_kbps, rate))
        decoded = _undelay(decoded, coded)
        return fit_length(resample(decoded, rate, sample_rate), len(signal))
    if name == "opus":
        rate = sample_rate if sample_rate in OPUS_RATES else 16000
        coded = resample(signal, sample_rate, rate)
        level = float(np.clip(1.0 - (bitrate_kbps - OPUS_KBPS[0]) / (OPUS_KBPS[1] - OPUS_KBPS[0]), 0.0, 0.99))
        decoded = _undelay(_roundtrip(coded, rate, "OGG", "OPUS", compression_level=level), coded)
        return fit_length(resample(decoded, rate, sample_rate), len(signal))
    raise ValueError(f"unknown codec {name!r}; choose from {', '.join(CODECS)}")


# ---- silences ---------------------------------------------------------------------------------------

def floor_noise(length: int, rng: np.random.Generator, level_dbfs: Optional[float]) -> np.ndarray:
    """(length,) of digital silence (level None) or white noise at `level_dbfs` RMS (dB below full scale)."""
    if level_dbfs is None:
        return np.zeros(length, dtype=np.float32)
    return (rng.standard_normal(length) * 10.0 ** (level_dbfs / 20.0)).astype(np.float32)


def quiet_point(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> int:
    """A sample index between words: a random one of the quietest PAUSE_FRAME frames (the lowest
    fifth by energy) within PAUSE_SPAN of the utterance, at the frame's start."""
    frame = max(int(PAUSE_FRAME * sample_rate), 1)
    first, last = int(PAUSE_SPAN[0] * len(signal)) // frame, int(PAUSE_SPAN[1] * len(signal)) // frame
    if last <= first:
        return len(signal) // 2
    frames = signal[first * frame: last * frame].astype(np.float64).reshape(last - first, frame)
    energy = np.mean(np.square(frames), axis=1)
    quiet = np.flatnonzero(energy <= np.quantile(energy, 0.2))
    return int((first + quiet[int(rng.integers(0, len(quiet)))]) * frame)


def insert_silences(signal: np.ndarray, lead: np.ndarray, trail: np.ndarray, pause: np.ndarray,
                    pause_at: int) -> np.ndarray:
    """lead + signal[:pause_at] + pause + signal[pause_at:] + trail: the speech itself untouched."""
    return np.concatenate([lead, signal[:pause_at], pause, signal[pause_at:], trail]).astype(np.float32, copy=False)
