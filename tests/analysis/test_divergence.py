"""KL per latent and per dimension, and active units, on one- and two-latent models."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.distributions import Normal, StudentT

from vaekit.analysis.divergence import active_units, kl_per_dimension, kl_statistics, latent_pairs, save_kl_plot


def test_vae_kl_per_dimension_is_the_closed_form_and_sums_to_the_latent_kl(vae, clusters):
    x = clusters[0][:100]
    stats = kl_statistics(vae, x, batch_size=30)
    s = stats["z"]
    q = vae.encode(x)["z"]
    by_hand = 0.5 * (q.scale.pow(2) + q.loc.pow(2) - 1 - q.scale.pow(2).log())  # KL(N(m, s^2) || N(0, 1)) per dim
    torch.testing.assert_close(s.kl_per_dim, by_hand.mean(0).detach(), rtol=1e-5, atol=1e-6)
    assert s.kl_per_dim_method == "analytic" and abs(float(s.kl_per_dim.sum()) - s.kl) < 1e-4
    torch.testing.assert_close(torch.tensor(s.kl), vae.elbo_terms(x).kl["z"].mean().detach(), rtol=1e-5, atol=1e-5)
    # active units: the variance over x of the posterior means
    torch.testing.assert_close(s.unit_variance, q.loc.var(0).detach(), rtol=1e-5, atol=1e-7)
    assert s.active_units == int((q.loc.var(0) > 0.01).sum()) and 1 <= s.active_units <= s.dims == 4
    d = s.to_dict()
    assert d["dims"] == 4 and len(d["kl_per_dim"]) == 4 and len(d["unit_variance"]) == 4


def test_two_latents_get_their_own_statistics_and_a_dead_latent_has_no_active_units(two, clusters):
    model = copy.deepcopy(two)
    with torch.no_grad():  # make the posterior mean of 'b' ignore x: its units cannot be active
        model.qb.linear.weight[:3] = 0
    x = clusters[0][:90]
    stats = kl_statistics(model, x)
    assert list(stats) == ["a", "b"] and stats["a"].dims == 2 and stats["b"].dims == 3
    assert stats["b"].active_units == 0 and stats["b"].unit_variance.max() < 1e-10
    assert 1 <= stats["a"].active_units <= 2
    for name in ("a", "b"):  # per-dimension KLs come from the model's latent_pairs (prior, posterior)
        assert stats[name].kl_per_dim_method == "analytic"
        assert abs(float(stats[name].kl_per_dim.sum()) - stats[name].kl) < 1e-4


def test_models_without_priors_get_no_per_dimension_kl(two, clusters):
    model = copy.deepcopy(two)
    model.latent_pairs = lambda x: None  # a model that declares no priors
    assert latent_pairs(model, clusters[0][:4]) is None
    stats = kl_statistics(model, clusters[0][:20])
    assert stats["a"].kl_per_dim is None and stats["a"].kl_per_dim_method is None and stats["a"].kl > 0


def test_kl_per_dimension_falls_back_to_monte_carlo():
    torch.manual_seed(0)
    f64 = dict(dtype=torch.float64)
    q = torch.distributions.Independent(StudentT(torch.tensor([[10.0, 30.0]], **f64), torch.tensor([[1.0, -0.5]], **f64),
                                                 torch.tensor([[0.5, 1.5]], **f64)), 1)
    p = Normal(torch.zeros(2, **f64), torch.ones(2, **f64))
    kl, method = kl_per_dimension(q, p, n_mc=100_000)
    # exact KL(q_d || N(0, 1)) by quadrature on a fine grid: 0.747 and 0.391 nats
    t = torch.linspace(-60, 60, 600_001, **f64)[:, None]
    lq, lp = q.base_dist.log_prob(t), p.log_prob(t)
    want = torch.trapezoid(lq.exp() * (lq - lp), t[:, 0], dim=0)
    assert method == "mc" and kl.shape == (1, 2)
    torch.testing.assert_close(kl[0], want, rtol=0.03, atol=0)


def test_active_units_counts_variances_above_the_threshold():
    means = torch.tensor([[0.0, 0.0, 5.0], [0.2, 0.1, 5.0], [0.4, 0.0, 5.0]])
    count, var = active_units(means)
    torch.testing.assert_close(var, torch.tensor([0.04, 1 / 300, 0.0]))
    assert count == 1 and active_units(means, threshold=0.001)[0] == 2
    with pytest.raises(ValueError, match=r"n >= 2 examples, got \(1, 3\)"):
        active_units(means[:1])


def test_plot_and_bad_input(vae, clusters, tmp_path):
    stats = kl_statistics(vae, clusters[0][:20])
    assert save_kl_plot(stats, tmp_path / "kl.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="must end in .png"):
        save_kl_plot(stats, tmp_path / "kl.jpg")
    with pytest.raises(ValueError, match="at least 2 examples"):
        kl_statistics(vae, clusters[0][:1])
    with pytest.raises(ValueError, match="threshold must be a finite number >= 0"):
        kl_statistics(vae, clusters[0][:5], threshold=-1.0)


def test_a_one_dimensional_spatial_latent_gets_statistics_per_channel():
    # a (2, 8) latent (2 channels over 8 positions, Conv1d networks): spatial as a (C, H, W) one is
    from torch import nn

    from vaekit.distributions import Bernoulli
    from vaekit.models.hierarchical import HierarchicalVAE, InputBlock, OutputBlock, SimpleBlock, TopGenBlock

    torch.manual_seed(0)
    model = HierarchicalVAE([InputBlock("x_in"), SimpleBlock("h", "x_in", nn.Conv1d(1, 3, 3, padding=1)),
                             TopGenBlock("z", "h", nn.Conv1d(3, 4, 1), [2, 8]),
                             OutputBlock("x_out", "z", nn.Conv1d(2, 1, 1), Bernoulli())], [1, 8]).eval()
    x = torch.bernoulli(torch.full((40, 1, 8), 0.5), generator=torch.Generator().manual_seed(0))
    s = kl_statistics(model, x, threshold=1e-3)["z"]
    assert s.dims == 2 and s.kl_per_dim.shape == (2,) and s.unit_variance.shape == (2,)
    assert abs(float(s.kl_per_dim.sum()) - s.kl) < 1e-4 * max(1.0, s.kl)
    with torch.no_grad():
        loc = model.blocks["z"].net(model.blocks["h"].net(x))[:, :2]    # posterior means (40, 2, 8)
        q, p = model.latent_pairs(x)["z"][1], model.latent_pairs(x)["z"][0]
    torch.testing.assert_close(s.unit_variance, loc.var(0).mean(1), rtol=1e-4, atol=1e-7)
    assert s.active_units == int((loc.var(0).mean(1) > 1e-3).sum())
    per_channel = torch.distributions.kl_divergence(q.base_dist, p.base_dist).sum(-1).mean(0)
    torch.testing.assert_close(s.kl_per_dim, per_channel, rtol=1e-4, atol=1e-6)
