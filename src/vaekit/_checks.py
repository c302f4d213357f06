"""Argument checks shared by every layer: errors name the argument, the value and what is accepted.

Every argument error vaekit raises from a check is one :class:`InvalidArgumentError`: a
``ValueError`` *and* a ``TypeError`` (the rule of scikit-learn's ``InvalidParameterError``),
so ``except ValueError`` and ``except TypeError`` both catch it, whether the value had the
wrong type (``2.5`` for an int) or the wrong range (``0`` for a count >= 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

__all__ = ["InvalidArgumentError", "check_choice", "check_float", "check_int"]


class InvalidArgumentError(ValueError, TypeError):
    """An argument with a wrong type or value; the message names the argument, the value and what is accepted.

    >>> issubclass(InvalidArgumentError, ValueError) and issubclass(InvalidArgumentError, TypeError)
    True
    """


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools and floats are rejected, not truncated).

    >>> check_int("k", 3)
    3
    >>> check_int("k", 2.5)
    Traceback (most recent call last):
    ...
    vaekit._checks.InvalidArgumentError: k must be an int >= 1, got 2.5 of type float
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise InvalidArgumentError(f"{name} must be an int >= {minimum}, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise InvalidArgumentError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within [low, high] (``*_open`` excludes that end).

    >>> check_float("lr", 1e-3, 0, low_open=True)
    0.001
    >>> check_float("tol", float("nan"), 0)
    Traceback (most recent call last):
    ...
    vaekit._checks.InvalidArgumentError: tol must be a finite number >= 0, got nan
    """
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    what = f"{name} must be a finite number{' ' + ' and '.join(bounds) if bounds else ''}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidArgumentError(f"{what}, got {value!r} of type {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or (low is not None and (v <= low if low_open else v < low)) or (
            high is not None and (v >= high if high_open else v > high)):
        raise InvalidArgumentError(f"{what}, got {value!r}")
    return v


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``.

    >>> check_choice("schedule", "linear", ("linear", "sigmoidal"))
    'linear'
    >>> check_choice("schedule", "cosine", ("linear", "sigmoidal"))
    Traceback (most recent call last):
    ...
    vaekit._checks.InvalidArgumentError: schedule must be one of ['linear', 'sigmoidal'], got 'cosine'
    """
    try:
        if value in choices:
            return value
    except (TypeError, ValueError, RuntimeError):  # a value that cannot be compared (an array, a tensor)
        pass
    raise InvalidArgumentError(f"{name} must be one of {list(choices)}, got {value!r}")
