import math

import pytest
import torch

from deepspeech_pytorch.models import build_model, preset
from deepspeech_pytorch.objectives import CTCObjective, backward_step, build_objective, forward_loss


def test_ctc_objective_is_fp32_ctc_and_shows_an_impossible_target():
    torch.manual_seed(0)
    logits = torch.randn(2, 30, 29, dtype=torch.bfloat16)
    lengths, targets, target_lengths = torch.tensor([30, 20]), torch.randint(1, 29, (13,)), torch.tensor([8, 5])
    expected = torch.nn.functional.ctc_loss(torch.log_softmax(logits.float(), -1).transpose(0, 1), targets, lengths,
                                            target_lengths)
    loss = CTCObjective()(logits, lengths, targets, target_lengths)
    assert loss.dtype == torch.float32 and torch.allclose(loss, expected)
    too_long = CTCObjective()(logits[:1, :3], torch.tensor([3]), targets[:8], torch.tensor([8]))
    assert math.isinf(float(too_long))  # not a 0 that looks like perfect training
    with pytest.raises(ValueError, match="objective='kl': choose from ctc"):
        build_objective("kl")


def test_the_shared_step_learns_and_refuses_non_finite_gradients():
    torch.manual_seed(0)
    model = build_model(preset("ds2_tiny"), 161, 29)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    features, lengths = torch.randn(2, 161, 80), torch.tensor([80, 60])
    targets, target_lengths = torch.randint(1, 29, (10,)), torch.tensor([6, 4])
    objective = build_objective()
    losses = []
    for _ in range(12):
        loss = forward_loss(model, objective, features, lengths, targets, target_lengths)
        losses.append(float(loss))
        assert backward_step(loss, model.parameters(), optimizer, scaler, max_grad_norm=400.0) is not None
    assert losses[-1] < 0.7 * losses[0]
    before = [p.detach().clone() for p in model.parameters()]
    bad = forward_loss(model, objective, features, lengths, targets, target_lengths) * float("nan")
    assert backward_step(bad, model.parameters(), optimizer, scaler, max_grad_norm=400.0) is None
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
