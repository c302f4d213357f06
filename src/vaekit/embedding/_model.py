"""The VAE behind :class:`~vaekit.embedding.VAEEmbedder`, built from vaekit's own pieces."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

from ..distributions import Bernoulli, DiagonalGaussian, FlowDistribution, Gaussian, Likelihood, make_posterior, point_estimate
from ..models.vae import VAE
from ..nn import MLP
from .priors import MixturePrior

__all__ = ["auto_hidden_layers", "build_vae", "posterior_mean", "anchor_elbo_and_embedding", "row_noise",
           "log_weights_given_noise", "state_size", "flow_hidden", "LIKELIHOODS", "PRIORS", "POSTERIOR_NAMES"]

LIKELIHOODS = ("gaussian", "gaussian_predicted", "bernoulli")
PRIORS = ("mixture", "standard")
POSTERIOR_NAMES = ("iaf", "gaussian")


def auto_hidden_layers(n_features: int, n_components: int, n_rows: int | None = None) -> tuple[int, int]:
    """Encoder hidden sizes chosen from the input and latent sizes (the decoder mirrors them).

    The first layer is the power of two nearest ``8 * sqrt(n_features)`` within [32, 512],
    but with ``n_rows`` training rows at most the largest power of two up to ``n_rows / 2``
    (and at least 32): on wide data with few rows a 512-wide layer multiplies the cost of
    every step (the embedding suite's 288 training faces of 2,679 pixels: (128, 64) fits in
    30 s instead of 80 s, equally trustworthy, 10-NN accuracy 0.64 instead of 0.68: 51 of
    80 new faces against 53-56). The second layer is half the first; both
    are at least ``4 * n_components``.

    >>> auto_hidden_layers(784, 2), auto_hidden_layers(64, 2), auto_hidden_layers(3, 2), auto_hidden_layers(784, 100)
    ((256, 128), (64, 32), (32, 16), (400, 400))
    >>> auto_hidden_layers(2679, 2), auto_hidden_layers(2679, 2, n_rows=288), auto_hidden_layers(784, 2, n_rows=60000)
    ((512, 256), (128, 64), (256, 128))
    """
    first = int(min(512, max(32, 2 ** round(math.log2(8 * math.sqrt(n_features))))))
    if n_rows is not None:
        half = max(int(n_rows), 2) // 2  # integers only: a row count of any size is exact
        first = min(first, max(32, 1 << (half.bit_length() - 1)))
    floor = 4 * n_components
    return max(first, floor), max(first // 2, floor)


def flow_hidden(n_components: int) -> int:
    """Hidden width of each IAF step's MADE network for a ``n_components``-dimensional latent."""
    return max(64, 4 * n_components)


def build_vae(n_features: int, n_components: int, hidden_layers: Sequence[int], posterior: str, n_flows: int,
              prior: str, n_prior_modes: int, likelihood: str, activation: str, dropout: float) -> VAE:
    """An MLP VAE on flat features: encoder ``n_features -> hidden -> posterior``, mirrored decoder.

    Parameters are those of :class:`~vaekit.embedding.VAEEmbedder` (already checked).
    Parameter initialisation draws from torch's global generator (seed it first).

    >>> vae = build_vae(5, 2, (16, 8), "iaf", 2, "mixture", 3, "gaussian", "elu", 0.0)
    >>> vae.log_weights(torch.zeros(4, 5), k=3).shape
    torch.Size([3, 4])
    """
    hidden = [int(h) for h in hidden_layers]
    lik: Likelihood = {"gaussian": lambda: Gaussian("learned"), "gaussian_predicted": lambda: Gaussian("predicted"),
                       "bernoulli": lambda: Bernoulli(strict=False)}[likelihood]()
    encoder = MLP(n_features, hidden[-1], hidden[:-1], activation, dropout=dropout, output_activation=activation)
    if posterior == "iaf":
        q = make_posterior("iaf", hidden[-1], n_components, n_flows=n_flows, hidden=[flow_hidden(n_components)],
                           activation="elu")
    else:
        q = DiagonalGaussian(hidden[-1], n_components)
    decoder = MLP(n_components, lik.params_per_dim * n_features, hidden[::-1], activation, dropout=dropout)
    p = MixturePrior(n_components, n_prior_modes, spread=1.0, scale=0.5) if prior == "mixture" else None
    return VAE(encoder, q, decoder, lik, [n_features], prior=p)


def state_size(n_features: int, n_components: int, hidden_layers: Sequence[int], posterior: str, n_flows: int,
               prior: str, n_prior_modes: int, likelihood: str) -> int:
    """How many numbers the state dict of :func:`build_vae` holds (weights and buffers), without building it.

    Exact Python integer arithmetic, so a configuration asking for an absurd model is
    measured in microseconds and without allocating anything (what
    :func:`vaekit.embedding.io.load` checks against its budget). Dropout and the
    activation add nothing.

    Parameters
    ----------
    n_features, n_components, hidden_layers, posterior, n_flows, prior, n_prior_modes, likelihood
        As for :func:`build_vae`.

    Returns
    -------
    int

    Examples
    --------
    >>> vae = build_vae(5, 3, (8, 7), "iaf", 2, "mixture", 4, "gaussian_predicted", "elu", 0.0)
    >>> state_size(5, 3, (8, 7), "iaf", 2, "mixture", 4, "gaussian_predicted") == sum(
    ...     v.numel() for v in vae.state_dict().values())
    True
    >>> state_size(784, 2, (200_000, 200_000), "iaf", 5, "mixture", 16, "gaussian")
    80443605059
    """
    d, hidden = int(n_components), [int(h) for h in hidden_layers]

    def mlp(sizes: list[int]) -> int:  # nn.Linear weights and biases
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))

    per_dim = 2 if likelihood == "gaussian_predicted" else 1
    total = mlp([int(n_features), *hidden]) + mlp([hidden[-1], 2 * d])  # encoder; base Gaussian (or the posterior)
    if posterior == "iaf":  # each step: order (d), MADE (d + context) -> m -> 2d with weights, biases and masks
        m = flow_hidden(d)
        total += int(n_flows) * (d + 2 * (d + hidden[-1]) * m + m + 2 * m * 2 * d + 2 * d)
    total += mlp([d, *hidden[::-1], per_dim * int(n_features)])  # decoder
    total += 1 if likelihood == "gaussian" else 0  # the learned variance
    total += (2 * d + 1) * int(n_prior_modes) if prior == "mixture" else 0  # means, scales, logits
    return total


