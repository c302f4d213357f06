"""The stochastic-neighbour term of :class:`~vaekit.embedding.VAEEmbedder` (parametric t-SNE within a minibatch).

Following parametric t-SNE (van der Maaten 2009) and VAE-SNE (Graving & Couzin 2020), each
minibatch adds ``KL(P || Q)`` to the loss: ``P`` are Gaussian affinities of the (normalised)
inputs, each row's bandwidth calibrated by binary search to a given perplexity within the
batch and then symmetrised; ``Q`` are Student-t (one degree of freedom) affinities of the
embeddings. Both are normalised over the batch's ``B (B - 1)`` ordered pairs, so the term
costs O(B^2) per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..models.vae import VAE

__all__ = ["input_affinities", "neighbor_kl", "pca_projection", "NeighborTerm"]

#: Bisection steps of the per-row log-precision search, bracketed in [-LOG_BRACKET, LOG_BRACKET] after the
#: squared distances are divided by their batch mean (final error in log precision below 40 / 2^16).
N_BISECT = 16
LOG_BRACKET = 20.0


@torch.no_grad()
def input_affinities(x: Tensor, perplexity: float) -> Tensor:
    r"""Symmetrised Gaussian affinities ``P`` of a batch, each row calibrated to ``perplexity``.

    As in exact-neighbour t-SNE (van der Maaten 2014), row ``i``'s conditional
    :math:`p_{j|i} \propto \exp(-\beta_i \|x_i - x_j\|^2)` is restricted to its
    ``K = min(B - 1, ceil(3 perplexity))`` nearest rows in the batch, and its precision
    :math:`\beta_i` is found by bisection (in log space) so that its entropy is
    :math:`\log(\min(\text{perplexity}, K))` nats; then :math:`p_{ij} = (p_{j|i} + p_{i|j}) / (2B)`.

    Parameters
    ----------
    x : Tensor of shape (batch, n_features)
    perplexity : float
        Effective number of neighbours of each row (> 0).

    Returns
    -------
    Tensor of shape (batch, batch)
        Non-negative, zero diagonal, symmetric, summing to 1 (float32 on ``x``'s device).

    Examples
    --------
    >>> p = input_affinities(torch.tensor([[0.0], [1.0], [3.0]]), perplexity=1.5)
    >>> bool(torch.allclose(p, p.T)), round(float(p.sum()), 6), float(p.diagonal().abs().sum())
    (True, 1.0, 0.0)
    """
    n = x.shape[0]
    x = x.float()
    k = min(n - 1, max(1, math.ceil(3 * perplexity)))
    sq = x.square().sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0.0)
    d = d.fill_diagonal_(math.inf)
    d_near, j_near = torch.topk(d, k, dim=1, largest=False)  # (n, k), sorted ascending
    d_near = d_near / d_near.mean().clamp_min(1e-12)  # scale-free bisection bracket
    target = math.log(min(float(perplexity), k))
    lo = torch.full((n, 1), -LOG_BRACKET, device=x.device)
    hi = -lo
    for _ in range(N_BISECT):
        mid = (lo + hi) / 2
        logp = torch.log_softmax(-d_near * mid.exp(), dim=1)
        entropy = -(logp.exp() * logp).sum(1, keepdim=True)
        high = entropy > target  # too flat: raise the precision
        lo = torch.where(high, mid, lo)
        hi = torch.where(high, hi, mid)
    cond = torch.zeros(n, n, device=x.device).scatter_(1, j_near, torch.softmax(-d_near * ((lo + hi) / 2).exp(), dim=1))
    return (cond + cond.T) / (2 * n)


def neighbor_kl(p: Tensor, z: Tensor) -> Tensor:
    r"""``KL(P || Q)`` with Student-t affinities :math:`q_{ij} \propto (1 + \|z_i - z_j\|^2)^{-1}` of ``z``.

    Parameters
    ----------
    p : Tensor of shape (batch, batch)
        Input affinities (:func:`input_affinities`): zero diagonal, summing to 1.
    z : Tensor of shape (batch, n_components)

    Returns
    -------
    Tensor of shape ()
        :math:`\sum_{i \ne j} p_{ij} \log(p_{ij} / q_{ij})` in nats (differentiable in ``z``).

    Examples
    --------
    >>> p = torch.full((2, 2), 0.5).fill_diagonal_(0.0)
    >>> float(neighbor_kl(p, torch.tensor([[0.0], [5.0]])))
    0.0
    """
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (-torch.log1p((z[:, None, :] - z[None, :, :]).square().sum(-1))).masked_fill(eye, -math.inf)
    log_q = logits - torch.logsumexp(logits.flatten(), 0)
    p = p.to(z.dtype)
    mask = p > 0
    return (p[mask] * (p[mask].log() - log_q[mask])).sum()


#: Inputs are projected on at most this many principal components before their affinities are computed.
N_PCA = 50
#: Rows used to estimate the principal components.
N_PCA_ROWS = 5000
#: Embeddings are multiplied by this before their Student-t affinities are taken: the VAE's prior keeps them
#: near unit scale, where a Student-t kernel is almost Gaussian and cannot separate clusters.
Q_SCALE = 3.0


def pca_projection(x: Tensor, n_components: int = N_PCA) -> Tensor:
    """The top principal directions of (already normalised) rows ``x``, as a projection matrix.

    Parameters
    ----------
    x : Tensor of shape (n_rows, n_features)
    n_components : int

    Returns
    -------
    Tensor of shape (n_features, min(n_components, n_rows, n_features))

    Examples
    --------
    >>> pca_projection(torch.randn(10, 4), 3).shape
    torch.Size([4, 3])
    """
    x = x.float()
    _, _, vh = torch.linalg.svd(x - x.mean(0), full_matrices=False)
    return vh[:n_components].T.contiguous()


@dataclass
class NeighborTerm:
    """``weight * KL(P || Q)`` of a training batch: ``P`` on the PCA-projected inputs, ``Q`` on the embeddings."""

    weight: float
    perplexity: float
    projection: Tensor

    def __call__(self, model: VAE, x: Tensor) -> Tensor:
        """The weighted term for normalised rows ``x`` of shape (batch, n_features); a 0-dim tensor (0 for one row)."""
        from ._model import posterior_mean

        if x.shape[0] < 2:
            return x.new_zeros(())
        p = input_affinities(x @ self.projection, self.perplexity)
        return self.weight * neighbor_kl(p, Q_SCALE * posterior_mean(model, x))
