"""Diagnostics of relaxed discrete latents: simplex proximity, gradient variance, IGR-SB categories, files."""

from __future__ import annotations

import json

import pytest
import torch

from vaekit.analysis.discrete import categories_used, discrete_diagnostics, gradient_variance, simplex_proximity
from vaekit.distributions.relaxed import GumbelSoftmax, RelaxedCategorical
from vaekit.models.discrete import discrete_vae
from vaekit.models.joint import joint_vae
from vaekit.models.vae import mlp_vae

TEMPS = [0.03, 0.1, 0.25, 0.67, 2.0]


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.bernoulli(torch.full((16, 12), 0.4), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("relaxation", ["gs", "igr_i", "igr_sb"])
def test_proximity_rises_as_temperature_falls(relaxation):
    torch.manual_seed(0)
    family = RelaxedCategorical(4, n_variables=3, n_categories=5, relaxation=relaxation, temperature=0.5)
    out = simplex_proximity(family, TEMPS, d=0.2, n=400, context=torch.randn(6, 4))
    frac = out["fraction"]
    assert out["temperatures"] == TEMPS and len(frac) == len(TEMPS)
    assert all(a >= b for a, b in zip(frac, frac[1:])), frac
    assert frac[0] > 0.9 and frac[-1] < frac[0] - 0.3
    assert family.temperature == 0.5  # restored


def test_proximity_of_a_distribution_and_a_callable():
    dist = GumbelSoftmax(torch.zeros(4), 1.0)
    a = simplex_proximity(dist, [0.05, 5.0], n=300)["fraction"]
    b = simplex_proximity(lambda t: GumbelSoftmax(torch.zeros(4), t), [0.05, 5.0], n=300)["fraction"]
    assert a[0] > 0.9 and a[1] < 0.1 and b[0] > 0.9 and b[1] < 0.1
    assert float(dist.temperature) == 1.0  # the original is untouched


def test_gradient_variance(x):
    torch.manual_seed(0)
    model = discrete_vae([12], n_variables=2, n_categories=3, hidden=[8], relaxation="gs", temperature=0.5)
    out = gradient_variance(model, x, n_samples=6)
    n_enc = sum(p.numel() for p in (*model.encoder.parameters(), *model.posterior.parameters()))
    assert out["n_parameters"] == n_enc and out["n_samples"] == 6
    assert out["total_variance"] > 0 and out["total_variance"] == pytest.approx(out["mean_variance"] * n_enc, rel=1e-9)
    assert int(model.train_step) == 0 and model.training  # no side effects
    # with the latent noise averaged out over many examples the variance shrinks: repeat the batch 16 times
    big = gradient_variance(model, x.repeat(16, 1), n_samples=6)
    assert big["total_variance"] < out["total_variance"]


def test_categories_used(x):
    torch.manual_seed(0)
    sb = discrete_vae([12], n_variables=2, n_categories=6, hidden=[8], relaxation="igr_sb", temperature=0.5)
    out = categories_used(sb, x, n=5)
    assert 1 <= out["min"] <= out["mean"] <= out["max"] <= 6 and out["max_categories"] == 6
    assert 0.0 <= out["truncated_fraction"] <= 1.0
    assert categories_used(discrete_vae([12], n_variables=2, n_categories=3, hidden=[8]), x) is None


def test_discrete_diagnostics_writes_files(x, tmp_path):
    torch.manual_seed(0)
    model = joint_vae([12], continuous_features=2, n_variables=2, n_categories=3, hidden=[8], relaxation="igr_i")
    out = discrete_diagnostics(model, x, tmp_path / "analysis", temperatures=[0.05, 0.5, 2.0], n=50, grad_samples=3)
    saved = json.loads((tmp_path / "analysis" / "discrete.json").read_text())
    assert (tmp_path / "analysis" / "discrete_proximity.png").stat().st_size > 1000
    assert saved["relaxation"] == "igr_i" and saved["n_categories"] == 3
    fr = saved["proximity"]["fraction"]
    assert fr[0] >= fr[1] >= fr[2] and all(0 <= f <= 1 for f in fr)
    assert saved["gradient_variance"]["total_variance"] > 0 and saved["categories_used"] is None
    assert 0 <= saved["discrete_kl"] <= 2 * torch.log(torch.tensor(3.0)).item() + 1e-6
    assert out["proximity"] == saved["proximity"]
    assert discrete_diagnostics(mlp_vae([12], latent_features=2, hidden=[8]), x, tmp_path / "none") is None
    assert not (tmp_path / "none").exists()


def test_bad_input(x, tmp_path):
    family = RelaxedCategorical(4, 2, 3)
    with pytest.raises(ValueError, match="temperatures"):
        simplex_proximity(family, [])
    with pytest.raises(ValueError, match=r"temperatures\[1\]"):
        simplex_proximity(family, [0.5, 0.0])
    with pytest.raises(ValueError, match="d must be"):
        simplex_proximity(family, [0.5], d=-0.1)
    with pytest.raises(TypeError, match="family_or_dist"):
        simplex_proximity(torch.distributions.Normal(0.0, 1.0), [0.5])
    model = discrete_vae([12], n_variables=2, n_categories=3, hidden=[8])
    with pytest.raises(ValueError, match="n_samples"):
        gradient_variance(model, x, n_samples=1)
    with pytest.raises(ValueError, match="shape"):
        discrete_diagnostics(model, torch.zeros(3, 5), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
