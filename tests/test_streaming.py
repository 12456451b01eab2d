"""Streaming: chunked model, features and decoders equal their one-pass forms; StreamingTranscriber on real
speech (espeak-ng), in utterance mode (the bundled bidirectional model) and true streaming (a unidirectional
model with lookahead over running-normalised features)."""

import dataclasses

import numpy as np
import pytest
import torch

from conftest import speak
from deepspeech_pytorch import features as F
from deepspeech_pytorch.audio import load_audio
from deepspeech_pytorch.configs import FeatureConfig
from deepspeech_pytorch.decoders import BeamSearchDecoder, GreedyDecoder
from deepspeech_pytorch.inference import LoadedModel, Transcriber, load_model
from deepspeech_pytorch.models import StreamingNotSupported, build_model, model_config, preset
from deepspeech_pytorch.streaming import (BeamStream, GreedyStream, StreamingFeatures, StreamingRecognizer,
                                          StreamingTranscriber, StreamingVad, StreamUpdate)
from deepspeech_pytorch.vad import speech_probabilities

RATE = 16000
FIRST, SECOND = "the cat sat on the mat", "open the door please"


def unidirectional(rnn_type="gru", features=40, lookahead=4, seed=0):
    """A random-weight unidirectional DeepSpeech2 in eval mode, its BatchNorm statistics random too (so
    eval-mode normalisation is really exercised) but for the head's (so the best path varies with the input)."""
    torch.manual_seed(seed)
    config = model_config({"architecture": "deepspeech2", "rnn_type": rnn_type, "hidden_size": 48,
                           "hidden_layers": 3, "bidirectional": False, "lookahead_context": lookahead,
                           "conv_channels": 8})
    model = build_model(config, features, 29)
    for module in list(model.conv.modules()) + list(model.rnns.modules()):
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_(1, 0.2)
            module.bias.data.normal_(0, 0.2)
    return model.eval()


def chunked_logits(model, features, size):
    state = model.initial_state(features.shape[0])
    outputs = []
    with torch.no_grad():
        for first in range(0, features.shape[2], size):
            logits, state = model.forward_chunk(features[:, :, first: first + size], state)
            outputs.append(logits)
        logits, state = model.forward_chunk(features[:, :, :0], state, final=True)
    return torch.cat(outputs + [logits], dim=1)


# ---- the model ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
@pytest.mark.parametrize("frames", [1, 2, 57, 160])
def test_chunked_logits_equal_one_pass(rnn_type, frames):
    model = unidirectional(rnn_type)
    features = torch.randn(2, 40, frames)
    with torch.no_grad():
        expected, lengths = model(features, torch.tensor([frames, frames]))
    assert int(lengths[0]) == expected.shape[1]
    for size in (1, 7, 13, 64):
        torch.testing.assert_close(chunked_logits(model, features, size), expected, rtol=1e-4, atol=1e-4)


def test_lookahead_and_conv_context_are_held_back_until_they_arrive():
    """An output frame comes out as soon as its future context (model.latency_frames input frames) is in, and
    not before: it never changes afterwards, and the frames it did not wait for do not touch it."""
    model = unidirectional(lookahead=5)
    assert model.latency_frames == 15 + 2 * 5
    features = torch.randn(1, 40, 101)
    with torch.no_grad():
        logits, state = model.forward_chunk(features, model.initial_state())
        rest, _ = model.forward_chunk(features[:, :, :0], state, final=True)
    ready = (101 - 1 - model.latency_frames) // 2 + 1  # output j needs input frames up to 2j + latency_frames
    assert logits.shape[1] == ready == 38 and ready + rest.shape[1] == 51
    changed = features.clone()
    changed[:, :, 2 * (ready - 1) + model.latency_frames + 1:] += 1.0  # the last frame: not needed yet
    with torch.no_grad():
        again, _ = model.forward_chunk(changed, model.initial_state(), final=True)
    torch.testing.assert_close(again[:, :ready], logits)
    assert not torch.allclose(again[:, ready:], rest)


