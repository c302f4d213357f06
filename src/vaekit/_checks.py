"""Argument checks shared by every layer: errors name the argument, the value and what is accepted."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

__all__ = ["check_int", "check_float"]


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools and floats are rejected, not truncated).

    >>> check_int("k", 3)
    3
    >>> check_int("k", 2.5)
    Traceback (most recent call last):
    ...
    TypeError: k must be an int >= 1, got 2.5 of type float
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within [low, high] (``*_open`` excludes that end).

    >>> check_float("lr", 1e-3, 0, low_open=True)
    0.001
    >>> check_float("tol", float("nan"), 0)
    Traceback (most recent call last):
    ...
    ValueError: tol must be a finite number >= 0, got nan
    """
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    what = f"{name} must be a finite number{' ' + ' and '.join(bounds) if bounds else ''}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{what}, got {value!r} of type {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or (low is not None and (v <= low if low_open else v < low)) or (
            high is not None and (v >= high if high_open else v > high)):
        raise ValueError(f"{what}, got {value!r}")
    return v
