"""Amortized relaxed categorical posterior: N independent categorical variables of K categories each."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

from ..._checks import check_float, check_int
from ..base import ConditionalDistribution, check_context
from ._simplex import check_temperature
from .gumbel import GumbelSoftmax
from .igr import IGR, PlanarStep
from .prior_fit import IGRPrior
from .stick import IGRStickBreaking

__all__ = ["RelaxedCategorical", "RELAXATIONS"]

#: Relaxations accepted by :class:`RelaxedCategorical`.
RELAXATIONS = ("gs", "igr_i", "igr_planar", "igr_sb")
_PRIORS = ("standard", "uniform_fit")


class RelaxedCategorical(ConditionalDistribution):
    r"""Posterior family over ``n_variables`` relaxed categorical variables of ``n_categories`` each.

    A linear head maps the encoder features to the parameters of every variable: logits for
    the Gumbel-Softmax (``"gs"``), Gaussian :math:`(\mu, \sigma)` in :math:`\mathbb R^{K-1}`
    (:math:`\sigma = \mathrm{softplus}(\rho) + 10^{-4}`) for the IGR variants: ``"igr_i"``
    (softmax++), ``"igr_planar"`` (``n_flows`` learned planar steps, shared by all variables,
    before softmax++) and ``"igr_sb"`` (truncated stick-breaking at ``threshold``).

    Parameters
    ----------
    in_features : int
        Width of the encoder features.
    n_variables, n_categories : int
        ``N`` variables of ``K >= 2`` categories.
    relaxation : {"gs", "igr_i", "igr_planar", "igr_sb"}
    temperature : float
        :math:`\tau > 0`; a plain attribute models may anneal (:meth:`set_temperature`).
    delta : float
        :math:`\delta` of softmax++ (IGR-I/Planar).
    n_flows : int
        Planar steps (``"igr_planar"``).
    threshold : float
        Cumulative-mass threshold in (0, 1) of the IGR-SB truncation.
    hard : bool
        Straight-through one-hot samples (``"gs"`` only).
    prior : {"standard", "uniform_fit"}, IGRPrior, dict or str, optional
        IGR prior: :math:`\mathcal N(0, I)` (``"standard"``, the default), the Gaussian
        fitted by :func:`~vaekit.distributions.relaxed.fit_igr_prior` so that its mean sample
        is uniform (``"uniform_fit"``; computed on first use, cached on disk), or any fitted
        prior: a :class:`~vaekit.distributions.relaxed.IGRPrior` (e.g. fitted to a Poisson
        target), its :meth:`~vaekit.distributions.relaxed.IGRPrior.to_dict` (plain numbers, as
        in a YAML config) or the path of a file written by
        :meth:`~vaekit.distributions.relaxed.IGRPrior.save`. A fitted prior needs ``K - 1``
        entries and the matching relaxation (``"igr_sb"`` for IGR-SB, ``"igr_i"`` for IGR-I and
        IGR-Planar); its Gaussian is used at the family's temperature. An ``IGRPrior`` or dict
        given in Python is recorded as its numbers; a path given in a YAML config stays a path
        in the run's ``config.yaml`` (keep the file, or give the numbers). ``"gs"`` always uses
        the uniform Gumbel-Softmax.

    Examples
    --------
    >>> family = RelaxedCategorical(8, n_variables=3, n_categories=4, relaxation="igr_i")
    >>> q = family(torch.randn(5, 8))
    >>> q.batch_shape, q.event_shape, family.latent_features
    (torch.Size([5, 3]), torch.Size([4]), 12)
    >>> family.prior_distribution().batch_shape
    torch.Size([3])
    """

    @classmethod
    def canonical_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        """A fitted ``prior`` (an :class:`IGRPrior` or its file) is recorded as its numbers
        (``IGRPrior.to_dict()``): config.yaml holds no object and needs no file."""
        fitted = _fitted_prior(args.get("prior"))
        return args if fitted is None else {**args, "prior": fitted.to_dict()}

    def __init__(self, in_features: int, n_variables: int, n_categories: int,
                 relaxation: Literal["gs", "igr_i", "igr_planar", "igr_sb"] = "igr_i", temperature: float = 0.5,
                 delta: float = 1.0, n_flows: int = 1, threshold: float = 0.99, hard: bool = False,
                 prior: Literal["standard", "uniform_fit"] | dict[str, Any] | str | None = None) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, 1)
        self.n_variables = check_int("n_variables", n_variables, 1)
        self.n_categories = check_int("n_categories", n_categories, 2)
        if relaxation not in RELAXATIONS:
            raise ValueError(f"relaxation must be one of {RELAXATIONS}, got {relaxation!r}")
        self.temperature = float(check_temperature(temperature))
        self.delta = check_float("delta", delta, 0, low_open=True)
        self.n_flows = check_int("n_flows", n_flows, 1)
        self.threshold = check_float("threshold", threshold, 0, 1, low_open=True, high_open=True)
        if not isinstance(hard, bool):
            raise TypeError(f"hard must be a bool, got {hard!r} of type {type(hard).__name__}")
        if hard and relaxation != "gs":
            raise ValueError(f"hard=True is the straight-through Gumbel-Softmax: it needs relaxation='gs', got "
                             f"{relaxation!r}")
        fitted = _fitted_prior(prior)
        if (prior == "uniform_fit" or fitted is not None) and relaxation == "gs":
            raise ValueError(f"prior={'uniform_fit' if fitted is None else 'a fitted IGR prior'!r} is for the IGR "
                             f"relaxations; the Gumbel-Softmax prior is always the uniform Gumbel-Softmax (use prior=None)")
        if fitted is not None:
            want = "igr_sb" if relaxation == "igr_sb" else "igr_i"
            if fitted.relaxation != want:
                raise ValueError(f"the fitted prior is for relaxation={fitted.relaxation!r}, but relaxation={relaxation!r} "
                                 f"needs a prior fitted with relaxation={want!r} (fit_igr_prior(..., relaxation={want!r}))")
            if fitted.loc.numel() != self.n_categories - 1:
                raise ValueError(f"the fitted prior has {fitted.loc.numel()} Gaussian dimensions (K = "
                                 f"{fitted.loc.numel() + 1} categories) but n_categories={self.n_categories} needs "
                                 f"{self.n_categories - 1}")
            prior = fitted.to_dict()
        self.relaxation, self.hard, self.prior = relaxation, hard, prior
        self._fitted = None if fitted is None else (fitted.loc.float(), fitted.scale.float())
        self.latent_features = self.n_variables * self.n_categories
        self.n_params = self.n_categories if relaxation == "gs" else 2 * (self.n_categories - 1)
        self.head = nn.Linear(self.in_features, self.n_variables * self.n_params)
        self.flows = (nn.ModuleList(PlanarStep(self.n_categories - 1) for _ in range(self.n_flows))
                      if relaxation == "igr_planar" else None)
        self._prior_cache: dict[float, tuple[Tensor, Tensor]] = {}

    def set_temperature(self, temperature: float) -> None:
        """Set :math:`\\tau` (> 0) for the distributions built from now on."""
        self.temperature = float(check_temperature(temperature))

    @property
    def context_features(self) -> int:  # type: ignore[override]
        """Width of the context ``forward`` reads (``in_features``)."""
        return self.in_features

    def forward(self, context: Tensor | None = None) -> Distribution:
        """``context`` (*batch, in_features) -> distribution of batch shape (*batch, n_variables), event (K,)."""
        context = check_context(type(self).__name__, context, self.in_features)
        params = self.head(context).unflatten(-1, (self.n_variables, self.n_params))
        if self.relaxation == "gs":
            return GumbelSoftmax(params, self.temperature, self.hard)
        loc, raw = params.chunk(2, dim=-1)
        scale = F.softplus(raw) + 1e-4
        if self.relaxation == "igr_sb":
            return IGRStickBreaking(loc, scale, self.temperature, self.threshold)
        return IGR(loc, scale, self.temperature, self.delta, self.flows)

    def _prior_parameters(self) -> tuple[Tensor, Tensor]:
        ref = self.head.weight
        d = self.n_categories - 1
        if self._fitted is not None:
            return self._fitted[0].to(ref), self._fitted[1].to(ref)
        if self.prior != "uniform_fit":
            return ref.new_zeros(d), ref.new_ones(d)
        if self.temperature not in self._prior_cache:
            from .prior_fit import fit_igr_prior

            fitted = fit_igr_prior(torch.full((self.n_categories,), 1.0 / self.n_categories),
                                   temperature=self.temperature, delta=self.delta,
                                   relaxation="igr_sb" if self.relaxation == "igr_sb" else "igr_i")
            self._prior_cache[self.temperature] = (fitted.loc, fitted.scale)
        loc, scale = self._prior_cache[self.temperature]
        return loc.to(ref), scale.to(ref)

    def prior_distribution(self) -> Distribution:
        """The matching prior, batch shape (n_variables,), event (K,): uniform GS or the (fitted) Gaussian IGR."""
        n, k = self.n_variables, self.n_categories
        if self.relaxation == "gs":
            return GumbelSoftmax(self.head.weight.new_full((n, k), -math.log(k)), self.temperature)
        loc, scale = (t.expand(n, k - 1) for t in self._prior_parameters())
        if self.relaxation == "igr_sb":
            return IGRStickBreaking(loc, scale, self.temperature, self.threshold)
        return IGR(loc, scale, self.temperature, self.delta)


def _fitted_prior(prior: Any) -> IGRPrior | None:
    """The fitted prior ``prior`` names (an IGRPrior, its dict, or a file), or None for ``None``/"standard"/"uniform_fit"."""
    if prior is None or (isinstance(prior, str) and prior in _PRIORS):
        return None
    if isinstance(prior, IGRPrior):
        return prior
    if isinstance(prior, Mapping):
        return IGRPrior.from_dict(prior)
    if isinstance(prior, (str, os.PathLike)):
        if not str(prior).endswith(".safetensors"):
            raise ValueError(f"prior must be one of {_PRIORS}, None, a fitted IGRPrior (or its to_dict()), or the path "
                             f"of a .safetensors file written by IGRPrior.save; got {prior!r}")
        return IGRPrior.load(prior)
    raise TypeError(f"prior must be one of {_PRIORS}, None, a fitted IGRPrior (or its to_dict()), or the path of a "
                    f".safetensors file written by IGRPrior.save; got {type(prior).__name__}")
