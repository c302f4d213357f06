"""Configs are the constructors: jsonargparse reads YAML into the typed ``__init__`` signatures.

A ``vaekit fit`` config has four sections and two plain keys::

    model:     {class_path: vaekit.models.VAE, init_args: {...}}   # any LatentVariableModel
    data:      {class_path: vaekit.data.MNIST, init_args: {...}}   # any DataModule
    objective: {class_path: vaekit.objectives.ELBO, init_args: {...}}
    trainer:   {max_epochs: 10, lr: 1e-3, run_name: mnist_vae, ...} # vaekit.training.Trainer

The run goes to ``<trainer.root_dir>/<trainer.run_name>/<YYYYmmdd-HHMMSS>/``.

A new encoder, flow or model needs no registry: any importable class whose constructor
is typed can be named by ``class_path`` in a config you run. Before jsonargparse sees a
YAML file, :func:`check_config_keys` walks it and rejects unknown keys with the list of
accepted ones. A config read back from a run directory is data, not code: before anything
in it is imported, :func:`vaekit.trust.check_config_trust` accepts only vaekit's registry
of constructible types (plus classes the caller allows) unless the caller trusts the run.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import warnings
from collections.abc import Mapping
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
from lightning_fabric.utilities.seed import seed_everything

from .data import DataModule
from .models import LatentVariableModel
from .objectives import ELBO, Objective
from .training import Trainer

__all__ = ["fit_config", "fit_namespace", "build_fit_parser", "build_model_parser", "check_config_keys", "check_init_args",
           "error_lines", "instantiate", "size_model_from_data", "ConfigError", "TOP_LEVEL_KEYS"]

TOP_LEVEL_KEYS = ("model", "data", "objective", "trainer", "config")
"""The sections a fit config may have (any other top-level key is rejected by :func:`check_config_keys`)."""


class ConfigError(ValueError):
    """A config key or value that the constructors do not accept."""


def build_model_parser() -> ArgumentParser:
    """Parser with only the ``model`` section (what :func:`vaekit.load` needs)."""
    parser = ArgumentParser(exit_on_error=False, default_env=False)
    parser.add_subclass_arguments(LatentVariableModel, "model", required=True)
    return parser


def build_fit_parser(prog: str = "vaekit fit") -> ArgumentParser:
    """The ``vaekit fit`` parser: ``--config``, ``--model.*``, ``--data.*``, ``--objective.*``,
    ``--trainer.*`` and ``--print_config``."""
    parser = ArgumentParser(prog=prog, description="Train a latent-variable model; writes "
                            "<trainer.root_dir>/<trainer.run_name>/<timestamp>/. --resume RUN_DIR continues a "
                            "run; add --trust-code if its config.yaml names code outside vaekit's registry of "
                            "constructible types (a from_python model file, your own classes), which runs that code "
                            "(see 'Trust model' in docs/training.md).",
                            exit_on_error=False, default_env=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config (sections model, data, objective, trainer)")
    parser.add_subclass_arguments(LatentVariableModel, "model", required=True)
    parser.add_subclass_arguments(DataModule, "data", required=True)
    parser.add_subclass_arguments(Objective, "objective", required=False)
    parser.set_defaults(objective={"class_path": "vaekit.objectives.ELBO"})
    parser.add_class_arguments(Trainer, "trainer")
    return parser


def instantiate(parser: ArgumentParser, cfg: Namespace) -> Namespace:
    """Build the objects of a parsed config (``model``, ``data``, ``objective``, ``trainer``...)."""
    init = parser.instantiate_classes(cfg) if not hasattr(parser, "instantiate") else parser.instantiate(cfg)
    if getattr(init, "objective", None) is None and "objective" in cfg:
        init.objective = ELBO()
    return init


def fit_namespace(parser: ArgumentParser, cfg: Namespace, *, resume: str | None = None,
                  run_config: str | os.PathLike[str] | None = None, trust_code: bool = False) -> Any:
    """Instantiate a parsed fit config and train; the resolved config goes to ``config.yaml``.

    A new run goes to ``<trainer.root_dir>/<trainer.run_name>/<YYYYmmdd-HHMMSS>/`` (created
    by the trainer once the data and model have been checked); with ``resume`` the run
    directory given continues from its last checkpoint.

    ``run_config`` names the ``config.yaml`` of a run directory that ``cfg`` was read from
    (``vaekit fit --resume``): its objects are then built inside
    :func:`vaekit.trust.building_from_run` (only constructible types are imported, nothing
    is read as a nested config file, ``from_python`` refuses to run) unless ``trust_code``.

    Raises
    ------
    ConfigError
        When the objects of the config cannot be built (a constructor refused its arguments):
        ``"cannot build the objects of the config: ..."``, the constructor's error chained.
        Errors of :meth:`~vaekit.training.Trainer.fit` (bad data, or an error while training)
        propagate as they are.
    """
    import contextlib

    import yaml

    from .trust import building_from_run

    guard = contextlib.nullcontext() if run_config is None else building_from_run(run_config, trust_code=trust_code)
    try:  # build phase: only an error here is an error of the config
        with guard:
            seed = int(cfg.get("trainer.seed", 0) or 0)
            seed_everything(seed, verbose=False)
            data = size_model_from_data(cfg)  # the model's data-sized arguments go into cfg before anything is built
            with warnings.catch_warnings():  # skip_none is deprecated in newer jsonargparse, still the right meaning
                warnings.simplefilter("ignore")
                resolved = yaml.safe_load(parser.dump(cfg, skip_none=False))
            resolved.pop("config", None)
            # weights are initialised while the config is instantiated: seed first, so a run is repeatable
            seed_everything(seed, verbose=False)
            if data is None:
                init = instantiate(parser, cfg)
            else:  # the data module already built and set up to size the model (the same config section): not again
                rest = cfg.clone()
                del rest["data"]
                init = instantiate(parser, rest)
                init.data = data
    except ConfigError:
        raise
    except Exception as e:  # a constructor's error, often wrapped by jsonargparse: keep the lines that say what failed
        raise ConfigError(f"cannot build the objects of the config: {error_lines(e) or type(e).__name__}") from e
    if resume is not None:
        return init.trainer.fit(init.model, init.data, init.objective, resume=resume, config=resolved)
    return init.trainer.fit(init.model, init.data, init.objective, config=resolved)


def size_model_from_data(cfg: Namespace) -> Any:
    """Complete ``cfg.model``'s constructor arguments that the data determine, before the model is built.

    One config convention: ``config.yaml`` holds what each constructor received. A model whose
    size depends on its data (:class:`~vaekit.models.group.GroupPredictor`) declares those
    arguments (:meth:`LatentVariableModel.data_args <vaekit.models.LatentVariableModel.data_args>`);
    the config may leave them out. Then the data module of ``cfg.data`` is built and set up
    first, the arguments it determines are written into ``cfg.model.init_args`` (a value the
    config gives must equal the data's), and only then is the model built, from the completed
    config: the same as :meth:`~vaekit.models.LatentVariableModel.from_data` in Python.

    Returns
    -------
    DataModule or None
        The set-up data module (the caller uses it instead of building a second one), or
        None when the model takes no argument from the data.

    Raises
    ------
    ValueError
        When a model argument given in the config differs from the value the data determine.
    """
    spec = cfg.get("model")
    path = getattr(spec, "class_path", None) if spec is not None else None
    if not isinstance(path, str):
        return None
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name, None)
    if not (inspect.isclass(cls) and issubclass(cls, LatentVariableModel)) \
            or cls.data_args.__func__ is LatentVariableModel.data_args.__func__:  # takes nothing from the data
        return None
    data_parser = ArgumentParser(exit_on_error=False, default_env=False)
    data_parser.add_subclass_arguments(DataModule, "data", required=True)
    data = instantiate(data_parser, Namespace(data=cfg.data)).data
    if spec.init_args is None:
        spec.init_args = Namespace()
    given = spec.init_args.as_dict() if isinstance(spec.init_args, Namespace) else dict(spec.init_args)
    for key, value in cls.args_for_data(data, given).items():
        spec.init_args[key] = value
    return data


def fit_config(config: Mapping[str, Any], *, resume: str | None = None) -> Any:
    """Train from a config dict (the same tree as a YAML file). Returns the :class:`~vaekit.training.FitResult`.

    Unknown keys are rejected by :func:`check_config_keys` before anything is built.
    """
    check_config_keys(config)
    parser = build_fit_parser()
    cfg = parser.parse_object(dict(config))
    return fit_namespace(parser, cfg, resume=resume)


def error_lines(error: BaseException | str, max_lines: int = 12) -> str:
    """The lines of a jsonargparse error (or its message) that say what failed, at most ``max_lines``.

    jsonargparse tries every type a value may have and reports each try; the lines about
    the ``None`` alternative and the repeated ``Given value`` are dropped.

    >>> error_lines("Parser key 'lr':\\n  Expected a <class 'NoneType'>. Got value: x\\n  Given value type: str\\n  not a float")
    "Parser key 'lr':\\n  not a float"
    """
    lines = [ln.rstrip() for ln in str(error).strip().splitlines() if ln.strip()]
    keep = [ln for ln in lines if "Expected a <class 'NoneType'>" not in ln and not ln.lstrip().startswith("Given value")]
    return "\n".join(keep[:max_lines])


# ---------------------------------------------------------------------------------- key check
def _accepted(cls: Any) -> list[str] | None:
    """Constructor parameter names of ``cls`` (None when it takes ``**kwargs``)."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return [n for n, p in sig.parameters.items() if p.kind is not p.VAR_POSITIONAL]


def _import(path: str, where: str) -> Any:
    module, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"{where}.class_path: cannot import {path!r}; give the full dotted path of a class, "
                          f"e.g. 'vaekit.models.VAE'") from None


