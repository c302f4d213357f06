"""Divergence statistics: KL per named latent and per dimension, and active units (Burda et al., 2016)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent

from .._checks import check_float, check_int
from ..nn import eval_mode
from ._common import check_x, encode_means

__all__ = ["LatentStats", "latent_pairs", "kl_per_dimension", "active_units", "kl_statistics", "save_kl_plot"]


@dataclass
class LatentStats:
    """Divergence statistics of one named latent.

    Attributes
    ----------
    name : str
    dims : int
        Number of dimensions of the latent: its scalar entries (its event flattened), or for
        a spatial latent of shape (C, H, W) its C channels.
    kl : float
        Mean over the examples of the model's own ``elbo_terms(x).kl[name]`` (closed form
        where the model has one, else single-sample Monte Carlo).
    kl_per_dim : Tensor of shape (dims,) or None
        Mean KL of each dimension (of a spatial latent: of each channel, summed over H and W), when the posterior and the prior both factorise over the
        dimensions and the prior can be found (see :func:`latent_pairs`).
    kl_per_dim_method : {"analytic", "mc"} or None
        Closed form per dimension, or the Monte Carlo average of ``log q_d - log p_d``.
    unit_variance : Tensor of shape (dims,)
        ``Cov_x(E_q[z_d | x])``: the activity of each unit over the data (of a spatial
        latent's channel: the mean over its H x W positions).
    active_units : int
        Units whose activity exceeds ``threshold``.
    threshold : float
    """

    name: str
    dims: int
    kl: float
    kl_per_dim: Tensor | None
    kl_per_dim_method: str | None
    unit_variance: Tensor
    active_units: int
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers and lists (what ``analysis.json`` stores)."""
        return {"dims": self.dims, "kl": self.kl, "active_units": self.active_units, "threshold": self.threshold,
                "kl_per_dim": None if self.kl_per_dim is None else self.kl_per_dim.tolist(),
                "kl_per_dim_method": self.kl_per_dim_method, "unit_variance": self.unit_variance.tolist()}


def latent_pairs(model: Any, x: Tensor) -> dict[str, tuple[Distribution, Distribution]] | None:
    """``{name: (prior, posterior)}`` for a batch, when the model exposes its priors.

    The model's own :meth:`~vaekit.models.LatentVariableModel.latent_pairs` (a VAE: its declared
    priors with ``encode(x)``; a hierarchical VAE: each layer's conditional prior and
    posterior in one pass); None for a model that declares no priors.
    """
    pairs = model.latent_pairs(x)
    return None if pairs is None else {n: pairs[n] for n in model.latent_names}


def _factors(d: Distribution) -> Distribution | None:
    """The element-wise distribution behind ``d`` (its base of an Independent), or None."""
    if isinstance(d, Independent):
        base = d.base_dist
        return base if base.event_shape == torch.Size() else None
    return d if d.event_shape == torch.Size() else None


def kl_per_dimension(q: Distribution, p: Distribution, *, n_mc: int = 16) -> tuple[Tensor, str] | None:
    """KL of each dimension of a factorised posterior against a factorised prior.

    Parameters
    ----------
    q : Distribution with batch shape (batch,) and event shape (*event)
    p : Distribution broadcasting against ``q``
    n_mc : int
        Draws for the Monte Carlo fallback when no closed form is registered.

    Returns
    -------
    (Tensor of shape (batch, prod(event)), "analytic" or "mc"), or None when either does not factorise.
    A spatial event (C, H, W) gives shape (batch, C): each channel's KL summed over its positions.

    Examples
    --------
    >>> from vaekit.distributions import DiagonalNormal
    >>> q, p = DiagonalNormal(torch.ones(1, 2), torch.ones(1, 2)), DiagonalNormal(torch.zeros(2), torch.ones(2))
    >>> kl_per_dimension(q, p)
    (tensor([[0.5000, 0.5000]]), 'analytic')
    """
    qf, pf = _factors(q), _factors(p)
    if qf is None or pf is None:
        return None
    try:
        kl, method = torch.distributions.kl_divergence(qf, pf), "analytic"
    except NotImplementedError:
        z = qf.sample((check_int("n_mc", n_mc),))
        kl, method = (qf.log_prob(z) - pf.log_prob(z)).mean(0), "mc"
    kl = kl.expand(qf.batch_shape)
    if _is_spatial(q.event_shape):  # one dimension per channel
        kl = kl.sum(tuple(range(-len(q.event_shape) + 1, 0)))
    return kl.reshape(q.batch_shape.numel() if q.batch_shape else 1, -1), method


def active_units(means: Tensor, threshold: float = 0.01) -> tuple[int, Tensor]:
    """Active units by the covariance criterion of Burda et al. (2016).

    Unit ``d`` is active when :math:`\\mathrm{Cov}_x(\\mathbb E_{q(z|x)}[z_d]) > 0.01`.

    Parameters
    ----------
    means : Tensor of shape (n, D)
        Posterior means of ``n >= 2`` examples.
    threshold : float

    Returns
    -------
    (int, Tensor of shape (D,))
        Number of active units and the variance of every unit.

    >>> active_units(torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]))
    (1, tensor([1., 0.]))
    """
    if means.dim() != 2 or means.shape[0] < 2:
        raise ValueError(f"means must have shape (n, D) with n >= 2 examples, got {tuple(means.shape)}")
    threshold = check_float("threshold", threshold, 0)
    var = means.double().var(0).to(means.dtype)
    return int((var > threshold).sum()), var


@torch.no_grad()
def kl_statistics(model: Any, x: Tensor, *, batch_size: int = 256, threshold: float = 0.01,
                  n_mc: int = 16) -> dict[str, LatentStats]:
    """KL per named latent and per dimension, and active units, over the examples ``x``.

    Parameters
    ----------
    model : LatentVariableModel
    x : Tensor of shape (n, *data_shape), ``n >= 2``
    batch_size : int
    threshold : float
        Activity above which a unit counts as active (0.01 in Burda et al.).
    n_mc : int
        Draws for Monte Carlo means (flows) and per-dimension KLs without closed form.

    Returns
    -------
    dict of str to LatentStats, in the model's latent order

    Examples
    --------
    >>> from vaekit.models import mlp_vae
    >>> stats = kl_statistics(mlp_vae([6], 3, [4]), torch.bernoulli(torch.full((10, 6), 0.5)))
    >>> s = stats["z"]
    >>> s.dims, s.kl_per_dim.shape, abs(float(s.kl_per_dim.sum()) - s.kl) < 1e-5, s.active_units <= 3
    (3, torch.Size([3]), True, True)
    """
    x = check_x(model, x)
    if x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 examples for unit variances, got {x.shape[0]}")
    batch_size, n_mc = check_int("batch_size", batch_size), check_int("n_mc", n_mc)
    threshold = check_float("threshold", threshold, 0)
    kl_sum: dict[str, Tensor] = {}
    per_dim: dict[str, list[Tensor]] = {}
    methods: dict[str, str] = {}
    with eval_mode(model):
        means = {k: _per_unit(m) for k, m in encode_means(model, x, batch_size=batch_size, n_mc=n_mc).items()}
        for chunk in x.split(batch_size):
            for name, kl in model.elbo_terms(chunk).kl.items():
                kl_sum[name] = kl_sum.get(name, 0) + kl.double().sum()
            pairs = latent_pairs(model, chunk) or {}
            for name, (p, q) in pairs.items():
                res = kl_per_dimension(q, p, n_mc=n_mc)
                if res is not None:
                    per_dim.setdefault(name, []).append(res[0].cpu())
                    methods[name] = res[1]
    n = x.shape[0]
    out = {}
    for name in model.latent_names:
        m = means[name].cpu()
        count, var = _channel_activity(m, threshold) if _is_spatial(m.shape[1:]) else active_units(m, threshold)
        dims = m.shape[1]
        pd = torch.cat(per_dim[name]).double().mean(0).float() if len(per_dim.get(name, ())) == len(x.split(batch_size)) else None
        if pd is not None and pd.numel() != dims:
            pd = None
        out[name] = LatentStats(name, dims, float(kl_sum[name] / n) if name in kl_sum else float("nan"),
                                pd, methods.get(name) if pd is not None else None, var, count, threshold)
    return out


def _is_spatial(event_shape: Sequence[int]) -> bool:
    """Whether a latent event is spatial, ``(C, *positions)`` (more than one axis: ``(C, H, W)``, ``(C, L)``, ...).

    Its "dimensions" in the statistics are its channels: KL summed and activity averaged over
    the positions. A latent vector ``(D,)`` has one dimension per entry.

    >>> _is_spatial((4, 8, 8)), _is_spatial((2, 8)), _is_spatial((16,))
    (True, True, False)
    """
    return len(event_shape) > 1


def _per_unit(m: Tensor) -> Tensor:
    """Posterior means (n, *event) as (n, D) for a vector event; a spatial event (n, C, *positions) stays as it is."""
    return m if _is_spatial(m.shape[1:]) else m.reshape(m.shape[0], -1)


def _channel_activity(means: Tensor, threshold: float) -> tuple[int, Tensor]:
    """Active channels of a spatial latent (n, C, *positions): each channel's unit variance averaged over its positions."""
    var = active_units(means.reshape(means.shape[0], -1), threshold)[1].reshape(means.shape[1:])
    var = var.mean(tuple(range(1, var.dim())))
    return int((var > threshold).sum()), var


def save_kl_plot(stats: dict[str, LatentStats], path: str | Path) -> Path:
    """Bar charts, one row per latent: KL per dimension (when known) and unit activity.

    Returns
    -------
    Path of the written ``.png``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    fig, axes = plt.subplots(len(stats), 2, figsize=(10, 2.5 * len(stats)), squeeze=False)
    for row, s in zip(axes, stats.values()):
        if s.kl_per_dim is not None:
            row[0].bar(range(s.dims), s.kl_per_dim.numpy())
        row[0].set_title(f"{s.name}: KL {s.kl:.3g} nats" + ("" if s.kl_per_dim is not None else " (no per-dim KL)"))
        row[0].set_xlabel("dimension")
        row[1].bar(range(s.dims), s.unit_variance.clamp_min(1e-12).numpy())
        row[1].axhline(s.threshold, color="red", lw=0.8)
        row[1].set_yscale("log")
        row[1].set_title(f"{s.name}: {s.active_units}/{s.dims} active units")
        row[1].set_xlabel("dimension")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