def test_forward_chunk_needs_eval_mode_and_a_live_state():
    model = unidirectional()
    state = model.initial_state()
    with torch.no_grad():
        _, state = model.forward_chunk(torch.randn(1, 40, 30), state, final=True)
        with pytest.raises(ValueError, match="ended"):
            model.forward_chunk(torch.randn(1, 40, 3), state)
        with pytest.raises(ValueError, match="shape"):
            model.forward_chunk(torch.randn(1, 39, 3), model.initial_state())
        with pytest.raises(ValueError, match="eval mode"):
            model.train().forward_chunk(torch.randn(1, 40, 3), model.initial_state())


def test_bidirectional_models_cannot_stream_and_the_stream_preset_can():
    bidirectional = build_model(preset("ds2_tiny"), 64, 29)
    assert not bidirectional.can_stream and bidirectional.latency_frames is None
    with pytest.raises(StreamingNotSupported):
        bidirectional.initial_state()
    with pytest.raises(StreamingNotSupported):
        bidirectional.forward_chunk(torch.zeros(1, 64, 10), None)
    streaming = build_model(preset("ds2_stream"), 64, 29)
    assert streaming.can_stream and streaming.describe()["streaming"]
    assert streaming.latency_frames * 0.01 < 0.3  # seconds of audio it waits for (10 ms frames)


# ---- features ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["mel", "linear"])
@pytest.mark.parametrize("mode", ["running", "global", "none"])
def test_chunked_features_equal_one_pass(kind, mode):
    samples = torch.from_numpy(load_audio(_sample("sample1.wav")))[: RATE * 2]
    base = FeatureConfig(kind=kind, n_mels=64)
    filterbank = F.mel_filterbank(64, base.n_fft, RATE) if kind == "mel" else None
    raw, _ = F.log_spectrogram(samples[None], torch.tensor([len(samples)]), base, F.window_for(base), filterbank)
    config = dataclasses.replace(base, normalization=mode, mean=(raw[0].mean(1) + 0.5).tolist(),
                                 std=(raw[0].std(1) * 1.5).tolist())  # statistics a little off, as on new audio
    for length in (len(samples), 100, 319, 320, 4321):
        audio = samples[:length]
        expected, _ = F.spectrogram(audio[None], torch.tensor([length]), config)
        for size in (37, 160, 320, 5120) if length < 5000 else (159, 320, 5120):
            stream = StreamingFeatures(config)
            pieces = [stream.accept(audio[first: first + size]) for first in range(0, length, size)]
            pieces.append(stream.accept(audio[:0], final=True))
            torch.testing.assert_close(torch.cat(pieces, dim=1), expected[0], rtol=1e-4, atol=1e-4)


def test_utterance_normalisation_cannot_stream():
    with pytest.raises(ValueError, match="normalization=utterance .* cannot stream"):
        StreamingFeatures(FeatureConfig(normalization="utterance"))
    with pytest.raises(ValueError, match="statistics"):
        StreamingFeatures(FeatureConfig(normalization="running"))


# ---- decoders ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundled():
    return load_model()


@pytest.fixture(scope="module")
def sample_log_probs(bundled):
    transcriber = Transcriber(bundled, vad=False)
    samples = torch.from_numpy(load_audio(_sample("sample3.wav")))
    features, lengths = transcriber.extractor(samples[None], torch.tensor([len(samples)]))
    log_probs, _ = transcriber.log_probs(features, lengths)
    return log_probs[0]


def test_incremental_greedy_equals_offline(bundled, sample_log_probs):
    decoder = GreedyDecoder(bundled.alphabet, 0.02)
    expected = decoder.decode(sample_log_probs[None], torch.tensor([len(sample_log_probs)]))[0]
    for size in (1, 5, 16, 1000):
        stream = GreedyStream(decoder)
        for first in range(0, len(sample_log_probs), size):
            stream.step(sample_log_probs[first: first + size])
        assert stream.end().text == expected.text and stream.end().words == expected.words
    assert expected.text.startswith("just once")


