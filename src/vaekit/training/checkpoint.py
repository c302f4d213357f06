"""Checkpoint files: atomic writes, safe loading, and random-number-generator states.

A vaekit checkpoint (``*.ckpt``) is a dict of plain containers, tensors, numbers and
strings, so that ``torch.load(path, weights_only=True)`` reads it without unpickling any
code. Inference weights are stored beside it as safetensors.

Integrity: with ``manifest=True`` (what the trainer uses) the SHA-256 of each file is
recorded in ``manifest.json`` beside it, and :func:`load_checkpoint` / :func:`load_weights`
check every file that the manifest of its folder lists before reading it. The manifest is
updated in two steps around the rename, so that it describes the file on disk at every
moment: the new hash is added as ``pending`` beside the hash of the file on disk before the
new file replaces it, and becomes the only one afterwards. When a crash cut the previous
write between its rename and its confirmation, the next write hashes the file to learn
which of the two it holds, and keeps that one beside its own ``pending``; so a file that
one of these writes left intact always verifies, whatever succession of crashes came
before, and a damaged one never does. Files the manifest does not list (runs written
before manifests existed) are read without a check.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .rundir import atomic_write

__all__ = ["CHECKPOINT_FORMAT", "REQUIRED_KEYS", "MANIFEST_NAME", "CorruptFileError", "save_checkpoint",
           "load_checkpoint", "save_weights", "load_weights", "verify_file", "get_rng_state", "set_rng_state",
           "to_plain"]

log = logging.getLogger("vaekit")

#: Value of the ``"format"`` key of every vaekit checkpoint.
CHECKPOINT_FORMAT = "vaekit-checkpoint"
#: Keys every vaekit checkpoint holds.
REQUIRED_KEYS = ("format", "format_version", "vaekit_version", "model", "optimizer", "scheduler", "ema", "loop",
                 "rng", "config")


#: Name of the file, beside the checkpoints, that records their SHA-256.
MANIFEST_NAME = "manifest.json"
_MANIFEST_FORMAT = "vaekit-manifest"


class CorruptFileError(ValueError):
    """A checkpoint or weights file that cannot be read, or whose SHA-256 differs from the one
    recorded when it was written. ``path`` is the file."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        super().__init__(message)
        self.path = Path(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, str(self))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """The ``files`` entries of ``folder/manifest.json`` ({} when there is none; a damaged one is
    reported and counts as none)."""
    path = folder / MANIFEST_NAME
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning(f"{path} is damaged and is ignored ({type(e).__name__}: {e}); the files it listed are read "
                    f"without an integrity check, and the next checkpoint starts a new manifest")
        return {}
    files = data.get("files") if isinstance(data, dict) and data.get("format") == _MANIFEST_FORMAT else None
    if not isinstance(files, dict):
        log.warning(f"{path} is not a vaekit manifest and is ignored; the files beside it are read without an "
                    f"integrity check")
        return {}
    return {k: v for k, v in files.items() if isinstance(v, dict)}


def _write_manifest(folder: Path, files: Mapping[str, Any]) -> None:
    text = json.dumps({"format": _MANIFEST_FORMAT, "version": 1, "algorithm": "sha256", "files": dict(files)},
                      indent=1, sort_keys=True) + "\n"
    data = text.encode("utf-8")
    atomic_write(folder / MANIFEST_NAME, lambda f: f.write(data))


def verify_file(path: str | os.PathLike[str], what: str = "file") -> bool:
    """Check ``path`` against the SHA-256 that ``manifest.json`` beside it recorded when it was written.

    Parameters
    ----------
    path : str or os.PathLike
        A checkpoint or weights file.
    what : str
        How the error names the file (``"checkpoint"``, ``"weights file"``).

    Returns
    -------
    bool
        True when checked; False when no manifest lists the file (nothing to check against).

    Raises
    ------
    CorruptFileError
        When the file's SHA-256 differs from the recorded one (expected and actual hash
        in the message).
    """
    path = Path(path)
    entry = _read_manifest(path.parent).get(path.name)
    if entry is None:
        log.debug(f"{path}: not listed in {MANIFEST_NAME}, read without an integrity check")
        return False
    actual = _sha256(path)
    pending = entry.get("pending") if isinstance(entry.get("pending"), dict) else {}
    recorded = [(h, n) for h, n in ((entry.get("sha256"), entry.get("size")), (pending.get("sha256"), pending.get("size")))
                if isinstance(h, str)]
    if actual in [h for h, _ in recorded]:
        return True
    if entry.get("sha256") is None and entry.get("absent") is not True:
        # a write over an unrecorded file was cut short: the old file is still there
        log.debug(f"{path}: written before {MANIFEST_NAME} listed it, read without an integrity check")
        return False
    now = path.stat().st_size
    expected = " or ".join(h for h, _ in recorded) or "no hash"
    sizes = {n for _, n in recorded if n is not None}
    written = f"{now} bytes, {' or '.join(map(str, sorted(sizes)))} when written" if sizes and now not in sizes else f"{now} bytes"
    raise CorruptFileError(path, f"{what} {str(path)!r} is truncated or corrupt: its SHA-256 is {actual}, but "
                                 f"{path.parent / MANIFEST_NAME} recorded {expected} when it was written ({written}); "
                                 f"the file changed on disk since")


