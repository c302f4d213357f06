"""vaekit: variational latent-variable models in PyTorch.

The most used names are importable from the top level (loaded on first use, so
``import vaekit`` stays light):

- models: :class:`~vaekit.models.VAE`, :func:`~vaekit.models.mlp_vae`, :func:`~vaekit.models.conv_vae`
- objectives: :class:`~vaekit.objectives.ELBO`, :class:`~vaekit.objectives.IWAE`
- training: :class:`~vaekit.training.Trainer`
- run directories: :func:`~vaekit.runs.load`; the classes of your own that their configs may
  build: :func:`~vaekit.trust.register_constructible` (see :mod:`vaekit.trust`)
- embedding: :class:`~vaekit.embedding.VAEEmbedder` and the :mod:`vaekit.plot` module
- argument errors: :class:`InvalidArgumentError` (both a ``ValueError`` and a ``TypeError``)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "VAE": "vaekit.models", "mlp_vae": "vaekit.models", "conv_vae": "vaekit.models", "LatentVariableModel": "vaekit.models",
    "ELBO": "vaekit.objectives", "IWAE": "vaekit.objectives",
    "Trainer": "vaekit.training",
    "load": "vaekit.runs",
    "register_constructible": "vaekit.trust", "UntrustedConfigError": "vaekit.trust",
    "Configurable": "vaekit._recording",
    "VAEEmbedder": "vaekit.embedding",
    "HierarchicalVAE": "vaekit.models", "DiscreteVAE": "vaekit.models", "JointVAE": "vaekit.models",
    "GroupPredictor": "vaekit.models",
    "InvalidArgumentError": "vaekit._checks",
}
#: Submodules loaded on first attribute access (``vaekit.plot.embedding(...)`` after ``import vaekit``).
_SUBMODULES = ("plot", "analysis", "data", "distributions", "embedding", "inference", "models", "nn", "objectives",
               "training", "trust")

__all__ = ["__version__", *_LAZY, *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"vaekit.{name}")
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
