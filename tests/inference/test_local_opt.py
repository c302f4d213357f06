"""Local optimisation of q per datapoint: exact numbers on a linear-Gaussian VAE."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from vaekit.distributions import DiagonalGaussian, Gaussian
from vaekit.inference.local_opt import optimize_local_posterior
from vaekit.models import VAE, mlp_vae
from vaekit.nn import MLP

D, d, SIGMA = 6, 2, 0.7


def _linear_vae(seed: int = 0) -> tuple[VAE, torch.Tensor, torch.Tensor]:
    """A VAE whose decoder is x = W z + b + N(0, sigma^2): exact log p(x) and posterior are known."""
    g = torch.Generator().manual_seed(seed)
    w, u = torch.randn(D, generator=g), torch.randn(D, generator=g)
    W = torch.stack([w, 0.9 * w + 0.4 * u], 1)  # nearly parallel columns: a strongly correlated posterior
    b = torch.randn(D, generator=g) * 0.3
    torch.manual_seed(seed)
    model = VAE(MLP(D, 8, [16], activation="tanh"), DiagonalGaussian(8, d), MLP(d, D), Gaussian(scale=SIGMA), [D])
    with torch.no_grad():
        model.decoder[0].weight.copy_(W)
        model.decoder[0].bias.copy_(b)
    return model, W, b


def _exact(W, b, x):
    cov_x = W @ W.T + SIGMA**2 * torch.eye(D)
    log_px = MultivariateNormal(b, cov_x).log_prob(x).double()
    prec = torch.eye(d) + W.T @ W / SIGMA**2  # posterior precision
    # the best factorized Gaussian has the exact mean and variances 1/prec_jj; its KL to the posterior:
    ffg_gap = 0.5 * (torch.log(torch.diagonal(prec)).sum() - torch.logdet(prec))
    return log_px, float(ffg_gap)


def test_ffg_local_optimum_matches_the_closed_form_gap():
    model, W, b = _linear_vae()
    torch.manual_seed(1)
    x = (torch.randn(24, d) @ W.T + b + SIGMA * torch.randn(24, D))
    log_px, ffg_gap = _exact(W, b, x)
    assert ffg_gap > 0.05  # the posterior is correlated, so FFG cannot be exact
    res = optimize_local_posterior(model, x, k=16, lr=2e-2, max_steps=3000, check_every=50, patience=8, eval_k=4000)
    amortized_gap = (log_px - res.initial_elbo).mean()
    assert amortized_gap > 1.0  # the untrained encoder is far off
    gap = (log_px - res.elbo)
    assert gap.mean() == pytest.approx(ffg_gap, abs=0.05)
    assert (gap > -0.05).all()  # never above log p(x) beyond estimation noise
    assert (res.elbo >= res.initial_elbo - 0.05).all()


def test_from_scratch_reaches_the_same_optimum_and_model_is_untouched():
    model, W, b = _linear_vae(seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    x = (torch.randn(8, d) @ W.T + b + SIGMA * torch.randn(8, D))
    log_px, ffg_gap = _exact(W, b, x)
    res = optimize_local_posterior(model, x, family=DiagonalGaussian(8, d), init="scratch", k=16, lr=2e-2,
                                   max_steps=3000, check_every=50, patience=8, eval_k=4000, batch_size=3)
    assert (log_px - res.elbo).mean() == pytest.approx(ffg_gap, abs=0.06)
    for key, v in model.state_dict().items():
        assert torch.equal(v, before[key]), key
    assert all(p.requires_grad for p in model.parameters()) and all(p.grad is None for p in model.parameters())
    assert res.elbo.shape == (8,) and res.steps.shape == (8,)


def test_convergence_rule_stops_early():
    model = mlp_vae([20], 3, hidden=[16])
    x = torch.bernoulli(torch.full((5, 20), 0.4))
    res = optimize_local_posterior(model, x, k=2, lr=1e-9, max_steps=5000, check_every=5, patience=3, eval_k=20)
    assert res.converged.all() and int(res.steps[0]) < 100  # nothing improves at lr=1e-9: stops after 3 checks


@pytest.mark.parametrize("kwargs,message", [
    ({"k": 0}, "k must be an int >= 1"),
    ({"init": "warm"}, "init must be 'amortized' or 'scratch'"),
    ({"lr": -1.0}, "lr must be a finite number > 0"),
    ({"family": DiagonalGaussian(16, 4)}, "latent_features=4"),
    ({"family": DiagonalGaussian(7, 3)}, "init='amortized' copies the model's trained posterior"),
    ({"patience": 0}, "patience must be an int >= 1"),
])
def test_bad_arguments(kwargs, message):
    model = mlp_vae([20], 3, hidden=[16])
    x = torch.bernoulli(torch.full((2, 20), 0.4))
    with pytest.raises((ValueError, TypeError), match=message):
        optimize_local_posterior(model, x, **kwargs)
