"""Constructors remember their arguments, so any object built in Python has a config.

Configs are the constructors (ARCHITECTURE.md): a YAML ``class_path``/``init_args`` tree
builds a model through jsonargparse. :class:`Configurable` closes the loop the other way:
an object built in Python records the arguments of its outermost ``__init__`` call, and
:func:`to_config` turns it (recursively) back into that same tree. The training loop
writes it to ``config.yaml``, so ``vaekit.load(run_dir)`` rebuilds a model trained from
the Python API exactly as one trained from the CLI. Nothing is pickled.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

__all__ = ["Configurable", "to_config", "has_config"]

_ATTR = "_vaekit_init"


class Configurable:
    """Mixin: instances record ``(class, bound init arguments)`` of their construction.

    Examples
    --------
    >>> class Foo(Configurable):
    ...     def __init__(self, a: int, b: str = "x"):
    ...         self.a = a
    >>> to_config(Foo(3))
    {'class_path': 'vaekit._recording.Foo', 'init_args': {'a': 3, 'b': 'x'}}
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_vaekit_wrapped", False):
            return
        sig = inspect.signature(init)

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kw: Any) -> None:
            if _ATTR not in self.__dict__:
                try:
                    bound = sig.bind(self, *args, **kw)
                    bound.apply_defaults()
                    params = dict(list(bound.arguments.items())[1:])
                except TypeError:
                    params = None  # let the real __init__ raise its own error
                object.__setattr__(self, _ATTR, (type(self), params))
            init(self, *args, **kw)

        __init__._vaekit_wrapped = True  # type: ignore[attr-defined]
        cls.__init__ = __init__  # type: ignore[method-assign]


def update_recorded_args(obj: Any, updates: Mapping[str, Any]) -> None:
    """Overwrite some of the constructor arguments ``obj`` recorded (e.g. sizes a model derived
    from its data in ``bind_data``), so :func:`to_config` rebuilds the object as it is now.

    >>> class Foo(Configurable):
    ...     def __init__(self, a: int, n: int | None = None):
    ...         self.a, self.n = a, n
    >>> f = Foo(1)
    >>> update_recorded_args(f, {"n": 5})
    >>> to_config(f)["init_args"]
    {'a': 1, 'n': 5}
    """
    rec = getattr(obj, "__dict__", {}).get(_ATTR)
    if rec is None or rec[1] is None:
        return
    cls, params = rec
    object.__setattr__(obj, _ATTR, (cls, {**params, **dict(updates)}))


def recorded_args(obj: Any) -> dict[str, Any] | None:
    """The constructor arguments ``obj`` recorded (a copy), or None when it recorded none."""
    rec = getattr(obj, "__dict__", {}).get(_ATTR)
    return None if rec is None or rec[1] is None else dict(rec[1])


def has_config(obj: Any) -> bool:
    """Whether ``obj`` recorded its constructor arguments."""
    rec = getattr(obj, "__dict__", {}).get(_ATTR)
    return rec is not None and rec[1] is not None


def to_config(value: Any, where: str = "value") -> Any:
    """The ``class_path``/``init_args`` tree that rebuilds ``value``.

    Raises
    ------
    TypeError
        When some argument cannot be written to YAML (an object that did not record its
        construction, a tensor, an array); the message names the argument path.
    """
    rec = getattr(value, "__dict__", {}).get(_ATTR) if hasattr(value, "__dict__") else None
    if rec is not None and rec[1] is not None:
        cls, params = rec
        args = {}
        for k, v in params.items():
            if k in ("args", "kwargs") and isinstance(v, (tuple, dict)) and not v:
                continue
            args[k] = to_config(v, f"{where}.{k}")
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": args}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [to_config(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): to_config(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"{where} is a {type(value).__name__}, which cannot be written to a config; build it from "
                    "vaekit classes (or your own classes deriving from vaekit's bases) with plain arguments")
