"""Beam search with KenLM (flashlight-text): the LM fixes what the acoustics get wrong, lexicon mode,
word timings, n-best, errors, and test.py / transcribe.py with decoder.type=beam."""

import json
import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from deepspeech_pytorch import lm
from deepspeech_pytorch.checkpoint import model_state, save_checkpoint
from deepspeech_pytorch.configs import DecoderConfig, EvalConfig, FeatureConfig, LanguageModelConfig
from deepspeech_pytorch.decoders import BeamSearchDecoder, DecoderError, GreedyDecoder, build_decoder, read_lexicon
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.models import build_model, preset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALPHABET = Alphabet()
SECONDS = 0.02  # per output frame
LM_TEXT = ["the cat sat on the mat", "a cat sat on a mat", "the dog sat on the log", "the cat ate the rat",
           "he was sad", "i am sad today", "she said hello world"]


def heard(reference: str, acoustics: str) -> torch.Tensor:
    """Log-probabilities (time, classes) of a model that hears `acoustics`: each character for two frames,
    then a blank; where the reference differs, its character is a close second (0.6 against 1.0)."""
    frames = []
    for want, got in zip(reference, acoustics):
        for _ in range(2):
            row = torch.full((len(ALPHABET),), 1e-3)
            row[ALPHABET.labels.index(got)] = 1.0
            if want != got:
                row[ALPHABET.labels.index(want)] = 0.6
            frames.append(row)
        frames.append(torch.eye(len(ALPHABET))[0] + 1e-3)
    probs = torch.stack(frames)
    return (probs / probs.sum(-1, keepdim=True)).log()


def decode(decoder, log_probs):
    return decoder.decode(log_probs[None], torch.tensor([log_probs.shape[0]]))[0]


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    """A word LM with its lexicon and a character LM, built by the real lmplz from LM_TEXT."""
    try:
        lm.find_kenlm_binary("lmplz")
    except lm.KenLMMissing as error:
        pytest.fail(f"{error} (CI builds KenLM before the tests)")
    folder = tmp_path_factory.mktemp("lm")
    text = folder / "text.txt"
    text.write_text("\n".join(LM_TEXT) + "\n")
    words = lm.build_language_model([str(text)], str(folder), order=3, memory="64M", name="words")
    chars = lm.build_language_model([str(text)], str(folder), unit="char", memory="64M", name="chars")
    return words, chars


def test_character_lm_fixes_a_misspelling_lexicon_free(lms):
    _, chars = lms
    log_probs = heard("the cat sat", "the kat sat")
    assert decode(GreedyDecoder(ALPHABET, SECONDS), log_probs).text == "the kat sat"
    no_weight = BeamSearchDecoder(ALPHABET, SECONDS, lm_path=chars.path, alpha=0.0, beta=0.0)
    assert no_weight.mode == "lexicon-free, character LM"
    assert decode(no_weight, log_probs).text == "the kat sat"
    assert decode(no_weight.with_weights(1.0, 0.0), log_probs).text == "the cat sat"


def test_word_lm_picks_the_word_the_context_wants(lms):
    words, _ = lms
    log_probs = heard("the cat sat on the mat", "the cat sad on the mat")
    decoder = BeamSearchDecoder(ALPHABET, SECONDS, lm_path=words.path, lexicon_path=words.lexicon, alpha=0.0, beta=0.0)
    assert decoder.mode == "lexicon, word LM"
    assert decode(decoder, log_probs).text == "the cat sad on the mat"  # both words are in the lexicon
    fixed = decode(decoder.with_weights(1.0, 0.5), log_probs)
    assert fixed.text == "the cat sat on the mat"
    assert [w.word for w in fixed.words] == fixed.text.split()


def test_lexicon_alone_keeps_out_unknown_words(lms):
    words, _ = lms
    log_probs = heard("the cat sat", "the kat sat")
    assert decode(BeamSearchDecoder(ALPHABET, SECONDS, beta=0.0), log_probs).text == "the kat sat"
    constrained = BeamSearchDecoder(ALPHABET, SECONDS, lexicon_path=words.lexicon, beta=0.0)
    assert constrained.mode == "lexicon, no LM"
    assert decode(constrained, log_probs).text == "the cat sat"


def test_without_lm_clean_emissions_give_the_greedy_text_and_timings(lms, tmp_path):
    path = "__hh_e_ll_lloo___  wwo_rr_ld__"  # the greedy decoder test's emissions
    probs = torch.full((len(path), len(ALPHABET)), 1e-4)
    probs[torch.arange(len(path)), [ALPHABET.labels.index(ch) for ch in path]] = 1.0
    log_probs = (probs / probs.sum(-1, keepdim=True)).log()
    greedy = decode(GreedyDecoder(ALPHABET, SECONDS), log_probs)
    words, _ = lms
    for decoder in (BeamSearchDecoder(ALPHABET, SECONDS, beta=0.0), build_decoder("beam", ALPHABET, SECONDS),
                    BeamSearchDecoder(ALPHABET, SECONDS, lexicon_path=words.lexicon, beta=0.0)):
        best = decode(decoder, log_probs)
        assert best.text == "hello world"
        assert best.words == greedy.words  # hello 0.04-0.30 s, world 0.38-0.58 s
        # the same path scores about the same (other alignments of the same text add a little): in lexicon
        # mode the last word ends on a free extra frame, not by turning a blank frame into '|' (-9)
        if decoder.beta == 0:
            assert best.score == pytest.approx(greedy.score, abs=0.05)


