"""Activations and the fully connected stack shared by :mod:`vaekit.nn` and the flows' networks.

One table of hidden activations and one builder of ``Linear -> activation -> ... -> Linear``
sit below both :class:`vaekit.nn.MLP` and the networks inside
:mod:`vaekit.distributions.flows` (coupling nets, the auxiliary flow's Gaussians), so that
both accept the same names and build the same layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import nn

__all__ = ["ACTIVATIONS", "ActivationName", "activation_class", "check_hidden", "linear_stack"]

#: Activations by name (``"identity"`` is no activation).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU, "softplus": nn.Softplus, "sigmoid": nn.Sigmoid, "identity": nn.Identity,
}

#: The names of :data:`ACTIVATIONS`, as a type for typed constructors (and so for YAML configs).
ActivationName = Literal["relu", "elu", "gelu", "silu", "tanh", "leaky_relu", "softplus", "sigmoid", "identity"]


def activation_class(name: str, argument: str = "activation") -> type[nn.Module]:
    """The activation class called ``name``, else a ``ValueError`` naming ``argument`` and the accepted names.

    >>> activation_class("elu")
    <class 'torch.nn.modules.activation.ELU'>
    >>> activation_class("swish")
    Traceback (most recent call last):
    ...
    ValueError: activation must be one of ['elu', 'gelu', 'identity', 'leaky_relu', 'relu', 'sigmoid', 'silu', 'softplus', 'tanh'], got 'swish'
    """
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"{argument} must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


def check_hidden(hidden: Sequence[int], name: str = "hidden") -> list[int]:
    """Hidden layer sizes as a list of positive ints (empty allowed: a linear network).

    >>> check_hidden((16, 8))
    [16, 8]
    >>> check_hidden([16, -4])
    Traceback (most recent call last):
    ...
    ValueError: hidden must be a list of positive integers, got [16, -4]
    """
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise ValueError(f"{name} must be a list of positive integers, got {hidden!r}")
    if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"{name} must be a list of positive integers, got {list(hidden)}")
    return [int(h) for h in hidden]


def linear_stack(in_features: int, out_features: int, hidden: Sequence[int], activation: str | type[nn.Module], *,
                 dropout: float = 0.0, output_activation: str | None = None) -> list[nn.Module]:
    """The layers ``Linear -> act [-> Dropout] -> ... -> Linear [-> output act]``, acting on the last dimension.

    Parameters
    ----------
    in_features, out_features : int
    hidden : sequence of int
        Hidden sizes (empty: one linear map).
    activation : str or type of nn.Module
        Hidden activation: a key of :data:`ACTIVATIONS`, or the module class itself.
    dropout : float
        Dropout probability after each hidden activation (0: no dropout layer).
    output_activation : str, optional
        Activation after the last layer.

    >>> [type(m).__name__ for m in linear_stack(4, 2, [8], "elu", output_activation="tanh")]
    ['Linear', 'ELU', 'Linear', 'Tanh']
    """
    act = activation if isinstance(activation, type) else activation_class(activation)
    out_act = None if output_activation is None else activation_class(output_activation, "output_activation")
    sizes = [int(in_features), *map(int, hidden), int(out_features)]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    if out_act is not None:
        layers.append(out_act())
    return layers
