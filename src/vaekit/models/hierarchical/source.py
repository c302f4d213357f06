"""Models written in one Python file: a function returning the blocks and the hyperparameters.

The function (any name) returns either a :class:`HierarchicalVAE` or a pair
``(blocks, hyperparameters)`` where ``hyperparameters`` holds ``data_shape`` (and
optionally ``kl``). A config names it through :func:`from_python`::

    model:
      class_path: vaekit.models.hierarchical.from_python
      init_args: {source: examples/models/ladder.py:model, kwargs: {latent: [100, 50]}}

``vaekit.load`` rebuilds the model from the same call, so the file must still be at that
path. Relative paths are read from the working directory (where ``vaekit`` runs); an
importable module ``package.module:function`` works from anywhere.

Both functions import and run what ``source`` names, so a config read back from a run
directory may use them only when the caller passes ``trust_code=True`` (CLI
``--trust-code``; see :mod:`vaekit.trust`): they are not constructible types, and while a
run's config is being built without trust they refuse to run.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .model import HierarchicalVAE

__all__ = ["from_python", "load_function"]


def load_function(source: str) -> Any:
    """The callable named by ``"path/to/file.py:function"`` or ``"package.module:function"``.

    Raises
    ------
    ValueError
        When ``source`` lacks ``:function``, the file or module does not exist, or the
        name is not a callable in it.
    vaekit.trust.UntrustedConfigError
        When called while a run directory's config is built without ``trust_code``.
    """
    from ...trust import refuse_code_loading

    refuse_code_loading(source)  # nothing below runs for a run directory nobody trusted
    if not isinstance(source, str) or ":" not in source:
        raise ValueError(f"source must be 'path/to/file.py:function' or 'package.module:function', got {source!r}")
    where, _, name = source.rpartition(":")
    if where.endswith(".py"):
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"source {source!r}: file {str(path)!r} does not exist")
        mod_name = f"vaekit_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module  # so classes defined in the file resolve while this process runs
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise ValueError(f"source {source!r}: cannot import module {where!r} ({e})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        have = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise ValueError(f"source {source!r}: {where} has no function {name!r}; callables there: {have}")
    return fn


def from_python(source: str, kwargs: dict[str, Any] | None = None) -> HierarchicalVAE:
    """Build a :class:`HierarchicalVAE` from a model function in a Python file or module.

    Parameters
    ----------
    source : str
        ``"path/to/file.py:function"`` or ``"package.module:function"``.
    kwargs : dict, optional
        Keyword arguments for the function (its hyperparameters).

    Returns
    -------
    HierarchicalVAE

    Examples
    --------
    >>> model = from_python("vaekit.models.hierarchical.presets:ladder_vae", {"data_shape": [12], "hidden": [8, 6]})
    >>> model.latent_dims
    {'z2': 50, 'z1': 100}
    """
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise TypeError(f"kwargs must be a mapping of the model function's arguments, got {type(kwargs).__name__}")
    fn = load_function(source)
    out = fn(**dict(kwargs or {}))
    if isinstance(out, HierarchicalVAE):
        return out
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping):
        blocks, hp = out
        if "data_shape" not in hp:
            raise ValueError(f"{source} returned hyperparameters without 'data_shape' (got keys {sorted(hp)})")
        return HierarchicalVAE(list(blocks), hp["data_shape"], hp.get("kl", "auto"))
    raise TypeError(f"{source} must return a HierarchicalVAE or a pair (blocks, {{'data_shape': ...}}), "
                    f"got {type(out).__name__}")
