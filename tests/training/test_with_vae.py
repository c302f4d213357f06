"""Smoke tests with the library's own VAE and data module (the engine itself is tested with TinyVAE)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from training_helpers import TinyVAE, make_data, same_weights, weights

from vaekit.data import ArrayData
from vaekit.models import mlp_vae
from vaekit.training import Trainer, load_weights, read_metrics


def test_mlp_vae_on_array_data_with_dynamic_binarization(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(4, 64, generator=g)
    x = protos[torch.randint(0, 4, (400,), generator=g)].clamp(0.05, 0.95)
    data = ArrayData(x, val_fraction=0.2, binarize="dynamic")
    torch.manual_seed(0)
    model = mlp_vae([64], latent_features=4, hidden=[32])
    res = Trainer(max_epochs=8, batch_size=32, lr=3e-3, ema_decay=0.9, progress_bar=False,
                  root_dir=str(tmp_path)).fit(model, data)
    assert res.stop_reason == "max_epochs" and res.global_step == 8 * 10
    val = [r["value"] for r in read_metrics(res.run_dir.metrics) if r["split"] == "val" and r["name"] == "loss"]
    assert val[-1] < val[0] - 2.0  # the negative ELBO on binarized 64-pixel data fell by > 2 nats
    fresh = mlp_vae([64], latent_features=4, hidden=[32])
    fresh.load_state_dict(load_weights(res.run_dir.last_weights))
    assert same_weights(weights(fresh), weights(model))


def test_non_binary_data_with_a_bernoulli_likelihood_is_rejected_before_writing(tmp_path: Path) -> None:
    data = ArrayData(torch.rand(50, 64) * 3.0, val_fraction=0.2)
    with pytest.raises(ValueError):
        Trainer(max_epochs=1, progress_bar=False, root_dir=str(tmp_path / "runs")).fit(
            mlp_vae([64], latent_features=4, hidden=[32]), data)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_compile_gives_the_same_weights(tmp_path: Path) -> None:
    out = []
    for compile in (False, True):
        torch.manual_seed(0)
        model = TinyVAE()
        Trainer(max_epochs=2, batch_size=16, compile=compile, progress_bar=False,
                root_dir=str(tmp_path)).fit(model, make_data())
        out.append(weights(model))
    for k in out[0]:
        torch.testing.assert_close(out[0][k], out[1][k], rtol=1e-5, atol=1e-6)
