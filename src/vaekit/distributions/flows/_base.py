r"""What every flow posterior is made of: a base, a list of steps, and the distribution they give.

Following zuko's ``Flow`` (``zuko/lazy.py``), a flow posterior is a module holding

* a base :class:`~vaekit.distributions.DiagonalGaussian` :math:`q_0(z_0|x)`, and
* ``transforms``, a list of **step modules**: each step's ``forward(context)`` computes that
  step's parameters from the encoder features and returns a **transform** for that batch
  of contexts, a :class:`torch.distributions.Transform` on real vectors with
  ``call_and_ladj(z) -> (z', log|det dz'/dz|)`` (zuko's protocol; zuko's own
  ``MaskedAutoregressiveTransform`` is such a step).

``forward(context)`` composes the steps' transforms and returns a :class:`FlowDistribution`
:math:`q(z|x)`, the push-forward of :math:`q_0` through :math:`z_T = f_T\circ\dots\circ f_1(z_0)`.
By the change of variables

.. math:: \log q(z_T|x) = \log q_0(z_0|x) - \sum_{t=1}^T \log\left|\det \frac{\partial f_t}{\partial z_{t-1}}\right|,

which :meth:`FlowDistribution.rsample_and_log_prob` returns together with :math:`z_T` in
one pass. A transform may evaluate its step's network when it is applied (a coupling step
does); nothing else is deferred, so running the whole computation inside one
:func:`torch.func.functional_call` of the family (as local optimisation does, vmapped over
per-datapoint parameters) uses the substituted parameters throughout.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import zuko.transforms  # noqa: F401 - gives torch.distributions.Transform its call_and_ladj
from torch import Size, Tensor, nn
from torch.distributions import Distribution, Transform, constraints
from zuko.transforms import ComposedTransform

from ..._checks import check_int
from ..base import ConditionalDistribution, check_context
from ..gaussian import DiagonalGaussian, DiagonalNormal

__all__ = ["FlowDistribution", "FlowPosterior", "StepTransform", "upgrade_state_dict"]


class StepTransform(Transform):
    """A flow step for one batch of contexts: ``call_and_ladj(z) -> (z', log|det dz'/dz|)`` on real vectors.

    Subclasses implement :meth:`call_and_ladj` and, when the step inverts in closed form,
    ``_inverse(y)``. ``z`` has shape (*sample, *batch, d) and the log-determinant
    (*sample, *batch); the step's parameters have shape (*batch, ...) and broadcast.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _call(self, z: Tensor) -> Tensor:
        return self.call_and_ladj(z)[0]

    def log_abs_det_jacobian(self, z: Tensor, y: Tensor) -> Tensor:
        return self.call_and_ladj(z)[1]


class FlowDistribution(Distribution):
    r"""Push-forward of a diagonal Gaussian through a (context-specific) flow.

    Parameters
    ----------
    base : DiagonalNormal
        :math:`q_0(z_0|x)`, batch shape ``(*batch,)``, event shape ``(d,)``.
    transform : torch.distributions.Transform
        On real vectors, with ``call_and_ladj``: ``z0`` of shape (*sample, *batch, d) ->
        ``(zT, log|det dzT/dz0|)`` of shapes (*sample, *batch, d) and (*sample, *batch).
    invertible : bool
        Whether ``transform.inv`` is available in closed form. Without it :meth:`log_prob`
        raises ``NotImplementedError``.
    family : str
        Name used in messages.

    Examples
    --------
    >>> from torch.distributions import AffineTransform
    >>> base = DiagonalNormal(torch.zeros(2, 3), torch.ones(2, 3))
    >>> q = FlowDistribution(base, AffineTransform(1.0, 2.0, event_dim=1))
    >>> z, lp = q.rsample_and_log_prob((5,))
    >>> z.shape, lp.shape, torch.allclose(lp, q.log_prob(z))
    (torch.Size([5, 2, 3]), torch.Size([5, 2]), True)
    >>> q.point_estimate()  # the flow at the base mean
    tensor([[1., 1., 1.],
            [1., 1., 1.]])
    """

    arg_constraints: dict[str, Any] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, base: DiagonalNormal, transform: Transform, *, invertible: bool = True,
                 family: str = "flow") -> None:
        self.base, self.flow, self.invertible, self.family = base, transform, invertible, family
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def push(self, z0: Tensor) -> tuple[Tensor, Tensor]:
        """Base points through the flow: ``(zT, log|det dzT/dz0|)``, shapes (*s, *batch, d) and (*s, *batch)."""
        return self.flow.call_and_ladj(z0)

    def point_estimate(self) -> Tensor:
        r"""The flow at the base mean, :math:`f_x(\mathbb E[z_0])`, shape (*batch, d): deterministic, one pass."""
        return self.push(self.base.loc)[0]

    def rsample_and_log_prob(self, sample_shape: Size | tuple[int, ...] = Size()) -> tuple[Tensor, Tensor]:
        """``zT`` of shape (*sample_shape, *batch, d) and :math:`\\log q(z_T|x)` of shape (*sample_shape, *batch)."""
        z0, log_q0 = self.base.rsample_and_log_prob(Size(sample_shape))
        z, logdet = self.push(z0)
        return z, log_q0 - logdet

    def rsample(self, sample_shape: Size | tuple[int, ...] = Size()) -> Tensor:
        return self.rsample_and_log_prob(sample_shape)[0]

    def log_prob(self, value: Tensor) -> Tensor:
        """Density of arbitrary points, for families whose flow inverts in closed form."""
        if not self.invertible:
            raise NotImplementedError(
                f"{self.family} only scores its own samples: its flow has no closed-form inverse, so log q(z|x) of an "
                "arbitrary z is unavailable; draw z and log q together with "
                "vaekit.distributions.rsample_and_log_prob(q, sample_shape)")
        z0, inverse_logdet = self.flow.inv.call_and_ladj(value)
        return self.base.log_prob(z0) + inverse_logdet

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.family}, batch_shape={tuple(self.batch_shape)}, event_shape={tuple(self.event_shape)})"


