"""LM building with the real KenLM tools (tools/build_kenlm.sh builds them), and alpha/beta tuning end to end."""

import json
import os
import subprocess
import sys

import pytest
import torch

from deepspeech_pytorch import lm
from deepspeech_pytorch.decoders import BeamSearchDecoder, GreedyDecoder
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.lm_tuning import DecoderSettings, best_trial, grid_points, load_outputs, score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMORY = "64M"  # lmplz sort memory: plenty for these corpora, and quick to allocate

TEXT = """The cat sat on the mat. The dog sat on the log!
the cat ate the rat
A cat is on the mat; the cat is fat.
"Don’t feed the cat," she said. Café society sat down.
Room 101 is closed.
the rat sat on the hat
"""


def require_kenlm():
    try:
        lm.find_kenlm_binary("lmplz")
        lm.find_kenlm_binary("build_binary")
    except lm.KenLMMissing as error:
        pytest.fail(f"{error} (CI builds KenLM before the tests)")


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return str(path)


def test_normalisation_splits_sentences_and_skips_what_the_alphabet_cannot_write(text_file, tmp_path):
    corpus = lm.write_corpus([text_file], str(tmp_path / "out.txt"), Alphabet())
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert lines[:3] == ["the cat sat on the mat", "the dog sat on the log", "the cat ate the rat"]
    assert "don't feed the cat she said" in lines  # curly apostrophe folded, punctuation gone
    assert "cafe society sat down" in lines  # accent folded into the alphabet
    assert not any("room" in line for line in lines)  # digits: the whole sentence is left out
    assert corpus.skipped == 1 and corpus.sentences == len(lines) == 7
    assert corpus.counts["the"] == 11 and corpus.words == sum(corpus.counts.values())
    lm.write_corpus([text_file], str(tmp_path / "chars.txt"), Alphabet(), unit="char")
    assert (tmp_path / "chars.txt").read_text().splitlines()[0] == "t h e | c a t | s a t | o n | t h e | m a t"


def test_word_lm_lexicon_and_summary(text_file, tmp_path):
    require_kenlm()
    model = lm.build_language_model([text_file], str(tmp_path / "lm"), order=3, memory=MEMORY,
                                    dev_paths=[text_file])
    assert os.path.getsize(model.arpa) > 0 and os.path.getsize(model.binary) > 0
    arpa = open(model.arpa).read()
    assert "ngram 3=" in arpa and "\tcat\t" in arpa
    # a corpus this small has too few doubletons: lmplz's fallback discounts were needed, and reported
    assert model.fallback_discounts and set(model.fallback_discounts) <= {1, 2, 3}
    lexicon = open(model.lexicon).read().splitlines()
    assert lexicon[0] == "the\tt h e |" and "don't\td o n ' t |" in lexicon
    assert len(lexicon) == model.vocabulary == len({w for line in open(model.corpus) for w in line.split()})
    assert 1.0 < model.dev_perplexity < 30.0
    saved = json.load(open(os.path.join(tmp_path, "lm", "lm.json")))
    assert saved["binary"] == model.binary and saved["unit"] == "word"
    assert f"decoder.lm.lexicon_path={model.lexicon}" in saved["decoder_overrides"]


def test_character_lm_prefers_real_spellings(text_file, tmp_path):
    require_kenlm()
    model = lm.build_language_model([text_file], str(tmp_path), unit="char", memory=MEMORY, name="chars")
    assert model.order == 6 and model.path.endswith("chars.bin")
    good = lm.perplexity(model.path, ["the cat sat on the mat"], unit="char")
    bad = lm.perplexity(model.path, ["the kat zat on the mat"], unit="char")
    assert good < bad


def test_pruning_and_vocabulary_limit(tmp_path):
    require_kenlm()
    text = tmp_path / "text.txt"
    text.write_text("".join(f"the cat number {w} sat on the mat\n" for w in ["one", "two", "three"] * 20)
                    + "the cat number four sat on the mat\n")
    pruned = lm.build_language_model([str(text)], str(tmp_path / "pruned"), order=3, prune=[0, 1, 1], binary=False,
                                     memory=MEMORY)
    kept = lm.build_language_model([str(text)], str(tmp_path / "kept"), order=3, binary=False, memory=MEMORY)
    assert pruned.binary is None
    assert "number one sat" in open(pruned.arpa).read()
    assert "number four sat" in open(kept.arpa).read() and "number four sat" not in open(pruned.arpa).read()
    limited = lm.build_language_model([str(text)], str(tmp_path / "limited"), order=3, max_words=8, memory=MEMORY)
    assert limited.vocabulary == 8 and "\tfour\t" not in open(limited.arpa).read()
    assert [line.split("\t")[0] for line in open(limited.lexicon)] == \
        ["the", "cat", "mat", "number", "on", "sat", "one", "three"]


