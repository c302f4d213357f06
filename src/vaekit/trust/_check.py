"""The check of a run directory's config, before anything in it is imported (see :mod:`vaekit.trust`)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..config import ConfigError
from ._registry import _OUTSIDE, TrustWarning, UntrustedConfigError, _loaders, _path_of, _Policy
from ._types import _UNRESOLVED, _accepts_mapping, _class_bases, _element, _hints, _keeps_strings, _may_hold_class, _named

__all__ = ["check_config_trust", "resolve_class_path", "building_from_run", "refuse_code_loading", "SECTION_BASES"]

#: Base classes of the sections of a run's config (for bare class names).
SECTION_BASES = {"model": "vaekit.models.LatentVariableModel", "data": "vaekit.data.DataModule",
                 "objective": "vaekit.objectives.Objective"}


#: The most values (at any depth, aliases counted each time) a run's config may hold.
MAX_VALUES = 200_000
#: Keys of a mapping that jsonargparse reads as a ``class_path`` spec (any other key: as arguments).
_SPEC_KEYS = frozenset({"class_path", "init_args", "dict_kwargs", "__path__"})
_CONTAINERS = (Mapping, list, tuple, set, frozenset)


class _Walk:
    """One pass over a config: refuses (or, with ``trust_code``, lists) what lies outside the policy.

    The walk reads every value at the annotation jsonargparse reads it at, and where that is not
    certain, at each annotation it may be read at (a sound overapproximation: what it lets through,
    jsonargparse cannot import, run or read as a file).
    """

    def __init__(self, policy: _Policy, file: str | None, trust_code: bool) -> None:
        self.policy, self.file, self.trust_code = policy, file, trust_code
        self.outside: list[str] = []  # what trust_code=True builds from outside the registry
        self.loaders = _loaders()
        self.open: set[int] = set()  # containers being walked (a YAML alias may contain itself)
        self.keep: list[Any] = []  # containers parsed from strings, alive while the walk runs
        self.seen = 0  # values walked (YAML aliases can make a small file hold billions)

    def refuse(self, name: str, where: str, what: str, allowable: bool = True) -> None:
        """Raise :class:`UntrustedConfigError` for ``name`` at key ``where`` (list it with ``trust_code``)."""
        if self.trust_code:
            self.outside.append(f"{where}: {name}")
            return
        raise UntrustedConfigError(what, name, where, self.file, allowable)

    def value(self, value: Any, ann: Any, where: str) -> None:
        self.seen += 1
        if self.seen > MAX_VALUES:
            raise ConfigError(f"{self.file or 'the config'} holds more than {MAX_VALUES:,} values (YAML aliases that "
                              f"repeat one another?); {where} is one too many")
        if isinstance(value, _CONTAINERS):
            if id(value) in self.open:
                raise ConfigError(f"{self.file or 'the config'}: {where} contains itself (a YAML alias to an "
                                  "enclosing value)")
            self.open.add(id(value))
            try:
                if isinstance(value, Mapping):
                    self.mapping(value, ann, where)
                else:  # a list; a set or tuple (YAML !!set, !!omap) is read as one too
                    for i, v in enumerate(value):
                        self.value(v, _element(ann, i), f"{where}[{i}]")
            finally:
                self.open.discard(id(value))
        elif isinstance(value, str):
            self.string(value, ann, where)

    def mapping(self, value: Mapping[Any, Any], ann: Any, where: str) -> None:
        if "class_path" in value:
            self.spec(value, ann, where)
            if set(value) <= _SPEC_KEYS:
                return
            # other keys beside class_path: jsonargparse does not read it as a spec, but as arguments
        bases = _class_bases(ann)
        if bases is None or bases:
            # a mapping where a class is expected: the arguments of that class (jsonargparse's implicit
            # class_path), read with the annotations of each class it may be
            for base in bases or [None]:
                hints, var_kw = _hints(base) if base is not None and base is not object else ({}, _UNRESOLVED)
                self.arguments(value, hints, var_kw, where)
        if not bases or _accepts_mapping(ann):
            for k, v in value.items():
                self.value(v, _element(ann, None), f"{where}.{k}")

    def arguments(self, value: Mapping[Any, Any], hints: Mapping[str, Any], var_kw: Any, where: str) -> None:
        """The arguments of a class: ``value``'s keys, those of its ``init_args`` and ``dict_kwargs``
        (a key it does not take: at its ``**kwargs``, or strictly when it has none)."""
        for k, v in value.items():
            if k in ("init_args", "dict_kwargs") and isinstance(v, Mapping):
                self.arguments(v, hints, var_kw, f"{where}.{k}")
                continue
            self.key(k, where)
            self.value(v, hints.get(k, _UNRESOLVED if var_kw is None else var_kw), f"{where}.{k}")

    def key(self, key: Any, where: str) -> None:
        """jsonargparse reads a dotted key of a class's arguments as nested keys (``encoder.class_path``)."""
        if isinstance(key, str) and "." in key:
            nested = ".".join(repr(part) for part in key.split("."))
            self.refuse(key, f"{where}.{key}" if where else key, f"the key {key!r} holds a dot, which jsonargparse "
                        f"would read as the nested keys {nested} (a run's config writes nested mappings)", allowable=False)

    def string(self, value: str, ann: Any, where: str) -> None:
        if _keeps_strings(ann):
            return
        bases = _class_bases(ann)
        classy = bases is None or bool(bases)
        if (classy or _may_hold_class(ann)) and _names_a_file(value, self.file):
            self.refuse(value, where, f"{value!r} would be read as a nested config file", allowable=False)
            return
        parsed = _yaml_containers(value)  # jsonargparse parses a string as YAML and reads a list or mapping at ann
        self.keep.extend(parsed)
        if classy and (not parsed or any(getattr(b, "__module__", "") == "types" for b in bases or [])):
            self.class_string(value, bases, where)
        for p in parsed:
            self.value(p, ann, where)

    def class_string(self, value: str, bases: list[type] | None, where: str) -> None:
        """A string where jsonargparse accepts a class: a class path, a bare class name or a config file."""
        if value.isidentifier():  # nothing is imported for a bare name; an imported class may be picked
            for cls in _named(bases, value):
                if not self.policy.accepts(cls):
                    self.refuse(_path_of(cls), where, f"{value!r} resolves to the class {_path_of(cls)}, which {_OUTSIDE}")
            return
        if any(getattr(b, "__module__", "") == "types" for b in bases or []):  # a module, a type expression
            self.refuse(value, where, f"{value!r} would be imported as a module or type expression", allowable=False)
        elif not self.policy.lookup(value)[0]:
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
        if accepted and obj is None:  # a path the caller allowed by name: importing it is what they asked for
            module, _, name = cp.rpartition(".")
            try:
                obj = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError, ValueError):
                obj = None  # the parser reports it
        if any(obj is f for f in self.loaders):
            init = spec.get("init_args")
            source = init.get("source") if isinstance(init, Mapping) else None
            self.refuse(f"{cp}(source={source!r})", where, f"class_path {cp!r} imports and runs the code its source "
                        f"names (source={source!r})", allowable=False)
        elif not accepted:
            self.refuse(cp, where, f"class_path {cp!r} {_OUTSIDE}")
        return obj

    def spec(self, spec: Mapping[str, Any], ann: Any, where: str) -> None:
        cp = spec.get("class_path")
        if not isinstance(cp, str):
            raise ConfigError(f"{self.file or 'the config'}: {where}.class_path must be a dotted class path, got {cp!r}")
        for key in ("init_args", "dict_kwargs"):
            if spec.get(key) is not None and not isinstance(spec[key], Mapping):
                raise ConfigError(f"{self.file or 'the config'}: {where}.{key} must be a mapping of arguments, "
                                  f"got {type(spec[key]).__name__} {spec[key]!r}")
        for key in spec:
            self.key(key, where)
        obj = self.resolve(cp, spec, ann, where)
        # arguments of a class not imported yet: strict (a path allowed by name), or only listed (trust_code)
        hints, var_kw = _hints(obj) if obj is not None else ({}, Any if self.trust_code else _UNRESOLVED)
        self.arguments({k: v for k, v in spec.items() if k != "class_path"}, hints, var_kw, where)


