r"""Gumbel-Softmax / Concrete distribution (Jang et al. 2017; Maddison et al. 2017) and its log-space form.

A sample is :math:`z = \mathrm{softmax}((\log\pi + g)/\tau)` with :math:`g_k` i.i.d. standard
Gumbel. :class:`ExpConcrete` is the distribution of :math:`y = \log z`, drawn and scored
entirely in log space,

.. math:: \log p(y) = \log\Gamma(K) + (K-1)\log\tau
          + \sum_k (\log\pi_k - \tau y_k) - K\,\mathrm{logsumexp}_k(\log\pi_k - \tau y_k),

which stays finite at small :math:`\tau` where :math:`z` itself underflows to exact zeros.
:class:`GumbelSoftmax` is the distribution of :math:`z = \exp(y)`, with
:math:`\log p(z) = \log p_{\exp}(\log z) - \sum_k \log z_k` (the convention of
:class:`torch.distributions.RelaxedOneHotCategorical`, which it agrees with), and an
optional straight-through one-hot sample.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Size, Tensor
from torch.distributions import Distribution, constraints

from ._simplex import check_temperature, event_temperature, expand_temperature

__all__ = ["ExpConcrete", "GumbelSoftmax"]


def _check_logits(logits: Any) -> Tensor:
    if not isinstance(logits, Tensor) or not torch.is_floating_point(logits):
        raise TypeError(f"logits must be a floating-point tensor of shape (..., K), got {type(logits).__name__}")
    if logits.dim() < 1 or logits.shape[-1] < 2:
        raise ValueError(f"logits must have shape (..., K) with K >= 2 categories, got shape {tuple(logits.shape)}")
    return logits


class ExpConcrete(Distribution):
    r"""Log-space Concrete distribution: samples are points :math:`y` with :math:`\sum_k e^{y_k} = 1`.

    Parameters
    ----------
    logits : Tensor of shape (*batch, K)
        Unnormalised log-probabilities :math:`\log\pi`, ``K >= 2``.
    temperature : float or Tensor of shape (*batch)
        :math:`\tau > 0`.

    Examples
    --------
    >>> q = ExpConcrete(torch.zeros(3, 4), 0.1)
    >>> y = q.rsample((2,))
    >>> y.shape, torch.allclose(y.exp().sum(-1), torch.ones(2, 3))
    (torch.Size([2, 3, 4]), True)
    """

    arg_constraints: dict[str, Any] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, logits: Tensor, temperature: float | Tensor) -> None:
        self.logits = _check_logits(logits).log_softmax(-1)
        self.temperature = check_temperature(temperature)
        super().__init__(self.logits.shape[:-1], self.logits.shape[-1:], validate_args=False)

    @property
    def probs(self) -> Tensor:
        """:math:`\\pi` of shape (*batch, K)."""
        return self.logits.exp()

    def rsample(self, sample_shape: Size | tuple[int, ...] = Size(), noise_scale: float = 1.0) -> Tensor:
        """Log-simplex points of shape (*sample_shape, *batch, K).

        ``noise_scale`` multiplies the Gumbel noise (1: a draw of this distribution; 0: the
        noiseless point ``log_softmax(logits / tau)``, drawing no random numbers).
        """
        scores = self.logits.expand(Size(sample_shape) + self.logits.shape)
        if noise_scale:
            finfo = torch.finfo(self.logits.dtype)
            u = torch.rand(scores.shape, dtype=scores.dtype, device=scores.device).clamp(finfo.tiny, 1 - finfo.eps)
            gumbel = (-u.log()).log()
            scores = scores - (gumbel if noise_scale == 1 else noise_scale * gumbel)
        scores = scores / event_temperature(self.temperature)
        return scores - scores.logsumexp(-1, keepdim=True)

    def log_prob(self, value: Tensor) -> Tensor:
        """Log-density of log-simplex points ``value`` (..., K); shape (...)."""
        k = self.logits.shape[-1]
        tau = torch.as_tensor(self.temperature, dtype=value.dtype, device=value.device)
        score = self.logits - value * event_temperature(tau)
        log_scale = math.lgamma(k) + (k - 1) * tau.log()
        return score.sum(-1) - k * score.logsumexp(-1) + log_scale

    def rsample_and_log_prob(self, sample_shape: Size | tuple[int, ...] = Size()) -> tuple[Tensor, Tensor]:
        y = self.rsample(sample_shape)
        return y, self.log_prob(y)

    def implied_probs(self, num_samples: int = 1000, generator: torch.Generator | None = None) -> Tensor:
        """Distribution of :math:`\\arg\\max_k y_k`: exactly :math:`\\pi` (Gumbel-max), shape (*batch, K)."""
        return self.probs

    def expand(self, batch_shape: Size | tuple[int, ...], _instance: Any = None) -> ExpConcrete:
        batch_shape = Size(batch_shape)
        return type(self)(self.logits.expand(batch_shape + self.event_shape),
                          expand_temperature(self.temperature, batch_shape))


class GumbelSoftmax(Distribution):
    r"""Gumbel-Softmax (Concrete) distribution on the simplex, optionally straight-through.

    Parameters
    ----------
    logits : Tensor of shape (*batch, K)
        Unnormalised log-probabilities :math:`\log\pi`, ``K >= 2``.
    temperature : float or Tensor of shape (*batch)
        :math:`\tau > 0`.
    hard : bool
        When true, :meth:`rsample` returns the one-hot vector at the argmax of the soft
        sample in the forward pass and the gradient of the soft sample in the backward pass
        (straight-through). Densities are those of the soft sample: score a hard sample with
        :meth:`rsample_and_log_prob`, not :meth:`log_prob`.

    Examples
    --------
    >>> q = GumbelSoftmax(torch.zeros(3, 4), 0.5)
    >>> z, log_q = q.rsample_and_log_prob((2,))
    >>> z.shape, log_q.shape, torch.allclose(log_q, q.log_prob(z), atol=1e-4)
    (torch.Size([2, 3, 4]), torch.Size([2, 3]), True)
    >>> GumbelSoftmax(torch.zeros(4), 0.5, hard=True).rsample().sum()
    tensor(1.)
    """

    arg_constraints: dict[str, Any] = {}
    support = constraints.simplex
    has_rsample = True

    def __init__(self, logits: Tensor, temperature: float | Tensor, hard: bool = False) -> None:
        if not isinstance(hard, bool):
            raise TypeError(f"hard must be a bool, got {hard!r} of type {type(hard).__name__}")
        self.exp_concrete = ExpConcrete(logits, temperature)
        self.hard = hard
        super().__init__(self.exp_concrete.batch_shape, self.exp_concrete.event_shape, validate_args=False)

    @property
    def logits(self) -> Tensor:
        """Normalised :math:`\\log\\pi` of shape (*batch, K)."""
        return self.exp_concrete.logits

    @property
    def probs(self) -> Tensor:
        """:math:`\\pi` of shape (*batch, K)."""
        return self.exp_concrete.probs

    @property
    def temperature(self) -> float | Tensor:
        return self.exp_concrete.temperature

    def _finish(self, y: Tensor) -> Tensor:
        z = y.exp()
        if self.hard:
            one_hot = F.one_hot(z.argmax(-1), z.shape[-1]).to(z.dtype)
            z = one_hot + (z - z.detach())  # exactly one-hot forward, gradient of the soft sample
        return z

    def rsample(self, sample_shape: Size | tuple[int, ...] = Size()) -> Tensor:
        """Simplex points (one-hot if ``hard``) of shape (*sample_shape, *batch, K)."""
        return self._finish(self.exp_concrete.rsample(sample_shape))

    def rsample_and_log_prob(self, sample_shape: Size | tuple[int, ...] = Size()) -> tuple[Tensor, Tensor]:
        """Sample and the log-density of its soft version, computed in log space (stable at small tau)."""
        y = self.exp_concrete.rsample(sample_shape)
        return self._finish(y), self.exp_concrete.log_prob(y) - y.sum(-1)

    def log_prob(self, value: Tensor) -> Tensor:
        """Log-density of simplex points ``value`` (..., K); exact zeros are clamped to the smallest normal float."""
        log_value = value.clamp_min(torch.finfo(value.dtype).tiny).log()
        return self.exp_concrete.log_prob(log_value) - log_value.sum(-1)

    def implied_probs(self, num_samples: int = 1000, generator: torch.Generator | None = None) -> Tensor:
        """Distribution of the argmax of a sample: exactly :math:`\\pi = \\mathrm{softmax}(\\text{logits})`."""
        return self.probs

    def expand(self, batch_shape: Size | tuple[int, ...], _instance: Any = None) -> GumbelSoftmax:
        e = self.exp_concrete.expand(batch_shape)
        return type(self)(e.logits, e.temperature, self.hard)
