"""Blocks of a hierarchical VAE: named nodes of a computation graph, each wrapping a network.

This module holds the base class and the deterministic blocks; the latent layers are in
:mod:`vaekit.models.hierarchical.generative`.

Every block has a ``name`` (the key of its output), ``inputs`` (names of earlier outputs;
``"x"`` is the data) and usually a ``net`` (any :class:`torch.nn.Module`, built from a
config). Deterministic blocks map their inputs to one tensor (:meth:`Block.forward`),
the same in every pass of the model. Generative blocks (``generative = True``) own one
named latent: they give its prior from their ``inputs`` and its posterior from a
``condition`` (an encoder output), and emit a tensor that later blocks read (the latent
itself, or VDVAE's residual state), with one method per pass of the model (posterior,
given latents, prior).

Networks see tensors of shape (N, features) (or whatever the previous block emits); the
model flattens any leading sample dimensions into N. Gaussian heads read a network output
of shape (N, 2 * latent_features): location, then a raw scale mapped through
``softplus(raw) + min_scale``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from ..._checks import check_float, check_int
from ..._recording import Configurable
from ...distributions import Likelihood
from ._common import block_module, block_names

__all__ = ["Block", "InputBlock", "SimpleBlock", "DualInputBlock", "TopSimpleBlock", "OutputBlock"]


class Block(Configurable, nn.Module):
    """Base class of every block: a named node that reads earlier outputs.

    Subclass it for a custom deterministic block and implement :meth:`forward` (one
    argument per name in ``inputs``); subclass :class:`GenerativeBlock` for a custom
    latent layer. Constructor arguments are recorded, so a custom block in an importable
    module is written to ``config.yaml`` like the built-in ones.

    Parameters
    ----------
    name : str
        Name of this block's output (a Python identifier, not ``"x"``).
    inputs : str or sequence of str
        Names of earlier outputs this block reads; ``"x"`` is the data.
    net : nn.Module, optional
        The block's network (default: identity).

    Examples
    --------
    >>> import torch
    >>> class Double(Block):
    ...     def forward(self, h):
    ...         return 2 * self.net(h)
    >>> Double("d", "h")(torch.ones(1, 2))
    tensor([[2., 2.]])
    """

    generative: ClassVar[bool] = False

    def __init__(self, name: str, inputs: str | Sequence[str] = "x", net: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(name, str) or not name.isidentifier() or name == "x":
            raise ValueError(f"block name must be a Python identifier other than 'x' (the data), got {name!r}")
        self.name = name
        self.inputs = block_names("inputs", inputs, name)
        self.net = block_module("net", net, name)

    @property
    def references(self) -> tuple[str, ...]:
        """Every name this block reads (its inputs, plus the condition of generative blocks)."""
        return self.inputs

    def compute(self, computed: dict[str, Tensor], n: int) -> Tensor:
        """This block's output from the outputs computed so far (``n`` examples)."""
        return self(*[computed[i] for i in self.inputs])

    def forward(self, *inputs: Tensor) -> Tensor:
        """Apply ``net`` to the single input; subclasses with several inputs override this."""
        if len(inputs) != 1:
            raise ValueError(f"block {self.name!r} takes one input, got {len(inputs)}; override forward() for more")
        return self.net(inputs[0])

    def extra_repr(self) -> str:
        return f"name={self.name!r}, inputs={list(self.inputs)}"


class InputBlock(Block):
    """First block: reads the data ``x`` and preprocesses it.

    Parameters
    ----------
    name : str
    net : nn.Module, optional
        Preprocessing (default identity), applied after the optional flattening.
    flatten : bool
        Flatten each example to a vector (for MLPs on images).

    Examples
    --------
    >>> InputBlock("x_in", flatten=True)(torch.zeros(2, 1, 4, 4)).shape
    torch.Size([2, 16])
    """

    def __init__(self, name: str, net: nn.Module | None = None, flatten: bool = False) -> None:
        super().__init__(name, "x", net)
        self.flatten = bool(flatten)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1) if self.flatten else x)


class SimpleBlock(Block):
    """``net(input)``: a deterministic layer (encoder or generator side).

    >>> from vaekit.nn import MLP
    >>> SimpleBlock("h", "x_in", MLP(4, 3))(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(self, name: str, inputs: str, net: nn.Module) -> None:
        super().__init__(name, inputs, block_module("net", net, name, optional=False))


class DualInputBlock(Block):
    """``net(a ⊕ b)`` of two inputs, concatenated on the feature axis or summed.

    >>> DualInputBlock("h", ["a", "b"], mode="sum")(torch.ones(1, 2), torch.ones(1, 2))
    tensor([[2., 2.]])
    """

    def __init__(self, name: str, inputs: Sequence[str], net: nn.Module | None = None,
                 mode: Literal["concat", "sum"] = "concat") -> None:
        super().__init__(name, inputs, net)
        if len(self.inputs) != 2:
            raise ValueError(f"inputs of DualInputBlock {name!r} must name exactly 2 blocks, got {list(self.inputs)}")
        if mode not in ("concat", "sum"):
            raise ValueError(f"mode of DualInputBlock {name!r} must be 'concat' or 'sum', got {mode!r}")
        self.mode = mode

    def forward(self, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        return self.net(torch.cat([a, b], 1) if self.mode == "concat" else a + b)


class TopSimpleBlock(Block):
    """A constant (trainable or fixed) starting state of the generator, ``net(h0)`` per example.

    Parameters
    ----------
    name : str
    shape : sequence of int
        Shape of ``h0`` for one example.
    net : nn.Module, optional
    trainable : bool
        Learn ``h0`` (else a fixed buffer).
    value : float
        Initial (or fixed) value of every entry of ``h0``.

    Examples
    --------
    >>> TopSimpleBlock("h0", [3], value=0.5).compute({}, 2)
    tensor([[0.5000, 0.5000, 0.5000],
            [0.5000, 0.5000, 0.5000]], grad_fn=<ExpandBackward0>)
    """

    def __init__(self, name: str, shape: Sequence[int], net: nn.Module | None = None, trainable: bool = True,
                 value: float = 0.0) -> None:
        super().__init__(name, (), net)
        shape = [check_int("shape", s) for s in shape]
        h0 = torch.full(shape, check_float("value", value))
        if trainable:
            self.h0 = nn.Parameter(h0)
        else:
            self.register_buffer("h0", h0)

    def compute(self, computed: dict[str, Tensor], n: int) -> Tensor:
        return self.net(self.h0.expand(n, *self.h0.shape))


class OutputBlock(Block):
    """Last block: ``net(input)`` gives the parameters of ``likelihood`` over ``x``.

    ``net`` returns ``likelihood.params_per_dim * prod(data_shape)`` numbers per example
    (flat, or already shaped like the data with channels multiplied).

    >>> from vaekit.nn import MLP
    >>> from vaekit.distributions import Bernoulli
    >>> OutputBlock("x_out", "z", MLP(2, 6), Bernoulli()).likelihood
    Bernoulli()
    """

    def __init__(self, name: str, inputs: str, net: nn.Module, likelihood: Likelihood) -> None:
        super().__init__(name, inputs, block_module("net", net, name, optional=False))
        if not isinstance(likelihood, Likelihood):
            raise TypeError(f"likelihood of block {name!r} must be a vaekit Likelihood (e.g. vaekit.distributions.Bernoulli), "
                            f"got {type(likelihood).__name__}")
        self.likelihood = likelihood