class FlowPosterior(ConditionalDistribution):
    r"""Base class of the amortized flow posteriors :math:`q(z|x)` = flow of :math:`q_0(z_0|x)`.

    A subclass calls ``super().__init__`` (which checks the sizes and builds :attr:`base`),
    then sets :attr:`transforms` to its ``n_flows`` step modules; each step's
    ``forward(context)`` returns a transform with ``call_and_ladj`` (see the module
    docstring). Families whose steps invert in closed form set ``invertible = True``.

    Parameters
    ----------
    context_features : int
        Width ``C`` of the encoder features.
    latent_features : int
        Dimension ``d`` of ``z``.
    n_flows : int
        Number of flow steps ``T`` (>= 1).

    Attributes
    ----------
    base : DiagonalGaussian
        :math:`q_0(z_0|x)`.
    transforms : nn.ModuleList
        The step modules, applied in order.
    """

    invertible: bool = False
    transforms: nn.ModuleList
    #: Names of the submodules that, before flows were composed of steps, computed the parameters of all
    #: ``n_flows`` steps in one layer (their output rows step by step); such weights load split into the steps.
    _legacy_stacked: tuple[str, ...] = ()
    #: Earlier name of :attr:`transforms` in saved weights, if any.
    _legacy_steps_name: str | None = None

    def __init__(self, context_features: int, latent_features: int, n_flows: int) -> None:
        super().__init__()
        self.context_features = check_int("context_features", context_features, 1)
        self.latent_features = check_int("latent_features", latent_features, 1)
        self.n_flows = check_int("n_flows", n_flows, 1)
        self.base = DiagonalGaussian(self.context_features, self.latent_features)

    def forward(self, context: Tensor | None = None) -> FlowDistribution:
        context = check_context(type(self).__name__, context, self.context_features)
        transform = ComposedTransform(*(step(context) for step in self.transforms))
        return FlowDistribution(self.base(context), transform, invertible=self.invertible, family=type(self).__name__)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Load weights saved before flows were lists of steps, converting their keys (same numbers)."""
        self._convert_legacy_keys(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _convert_legacy_keys(self, state_dict: dict[str, Any], prefix: str) -> None:
        for name in self._legacy_stacked:
            for kind in ("weight", "bias"):
                key = f"{prefix}{name}.{kind}"
                if key in state_dict:
                    for t, part in enumerate(state_dict.pop(key).chunk(self.n_flows, dim=0)):
                        state_dict[f"{prefix}transforms.{t}.{name}.{kind}"] = part
        if self._legacy_steps_name is not None:
            old = f"{prefix}{self._legacy_steps_name}."
            for key in [k for k in state_dict if k.startswith(old)]:
                state_dict[f"{prefix}transforms.{key[len(old):]}"] = state_dict.pop(key)


def upgrade_state_dict(module: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with the keys of flow weights saved by vaekit before flows were lists of steps converted.

    ``module.load_state_dict`` converts them by itself; this gives the converted dict to
    code that compares keys and shapes before loading (:func:`vaekit.load`).

    >>> from vaekit.distributions import PlanarFlow
    >>> sorted(upgrade_state_dict(PlanarFlow(4, 2, n_flows=2), {"amortize.weight": torch.zeros(10, 4)}))
    ['transforms.0.amortize.weight', 'transforms.1.amortize.weight']
    """
    state = dict(state)
    for name, sub in module.named_modules():
        if isinstance(sub, FlowPosterior):
            sub._convert_legacy_keys(state, f"{name}." if name else "")
    return state


def soft_clamp(x: Tensor, bound: float = 3.0) -> Tensor:
    """Smooth clamp to (-bound, bound), ~identity near 0 (keeps coupling log-scales finite)."""
    return bound * torch.tanh(x / bound)


def with_context(x: Tensor, context: Tensor) -> Tensor:
    """``cat([x, context], -1)`` with ``context`` (*batch, C) broadcast to x's leading (*sample, *batch) shape."""
    return torch.cat([x, context.expand(*x.shape[:-1], context.shape[-1])], dim=-1)


def diagonal_normal(params: Tensor, min_scale: float = 1e-5) -> DiagonalNormal:
    """Split ``params`` (..., 2d) into loc and softplus scale."""
    loc, raw = params.chunk(2, dim=-1)
    return DiagonalNormal(loc, F.softplus(raw) + min_scale)
