"""Posterior families by short name."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from ..base import ConditionalDistribution
from ..gaussian import DiagonalGaussian
from .autoregressive import IAF, NeuralSplineFlow
from .auxiliary import AuxiliaryFlow
from .coupling import RealNVPFlow
from .planar import PlanarFlow
from .radial import RadialFlow
from .sylvester import SylvesterFlow

__all__ = ["make_posterior", "posterior_name", "POSTERIORS"]

_TABLE: dict[str, Callable[..., ConditionalDistribution]] = {
    "gaussian": DiagonalGaussian,
    "planar": PlanarFlow,
    "radial": RadialFlow,
    "sylvester_orthogonal": partial(SylvesterFlow, kind="orthogonal"),
    "sylvester_householder": partial(SylvesterFlow, kind="householder"),
    "sylvester_triangular": partial(SylvesterFlow, kind="triangular"),
    "realnvp": RealNVPFlow,
    "af": AuxiliaryFlow,
    "iaf": IAF,
    "nsf": NeuralSplineFlow,
}

#: Names accepted by :func:`make_posterior`.
POSTERIORS: tuple[str, ...] = tuple(_TABLE)


def make_posterior(name: str, context_features: int, latent_features: int, **kwargs: Any) -> ConditionalDistribution:
    """A posterior family by short name.

    Parameters
    ----------
    name : str
        One of :data:`POSTERIORS`: ``"gaussian"`` (:class:`~vaekit.distributions.DiagonalGaussian`),
        ``"planar"``, ``"radial"``, ``"sylvester_orthogonal"``, ``"sylvester_householder"``,
        ``"sylvester_triangular"``, ``"realnvp"``, ``"af"`` (:class:`AuxiliaryFlow`),
        ``"iaf"``, ``"nsf"`` (:class:`NeuralSplineFlow`).
    context_features : int
        Width of the encoder features.
    latent_features : int
        Dimension of ``z``.
    **kwargs
        Passed to the family's constructor (``n_flows``, ``hidden``, ...).

    Returns
    -------
    ConditionalDistribution
        A module built through its own typed constructor, so it records a config.

    Examples
    --------
    >>> q = make_posterior("sylvester_householder", 16, 4, n_flows=2)
    >>> type(q).__name__, q.kind, q.n_flows
    ('SylvesterFlow', 'householder', 2)
    >>> make_posterior("maf", 16, 4)
    Traceback (most recent call last):
    ...
    ValueError: unknown posterior 'maf'; accepted: gaussian, planar, radial, ...
    """
    if name not in _TABLE:
        raise ValueError(f"unknown posterior {name!r}; accepted: {', '.join(POSTERIORS)}")
    return _TABLE[name](context_features, latent_features, **kwargs)


def posterior_name(family: ConditionalDistribution) -> str | None:
    """The :data:`POSTERIORS` name that :func:`make_posterior` builds ``family``'s class (and kind) under, else None.

    >>> posterior_name(make_posterior("sylvester_triangular", 4, 2)), posterior_name(make_posterior("iaf", 4, 2))
    ('sylvester_triangular', 'iaf')
    >>> posterior_name(ConditionalDistribution()) is None
    True
    """
    for name, ctor in _TABLE.items():
        cls = getattr(ctor, "func", ctor)
        kind = getattr(ctor, "keywords", {}).get("kind")
        if type(family) is cls and (kind is None or getattr(family, "kind", None) == kind):
            return name
    return None
