r"""RealNVP affine coupling flow (Dinh, Sohl-Dickstein & Bengio 2017), conditioned on the context.

Step :math:`t` splits :math:`z` into a kept part :math:`z_a` and a transformed part
:math:`z_b` and maps

.. math:: z_b' = z_b \odot \exp s_t(z_a, x) + m_t(z_a, x), \qquad z_a' = z_a, \qquad
          \log\left|\det\frac{\partial z'}{\partial z}\right| = \sum_j s_{t,j}(z_a, x),

where :math:`(s_t, m_t)` is an MLP of :math:`z_a` and the encoder context :math:`x`, and
:math:`s = 3\tanh(\tilde s / 3)` is soft-clamped. The inverse is closed form:
:math:`z_b = (z_b' - m_t) \odot \exp(-s_t)`. The split alternates between steps: the first
:math:`\lfloor d/2\rfloor` coordinates are kept on even steps and the last
:math:`\lceil d/2\rceil` on odd steps, so odd :math:`d` works; for :math:`d = 1` every step
transforms the single coordinate with a scale and shift of the context alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..._layers import ActivationName, activation_class, check_hidden, linear_stack
from ._base import FlowPosterior, StepTransform, soft_clamp, with_context

__all__ = ["RealNVPFlow", "AffineCoupling", "AffineCouplingTransform"]


class AffineCouplingTransform(StepTransform):
    r"""An :class:`AffineCoupling` step with its context bound: :math:`z_b \mapsto z_b e^{s(z_a, x)} + m(z_a, x)`.

    The coupling network runs when the transform is applied (on the kept coordinates of
    the point it is applied to); the inverse is closed form.
    """

    def __init__(self, step: AffineCoupling, context: Tensor | None) -> None:
        super().__init__()
        self.step, self.context = step, context

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        z_a, z_b = self.step.split(z)
        shift, log_scale = self.step.shift_and_log_scale(z_a, self.context)
        return self.step.merge(z_a, z_b * log_scale.exp() + shift), log_scale.sum(-1)

    def _inverse(self, y: Tensor) -> Tensor:
        y_a, y_b = self.step.split(y)
        shift, log_scale = self.step.shift_and_log_scale(y_a, self.context)
        return self.step.merge(y_a, (y_b - shift) * torch.exp(-log_scale))


class AffineCoupling(nn.Module):
    r"""One conditional affine coupling step: keep one block of coordinates, move the other.

    ``forward(context)`` returns the :class:`AffineCouplingTransform` of that context
    (``call_and_ladj(z) -> (z', log|det dz'/dz|)``, ``inv``).

    Parameters
    ----------
    n_kept : int
        Size of :math:`z_a` (may be 0: the step then depends on the context alone).
    n_transformed : int
        Size of :math:`z_b` (>= 1).
    keep_first : bool
        Whether :math:`z_a` is the first ``n_kept`` coordinates (else the last).
    context_features : int
        Width of the conditioning context (0 for none).
    hidden : sequence of int
        Hidden sizes of the network computing :math:`(m, \tilde s)`.
    activation : type of nn.Module

    Examples
    --------
    >>> step = AffineCoupling(1, 2, True, context_features=4, hidden=[16], activation=nn.ELU)
    >>> z, c = torch.randn(5, 3), torch.randn(5, 4)
    >>> y, logdet = step(c).call_and_ladj(z)
    >>> torch.allclose(step(c).inv(y), z, atol=1e-6), torch.equal(y[:, 0], z[:, 0]), logdet.shape
    (True, True, torch.Size([5]))
    """

    def __init__(self, n_kept: int, n_transformed: int, keep_first: bool, context_features: int,
                 hidden: Sequence[int], activation: type[nn.Module]) -> None:
        super().__init__()
        self.n_kept, self.n_transformed, self.keep_first = n_kept, n_transformed, keep_first
        self.net = nn.Sequential(*linear_stack(n_kept + context_features, 2 * n_transformed, hidden, activation))

    def split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(z_a, z_b)``: the kept and the transformed coordinates."""
        if self.keep_first:
            return z[..., :self.n_kept], z[..., self.n_kept:]
        return z[..., self.n_transformed:], z[..., :self.n_transformed]

    def merge(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        """The inverse of :meth:`split`."""
        return torch.cat([z_a, z_b] if self.keep_first else [z_b, z_a], dim=-1)

    def shift_and_log_scale(self, z_a: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """:math:`(m, s)` of the kept coordinates and the context, each of shape (..., n_transformed)."""
        inp = z_a if context is None else with_context(z_a, context)
        shift, raw = self.net(inp).chunk(2, dim=-1)
        return shift, soft_clamp(raw)

    def forward(self, context: Tensor | None = None) -> AffineCouplingTransform:
        return AffineCouplingTransform(self, context)


class RealNVPFlow(FlowPosterior):
    r"""RealNVP posterior: ``n_flows`` affine couplings with alternating splits, conditioned on the context.

    The base :math:`q_0(z_0|x)` is a :class:`~vaekit.distributions.DiagonalGaussian` of the
    context; every coupling network sees the kept coordinates and the context (see the
    module docstring). Invertible in closed form, so ``log_prob`` scores any point.

    Parameters
    ----------
    context_features : int
        Width ``C`` of the encoder features.
    latent_features : int
        Dimension ``d`` of ``z`` (any ``d >= 1``; odd splits floor/ceil).
    n_flows : int
        Number of coupling steps (>= 1).
    hidden : sequence of int
        Hidden sizes of each coupling network.
    activation : str
        Hidden activation, one of :data:`vaekit.nn.mlp.ACTIVATIONS`.

    Examples
    --------
    >>> q = RealNVPFlow(8, 5, n_flows=4, hidden=[32])(torch.randn(3, 8))
    >>> z, log_q = q.rsample_and_log_prob((2,))
    >>> z.shape, torch.allclose(q.log_prob(z), log_q, atol=1e-5)
    (torch.Size([2, 3, 5]), True)
    """

    invertible = True
    _legacy_steps_name = "steps"

    def __init__(self, context_features: int, latent_features: int, n_flows: int = 4, hidden: Sequence[int] = (64, 64),
                 activation: ActivationName = "relu") -> None:
        super().__init__(context_features, latent_features, n_flows)
        hidden, act = check_hidden(hidden), activation_class(activation)
        c, d, half = self.context_features, self.latent_features, self.latent_features // 2
        steps = []
        for t in range(self.n_flows):
            if d == 1:  # transform the one coordinate from the context alone
                steps.append(AffineCoupling(0, 1, True, c, hidden, act))
            elif t % 2 == 0:  # keep the first floor(d/2), move the last ceil(d/2)
                steps.append(AffineCoupling(half, d - half, True, c, hidden, act))
            else:  # keep the last ceil(d/2), move the first floor(d/2)
                steps.append(AffineCoupling(d - half, half, False, c, hidden, act))
        self.transforms = nn.ModuleList(steps)
