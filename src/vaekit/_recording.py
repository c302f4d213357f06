"""One config convention: an object's config is the arguments its constructor received.

Configs are the constructors (docs/design.md): a YAML ``class_path``/``init_args`` tree
builds a model through jsonargparse. :class:`Configurable` closes the loop the other way:
an object built in Python records the arguments of its outermost ``__init__`` call, when
that call is made, and :func:`to_config` turns it (recursively) back into that same tree.
The training loop writes it to ``config.yaml``, so ``vaekit.load(run_dir)`` rebuilds a model
trained from the Python API exactly as one trained from the CLI. Nothing is pickled.

Why recording, and only recording: vaekit's models are composed of objects (a predictor
inside a group model, a posterior family inside a VAE) whose constructors do not keep every
argument as an attribute of the same name, so scikit-learn's ``get_params`` (read the
attributes back) cannot rebuild them; recording can, for every class, with nothing to
declare. The :class:`~vaekit.training.Trainer` records its arguments the same way (its
``get_params`` returns them). A recorded argument is never rewritten after construction: a
model whose size depends on its data receives that size from the data *before* it is built
(:meth:`LatentVariableModel.from_data <vaekit.models.LatentVariableModel.from_data>`, and
``vaekit fit`` for a config that leaves it out), so the config holds exactly what the
constructor received. The one adjustment is declared by the class and made when the
arguments are recorded: :meth:`Configurable.canonical_args` gives the context-free form of an
argument whose meaning depends on where it was given (a relative path becomes absolute).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

__all__ = ["Configurable", "to_config", "has_config", "recorded_args"]

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

    A context-free form of an argument, declared by the class, is what is recorded:

    >>> class Named(Configurable):
    ...     @classmethod
    ...     def canonical_args(cls, args):
    ...         return {**args, "name": args["name"].strip().lower()}
    ...     def __init__(self, name: str):
    ...         self.name = name
    >>> to_config(Named(" Anna "))["init_args"]
    {'name': 'anna'}
    """

    @classmethod
    def canonical_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        """The constructor arguments as they are recorded (by default: as received).

        Called once, when the object is constructed (before its ``__init__`` runs), with the
        bound arguments. A class whose argument depends on the context it was given in (a path
        relative to the working directory) returns the equivalent context-free form, so the
        recorded config means the same from anywhere. An argument this cannot read (an error)
        is recorded as received, and the constructor reports it.
        """
        return args

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
                if params is not None:
                    try:
                        params = type(self).canonical_args(params)
                    except (TypeError, ValueError, OSError):
                        pass  # recorded as received; the real __init__ raises its own error
                object.__setattr__(self, _ATTR, (type(self), params))
            init(self, *args, **kw)

        __init__._vaekit_wrapped = True  # type: ignore[attr-defined]
        cls.__init__ = __init__  # type: ignore[method-assign]


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