def test_incremental_beam_search_with_the_lm_equals_offline(bundled, sample_log_probs):
    decoder = BeamSearchDecoder(bundled.alphabet, 0.02, lm_path=bundled.language_model.path,
                                lexicon_path=bundled.language_model.lexicon_path, alpha=bundled.language_model.alpha,
                                beta=bundled.language_model.beta, beam_size=50)
    expected = decoder.decode_one(sample_log_probs)[0]
    stream = BeamStream(decoder)
    partials = []
    for first in range(0, len(sample_log_probs), 16):
        stream.step(sample_log_probs[first: first + 16])
        partials.append(stream.best().text)
    final = stream.end()
    assert final.text == expected.text and final.words == expected.words
    assert final.text.startswith("just once i wish")
    assert partials[len(partials) // 2] and partials[len(partials) // 2] != final.text  # grew as it went
    assert partials[-1].split()[:5] == final.text.split()[:5]


def test_pruned_incremental_beam_search_holds_few_frames_and_gives_the_same_result(bundled, sample_log_probs):
    """Pruning the search to the best path's past (look_back frames ago, at a word's end) bounds the frames it
    keeps open; where the best path is settled that far back the result is the one-pass search's."""
    language_model = bundled.language_model
    for lexicon in (language_model.lexicon_path, None):
        decoder = BeamSearchDecoder(bundled.alphabet, 0.02, lm_path=language_model.path if lexicon else None,
                                    lexicon_path=lexicon, alpha=language_model.alpha, beta=language_model.beta,
                                    beam_size=50)
        expected = decoder.decode_one(sample_log_probs)[0]
        stream = BeamStream(decoder, look_back=10)
        most = 0
        for first in range(0, len(sample_log_probs), 16):
            stream.step(sample_log_probs[first: first + 16])
            most = max(most, stream.open_frames)
        final = stream.end()
        assert stream.pruned > len(sample_log_probs) / 2 and most <= 10 + 100 + 50 + 16
        assert final.text == expected.text and final.words == expected.words


# ---- the VAD -------------------------------------------------------------------------------------------------

def test_streaming_vad_gives_the_one_pass_probabilities():
    audio = load_audio(_sample("sample2.wav"))
    vad = StreamingVad(RATE)
    pieces = [vad.probabilities(audio[first: first + 700]) for first in range(0, len(audio), 700)]
    pieces.append(vad.probabilities(audio[:0], last=True))
    np.testing.assert_allclose(np.concatenate(pieces), speech_probabilities(audio), atol=1e-5)


# ---- StreamingTranscriber in utterance mode (the bundled model) -----------------------------------------------

@pytest.fixture(scope="module")
def sentences(tmp_path_factory):
    folder = tmp_path_factory.mktemp("streaming")
    audio = []
    for number, text in enumerate((FIRST, SECOND)):
        path = str(folder / f"s{number}.wav")
        speak(text, path)
        audio.append(load_audio(path))
    return audio


def stream_of(sentences, gap=1.5, lead=0.5, tail=0.3):
    """The two sentences with `gap` seconds of silence between them; returns the audio and where each
    sentence lies in it (seconds)."""
    first, second = sentences
    parts = [np.zeros(int(lead * RATE), np.float32), first, np.zeros(int(gap * RATE), np.float32), second,
             np.zeros(int(tail * RATE), np.float32)]
    spans = [(lead, lead + len(first) / RATE)]
    start = spans[0][1] + gap
    spans.append((start, start + len(second) / RATE))
    return np.concatenate(parts), spans


def run_stream(stream, audio, chunk_seconds):
    size = int(chunk_seconds * RATE)
    updates = [stream.accept_audio(audio[first: first + size]) for first in range(0, len(audio), size)]
    updates.append(stream.finish())
    return updates


def finals_of(updates):
    return [final for update in updates for final in update.finals]


@pytest.fixture(scope="module")
def utterance_run(bundled, sentences):
    audio, spans = stream_of(sentences)
    stream = StreamingTranscriber(bundled, "greedy")
    return stream, run_stream(stream, audio, 0.32), spans


def test_two_sentences_give_two_finals_equal_to_their_offline_transcripts(bundled, sentences, utterance_run):
    stream, updates, spans = utterance_run
    assert stream.mode == "utterance"
    offline = Transcriber(bundled)
    expected = [offline.transcribe(sentence).text for sentence in sentences]
    assert expected == [FIRST, SECOND]  # the model hears these sentences well
    finals = finals_of(updates)
    assert [final.text for final in finals] == expected
    for final, (start, end) in zip(finals, spans):  # word times in the stream's timeline
        assert [w.word for w in final.words] == final.text.split()
        assert start - 0.25 <= final.words[0].start < final.words[0].end <= final.words[-1].end <= end + 0.25
        assert all(a.end <= b.start + 1e-6 for a, b in zip(final.words, final.words[1:]))


def test_partials_come_before_the_final_and_the_first_final_before_the_second_sentence(utterance_run):
    stream, updates, spans = utterance_run
    first_final = next(number for number, update in enumerate(updates) if update.finals)
    partials = [update.partial for update in updates[:first_final] if update.partial]
    assert partials and any(FIRST.startswith(partial) or partial in FIRST for partial in partials)
    assert first_final * 0.32 < spans[1][0]  # endpointed in the gap, not at the end of the stream
    assert all(update.partial == "" for update in updates[first_final: first_final + 2])  # the gap: nothing under way
    assert updates[-1].partial == ""


def test_chunk_size_does_not_change_the_finals(bundled, sentences, utterance_run):
    audio, _ = stream_of(sentences)
    _, coarse, _ = utterance_run
    fine = run_stream(StreamingTranscriber(bundled, "greedy"), audio, 0.02)
    assert [f.to_dict() for f in finals_of(fine)] == [f.to_dict() for f in finals_of(coarse)]


def test_finish_mid_sentence_gives_its_final(bundled, sentences):
    stream = StreamingTranscriber(bundled, "greedy", word_timings=False)
    audio, _ = stream_of(sentences, lead=0.2)
    update = stream.accept_audio(audio[: int((0.2 + len(sentences[0]) / RATE) * RATE)])
    assert update.finals == []
    finals = stream.finish().finals
    assert [final.text for final in finals] == [FIRST] and finals[0].words == []
    with pytest.raises(ValueError, match="finished"):
        stream.accept_audio(audio[:100])


def test_silence_and_noise_give_nothing(bundled):
    stream = StreamingTranscriber(bundled, "greedy")
    rng = np.random.default_rng(0)
    updates = [stream.accept_audio(np.zeros(RATE, np.float32)),
               stream.accept_audio((rng.standard_normal(3 * RATE) * 1e-3).astype(np.float32)),
               stream.accept_audio(np.zeros(RATE // 3, np.float32))]
    updates.append(stream.finish())
    assert all(update == StreamUpdate() for update in updates)


def test_an_hour_of_silence_keeps_no_more_than_a_moment(bundled):
    stream = StreamingTranscriber(bundled, "greedy")
    rng = np.random.default_rng(0)
    piece = (rng.standard_normal(10 * RATE + 123) * 1e-4).astype(np.float32)  # a quiet room, 10 s a call
    held = []
    for _ in range(360):
        assert stream.accept_audio(piece) == StreamUpdate()
        held.append(stream.buffered_samples)
    assert max(held) <= 0.25 * RATE and stream.seconds == pytest.approx(360 * len(piece) / RATE, abs=0.05)
    assert stream.seconds > 3600 and stream.finish() == StreamUpdate()


def test_long_speech_is_cut_at_max_utterance_seconds(bundled, sentences):
    """Speech without a pause longer than the endpoint: finals at most max_utterance_seconds long, in order,
    with nothing kept beyond that."""
    talk = np.concatenate([sentences[0], sentences[1]] * 3)  # about 9 s, pauses well under 0.8 s
    stream = StreamingTranscriber(bundled, "greedy", max_utterance_seconds=3.0, endpoint_silence_seconds=1.5,
                                  partial_interval_seconds=1.0)
    updates, held = [], []
    for first in range(0, len(talk), 8000):
        updates.append(stream.accept_audio(talk[first: first + 8000]))
        held.append(stream.buffered_samples)
    updates.append(stream.finish())
    finals = finals_of(updates)
    assert len(finals) >= 3 and max(final.duration for final in finals) <= 3.0 + 1e-6
    assert max(held) <= 3.5 * RATE
    starts = [final.words[0].start for final in finals]
    assert starts == sorted(starts) and finals[-1].words[-1].end <= len(talk) / RATE + 1e-6
    heard = " ".join(final.text for final in finals).split()
    assert heard.count("cat") >= 2 and heard.count("door") >= 2


def test_input_is_checked(bundled):
    stream = StreamingTranscriber(bundled)
    with pytest.raises(ValueError, match="mono"):
        stream.accept_audio(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="float"):
        stream.accept_audio(np.zeros(100, np.int16))
    with pytest.raises(ValueError, match="NaN"):
        stream.accept_audio(np.full(100, np.nan, np.float32))
    with pytest.raises(ValueError, match="endpoint_silence_seconds"):
        StreamingTranscriber(bundled, endpoint_silence_seconds=0)
    assert stream.accept_audio(np.zeros(0, np.float32)) == StreamUpdate()


def test_pcm_bytes_are_refused_in_one_line_that_says_how_to_convert_them(bundled):
    """accept_audio(bytes) said "mono samples of shape (samples,), not ()": np.asarray made the bytes one item."""
    pcm = (np.clip(load_audio(_sample("sample2.wav")), -1, 1) * 32767).astype("<i2").tobytes()
    stream = StreamingTranscriber(bundled)
    for data in (pcm, bytearray(pcm), memoryview(pcm)):
        with pytest.raises(ValueError) as refused:
            stream.accept_audio(data)
        message = str(refused.value)
        assert "\n" not in message and "np.frombuffer(data, '<i2') / 32768" in message and "16000 Hz" in message
    finals = stream.accept_audio(np.frombuffer(pcm, "<i2") / 32768).finals + stream.finish().finals  # the advice
    expected = Transcriber(bundled).transcribe(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768)
    assert [final.text for final in finals] == [expected.text] and expected.text


# ---- StreamingTranscriber in true streaming mode -----------------------------------------------------------

@pytest.fixture(scope="module")
def streaming_model(bundled):
    """A random-weight unidirectional model over running-normalised log-mel features, as ds2_stream is trained."""
    features = dataclasses.replace(bundled.features, normalization="running", mean=[-6.0] * 64, std=[3.0] * 64)
    return LoadedModel(unidirectional(features=64, lookahead=3), bundled.alphabet, features, "random-stream")


def test_streaming_mode_runs_incrementally_and_chunk_size_does_not_change_the_finals(streaming_model, sentences):
    audio, spans = stream_of(sentences)
    runs = []
    for chunk_seconds in (0.06, 0.32):
        stream = StreamingTranscriber(streaming_model, "greedy")
        assert stream.mode == "streaming"
        runs.append(run_stream(stream, audio, chunk_seconds))
    coarse, fine = (finals_of(run) for run in runs)
    assert len(coarse) == 2 and [f.text for f in coarse] == [f.text for f in fine]
    for got, other in zip(coarse, fine):
        for a, b in zip(got.words, other.words):
            assert a.word == b.word and a.start == pytest.approx(b.start) and a.end == pytest.approx(b.end)
    for final, (start, end) in zip(coarse, spans):  # (the endpoint's silence is fed too: the model heard it)
        assert start - 0.3 <= final.words[0].start < final.words[-1].end <= end + 1.0


def test_streaming_recognizer_final_is_the_one_pass_decode(streaming_model, sentences):
    """Features, model and greedy decoding chunk by chunk give the decode of one pass over the audio the final
    is asked for: all that was fed, less (a cut inside it: done again), or more (silence held back, fed now)."""
    audio = np.concatenate([sentences[0], sentences[1]])
    loaded = streaming_model
    decoder = GreedyDecoder(loaded.alphabet, 0.02)

    def one_pass(samples):
        features, lengths = F.spectrogram(torch.from_numpy(samples)[None], torch.tensor([len(samples)]), loaded.features)
        with torch.no_grad():
            logits, out = loaded.model(features, lengths)
        return decoder.decode(torch.log_softmax(logits, -1), out)[0]

    for fed, asked in ((len(audio), len(audio)), (len(audio), len(sentences[0]) + 1234), (20000, len(audio))):
        recognizer = StreamingRecognizer(loaded, decoder)
        for first in range(0, fed, 3000):
            recognizer.accept(audio[first: min(fed, first + 3000)])
        got = recognizer.final(audio[:asked])
        expected = one_pass(audio[:asked])
        assert got.text == expected.text and got.words == expected.words
        assert got.text and got.words


def _sample(name):
    import os

    return os.path.join(os.path.dirname(__file__), "..", "deepspeech_pytorch", "pretrained", "samples", name)


def test_streaming_mode_cuts_long_speech_and_holds_back_the_endpoint_silence(streaming_model, sentences):
    """Speech longer than max_utterance_seconds is cut (each final at most that long, the stream holding no more);
    the model is not run over the endpoint's silence (only the utterance's trail)."""
    talk = np.concatenate([sentences[0], sentences[1]] * 3)
    stream = StreamingTranscriber(streaming_model, "greedy", max_utterance_seconds=3.0, endpoint_silence_seconds=1.5)
    updates, held = [], []
    for first in range(0, len(talk), 8000):
        updates.append(stream.accept_audio(talk[first: first + 8000]))
        held.append(stream.buffered_samples)
    updates.append(stream.accept_audio(np.zeros(3 * RATE, np.float32)))
    assert stream._recognizer is None  # endpointed
    finals = finals_of(updates)
    assert len(finals) >= 3 and max(final.duration for final in finals) <= 3.0 + 1e-6 and max(held) <= 3.5 * RATE
    starts = [final.words[0].start for final in finals if final.words]
    assert starts == sorted(starts)
    stream = StreamingTranscriber(streaming_model, "greedy")
    speech = len(sentences[0]) / RATE
    stream.accept_audio(np.concatenate([sentences[0], np.zeros(int(0.4 * RATE), np.float32)]))
    assert stream._recognizer.consumed / RATE < speech + stream._trail / RATE + 0.1  # the silence waits
    finals = finals_of([stream.accept_audio(np.zeros(RATE, np.float32)), stream.finish()])
    assert len(finals) == 1 and finals[0].duration == pytest.approx(stream.transcribed_seconds)
    assert speech < stream.transcribed_seconds < speech + stream._trail / RATE + 0.1


# ---- a trained streaming model, end to end ------------------------------------------------------------------

def test_a_trained_unidirectional_model_streams_from_its_checkpoint(speech_corpus, tmp_path):
    """A few training steps of a unidirectional model with lookahead over running-normalised features: the loss
    falls, the checkpoint (with the statistics measured when training started) loads as a streaming model, and
    its chunked features and logits equal one pass on real speech."""
    from omegaconf import OmegaConf

    from deepspeech_pytorch.configs import TrainConfig
    from deepspeech_pytorch.training import train

    config = OmegaConf.structured(TrainConfig)
    config.model = "ds2_tiny"
    OmegaConf.update(config, "model", {"architecture": "deepspeech2", "rnn_type": "gru", "hidden_size": 64,
                                       "hidden_layers": 2, "bidirectional": False, "lookahead_context": 3,
                                       "conv_channels": 8}, force_add=True)
    config.features.kind, config.features.n_mels, config.features.normalization = "mel", 64, "running"
    config.data.train_manifest = speech_corpus
    config.data.batch_size, config.data.num_workers = 3, 0
    config.optim.learning_rate = 3e-3
    config.checkpoint.directory = str(tmp_path / "ck")
    config.log_dir, config.validate_every_epoch, config.epochs = None, False, 4
    result = train(config)
    assert result.losses[-1] < 0.8 * result.losses[0]
    loaded = load_model(str(tmp_path / "ck" / "last.pt"))
    assert loaded.features.normalization == "running" and loaded.features.mean is not None
    stream = StreamingTranscriber(loaded)
    assert stream.mode == "streaming"
    samples = torch.from_numpy(load_audio(_corpus_file(speech_corpus)))
    expected, lengths = F.spectrogram(samples[None], torch.tensor([len(samples)]), loaded.features)
    features = StreamingFeatures(loaded.features)
    pieces = [features.accept(samples[first: first + 1000]) for first in range(0, len(samples), 1000)]
    pieces.append(features.accept(samples[:0], final=True))
    chunked = torch.cat(pieces, dim=1)[None]
    torch.testing.assert_close(chunked, expected, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        one_pass, _ = loaded.model(expected, lengths)
    torch.testing.assert_close(chunked_logits(loaded.model, chunked, 9), one_pass, rtol=1e-4, atol=1e-4)


def _corpus_file(manifest):
    import json
    import os

    with open(manifest) as handle:
        return os.path.join(os.path.dirname(manifest), json.loads(handle.readline())["audio_filepath"])
