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


def reference_collapse(path, blank=0):
    """The CTC collapse written out frame by frame, to check the vectorised one against."""
    labels, starts, ends, previous = [], [], [], blank
    for frame, label in enumerate(path):
        if label != blank and label == previous:
            ends[-1] = frame
        elif label != blank:
            labels.append(label)
            starts.append(frame)
            ends.append(frame)
        previous = label
    return labels, starts, ends


def test_vectorised_collapse_equals_the_frame_loop():
    import numpy as np

    from deepspeech_pytorch.decoders import collapse_path

    rng = np.random.default_rng(0)
    for length in (0, 1, 2, 7, 100, 3000):
        for classes in (2, 4, 29):
            path = rng.integers(0, classes, length).tolist()
            assert collapse_path(path) == reference_collapse(path)
            assert collapse_path(np.asarray(path)) == reference_collapse(path)
    assert collapse_path([0, 0, 0]) == ([], [], []) and collapse_path([3, 3, 0, 3]) == ([3, 3], [0, 3], [1, 3])


def test_greedy_takes_numpy_arrays_as_it_takes_tensors():
    """The onnxruntime backend hands the decoders numpy log-probabilities: same hypotheses, scores and times."""
    alphabet = Alphabet()
    log_probs = torch.stack([emissions("__hh_e_ll_lloo___  wwo_rr_ld__", alphabet),
                             torch.cat([emissions("ab_c", alphabet), emissions("_" * 26, alphabet)])])
    lengths = torch.tensor([30, 4])
    decoder = GreedyDecoder(alphabet, 0.02)
    from_tensors = decoder.decode(log_probs, lengths)
    from_arrays = decoder.decode(log_probs.numpy(), lengths.numpy())
    assert [h.text for h in from_arrays] == [h.text for h in from_tensors] == ["hello world", "abc"]
    assert [h.words for h in from_arrays] == [h.words for h in from_tensors]
    assert [h.score for h in from_arrays] == pytest.approx([h.score for h in from_tensors], abs=1e-4)
    assert decoder.decode(log_probs.to(torch.bfloat16), lengths)[0].text == "hello world"


def test_beam_search_takes_numpy_arrays_as_it_takes_tensors():
    pytest.importorskip("flashlight.lib.text")
    from deepspeech_pytorch.decoders import BeamSearchDecoder

    alphabet = Alphabet()
    probs = emissions("__hh_e_ll_lloo___  wwo_rr_ld__", alphabet).exp()
    probs = probs + 0.2 * torch.rand(30, 29, generator=torch.Generator().manual_seed(0))
    noisy = (probs / probs.sum(-1, keepdim=True)).log()
    decoder = BeamSearchDecoder(alphabet, 0.02, beta=0.0, beam_size=8, n_best=3)
    from_tensors = decoder.decode_n_best(noisy[None], torch.tensor([30]))
    from_arrays = decoder.decode_n_best(noisy[None].numpy(), [30])
    assert [[h.text for h in n] for n in from_arrays] == [[h.text for h in n] for n in from_tensors]
    assert from_arrays[0][0].text == "hello world"
    assert [h.score for h in from_arrays[0]] == pytest.approx([h.score for h in from_tensors[0]])


def test_decoders_import_no_torch():
    import subprocess
    import sys

    probe = ("import sys, numpy as np; from deepspeech_pytorch.decoders import GreedyDecoder; "
             "from deepspeech_pytorch.labels import Alphabet; "
             "GreedyDecoder(Alphabet(), 0.02).decode(np.zeros((1, 3, 29), np.float32), np.array([3])); "
             "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"
