import pytest
import torch

from deepspeech_pytorch.models import count_parameters, presets
from deepspeech_pytorch.models.deepspeech2 import DeepSpeech2
from deepspeech_pytorch.models.deepspeech2 import DeepSpeech2Config as ModelConfig

PRESETS = presets()


def lstm_params(inputs, hidden, gates=4):
    return gates * (inputs * hidden + hidden * hidden + 2 * hidden)


def test_ds2_original_parameter_count():
    model = DeepSpeech2(PRESETS["ds2_original"], 161, 29)
    rnn = 2 * lstm_params(32 * 41, 1024) + 4 * 2 * lstm_params(1024, 1024)
    assert 86.0e6 < rnn < count_parameters(model) < 87.0e6  # about 86.6 M, like the original


def test_bundled_presets_fit_the_package_budget():
    """The bundled model ships fp16 weights beside a ~16 MB LM in a 40 MB package: both CPU presets
    must stay under 12 M parameters (24 MB in fp16), and the wide one must really be wider."""
    counts = {name: count_parameters(DeepSpeech2(PRESETS[name], 64, 29)) for name in ("ds2_cpu", "ds2_cpu_wide")}
    assert counts["ds2_cpu"] == 4_885_968
    assert counts["ds2_cpu"] < counts["ds2_cpu_wide"] < 12.0e6
    assert PRESETS["ds2_cpu_wide"].hidden_size == 512 and PRESETS["ds2_cpu_wide"].hidden_layers == 4


def test_output_lengths_follow_conv_arithmetic():
    model = DeepSpeech2(PRESETS["ds2_tiny"], 161, 29).eval()
    lengths = torch.tensor([200, 151, 37, 1])
    features = torch.randn(4, 161, 200)
    with torch.no_grad():
        logits, out = model(features, lengths)
    expected = [(int(n) + 2 * 5 - 11) // 2 + 1 for n in lengths]  # stride 2 in time, then stride 1
    assert out.tolist() == expected
    assert logits.shape == (4, max(expected), 29)
    assert torch.equal(model.output_lengths(lengths), out)


@pytest.mark.parametrize("config", [PRESETS["ds2_tiny"],
                                    ModelConfig(rnn_type="lstm", hidden_size=64, hidden_layers=2, bidirectional=False,
                                                lookahead_context=5, conv_channels=8)])
def test_padding_does_not_change_an_utterance(config):
    torch.manual_seed(0)
    model = DeepSpeech2(config, 161, 29).eval()
    short = torch.randn(1, 161, 60)
    padded = torch.zeros(2, 161, 120)
    padded[0, :, :60] = short[0]
    padded[1] = torch.randn(161, 120)
    with torch.no_grad():
        alone, n_alone = model(short, torch.tensor([60]))
        batched, n_batch = model(padded, torch.tensor([60, 120]))
    assert n_alone[0] == n_batch[0] == 30
    torch.testing.assert_close(batched[0, :30], alone[0, :30], atol=1e-4, rtol=1e-4)


def test_unidirectional_lookahead_is_causal_beyond_context():
    torch.manual_seed(0)
    config = ModelConfig(rnn_type="gru", hidden_size=32, hidden_layers=1, bidirectional=False, lookahead_context=3,
                         conv_channels=4)
    model = DeepSpeech2(config, 161, 29).eval()
    features = torch.randn(1, 161, 200)
    changed = features.clone()
    changed[:, :, 150:] = torch.randn(161, 50)
    with torch.no_grad():
        a, _ = model(features, torch.tensor([200]))
        b, _ = model(changed, torch.tensor([200]))
    # Frames well before the change (conv receptive field + lookahead) are unaffected.
    torch.testing.assert_close(a[0, :60], b[0, :60])
    assert not torch.allclose(a[0, 80:], b[0, 80:])


def test_unknown_rnn_type():
    with pytest.raises(ValueError, match="rnn_type"):
        DeepSpeech2(ModelConfig(rnn_type="transformer"), 161, 29)


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_padded_bidirectional_layer_matches_a_packed_run(rnn_type):
    """BatchRNN avoids packed sequences for speed; outputs and gradients must be those of a packed run."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from deepspeech_pytorch.models.deepspeech2 import BatchRNN

    torch.manual_seed(0)
    layer = BatchRNN(6, 5, rnn_type, bidirectional=True, batch_norm=False)
    # the reference: one bidirectional RNN holding the same weights (checkpoint format 1's layout)
    packed_rnn = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[rnn_type](6, 5, bidirectional=True)
    packed_rnn.load_state_dict({**layer.rnn.state_dict(),
                                **{f"{name}_reverse": value for name, value in layer.rnn_reverse.state_dict().items()}})
    lengths = torch.tensor([4, 9, 7])
    x = torch.randn(9, 3, 6, requires_grad=True)
    ours = layer(x, lengths)
    packed, _ = packed_rnn(pack_padded_sequence(x, lengths, enforce_sorted=False))
    reference, _ = pad_packed_sequence(packed, total_length=9)
    reference = reference.view(9, 3, 2, 5).sum(dim=2)
    torch.testing.assert_close(ours, reference)
    assert torch.count_nonzero(ours[4:, 0]) == 0  # padding stays zero
    weights = torch.randn_like(reference)
    ours_grads = torch.autograd.grad((ours * weights).sum(),
                                     [x, *layer.rnn.parameters(), *layer.rnn_reverse.parameters()])
    reference_grads = torch.autograd.grad((reference * weights).sum(), [x, *packed_rnn.parameters()])
    for got, expected in zip(ours_grads, reference_grads):
        torch.testing.assert_close(got, expected)


def test_format_1_bundled_model_gives_its_recorded_logits():
    """The bundled model is a format-1 checkpoint (one bidirectional nn.GRU per layer, `*_reverse` weights);
    loaded into today's layers it must give the logits the format-1 code gave on a sample."""
    import os

    from deepspeech_pytorch.audio import load_audio
    from deepspeech_pytorch.checkpoint import build_model, load_checkpoint
    from deepspeech_pytorch.features import spectrogram

    here = os.path.dirname(__file__)
    recorded = torch.load(os.path.join(here, "fixtures", "bundled_sample4_logits.pt"), weights_only=True)
    root = os.path.join(here, "..", "deepspeech_pytorch", "pretrained")
    state = load_checkpoint(os.path.join(root, "default.pt"))
    assert any(key.endswith("_reverse") for key in state["model_state"])  # really the old layout
    model, _, features = build_model(state)
    samples = torch.from_numpy(load_audio(os.path.join(root, "samples", recorded["sample"])))[None]
    feats, lengths = spectrogram(samples, torch.tensor([samples.shape[1]]), features)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # as recorded: another thread count sums in another order (last-bit differences)
    try:
        with torch.no_grad():
            logits, _ = model.eval()(feats, lengths)
    finally:
        torch.set_num_threads(threads)
    # Recorded and compared bit for bit when the layers changed (commit a151ee1); on other CPUs the kernels
    # may round differently, so the test allows rounding noise and asks for the same best path exactly.
    torch.testing.assert_close(logits[0], recorded["logits"], atol=1e-4, rtol=1e-5)
    assert torch.equal(logits[0].argmax(-1), recorded["logits"].argmax(-1))


def _random_batch(batch=3, frames=(120, 97, 33)):
    torch.manual_seed(1)
    return torch.randn(batch, 161, max(frames)), torch.tensor(frames)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_model_traces_with_any_batch_and_length(bidirectional):
    config = ModelConfig(rnn_type="gru", hidden_size=32, hidden_layers=2, bidirectional=bidirectional,
                         lookahead_context=3, conv_channels=4)
    model = DeepSpeech2(config, 161, 29).eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, _random_batch(2, (50, 40)))
        features, lengths = _random_batch()
        expected, expected_lengths = model(features, lengths)
        got, got_lengths = traced(features, lengths)
    torch.testing.assert_close(got, expected)
    assert torch.equal(got_lengths, expected_lengths)


