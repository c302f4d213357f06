"""What a constructor's annotations say jsonargparse does with a config value (see :mod:`vaekit.trust`)."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from pathlib import PurePath
from typing import Any

_LEAF = (str, bytes, int, float, complex, bool, type(None), PurePath, Enum, dict, list, tuple, set, frozenset)
_PLAIN_MODULES = ("builtins", "collections", "collections.abc", "typing", "numbers", "pathlib")


def _hints(obj: Any) -> tuple[dict[str, Any], Any]:
    """``({parameter: annotation}, annotation of **kwargs or None)`` of a class's constructor or a function.

    A parameter's annotation is the one in the signature and, where jsonargparse resolves the
    parameters otherwise (``**kwargs`` passed on to another class, annotations it reads from
    stubs), also the one jsonargparse uses: the walk reads a value both ways. Treat as read-only
    (cached).
    """
    try:
        return _cached_hints(obj)
    except TypeError:  # an unhashable class
        return _all_hints(obj)


def _all_hints(obj: Any) -> tuple[dict[str, Any], Any]:
    out, var_kw = _signature_hints(obj)
    for name, ann in _jsonargparse_hints(obj).items():
        out[name] = ann if name not in out or out[name] == ann else _either(out[name], ann)
    return out, var_kw


_cached_hints = functools.lru_cache(maxsize=1024)(_all_hints)


def _either(a: Any, b: Any) -> Any:
    """An annotation that reads a value as ``a`` and as ``b``."""
    if a is _UNRESOLVED or b is _UNRESOLVED:
        return _UNRESOLVED
    try:
        return typing.Union[a, b]
    except TypeError:
        return _UNRESOLVED


def _jsonargparse_hints(obj: Any) -> dict[str, Any]:
    """The parameters jsonargparse builds a parser of ``obj`` from (its own resolution: ``**kwargs``
    followed into the code they go to, stub files); empty when that cannot be asked."""
    try:
        from jsonargparse._parameter_resolvers import get_signature_parameters
    except ImportError:  # another jsonargparse: the signature's annotations alone
        return {}
    try:
        params = get_signature_parameters(obj, None, logger=False)
    except Exception:
        return {}
    out = {}
    for p in params:
        ann = getattr(p, "annotation", inspect.Parameter.empty)
        out[p.name] = Any if ann is inspect.Parameter.empty else _UNRESOLVED if isinstance(ann, (str, typing.ForwardRef)) else ann
    return out


def _signature_hints(obj: Any) -> tuple[dict[str, Any], Any]:
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
        return {}, _UNRESOLVED  # nothing known about its arguments: each is read strictly
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
_SCALARS = (str, bytes, int, float, complex, bool, type(None))


def _members(ann: Any) -> list[Any]:
    """The alternatives of a union annotation (the annotation itself otherwise), each as jsonargparse
    reads it: a ``TypeVar`` as its bound or constraints, a ``NewType`` as its supertype, ``Annotated``
    and ``Required``-like wrappers as what they wrap; a forward reference or any other object that is
    not a type as :data:`_UNRESOLVED`."""
    if ann is _UNRESOLVED or ann is Any or ann is None or ann is Ellipsis:
        return [type(None) if ann is None else ann]
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        return [m for a in typing.get_args(ann) for m in _members(a)]
    if origin is typing.Annotated or origin in _WRAPPERS:
        return _members(typing.get_args(ann)[0])
    if isinstance(ann, typing.TypeVar):
        if ann.__bound__ is not None:
            return _members(ann.__bound__)
        return [m for c in ann.__constraints__ for m in _members(c)] or [Any]
    if hasattr(ann, "__supertype__"):  # typing.NewType
        return _members(ann.__supertype__)
    if type(ann).__name__ == "TypeAliasType":  # type X = ... (Python 3.12, typing_extensions)
        return _members(ann.__value__)
    if isinstance(ann, (str, typing.ForwardRef)):
        return [_UNRESOLVED]
    if origin is None and not inspect.isclass(ann) and ann is not typing.Literal:
        return [_UNRESOLVED]  # an annotation this walk does not know: anything may be given there
    return [ann]


_WRAPPERS = tuple(w for w in (getattr(typing, n, None) for n in ("Required", "NotRequired", "ReadOnly", "Final"))
                  if w is not None)


def _is_any(ann: Any) -> bool:
    return ann is Any or ann is object or ann is _UNRESOLVED


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
        elif inspect.isclass(m) and origin is None and not issubclass(m, _LEAF) and m.__module__ not in _PLAIN_MODULES:
            out.append(m)
        elif (inspect.isclass(origin) and not issubclass(origin, _LEAF) and origin.__module__ not in _PLAIN_MODULES
              and origin is not type):  # a subscripted generic class, MyBlock[int]: built as MyBlock
            out.append(origin)
    return out


def _keeps_strings(ann: Any) -> bool:
    """Whether jsonargparse keeps a string at ``ann`` as data: every alternative is a scalar type, a
    ``Literal`` or an ``Enum``, so a string there is never imported, read as a file, or used as the
    container that YAML makes of it."""
    for m in _members(ann):
        if m in _SCALARS or typing.get_origin(m) is typing.Literal or (inspect.isclass(m) and issubclass(m, Enum)):
            continue
        return False
    return True


def _may_hold_class(ann: Any) -> bool:
    """Whether a value at ``ann`` is, or holds at any depth, a position where jsonargparse imports a
    string or reads it as a config file (a class, ``type[...]``, a callable, an unresolved annotation)."""
    bases = _class_bases(ann)
    if bases is None or bases:
        return True
    for m in _members(ann):
        if typing.get_origin(m) is typing.Literal:
            continue
        fields = _fields(m)
        inner = fields if fields is not None else [a for a in typing.get_args(m) if a is not Ellipsis and not isinstance(a, list)]
        if any(_may_hold_class(a) for a in inner):
            return True
    return False


def _fields(ann: Any) -> list[Any] | None:
    """The annotations of the fields of a ``TypedDict`` or ``NamedTuple`` (``None`` for other types)."""
    if not inspect.isclass(ann) or not (typing.is_typeddict(ann) or (issubclass(ann, tuple) and hasattr(ann, "_fields"))):
        return None
    try:
        return list(typing.get_type_hints(ann).values())
    except Exception:  # a field annotation that does not resolve
        return [_UNRESOLVED]


def _element(ann: Any, index: int | None) -> Any:
    """Annotation of item ``index`` of a list, or of a mapping's values (``index=None``), at ``ann``."""
    found = []
    for m in _members(ann):
        if m is _UNRESOLVED:
            return _UNRESOLVED
        fields = _fields(m)
        if fields is not None:  # a TypedDict, or a NamedTuple given as a list or a mapping
            found.extend(fields)
            continue
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
    if any(f is _UNRESOLVED for f in found):
        return _UNRESOLVED
    try:
        return found[0] if len(found) == 1 else typing.Union[tuple(found)]
    except TypeError:
        return _UNRESOLVED


def _accepts_mapping(ann: Any) -> bool:
    for m in _members(ann):
        origin = typing.get_origin(m) or m
        if _is_any(m) or _fields(m) is not None or (inspect.isclass(origin) and issubclass(origin, Mapping)):
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
