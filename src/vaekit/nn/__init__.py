"""Building blocks: MLP, convolutional encoder and decoder, predictors for group-latent models."""

from .conv import ConvDecoder, ConvEncoder
from .mlp import MLP, activation
from .modes import eval_mode
from .predictors import CharLSTM, ImageCNN, MLPPredictor, Predictor, SetEncoder

__all__ = ["MLP", "ConvEncoder", "ConvDecoder", "activation", "eval_mode", "Predictor", "ImageCNN", "CharLSTM",
           "MLPPredictor", "SetEncoder"]
