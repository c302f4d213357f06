"""Shared machinery of the flow posteriors: the returned distribution, the module base class, checks.

Every flow family here is amortized: ``forward(context)`` computes the flow's parameters for
each datapoint, builds a base :class:`~vaekit.distributions.DiagonalNormal`
:math:`q_0(z_0|x)` from the same context, and returns a :class:`FlowDistribution`
:math:`q(z|x)`, the push-forward of :math:`q_0` through :math:`z_T = f_T\\circ\\dots\\circ f_1(z_0)`.
By the change of variables

.. math:: \\log q(z_T|x) = \\log q_0(z_0|x) - \\sum_{t=1}^T \\log\\left|\\det \\frac{\\partial f_t}{\\partial z_{t-1}}\\right|,

which :meth:`FlowDistribution.rsample_and_log_prob` returns together with :math:`z_T` in
one pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Size, Tensor, nn
from torch.distributions import Distribution, constraints
from torch.func import functional_call

from ..._checks import check_int
from ..base import ConditionalDistribution
from ..gaussian import DiagonalGaussian, DiagonalNormal

__all__ = ["FlowDistribution", "FlowPosterior", "ACTIVATIONS", "bind_parameters"]

#: Hidden activations accepted by the flows' networks.
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh, "gelu": nn.GELU,
                                           "silu": nn.SiLU}

Transform = Callable[[Tensor], tuple[Tensor, Tensor]]


class FlowDistribution(Distribution):
    r"""Push-forward of a diagonal Gaussian through a (context-specific) flow.

    Parameters
    ----------
    base : DiagonalNormal
        :math:`q_0(z_0|x)`, batch shape ``(*batch,)``, event shape ``(d,)``.
    transform : callable
        ``z0 -> (zT, logdet)`` with ``z0`` of shape (*sample, *batch, d) and ``logdet`` of
        shape (*sample, *batch): :math:`\log|\det \partial z_T / \partial z_0|`.
    inverse : callable, optional
        ``zT -> (z0, logdet)`` (the same forward log-determinant, evaluated at the
        recovered ``z0``). Without it :meth:`log_prob` raises ``NotImplementedError``.
    family : str
        Name used in messages.

    Examples
    --------
    >>> import math
    >>> base = DiagonalNormal(torch.zeros(2, 3), torch.ones(2, 3))
    >>> q = FlowDistribution(base, lambda z: (2 * z, torch.full(z.shape[:-1], 3 * math.log(2))),
    ...                      lambda z: (z / 2, torch.full(z.shape[:-1], 3 * math.log(2))))
    >>> z, lp = q.rsample_and_log_prob((5,))
    >>> z.shape, lp.shape, torch.allclose(lp, q.log_prob(z))
    (torch.Size([5, 2, 3]), torch.Size([5, 2]), True)
    """

    arg_constraints: dict[str, Any] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, base: DiagonalNormal, transform: Transform, inverse: Transform | None = None,
                 family: str = "flow") -> None:
        self.base, self.family = base, family
        self._forward_fn, self._inverse_fn = transform, inverse
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def _transform(self, z0: Tensor) -> tuple[Tensor, Tensor]:
        """The flow ``z0 -> (zT, log|det dzT/dz0|)``; shapes (*s, *batch, d) -> ((*s, *batch, d), (*s, *batch))."""
        return self._forward_fn(z0)

    def rsample_and_log_prob(self, sample_shape: Size | tuple[int, ...] = Size()) -> tuple[Tensor, Tensor]:
        """``zT`` of shape (*sample_shape, *batch, d) and :math:`\\log q(z_T|x)` of shape (*sample_shape, *batch)."""
        z0, log_q0 = self.base.rsample_and_log_prob(Size(sample_shape))
        z, logdet = self._forward_fn(z0)
        return z, log_q0 - logdet

    def rsample(self, sample_shape: Size | tuple[int, ...] = Size()) -> Tensor:
        return self.rsample_and_log_prob(sample_shape)[0]

    def log_prob(self, value: Tensor) -> Tensor:
        """Density of arbitrary points, for families whose flow inverts in closed form."""
        if self._inverse_fn is None:
            raise NotImplementedError(
                f"{self.family} only scores its own samples: its flow has no closed-form inverse, so log q(z|x) of an "
                "arbitrary z is unavailable; draw z and log q together with "
                "vaekit.distributions.rsample_and_log_prob(q, sample_shape)")
        z0, logdet = self._inverse_fn(value)
        return self.base.log_prob(z0) - logdet

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.family}, batch_shape={tuple(self.batch_shape)}, event_shape={tuple(self.event_shape)})"


class _Apply(nn.Module):
    """Root module for :func:`bind_parameters`: ``forward(fn, *args)`` is ``fn(*args)``."""

    def __init__(self, target: nn.Module) -> None:
        super().__init__()
        self.target = target

    def forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


def bind_parameters(module: nn.Module) -> Callable[..., Any]:
    """``run(fn, *args)`` calling ``fn(*args)`` with ``module``'s parameters and buffers as they are *now*.

    A flow's distribution evaluates its networks lazily (when sampling or scoring), after
    ``forward`` has returned. Under :func:`torch.func.functional_call` (and ``vmap`` over
    stacked per-datapoint parameters, as local optimisation does) the substituted tensors
    are gone by then; ``run`` puts them back for the call. When the module still holds the
    captured tensors (the ordinary case) it calls ``fn`` directly after an identity check.

    Examples
    --------
    >>> class Lazy(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = nn.Linear(2, 1)
    ...     def forward(self, x):
    ...         return bind_parameters(self)
    >>> m = Lazy()
    >>> run = functional_call(m, {"lin.weight": torch.zeros(1, 2), "lin.bias": torch.ones(1)}, (None,))
    >>> run(m.lin, torch.ones(2))  # after functional_call returned: still the substituted tensors
    tensor([1.])
    """
    state = {**dict(module.named_parameters()), **dict(module.named_buffers())}

    def run(fn: Callable[..., Any], *args: Any) -> Any:
        current = {**dict(module.named_parameters()), **dict(module.named_buffers())}
        if current.keys() == state.keys() and all(current[k] is v for k, v in state.items()):
            return fn(*args)
        return functional_call(_Apply(module), {f"target.{k}": v for k, v in state.items()}, (fn, *args))

    return run


def compose(z: Tensor, steps: Iterable[Transform]) -> tuple[Tensor, Tensor]:
    """Apply ``steps`` (each ``z -> (z', logdet)``) in order; returns the last ``z`` and the summed logdet."""
    logdet = z.new_zeros(z.shape[:-1])
    for step in steps:
        z, ld = step(z)
        logdet = logdet + ld
    return z, logdet


def check_hidden(hidden: Sequence[int], name: str = "hidden") -> list[int]:
    """Hidden layer sizes as a list of positive ints (empty allowed: a linear network)."""
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise ValueError(f"{name} must be a list of positive integers, got {hidden!r}")
    if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"{name} must be a list of positive integers, got {list(hidden)}")
    return [int(h) for h in hidden]


def check_activation(activation: str) -> type[nn.Module]:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return ACTIVATIONS[activation]


def mlp(in_features: int, out_features: int, hidden: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear`` acting on the last dimension."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_features, h), activation()]
        in_features = h
    layers.append(nn.Linear(in_features, out_features))
    return nn.Sequential(*layers)


def with_context(x: Tensor, context: Tensor) -> Tensor:
    """``cat([x, context], -1)`` with ``context`` (*batch, C) broadcast to x's leading (*sample, *batch) shape."""
    return torch.cat([x, context.expand(*x.shape[:-1], context.shape[-1])], dim=-1)


def check_context(name: str, context: Tensor | None, width: int) -> Tensor:
    """``context`` if it is a tensor of shape (*batch, width), else a ``ValueError`` naming the family."""
    if context is None:
        raise ValueError(f"{name} is a posterior: it needs the encoder features as context")
    if not isinstance(context, Tensor) or context.dim() < 1 or context.shape[-1] != width:
        shape = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
        raise ValueError(f"{name} expects context of shape (*batch, {width}) (context_features={width}), got {shape}")
    return context


def soft_clamp(x: Tensor, bound: float = 3.0) -> Tensor:
    """Smooth clamp to (-bound, bound), ~identity near 0 (keeps coupling log-scales finite)."""
    return bound * torch.tanh(x / bound)


def diagonal_normal(params: Tensor, min_scale: float = 1e-5) -> DiagonalNormal:
    """Split ``params`` (..., 2d) into loc and softplus scale."""
    loc, raw = params.chunk(2, dim=-1)
    return DiagonalNormal(loc, F.softplus(raw) + min_scale)


class FlowPosterior(ConditionalDistribution):
    r"""Base class of the amortized flow posteriors :math:`q(z|x)` = flow of :math:`q_0(z_0|x)`.

    Subclasses build their layers, then implement ``_flow_parameters(context)`` (the
    per-datapoint flow parameters), ``_flow(params, z0) -> (zT, logdet)`` and, when the
    flow inverts cheaply, ``_inverse(params, zT) -> (z0, logdet)``.

    Parameters
    ----------
    context_features : int
        Width ``C`` of the encoder features.
    latent_features : int
        Dimension ``d`` of ``z``.
    n_flows : int
        Number of flow steps ``T`` (>= 1).
    """

    invertible: bool = False

    def __init__(self, context_features: int, latent_features: int, n_flows: int) -> None:
        super().__init__()
        self.context_features = check_int("context_features", context_features, 1)
        self.latent_features = check_int("latent_features", latent_features, 1)
        self.n_flows = check_int("n_flows", n_flows, 1)
        self.base = DiagonalGaussian(self.context_features, self.latent_features)

    def forward(self, context: Tensor | None = None) -> FlowDistribution:
        context = check_context(type(self).__name__, context, self.context_features)
        params, run = self._flow_parameters(context), bind_parameters(self)
        inverse = (lambda z: run(self._inverse, params, z)) if self.invertible else None
        return FlowDistribution(self.base(context), lambda z: run(self._flow, params, z), inverse, type(self).__name__)

    def _flow_parameters(self, context: Tensor) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _flow(self, params: Any, z: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _inverse(self, params: Any, z: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError
