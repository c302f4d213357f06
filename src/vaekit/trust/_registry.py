"""The registry of constructible types and what one check accepts (see :mod:`vaekit.trust`)."""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import sys
import typing
from collections.abc import Iterable
from typing import Any

from ..config import ConfigError

__all__ = ["UntrustedConfigError", "TrustWarning", "register_constructible", "is_constructible", "REGISTRY_PACKAGES",
           "TORCH_LAYERS", "CODE_LOADERS"]

#: Packages whose public classes and factories a config read from a run directory may build.
REGISTRY_PACKAGES = ("vaekit.models", "vaekit.nn", "vaekit.distributions", "vaekit.data", "vaekit.objectives")
#: The layers of ``torch.nn`` a config read from a run directory may build: those whose arguments are
#: sizes, rates and flags. Not the containers and composite layers (``Sequential``, ``ModuleDict``,
#: ``Transformer``, ``MultiheadAttention``, the RNNs...), whose arguments take modules or anything at all.
TORCH_LAYERS = (
    "Identity", "Linear", "Bilinear", "Flatten", "Unflatten", "Embedding",
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
    "InstanceNorm3d", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
    "ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Tanh", "Sigmoid",
    "Hardtanh", "Hardsigmoid", "Hardswish", "Softplus", "Softsign", "Softmax", "LogSoftmax", "LogSigmoid",
    "Tanhshrink", "Softshrink", "Hardshrink",
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "PixelShuffle", "PixelUnshuffle",
    "ZeroPad1d", "ZeroPad2d", "ConstantPad1d", "ConstantPad2d", "ReflectionPad1d", "ReflectionPad2d",
    "ReplicationPad1d", "ReplicationPad2d",
)
#: Entry points that import or execute what their arguments name: never constructible without ``trust_code``.
CODE_LOADERS = ("vaekit.models.hierarchical.source.from_python", "vaekit.models.hierarchical.source.load_function")
_OUTSIDE = "is not in vaekit's registry of constructible types"
_USER: dict[int, Any] = {}  # objects allowed by register_constructible, by id


class UntrustedConfigError(ConfigError):
    """A config read from a run directory names code outside the registry of constructible types.

    Attributes
    ----------
    class_path : str
        What the config names (a class path, a bare class name or a ``from_python`` source).
    where : str
        Its key in the config, e.g. ``"model.init_args.encoder"``.
    file : str or None
        The config file.
    """

    def __init__(self, what: str, class_path: str, where: str, file: str | None, allowable: bool = True) -> None:
        self.what, self.class_path, self.where, self.file, self.allowable = what, class_path, where, file, allowable
        super().__init__(self.describe())

    def describe(self, flag: str = "trust_code=True (vaekit CLI: --trust-code)") -> str:
        """The message, naming ``flag`` as the way to build it anyway (the CLI names ``--trust-code``)."""
        how = f"pass {flag}, only if you trust whoever wrote this run directory"
        if self.allowable:
            how += f"; or{', from Python,' if flag.startswith('--') else ''} allow the class: allow=[{self.class_path!r}] " \
                   "or vaekit.register_constructible(cls)"
        return f"{self.file or 'the config'}: {self.where}: {self.what}; nothing was imported or run. To build it, {how}"


class TrustWarning(UserWarning):
    """``trust_code=True`` builds code from outside vaekit's registry; the message names it."""


def _loaders() -> list[Any]:
    out = []
    for path in CODE_LOADERS:
        module, _, name = path.rpartition(".")
        out.append(getattr(importlib.import_module(module), name))
    return out


def _is_vaekit_constructible(obj: Any) -> bool:
    import torch.nn as nn

    from .._recording import Configurable

    if not str(getattr(obj, "__module__", "")).startswith("vaekit."):
        return False
    if inspect.isclass(obj):
        return issubclass(obj, (nn.Module, Configurable)) and not inspect.isabstract(obj)
    if inspect.isfunction(obj):
        try:
            ret = typing.get_type_hints(obj).get("return")
        except Exception:  # an unresolvable annotation: not a factory we can vouch for
            return False
        return inspect.isclass(ret) and issubclass(ret, (nn.Module, Configurable))
    return False