@pytest.mark.parametrize("mode", ["lexicon-free", "lexicon"])
def test_word_times_are_ordered_and_inside_the_audio(lms, mode):
    words, chars = lms
    torch.manual_seed(0)
    # a confident path through a sentence, with noise: a little of everything everywhere
    log_probs = heard("she said hello world", "she said hello world")
    log_probs = torch.log_softmax(log_probs + 2.0 * torch.randn_like(log_probs), dim=-1)
    lengths = torch.tensor([log_probs.shape[0], log_probs.shape[0] - 9])
    batch = torch.stack([log_probs, log_probs])
    decoder = (BeamSearchDecoder(ALPHABET, SECONDS, lm_path=chars.path, alpha=0.5, beta=1.0) if mode == "lexicon-free"
               else BeamSearchDecoder(ALPHABET, SECONDS, lm_path=words.path, lexicon_path=words.lexicon))
    for hypothesis, length in zip(decoder.decode(batch, lengths), lengths.tolist()):
        assert hypothesis.words and [w.word for w in hypothesis.words] == hypothesis.text.split()
        times = [t for w in hypothesis.words for t in (w.start, w.end)]
        assert times == sorted(times) and all(w.start < w.end for w in hypothesis.words)
        assert 0.0 <= times[0] and times[-1] <= length * SECONDS + 1e-9
    # padding past a row's length is never read
    (short,) = decoder.decode(log_probs[None, : lengths[1]], lengths[1:])
    assert short == decoder.decode(batch, lengths)[1]


def test_n_best_lists_distinct_transcripts_best_first(lms):
    words, _ = lms
    log_probs = heard("the cat sat on the mat", "the cat sad on the mat")
    decoder = BeamSearchDecoder(ALPHABET, SECONDS, lm_path=words.path, lexicon_path=words.lexicon, alpha=1.0,
                                beta=0.5, n_best=3)
    (alternatives,) = decoder.decode_n_best(log_probs[None], torch.tensor([log_probs.shape[0]]))
    texts = [h.text for h in alternatives]
    assert len(texts) == 3 == len(set(texts)) and texts[0] == "the cat sat on the mat"
    assert "the cat sad on the mat" in texts
    scores = [h.score for h in alternatives]
    assert scores == sorted(scores, reverse=True)
    best = decode(decoder, log_probs)
    # the same hypothesis; its score may differ in the last bit (the search adds in another order)
    assert (best.text, best.words) == (alternatives[0].text, alternatives[0].words)
    assert best.score == pytest.approx(alternatives[0].score, rel=1e-9)
    assert GreedyDecoder(ALPHABET, SECONDS).decode_n_best(log_probs[None], torch.tensor([9]))[0][0].text == "the"


def test_config_builds_the_decoder_as_the_scripts_do(lms):
    words, _ = lms
    config = OmegaConf.merge(OmegaConf.structured(EvalConfig), OmegaConf.from_dotlist([
        "decoder.type=beam", f"decoder.lm.path={words.path}", f"decoder.lm.lexicon_path={words.lexicon}",
        "decoder.lm.alpha=0.7", "decoder.lm.beta=2", "decoder.beam_size=12", "decoder.tokens_per_frame=5"]))
    decoder = build_decoder(OmegaConf.to_object(config.decoder), ALPHABET, SECONDS)
    assert isinstance(decoder, BeamSearchDecoder) and decoder.mode == "lexicon, word LM"
    assert (decoder.alpha, decoder.beta, decoder.beam_size, decoder.tokens_per_frame) == (0.7, 2.0, 12, 5)
    assert isinstance(build_decoder(DecoderConfig(), ALPHABET, SECONDS), GreedyDecoder)
    with pytest.raises(ValueError, match="available: greedy, beam"):
        build_decoder("viterbi", ALPHABET, SECONDS)


