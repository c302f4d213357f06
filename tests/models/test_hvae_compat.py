"""hVAE's heads in vaekit blocks: the four scale maps, Laplace latents at a temperature, argument checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import vaekit
from vaekit.distributions import DiagonalLaplace, DiagonalNormal
from vaekit.models.hierarchical.hvae_compat import HVAEGaussian, HVAEGenBlock, HVAETopGenBlock, hvae_scale, tdvae


@pytest.mark.parametrize("base, sigma_param, want", [
    ("logstd", "var", lambda r, b: math.sqrt(math.exp(b * r))),   # hVAE's TDVAE
    ("logstd", "std", lambda r, b: math.exp(b * r)),
    ("std", "std", lambda r, b: math.log1p(math.exp(b * r)) / b),   # torch's Softplus(beta)
    ("std", "var", lambda r, b: math.sqrt(math.log1p(math.exp(b * r)) / b)),
])
def test_scale_maps_are_hvaes(base, sigma_param, want):
    raw = torch.tensor([-3.0, -0.5, 0.0, 1.25, 4.0], dtype=torch.float64)
    for beta in (1.0, 0.6931472):
        got = hvae_scale(raw, base, sigma_param, beta)
        torch.testing.assert_close(got, torch.tensor([want(float(r), beta) for r in raw], dtype=torch.float64))


def test_laplace_layer_at_a_temperature_scales_its_spread():
    torch.manual_seed(0)
    block = HVAETopGenBlock("y", "h", nn.Linear(3, 4), 2, distribution="laplace")
    prior, _ = block.prior([], 40000)
    for t in (0.5, 1.0):
        z = block.tempered_sample(prior, t)
        # Laplace(0, b = 1) has standard deviation sqrt(2) b; 40000 draws: standard error ~0.5%
        assert abs(float(z.std()) / (t * math.sqrt(2)) - 1) < 0.02
    assert torch.equal(block.tempered_sample(prior, 0.0), torch.zeros(40000, 2))


def test_tdvae_elbo_terms_use_the_laplace_kl():
    torch.manual_seed(1)
    model = tdvae([16], hiddens=12, y_features=3, z_features=4, y_hidden=[8], concat_hidden=[8], z_prior_hidden=[8]).eval()
    x = torch.rand(4, 16)
    with torch.no_grad():
        kl = model.elbo_terms(x).kl["y"]
        q = model.encode(x)["y"]
        p, _ = model.blocks["y"].prior([], 4)
        y = q.sample((20000,))
        mc = (q.log_prob(y) - p.log_prob(y)).mean(0)  # Monte Carlo KL of the same pair; ~1% standard error here
    assert type(q) is DiagonalLaplace and type(p) is DiagonalLaplace  # TDVAE's y: Laplace posterior and prior
    assert type(model.encode(x)["z"]) is DiagonalNormal
    torch.testing.assert_close(kl, mc, atol=0.02, rtol=0.03)
    # the closed form of KL(Laplace(m1, b1) || Laplace(m2, b2)), summed over y's features
    m1, b1, m2, b2 = q.loc, q.scale, p.loc, p.scale
    d = (m1 - m2).abs()
    laplace = (torch.log(b2 / b1) + d / b2 + b1 / b2 * torch.exp(-d / b1) - 1).sum(-1)
    torch.testing.assert_close(kl, laplace, atol=1e-5, rtol=1e-5)
    gauss = torch.distributions.kl_divergence(torch.distributions.Normal(m1, b1), torch.distributions.Normal(m2, b2)).sum(-1)
    assert (kl - gauss).abs().max() > 1e-2  # a Gaussian KL of the same locations and scales would differ


def test_bad_head_arguments_are_refused():
    with pytest.raises(vaekit.InvalidArgumentError, match="distribution of block 'z' must be one of"):
        HVAEGenBlock("z", "h", "c", nn.Linear(2, 4), nn.Linear(2, 4), 2, distribution="cauchy")
    with pytest.raises(vaekit.InvalidArgumentError, match="base of block 'y' must be one of"):
        HVAETopGenBlock("y", "h", nn.Linear(2, 4), 2, base="exp")
    with pytest.raises(vaekit.InvalidArgumentError, match="beta must be a finite number > 0, got 0"):
        HVAEGaussian(beta=0)
    block = HVAETopGenBlock("y", "h", nn.Linear(2, 6), 2)
    with pytest.raises(ValueError, match=r"net of 'y' returned 6 features but a Gaussian over 2 latents needs 2 \* latent_features = 4"):
        block.posterior(torch.zeros(1, 2), [], None)


def test_hvae_heads_are_the_core_families_with_hvaes_scale_and_temper_as_vaekit_does():
    torch.manual_seed(0)
    y = HVAETopGenBlock("y", "h", nn.Linear(3, 4), 2, distribution="laplace")
    z = HVAEGenBlock("z", "h", "c", nn.Linear(2, 6), nn.Linear(5, 6), 3, concat_posterior=True, beta=0.5)
    assert (y.latent_family, z.latent_family) == ("laplace", "gaussian")
    p_y, _ = y.prior([], 4)
    assert type(p_y) is DiagonalLaplace and torch.equal(p_y.scale, torch.ones(4, 2))
    h, c = torch.randn(4, 2), torch.randn(4, 3)
    p_z, _ = z.prior([h], 4)
    q_z = z.posterior(c, [h], None)
    assert type(p_z) is DiagonalNormal and type(q_z) is DiagonalNormal
    raw = z.posterior_net(torch.cat([c, h], 1))[:, 3:]
    torch.testing.assert_close(q_z.scale, torch.exp(0.5 * raw).sqrt(), rtol=0, atol=0)   # hVAE's logstd/var map
    # tempering is vaekit's (the scale times t), not hVAE's (log t added to the raw scale: scale x t^(beta/2))
    torch.manual_seed(1)
    drawn = z.tempered_sample(p_z, 0.25)
    torch.manual_seed(1)
    torch.testing.assert_close(drawn, p_z.loc + 0.25 * p_z.scale * torch.randn(4, 3), rtol=0, atol=1e-7)
