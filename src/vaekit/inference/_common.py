"""Helpers shared by the estimators of this package (private to :mod:`vaekit.inference`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..models.base import LatentVariableModel

__all__ = ["DEFAULT_BUDGET", "finite_or_none", "resolve_device"]

#: Default work budget, in floats of the size of ``x``: per call the model sees at most
#: ``budget // prod(data_shape)`` (sample, example) pairs. Small chunks stay in the CPU
#: caches; accelerators want large launches.
DEFAULT_BUDGET = {"cpu": 2**22, "accelerator": 2**28}


def resolve_device(model: LatentVariableModel, x: Tensor, device: str | torch.device | None) -> torch.device:
    """The device to compute on: ``device``, else the model's, else the data's.

    >>> resolve_device(torch.nn.Linear(1, 1), torch.zeros(1), None)
    device(type='cpu')
    """
    own = next((t.device for t in (*model.parameters(), *model.buffers())), None)
    if device is None:
        return own if own is not None else x.device
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r}") from err
    if own is not None and (own.type != device.type or device.index not in (None, own.index)):
        raise ValueError(f"device={str(device)!r} but the model's parameters are on {str(own)!r}; "
                         f"move the model first (model.to({str(device)!r})) or leave device=None")
    return own if own is not None else device


def finite_or_none(v: float) -> float | None:
    """``v`` if it is finite, else None (what JSON results store for NaN/inf).

    >>> finite_or_none(1.5), finite_or_none(float("-inf"))
    (1.5, None)
    """
    return v if math.isfinite(v) else None
