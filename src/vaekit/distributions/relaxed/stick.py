r"""IGR-SB: the Invertible Gaussian Reparameterization with a logistic stick-breaking map, and its truncation.

With :math:`\lambda\sim\mathcal N(\mu, \mathrm{diag}\,\sigma^2)` in :math:`\mathbb R^{M-1}`, the
proportions :math:`\kappa_k = \sigma(\lambda_k/\tau)` break a unit stick:
:math:`\psi_k = \kappa_k\prod_{j<k}(1-\kappa_j)` for :math:`k<M`, and category :math:`M` takes
what is left. As :math:`\tau\to 0` every :math:`\kappa_k` goes to 0 or 1, so the sample goes to
the vertex of the first :math:`k` with :math:`\lambda_k > 0`: a distribution over
:math:`\{1, 2, \dots\}` that needs as many categories as the stick takes to be used up.

**Truncation** (sec. 3 of the paper): the categories a sample needs are those up to the first
:math:`n` whose cumulative mass :math:`\sum_{k\le n}\psi_k` reaches ``threshold``; with
``truncate=True`` the stick left at step :math:`n` (at most ``1 - threshold`` beyond
:math:`\psi_n`) is merged into category :math:`n` (equivalently :math:`\kappa_n := 1`) and the
later categories are zero. ``max_categories`` bounds :math:`n`; a sample that does not reach
the threshold within it puts the remaining stick into the last category, and the distribution
reports it (:attr:`IGRStickBreaking.truncated`): then ``max_categories`` is too small (the
paper's advice: raise it until the threshold is met). The original code chooses one :math:`n`
per batch (a 70% quantile of the per-sample counts); here each sample has its own.

The temperature sits inside the sigmoid, as in the design brief of this package; the original
TensorFlow code instead applies softmax++ with temperature to the stick-breaking output.
Both reach the same vertices as :math:`\tau\to 0`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Size, Tensor

from ..._checks import check_float, check_int
from ._simplex import expand_temperature, inverse_stick_breaking, log_stick_breaking, stick_breaking_log_det
from .igr import GaussianRelaxation, check_loc_scale

__all__ = ["IGRStickBreaking"]


class IGRStickBreaking(GaussianRelaxation):
    r"""IGR-SB: logistic stick-breaking of a diagonal Gaussian, optionally truncated.

    Parameters
    ----------
    loc, scale : Tensor of shape (*batch, M-1)
        :math:`\mu` and :math:`\sigma > 0` of the Gaussian; ``M >= 2``.
    temperature : float or Tensor of shape (*batch)
        :math:`\tau > 0`.
    threshold : float
        Cumulative mass in (0, 1) after which the remaining categories are merged.
    max_categories : int, optional
        Most categories a sample may use, ``2 <= max_categories <= M`` (default ``M``); only the
        first ``max_categories - 1`` Gaussian coordinates are used.
    truncate : bool
        ``True``: merge/zero the categories past the threshold. ``False``: the untruncated
        finite stick-breaking distribution over ``max_categories`` categories (invertible,
        with :meth:`log_prob`).

    Attributes
    ----------
    last_n_used : Tensor of shape (*sample_shape, *batch) or None
        Categories each sample of the last :meth:`rsample` needed to reach ``threshold``
        (the categories it kept when ``truncate``).

    Examples
    --------
    >>> q = IGRStickBreaking(torch.zeros(2, 9), torch.ones(2, 9), temperature=0.1, max_categories=6)
    >>> z = q.rsample((4,))
    >>> z.shape, bool((q.last_n_used <= 6).all()), torch.allclose(z.sum(-1), torch.ones(4, 2))
    (torch.Size([4, 2, 6]), True, True)
    """

    def __init__(self, loc: Tensor, scale: Tensor, temperature: float | Tensor, threshold: float = 0.99,
                 max_categories: int | None = None, truncate: bool = True) -> None:
        loc, scale = check_loc_scale(loc, scale)
        m = loc.shape[-1] + 1
        self.threshold = check_float("threshold", threshold, 0, 1, low_open=True, high_open=True)
        self.max_categories = m if max_categories is None else check_int("max_categories", max_categories, 2)
        if self.max_categories > m:
            raise ValueError(f"max_categories must be <= M = {m} (loc has M-1 = {m - 1} coordinates), got "
                             f"{self.max_categories}")
        if not isinstance(truncate, bool):
            raise TypeError(f"truncate must be a bool, got {truncate!r} of type {type(truncate).__name__}")
        self.truncate = truncate
        self.last_n_used: Tensor | None = None
        self._hit_max: Tensor | None = None
        d = self.max_categories - 1
        super().__init__(loc[..., :d], scale[..., :d], temperature, self.max_categories)

    @property
    def truncated(self) -> bool:
        """Whether some sample of the last :meth:`rsample` hit ``max_categories`` before reaching ``threshold``."""
        return bool(self._hit_max.any()) if self._hit_max is not None else False

    def _log_simplex(self, lam: Tensor) -> Tensor:
        return log_stick_breaking(lam, self._tau())[0]

    def _log_det(self, lam: Tensor, log_psi: Tensor) -> Tensor:
        return stick_breaking_log_det(lam, self._tau())

    def _output(self, log_psi: Tensor, record: bool = True) -> Tensor:
        psi = log_psi.exp()
        m = psi.shape[-1]
        reached = psi[..., :-1].cumsum(-1) >= self.threshold  # (..., M-1)
        hit_max = ~reached.any(-1)
        n_used = torch.where(hit_max, m, reached.int().argmax(-1) + 1)
        if record:
            self.last_n_used, self._hit_max = n_used.detach(), hit_max.detach()
        if not self.truncate:
            return psi
        tail = psi.flip(-1).cumsum(-1).flip(-1)  # mass of categories k, k+1, ..., M: what merging puts at k
        idx = torch.arange(m, device=psi.device)
        last = (n_used - 1).unsqueeze(-1)
        return torch.where(idx < last, psi, torch.where(idx == last, tail, torch.zeros_like(psi)))

    def log_prob(self, value: Tensor) -> Tensor:
        """Log-density of simplex points ``value`` (..., M) of the untruncated distribution (``truncate=False``)."""
        if self.truncate:
            raise NotImplementedError(
                "a truncated IGR-SB has no density on the simplex (the merged categories are exact zeros); use "
                "q.rsample_and_log_prob(sample_shape), which scores the untruncated point, or truncate=False")
        lam = inverse_stick_breaking(value, self._tau())
        return self.base.log_prob(lam) - stick_breaking_log_det(lam, self._tau())

    def expand(self, batch_shape: Size | tuple[int, ...], _instance: Any = None) -> IGRStickBreaking:
        shape = Size(batch_shape) + self.loc.shape[-1:]
        return IGRStickBreaking(self.loc.expand(shape), self.scale.expand(shape),
                                expand_temperature(self.temperature, batch_shape), self.threshold,
                                self.max_categories, self.truncate)
