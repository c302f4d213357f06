"""JointVAE contract over every relaxation and the capacity objective of Dupont (2018)."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.models.joint import JointVAE, joint_vae
from vaekit.models.vae import mlp_vae
from vaekit.objectives.capacity import CapacityObjective, linear_capacity

RELAXATIONS = ["gs", "igr_i", "igr_planar", "igr_sb"]
D = 12


def tiny(relaxation: str = "gs", **kw) -> JointVAE:
    torch.manual_seed(0)
    return joint_vae([D], continuous_features=2, n_variables=2, n_categories=3, hidden=[16], relaxation=relaxation,
                     temperature=0.5, **kw)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.bernoulli(torch.full((8, D), 0.4), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_contract(relaxation, x):
    model = tiny(relaxation)
    assert model.latent_names == ("z", "c") and model.latent_dims == {"z": 2, "c": 6}
    terms = model.elbo_terms(x)
    assert terms.rec.shape == (8,) and set(terms.kl) == {"z", "c"}
    assert all(v.shape == (8,) and torch.isfinite(v).all() for v in terms.kl.values())
    assert (terms.kl["z"] >= 0).all()  # closed-form Gaussian KL
    lw = model.log_weights(x, 4)
    assert lw.shape == (4, 8) and torch.isfinite(lw).all()
    latents = model.sample_prior(3)
    assert latents["z"].shape == (3, 2) and latents["c"].shape == (3, 6)
    assert model.sample(3).shape == (3, D)
    (-terms.elbo.mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert model.max_discrete_kl == pytest.approx(2 * math.log(3))
    kl = model.discrete_kl(x)
    assert kl.shape == (8,) and (kl >= -1e-6).all()


def test_capacity_objective_equals_formula(x):
    model = tiny("gs")
    obj = CapacityObjective(gamma=30.0, continuous_capacity=(0.5, 5.0, 100), discrete_capacity=(0.0, 5.0, 100))
    for step in (0, 40, 100, 5000):
        torch.manual_seed(step)
        loss, metrics = obj(model, x, step)
        torch.manual_seed(step)
        terms = model.elbo_terms(x)
        cz = 0.5 + 4.5 * min(step / 100, 1.0)
        cc = min(5.0 * min(step / 100, 1.0), 2 * math.log(3))  # capped at N log K = 2.197
        want = -terms.rec.mean() + 30 * (terms.kl["z"].mean() - cz).abs() + 30 * (terms.kl["c"].mean() - cc).abs()
        assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
        assert float(metrics["capacity/z"]) == pytest.approx(cz)
        assert float(metrics["capacity/c"]) == pytest.approx(cc, rel=1e-6)
        assert float(metrics["kl/c"]) == pytest.approx(float(terms.kl["c"].mean().detach()), rel=1e-5)
    assert linear_capacity(25, 0.0, 5.0, 100) == 1.25


def test_capacity_objective_trains_and_reports(x):
    model = tiny("igr_i")
    obj = CapacityObjective(gamma=5.0, continuous_capacity=(0.0, 2.0, 20), discrete_capacity=(0.0, 1.0, 20))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(40):
        opt.zero_grad()
        loss, metrics = obj(model, x, step)
        loss.backward()
        opt.step()
    assert set(metrics) >= {"loss", "elbo", "rec", "kl/z", "kl/c", "capacity/z", "capacity/c"}
    # the KLs are pulled towards their capacities (2.0 and 1.0 nats) rather than to zero
    assert float(metrics["kl/z"]) > 0.5


def test_capacity_objective_on_a_model_without_the_latent(x):
    vae = mlp_vae([D], latent_features=2, hidden=[8])
    with pytest.raises(ValueError, match=r"controls latents \['z', 'c'\].*\['z'\]"):
        CapacityObjective()(vae, x, 0)
    loss, metrics = CapacityObjective(discrete_latent=None)(vae, x, 0)  # the continuous half alone works
    assert "capacity/z" in metrics and torch.isfinite(loss)


@pytest.mark.parametrize("kwargs, match", [
    ({"gamma": 0.0}, "gamma"),
    ({"continuous_capacity": (0.0, 5.0)}, "continuous_capacity must be a"),
    ({"discrete_capacity": (5.0, 1.0, 10)}, "must rise"),
    ({"discrete_capacity": (0.0, 1.0, -1)}, "iterations"),
    ({"continuous_latent": None, "discrete_latent": None}, "both None"),
    ({"continuous_latent": "c"}, "must differ"),
])
def test_capacity_bad_input(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        CapacityObjective(**kwargs)


def test_joint_bad_input():
    model = tiny()
    with pytest.raises(TypeError, match="continuous_posterior"):
        JointVAE(model.encoder, model.discrete_posterior, model.discrete_posterior, model.decoder, model.likelihood, [D])
    with pytest.raises(ValueError, match=r"shape \(2, 5\)"):
        model.log_weights(torch.zeros(2, 5), 1)
    with pytest.raises(ValueError, match="n_categories"):
        joint_vae([D], n_categories=1)