def _names_a_file(value: str, config_file: str | None) -> bool:
    """Whether jsonargparse may read ``value`` as a config file: ``-`` (standard input), a URL, or
    a path that exists, relative to the working directory or to the config file's folder."""
    text = value.strip()
    if text == "-" or "://" in text or "::" in text:
        return True
    path = os.path.expanduser(text)
    folders = [os.getcwd()] + ([os.path.dirname(os.path.abspath(config_file))] if config_file else [])
    for folder in folders:
        try:
            if path and os.path.exists(os.path.join(folder, path)):
                return True
        except (OSError, ValueError):  # a NUL byte, a name too long: no file jsonargparse could open
            pass
    return False


@functools.lru_cache(maxsize=4096)
def _yaml_containers(value: str) -> list[Any]:
    """The lists and mappings YAML makes of ``value``, by each loader jsonargparse may use (cached:
    treat as read-only)."""
    import yaml

    out: list[Any] = []
    for loader in _YAML_LOADERS:
        try:
            parsed = yaml.load(value, Loader=loader)  # noqa: S506 (safe loaders only)
        except Exception:  # not YAML for this loader: jsonargparse keeps the string
            continue
        if isinstance(parsed, _CONTAINERS) and not any(_same(parsed, p) for p in out):
            out.append(parsed)
    return out


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _yaml_loaders() -> tuple[Any, ...]:
    import yaml

    return tuple(dict.fromkeys(l for l in (yaml.SafeLoader, getattr(yaml, "CSafeLoader", None)) if l is not None))