def posterior_mean(vae: VAE, x: Tensor) -> Tensor:
    r"""The embedding of ``x``: the posterior's point estimate (:func:`vaekit.distributions.point_estimate`).

    For a flow posterior :math:`z = f_x(z_0)`, :math:`z_0 \sim \mathcal N(\mu(x), \sigma(x)^2)`,
    this is :math:`f_x(\mu(x))` (the flow evaluated at the base mean with the same context;
    deterministic, and the posterior's mode when the flow is the identity). For a Gaussian
    posterior it is :math:`\mu(x)`.

    Parameters
    ----------
    vae : VAE
    x : Tensor of shape (batch, n_features)

    Returns
    -------
    Tensor of shape (batch, n_components)
    """
    return point_estimate(vae.encode(x)[vae.latent_name])


def _push(q: Distribution, z0: Tensor) -> tuple[Tensor, Tensor]:
    """Base points ``z0`` of ``q`` pushed through its flow (if any): ``(z, log q(z))`` by the change of variables."""
    if not isinstance(q, FlowDistribution):
        return z0, q.log_prob(z0)
    z, logdet = q.push(z0)
    return z, q.base.log_prob(z0) - logdet


def log_weights_given_noise(vae: VAE, x: Tensor, eps: Tensor) -> Tensor:
    r"""``log p(x, z) - log q(z|x)`` at :math:`z = f_x(\mu(x) + \sigma(x)\,\epsilon)` for given standard-normal noise.

    The same quantity as ``vae.log_weights(x, k)`` (:math:`\log q` by the change of
    variables), with the noise passed in so that callers can fix it per example.

    Parameters
    ----------
    vae : VAE
        A VAE whose posterior is a :class:`~vaekit.distributions.flows.FlowDistribution`
        or a diagonal normal.
    x : Tensor of shape (batch, n_features)
    eps : Tensor of shape (k, batch, n_components)

    Returns
    -------
    Tensor of shape (k, batch)
    """
    q = vae.encode(x)[vae.latent_name]
    base = q.base if isinstance(q, FlowDistribution) else q
    z, log_q = _push(q, base.loc + base.scale * eps)
    return vae.decode(z).log_prob(x) + vae.prior().log_prob(z) - log_q


def anchor_elbo_and_embedding(vae: VAE, x: Tensor, n_anchors: int) -> tuple[Tensor, Tensor]:
    r"""The ELBO of the first ``n_anchors`` rows of ``x`` and the embedding of every row, in one flow pass.

    One encoder pass over all rows; then the flow runs once on ``n_anchors + batch`` base
    points: a reparameterised sample :math:`\mu + \sigma \epsilon` of each anchor (for its
    single-sample ELBO :math:`\log p(x, z) - \log q(z|x)`) and the base mean of every row
    (its embedding, as :func:`posterior_mean`). The flow's cost is dominated by per-call
    overhead at these sizes, so one call instead of two saves about a tenth of a training step.

    Parameters
    ----------
    vae : VAE
    x : Tensor of shape (batch, n_features)
    n_anchors : int
        ``0 < n_anchors <= batch``.

    Returns
    -------
    elbo : Tensor of shape (n_anchors,)
    embedding : Tensor of shape (batch, n_components)

    Examples
    --------
    >>> vae = build_vae(5, 2, (8,), "iaf", 1, "mixture", 2, "gaussian", "elu", 0.0)
    >>> x = torch.randn(6, 5)
    >>> elbo, z = anchor_elbo_and_embedding(vae, x, 3)
    >>> elbo.shape, bool(torch.allclose(z, posterior_mean(vae, x), atol=1e-6))
    (torch.Size([3]), True)
    """
    features, family = vae.amortized(x)
    q = family(torch.cat([features[:n_anchors], features]))
    base = q.base if isinstance(q, FlowDistribution) else q
    eps = torch.randn_like(base.loc[:n_anchors])
    z, log_q = _push(q, torch.cat([base.loc[:n_anchors] + base.scale[:n_anchors] * eps, base.loc[n_anchors:]]))
    elbo = vae.log_joint(x[:n_anchors], {vae.latent_name: z[:n_anchors]}) - log_q[:n_anchors]  # the rest: means
    return elbo, z[n_anchors:]


def row_noise(rows: np.ndarray, seed: int, k: int, d: int) -> np.ndarray:
    """Standard-normal noise for each row, seeded by ``seed`` and the row's bytes (not its position).

    Parameters
    ----------
    rows : ndarray of shape (batch, n_features)
    seed, k, d : int

    Returns
    -------
    ndarray of shape (k, batch, d), float64

    >>> a = row_noise(np.eye(3), 0, 2, 4)
    >>> a.shape, np.array_equal(row_noise(np.eye(3)[::-1], 0, 2, 4), a[:, ::-1])
    ((2, 3, 4), True)
    """
    keys = (int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little") for row in rows)
    return np.stack([np.random.default_rng([seed, key]).standard_normal((k, d)) for key in keys], axis=1)
