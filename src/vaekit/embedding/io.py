"""Saving and loading a fitted :class:`~vaekit.embedding.VAEEmbedder` as data, never as a pickle.

A saved embedder is a directory::

    embedder.json        parameters (get_params) + fitted metadata (features, history, versions)
    model.safetensors    the VAE's weights and the normalisation mean/scale
    optimizer.pt         optional (logdir checkpoints): Adam state, read with torch.load(weights_only=True)

Files are written to a temporary name and renamed into place, so an interrupted save
never leaves a half-written file under the final name.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    from .estimator import VAEEmbedder

__all__ = ["save", "load", "is_saved", "CONFIG", "WEIGHTS", "OPTIMIZER"]

CONFIG, WEIGHTS, OPTIMIZER = "embedder.json", "model.safetensors", "optimizer.pt"
FORMAT, VERSION = "vaekit.VAEEmbedder", 1


def is_saved(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a directory written by :func:`save`."""
    return (Path(path) / CONFIG).is_file()


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.integer, np.floating)):
        return _json_safe(value.item())
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def save(est: VAEEmbedder, path: str | os.PathLike[str], overwrite: bool = False,
         training_state: bool = False) -> Path:
    """Write fitted ``est`` to the directory ``path``.

    Parameters
    ----------
    est : VAEEmbedder
        A fitted embedder.
    path : str or path-like
        Directory to create (or an empty one). A non-empty directory is refused unless
        ``overwrite``, which replaces only the files listed in the module docstring and
        leaves every other file alone.
    overwrite : bool
    training_state : bool
        Also write the optimiser state (what ``logdir`` checkpoints need to continue).

    Returns
    -------
    Path
        The directory.

    Raises
    ------
    FileExistsError
        ``path`` is a non-empty directory (or a file) and ``overwrite`` is False.
    sklearn.exceptions.NotFittedError
        ``est`` is not fitted.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "model_")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"path={os.fspath(path)!r} is a file; save needs a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"path={os.fspath(path)!r} is a non-empty directory; pass overwrite=True to replace the "
                              f"saved embedder's files there ({CONFIG}, {WEIGHTS}), or choose a new directory")
    params = est.get_params(deep=False)
    if isinstance(params["random_state"], np.random.RandomState):
        params["random_state"] = None  # a generator's state is not configuration
    fitted = {"n_features_in_": int(est.n_features_in_), "n_iter_": int(est.n_iter_), "history_": est.history_,
              "stop_reason_": est.stop_reason_, "loop_lr": float(getattr(est, "_loop_lr", est.learning_rate)),
              "feature_names_in_": est.feature_names_in_.tolist() if hasattr(est, "feature_names_in_") else None}
    import vaekit

    config = {"format": FORMAT, "version": VERSION, "params": _json_safe(params), "fitted": _json_safe(fitted),
              "library": {"vaekit": vaekit.__version__, "torch": torch.__version__, "python": platform.python_version()}}
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in est.model_.state_dict().items()}
    tensors["normalization.mean"] = torch.as_tensor(est.mean_, dtype=torch.float64)
    tensors["normalization.scale"] = torch.as_tensor(est.scale_, dtype=torch.float64)
    path.mkdir(parents=True, exist_ok=True)
    _atomic(path / WEIGHTS, lambda p: save_file(tensors, str(p)))
    if training_state and getattr(est, "_optimizer_state", None) is not None:
        _atomic(path / OPTIMIZER, lambda p: torch.save(est._optimizer_state, p))
    _atomic(path / CONFIG, lambda p: p.write_text(json.dumps(config, indent=1)))
    return path


def load(path: str | os.PathLike[str], device: str | None = None) -> VAEEmbedder:
    """Read an embedder written by :func:`save`.

    Parameters
    ----------
    path : str or path-like
        The directory.
    device : str or None
        Override the saved ``device`` parameter (e.g. "cpu" for a model trained on a GPU).

    Returns
    -------
    VAEEmbedder
        Fitted, transforms exactly like the saved one.

    Raises
    ------
    FileNotFoundError
        ``path`` holds no saved embedder.
    ValueError
        The files are not a vaekit embedder, or the weights do not fit the configuration.
    """
    from ._fitting import build_model
    from .estimator import VAEEmbedder

    path = Path(path)
    if not (path / CONFIG).is_file():
        raise FileNotFoundError(f"{os.fspath(path)!r} holds no saved VAEEmbedder ({CONFIG} is missing)")
    try:
        config = json.loads((path / CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path / CONFIG} is not valid JSON: {e}") from None
    if config.get("format") != FORMAT or config.get("version") != VERSION:
        raise ValueError(f"{path / CONFIG} is not a vaekit VAEEmbedder (format {config.get('format')!r}, version "
                         f"{config.get('version')!r}; expected {FORMAT!r}, {VERSION})")
    params, fitted = dict(config["params"]), config["fitted"]
    unknown = sorted(set(params) - set(VAEEmbedder().get_params()))
    if unknown:
        raise ValueError(f"{path / CONFIG} has parameters this vaekit's VAEEmbedder does not know: {unknown} (saved by "
                         f"another vaekit version?); known: {sorted(VAEEmbedder().get_params())}")
    if params.get("hidden_layers") is not None:
        params["hidden_layers"] = tuple(params["hidden_layers"])
    if device is not None:
        params["device"] = device
    est = VAEEmbedder(**params)
    est._check_params()
    tensors = load_file(str(path / WEIGHTS))
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    with torch.random.fork_rng(devices=[]):
        model = build_model(est, int(fitted["n_features_in_"]))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path / WEIGHTS} does not match the configuration in {CONFIG}: {e}") from None
    est.model_ = model.to(est._torch_device())
    est.mean_ = tensors["normalization.mean"].numpy().astype(np.float64)
    est.scale_ = tensors["normalization.scale"].numpy().astype(np.float64)
    est.n_features_in_ = int(fitted["n_features_in_"])
    if fitted.get("feature_names_in_") is not None:
        est.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
    est.history_ = [{k: (math.nan if v is None else v) for k, v in h.items()} for h in fitted["history_"]]
    est.n_iter_, est.stop_reason_, est._loop_lr = int(fitted["n_iter_"]), fitted["stop_reason_"], float(fitted["loop_lr"])
    est._optimizer_state = None
    if (path / OPTIMIZER).is_file():
        est._optimizer_state = torch.load(path / OPTIMIZER, map_location=est._torch_device(), weights_only=True)
    return est
