"""Live transcription: feed audio as it arrives, get partial results as people speak and a final result
with word times when an utterance ends.

    stream = StreamingTranscriber(load_model(), decoder="greedy")
    for chunk in chunks:                       # float32 mono in [-1, 1] at stream.sample_rate, any length
        update = stream.accept_audio(chunk)
        show(update.partial); keep(update.finals)
    keep(stream.finish().finals)

Endpointing: Silero VAD scores each 32 ms window of the stream; an utterance starts at the first speech
window (with a little context before it) and ends after `endpoint_silence_seconds` of non-speech, or is cut
at its quietest moment once it reaches `max_utterance_seconds`. Silence between utterances costs only the VAD
and keeps nothing but a fraction of a second of context, so a stream can run for hours.

What turns an utterance's audio into text depends on the model:
- utterance mode, for models that see the whole input at once (bidirectional layers, per-utterance
  normalisation; the bundled model): the utterance so far is re-transcribed every so often for the partial
  (at a bounded interval that grows with its length, so the cost per second of audio stays bounded), and
  once more, exactly as `Transcriber` does offline, for the final.
- true streaming, for models that can (`model.can_stream`: unidirectional DeepSpeech2 with lookahead, and
  causal features: running or global normalisation): features, model and decoder all run incrementally on
  each new piece of audio, so each piece costs the same however long the utterance is; the partial is the
  decoder's best hypothesis so far.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

import numpy as np

from deepspeech_pytorch.configs import DecoderConfig, FeatureConfig
from deepspeech_pytorch.decoders import (BeamSearchDecoder, Decoder, GreedyDecoder, Hypothesis, WordTiming,
                                         build_decoder, words_from_frames)
from deepspeech_pytorch.inference import ENERGY_FRAME_SECONDS, LoadedModel, Transcriber, Transcription
from deepspeech_pytorch.vad import CONTEXT as VAD_CONTEXT
from deepspeech_pytorch.vad import STATE_SIZE as VAD_STATE_SIZE
from deepspeech_pytorch.vad import VAD_SAMPLE_RATE, VadConfig, model_files
from deepspeech_pytorch.vad import WINDOW as VAD_WINDOW

if TYPE_CHECKING:  # torch is imported where a model streams, never by utterance mode on the onnxruntime backend
    from torch import Tensor

logger = logging.getLogger(__name__)

VAD_WINDOW_SECONDS = 0.032  # Silero scores 512 samples at 16 kHz (256 at 8 kHz)
VAD_HYSTERESIS = 0.15  # a window is non-speech below threshold - this (Silero's own streaming rule)
PRE_ROLL_SECONDS = 0.2  # audio kept before the first speech window (VadConfig.pad_seconds offline)
TRAIL_SECONDS = 0.2  # audio after the last speech window that belongs to the utterance (at least the model's
# lookahead when it streams); the rest of the endpoint's silence is not transcribed (VadConfig.pad_seconds offline)
PARTIAL_INTERVAL_SECONDS = 0.3  # new audio between two partials, at least
PARTIAL_COST_FRACTION = 0.1  # utterance mode: a partial re-decodes the utterance at most every this x its length
QUIET_CUT_SECONDS = 3.0  # an utterance at max_utterance_seconds is cut at the quietest 10 ms of its last seconds


@dataclass
class StreamUpdate:
    """What one `accept_audio` or `finish` call produced."""

    partial: str = ""  # the current utterance's text so far ("" when none is under way)
    finals: List[Transcription] = field(default_factory=list)  # utterances ended in this call, in order; word
    # start/end are seconds in the stream's timeline (0 = its first sample)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


# ---- voice-activity detection, one state per stream -------------------------------------------------------

_SESSIONS: Dict[str, Any] = {}  # ONNX Runtime sessions by model file, shared by all streams (run is thread-safe)
_SESSIONS_LOCK = threading.Lock()


def _vad_session(path: str) -> Any:
    import onnxruntime

    with _SESSIONS_LOCK:
        if path not in _SESSIONS:
            options = onnxruntime.SessionOptions()
            options.inter_op_num_threads = 1
            options.intra_op_num_threads = 1  # a small model: more threads only add hand-over time
            _SESSIONS[path] = onnxruntime.InferenceSession(path, sess_options=options,
                                                           providers=["CPUExecutionProvider"])
        return _SESSIONS[path]


class StreamingVad:
    """Silero VAD over a stream: a speech probability per 32 ms window (512 samples at 16 kHz), the model's
    recurrent state and the last 64 samples of context carried from call to call, so a stream scored piece
    by piece gets the probabilities of one pass (`vad.speech_probabilities`). The ONNX model runs in ONNX
    Runtime (one session shared by all streams, each stream with its own state); without onnxruntime each
    stream loads its own copy of the package's TorchScript model. Audio at another rate than 16 kHz is
    resampled on the way in."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.resampler = None
        if sample_rate != VAD_SAMPLE_RATE:
            import soxr

            self.resampler = soxr.ResampleStream(sample_rate, VAD_SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        self.pending = np.zeros(0, np.float32)  # 16 kHz samples short of a whole window
        self.context = np.zeros(VAD_CONTEXT, np.float32)
        files = model_files()
        self.session = self.torch_model = None
        if files and importlib.util.find_spec("onnxruntime") is not None:
            self.session = _vad_session(files[0])
            names = {entry.name for entry in self.session.get_inputs()}
            self.sequence = {"h", "c"} <= names
            self.state = ([np.zeros((1, 1, VAD_STATE_SIZE), np.float32)] * 2 if self.sequence
                          else [np.zeros((2, 1, VAD_STATE_SIZE), np.float32)])
        else:
            import warnings

            import torch

            threads = torch.get_num_threads()
            try:
                from silero_vad import load_silero_vad
            except ImportError:
                raise RuntimeError("streaming needs Silero VAD: pip install onnxruntime silero-vad") from None
            finally:
                torch.set_num_threads(threads)  # the package sets one thread on import
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self.torch_model = load_silero_vad()

    def probabilities(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """samples: the stream's next samples at `sample_rate` -> the speech probability of each 32 ms window
        they complete, shape (windows,). `last`: the end of the stream, a final short window is zero-padded."""
        audio = samples if self.resampler is None else self.resampler.resample_chunk(samples, last=last)
        audio = np.concatenate([self.pending, audio.astype(np.float32, copy=False)])
        count = len(audio) // VAD_WINDOW
        if last and len(audio) % VAD_WINDOW:
            audio = np.concatenate([audio, np.zeros(VAD_WINDOW - len(audio) % VAD_WINDOW, np.float32)])
            count += 1
        self.pending = audio[count * VAD_WINDOW:].copy()
        if count == 0:
            return np.zeros(0, np.float32)
        frames = audio[: count * VAD_WINDOW].reshape(count, VAD_WINDOW)
        context = np.concatenate([self.context[None, :], frames[:-1, -VAD_CONTEXT:]])
        self.context = frames[-1, -VAD_CONTEXT:].copy()
        windows = np.ascontiguousarray(np.concatenate([context, frames], axis=1))
        if self.session is not None and self.sequence:
            scores, hidden, cell = self.session.run(["speech_probs", "hn", "cn"],
                                                    {"input": windows, "h": self.state[0], "c": self.state[1]})
            self.state = [hidden, cell]
            return np.asarray(scores, np.float32).reshape(-1)
        scores = []
        if self.session is not None:
            rate = np.array(VAD_SAMPLE_RATE, dtype=np.int64)
            for window in windows:
                output, self.state[0] = self.session.run(None, {"input": window[None, :], "state": self.state[0],
                                                                 "sr": rate})
                scores.append(float(np.asarray(output).reshape(-1)[0]))
        else:
            import torch

            with torch.inference_mode():
                for window in frames:
                    scores.append(float(self.torch_model(torch.from_numpy(window.copy()), VAD_SAMPLE_RATE)))
        return np.asarray(scores, np.float32)


# ---- what turns an utterance's audio into text -------------------------------------------------------------

class Recognizer:
    """One utterance's recognition: audio in as it arrives, the best text so far, the final hypothesis.
    Word times are seconds from the utterance's first sample."""

    def accept(self, samples: np.ndarray) -> None:
        raise NotImplementedError

    def partial(self) -> str:
        raise NotImplementedError

    def final(self, audio: np.ndarray) -> Hypothesis:
        """The result for exactly `audio`: the utterance's audio from its start to a little after its speech
        (shorter or longer than what `accept` was given: the silence after it was held back, or a cut fell
        inside it)."""
        raise NotImplementedError


class UtteranceRecognizer(Recognizer):
    """For models that need the whole input: keeps the utterance's audio and re-transcribes it."""

    def __init__(self, partial_transcriber: Transcriber, final_transcriber: Transcriber, interval: float,
                 cost_fraction: float):
        self.partials, self.finals = partial_transcriber, final_transcriber
        self.rate = final_transcriber.sample_rate
        self.interval, self.cost_fraction = interval, cost_fraction
        self.pieces: List[np.ndarray] = []
        self.length = 0
        self.decoded_at = 0  # samples the last partial saw
        self.text = ""

    def accept(self, samples: np.ndarray) -> None:
        if len(samples):
            self.pieces.append(samples)
            self.length += len(samples)

    def audio(self) -> np.ndarray:
        if len(self.pieces) > 1:
            self.pieces = [np.concatenate(self.pieces)]
        return self.pieces[0] if self.pieces else np.zeros(0, np.float32)

    def partial(self) -> str:
        due = max(self.interval * self.rate, self.cost_fraction * self.length)
        if self.length - self.decoded_at >= due and self.length >= self.finals.loaded.features.n_fft:
            self.text = self.partials.transcribe(self.audio(), word_timings=False).text
            self.decoded_at = self.length
        return self.text

    def final(self, audio: np.ndarray) -> Hypothesis:
        if len(audio) < self.finals.loaded.features.n_fft:
            return Hypothesis("", [])
        result = self.finals.transcribe(audio, word_timings=True)
        return Hypothesis(result.text, result.words)


# ---- true streaming: causal features, the model chunk by chunk, incremental decoding ---------------------

CAUSAL_NORMALIZATIONS = ("running", "global", "none")  # feature normalisations that use no future frames


class StreamingFeatures:
    """Features of a stream computed chunk by chunk: the frames `features.spectrogram` gives for the whole
    stream (same window, filterbank and normalisation functions), for the causal normalisations only (running:
    each frame normalised by the statistics of the frames up to it; global; none).

    A frame comes out once its whole analysis window has arrived; `final=True` also gives the last frames,
    whose windows reach past the end of the stream (zeros there, as the one-pass STFT pads them).
    """

    def __init__(self, config: FeatureConfig, mean: Optional["Tensor"] = None, std: Optional["Tensor"] = None):
        import torch

        from deepspeech_pytorch import features

        self.config = config
        self.mode = features.normalization_of(config)
        if self.mode not in CAUSAL_NORMALIZATIONS:
            raise ValueError(f"features.normalization={self.mode} looks at the whole utterance and cannot stream; "
                             f"streaming needs one of {', '.join(CAUSAL_NORMALIZATIONS)}")
        if mean is None or std is None:
            mean, std = features.config_statistics(config)
        if self.mode != "none" and (mean is None or std is None):
            raise ValueError(f"features.normalization={self.mode} needs the feature statistics stored with the model")
        self.mean, self.std = mean, std
        self.window = features.window_for(config)
        self.filterbank = (features.mel_filterbank(config.n_mels, config.n_fft, config.sample_rate)
                           if config.kind == "mel" else None)
        self.hop, self.n_fft = config.hop_length, config.n_fft
        self.half = self.n_fft // 2  # the one-pass STFT's centring pad
        self.lead = -(-self.half // self.hop)  # frames recomputed before the first new one: their windows'
        self.samples = torch.zeros(self.lead * self.hop)  # left context, zeros before the stream
        self.received = 0  # samples of the stream so far
        self.next_frame = 0  # the stream's next frame to come out
        if self.mode == "running":  # statistics so far, with the global prior weighted as prior frames
            prior = features.RUNNING_PRIOR_FRAMES
            self.frames = float(prior)
            self.sums = prior * mean.double()
            self.squares = prior * (std.double().pow(2) + mean.double().pow(2))
        self.finished = False

    def accept(self, samples: "Tensor", final: bool = False) -> "Tensor":
        """samples: the stream's next samples, shape (samples,) float -> its new frames, (freq, frames)."""
        import torch

        from deepspeech_pytorch import features

        if self.finished:
            raise ValueError("the stream's features are finished")
        self.finished = final
        self.samples = torch.cat([self.samples, samples.float()])
        self.received += len(samples)
        last = (self.received // self.hop if final
                else (self.received + self.half - self.n_fft) // self.hop)  # the last frame complete now
        count = last + 1 - self.next_frame
        if count <= 0:
            return torch.zeros(self.config.num_features, 0)
        buffered = self.samples[None, :]
        raw, _ = features.log_spectrogram(buffered, torch.tensor([buffered.shape[1]]), self.config, self.window,
                                          self.filterbank)
        raw = raw[:, :, self.lead: self.lead + count]
        self.samples = self.samples[count * self.hop:]
        self.next_frame += count
        lengths = torch.tensor([count])
        if self.mode == "none":
            return raw[0]
        if self.mode == "global":
            return features.normalize_global(raw, lengths, self.mean.to(raw), self.std.to(raw))[0]
        mean = self.sums / self.frames  # the running statistics so far are the prior of this chunk's frames
        std = (self.squares / self.frames - mean.pow(2)).clamp(min=0).sqrt()
        normalised = features.normalize_running(raw, lengths, mean.to(raw), std.to(raw), prior_frames=self.frames)
        valid = raw[0].double()
        self.frames += count
        self.sums = self.sums + valid.sum(dim=1)
        self.squares = self.squares + valid.pow(2).sum(dim=1)
        return normalised[0]


class GreedyStream:
    """Best-path decoding frame by frame: the label path's last label carries from chunk to chunk."""

    def __init__(self, decoder: GreedyDecoder):
        self.alphabet, self.seconds_per_frame = decoder.alphabet, decoder.seconds_per_frame
        self.labels: List[int] = []
        self.starts: List[int] = []
        self.ends: List[int] = []
        self.previous = 0  # blank
        self.frames = 0

    def step(self, log_probs: "Tensor") -> None:
        """log_probs: (time, classes) of the next frames."""
        for label in log_probs.argmax(dim=-1).tolist():
            if label != 0 and label == self.previous:
                self.ends[-1] = self.frames
            elif label != 0:
                self.labels.append(label)
                self.starts.append(self.frames)
                self.ends.append(self.frames)
            self.previous = label
            self.frames += 1

    def best(self) -> Hypothesis:
        text = " ".join(self.alphabet.decode(self.labels).split())
        return Hypothesis(text, words_from_frames(self.labels, self.starts, self.ends, self.alphabet,
                                                  self.seconds_per_frame))

    def end(self) -> Hypothesis:
        return self.best()


BEAM_LOOK_BACK = 150  # frames (3 s at 20 ms) the beam search keeps open behind its newest frame
BEAM_PRUNE_EVERY = 50  # frames between two prunings
FLASHLIGHT_LOOK_BACK_LIMIT = 100  # frames flashlight may go further back, to a word's end, when it prunes


@dataclass
class _Path:
    """A search result put together from the pruned part and flashlight's result since (its fields)."""

    tokens: List[int]
    words: List[int]
    score: float


class BeamStream:
    """flashlight-text's beam search (with the decoder's KenLM and lexicon) fed frame by frame: decode_begin,
    decode_step per chunk, decode_end; the search and result of `BeamSearchDecoder.decode_one` on all the
    frames at once, but for one thing that bounds its memory: every BEAM_PRUNE_EVERY frames the hypotheses are
    pruned to those that share the best one's path up to `look_back` frames ago (at a word's end), as wav2letter's
    streaming decoder does. A result then differs from the one-pass search only where the best path changed
    more than `look_back` frames (3 s) back."""

    def __init__(self, decoder: BeamSearchDecoder, look_back: int = BEAM_LOOK_BACK):
        self.decoder = decoder
        self.search = decoder.new_search()
        self.search.decode_begin()
        self.look_back = look_back
        self.frames = 0
        self.pruned = 0  # frames whose path is settled (kept in self.tokens / self.words)
        self.tokens: List[int] = []
        self.words: List[int] = []
        self.cached: Optional[Tuple[int, Hypothesis]] = None

    @property
    def open_frames(self) -> int:
        """Frames the search still keeps hypotheses for."""
        return self.frames - self.pruned

    def step(self, log_probs: "Tensor") -> None:
        if log_probs.shape[0]:
            import torch

            emissions = log_probs.detach().to("cpu", torch.float32).contiguous()
            self.search.decode_step(emissions.data_ptr(), emissions.shape[0], emissions.shape[1])
            self.frames += emissions.shape[0]
            if self.open_frames > self.look_back + FLASHLIGHT_LOOK_BACK_LIMIT + BEAM_PRUNE_EVERY:
                self._prune()

    def _prune(self) -> None:
        before = len(self.search.get_best_hypothesis().tokens)
        settled = self.search.get_best_hypothesis(self.look_back)  # the path prune keeps, up to where it cuts
        self.search.prune(self.look_back)
        moved = before - len(self.search.get_best_hypothesis().tokens)
        if moved <= 0:
            return
        if len(settled.tokens) - 1 != moved:
            raise RuntimeError(f"flashlight pruned {moved} frames, not the {len(settled.tokens) - 1} it reported")
        self.tokens += list(settled.tokens)[:moved]
        self.words += list(settled.words)[:moved]
        self.pruned += moved

    def _whole(self, result: Any) -> _Path:
        return _Path(self.tokens + list(result.tokens), self.words + list(result.words), result.score)

    def best(self) -> Hypothesis:
        """The best hypothesis so far: its complete words, then the letters of a word under way."""
        if self.cached is None or self.cached[0] != self.frames:
            if self.frames == 0:
                return Hypothesis("", [])
            result = self._whole(self.search.get_best_hypothesis())
            hypothesis = self.decoder.hypothesis(result, self.frames)
            if self.decoder.trie is not None:  # the lexicon's words so far, and the spelling of one under way
                spelled = [word.word for word in hypothesis.words]
                done = [self.decoder.words[label] for label in result.words if label >= 0]
                hypothesis.text = " ".join(done + spelled[len(done):])
            self.cached = (self.frames, hypothesis)
        return self.cached[1]

    def end(self) -> Hypothesis:
        import torch

        if self.decoder.trie is not None and self.frames:  # the closing frame decode_one adds: only '|'
            closing = torch.full((1, len(self.decoder.alphabet)), -1.0e9)
            closing[0, self.decoder.space] = 0.0
            self.search.decode_step(closing.data_ptr(), 1, closing.shape[1])
        self.search.decode_end()
        results = self.search.get_all_final_hypothesis() if self.frames else []
        if not results:
            return Hypothesis("", [])
        return self.decoder.hypothesis(self._whole(results[0]), self.frames)


def decoder_stream(decoder: Decoder):
    """An incremental twin of a decoder (greedy or beam search)."""
    if isinstance(decoder, BeamSearchDecoder):
        return BeamStream(decoder)
    if isinstance(decoder, GreedyDecoder):
        return GreedyStream(decoder)
    raise ValueError(f"{type(decoder).__name__} has no incremental form for streaming; use greedy or beam")


def streams_natively(loaded: LoadedModel) -> bool:
    """Whether the model runs incrementally: a torch model that can stream (unidirectional DeepSpeech2 with
    lookahead) over causal features. Other models get utterance mode."""
    if getattr(loaded, "backend", "torch") != "torch" or not getattr(loaded.model, "can_stream", False):
        return False
    from deepspeech_pytorch.features import normalization_of

    return normalization_of(loaded.features) in CAUSAL_NORMALIZATIONS


class StreamingRecognizer(Recognizer):
    """For models that stream: features, model and decoder advance with each new piece of audio."""

    def __init__(self, loaded: LoadedModel, decoder: Decoder):
        self.loaded, self.decoder = loaded, decoder
        self.model = loaded.model
        self.device = next(self.model.parameters()).device
        self.features = StreamingFeatures(loaded.features)
        self.state = self.model.initial_state(1)
        self.decoding = decoder_stream(decoder)
        self.consumed = 0  # samples fed so far

    def accept(self, samples: np.ndarray, final: bool = False) -> None:
        import torch

        self.consumed += len(samples)
        with torch.inference_mode():
            frames = self.features.accept(torch.from_numpy(np.ascontiguousarray(samples)), final)
            logits, self.state = self.model.forward_chunk(frames[None].to(self.device), self.state, final)
            self.decoding.step(torch.log_softmax(logits[0].float(), dim=-1).cpu())

    def partial(self) -> str:
        return self.decoding.best().text

    def final(self, audio: np.ndarray) -> Hypothesis:
        if len(audio) < self.consumed:  # a cut inside what was fed: that part again, on its own (rare)
            return StreamingRecognizer(self.loaded, self.decoder).final(audio)
        self.accept(audio[self.consumed:], final=True)
        return self.decoding.end()


# ---- the stream ------------------------------------------------------------------------------------------

_DECODERS: "OrderedDict[Tuple[int, str], Tuple[LoadedModel, Decoder]]" = OrderedDict()
_DECODERS_LOCK = threading.Lock()
_DECODER_CACHE_SIZE = 4


def shared_decoder(loaded: LoadedModel, config: Union[DecoderConfig, str], seconds_per_output_frame: float) -> Decoder:
    """The decoder a config asks for, built once per model and config and shared by all streams (a beam
    search loads its KenLM model and lexicon, about a second; decoding with it is thread-safe)."""
    key = (id(loaded), repr(config), seconds_per_output_frame)
    with _DECODERS_LOCK:
        if key in _DECODERS and _DECODERS[key][0] is loaded:
            _DECODERS.move_to_end(key)
            return _DECODERS[key][1]
    decoder = build_decoder(config, loaded.alphabet, seconds_per_output_frame, loaded.model_lm)
    with _DECODERS_LOCK:
        _DECODERS[key] = (loaded, decoder)
        while len(_DECODERS) > _DECODER_CACHE_SIZE:
            _DECODERS.popitem(last=False)
    return decoder


def _check_seconds(name: str, value: float, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name}={value!r} must be a number of at least {minimum}")
    return float(value)


class StreamingTranscriber:
    """One live stream: feed audio as it arrives (`accept_audio`), get partial and final results; `finish()`
    at the end of the stream. Not thread-safe: one stream is fed from one thread at a time (many streams may
    share one `LoadedModel`; a beam search's KenLM model and lexicon are loaded once and shared).

    decoder: "greedy", "beam" (with the model's own LM when it ships one) or a DecoderConfig.
    endpoint_silence_seconds: trailing non-speech that ends an utterance.
    word_timings: whether finals carry word start/end times.
    max_utterance_seconds: longer speech is cut at its quietest 10 ms among the last 3 s before this length and
        finalised; the rest goes on as the next utterance. It bounds the utterance's audio a stream holds (a beam
        search in streaming mode keeps hypotheses for its last few seconds only, see BeamStream).
    partial_interval_seconds: utterance mode re-transcribes for a partial after at least this much new audio
        (and at least a tenth of the utterance so far); streaming mode updates the partial on every call.
    vad_threshold: Silero's speech probability from which a 32 ms window is speech.

    `mode` is "streaming" when the model runs incrementally (`streams_natively`), else "utterance". Unlike the
    offline VAD, the stream's does not level-normalise quiet recordings (it cannot see the recording's peak).
    """

    def __init__(self, loaded: LoadedModel, decoder: Union[DecoderConfig, str] = "greedy", *,
                 endpoint_silence_seconds: float = 0.8, word_timings: bool = True,
                 max_utterance_seconds: float = 30.0, partial_interval_seconds: float = PARTIAL_INTERVAL_SECONDS,
                 vad_threshold: float = VadConfig.threshold):
        self.loaded = loaded
        self.endpoint_silence = _check_seconds("endpoint_silence_seconds", endpoint_silence_seconds, 0.05)
        self.max_utterance = _check_seconds("max_utterance_seconds", max_utterance_seconds, 2.0)
        self.partial_interval = _check_seconds("partial_interval_seconds", partial_interval_seconds, 0.0)
        self.word_timings = bool(word_timings)
        self.sample_rate: int = loaded.features.sample_rate
        self.mode = "streaming" if streams_natively(loaded) else "utterance"
        self.vad = StreamingVad(self.sample_rate)
        self.vad_threshold = _check_seconds("vad_threshold", vad_threshold, 0.0)
        self._speaking = False  # the VAD's decision for the last window (with hysteresis)
        self._windows = 0  # VAD windows scored so far
        frame_seconds = loaded.features.hop_length / self.sample_rate * loaded.model.time_stride
        self.decoder = shared_decoder(loaded, decoder, frame_seconds)
        self._trail = int(TRAIL_SECONDS * self.sample_rate)
        if self.mode == "streaming":
            decoder_stream(self.decoder)  # refuses a decoder without an incremental form now, not at the first word
            lookahead = loaded.model.latency_frames * loaded.features.hop_length
            self._trail = max(self._trail, lookahead + loaded.features.n_fft)
        chunk = self.max_utterance + 1.0
        # finals: the offline pipeline (VAD inside the utterance included) on the utterance's audio, so a final
        # is what `Transcriber.transcribe` gives for it; partials: the audio so far as it is, without VAD
        self._final_transcriber = Transcriber(loaded, "greedy", chunk_seconds=chunk, batch_size=1, vad=True)
        self._final_transcriber.decoder = self.decoder
        self._partial_transcriber = Transcriber(loaded, "greedy", chunk_seconds=chunk, batch_size=1, vad=False)
        self._partial_transcriber.decoder = self.decoder
        # the stream
        self._leftover = np.zeros(0, np.float32)  # samples past the last whole VAD window
        self._position = 0  # samples of the stream consumed by the VAD so far
        self._pre_roll = np.zeros(0, np.float32)  # the latest audio before an utterance (at most PRE_ROLL_SECONDS)
        self._recognizer: Optional[Recognizer] = None
        self._start = 0  # the current utterance's first sample in the stream
        self._audio: List[np.ndarray] = []  # its audio (kept for a cut at max_utterance_seconds)
        self._unfed: List[np.ndarray] = []  # its audio not yet given to the recognizer
        self._length = 0  # its samples so far
        self._last_speech = 0  # the end of its last speech window, in samples from its start
        self._finished = False
        self._transcribed = 0  # samples of the finished utterances' results

    # -- public --

    def accept_audio(self, samples: np.ndarray) -> StreamUpdate:
        """Feed the next samples: float32 mono in [-1, 1] at `sample_rate`, shape (samples,), any length
        (an empty array is fine). Returns the current partial and any utterances that ended. Raw PCM bytes are
        refused (ValueError): convert them first, `np.frombuffer(data, "<i2") / 32768` for 16-bit PCM."""
        if self._finished:
            raise ValueError("the stream is finished: start a new StreamingTranscriber")
        samples = self._check(samples)
        finals: List[Transcription] = []
        self._windows_of(samples, self.vad.probabilities(samples), finals)
        if self._recognizer is not None:
            self._feed()
        partial = self._recognizer.partial() if self._recognizer is not None else ""
        return StreamUpdate(partial, finals)

    def finish(self) -> StreamUpdate:
        """End of the stream: the final result of the utterance under way, if any (audio short of a VAD window
        belongs to it). After this the stream takes no more audio."""
        if self._finished:
            return StreamUpdate()
        self._finished = True
        finals: List[Transcription] = []
        empty = np.zeros(0, np.float32)
        self._windows_of(empty, self.vad.probabilities(empty, last=True), finals)
        if self._recognizer is not None:
            self._add(self._leftover)
            self._position += len(self._leftover)
            if self._speaking:  # cut off mid-speech: all of it
                self._last_speech = self._length
            self._finalise(min(self._length, self._last_speech + self._trail), finals)
        self._leftover = empty
        return StreamUpdate("", finals)

    @property
    def seconds(self) -> float:
        """Stream time consumed so far (seconds)."""
        return self._position / self.sample_rate

    @property
    def transcribed_seconds(self) -> float:
        """Audio the finals so far are the result of (seconds): the utterances up to their trails, not the
        silence between them (nor, in streaming mode, what the model heard of it)."""
        return self._transcribed / self.sample_rate

    @property
    def buffered_samples(self) -> int:
        """Samples held by this stream: the utterance under way, the context before it, a partial window."""
        return self._length + len(self._pre_roll) + len(self._leftover)

    # -- inside --

    def _check(self, samples: np.ndarray) -> np.ndarray:
        if isinstance(samples, (bytes, bytearray, memoryview)):  # np.asarray would make one opaque 0-d item
            raise ValueError(f"accept_audio takes float samples in [-1, 1] at {self.sample_rate} Hz, not "
                             f"{type(samples).__name__}: convert 16-bit little-endian PCM with "
                             "np.frombuffer(data, '<i2') / 32768")
        samples = np.asarray(samples)
        if samples.ndim != 1:
            raise ValueError(f"accept_audio takes mono samples of shape (samples,), not {samples.shape}")
        if samples.dtype.kind != "f":
            raise ValueError(f"accept_audio takes float samples in [-1, 1], not {samples.dtype} "
                             "(16-bit PCM: samples.astype(np.float32) / 32768)")
        samples = samples.astype(np.float32, copy=False)
        if not np.all(np.isfinite(samples)):
            raise ValueError("accept_audio: the samples contain NaN or infinite values")
        return samples

    def _new_recognizer(self) -> Recognizer:
        if self.mode == "streaming":
            return StreamingRecognizer(self.loaded, self.decoder)
        return UtteranceRecognizer(self._partial_transcriber, self._final_transcriber, self.partial_interval,
                                   PARTIAL_COST_FRACTION)

    def _add(self, samples: np.ndarray) -> None:
        if len(samples):
            self._audio.append(samples)
            self._length += len(samples)
            self._unfed.append(samples)

    def _feed(self) -> None:
        """Give the recognizer the audio added since it was last fed, in one piece (one model call per
        `accept_audio`, not one per VAD window). A streaming model is not given silence past the utterance's
        trail: it would only hear it (and the endpoint may leave it out), unless speech follows."""
        if not self._unfed:
            return
        audio = np.concatenate(self._unfed) if len(self._unfed) > 1 else self._unfed[0]
        fed = self._length - len(audio)
        limit = self._length if self.mode == "utterance" else max(fed, min(self._length, self._last_speech + self._trail))
        if limit > fed:
            self._recognizer.accept(audio[: limit - fed])
        self._unfed = [audio[limit - fed:]] if limit < self._length else []

    def _windows_of(self, samples: np.ndarray, probabilities: np.ndarray, finals: List[Transcription]) -> None:
        """Hand the stream's audio on, one scored VAD window at a time."""
        audio = np.concatenate([self._leftover, samples]) if len(self._leftover) else samples
        used = 0
        for probability in probabilities:
            self._windows += 1
            end = min(len(audio), int(round(self._windows * VAD_WINDOW * self.sample_rate / VAD_SAMPLE_RATE))
                      - self._position + used)
            if probability >= self.vad_threshold:
                self._speaking = True
            elif probability < self.vad_threshold - VAD_HYSTERESIS:
                self._speaking = False
            self._step(audio[used:end], self._speaking, finals)
            used = max(used, end)
        self._leftover = audio[used:].copy()

    def _step(self, window: np.ndarray, speech: bool, finals: List[Transcription]) -> None:
        """One VAD window of the stream."""
        self._position += len(window)
        if self._recognizer is None:
            if not speech:
                keep = int(PRE_ROLL_SECONDS * self.sample_rate)
                self._pre_roll = np.concatenate([self._pre_roll, window])[-keep:]
                return
            self._begin(self._position - len(window) - len(self._pre_roll), self._pre_roll)
            self._pre_roll = np.zeros(0, np.float32)
        self._add(window)
        if speech:
            self._last_speech = self._length
        elif self._length - self._last_speech >= self.endpoint_silence * self.sample_rate:
            end = min(self._length, self._last_speech + self._trail)
            self._finalise(end, finals)
            return
        if self._length >= self.max_utterance * self.sample_rate:
            self._cut(finals)

    def _begin(self, start: int, context: np.ndarray) -> None:
        self._recognizer = self._new_recognizer()
        self._start = start
        self._audio, self._unfed, self._length, self._last_speech = [], [], 0, 0
        self._add(context)

    def _finalise(self, end: int, finals: List[Transcription]) -> None:
        """End the utterance under way at `end` samples from its start: its result is of its audio up to there;
        what follows is kept as context."""
        self._unfed = []
        self._audio = [np.concatenate(self._audio)] if len(self._audio) > 1 else self._audio
        audio = self._audio[0] if self._audio else np.zeros(0, np.float32)
        hypothesis = self._recognizer.final(audio[:end])
        self._transcribed += end
        offset = self._start / self.sample_rate
        duration = end / self.sample_rate
        if hypothesis.text:
            words = [WordTiming(w.word, offset + min(w.start, duration), offset + min(w.end, duration))
                     for w in hypothesis.words] if self.word_timings else []
            finals.append(Transcription(hypothesis.text, words, duration))
        keep = int(PRE_ROLL_SECONDS * self.sample_rate)
        self._pre_roll = audio[max(end, len(audio) - keep):].copy()
        self._recognizer, self._audio, self._length = None, [], 0

    def _cut(self, finals: List[Transcription]) -> None:
        """The utterance reached max_utterance_seconds: finalise it up to its quietest 10 ms among the last
        few seconds, and go on with the rest as a new utterance."""
        audio = np.concatenate(self._audio)
        frame = max(1, int(ENERGY_FRAME_SECONDS * self.sample_rate))
        search = int(min(QUIET_CUT_SECONDS, self.max_utterance / 2) * self.sample_rate)
        start = max(frame, len(audio) - search)
        usable = (len(audio) - start) // frame * frame
        energy = np.square(audio[start: start + usable]).reshape(-1, frame).mean(axis=1)
        cut = start + int(np.argmin(energy)) * frame + frame // 2
        last_speech = self._last_speech
        utterance_start = self._start
        self._finalise(cut, finals)
        self._begin(utterance_start + cut, audio[cut:])
        self._last_speech = max(0, last_speech - cut)
        self._pre_roll = np.zeros(0, np.float32)
