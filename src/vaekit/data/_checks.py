"""Input checks shared by every data module (private).

Every argument check raises :class:`vaekit.InvalidArgumentError` (both a ``ValueError`` and a
``TypeError``) naming the argument, the value seen and what is accepted, and none of them
changes any state. ``check_int`` is the one of :mod:`vaekit._checks`.
"""

from __future__ import annotations

import os

import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import InvalidArgumentError, check_int

__all__ = [
    "BINARIZE_MODES",
    "as_data_tensor",
    "as_label_tensor",
    "check_binarize",
    "check_fraction",
    "check_int",
]

BINARIZE_MODES = ("none", "dynamic", "threshold")


def check_binarize(binarize: Any) -> str:
    """Return ``binarize`` if it is one of :data:`BINARIZE_MODES`, else raise ``ValueError``."""
    if not isinstance(binarize, str) or binarize not in BINARIZE_MODES:
        raise InvalidArgumentError(f"binarize={binarize!r} is not accepted; use one of {list(BINARIZE_MODES)}")
    return binarize


def check_fraction(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a real number in ``[0, 1)``, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(f"{name} must be a float in [0, 1); got {value!r} of type {type(value).__name__}")
    if not 0.0 <= float(value) < 1.0:
        raise InvalidArgumentError(f"{name}={value!r} is outside [0, 1); use e.g. {name}=0.1 (0 means no split)")
    return float(value)


def _to_numpy(name: str, value: Any) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu()
        return (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    if isinstance(value, np.ndarray):
        return value
    raise TypeError(f"{name} must be a numpy array or a torch Tensor; got {type(value).__name__}")


def as_data_tensor(name: str, value: Any, *, unit_interval: bool = False) -> Tensor:
    """Check an array of examples and return it as a float32 tensor.

    Parameters
    ----------
    name : str
        Name used in error messages (the argument, or the file and key it came from).
    value : ndarray or Tensor of shape (n, *data_shape)
        Numeric (bool, integer or floating) values; at least 2 dimensions, at least one
        example, every value finite after conversion to float32.
    unit_interval : bool
        Also require every value to lie in ``[0, 1]`` (needed to binarize).

    Returns
    -------
    Tensor of shape (n, *data_shape), float32, on the CPU
    """
    array = _to_numpy(name, value)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold numbers (bool, int or float); got dtype {array.dtype}. "
            "Convert strings or objects to a numeric array first."
        )
    if array.ndim < 2:
        raise ValueError(
            f"{name} must have shape (n_examples, *data_shape) with at least 2 dimensions; got shape "
            f"{tuple(array.shape)} (use x[:, None] for one feature per example)"
        )
    if array.shape[0] == 0 or array.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(array.shape)}); it needs at least one example")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is reported below
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name} contains {bad} non-finite values (NaN or inf, possibly after conversion to float32)")
    if unit_interval:
        lo, hi = float(tensor.min()), float(tensor.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name} must lie in [0, 1] to be binarized; its values span [{lo:g}, {hi:g}]. "
                "Rescale it first or use binarize='none'."
            )
    return tensor


def as_label_tensor(name: str, value: Any, n: int) -> Tensor:
    """Check integer class labels and return them as an int64 tensor.

    Parameters
    ----------
    name : str
        Name used in error messages.
    value : ndarray or Tensor of shape (n,)
        Integer (or integral floating) labels, one per example.
    n : int
        Number of examples the labels must match.

    Returns
    -------
    Tensor of shape (n,), int64
    """
    array = _to_numpy(name, value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold integer class labels; got dtype {array.dtype}")
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), one label per example; got shape {tuple(array.shape)}")
    if array.dtype.kind == "f" and not (np.isfinite(array).all() and (array == np.round(array)).all()):
        raise ValueError(f"{name} must hold integer class labels; got non-integer floating values")
    return torch.from_numpy(np.ascontiguousarray(array).astype(np.int64))


def check_sha256_arg(sha256: object) -> str | None:
    """``sha256`` argument of a file data module: None or 64 lowercase hex digits."""
    if sha256 is None:
        return None
    if not isinstance(sha256, str) or len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise InvalidArgumentError(f"sha256 must be None or the 64 lowercase hex digits of a SHA-256; got {sha256!r}")
    return sha256


def check_file_sha256(path: str | os.PathLike[str], sha256: str | None) -> None:
    """Raise a ValueError naming ``path`` when its SHA-256 is not ``sha256`` (nothing to check for None)."""
    if sha256 is None:
        return
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise ValueError(f"data file {os.fspath(path)!r} is corrupt or was replaced: its SHA-256 is "
                         f"{digest.hexdigest()}, but the config records sha256={sha256}")

