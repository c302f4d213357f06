"""A two-layer ladder VAE written in one file: a function returning its blocks and hyperparameters.

Train it with ``vaekit fit --config examples/models/ladder.yaml`` (which
names ``examples/models/ladder.py:model``), or in Python::

    from vaekit.models.hierarchical import from_python
    model = from_python("examples/models/ladder.py:model", {"latent": [100, 50]})

Every block is a vaekit class with plain arguments, so the trained run's ``config.yaml``
rebuilds it. Custom blocks subclass :class:`vaekit.models.hierarchical.Block` (see
``Gate`` below); put them in an importable module if runs started from Python must
reload them.
"""

from __future__ import annotations

import math

from torch import Tensor

from vaekit.distributions import Bernoulli
from vaekit.models.hierarchical import Block, GenBlock, InputBlock, OutputBlock, SimpleBlock, TopGenBlock
from vaekit.nn import MLP


class Gate(Block):
    """A custom block: ``input * sigmoid(net(input))``."""

    def __init__(self, name: str, inputs: str, features: int) -> None:
        super().__init__(name, inputs, MLP(features, features))

    def forward(self, h: Tensor) -> Tensor:
        return h * self.net(h).sigmoid()


def model(data_shape: list[int] = [784], hidden: list[int] = [100, 50], latent: list[int] = [100, 50],
          activation: str = "tanh", gate: bool = False) -> tuple[list[Block], dict]:
    """The blocks of a ladder VAE (784-100-100-(100), (100)-50-50-(50)) and its hyperparameters."""
    d, (h1, h2), (z1, z2) = math.prod(data_shape), hidden, latent
    act = {"activation": activation, "output_activation": activation}
    blocks: list[Block] = [
        InputBlock("x_in", flatten=True),
        SimpleBlock("h1", "x_in", MLP(d, h1, [h1], **act)),
        SimpleBlock("h2", "h1", MLP(h1, h2, [h2], **act)),
        TopGenBlock("z2", "h2", MLP(h2, 2 * z2), z2),
        GenBlock("z1", "z2", "h1", MLP(z2, 2 * z1, [h2, h2], activation), MLP(h1, 2 * z1), z1),
        OutputBlock("x_out", "z1", MLP(z1, d, [h1, h1], activation), Bernoulli()),
    ]
    if gate:
        blocks.insert(5, Gate("z1_gated", "z1", z1))
        blocks[-1] = OutputBlock("x_out", "z1_gated", MLP(z1, d, [h1, h1], activation), Bernoulli())
    return blocks, {"data_shape": data_shape}