_YAML_LOADERS = _yaml_loaders()


class _Build:
    """A build of objects from a run directory's config, held to one policy (see :func:`building_from_run`)."""

    def __init__(self, file: str, policy: _Policy, where: str) -> None:
        self.file, self.policy, self.where = file, policy, where
        self.refused: list[UntrustedConfigError] = []

    def refuse(self, what: str, name: str, allowable: bool) -> UntrustedConfigError:
        error = UntrustedConfigError(what, name, self.where, self.file, allowable)
        self.refused.append(error)
        return error


_UNTRUSTED_BUILD: contextvars.ContextVar[_Build | None] = contextvars.ContextVar("vaekit_untrusted_build", default=None)


@contextlib.contextmanager
def building_from_run(file: str | os.PathLike[str], *, trust_code: bool = False, allow: Iterable[Any] = (),
                      where: str = "config") -> Iterator[None]:
    """Build objects from a run directory's config ``file`` inside the block, held to the registry.

    The second line of defence behind :func:`check_config_trust`. While the block runs (and
    ``trust_code`` is false), in this thread or task only:

    - jsonargparse imports only what :func:`check_config_trust` accepts (the registry, the
      process's registrations and ``allow``); any other import path it is given is refused
      before it is imported;
    - jsonargparse reads no file (a string given where a class is expected is never read as a
      nested config file);
    - the code loaders (``from_python``) refuse to run (:func:`refuse_code_loading`).

    Parameters
    ----------
    file : path
        The run's ``config.yaml``, named in the error.
    trust_code : bool
        Hold nothing back (the block runs as without this context).
    allow : iterable of class, function or str
        As in :func:`check_config_trust`.
    where : str
        The part of the config being built, named in the error (e.g. ``"model"``).

    Raises
    ------
    UntrustedConfigError
        When leaving the block, if anything was refused in it (even where jsonargparse went on
        without it), in place of the error the refusal caused.
    """
    build = None if trust_code else _Build(str(file), _Policy(allow), where)
    if build is not None:
        _install_guards()
    token = _UNTRUSTED_BUILD.set(build)
    try:
        yield
    except Exception as e:
        if build is not None and build.refused:
            raise build.refused[0] from e
        raise
    else:
        if build is not None and build.refused:
            raise build.refused[0]
    finally:
        _UNTRUSTED_BUILD.reset(token)


def refuse_code_loading(source: str) -> None:
    """Called by the code loaders before they import or run ``source``: refuses inside
    :func:`building_from_run` without ``trust_code``.

    Raises
    ------
    UntrustedConfigError
    """
    build = _UNTRUSTED_BUILD.get()
    if build is not None:
        raise build.refuse(f"source {source!r} would be imported and run", str(source), allowable=False)


_GUARD_LOCK = threading.Lock()
_GUARDED = False


