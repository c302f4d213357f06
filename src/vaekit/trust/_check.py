"""The check of a run directory's config, before anything in it is imported (see :mod:`vaekit.trust`)."""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..config import ConfigError
from ._registry import _OUTSIDE, UntrustedConfigError, TrustWarning, _loaders, _path_of, _Policy
from ._types import _UNRESOLVED, _accepts_mapping, _class_bases, _element, _hints, _is_any, _members, _named

__all__ = ["check_config_trust", "building_from_run", "refuse_code_loading", "SECTION_BASES"]

#: Base classes of the sections of a run's config (for bare class names).
SECTION_BASES = {"model": "vaekit.models.LatentVariableModel", "data": "vaekit.data.DataModule",
                 "objective": "vaekit.objectives.Objective"}


class _Walk:
    """One pass over a config: refuses (or, with ``trust_code``, lists) what lies outside the policy."""

    def __init__(self, policy: _Policy, file: str | None, trust_code: bool) -> None:
        self.policy, self.file, self.trust_code = policy, file, trust_code
        self.outside: list[str] = []  # what trust_code=True builds from outside the registry
        self.loaders = _loaders()

    def refuse(self, name: str, where: str, what: str, allowable: bool = True) -> None:
        """Raise :class:`UntrustedConfigError` for ``name`` at key ``where`` (list it with ``trust_code``)."""
        if self.trust_code:
            self.outside.append(f"{where}: {name}")
            return
        raise UntrustedConfigError(what, name, where, self.file, allowable)

    def value(self, value: Any, ann: Any, where: str) -> None:
        if isinstance(value, Mapping):
            if "class_path" in value:
                self.spec(value, ann, where)
                return
            bases = _class_bases(ann)
            if (bases is None or bases) and not _accepts_mapping(ann):
                # a mapping where a class is expected: arguments of that class (jsonargparse's implicit
                # class_path), or of one the parser picks (then every string is checked as if imported)
                hints, var_kw = _hints(bases[0]) if bases and len(bases) == 1 else ({}, _UNRESOLVED)
                args = {**{k: v for k, v in value.items() if k != "init_args"}, **dict(value.get("init_args") or {})}
                for k, v in args.items():
                    self.value(v, hints.get(k, _UNRESOLVED if var_kw is None else var_kw), f"{where}.{k}")
                return
            for k, v in value.items():
                self.value(v, _element(ann, None), f"{where}.{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                self.value(v, _element(ann, i), f"{where}[{i}]")
        elif isinstance(value, str):
            bases = _class_bases(ann)
            if bases is None or bases:
                self.class_string(value, bases, where)
            if any(_is_any(m) for m in _members(ann)):  # jsonargparse reads a string there as YAML
                import yaml

                try:
                    parsed = yaml.safe_load(value)
                except yaml.YAMLError:
                    return
                if isinstance(parsed, (Mapping, list)):
                    self.value(parsed, Any, where)

    def class_string(self, value: str, bases: list[type] | None, where: str) -> None:
        """A string where jsonargparse accepts a class: a class path, a bare class name or a config file."""
        if value.isidentifier():  # nothing is imported for a bare name; an imported class may be picked
            for cls in _named(bases, value) if bases is not None else []:
                if not self.policy.accepts(cls):
                    self.refuse(_path_of(cls), where, f"{value!r} resolves to the class {_path_of(cls)}, which {_OUTSIDE}")
            return
        if not self.policy.lookup(value)[0]:
            if "/" in value or os.sep in value or value.endswith((".yaml", ".yml", ".json")):
                self.refuse(value, where, f"{value!r} would be read as a nested config file", allowable=False)
            else:
                self.refuse(value, where, f"{value!r} would be imported as a class and {_OUTSIDE}")

    def resolve(self, cp: str, spec: Mapping[str, Any], ann: Any, where: str) -> Any:
        """The object ``class_path`` names, if it is imported already (``None`` otherwise); refuses
        it unless the policy accepts it."""
        if cp.isidentifier():  # a bare class name, resolved among imported subclasses as jsonargparse does
            found = _named(_class_bases(ann), cp)
            if len(found) != 1:
                self.refuse(cp, where, f"class_path {cp!r} is a bare class name that matches {len(found)} imported "
                            "classes here (a run's config names full class paths)", allowable=False)
                return None
            if not self.policy.accepts(found[0]):
                self.refuse(_path_of(found[0]), where, f"class_path {cp!r} resolves to {_path_of(found[0])}, which {_OUTSIDE}")
            return found[0]
        accepted, obj = self.policy.lookup(cp)
        if any(obj is f for f in self.loaders):
            init = spec.get("init_args")
            source = init.get("source") if isinstance(init, Mapping) else None
            self.refuse(f"{cp}(source={source!r})", where, f"class_path {cp!r} imports and runs the code its source "
                        f"names (source={source!r})", allowable=False)
        elif not accepted:
            self.refuse(cp, where, f"class_path {cp!r} {_OUTSIDE}")
        elif obj is None:  # a path the caller allowed by name: importing it is what they asked for
            module, _, name = cp.rpartition(".")
            try:
                obj = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                obj = None  # the parser reports it
        return obj

    def spec(self, spec: Mapping[str, Any], ann: Any, where: str) -> None:
        cp = spec.get("class_path")
        if not isinstance(cp, str):
            raise ConfigError(f"{self.file or 'the config'}: {where}.class_path must be a dotted class path, got {cp!r}")
        for key in ("init_args", "dict_kwargs"):
            if spec.get(key) is not None and not isinstance(spec[key], Mapping):
                raise ConfigError(f"{self.file or 'the config'}: {where}.{key} must be a mapping of arguments, "
                                  f"got {type(spec[key]).__name__} {spec[key]!r}")
        obj = self.resolve(cp, spec, ann, where)
        extra = {k: v for k, v in spec.items() if k not in ("class_path", "init_args", "dict_kwargs")}
        args = {**extra, **dict(spec.get("init_args") or {}), **dict(spec.get("dict_kwargs") or {})}
        # arguments of a class not imported yet: strict (a path allowed by name), or only listed (trust_code)
        hints, var_kw = _hints(obj) if obj is not None else ({}, Any if self.trust_code else _UNRESOLVED)
        for k, v in args.items():
            self.value(v, hints.get(k, _UNRESOLVED if var_kw is None else var_kw), f"{where}.init_args.{k}")


_UNTRUSTED_BUILD: contextvars.ContextVar[str | None] = contextvars.ContextVar("vaekit_untrusted_build", default=None)


@contextlib.contextmanager
def building_from_run(file: str | os.PathLike[str], *, trust_code: bool = False) -> Iterator[None]:
    """Mark objects built inside the block as built from a run directory's config ``file``.

    A second line of defence behind :func:`check_config_trust`: while it is active (and
    ``trust_code`` is false) the code loaders refuse to run (:func:`refuse_code_loading`).
    """
    token = _UNTRUSTED_BUILD.set(None if trust_code else str(file))
    try:
        yield
    finally:
        _UNTRUSTED_BUILD.reset(token)


def refuse_code_loading(source: str) -> None:
    """Called by the code loaders before they import or run ``source``: refuses inside
    :func:`building_from_run` without ``trust_code``.

    Raises
    ------
    UntrustedConfigError
    """
    file = _UNTRUSTED_BUILD.get()
    if file is not None:
        raise UntrustedConfigError(f"source {source!r} would be imported and run", str(source), "from_python", file,
                                   allowable=False)


def check_config_trust(config: Mapping[str, Any], *, file: str | os.PathLike[str] | None = None,
                       trust_code: bool = False, allow: Iterable[Any] = ()) -> list[str]:
    """Refuse, before anything is imported, a run-directory config that names code outside the registry.

    Parameters
    ----------
    config : mapping
        Sections of a run's ``config.yaml`` (``model``, ``data``, ``objective``, ``trainer``),
        all of them or only those about to be built.
    file : path, optional
        The config file, named in errors and warnings.
    trust_code : bool
        Build whatever the config names; a :class:`TrustWarning` lists what lies outside the registry.
    allow : iterable of class, function or str
        Classes or factories (or their dotted paths) to accept for this call, as
        :func:`register_constructible` does for the whole process.

    Returns
    -------
    list of str
        ``"key: class path"`` of each entry outside the registry (empty unless ``trust_code``).

    Raises
    ------
    UntrustedConfigError
        Without ``trust_code``, for the first such entry: names it, its key, the file and the flag.
    ConfigError
        For a config that is not a mapping of sections, or a malformed ``class_path`` spec.

    Examples
    --------
    >>> check_config_trust({"model": {"class_path": "vaekit.models.VAE", "init_args": {"data_shape": [4]}}})
    []
    >>> check_config_trust({"model": {"class_path": "os.system", "init_args": {"command": "ls"}}}, file="run/config.yaml")
    Traceback (most recent call last):
    ...
    vaekit.trust.UntrustedConfigError: run/config.yaml: model: class_path 'os.system' is not in vaekit's registry ...
    """
    file_s = None if file is None else str(file)
    if not isinstance(config, Mapping):
        raise ConfigError(f"{file_s or 'the config'} must hold a mapping of sections (model, data, objective, trainer), "
                          f"got {type(config).__name__}")
    walk = _Walk(_Policy(allow), file_s, bool(trust_code))
    for section, value in config.items():
        if section == "trainer":
            from ..training import Trainer

            if not isinstance(value, Mapping):
                walk.refuse(str(value), "trainer", f"{value!r} is not a mapping of Trainer arguments (a string here "
                            "is read as a nested config file)", allowable=False)
                continue
            hints, _ = _hints(Trainer)
            for k, v in value.items():
                walk.value(v, hints.get(k, Any), f"trainer.{k}")
        elif section in SECTION_BASES:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                walk.refuse(str(value), section, f"{value!r} is not a class_path/init_args mapping (a string here "
                            "is imported or read as a nested config file)", allowable=False)
                continue
            module, _, name = SECTION_BASES[section].rpartition(".")
            walk.value(value, getattr(importlib.import_module(module), name), section)
        elif section == "config":  # jsonargparse would read the file it names, unchecked
            walk.refuse(str(value), "config", f"{value!r} would be read as a nested config file", allowable=False)
        else:
            walk.value(value, Any, section)
    if walk.outside:
        warnings.warn(f"trust_code=True: building code from outside vaekit's registry named by {file_s or 'the config'}: "
                      + "; ".join(walk.outside), TrustWarning, stacklevel=2)
    return walk.outside
