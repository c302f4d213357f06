r"""A linear-Gaussian latent-variable model whose ``log p(x)`` is known in closed form.

.. math::

    p(z) = \mathcal{N}(0, I_d), \quad
    p(x \mid z) = \mathcal{N}(W z + b, \sigma^2 I_D), \quad
    q(z \mid x) = \mathcal{N}(A x + c, \operatorname{diag}(s^2)),

so :math:`p(x) = \mathcal{N}(b, W W^\top + \sigma^2 I)` and the exact posterior is
:math:`\mathcal{N}(\Sigma W^\top (x - b) / \sigma^2, \Sigma)` with
:math:`\Sigma = (I + W^\top W / \sigma^2)^{-1}` (diagonal when the columns of ``W`` are
orthogonal). Shared by the estimator tests (IWAE here; AIS and gap tests can reuse it).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Independent, MultivariateNormal, Normal

from vaekit.models import ElboTerms, LatentVariableModel

__all__ = ["LinearGaussian", "PriorProposal", "exact_posterior", "orthogonal_columns"]


class PriorProposal:
    """Mixin for test models known through ``log_joint``, ``log_prior`` and ``sample_prior`` (what AIS uses):
    the prior is their ``q``, so ``log_weights`` are ``log p(x | z)`` at prior draws and the KL is 0."""

    def log_weights(self, x: Tensor, k: int = 1) -> Tensor:
        n = x.shape[0]
        z = {name: v.reshape(k, n, *v.shape[1:]) for name, v in self.sample_prior(k * n).items()}
        return self.log_joint(x, z) - self.log_prior(z)

    def elbo_terms(self, x: Tensor) -> ElboTerms:
        rec = self.log_weights(x, 1)[0]
        return ElboTerms(rec=rec, kl={name: torch.zeros_like(rec) for name in self.latent_names})


def orthogonal_columns(D: int, d: int, scales: list[float], seed: int = 0) -> Tensor:
    """A (D, d) float64 matrix with orthogonal columns of the given norms."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, d, generator=g, dtype=torch.float64))
    return q * torch.tensor(scales, dtype=torch.float64)


def exact_posterior(W: Tensor, b: Tensor, sigma: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(A, c, cov)``: the exact posterior is ``N(A x + c, cov)``; shapes (d, D), (d,), (d, d)."""
    d = W.shape[1]
    cov = torch.linalg.inv(torch.eye(d, dtype=W.dtype) + W.T @ W / sigma**2)
    A = cov @ W.T / sigma**2
    return A, -A @ b, cov


class LinearGaussian(LatentVariableModel):
    """The linear-Gaussian model above, in float64, with a learnable diagonal ``q``.

    Parameters
    ----------
    W : Tensor of shape (D, d)
    b : Tensor of shape (D,)
    sigma : float
        Observation noise standard deviation.
    A : Tensor of shape (d, D), optional
        Posterior mean map (default: the exact posterior's).
    c : Tensor of shape (d,), optional
        Posterior mean offset (default: the exact posterior's).
    log_s : Tensor of shape (d,), optional
        Posterior log standard deviations (default: half the log of the diagonal of the
        exact posterior covariance).
    """

    def __init__(self, W: Tensor, b: Tensor, sigma: float, A: Tensor | None = None,
                 c: Tensor | None = None, log_s: Tensor | None = None) -> None:
        super().__init__()
        D, d = W.shape
        self.data_shape = (D,)
        self.latent_dims = {"z": d}
        self.sigma = float(sigma)
        self.register_buffer("W", W.to(torch.float64))
        self.register_buffer("b", b.to(torch.float64))
        A0, c0, cov = exact_posterior(self.W, self.b, self.sigma)
        self.A = nn.Parameter((A0 if A is None else A).to(torch.float64).clone())
        self.c = nn.Parameter((c0 if c is None else c).to(torch.float64).clone())
        log_s0 = 0.5 * torch.diagonal(cov).log()
        self.log_s = nn.Parameter((log_s0 if log_s is None else log_s).to(torch.float64).clone())

    def encode(self, x: Tensor) -> dict[str, Independent]:
        return {"z": Independent(Normal(x @ self.A.T + self.c, self.log_s.exp()), 1)}

    def log_prior(self, z: dict[str, Tensor]) -> Tensor:
        zz = z["z"]
        return -0.5 * (zz**2).sum(-1) - 0.5 * zz.shape[-1] * math.log(2 * math.pi)

    def decode(self, z: dict[str, Tensor]) -> Independent:
        return Independent(Normal(z["z"] @ self.W.T + self.b, self.sigma), 1)

    def log_joint(self, x: Tensor, z: dict[str, Tensor]) -> Tensor:
        return self.log_prior(z) + self.decode(z).log_prob(x)

    def sample_prior(self, n: int) -> dict[str, Tensor]:
        return {"z": torch.randn(n, self.W.shape[1], dtype=torch.float64, device=self.W.device)}

    def log_weights(self, x: Tensor, k: int = 1) -> Tensor:
        q = self.encode(x)["z"]
        z = q.rsample((k,))
        return self.log_joint(x, {"z": z}) - q.log_prob(z)

    def elbo_terms(self, x: Tensor) -> ElboTerms:
        q = self.encode(x)["z"]
        z = q.rsample()
        log_q, log_p = q.log_prob(z), self.log_prior({"z": z})
        return ElboTerms(rec=self.decode({"z": z}).log_prob(x), kl={"z": log_q - log_p}, log_q={"z": log_q},
                         log_p={"z": log_p})

    @torch.no_grad()
    def log_marginal(self, x: Tensor) -> Tensor:
        """Exact ``log p(x)``, shape (batch,)."""
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(self.W.shape[0], dtype=torch.float64)
        return MultivariateNormal(self.b, cov).log_prob(x)

    @torch.no_grad()
    def kl_to_posterior(self, x: Tensor) -> Tensor:
        """Exact ``KL(q(z|x) || p(z|x))`` = ``log p(x) - E_q[log w]``, shape (batch,)."""
        A, c, cov = exact_posterior(self.W, self.b, self.sigma)
        q = self.encode(x)["z"].base_dist
        p = MultivariateNormal(x @ A.T + c, cov)
        prec = torch.linalg.inv(cov)
        diff = q.loc - p.loc
        trace = (torch.diagonal(prec) * q.scale**2).sum(-1)
        maha = torch.einsum("bi,ij,bj->b", diff, prec, diff)
        logdet = torch.logdet(cov) - 2 * self.log_s.sum()
        return 0.5 * (trace + maha - cov.shape[0] + logdet)