def test_clear_errors_name_the_file(lms, tmp_path):
    words, chars = lms
    with pytest.raises(DecoderError, match="language model not found: .*nowhere.bin"):
        build_decoder(DecoderConfig(type="beam", lm=LanguageModelConfig(path=str(tmp_path / "nowhere.bin"))),
                      ALPHABET, SECONDS)
    garbage = tmp_path / "garbage.arpa"
    garbage.write_text("this is not a language model\n")
    with pytest.raises(DecoderError, match="garbage.arpa: cannot load as a KenLM model"):
        BeamSearchDecoder(ALPHABET, SECONDS, lm_path=str(garbage))
    with pytest.raises(DecoderError, match="is a word LM: lexicon-free search needs a character LM"):
        BeamSearchDecoder(ALPHABET, SECONDS, lm_path=words.path)
    # a character LM with a lexicon is fine: the LM scores letters, the lexicon limits the words
    assert BeamSearchDecoder(ALPHABET, SECONDS, lm_path=chars.path, lexicon_path=words.lexicon).mode == \
        "lexicon, character LM"
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("cat\tc a t |\ndog\td 0 g |\n")
    with pytest.raises(DecoderError, match="lexicon.txt line 2: .*outside the alphabet: 0"):
        read_lexicon(str(lexicon), ALPHABET)
    lexicon.write_text("cat\n")
    with pytest.raises(DecoderError, match="line 1: expected 'word<TAB>spelling'"):
        read_lexicon(str(lexicon), ALPHABET)
    with pytest.raises(DecoderError, match="lexicon not found"):
        read_lexicon(str(tmp_path / "none.txt"), ALPHABET)
    lexicon.write_text("cat\tc a t\n")
    assert read_lexicon(str(lexicon), ALPHABET) == [("cat", ["c", "a", "t", "|"])]  # '|' added


def run(script, *args, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_test_and_transcribe_scripts_decode_with_beam_search(lms, speech_corpus, tmp_path):
    """An untrained model through the real scripts: the config reaches the decoder, and lexicon mode
    can only ever write lexicon words."""
    words, chars = lms
    torch.manual_seed(0)
    model = build_model(preset("ds2_tiny"), 161, 29)
    save_checkpoint(str(tmp_path / "tiny.pt"), model_state(model, preset("ds2_tiny"), FeatureConfig(), ALPHABET))
    result = run("test.py", "model_path=tiny.pt", f"test_manifest={speech_corpus}", "num_workers=0",
                 "report_path=report.jsonl", "decoder.type=beam", f"decoder.lm.path={words.path}",
                 f"decoder.lm.lexicon_path={words.lexicon}", "decoder.beam_size=8", "decoder.lm.beta=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["utterances"] == 6
    lexicon = {line.split("\t")[0] for line in open(words.lexicon)}
    hypotheses = [json.loads(line)["hypothesis"] for line in open(tmp_path / "report.jsonl")]
    assert any(hypotheses) and all(set(h.split()) <= lexicon for h in hypotheses)

    audio = os.path.join(os.path.dirname(speech_corpus), "utt0.wav")
    result = run("transcribe.py", "model_path=tiny.pt", f"audio_path={audio}", "decoder.type=beam",
                 f"decoder.lm.path={chars.path}", "decoder.beam_size=8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert all(0 <= w["start"] < w["end"] <= record["duration"] + 0.05 for w in record["words"])

    result = run("transcribe.py", "model_path=tiny.pt", f"audio_path={audio}", "decoder.type=beam",
                 f"decoder.lm.path={words.path}", cwd=tmp_path)
    assert result.returncode == 1 and "lexicon-free search needs a character LM" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_models_own_lm_is_resolved_in_one_place():
    from deepspeech_pytorch.decoders import ModelLanguageModel, decoder_choices, resolve_decoder

    own = ModelLanguageModel(LanguageModelConfig(path="/m/lm.bin", lexicon_path="/m/lex.txt", alpha=0.8, beta=-1.0),
                             beam_size=500)
    beam = resolve_decoder("beam", own)
    assert (beam.lm.path, beam.lm.alpha, beam.lm.beta, beam.beam_size) == ("/m/lm.bin", 0.8, -1.0, 500)
    mine = resolve_decoder(DecoderConfig(type="beam", beam_size=20, lm=LanguageModelConfig(alpha=2.0)), own)
    assert (mine.lm.path, mine.lm.alpha, mine.lm.beta, mine.beam_size) == ("/m/lm.bin", 2.0, -1.0, 20)
    other = resolve_decoder(DecoderConfig(type="beam", lm=LanguageModelConfig(path="x.arpa")), own)
    assert other.lm.path == "x.arpa" and other.lm.alpha is None and other.beam_size is None
    opted_out = resolve_decoder(DecoderConfig(type="beam", lm=LanguageModelConfig(use_model_lm=False)), own)
    assert opted_out.lm.path is None
    assert resolve_decoder("greedy", own).type == "greedy" and resolve_decoder("beam").lm.path is None
    assert list(decoder_choices(DecoderConfig())) == ["greedy"]
    assert list(decoder_choices(DecoderConfig(), model_has_lm=True)) == ["greedy", "beam"]
    with pytest.raises(ValueError, match="not a decoder on offer"):
        decoder_choices(DecoderConfig(type="viterbi"))
