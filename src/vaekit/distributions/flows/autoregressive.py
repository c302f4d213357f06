r"""Autoregressive posteriors on zuko's masked transforms: IAF and a neural spline flow.

Both stack ``n_flows`` masked autoregressive transforms
(:class:`zuko.flows.autoregressive.MaskedAutoregressiveTransform`, a MADE network of
:math:`z` and the encoder context :math:`x`) on a base
:class:`~vaekit.distributions.DiagonalGaussian` :math:`q_0(z_0|x)`, alternating the variable
order between steps. Each step is used in the direction that *samples in one pass*:

.. math:: z'_i = \tau\big(z_i;\ \theta_i(z_{<i}, x)\big), \qquad
          \log\left|\det\frac{\partial z'}{\partial z}\right| = \sum_i \log \tau'\big(z_i; \theta_i\big),

all :math:`\theta_i` coming from one network evaluation on the known :math:`z`, which is
the inverse autoregressive flow of Kingma et al. (2016). Scoring an arbitrary point needs
the inverse, which is autoregressive in the other direction (``d`` network passes per step,
zuko's ``.inv``), so ``log_prob`` works for any point but costs ``d`` times more than
sampling.

:class:`IAF` uses zuko's monotonic affine :math:`\tau(z; m, a) = z\,e^{a} + m` (log-scale
soft-clamped); :class:`NeuralSplineFlow` a monotonic rational-quadratic spline with ``bins``
bins on :math:`[-B, B]` (Durkan et al. 2019), identity outside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn
from zuko.flows.autoregressive import MaskedAutoregressiveTransform
from zuko.transforms import MonotonicRQSTransform

from ..._checks import check_int
from ..._layers import ActivationName, activation_class, check_hidden
from ._base import FlowPosterior

__all__ = ["IAF", "NeuralSplineFlow"]


class _MaskedAutoregressivePosterior(FlowPosterior):
    """Shared body of :class:`IAF` and :class:`NeuralSplineFlow`: the steps are zuko's masked transforms."""

    invertible = True

    def _build(self, hidden: Sequence[int], activation: str, **kwargs: Any) -> None:
        hidden, act = check_hidden(hidden), activation_class(activation)
        d = self.latent_features
        orders = [torch.arange(d), torch.arange(d).flip(0)]
        self.transforms = nn.ModuleList(
            MaskedAutoregressiveTransform(features=d, context=self.context_features, order=orders[t % 2],
                                          hidden_features=hidden, activation=act, **kwargs)
            for t in range(self.n_flows))


class IAF(_MaskedAutoregressivePosterior):
    r"""Inverse autoregressive flow posterior (Kingma et al. 2016), conditioned on the context.

    Samples and scores its samples in one pass per step; ``log_prob`` of an arbitrary point
    inverts each step autoregressively (see the module docstring).

    Parameters
    ----------
    context_features : int
        Width ``C`` of the encoder features.
    latent_features : int
        Dimension ``d`` of ``z``.
    n_flows : int
        Number of autoregressive steps (>= 1).
    hidden : sequence of int
        Hidden sizes of each MADE network.
    activation : str
        Hidden activation, one of :data:`vaekit.nn.mlp.ACTIVATIONS`.

    Examples
    --------
    >>> q = IAF(8, 3, n_flows=2, hidden=[32])(torch.randn(5, 8))
    >>> z, log_q = q.rsample_and_log_prob((4,))
    >>> z.shape, torch.allclose(q.log_prob(z), log_q, atol=1e-4)
    (torch.Size([4, 5, 3]), True)
    """

    def __init__(self, context_features: int, latent_features: int, n_flows: int = 4, hidden: Sequence[int] = (64, 64),
                 activation: ActivationName = "relu") -> None:
        super().__init__(context_features, latent_features, n_flows)
        self._build(hidden, activation)


class NeuralSplineFlow(_MaskedAutoregressivePosterior):
    r"""Autoregressive rational-quadratic neural spline flow posterior (Durkan et al. 2019).

    Same structure as :class:`IAF` with a monotonic rational-quadratic spline in place of
    the affine map (see the module docstring).

    Parameters
    ----------
    context_features : int
        Width ``C`` of the encoder features.
    latent_features : int
        Dimension ``d`` of ``z``.
    n_flows : int
        Number of autoregressive steps (>= 1).
    hidden : sequence of int
        Hidden sizes of each MADE network.
    bins : int
        Spline bins ``K`` (>= 2).
    bound : float
        The spline acts on :math:`[-B, B]` and is the identity outside (> 0).
    activation : str
        Hidden activation, one of :data:`vaekit.nn.mlp.ACTIVATIONS`.

    Examples
    --------
    >>> q = NeuralSplineFlow(8, 3, n_flows=2, hidden=[32], bins=6)(torch.randn(5, 8))
    >>> z, log_q = q.rsample_and_log_prob((4,))
    >>> z.shape, torch.allclose(q.log_prob(z), log_q, atol=1e-4)
    (torch.Size([4, 5, 3]), True)
    """

    def __init__(self, context_features: int, latent_features: int, n_flows: int = 4, hidden: Sequence[int] = (64, 64),
                 bins: int = 8, bound: float = 5.0,
                 activation: ActivationName = "relu") -> None:
        super().__init__(context_features, latent_features, n_flows)
        self.bins = check_int("bins", bins, 2)
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not bound > 0:
            raise ValueError(f"bound must be a number > 0, got {bound!r}")
        self.bound = float(bound)
        self._build(hidden, activation, univariate=partial(MonotonicRQSTransform, bound=self.bound),
                    shapes=[(self.bins,), (self.bins,), (self.bins - 1,)])
