"""A vaekit VAE whose decoder is linear-Gaussian, x = W z + b + N(0, sigma^2 I): exact numbers.

The posterior of a linear-Gaussian decoder is Gaussian with precision ``I + W^T W / sigma^2``;
with nearly parallel columns of ``W`` it is strongly correlated, so a factorized Gaussian
cannot be exact and its best KL to the posterior has the closed form used by
:func:`exact_numbers`.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from vaekit.distributions import DiagonalGaussian, Gaussian
from vaekit.models import VAE
from vaekit.nn import MLP

D, d, SIGMA = 6, 2, 0.7


def linear_vae(seed: int = 0) -> tuple[VAE, Tensor, Tensor]:
    """(model, W, b): an untrained MLP encoder, and the decoder set to ``x = W z + b``."""
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


def simulate(W: Tensor, b: Tensor, n: int, seed: int) -> Tensor:
    """``n`` draws of x from the linear-Gaussian model."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) @ W.T + b + SIGMA * torch.randn(n, D, generator=g)


def exact_numbers(W: Tensor, b: Tensor, x: Tensor) -> tuple[Tensor, float]:
    """(exact log p(x) per example in float64, KL of the best factorized Gaussian to the posterior)."""
    cov_x = W @ W.T + SIGMA**2 * torch.eye(D)
    log_px = MultivariateNormal(b, cov_x).log_prob(x).double()
    prec = torch.eye(d) + W.T @ W / SIGMA**2
    # best FFG: exact mean, variances 1/prec_jj; KL = (sum_j log prec_jj - log det prec) / 2
    return log_px, float(0.5 * (torch.log(torch.diagonal(prec)).sum() - torch.logdet(prec)))
