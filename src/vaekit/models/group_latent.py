"""Tables of per-group latent vectors with mean-field Gaussian posteriors (:class:`GroupLatent`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Normal, kl_divergence

from .._checks import check_float, check_int
from .._recording import Configurable

__all__ = ["GroupLatent"]

Prior = Literal["standard", "learned", "variational"]


def _inv_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class GroupLatent(Configurable, nn.Module):
    r"""Per-group latent vectors at each group level, looked up by group id.

    Level :math:`l` has :math:`G_l` groups; group :math:`g` has the posterior
    :math:`q(z_g) = \mathcal N(\mu_g, \mathrm{diag}\,\sigma_g^2)` with
    :math:`\sigma_g = \mathrm{softplus}(\rho_g)`. The prior of every group vector is

    - ``"standard"``: :math:`\mathcal N(0, I)`;
    - ``"learned"``: :math:`\mathcal N(\mu_0, \mathrm{diag}\,\sigma_0^2)` with :math:`\mu_0, \sigma_0` point
      estimates (one pair per level, type-II maximum likelihood);
    - ``"variational"``: the same hierarchical prior with Gaussian posteriors on :math:`\mu_0` and on
      :math:`\rho_0` (:math:`\sigma_0 = \mathrm{softplus}(\rho_0)`), each with its own KL to
      :math:`\mathcal N(0, I)`; the groups' KL is then a one-sample Monte Carlo estimate over
      the hyper-parameters.

    Only *active* groups (seen in training, or inferred afterwards) enter the KL; the owner
    marks them with :meth:`set_active`.

    Parameters
    ----------
    n_groups : sequence of int
        Number of groups per level, lowest level first.
    latent_features : int or sequence of int
        Latent dimension per level (one int for all).
    prior : {"standard", "learned", "variational"}
    init_scale : float
        Initial posterior standard deviation.

    Examples
    --------
    >>> lat = GroupLatent([5, 2], 3)
    >>> z = lat.rsample(torch.tensor([[0, 1], [4, 0]]))
    >>> [t.shape for t in z], [bool(k > 0) for k in lat.kl()]
    ([torch.Size([2, 3]), torch.Size([2, 3])], [True, True])
    """

    def __init__(self, n_groups: Sequence[int], latent_features: int | Sequence[int], prior: Prior = "standard",
                 init_scale: float = 0.1) -> None:
        super().__init__()
        if isinstance(n_groups, (int, str)) or not len(n_groups):
            raise ValueError(f"n_groups must be a non-empty list of group counts per level, got {n_groups!r}")
        self.n_groups = [check_int(f"n_groups[{i}]", g) for i, g in enumerate(n_groups)]
        L = len(self.n_groups)
        dims = [latent_features] * L if isinstance(latent_features, int) else list(latent_features)
        if len(dims) != L:
            raise ValueError(f"latent_features has {len(dims)} entries but n_groups has {L} levels; give one int or one per level")
        self.latent_features = [check_int(f"latent_features[{i}]", d) for i, d in enumerate(dims)]
        if prior not in ("standard", "learned", "variational"):
            raise ValueError(f"prior must be 'standard', 'learned' or 'variational', got {prior!r}")
        self.prior = prior
        raw = _inv_softplus(check_float("init_scale", init_scale, 0, low_open=True))
        self.loc = nn.ParameterList([nn.Parameter(0.01 * torch.randn(g, d)) for g, d in zip(self.n_groups, self.latent_features)])
        self.raw_scale = nn.ParameterList([nn.Parameter(torch.full((g, d), raw)) for g, d in zip(self.n_groups, self.latent_features)])
        for i, g in enumerate(self.n_groups):
            self.register_buffer(f"active_{i}", torch.ones(g, dtype=torch.bool))
        if prior != "standard":
            one = _inv_softplus(1.0)
            self.prior_loc = nn.ParameterList([nn.Parameter(torch.zeros(d)) for d in self.latent_features])
            self.prior_raw_scale = nn.ParameterList([nn.Parameter(torch.full((d,), one)) for d in self.latent_features])
        if prior == "variational":  # q(mu0), q(rho0): loc = the parameters above, raw scales here
            s = _inv_softplus(0.1)
            self.hyper_raw_scale_loc = nn.ParameterList([nn.Parameter(torch.full((d,), s)) for d in self.latent_features])
            self.hyper_raw_scale_rho = nn.ParameterList([nn.Parameter(torch.full((d,), s)) for d in self.latent_features])

    @property
    def n_levels(self) -> int:
        """Number of group levels."""
        return len(self.n_groups)

    def active(self, level: int) -> Tensor:
        """Bool mask of shape (G_level,): groups whose posterior is fitted (seen or inferred)."""
        return getattr(self, f"active_{level}")

    def set_active(self, level: int, mask: Tensor) -> None:
        """Mark which groups of ``level`` are fitted (enter the KL and may be predicted)."""
        buf = self.active(level)
        if tuple(mask.shape) != tuple(buf.shape):
            raise ValueError(f"mask for level {level} must have shape {tuple(buf.shape)}, got {tuple(mask.shape)}")
        buf.copy_(mask.to(torch.bool))

    def check_ids(self, groups: Tensor, name: str = "groups") -> Tensor:
        """Raise unless ``groups`` is an integer tensor (batch, n_levels) of ids in range."""
        if not isinstance(groups, Tensor) or groups.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"{name} must be an integer tensor of shape (batch, {self.n_levels}), got "
                            f"{getattr(groups, 'dtype', type(groups).__name__)}")
        if groups.dim() != 2 or groups.shape[1] != self.n_levels:
            raise ValueError(f"{name} must have shape (batch, {self.n_levels}) (one column per group level), got "
                             f"{tuple(groups.shape)}")
        if groups.numel():
            lo, hi = groups.min(0).values, groups.max(0).values
            for l, g in enumerate(self.n_groups):
                if int(lo[l]) < 0 or int(hi[l]) >= g:
                    raise ValueError(f"{name}[:, {l}] (level {l}) has ids in [{int(lo[l])}, {int(hi[l])}] but level {l} "
                                     f"has {g} groups (ids 0..{g - 1})")
        return groups.long()

    def posterior(self, level: int, ids: Tensor | None = None) -> Normal:
        """``q(z)`` of the groups ``ids`` (all groups if None) of ``level``: batch shape (n, d)."""
        loc, raw = self.loc[level], self.raw_scale[level]
        if ids is not None:
            loc, raw = loc[ids], raw[ids]
        return Normal(loc, F.softplus(raw) + 1e-6)

    def prior_params(self, level: int, sample: bool = False) -> tuple[Tensor, Tensor]:
        """``(mu0, sigma0)`` of shape (d,) of ``level``'s prior (a draw of them if variational and ``sample``)."""
        d = self.latent_features[level]
        if self.prior == "standard":
            z = self.loc[level].new_zeros(d)
            return z, z + 1.0
        mu, rho = self.prior_loc[level], self.prior_raw_scale[level]
        if self.prior == "variational" and sample:
            mu = mu + F.softplus(self.hyper_raw_scale_loc[level]) * torch.randn_like(mu)
            rho = rho + F.softplus(self.hyper_raw_scale_rho[level]) * torch.randn_like(rho)
        return mu, F.softplus(rho) + 1e-6

    def prior_dist(self, level: int, sample: bool = False) -> Normal:
        """The prior of one group vector of ``level`` (batch shape (d,))."""
        return Normal(*self.prior_params(level, sample))

    def rsample(self, groups: Tensor, sample_shape: torch.Size | tuple[int, ...] = ()) -> list[Tensor]:
        """One reparameterised draw per example and level.

        Parameters
        ----------
        groups : Tensor of shape (batch, n_levels)
        sample_shape : tuple of int

        Returns
        -------
        list of Tensor of shape (*sample_shape, batch, d_l)
        """
        groups = self.check_ids(groups)
        return [self.posterior(l, groups[:, l]).rsample(torch.Size(sample_shape)) for l in range(self.n_levels)]

    def mean(self, groups: Tensor) -> list[Tensor]:
        """Posterior means per level, each of shape (batch, d_l)."""
        groups = self.check_ids(groups)
        return [self.loc[l][groups[:, l]] for l in range(self.n_levels)]

    def kl(self) -> list[Tensor]:
        """Total KL per level (scalars): sum over active groups, plus the hyper-prior KL if variational."""
        out = []
        for l in range(self.n_levels):
            mask = self.active(l)
            q = self.posterior(l)
            p = self.prior_dist(l, sample=True)
            total = (kl_divergence(q, p).sum(-1) * mask).sum()
            if self.prior == "variational":
                std = Normal(torch.zeros_like(p.loc), torch.ones_like(p.loc))
                for loc, raw in ((self.prior_loc[l], self.hyper_raw_scale_loc[l]), (self.prior_raw_scale[l], self.hyper_raw_scale_rho[l])):
                    total = total + kl_divergence(Normal(loc, F.softplus(raw) + 1e-6), std).sum()
            out.append(total)
        return out

    def group_kl(self, level: int, loc: Tensor, scale: Tensor) -> Tensor:
        """KL of one new group's posterior ``N(loc, scale)`` (shape (d,)) to ``level``'s prior (at its mean)."""
        return kl_divergence(Normal(loc, scale), self.prior_dist(level)).sum()

    @torch.no_grad()
    def set_posterior(self, level: int, group: int, loc: Tensor, scale: Tensor) -> None:
        """Write a (new) group's posterior into the table and mark it active."""
        d = self.latent_features[level]
        if tuple(loc.shape) != (d,) or tuple(scale.shape) != (d,) or not bool((scale > 0).all()):
            raise ValueError(f"loc and scale must have shape ({d},) with scale > 0, got {tuple(loc.shape)}, {tuple(scale.shape)}")
        if not 0 <= group < self.n_groups[level]:
            raise ValueError(f"group must be an id in [0, {self.n_groups[level] - 1}] of level {level}, got {group}")
        self.loc[level][group] = loc.to(self.loc[level])
        self.raw_scale[level][group] = torch.log(torch.expm1(scale.clamp_min(1e-6).to(self.loc[level])))
        self.active(level)[group] = True
