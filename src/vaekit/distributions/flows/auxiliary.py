r"""The auxiliary-variable flow ("AF") of Cremer, Li & Duvenaud (2018).

The latent :math:`z \in \mathbb R^d` is augmented with an auxiliary :math:`v \in \mathbb R^{d_v}`:

.. math::
    v_0 \sim q(v_0|x), \qquad z_0 \sim q(z_0|x, v_0), \qquad
    (z_T, v_T) = f_T \circ \dots \circ f_1(z_0, v_0),

each step :math:`f_t` being two affine couplings, first of :math:`z` given :math:`(v, x)`,
then of :math:`v` given :math:`(z, x)`:

.. math::
    z \leftarrow z \odot e^{s^z_t(v, x)} + m^z_t(v, x), \qquad
    v \leftarrow v \odot e^{s^v_t(z, x)} + m^v_t(z, x),

with :math:`\log|\det \partial f_t| = \sum_j s^z_{t,j} + \sum_j s^v_{t,j}`. A reverse model
:math:`r(v_T|x, z_T)` (Gaussian) closes the bound: since
:math:`\mathbb E_q\left[\log p(x, z_T)\,r(v_T|x, z_T) - \log q(z_T, v_T|x)\right] \le \log p(x)`,
the family's log-density term is

.. math::
    \log \tilde q(z_T|x) = \log q(v_0|x) + \log q(z_0|x, v_0)
                          - \sum_t \log|\det \partial f_t| - \log r(v_T|x, z_T),

and ELBO and IWAE computed with it in place of :math:`\log q(z_T|x)` stay valid lower
bounds on :math:`\log p(x)` (for IWAE: an importance-weighted bound of the extended model
:math:`p(x, z)\,r(v|x, z)`). This is what ``rsample_and_log_prob`` returns: **the auxiliary
bound, not the marginal density** :math:`q(z_T|x)`, which is intractable (``log_prob``
raises ``NotImplementedError``). :math:`v` never leaves the distribution: the decoder only
sees :math:`z_T`.

The predecessor's known defects are avoided by construction: :math:`\log q(v_0|x)` is
included, and :math:`r` is evaluated at the final :math:`(v_T, z_T)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Size, Tensor, nn
from torch.distributions import Distribution, constraints
from zuko.transforms import ComposedTransform

from ..._checks import check_int
from ..._layers import ActivationName, activation_class, check_hidden, linear_stack
from ..base import ConditionalDistribution, check_context
from ..gaussian import DiagonalNormal
from ._base import diagonal_normal, with_context
from .coupling import AffineCoupling

__all__ = ["AuxiliaryFlow", "AuxiliaryFlowDistribution"]


class AuxiliaryFlowDistribution(Distribution):
    r"""The distribution an :class:`AuxiliaryFlow` returns for one batch of contexts.

    Batch shape (*batch,), event shape (d,): samples are :math:`z_T` only.
    ``rsample_and_log_prob`` returns :math:`(z_T, \log\tilde q)` with :math:`\log\tilde q`
    the auxiliary bound of the module docstring. The pieces are public for diagnostics and
    tests: :attr:`q_v0`, :meth:`q_z0`, :meth:`reverse`, :meth:`push` and
    :meth:`rsample_with_auxiliary`.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, flow: AuxiliaryFlow, context: Tensor) -> None:
        self.flow, self.context = flow, context
        #: :math:`q(v_0|x)`, batch shape (*batch,), event shape (d_v,)
        self.q_v0: DiagonalNormal = diagonal_normal(flow.q_v0(context))
        #: the couplings on :math:`w = (z, v)`: z given (v, x), then v given (z, x), step after step
        self.couplings = ComposedTransform(*(step(context) for pair in zip(flow.z_steps, flow.v_steps) for step in pair))
        super().__init__(context.shape[:-1], Size([flow.latent_features]), validate_args=False)

    def q_z0(self, v0: Tensor) -> DiagonalNormal:
        """:math:`q(z_0|x, v_0)` for ``v0`` of shape (*sample, *batch, d_v)."""
        return diagonal_normal(self.flow.q_z0(with_context(v0, self.context)))

    def reverse(self, z: Tensor) -> DiagonalNormal:
        """The reverse model :math:`r(v_T|x, z_T)` for ``z`` of shape (*sample, *batch, d)."""
        return diagonal_normal(self.flow.reverse(with_context(z, self.context)))

    def push(self, z0: Tensor, v0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(z0, v0) -> (zT, vT, log|det d(zT, vT)/d(z0, v0)|)``."""
        w, logdet = self.couplings.call_and_ladj(torch.cat([z0, v0], dim=-1))
        return w[..., :self.flow.latent_features], w[..., self.flow.latent_features:], logdet

    def point_estimate(self) -> Tensor:
        r""":math:`z_T` of the flow at the base means: :math:`v_0 = \mathbb E[v_0|x]`, :math:`z_0 = \mathbb E[z_0|x, v_0]`; (*batch, d)."""
        v0 = self.q_v0.loc
        return self.push(self.q_z0(v0).loc, v0)[0]

    def rsample_with_auxiliary(self, sample_shape: Size | tuple[int, ...] = Size()) -> dict[str, Tensor]:
        """Every intermediate of one draw: ``z0, v0, zT, vT`` and ``log_q_v0, log_q_z0, logdet, log_r, log_q``."""
        v0, log_q_v0 = self.q_v0.rsample_and_log_prob(Size(sample_shape))
        z0, log_q_z0 = self.q_z0(v0).rsample_and_log_prob()
        z, v, logdet = self.push(z0, v0)
        log_r = self.reverse(z).log_prob(v)
        return {"z0": z0, "v0": v0, "zT": z, "vT": v, "log_q_v0": log_q_v0, "log_q_z0": log_q_z0, "logdet": logdet,
                "log_r": log_r, "log_q": log_q_v0 + log_q_z0 - logdet - log_r}

    def rsample_and_log_prob(self, sample_shape: Size | tuple[int, ...] = Size()) -> tuple[Tensor, Tensor]:
        r""":math:`z_T` of shape (*sample_shape, *batch, d) and the auxiliary bound :math:`\log\tilde q` (*sample_shape, *batch)."""
        out = self.rsample_with_auxiliary(sample_shape)
        return out["zT"], out["log_q"]

    def rsample(self, sample_shape: Size | tuple[int, ...] = Size()) -> Tensor:
        return self.rsample_and_log_prob(sample_shape)[0]

    def log_prob(self, value: Tensor) -> Tensor:
        raise NotImplementedError(
            "AuxiliaryFlow only scores its own samples: the marginal q(z|x) integrates over the auxiliary v and is "
            "intractable; rsample_and_log_prob(q, sample_shape) returns z with the auxiliary bound "
            "log q(z0, v0|x) - log|det| - log r(vT|x, zT) in its place")

    def __repr__(self) -> str:
        return f"AuxiliaryFlowDistribution(batch_shape={tuple(self.batch_shape)}, event_shape={tuple(self.event_shape)})"


class AuxiliaryFlow(ConditionalDistribution):
    r"""Auxiliary-variable flow posterior of Cremer, Li & Duvenaud (2018), "AF".

    See the module docstring for the model and for what its "log-probability" is: the
    returned :class:`AuxiliaryFlowDistribution` gives :math:`z_T` and the auxiliary bound
    :math:`\log q(z_0, v_0|x) - \sum\log|\det| - \log r(v_T|x, z_T)`, which keeps ELBO and
    IWAE lower bounds of :math:`\log p(x)`; it is not the marginal :math:`\log q(z_T|x)`.

    Parameters
    ----------
    context_features : int
        Width ``C`` of the encoder features.
    latent_features : int
        Dimension ``d`` of ``z``.
    n_flows : int
        Number of steps (each a z-coupling then a v-coupling), >= 1.
    hidden : sequence of int
        Hidden sizes of every network (:math:`q(v_0|x)`, :math:`q(z_0|x,v_0)`, the couplings,
        :math:`r(v_T|x,z_T)`).
    aux_features : int, optional
        Dimension :math:`d_v` of ``v`` (default ``d``).
    activation : str
        Hidden activation, one of :data:`vaekit.nn.mlp.ACTIVATIONS`.

    Examples
    --------
    >>> q = AuxiliaryFlow(context_features=8, latent_features=2, n_flows=2, hidden=[16])
    >>> z, log_q = q(torch.randn(5, 8)).rsample_and_log_prob((3,))
    >>> z.shape, log_q.shape
    (torch.Size([3, 5, 2]), torch.Size([3, 5]))
    """

    def __init__(self, context_features: int, latent_features: int, n_flows: int = 2, hidden: Sequence[int] = (64, 64),
                 aux_features: int | None = None, activation: ActivationName = "elu") -> None:
        super().__init__()
        c = self.context_features = check_int("context_features", context_features, 1)
        d = self.latent_features = check_int("latent_features", latent_features, 1)
        self.n_flows = check_int("n_flows", n_flows, 1)
        dv = self.aux_features = d if aux_features is None else check_int("aux_features", aux_features, 1)
        hidden, act = check_hidden(hidden), activation_class(activation)
        self.q_v0 = nn.Sequential(*linear_stack(c, 2 * dv, hidden, act))
        self.q_z0 = nn.Sequential(*linear_stack(c + dv, 2 * d, hidden, act))
        # on w = (z, v): the z-step keeps the last dv coordinates (v), the v-step the first d (z)
        self.z_steps = nn.ModuleList(AffineCoupling(dv, d, False, c, hidden, act) for _ in range(self.n_flows))
        self.v_steps = nn.ModuleList(AffineCoupling(d, dv, True, c, hidden, act) for _ in range(self.n_flows))
        self.reverse = nn.Sequential(*linear_stack(c + d, 2 * dv, hidden, act))

    def forward(self, context: Tensor | None = None) -> AuxiliaryFlowDistribution:
        context = check_context("AuxiliaryFlow", context, self.context_features)
        return AuxiliaryFlowDistribution(self, context)