def _on_disk(path: Path, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The baseline of a new write of ``path``: the recorded hash of the file on disk now.

    ``entry`` is the manifest's entry for ``path``. A write that stopped after its rename
    but before its confirmation (a crash) left ``{"sha256": old, "pending": new}``, and the
    disk holds either; the file is hashed (only then) to keep the one it holds, or the
    confirmed one when it holds neither (a damaged file stays caught). ``absent`` marks a
    write to a path with no file: any file found there later must be the pending one.
    """
    if not path.exists():
        return {"sha256": None, "size": None, "absent": True}
    base: dict[str, Any] = {"sha256": entry.get("sha256"), "size": entry.get("size")}
    if base["sha256"] is None and entry.get("absent") is True:  # no file before the cut write: it is not that one
        base["absent"] = True
    pending = entry.get("pending")
    if isinstance(pending, dict) and pending.get("sha256") not in (None, base["sha256"]):
        if _sha256(path) == pending["sha256"]:
            return {"sha256": pending["sha256"], "size": pending.get("size")}
    return base


def _atomic(path: str | os.PathLike[str], write: Any, *, by_name: bool = False, manifest: bool = False) -> Path:
    """Write ``path`` with :func:`~vaekit.training.rundir.atomic_write`; with ``manifest``, record its
    SHA-256 in ``manifest.json`` beside it (pending before the rename, final after it)."""
    path = Path(path)
    if not manifest:
        atomic_write(path, write, by_name=by_name)
        return path
    folder, name = path.parent, path.name

    def record_pending(digest: str, size: int) -> None:
        files = _read_manifest(folder)
        files[name] = {**_on_disk(path, files.get(name) or {}), "pending": {"sha256": digest, "size": size}}
        _write_manifest(folder, files)

    digest, size = atomic_write(path, write, by_name=by_name, before_replace=record_pending)
    files = _read_manifest(folder)
    files[name] = {"sha256": digest, "size": size}
    _write_manifest(folder, files)
    return path


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any], *, manifest: bool = False) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same directory + ``os.replace``).

    Parameters
    ----------
    path : str or os.PathLike
        Destination, e.g. ``run.last_checkpoint``.
    state : dict
        Plain containers, tensors, numbers and strings only.
    manifest : bool
        Also record the file's SHA-256 in ``manifest.json`` beside it, which
        :func:`load_checkpoint` then checks.

    Returns
    -------
    Path

    Raises
    ------
    FileWriteError
        An ``OSError`` naming the file and the cause (``No space left on device while
        writing .../last.ckpt``); ``path`` and the manifest are left as they were.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.ckpt")
    >>> _ = save_checkpoint(p, {"a": torch.ones(2)})
    >>> torch.load(p, weights_only=True)
    {'a': tensor([1., 1.])}
    """
    state = dict(state)
    return _atomic(path, lambda f: torch.save(state, f), by_name=True, manifest=manifest)


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
    CorruptFileError
        (a ``ValueError``) When the file's SHA-256 differs from the one ``manifest.json``
        beside it recorded, or the file is truncated or corrupt and cannot be read.
    ValueError
        When the file is not a vaekit checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} is not a file")
    verify_file(path, "checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # zip errors, unpickling errors, EOF: all mean "not readable"
        raise CorruptFileError(path, f"checkpoint {str(path)!r} is truncated or corrupt and cannot be read "
                                     f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a vaekit checkpoint (no 'format': {CHECKPOINT_FORMAT!r} entry)")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"{str(path)!r} is not a complete vaekit checkpoint: missing keys {missing}")
    return state


def save_weights(path: str | os.PathLike[str], state_dict: Mapping[str, Tensor], *, manifest: bool = False) -> Path:
    """Write a model ``state_dict`` as safetensors, atomically.

    Tensors are copied to contiguous CPU tensors first (so tied weights are stored once
    per name, and loading them back with ``load_state_dict`` restores the tie). With
    ``manifest``, the file's SHA-256 is recorded in ``manifest.json`` beside it (checked by
    :func:`load_weights`). OS errors are raised as ``FileWriteError`` (an ``OSError``)
    naming the file, which is left as it was.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> _ = save_weights(p, torch.nn.Linear(2, 1).state_dict())
    >>> sorted(load_weights(p))
    ['bias', 'weight']
    """
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state_dict.items()}
    data = save(tensors, metadata={"format": "pt", "producer": "vaekit"})
    return _atomic(path, lambda f: f.write(data), manifest=manifest)


def load_weights(path: str | os.PathLike[str], device: str = "cpu") -> dict[str, Tensor]:
    """Read a safetensors weight file written by :func:`save_weights`.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    CorruptFileError
        (a ``ValueError``) When the file's SHA-256 differs from the one ``manifest.json``
        beside it recorded, or it is not a readable safetensors file.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    verify_file(path, "weights file")
    try:
        return load_file(str(path), device=device)
    except Exception as e:
        raise CorruptFileError(path, f"weights file {str(path)!r} is truncated or corrupt ({type(e).__name__}: {e})") from e


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
