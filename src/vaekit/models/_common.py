"""Helpers shared by the model modules of this package (private to :mod:`vaekit.models`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from .._checks import InvalidArgumentError
from .._recording import to_config

__all__ = ["check_data_shape", "log_categorical", "plain_arg", "short_arg"]


def log_categorical(onehot: Tensor, log_probs: Tensor) -> Tensor:
    """``sum_n log probs[n, c_n]`` for one-hot ``c`` of shape (..., N, K); shape (...).

    >>> import torch
    >>> log_categorical(torch.tensor([[0.0, 1.0]]), torch.tensor([[-2.0, -0.5]]))
    tensor(-0.5000)
    """
    return (onehot * log_probs).sum((-2, -1))


def check_data_shape(data_shape: Sequence[int]) -> tuple[int, ...]:
    """``data_shape`` as a tuple of positive ints (the shape of one example).

    >>> check_data_shape([1, 28, 28])
    (1, 28, 28)
    """
    shape = tuple(int(d) for d in data_shape)
    if not shape or any(d < 1 for d in shape):
        raise InvalidArgumentError(f"data_shape must be a non-empty list of positive ints, got {list(data_shape)}")
    return shape


def plain_arg(value: Any) -> Any:
    """``value`` as YAML would hold it (tuples as lists), for comparing constructor arguments.

    >>> plain_arg((2, 3))
    [2, 3]
    """
    try:
        return to_config(value)
    except TypeError:
        return value


def short_arg(value: Any, limit: int = 80) -> str:
    """``repr`` of :func:`plain_arg` of ``value``, cut to ``limit`` characters (for error messages)."""
    text = repr(plain_arg(value))
    return text if len(text) <= limit else text[:limit - 3] + "..."
