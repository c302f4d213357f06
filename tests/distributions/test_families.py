"""Contract tests for every posterior / prior family: add a family by adding one line to FAMILIES."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal

from vaekit.distributions import (DiagonalGaussian, DiagonalNormal, LearnedGaussian, StandardNormal, kl_divergence,
                                  rsample_and_log_prob)

CTX, D, B = 6, 3, 4

FAMILIES = {
    "diag_gaussian_softplus": lambda: DiagonalGaussian(CTX, D),
    "diag_gaussian_exp": lambda: DiagonalGaussian(CTX, D, scale="exp"),
    "standard_normal": lambda: StandardNormal(D),
    "learned_gaussian": lambda: LearnedGaussian(D),
}


def _dist(name, family):
    torch.manual_seed(0)
    ctx = torch.randn(B, CTX)
    return family(ctx) if "diag_gaussian" in name else family()


@pytest.mark.parametrize("name", FAMILIES)
def test_shapes_and_one_pass_log_prob(name):
    family = FAMILIES[name]()
    dist = _dist(name, family)
    z, lp = rsample_and_log_prob(dist, (7,))
    assert z.shape == (7, *dist.batch_shape, D)
    assert lp.shape == (7, *dist.batch_shape)
    torch.testing.assert_close(lp, dist.log_prob(z), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_log_prob_matches_torch_reference(name):
    dist = _dist(name, FAMILIES[name]())
    ref = Independent(Normal(dist.loc, dist.scale), 1)
    z = dist.sample((5,))
    torch.testing.assert_close(dist.log_prob(z), ref.log_prob(z))


@pytest.mark.parametrize("name", FAMILIES)
def test_gradients_reach_every_parameter(name):
    family = FAMILIES[name]()
    params = list(family.parameters())
    if not params:
        pytest.skip("family has no parameters (fixed prior)")
    dist = _dist(name, family)
    z, lp = rsample_and_log_prob(dist, (3,))
    (z.pow(2).sum() + lp.sum()).backward()
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("name", FAMILIES)
def test_state_dict_round_trip(name):
    a, b = FAMILIES[name](), FAMILIES[name]()
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.3)
    b.load_state_dict(a.state_dict())
    da, db = _dist(name, a), _dist(name, b)
    torch.testing.assert_close(da.loc, db.loc)
    torch.testing.assert_close(da.scale, db.scale)


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(1)
    q = DiagonalNormal(torch.randn(2, 3), torch.rand(2, 3) + 0.3)
    p = DiagonalNormal(torch.randn(3), torch.rand(3) + 0.5)
    exact = kl_divergence(q, p, method="analytic")
    z = q.sample((200_000,))
    mc = kl_divergence(q, p, z, method="mc").mean(0)
    torch.testing.assert_close(mc, exact, atol=0.02, rtol=0.0)
    # the standard N(0,1) closed form for one coordinate
    q1 = DiagonalNormal(torch.tensor([[1.0]]), torch.tensor([[2.0]]))
    expected = 0.5 * (4.0 + 1.0 - 1.0 - math.log(4.0))
    torch.testing.assert_close(kl_divergence(q1, StandardNormal(1)()), torch.tensor([expected]))


def test_kl_auto_falls_back_to_monte_carlo():
    from torch.distributions import AffineTransform, TransformedDistribution

    base = TransformedDistribution(Normal(torch.zeros(2), torch.ones(2)), [AffineTransform(0.5, 1.0)])
    q, p = Independent(base, 1), DiagonalNormal(torch.zeros(2), 2 * torch.ones(2))
    z = q.sample((3,))
    out = kl_divergence(q, p, z)
    torch.testing.assert_close(out, q.log_prob(z) - p.log_prob(z))
    with pytest.raises(NotImplementedError, match="no closed-form KL"):
        kl_divergence(q, p, z, method="analytic")
    with pytest.raises(ValueError, match="needs the posterior sample"):
        kl_divergence(q, p)
    with pytest.raises(ValueError, match="method must be one of"):
        kl_divergence(q, p, z, method="exact")


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale must be 'softplus' or 'exp'"):
        DiagonalGaussian(4, 2, scale="log")
    with pytest.raises(ValueError, match="latent_features"):
        StandardNormal(0)
    with pytest.raises(ValueError, match="needs the encoder features"):
        DiagonalGaussian(4, 2)()


def test_closed_form_kl_follows_a_registration_made_after_its_first_use():
    from torch.distributions import register_kl
    from torch.distributions.kl import _KL_MEMOIZE, _KL_REGISTRY

    from vaekit.distributions import closed_form_kl

    class Q(DiagonalNormal):
        pass

    q, p = Q(torch.ones(2), torch.ones(2)), DiagonalNormal(torch.zeros(2), torch.ones(2))
    assert float(closed_form_kl(q, p)) == 1.0  # inherited from (DiagonalNormal, DiagonalNormal)
    try:
        register_kl(Q, DiagonalNormal)(lambda a, b: torch.tensor(7.0))
        assert float(closed_form_kl(q, p)) == 7.0
        register_kl(Q, DiagonalNormal)(lambda a, b: torch.tensor(9.0))  # again: the registry keeps its size
        assert float(closed_form_kl(q, p)) == 9.0
    finally:
        _KL_REGISTRY.pop((Q, DiagonalNormal), None)
        _KL_MEMOIZE.clear()
