"""Checkpoint files: atomic writes, safe loading, and random-number-generator states.

A vaekit checkpoint (``*.ckpt``) is a dict of plain containers, tensors, numbers and
strings, so that ``torch.load(path, weights_only=True)`` reads it without unpickling any
code. Inference weights are stored beside it as safetensors.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["CHECKPOINT_FORMAT", "REQUIRED_KEYS", "save_checkpoint", "load_checkpoint", "save_weights",
           "load_weights", "get_rng_state", "set_rng_state", "to_plain"]

#: Value of the ``"format"`` key of every vaekit checkpoint.
CHECKPOINT_FORMAT = "vaekit-checkpoint"
#: Keys every vaekit checkpoint holds.
REQUIRED_KEYS = ("format", "format_version", "vaekit_version", "model", "optimizer", "scheduler", "ema", "loop",
                 "rng", "config")


def _atomic(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    A crash or an exception inside ``write`` leaves ``path`` as it was (the temporary file
    is removed).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same directory + ``os.replace``).

    Parameters
    ----------
    path : str or os.PathLike
        Destination, e.g. ``run.last_checkpoint``.
    state : dict
        Plain containers, tensors, numbers and strings only.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.ckpt")
    >>> _ = save_checkpoint(p, {"a": torch.ones(2)})
    >>> torch.load(p, weights_only=True)
    {'a': tensor([1., 1.])}
    """
    return _atomic(path, lambda tmp: torch.save(dict(state), tmp))


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a vaekit checkpoint, with ``weights_only=True`` (no code is unpickled).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.ckpt`` file written by :class:`vaekit.training.Trainer`.
    map_location : str or torch.device, optional
        Where to put the tensors (default CPU).

    Returns
    -------
    dict
        With the keys :data:`REQUIRED_KEYS`.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is truncated or corrupt, or is not a vaekit checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} is not a file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # zip errors, unpickling errors, EOF: all mean "not readable"
        raise ValueError(f"checkpoint {str(path)!r} is truncated or corrupt and cannot be read "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a vaekit checkpoint (no 'format': {CHECKPOINT_FORMAT!r} entry)")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"{str(path)!r} is not a complete vaekit checkpoint: missing keys {missing}")
    return state


def save_weights(path: str | os.PathLike[str], state_dict: Mapping[str, Tensor]) -> Path:
    """Write a model ``state_dict`` as safetensors, atomically.

    Tensors are copied to contiguous CPU tensors first (so tied weights are stored once
    per name, and loading them back with ``load_state_dict`` restores the tie).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> _ = save_weights(p, torch.nn.Linear(2, 1).state_dict())
    >>> sorted(load_weights(p))
    ['bias', 'weight']
    """
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state_dict.items()}
    return _atomic(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt", "producer": "vaekit"}))


def load_weights(path: str | os.PathLike[str], device: str = "cpu") -> dict[str, Tensor]:
    """Read a safetensors weight file written by :func:`save_weights`.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not a readable safetensors file.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    try:
        return load_file(str(path), device=device)
    except Exception as e:
        raise ValueError(f"weights file {str(path)!r} is truncated or corrupt ({type(e).__name__}: {e})") from e


# ---------------------------------------------------------------------- RNG states
def get_rng_state() -> dict[str, Any]:
    """States of torch (CPU and CUDA), numpy and python ``random``, as plain tensors and numbers.

    Examples
    --------
    >>> s = get_rng_state(); a = torch.rand(1); set_rng_state(s); bool(torch.rand(1) == a)
    True
    """
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states returned by :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


# ---------------------------------------------------------------------- plain values
def to_plain(obj: Any) -> Any:
    """Convert a config to plain containers (dict, list, str, int, float, bool, None).

    jsonargparse ``Namespace`` objects become dicts, paths become strings, tuples become
    lists; anything else that is not plain becomes its ``str``.

    Examples
    --------
    >>> from pathlib import Path
    >>> to_plain({"a": (1, Path("x")), "b": {"c": None}})
    {'a': [1, 'x'], 'b': {'c': None}}
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "as_dict") and callable(obj.as_dict):  # jsonargparse Namespace
        obj = obj.as_dict()
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def shape_mismatches(model: nn.Module, state: Mapping[str, Tensor], limit: int = 5) -> list[str]:
    """Up to ``limit`` entries whose name or shape differ between ``model.state_dict()`` and ``state``.

    >>> shape_mismatches(nn.Linear(2, 3), {"weight": torch.zeros(3, 2), "bias": torch.zeros(4)})
    ['bias: model (3,) vs saved (4,)']
    """
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in state.items()}
    keys = sorted(k for k in have.keys() | saved.keys() if have.get(k) != saved.get(k))[:limit]
    return [f"{k}: model {have.get(k)} vs saved {saved.get(k)}" for k in keys]
