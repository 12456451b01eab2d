import pytest
import torch

from deepspeech_pytorch.decoders import GreedyDecoder
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.metrics import ErrorCounts, error_counts, utterance_errors


def emissions(path, alphabet, classes=29):
    """Log-probabilities that put almost all mass on the given label per frame ('_' is blank)."""
    ids = [alphabet.labels.index(ch) for ch in path]
    probs = torch.full((len(ids), classes), 1e-4)
    probs[torch.arange(len(ids)), ids] = 1.0
    return (probs / probs.sum(-1, keepdim=True)).log()


def test_greedy_collapses_repeats_and_blanks_with_word_times():
    alphabet = Alphabet()
    path = "__hh_e_ll_lloo___  wwo_rr_ld__"
    log_probs = emissions(path, alphabet)[None]
    (hypothesis,) = GreedyDecoder(alphabet, seconds_per_frame=0.02).decode(log_probs, torch.tensor([len(path)]))
    assert hypothesis.text == "hello world"
    assert [w.word for w in hypothesis.words] == ["hello", "world"]
    hello, world = hypothesis.words
    assert hello.start == pytest.approx(2 * 0.02) and hello.end == pytest.approx(14 * 0.02)
    assert world.start == pytest.approx(19 * 0.02) and world.end == pytest.approx(28 * 0.02)
    assert hello.end <= world.start


def test_greedy_respects_lengths():
    alphabet = Alphabet()
    log_probs = torch.stack([emissions("ab_c", alphabet), emissions("d___", alphabet)])
    texts = [h.text for h in GreedyDecoder(alphabet, 0.02).decode(log_probs, torch.tensor([2, 4]))]
    assert texts == ["ab", "d"]


def test_metrics_on_known_pairs():
    counts = error_counts(["the cat sat", "hello world"], ["the bat sat down", "hello"])
    # words: (1 sub + 1 ins) + (1 del) over 3 + 2 reference words
    assert (counts.word_edits, counts.reference_words) == (3, 5)
    assert counts.wer == pytest.approx(0.6)
    # characters: "the cat sat" -> "the bat sat down": 1 sub + 5 ins; "hello world" -> "hello": 6 del
    assert (counts.char_edits, counts.reference_chars) == (12, 22)


def test_corpus_totals_not_average_of_rates():
    counts = error_counts(["a", "b c d e f g h i j k"], ["x", "b c d e f g h i j k"])
    assert counts.wer == pytest.approx(1 / 11)


def test_empty_sides():
    assert utterance_errors("", "some words") == ErrorCounts(2, 0, 10, 0)
    assert utterance_errors("two words", "") == ErrorCounts(2, 2, 9, 9)
    with pytest.raises(ValueError):
        error_counts(["a"], [])
