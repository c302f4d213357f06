"""Multilayer perceptron."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .._layers import ACTIVATIONS, activation_class, linear_stack
from .._recording import Configurable

__all__ = ["MLP", "activation", "ACTIVATIONS"]


def activation(name: str) -> nn.Module:
    """An activation module by name (one of ``ACTIVATIONS``; ``"identity"`` is no activation).

    >>> activation("elu")
    ELU(alpha=1.0)
    >>> activation("identity")
    Identity()
    """
    return activation_class(name)()


class MLP(Configurable, nn.Sequential):
    """Fully connected network ``in_features -> hidden... -> out_features``.

    Acts on the last dimension; leading dimensions (samples, batch) are kept. Models
    flatten each example before an MLP (``flat_input = True`` tells them to), so an
    ``MLP(784, ...)`` encoder works on images of shape (batch, 1, 28, 28).

    Parameters
    ----------
    in_features, out_features : int
    hidden : sequence of int
        Hidden layer sizes (empty: a single linear map).
    activation : str
        Hidden activation, one of ``ACTIVATIONS``.
    dropout : float
        Dropout probability after each hidden activation.
    output_activation : str or None
        Optional activation after the last layer.

    Examples
    --------
    >>> import torch
    >>> net = MLP(784, 50, hidden=[200, 200], activation="elu")
    >>> net(torch.zeros(3, 784)).shape
    torch.Size([3, 50])
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (), activation: str = "relu",
                 dropout: float = 0.0, output_activation: str | None = None) -> None:
        if in_features < 1 or out_features < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"layer sizes must be >= 1, got in_features={in_features}, hidden={list(hidden)}, out_features={out_features}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        super().__init__(*linear_stack(in_features, out_features, hidden, activation, dropout=dropout,
                                       output_activation=output_activation))
        self.in_features, self.out_features = int(in_features), int(out_features)

    flat_input = True

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"MLP expects inputs of shape (..., {self.in_features}) (in_features), got {tuple(x.shape)}")
        return super().forward(x)

