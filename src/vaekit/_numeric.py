"""Numerical helpers used by every layer (the one ``logmeanexp``; public as :func:`vaekit.objectives.logmeanexp`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["logmeanexp"]


def logmeanexp(x: Tensor, dim: int = 0) -> Tensor:
    """``log(mean(exp(x)))`` along ``dim``, computed stably.

    >>> logmeanexp(torch.log(torch.tensor([1.0, 3.0])))
    tensor(0.6931)
    """
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])
