"""KL divergence between a posterior and a prior: closed form when registered, else Monte Carlo."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor
from torch.distributions import Distribution

__all__ = ["kl_divergence", "closed_form_kl", "KL_METHODS"]

KL_METHODS = ("auto", "analytic", "mc")


def kl_divergence(q: Distribution, p: Distribution, z: Tensor | None = None, log_q: Tensor | None = None,
                  method: Literal["auto", "analytic", "mc"] = "auto", log_p: Tensor | None = None) -> Tensor:
    r"""``KL(q || p)`` per example.

    ``"analytic"`` uses the closed form registered with
    :func:`torch.distributions.kl.register_kl` (error if there is none); ``"mc"`` the
    single-sample estimate :math:`\log q(z) - \log p(z)` at the given sample ``z``;
    ``"auto"`` the closed form when one is registered, else Monte Carlo.

    Parameters
    ----------
    q, p : Distribution
        Posterior and prior (p broadcasts against q's batch shape).
    z : Tensor of shape (*sample, *batch, *event), optional
        Sample from q, required for Monte Carlo.
    log_q : Tensor of shape (*sample, *batch), optional
        ``q.log_prob(z)`` if already known (flows compute it while sampling).
    method : {"auto", "analytic", "mc"}
    log_p : Tensor of shape (*sample, *batch), optional
        ``p.log_prob(z)`` if already known (relaxed categorical layers score both at the draw's
        stable coordinates, :meth:`~vaekit.distributions.RelaxedLayer.log_prob_coords`).

    Returns
    -------
    Tensor of shape (*batch,) (analytic) or (*sample, *batch) (Monte Carlo)

    Examples
    --------
    >>> from vaekit.distributions import DiagonalNormal
    >>> q, p = DiagonalNormal(torch.ones(2), torch.ones(2)), DiagonalNormal(torch.zeros(2), torch.ones(2))
    >>> kl_divergence(q, p)
    tensor(1.)
    """
    if method not in KL_METHODS:
        raise ValueError(f"method must be one of {KL_METHODS}, got {method!r}")
    if method != "mc":
        kl = closed_form_kl(q, p)
        if kl is not None:
            return kl
        if method == "analytic":
            raise NotImplementedError(f"no closed-form KL is registered for {type(q).__name__} || "
                                      f"{type(p).__name__}; use method='mc' or 'auto'")
    if z is None:
        raise ValueError("Monte Carlo KL needs the posterior sample z")
    if log_q is None:
        log_q = q.log_prob(z)
    return log_q - (p.log_prob(z) if log_p is None else log_p)


def closed_form_kl(q: Distribution, p: Distribution) -> Tensor | None:
    """``KL(q || p)`` in closed form when one is registered for their types, else None.

    >>> from vaekit.distributions import DiagonalNormal
    >>> closed_form_kl(DiagonalNormal(torch.ones(2), torch.ones(2)), DiagonalNormal(torch.zeros(2), torch.ones(2)))
    tensor(1.)
    """
    registry = torch.distributions.kl._KL_REGISTRY
    if len(registry) != _CLOSED_FORMS.get("registry size"):  # register_kl since: look again
        _CLOSED_FORMS.clear()
        _CLOSED_FORMS["registry size"] = len(registry)
    key = (type(q), type(p))
    exact = registry.get(key)  # a pair registered again keeps the registry's size: compare the function
    if key not in _CLOSED_FORMS or (exact is not None and _CLOSED_FORMS[key] is not exact):
        # torch's lookup (over the registry's class hierarchy), once per pair of types
        fn = torch.distributions.kl._dispatch_kl(*key)
        _CLOSED_FORMS[key] = None if fn is NotImplemented else fn
    fn = _CLOSED_FORMS[key]
    if fn is None:
        return None
    try:
        return fn(q, p)
    except NotImplementedError:  # e.g. Independent || Independent whose base distributions have none
        return None


#: ``(type(q), type(p)) -> closed-form KL function or None`` (and the size of torch's registry
#: it was filled for): a plain dict lookup, which ``torch.compile`` traces (torch's own
#: dispatch breaks the graph).
_CLOSED_FORMS: dict[Any, Any] = {}
