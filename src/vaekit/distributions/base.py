"""Conditional distributions: modules that map context to a ``torch.distributions`` object.

This is zuko's ``LazyDistribution`` idea: a posterior family is an :class:`torch.nn.Module`
whose ``forward(context)`` returns a :class:`torch.distributions.Distribution` that can
``rsample()`` and ``log_prob()``. Families that can draw and score in one pass (flows,
the diagonal Gaussian) also offer ``rsample_and_log_prob``; :func:`rsample_and_log_prob`
uses it when present.
"""

from __future__ import annotations

import torch
from torch import Size, Tensor, nn
from torch.distributions import Distribution

from .._recording import Configurable

__all__ = ["ConditionalDistribution", "rsample_and_log_prob", "point_estimate", "check_context", "DrawWithLogProb"]


class ConditionalDistribution(Configurable, nn.Module):
    """Base class of posterior and prior families.

    ``forward(context)`` returns a distribution whose batch shape is the leading shape of
    ``context`` (priors without context return a distribution with empty batch shape that
    broadcasts against any sample shape). Subclasses set ``latent_features`` and, when
    ``forward`` reads a context, ``context_features`` (its width ``C``; ``None`` for families
    without context, such as fixed priors). Local optimisation and the gap table build a
    family of another kind on the same context from it.
    """

    latent_features: int
    context_features: int | None = None

    def forward(self, context: Tensor | None = None) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError


_LAST_DIMS = tuple(tuple(range(-n, 0)) for n in range(5))
#: The event shape of a scalar distribution (the per-step distributions set it directly).
SCALAR_SHAPE = Size()


def last_dims(n: int) -> tuple[int, ...]:
    """The last ``n`` dimensions, ``(-n, ..., -1)``: the event dimensions a log-density or KL sums over
    (made once for the usual counts).

    >>> last_dims(3), last_dims(0)
    ((-3, -2, -1), ())
    """
    return _LAST_DIMS[n] if 0 <= n < len(_LAST_DIMS) else tuple(range(-n, 0))


def rsample_and_log_prob(dist: Distribution, sample_shape: Size | tuple[int, ...] = ()) -> tuple[Tensor, Tensor]:
    """Reparameterized sample and its log-density, in one pass when the family allows.

    Parameters
    ----------
    dist : Distribution
        Any reparameterizable distribution.
    sample_shape : tuple of int
        Leading sample shape, e.g. ``(k,)``.

    Returns
    -------
    z : Tensor of shape (*sample_shape, *dist.batch_shape, *dist.event_shape)
    log_prob : Tensor of shape (*sample_shape, *dist.batch_shape)

    Examples
    --------
    >>> from torch.distributions import Normal
    >>> z, lp = rsample_and_log_prob(Normal(torch.zeros(3), 1.0), (5,))
    >>> z.shape, lp.shape
    (torch.Size([5, 3]), torch.Size([5, 3]))
    """
    fn = getattr(dist, "rsample_and_log_prob", None)
    if fn is not None:
        return fn(Size(sample_shape))
    z = dist.rsample(Size(sample_shape))
    return z, dist.log_prob(z)


def point_estimate(dist: Distribution, n_mc: int | None = None) -> Tensor:
    r"""The posterior's point estimate of :math:`z`: deterministic, one per batch element.

    A flow posterior :math:`z = f_x(z_0)`, :math:`z_0 \sim q_0(z_0|x)` declares it as its
    ``point_estimate()``: the flow evaluated at the base mean, :math:`f_x(\mathbb E[z_0])`
    (one pass, no sampling; the mode when the flow is the identity). Every other
    distribution gives its ``mean``. This is what vaekit means by the "posterior mean" of a
    flow: :func:`vaekit.runs.reconstruct`, the analysis tools and
    :class:`~vaekit.embedding.VAEEmbedder` all use it.

    Parameters
    ----------
    dist : Distribution
    n_mc : int, optional
        For a distribution with neither (a relaxed categorical, a likelihood without a
        closed-form mean): return the Monte Carlo mean of ``n_mc`` draws instead of raising.
        Flows never take this path.

    Returns
    -------
    Tensor of shape (*dist.batch_shape, *dist.event_shape)

    Raises
    ------
    NotImplementedError
        For a distribution with neither when ``n_mc`` is None, naming its type.

    Examples
    --------
    >>> from torch.distributions import Normal
    >>> point_estimate(Normal(torch.tensor([1.0, 2.0]), 1.0))
    tensor([1., 2.])
    """
    declared = getattr(type(dist), "point_estimate", None)
    if callable(declared):
        return dist.point_estimate()
    try:
        return dist.mean
    except NotImplementedError:
        if n_mc is None:
            raise NotImplementedError(f"{type(dist).__name__} has no closed-form mean and declares no point_estimate(); "
                                      "pass n_mc to use the Monte Carlo mean of n_mc draws") from None
    return dist.sample((n_mc,)).mean(0)


def check_context(name: str, context: Tensor | None, width: int) -> Tensor:
    """``context`` if it is a tensor of shape (*batch, width), else a ``ValueError`` naming the family ``name``.

    >>> check_context("PlanarFlow", torch.zeros(2, 3), 4)
    Traceback (most recent call last):
    ...
    ValueError: PlanarFlow expects context of shape (*batch, 4) (context_features=4), got (2, 3)
    """
    if context is None:
        raise ValueError(f"{name} is a posterior: it needs the encoder features as context")
    if not isinstance(context, Tensor) or context.dim() < 1 or context.shape[-1] != width:
        shape = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
        raise ValueError(f"{name} expects context of shape (*batch, {width}) (context_features={width}), got {shape}")
    return context


class DrawWithLogProb(nn.Module):
    """``forward(context, n)``: ``n`` draws from ``family(context)`` and their log-densities, in one module call.

    A family's distribution may run the family's networks when it is sampled, after the
    family's ``forward`` has returned (a coupling flow does). To substitute parameters with
    :func:`torch.func.functional_call` (and ``vmap`` over stacked per-datapoint
    parameters, as local optimisation does), call this wrapper instead of the family:
    the whole draw then happens inside the call. Its parameters are the family's, under
    the prefix ``family.``.

    Parameters
    ----------
    family : ConditionalDistribution

    Examples
    --------
    >>> from torch.func import functional_call
    >>> from vaekit.distributions import RealNVPFlow
    >>> draw = DrawWithLogProb(RealNVPFlow(4, 2, n_flows=2, hidden=[8]))
    >>> params = {k: torch.zeros_like(v) for k, v in draw.state_dict().items()}  # every network outputs 0
    >>> z, log_q = functional_call(draw, params, (torch.randn(3, 4), 5))
    >>> z.shape, log_q.shape, bool(torch.allclose(z[0], functional_call(draw, params, (torch.zeros(3, 4), 1))[0][0]))
    (torch.Size([5, 3, 2]), torch.Size([5, 3]), False)
    """

    def __init__(self, family: ConditionalDistribution) -> None:
        super().__init__()
        self.family = family

    def forward(self, context: Tensor, n: int) -> tuple[Tensor, Tensor]:
        """``z`` of shape (n, *batch, d) and ``log q(z|x)`` of shape (n, *batch)."""
        return rsample_and_log_prob(self.family(context), (n,))
