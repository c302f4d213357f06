"""What a constructor's annotations say jsonargparse does with a config value (see :mod:`vaekit.trust`)."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from pathlib import PurePath
from typing import Any

_LEAF = (str, bytes, int, float, complex, bool, type(None), PurePath, Enum, dict, list, tuple, set, frozenset)
_PLAIN_MODULES = ("builtins", "collections.abc", "typing", "numbers", "pathlib")


def _hints(obj: Any) -> tuple[dict[str, Any], Any]:
    """``({parameter: annotation}, annotation of **kwargs or None)`` of a class's constructor or a function."""
    fn = inspect.unwrap(obj.__init__ if inspect.isclass(obj) else obj)
    try:
        resolved = typing.get_type_hints(fn)
    except Exception:  # one annotation that does not resolve: resolve the others one by one
        resolved = {}
        for name, text in getattr(fn, "__annotations__", {}).items():
            try:
                resolved[name] = eval(text, getattr(fn, "__globals__", {})) if isinstance(text, str) else text
            except Exception:
                pass
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return {}, Any
    out, var_kw = {}, None
    for name, p in params.items():
        ann = resolved.get(name, p.annotation)
        ann = Any if ann is inspect.Parameter.empty else ann
        ann = _UNRESOLVED if isinstance(ann, str) else ann
        if p.kind is p.VAR_KEYWORD:
            var_kw = ann
        elif p.kind is not p.VAR_POSITIONAL:
            out[name] = ann
    return out, var_kw


_UNRESOLVED = object()  # an annotation that did not resolve: treated as "may import a string"


def _members(ann: Any) -> list[Any]:
    """The alternatives of a union annotation (the annotation itself otherwise)."""
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        return [m for a in typing.get_args(ann) for m in _members(a)]
    if origin is typing.Annotated:
        return _members(typing.get_args(ann)[0])
    return [ann]


def _is_any(ann: Any) -> bool:
    return ann is Any or ann is object or ann is _UNRESOLVED or isinstance(ann, typing.TypeVar)


def _class_bases(ann: Any) -> list[type] | None:
    """Classes a value at ``ann`` may be given as (jsonargparse imports a string there, or reads
    it as a nested config file); ``None`` when the annotation did not resolve (anything may be)."""
    out: list[type] = []
    for m in _members(ann):
        if m is _UNRESOLVED:
            return None
        if _is_any(m):
            continue
        origin, args = typing.get_origin(m), typing.get_args(m)
        if origin is type or m is type:
            out.append(args[0] if args and inspect.isclass(args[0]) else object)
        elif origin is Callable or m is Callable:
            ret = args[-1] if args else None
            out.append(ret if inspect.isclass(ret) else object)
        elif (inspect.isclass(m) and origin is None and not issubclass(m, _LEAF)
              and m.__module__ not in _PLAIN_MODULES):
            out.append(m)
    return out


def _element(ann: Any, index: int | None) -> Any:
    """Annotation of item ``index`` of a list, or of a mapping's values (``index=None``), at ``ann``."""
    if ann is _UNRESOLVED:
        return _UNRESOLVED
    found = []
    for m in _members(ann):
        origin, args = typing.get_origin(m), typing.get_args(m)
        if origin is None or not args or not inspect.isclass(origin):
            continue
        if index is None and issubclass(origin, Mapping):
            found.append(args[-1])
        elif index is not None and origin is tuple:
            found.append(args[0] if len(args) == 2 and args[1] is Ellipsis else args[min(index, len(args) - 1)])
        elif index is not None and issubclass(origin, Iterable) and not issubclass(origin, Mapping):
            found.append(args[0])
    if not found:
        return Any
    return found[0] if len(found) == 1 else typing.Union[tuple(found)]


def _accepts_mapping(ann: Any) -> bool:
    for m in _members(ann):
        origin = typing.get_origin(m) or m
        if _is_any(m) or (inspect.isclass(origin) and issubclass(origin, Mapping)):
            return True
    return False


def _named(bases: Sequence[type] | None, name: str) -> list[type]:
    """The already imported classes called ``name`` that jsonargparse may resolve a bare name to:
    subclasses of ``bases`` (of anything when ``bases`` is empty or unknown)."""
    seen: dict[int, type] = {}
    stack = list(bases or [object])
    while stack:
        cls = stack.pop()
        if id(cls) in seen:
            continue
        seen[id(cls)] = cls
        try:
            stack.extend(type.__subclasses__(cls))
        except TypeError:
            pass
    return [c for c in seen.values() if c.__name__ == name]
