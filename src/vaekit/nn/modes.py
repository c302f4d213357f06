"""Switching a module to evaluation mode for a while, restoring every submodule's own mode after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode inside the block; afterwards each submodule gets back its own mode.

    ``module.train(was)`` would not do: a submodule a user froze in eval mode (say a
    pretrained encoder with batch norm) would come back in training mode.

    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    >>> net[0].eval()  # doctest: +ELLIPSIS
    Linear(...)
    >>> with eval_mode(net):
    ...     net.training, net[1].training
    (False, False)
    >>> net.training, net[0].training, net[1].training
    (True, False, True)
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, mode in modes:
            m.training = mode