def test_model_exports_to_onnx_and_runs_in_onnx_runtime(tmp_path):
    import onnxruntime as ort
    model = DeepSpeech2(PRESETS["ds2_tiny"], 161, 29).eval()
    path = str(tmp_path / "model.onnx")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, _random_batch(2, (50, 40)), path, dynamo=False, opset_version=17,
                          input_names=["features", "lengths"], output_names=["logits", "output_lengths"],
                          dynamic_axes={"features": {0: "batch", 2: "frames"}, "lengths": {0: "batch"},
                                        "logits": {0: "batch", 1: "time"}, "output_lengths": {0: "batch"}})
    features, lengths = _random_batch()
    logits, output_lengths = ort.InferenceSession(path).run(None, {"features": features.numpy(),
                                                                   "lengths": lengths.numpy()})
    with torch.no_grad():
        expected, expected_lengths = model(features, lengths)
    torch.testing.assert_close(torch.from_numpy(logits), expected, atol=1e-4, rtol=1e-4)
    assert output_lengths.tolist() == expected_lengths.tolist()


def test_model_dynamic_quantizes_its_recurrent_and_linear_layers():
    import warnings
    model = DeepSpeech2(PRESETS["ds2_tiny"], 161, 29).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8)
    for layer in (quantized.rnns[0].rnn, quantized.rnns[0].rnn_reverse, quantized.head.module[1]):
        assert ".quantized." in type(layer).__module__
    features, lengths = _random_batch()
    with torch.no_grad():
        expected, _ = model(features, lengths)
        got, _ = quantized(features, lengths)
    assert not torch.equal(got, expected)
    assert (got - expected).abs().max() < 0.1 * expected.abs().max()
