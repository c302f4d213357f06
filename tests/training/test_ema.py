"""EMA of weights: numerics, swapping, checkpoint state, and its use by the trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from training_helpers import ReconMSE, TinyVAE, make_data, weights

from vaekit.training import EMA, Trainer, load_checkpoint, load_weights, read_metrics


def test_ema_matches_closed_form() -> None:
    lin = torch.nn.Linear(3, 2)
    start = {k: v.clone() for k, v in lin.named_parameters()}
    ema = EMA(lin, decay=0.9)
    targets = [torch.randn(2, 3) for _ in range(5)]
    expected = start["weight"].clone()
    for t in targets:
        lin.weight.data.copy_(t)
        ema.update(lin)
        expected = 0.9 * expected + 0.1 * t
    torch.testing.assert_close(ema.shadow["weight"], expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ema.shadow["bias"], start["bias"])  # bias never changed


def test_swap_restores_and_state_roundtrip() -> None:
    lin = torch.nn.Linear(2, 2)
    ema = EMA(lin, 0.5)
    live = weights(lin)
    lin.weight.data.add_(1.0)
    ema.update(lin)
    live = weights(lin)
    with ema.swapped(lin):
        assert torch.equal(lin.weight, ema.shadow["weight"])
    assert torch.equal(lin.weight, live["weight"])
    other = EMA(torch.nn.Linear(2, 2), 0.5)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.shadow["weight"], ema.shadow["weight"])
    assert ema.model_state_dict(lin)["weight"] is ema.shadow["weight"]
    with pytest.raises(ValueError, match="EMA state does not match"):
        EMA(torch.nn.Linear(2, 2, bias=False), 0.5).load_state_dict(ema.state_dict())
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        EMA(lin, 1.0)


def test_trainer_uses_ema_for_validation_weights_and_result(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyVAE()
    init = weights(model)
    res = Trainer(max_epochs=3, batch_size=16, lr=1e-2, ema_decay=0.8, progress_bar=False,
                  root_dir=str(tmp_path)).fit(model, make_data(n=64), ReconMSE())
    ckpt = load_checkpoint(res.run_dir.last_checkpoint)
    shadow = ckpt["ema"]["shadow"]
    live = ckpt["model"]
    assert ckpt["ema"]["decay"] == 0.8
    # the average differs from the live weights and from the start
    assert not torch.equal(shadow["enc.weight"], live["enc.weight"])
    assert not torch.equal(shadow["enc.weight"], init["enc.weight"])
    # safetensors and the returned model hold the average
    saved = load_weights(res.run_dir.last_weights)
    assert all(torch.equal(saved[k], shadow[k]) for k in shadow)
    assert all(torch.equal(v, shadow[k]) for k, v in weights(model).items())
    # the last validation loss is the loss of the averaged weights (deterministic objective)
    val = [r for r in read_metrics(res.run_dir.metrics) if r["split"] == "val" and r["name"] == "loss"]
    x = make_data(n=64).val
    with torch.no_grad():
        expected = ReconMSE()(model.eval(), x)[0].item()
    assert val[-1]["step"] == 12
    assert val[-1]["value"] == pytest.approx(expected, rel=1e-5)