def _install_guards() -> None:
    """Route jsonargparse's imports and config-file reads through :data:`_UNTRUSTED_BUILD` (once per
    process; outside :func:`building_from_run` they do what they did)."""
    global _GUARDED
    with _GUARD_LOCK:
        if _GUARDED:
            return
        import jsonargparse  # noqa: F401 (loads its modules)
        from jsonargparse import _paths, _util

        try:
            from jsonargparse._common import ImportDenied as denied
        except ImportError:  # an older jsonargparse
            denied = ImportError
        original = _util.import_object

        @functools.wraps(original)
        def import_object(name: Any, *args: Any, **kwargs: Any) -> Any:
            build = _UNTRUSTED_BUILD.get()
            from_code = kwargs.get("check_path", args[0] if args else True) is False  # a path from an annotation
            if build is not None and not from_code:
                accepted, obj = build.policy.lookup(str(name))
                if any(obj is f for f in _loaders()):
                    raise denied(build.refuse(f"jsonargparse would import {name!r}, which imports and runs the code "
                                              "its source names", str(name), allowable=False))
                if not accepted:
                    raise denied(build.refuse(f"jsonargparse would import {name!r}, which {_OUTSIDE}", str(name), True))
            return original(name, *args, **kwargs)

        for module in [m for n, m in list(sys.modules.items()) if n == "jsonargparse" or n.startswith("jsonargparse.")]:
            if vars(module).get("import_object") is original:
                module.import_object = import_object
        check = getattr(_util, "check_import_path", None)
        if check is not None:  # a module path (types.ModuleType arguments) is checked without import_object
            @functools.wraps(check)
            def check_import_path(path: str) -> None:
                build = _UNTRUSTED_BUILD.get()
                if build is not None and not build.policy.lookup(str(path))[0]:
                    raise denied(build.refuse(f"jsonargparse would import {path!r}, which {_OUTSIDE}", str(path), True))
                check(path)

            for module in [m for n, m in list(sys.modules.items()) if n.startswith("jsonargparse.")]:
                if vars(module).get("check_import_path") is check:
                    module.check_import_path = check_import_path
        read_text = _paths.Path.read_text

        @functools.wraps(read_text)
        def guarded_read_text(self: Any) -> str:
            build = _UNTRUSTED_BUILD.get()
            if build is not None:
                shown = getattr(self, "relative", None) or str(self)
                raise build.refuse(f"jsonargparse would read {shown!r} as a nested config file", str(shown),
                                   allowable=False)
            return read_text(self)

        _paths.Path.read_text = guarded_read_text
        _GUARDED = True


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
        walk.key(section, "")  # jsonargparse reads model.init_args.encoder as a key of the model section
        if section == "trainer":
            from ..training import Trainer

            if not isinstance(value, Mapping):
                walk.refuse(str(value), "trainer", f"{value!r} is not a mapping of Trainer arguments (a string here "
                            "is read as a nested config file)", allowable=False)
                continue
            hints, _ = _hints(Trainer)
            walk.arguments(value, hints, _UNRESOLVED, "trainer")
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


def resolve_class_path(spec: str | Mapping[str, Any], section: str = "model", *,
                       file: str | os.PathLike[str] | None = None, trust_code: bool = False,
                       allow: Iterable[Any] = ()) -> Any:
    """The class or factory a run's config names by ``class_path``, resolved as building it would, built never.

    Decides which kind of model a run holds from its ``config.yaml`` alone (``vaekit evaluate``
    takes the group-latent path for a :class:`~vaekit.models.GroupPredictor`). The path is
    held to the policy of :func:`check_config_trust` (a bare class name is looked up among
    the imported subclasses of the section's base class); only with ``trust_code`` is a path
    from outside the registry imported, as building it would import it. The arguments of the
    spec are not checked (:func:`check_config_trust` does, before the section is built).

    Parameters
    ----------
    spec : str or mapping
        A ``class_path``, e.g. ``"vaekit.models.VAE"``, or the section's ``{class_path,
        init_args}`` mapping (a code loader's refusal then names its ``source``).
    section : {"model", "data", "objective"}
    file : path, optional
        The config file, named in the error.
    trust_code, allow
        As in :func:`check_config_trust`.

    Returns
    -------
    class, function or None
        ``None`` when nothing of that name can be imported (building it would report it).

    Raises
    ------
    UntrustedConfigError
        Without ``trust_code``, when ``class_path`` lies outside the registry or names a code
        loader (nothing was imported).
    ConfigError
        When ``spec`` is a mapping whose ``class_path`` is not a string.

    Examples
    --------
    >>> resolve_class_path("vaekit.models.vae.VAE").__name__
    'VAE'
    >>> resolve_class_path({"class_path": "os.system"}, file="run/config.yaml")
    Traceback (most recent call last):
    ...
    vaekit.trust.UntrustedConfigError: run/config.yaml: model: class_path 'os.system' is not in vaekit's registry ...
    """
    if section not in SECTION_BASES:
        raise ValueError(f"section must be one of {list(SECTION_BASES)}, got {section!r}")
    spec = {"class_path": spec} if isinstance(spec, str) else spec
    cp = spec.get("class_path") if isinstance(spec, Mapping) else None
    if not isinstance(cp, str):
        raise ConfigError(f"{file or 'the config'}: {section}.class_path must be a dotted class path, got {cp!r}")
    module, _, name = SECTION_BASES[section].rpartition(".")
    walk = _Walk(_Policy(allow), None if file is None else str(file), bool(trust_code))
    obj = walk.resolve(cp, spec, getattr(importlib.import_module(module), name), section)
    if obj is None and trust_code and not cp.isidentifier():  # outside the registry, not imported yet
        module, _, name = cp.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError):
            return None
    return obj
