"""Saving and loading a fitted :class:`~vaekit.embedding.VAEEmbedder` as data, never as a pickle.

A saved embedder is a directory::

    embedder.json        parameters (get_params) + fitted metadata (features, history, versions)
    model.safetensors    the VAE's weights, the normalisation mean/scale and, with the neighbour term, the
                         reference transform places rows against (reference.projection, .coords, .embedding)
    optimizer.pt         optional (logdir checkpoints): Adam state, read with torch.load(weights_only=True)

Files are written to a temporary name and renamed into place, so an interrupted save
never leaves a half-written file under the final name. ``embedder.json`` is written last
and records the SHA-256 of the other two (key ``"sha256"``).

A saved directory is data that may come from someone else, so :func:`load` checks it
before it builds or allocates anything: the JSON's keys, types and ranges (with the
estimator's own parameter validation), the size of the model it describes against a
budget (``max_parameters``, ``max_layers``), the weights file's SHA-256 (when recorded;
saves from before it was recorded still load), its header (tensor names and shapes against
the model the JSON describes) and its values (finite; normalisation scales > 0). Every
refusal is a ``ValueError`` (``FileNotFoundError`` for a missing file) naming the file and
the key or tensor.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ._neighbors import Layout

if TYPE_CHECKING:
    from .estimator import VAEEmbedder

__all__ = ["save", "load", "is_saved", "sha256", "CONFIG", "WEIGHTS", "OPTIMIZER", "MAX_PARAMETERS", "MAX_LAYERS"]

CONFIG, WEIGHTS, OPTIMIZER = "embedder.json", "model.safetensors", "optimizer.pt"
#: The tensors of ``transform``'s reference: projection (n_features, n_coords) float64, the rows' principal
#: coordinates (n_rows, n_coords) float32 and their embedding (n_rows, n_components) float32.
REFERENCE = ("reference.projection", "reference.coords", "reference.embedding")
FORMAT, VERSION = "vaekit.VAEEmbedder", 1

#: Default budget of :func:`load`: the most numbers (weights and buffers) the model an ``embedder.json`` describes
#: may hold, 2**31 (8 GiB in float32); checked by arithmetic before anything is allocated.
MAX_PARAMETERS = 2**31
#: Default of :func:`load`'s ``max_layers``: the most hidden layers, and the most flow steps, it builds (each is
#: a module built in Python: a million of them would take minutes and gigabytes however few parameters they hold).
MAX_LAYERS = 1024
#: Largest ``embedder.json`` :func:`load` reads (256 MiB; a save writes kilobytes, more only for millions of feature names).
MAX_CONFIG_BYTES = 2**28


def is_saved(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a directory written by :func:`save`."""
    return (Path(path) / CONFIG).is_file()


def sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic(path: Path, write: Any) -> str:
    """Write ``path`` through a temporary file renamed into place; returns the written file's SHA-256."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    digest = sha256(tmp)
    os.replace(tmp, path)
    return digest


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
    params["validation_data"] = None  # data, not configuration
    fitted = {"n_features_in_": int(est.n_features_in_), "n_iter_": int(est.n_iter_), "history_": est.history_,
              "stop_reason_": est.stop_reason_, "loop_lr": float(getattr(est, "_loop_lr", est.learning_rate)),
              "feature_names_in_": est.feature_names_in_.tolist() if hasattr(est, "feature_names_in_") else None,
              "reference": None, "width_rows": getattr(est, "_width_rows", None)}
    if est._has_layout():
        layout = est._layout
        fitted["reference"] = {"n_rows": int(est.embedding_.shape[0]), "n_coords": int(layout.projection.shape[1]),
                               "seed": int(layout.seed), "loss": layout.loss, "n_neighbors": int(layout.n_neighbors),
                               "moved": bool(layout.moved), "graph": getattr(layout, "graph", "knn")}
    import vaekit

    config = {"format": FORMAT, "version": VERSION, "params": _json_safe(params), "fitted": _json_safe(fitted),
              "library": {"vaekit": vaekit.__version__, "torch": torch.__version__, "python": platform.python_version()}}
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in est.model_.state_dict().items()}
    tensors["normalization.mean"] = torch.as_tensor(est.mean_, dtype=torch.float64)
    tensors["normalization.scale"] = torch.as_tensor(est.scale_, dtype=torch.float64)
    if fitted["reference"] is not None:
        tensors[REFERENCE[0]] = torch.as_tensor(est._layout.projection, dtype=torch.float64)
        tensors[REFERENCE[1]] = torch.as_tensor(est._layout.coords, dtype=torch.float32)
        tensors[REFERENCE[2]] = torch.as_tensor(est.embedding_, dtype=torch.float32)
    path.mkdir(parents=True, exist_ok=True)
    hashes = {WEIGHTS: _atomic(path / WEIGHTS, lambda p: save_file(tensors, str(p)))}
    if training_state and getattr(est, "_optimizer_state", None) is not None:
        hashes[OPTIMIZER] = _atomic(path / OPTIMIZER, lambda p: torch.save(est._optimizer_state, p))
    config["sha256"] = hashes  # the files this save wrote; load verifies them and reads no other
    _atomic(path / CONFIG, lambda p: p.write_text(json.dumps(config, indent=1)))
    return path


def load(path: str | os.PathLike[str], device: str | None = None, *, max_parameters: int = MAX_PARAMETERS,
         max_layers: int = MAX_LAYERS) -> VAEEmbedder:
    """Read an embedder written by :func:`save`, checking every file before building anything.

    In order: ``embedder.json`` (valid JSON; format and version; the parameters, through
    the estimator's own validation; the fitted metadata's types and ranges; the
    ``"sha256"`` record, and ``fitted.reference``: the training layout's sizes, seed, loss
    and neighbour count), the size of the model and the layout it describes (computed, not
    allocated), ``model.safetensors`` (its recorded SHA-256, then its header: every tensor the
    model and the layout need, with its shape, and nothing else), then the values (finite
    weights, layout and coordinates; finite normalisation mean and scales > 0). Only then is
    the model built and filled.

    Parameters
    ----------
    path : str or path-like
        The directory.
    device : str or None
        Override the saved ``device`` parameter (e.g. "cpu" for a model trained on a GPU).
    max_parameters : int, default=MAX_PARAMETERS (2**31)
        Refuse a model of more numbers (weights and buffers, plus the training layout's
        embedding, coordinates and projection) than this; raise it to load a genuine larger
        model.
    max_layers : int, default=MAX_LAYERS (1024)
        Refuse more hidden layers, or more flow steps, than this.

    Returns
    -------
    VAEEmbedder
        Fitted, transforms exactly like the saved one.

    Raises
    ------
    FileNotFoundError
        ``path`` holds no saved embedder, or its weights file is missing.
    ValueError
        A file is not valid (the message names the file and the key or tensor), does not
        match its recorded SHA-256, or describes a model above the budget.
    """
    from .._checks import check_int
    from ._fitting import build_model

    max_parameters, max_layers = check_int("max_parameters", max_parameters), check_int("max_layers", max_layers)
    path = Path(path)
    config_file, weights_file = path / CONFIG, path / WEIGHTS
    if not config_file.is_file():
        raise FileNotFoundError(f"{os.fspath(path)!r} holds no saved VAEEmbedder ({CONFIG} is missing)")
    config = _read_config(config_file)
    est, fitted, hashes = _check_config(config, config_file, device)
    n_features = fitted["n_features_in_"]
    est._width_rows = fitted.get("width_rows")  # the automatic hidden sizes the weights were built with
    _check_size(est, n_features, config_file, max_parameters, max_layers)
    reference = fitted["reference"]
    if reference is not None:  # the training layout shares the budget with the model
        from ._fitting import model_size

        size = reference["n_rows"] * (reference["n_coords"] + est.n_components) + n_features * reference["n_coords"]
        total = size + model_size(est, n_features)
        if total > max_parameters:
            raise ValueError(f"{config_file}: the model and fitted.reference (n_rows = {reference['n_rows']}, "
                             f"n_coords = {reference['n_coords']}: {size:,} numbers) describe {total:,} numbers, more "
                             f"than max_parameters={max_parameters:,}; nothing was allocated (pass a larger "
                             "max_parameters to VAEEmbedder.load if the file is genuine)")
    if not weights_file.is_file():
        raise FileNotFoundError(f"{weights_file} is missing: the saved embedder in {os.fspath(path)!r} has no weights")
    _verify(weights_file, hashes, config_file)
    header = _read_header(weights_file)
    for name in ("normalization.mean", "normalization.scale"):
        if header.get(name) != (n_features,):
            found = "is missing" if name not in header else f"has shape {header[name]}"
            raise ValueError(f"{weights_file}: tensor {name!r} {found}; fitted.n_features_in_={n_features} in {CONFIG} "
                             f"needs shape ({n_features},)")
    with torch.random.fork_rng(devices=[]):
        model = build_model(est, n_features)
    expected = {f"model.{k}": v for k, v in model.state_dict().items()}
    if reference is not None:  # shapes and dtypes only: "meta" tensors allocate nothing
        shapes = ((n_features, reference["n_coords"]), (reference["n_rows"], reference["n_coords"]),
                  (reference["n_rows"], est.n_components))
        for name, shape, dtype in zip(REFERENCE, shapes, (torch.float64, torch.float32, torch.float32)):
            expected[name] = torch.empty(shape, dtype=dtype, device="meta")
    _match_header(header, expected, weights_file)
    try:
        tensors = load_file(str(weights_file))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type, or OSError
        raise ValueError(f"cannot read {weights_file} as a safetensors file ({type(e).__name__}: {e})") from None
    _check_values(tensors, expected, weights_file)
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    est.model_ = model.to(est._torch_device())
    est.mean_ = tensors["normalization.mean"].numpy().astype(np.float64)
    est.scale_ = tensors["normalization.scale"].numpy().astype(np.float64)
    est.n_features_in_ = n_features
    if fitted.get("feature_names_in_") is not None:
        est.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
    est.history_ = [{k: (math.nan if v is None else v) for k, v in h.items()} for h in fitted["history_"]]
    est.n_iter_, est.stop_reason_, est._loop_lr = fitted["n_iter_"], fitted["stop_reason_"], fitted["loop_lr"]
    if reference is not None:
        est.embedding_ = tensors[REFERENCE[2]].numpy()
        est._layout = Layout(tensors[REFERENCE[0]].numpy(), tensors[REFERENCE[1]].numpy(), reference["seed"],
                             reference["loss"], reference["n_neighbors"], reference["moved"], reference["graph"])
    est._optimizer_state = None
    optimizer_file = path / OPTIMIZER
    if optimizer_file.is_file() and (hashes is None or OPTIMIZER in hashes):  # else left over, not of this save
        _verify(optimizer_file, hashes, config_file)
        try:
            est._optimizer_state = torch.load(optimizer_file, map_location=est._torch_device(), weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file
            raise ValueError(f"cannot read {optimizer_file} (the optimiser state of a logdir checkpoint): "
                             f"{type(e).__name__}: {e}") from None
    return est


def _read_config(config_file: Path) -> dict[str, Any]:
    """``embedder.json`` parsed; any failure names the file."""
    size = config_file.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ValueError(f"{config_file} is {size:,} bytes, more than the {MAX_CONFIG_BYTES:,} a VAEEmbedder save can "
                         "need; it is not an embedder configuration")
    try:
        text = config_file.read_bytes().decode("utf-8")
        config = json.loads(text)
    except UnicodeDecodeError as e:
        raise ValueError(f"{config_file} is not valid JSON: not UTF-8 text ({e})") from None
    except ValueError as e:  # json.JSONDecodeError, or an integer of more digits than Python converts
        raise ValueError(f"{config_file} is not valid JSON: {e}") from None
    except RecursionError:
        raise ValueError(f"{config_file} is not valid JSON for a VAEEmbedder: nested too deeply") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_file} holds a JSON {type(config).__name__}, not the object a VAEEmbedder save writes")
    return config


def _check_config(config: dict[str, Any], config_file: Path, device: str | None) -> tuple[VAEEmbedder, dict[str, Any],
                                                                                        dict[str, str] | None]:
    """The unfitted estimator ``config["params"]`` describes, the checked ``fitted`` entries and the hash record.

    Parameters are checked by the estimator's own validation (:meth:`VAEEmbedder.check_params
    <vaekit.embedding.VAEEmbedder.check_params>`), so a saved file accepts exactly what the
    constructor accepts.
    """
    from .._checks import check_float, check_int
    from ._fitting import ARCHITECTURE_PARAMS
    from .estimator import VAEEmbedder

    if config.get("format") != FORMAT or config.get("version") != VERSION:
        raise ValueError(f"{config_file} is not a vaekit VAEEmbedder (format {config.get('format')!r}, version "
                         f"{config.get('version')!r}; expected {FORMAT!r}, {VERSION})")
    for key in ("params", "fitted"):
        if not isinstance(config.get(key), dict):
            raise ValueError(f"{config_file}: {key!r} must be a JSON object, got {_kind(config.get(key))}")
    params, fitted = dict(config["params"]), dict(config["fitted"])
    known = sorted(VAEEmbedder().get_params())
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{config_file} has parameters this vaekit's VAEEmbedder does not know: {unknown} (saved by "
                         f"another vaekit version?); known: {known}")
    missing = [p for p in ARCHITECTURE_PARAMS if p not in params]
    if missing:
        raise ValueError(f"{config_file}: params lacks {missing}, which fix the model's shape; a save writes every "
                         "parameter")
    if isinstance(params.get("hidden_layers"), list):
        params["hidden_layers"] = tuple(params["hidden_layers"])
    if device is not None:
        params["device"] = device
    est = VAEEmbedder(**params)
    try:
        est.check_params()
    except (ValueError, TypeError) as e:
        raise ValueError(f"{config_file}: params: {e}") from None

    def checked(key: str, check: Any) -> Any:
        if key not in fitted:
            raise ValueError(f"{config_file}: fitted.{key} is missing")
        try:
            return check(f"fitted.{key}", fitted[key])
        except (ValueError, TypeError) as e:
            raise ValueError(f"{config_file}: {e}") from None

    fitted["n_features_in_"] = checked("n_features_in_", check_int)
    fitted["n_iter_"] = checked("n_iter_", lambda k, v: check_int(k, v, 0))
    fitted["loop_lr"] = checked("loop_lr", lambda k, v: check_float(k, v, 0, low_open=True))
    fitted["stop_reason_"] = checked("stop_reason_", _check_str)
    fitted["history_"] = checked("history_", _check_history)
    fitted["reference"] = _check_reference(fitted.get("reference"), fitted["n_features_in_"], config_file)
    if fitted.get("width_rows") is not None:  # absent or null: saved before the automatic sizes depended on the rows
        fitted["width_rows"] = checked("width_rows", check_int)
    names = fitted.get("feature_names_in_")
    if names is not None and (not isinstance(names, list) or len(names) != fitted["n_features_in_"]
                              or not all(isinstance(n, str) for n in names)):
        raise ValueError(f"{config_file}: fitted.feature_names_in_ must be null or a list of "
                         f"{fitted['n_features_in_']} strings (fitted.n_features_in_), got {_kind(names)}")
    hashes = config.get("sha256")
    if hashes is not None and not (isinstance(hashes, dict) and all(
            isinstance(k, str) and isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v) for k, v in hashes.items())):
        raise ValueError(f"{config_file}: 'sha256' must map file names to 64 hex digits, got {_kind(hashes)}")
    return est, fitted, hashes


def _check_reference(value: Any, n_features: int, config_file: Path) -> dict[str, Any] | None:
    """``fitted.reference``: null (no training layout, or a save from before it was kept) or its sizes, seed, loss, k,
    whether ``transform`` starts rows at their neighbours' median (``moved``; absent in saves from before it was
    written, whose layouts, moved or not, keep the encoder's start: False) and how it weighs the neighbours
    (``graph``; absent in saves from before ``neighbor_graph``: "knn")."""
    from .._checks import check_choice, check_int
    from ._neighbors import GRAPHS, LOSSES

    keys = ["loss", "n_coords", "n_neighbors", "n_rows", "seed"]
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{config_file}: fitted.reference must be null or an object with the keys "
                         f"{', '.join(keys)} (and optionally moved, graph), got {_kind(value)}")
    missing, extra = sorted(set(keys) - set(value)), sorted(set(value) - set(keys) - {"moved", "graph"})
    if missing or extra:
        raise ValueError(f"{config_file}: fitted.reference must be null or an object with the keys "
                         f"{', '.join(keys)} (and optionally moved, graph); missing: {missing or 'none'}, unexpected: "
                         f"{extra or 'none'}")
    if not isinstance(value.get("moved", False), bool):
        raise ValueError(f"{config_file}: fitted.reference.moved must be true or false, got {_kind(value['moved'])}")
    try:
        out = {"n_rows": check_int("fitted.reference.n_rows", value["n_rows"]),
               "n_coords": check_int("fitted.reference.n_coords", value["n_coords"]),
               "seed": check_int("fitted.reference.seed", value["seed"], 0),
               "loss": check_choice("fitted.reference.loss", value["loss"], LOSSES),
               "n_neighbors": check_int("fitted.reference.n_neighbors", value["n_neighbors"]),
               "moved": value.get("moved", False),
               "graph": check_choice("fitted.reference.graph", value.get("graph", "knn"), GRAPHS)}
    except (ValueError, TypeError) as e:
        raise ValueError(f"{config_file}: {e}") from None
    if out["seed"] > 2**31 - 1:
        raise ValueError(f"{config_file}: fitted.reference.seed = {out['seed']} is above 2**31 - 1 (fit draws it "
                         "below)")
    if out["n_coords"] > n_features:
        raise ValueError(f"{config_file}: fitted.reference.n_coords = {out['n_coords']} is more than "
                         f"fitted.n_features_in_ = {n_features} (principal coordinates of the inputs)")
    if out["n_neighbors"] > out["n_rows"]:
        raise ValueError(f"{config_file}: fitted.reference.n_neighbors = {out['n_neighbors']} is more than "
                         f"fitted.reference.n_rows = {out['n_rows']} (neighbours among the layout's rows)")
    return out


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{text if len(text) <= 80 else text[:77] + '...'} ({type(value).__name__})"


def _check_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {_kind(value)}")
    return value


def _check_history(name: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise TypeError(f"{name} must be a list of per-epoch records, got {_kind(value)}")
    for i, record in enumerate(value):
        if not isinstance(record, dict):
            raise TypeError(f"{name}[{i}] must be an object of numbers, got {_kind(record)}")
        for key, v in record.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise TypeError(f"{name}[{i}].{key} must be a number or null, got {_kind(v)}")
    return value


def _check_size(est: VAEEmbedder, n_features: int, config_file: Path, max_parameters: int, max_layers: int) -> None:
    """Refuse a model above the budget, naming the key that makes it big; computed, never allocated."""
    from ._fitting import model_size

    sizes = {"fitted.n_features_in_": n_features, "params.n_components": est.n_components,
             "params.n_prior_modes": est.n_prior_modes, "params.n_flows": est.n_flows}
    sizes.update({f"params.hidden_layers[{i}]": h for i, h in enumerate(est.hidden_layers or ())})
    for key, value in sizes.items():  # each one alone is a lower bound on the model's size
        if value > max_parameters:
            raise ValueError(f"{config_file}: {key} = {value} describes a model of more than max_parameters="
                             f"{max_parameters} numbers; nothing was allocated (pass a larger max_parameters to "
                             "VAEEmbedder.load if the file is genuine)")
    depth = {"params.hidden_layers": len(est.hidden_layers or ()), "params.n_flows": est.n_flows if
             est.posterior == "iaf" else 0}
    for key, value in depth.items():
        if value > max_layers:
            raise ValueError(f"{config_file}: {key} asks for {value} layers, more than max_layers={max_layers}; nothing "
                             "was built (pass a larger max_layers to VAEEmbedder.load if the file is genuine)")
    total = model_size(est, n_features)
    if total <= max_parameters:
        return
    smaller = {"fitted.n_features_in_": model_size(est, 1)}  # the model with one key at its least
    for key in ("n_components", "n_prior_modes", "n_flows"):
        smaller[f"params.{key}"] = model_size(est.__class__(**{**est.get_params(), key: 1}), n_features)
    if est.hidden_layers is not None:
        smaller["params.hidden_layers"] = model_size(
            est.__class__(**{**est.get_params(), "hidden_layers": (1,) * len(est.hidden_layers)}), n_features)
    culprit = min(smaller, key=lambda k: smaller[k])
    value = n_features if culprit.startswith("fitted.") else getattr(est, culprit[len("params."):])
    value = list(value) if isinstance(value, tuple) else value
    raise ValueError(f"{config_file} describes a model of {total:,} numbers ({4 * total / 2**30:,.1f} GiB in float32), "
                     f"more than max_parameters={max_parameters:,}; mostly because of {culprit} = {value}. Nothing was "
                     "allocated; pass a larger max_parameters to VAEEmbedder.load if the file is genuine")


def _verify(file: Path, hashes: dict[str, str] | None, config_file: Path) -> None:
    """Compare ``file`` with the SHA-256 that ``embedder.json`` records for it (saves without a record pass)."""
    if hashes is None or file.name not in hashes:
        return
    actual = sha256(file)
    if actual != hashes[file.name]:
        raise ValueError(f"{file} does not match the SHA-256 recorded in {config_file.name} when it was saved "
                         f"({actual[:16]}... instead of {hashes[file.name][:16]}...): the file was changed or "
                         "damaged after saving; restore it from a copy")


def _read_header(weights_file: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a safetensors file, from its header only (no tensor is read)."""
    try:
        with safe_open(str(weights_file), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type, or OSError
        raise ValueError(f"cannot read {weights_file} as a safetensors file, it is damaged or not a weights file "
                         f"({type(e).__name__}: {e})") from None


def _match_header(header: dict[str, tuple[int, ...]], expected: dict[str, torch.Tensor], weights_file: Path) -> None:
    """Every tensor the model needs, with its shape, and no other: checked before any tensor is read."""
    for name, tensor in expected.items():
        if name not in header:
            raise ValueError(f"{weights_file} does not match the configuration in {CONFIG}: tensor {name!r} is missing")
        if header[name] != tuple(tensor.shape):
            raise ValueError(f"{weights_file} does not match the configuration in {CONFIG}: tensor {name!r} has shape "
                             f"{header[name]}, the model {CONFIG} describes needs {tuple(tensor.shape)}")
    extra = sorted(set(header) - set(expected) - {"normalization.mean", "normalization.scale"})
    if extra:
        raise ValueError(f"{weights_file} does not match the configuration in {CONFIG}: it holds tensors the model does "
                         f"not have: {extra[:5]}{' ...' if len(extra) > 5 else ''}")


def _check_values(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], weights_file: Path) -> None:
    """Dtypes as the model's, finite floating-point values, finite normalisation with scales > 0."""
    for name, want in expected.items():
        got = tensors[name]
        if got.dtype != want.dtype:
            raise ValueError(f"{weights_file}: tensor {name!r} has dtype {got.dtype}, the model needs {want.dtype}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise ValueError(f"{weights_file}: tensor {name!r} holds NaN or infinity; the weights are damaged")
    for name in ("normalization.mean", "normalization.scale"):
        values = tensors[name]
        if not values.is_floating_point():
            raise ValueError(f"{weights_file}: tensor {name!r} has dtype {values.dtype}, expected float64")
        bad = ~torch.isfinite(values) | ((values <= 0) if name.endswith("scale") else torch.zeros_like(values, dtype=bool))
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            need = "finite and > 0" if name.endswith("scale") else "finite"
            raise ValueError(f"{weights_file}: tensor {name!r} has {float(values[i])} at feature {i}; every entry must "
                             f"be {need} (it standardises the inputs: x' = (x - mean) / scale)")