def test_quantized_trie_is_smaller_and_scores_nearly_alike(tmp_path):
    require_kenlm()
    generator = torch.Generator().manual_seed(0)
    words = [f"w{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(300)]
    lines = [" ".join(words[int(index)] for index in torch.randint(0, 300, (12,), generator=generator))
             for _ in range(3000)]
    text = tmp_path / "text.txt"
    text.write_text("\n".join(lines) + "\n")
    whole = lm.build_language_model([str(text)], str(tmp_path / "whole"), order=3, binary_type="trie", memory=MEMORY)
    quantized = lm.build_language_model([str(text)], str(tmp_path / "quantized"), order=3, binary_type="trie",
                                        quantize_bits=8, memory=MEMORY)
    assert quantized.quantize_bits == 8 and whole.quantize_bits is None
    assert os.path.getsize(quantized.binary) < 0.8 * os.path.getsize(whole.binary)
    held_out = lines[:50]
    exact, approximate = lm.perplexity(whole.binary, held_out), lm.perplexity(quantized.binary, held_out)
    assert exact != approximate and approximate == pytest.approx(exact, rel=0.02)
    with pytest.raises(ValueError, match="needs the trie"):
        lm.build_language_model([str(text)], str(tmp_path / "x"), quantize_bits=8)
    for bits in (40, 8.5, True):
        with pytest.raises(ValueError, match="quantize bits must be 2 to 25"):
            lm.build_language_model([str(text)], str(tmp_path / "x"), binary_type="trie", quantize_bits=bits)
    with pytest.raises(ValueError, match="cannot be combined with no binary"):
        lm.build_language_model([str(text)], str(tmp_path / "x"), binary=False, quantize_bits=8)


def test_bad_settings_and_missing_tools_are_clear(text_file, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="order must be 2 to 6"):
        lm.build_language_model([text_file], str(tmp_path), order=7)
    with pytest.raises(ValueError, match="first threshold must be 0"):
        lm.build_language_model([text_file], str(tmp_path), prune=[1, 1])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        list(lm.read_sentences([str(tmp_path / "missing.txt")]))
    monkeypatch.setenv(lm.KENLM_BIN_ENV, str(tmp_path))
    monkeypatch.setattr(lm, "CACHE_BIN", str(tmp_path / "nothing"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(lm.KenLMMissing, match="run tools/build_kenlm.sh"):
        lm.build_language_model([text_file], str(tmp_path))


def test_build_lm_script(text_file, tmp_path):
    require_kenlm()
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"{i}.wav", "text": t}) + "\n"
                                for i, t in enumerate(["the hat sat", "the bat sat"])))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "data", "build_lm.py"), "--text", text_file,
                             str(manifest), "--output-dir", str(tmp_path / "out"), "--order", "3", "--memory", MEMORY],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["sentences"] == 9 and os.path.isfile(summary["path"])
    assert "bat\tb a t |" in open(summary["lexicon"]).read()
    failed = subprocess.run([sys.executable, os.path.join(ROOT, "data", "build_lm.py"), "--text",
                             str(tmp_path / "none.txt"), "--output-dir", str(tmp_path / "x")],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "none.txt" in failed.stderr and "Traceback" not in failed.stderr


# ---- tuning ---------------------------------------------------------------------------------------

ALPHABET = Alphabet()
TUNING_SENTENCES = ["the cat sat on the mat", "the dog ate a bone", "a red hat", "an ice cream cone"]
# What a weak acoustic model "hears": one letter wrong per utterance, making another word of the
# lexicon that the LM never saw in that context.
HEARD = ["the cat sat on the hat", "the dog ate a cone", "a red mat", "an ice cream bone"]


def heard_log_probs(reference: str, heard: str) -> torch.Tensor:
    """(time, classes): each letter of `heard` for 2 frames then a blank, the reference's letter a close second."""
    frames = []
    for want, got in zip(reference, heard):
        for _ in range(2):
            row = torch.full((len(ALPHABET),), 1e-3)
            row[ALPHABET.labels.index(got)] = 1.0
            if want != got:
                row[ALPHABET.labels.index(want)] = 0.6
            frames.append(row)
        blank = torch.full((len(ALPHABET),), 1e-3)
        blank[0] = 1.0
        frames.append(blank)
    probs = torch.stack(frames)
    return (probs / probs.sum(-1, keepdim=True)).log()


@pytest.fixture(scope="module")
def tuning_setup(tmp_path_factory):
    require_kenlm()
    folder = tmp_path_factory.mktemp("tuning")
    text = folder / "text.txt"
    text.write_text("\n".join(TUNING_SENTENCES * 3) + "\n")
    model = lm.build_language_model([str(text)], str(folder / "lm"), order=3, memory=MEMORY)
    utterances = [{"log_probs": heard_log_probs(r, h), "reference": r, "audio_filepath": f"{i}.wav"}
                  for i, (r, h) in enumerate(zip(TUNING_SENTENCES, HEARD))]
    outputs = folder / "outputs.pt"
    torch.save({"labels": list(ALPHABET.labels), "seconds_per_frame": 0.02, "utterances": utterances}, outputs)
    return folder, model, str(outputs)


def test_saved_outputs_load_and_greedy_hears_the_mistakes(tuning_setup):
    _, _, outputs_path = tuning_setup
    outputs = load_outputs(outputs_path)
    assert outputs.references == TUNING_SENTENCES and outputs.seconds_per_frame == 0.02
    assert score(GreedyDecoder(outputs.alphabet, 0.02), outputs).wer == pytest.approx(4 / 18)


def test_search_and_select_scripts_end_to_end(tuning_setup):
    folder, model, outputs_path = tuning_setup
    results_path, plot_path = folder / "search.json", folder / "search.png"
    search = subprocess.run([sys.executable, os.path.join(ROOT, "search_lm_params.py"), "--outputs", outputs_path,
                             "--lm", model.path, "--lexicon", model.lexicon, "--results", str(results_path),
                             "--alpha", "0", "2", "3", "--beta", "0", "1", "2", "--workers", "2"],
                            capture_output=True, text=True, timeout=300)
    assert search.returncode == 0, search.stderr
    results = json.load(open(results_path))
    trials = results["trials"]
    assert [(t["alpha"], t["beta"]) for t in trials] == [(a, b) for a in (0.0, 1.0, 2.0) for b in (0.0, 1.0)]
    assert results["greedy"]["wer"] == pytest.approx(4 / 18)
    assert [t["wer"] for t in trials if t["alpha"] == 0] == [pytest.approx(4 / 18)] * 2  # lexicon alone
    assert results["best"]["wer"] == 0.0 and results["best"]["alpha"] > 0
    assert all(t["wer"] <= results["greedy"]["wer"] for t in trials)

    select = subprocess.run([sys.executable, os.path.join(ROOT, "select_lm_params.py"), "--results",
                             str(results_path), "--plot", str(plot_path)], capture_output=True, text=True, timeout=120)
    assert select.returncode == 0, select.stderr
    best = results["best"]
    assert f"alpha={best['alpha']:g} beta={best['beta']:g}" in select.stdout
    assert f"decoder.lm.alpha={best['alpha']:g} decoder.lm.beta={best['beta']:g} decoder.beam_size=100" in select.stdout
    with open(plot_path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    assert matplotlib.image.imread(str(plot_path)).shape[0] > 100


def test_lexicon_free_tuning_in_process_finds_alpha_that_fixes_spelling(tuning_setup, tmp_path):
    folder, _, outputs_path = tuning_setup
    chars = lm.build_language_model([str(folder / "text.txt")], str(tmp_path), unit="char", memory=MEMORY)
    from deepspeech_pytorch.lm_tuning import grid_search

    trials = grid_search(outputs_path, DecoderSettings(chars.path), [0.0, 1.5], [0.0], workers=1)
    by_alpha = {t.alpha: t for t in trials}
    assert by_alpha[0.0].wer == pytest.approx(4 / 18)  # no LM weight: the acoustics' misspellings stay
    assert by_alpha[1.5].wer < by_alpha[0.0].wer
    assert best_trial(trials).alpha == 1.5
    assert grid_points(0, 1, 3) == [0.0, 0.5, 1.0] and grid_points(2, 2, 1) == [2.0]


def test_optuna_search_asks_and_tells(tuning_setup):
    """The ask/tell loop, with a stand-in study that proposes fixed points (Optuna itself is optional)."""
    from deepspeech_pytorch.lm_tuning import optuna_search

    _, model, outputs_path = tuning_setup

    class Proposal:
        def __init__(self, values):
            self.values = values

        def suggest_float(self, name, low, high):
            assert 0.0 <= low <= self.values[name] <= high
            return self.values[name]

    class Study:
        told = []
        proposals = [{"alpha": 0.0, "beta": 0.0}, {"alpha": 1.0, "beta": 0.5}, {"alpha": 2.0, "beta": 1.0}]

        def ask(self):
            return Proposal(self.proposals[len(self.told)])

        def tell(self, proposal, value):
            self.told.append((proposal.values, value))

    study = Study()
    trials = optuna_search(outputs_path, DecoderSettings(model.path, model.lexicon), (0.0, 2.0), (0.0, 1.0),
                           trials=3, workers=1, study=study)
    assert [t.alpha for t in trials] == [0.0, 1.0, 2.0]
    assert [value for _, value in study.told] == [t.wer for t in trials]


def test_bad_outputs_file_is_reported(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"labels": ["_", "a"]}, bad)
    with pytest.raises(ValueError, match="bad.pt"):
        load_outputs(str(bad))
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_outputs(str(tmp_path / "nothing.pt"))


def test_word_lm_decoder_from_built_files(tuning_setup):
    _, model, outputs_path = tuning_setup
    outputs = load_outputs(outputs_path)
    decoder = BeamSearchDecoder(outputs.alphabet, 0.02, model.path, model.lexicon, alpha=1.0, beta=0.5)
    assert decoder.mode == "lexicon, word LM"
    assert score(decoder, outputs).wer == 0.0