@functools.lru_cache(maxsize=1)
def _constructible_types() -> dict[str, Any]:
    """``{dotted path: object}`` of every constructible type of vaekit and :data:`TORCH_LAYERS` (built once)."""
    import torch.nn as nn

    denied = {id(f) for f in _loaders()}
    reg: dict[str, Any] = {}
    for pkg in REGISTRY_PACKAGES:
        root = importlib.import_module(pkg)
        names = [pkg, *(info.name for info in pkgutil.walk_packages(root.__path__, pkg + "."))]
        for modname in names:
            for attr, obj in list(vars(importlib.import_module(modname)).items()):
                if not attr.startswith("_") and id(obj) not in denied and _is_vaekit_constructible(obj):
                    reg[f"{modname}.{attr}"] = obj
                    reg[f"{obj.__module__}.{obj.__qualname__}"] = obj
    for attr in TORCH_LAYERS:
        obj = getattr(nn, attr, None)  # a layer this torch lacks is left out
        if inspect.isclass(obj) and issubclass(obj, nn.Module):
            reg[f"torch.nn.{attr}"] = obj
            reg[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return reg


def _path_of(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def register_constructible(obj: Any) -> Any:
    """Allow a class or factory of your own in configs read from run directories, for this process.

    Parameters
    ----------
    obj : class or function
        What ``class_path`` names (under its defining path or any alias of an imported module).

    Returns
    -------
    obj, unchanged (so it works as a decorator).

    Raises
    ------
    TypeError
        For anything but a class or a function, and for vaekit's code loaders (``from_python``
        runs whatever its ``source`` names: use ``trust_code=True`` for such runs).

    Examples
    --------
    >>> import torch.nn as nn
    >>> @register_constructible
    ... class MyEncoder(nn.Module):
    ...     def __init__(self, width: int = 8):
    ...         super().__init__()
    >>> is_constructible(f"{__name__}.MyEncoder")
    True
    """
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        raise TypeError(f"register_constructible takes a class or a function, got {obj!r} of type {type(obj).__name__}")
    if any(obj is f for f in _loaders()):
        raise TypeError(f"{_path_of(obj)} runs the code its config names and cannot be registered; "
                        "pass trust_code=True (CLI --trust-code) to load such runs")
    _USER[id(obj)] = obj
    return obj


class _Policy:
    """What one check accepts: the registry, the process's registrations and one call's ``allow``."""

    def __init__(self, allow: Iterable[Any]) -> None:
        if isinstance(allow, (str, bytes)) or not isinstance(allow, Iterable):
            raise TypeError(f"allow must be a list of classes, functions or dotted paths, got {allow!r}")
        self.registry = _constructible_types()
        self.registry_ids = {id(o) for o in self.registry.values()}
        self.objects = {id(o): o for o in self.registry.values()} | dict(_USER)
        self.paths: set[str] = set()
        loaders = _loaders()
        for item in allow:
            if isinstance(item, str):
                if not all(part.isidentifier() for part in item.split(".")) or "." not in item:
                    raise ValueError(f"allow: {item!r} is not a dotted class path such as 'mypkg.MyModel'")
                self.paths.add(item)
            elif inspect.isclass(item) or inspect.isfunction(item):
                if any(item is f for f in loaders):
                    raise TypeError(f"allow: {_path_of(item)} runs the code its config names; pass trust_code=True instead")
                self.objects[id(item)] = item
            else:
                raise TypeError(f"allow: {item!r} is neither a class, a function nor a dotted path")
        # classes defined where no import reaches them again (a script, a notebook): by their recorded path
        self.defined = {_path_of(o): o for i, o in self.objects.items() if i not in self.registry_ids}

    def lookup(self, path: str) -> tuple[bool, Any]:
        """``(accepted, object or None)`` for a dotted path, without importing anything."""
        if path in self.registry:
            return True, self.registry[path]
        obj = _imported(path)
        if obj is not None and self.accepts(obj):
            return True, obj
        if path in self.defined:
            return True, self.defined[path]
        if path in self.paths:
            return True, None  # the caller allowed this path by name: it may be imported
        if obj is not None and any(_imported(p) is obj for p in self.paths):
            return True, obj  # where a class allowed by name (and imported since) is defined
        return False, obj

    def accepts(self, obj: Any) -> bool:
        return id(obj) in self.objects and self.objects[id(obj)] is obj


def _imported(path: str) -> Any:
    """The object a dotted path names in an already imported module (``None`` if none).

    Attributes are looked up statically, so no module's ``__getattr__`` runs (it may import),
    except vaekit's own, which loads vaekit's top-level names (``vaekit.VAE``).
    """
    parts = path.split(".")
    if not all(p.isidentifier() and not p.startswith("__") for p in parts):
        return None
    for i in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:i]))
        if module is None:
            continue
        obj: Any = module
        try:
            for p in parts[i:]:
                obj = getattr(obj, p) if obj is sys.modules.get("vaekit") else inspect.getattr_static(obj, p)
        except Exception:  # AttributeError, or vaekit's __getattr__ refusing the name
            return None
        return obj
    return None


def is_constructible(class_path: str, allow: Iterable[Any] = ()) -> bool:
    """Whether a config read from a run directory may name ``class_path`` (decided without importing it).

    >>> is_constructible("vaekit.models.VAE"), is_constructible("vaekit.models.hierarchical.from_python")
    (True, False)
    >>> is_constructible("os.system")
    False
    """
    return _Policy(allow).lookup(str(class_path))[0]
