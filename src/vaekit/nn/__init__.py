"""Building blocks: MLP, convolutional encoder and decoder."""

from .conv import ConvDecoder, ConvEncoder
from .mlp import MLP, activation
from .modes import eval_mode

__all__ = ["MLP", "ConvEncoder", "ConvDecoder", "activation", "eval_mode"]