def _unknown(key: str, where: str, accepted: list[str]) -> ConfigError:
    near = difflib.get_close_matches(key, accepted, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return ConfigError(f"unknown config key {key!r} in {where}{hint}; accepted keys: {', '.join(sorted(accepted))}")


def _check_class_spec(spec: Mapping[str, Any], where: str) -> None:
    extra = set(spec) - {"class_path", "init_args", "dict_kwargs"}
    if "class_path" not in spec:
        return
    cls = _import(str(spec["class_path"]), where)
    if extra:
        # jsonargparse also accepts init args next to class_path
        spec = {"class_path": spec["class_path"], "init_args": {**{k: spec[k] for k in extra}, **(spec.get("init_args") or {})}}
    init_args = spec.get("init_args") or {}
    if not isinstance(init_args, Mapping):
        raise ConfigError(f"{where}.init_args must be a mapping of constructor arguments, got {type(init_args).__name__}")
    check_init_args(cls, init_args, f"{where} ({spec['class_path']})")


def check_init_args(cls: Any, args: Mapping[str, Any], where: str) -> None:
    """Reject an argument that ``cls``'s constructor does not take, at any depth of ``class_path`` specs.

    Parameters
    ----------
    cls : class or function
        What the arguments are for (a constructor taking ``**kwargs`` accepts every key).
    args : mapping
        Its arguments as read from a config; nested ``{class_path, init_args}`` values (and
        lists of them) are checked against the classes they name.
    where : str
        The arguments' place in the config, named in the error (e.g. ``"trainer"``).

    Raises
    ------
    ConfigError
        For the first unknown key, naming it, ``where``, a close match and the accepted keys.

    >>> from vaekit.training import Trainer
    >>> check_init_args(Trainer, {"max_epochs": 3}, "trainer")
    >>> check_init_args(Trainer, {"max_epoch": 3}, "trainer")
    Traceback (most recent call last):
    ...
    vaekit.config.ConfigError: unknown config key 'max_epoch' in trainer (did you mean 'max_epochs'?); accepted keys: ...
    """
    accepted = _accepted(cls)
    if accepted is not None:
        for key in args:
            if key not in accepted:
                raise _unknown(key, where, accepted)
    for key, value in args.items():
        if isinstance(value, Mapping) and "class_path" in value:
            _check_class_spec(value, f"{where}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping) and "class_path" in item:
                    _check_class_spec(item, f"{where}.{key}[{i}]")


def check_config_keys(cfg: Mapping[str, Any]) -> None:
    """Reject unknown keys anywhere in a fit config, naming the key and the accepted ones.

    Parameters
    ----------
    cfg : mapping
        A config as read from YAML.

    Raises
    ------
    ConfigError
        For the first unknown key, with a close-match suggestion.

    Examples
    --------
    >>> check_config_keys({"trainer": {"max_epoch": 3}})
    Traceback (most recent call last):
    ...
    vaekit.config.ConfigError: unknown config key 'max_epoch' in trainer (did you mean 'max_epochs'?); accepted keys: ...
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"a config must be a mapping of sections, got {type(cfg).__name__}")
    for key, value in cfg.items():
        if key not in TOP_LEVEL_KEYS:
            raise _unknown(key, "the top level", [k for k in TOP_LEVEL_KEYS if k != "config"])
        if key == "trainer" and isinstance(value, Mapping):
            check_init_args(Trainer, value, "trainer")
        elif key in ("model", "data", "objective") and isinstance(value, Mapping):
            if "class_path" not in value:
                raise ConfigError(f"{key} needs a class_path (e.g. {_EXAMPLES[key]!r}) and its init_args")
            _check_class_spec(value, key)


_EXAMPLES = {"model": "vaekit.models.VAE", "data": "vaekit.data.MNIST", "objective": "vaekit.objectives.ELBO"}
