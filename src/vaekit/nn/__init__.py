"""Building blocks: MLP, convolutional encoder and decoder."""

from .conv import ConvDecoder, ConvEncoder
from .mlp import MLP, activation

__all__ = ["MLP", "ConvEncoder", "ConvDecoder", "activation"]
