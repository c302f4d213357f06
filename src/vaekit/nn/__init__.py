"""Building blocks: MLP, convolutional encoder and decoder, spatial (VDVAE) blocks, predictors for group-latent models."""

from .conv import ConvDecoder, ConvEncoder
from .mlp import MLP, activation
from .modes import eval_mode
from .predictors import CharLSTM, ImageCNN, MLPPredictor, Predictor, SetEncoder
from .spatial import BottleneckBlock, Resample, VectorToMap, conv1x1, conv3x3

__all__ = ["MLP", "ConvEncoder", "ConvDecoder", "activation", "eval_mode", "Predictor", "ImageCNN", "CharLSTM",
           "MLPPredictor", "SetEncoder", "BottleneckBlock", "Resample", "VectorToMap", "conv1x1", "conv3x3"]
