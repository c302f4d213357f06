"""Convolutional encoder and transposed-convolution decoder for 28x28 and 32x32 images."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .._recording import Configurable
from .mlp import activation as _activation

__all__ = ["ConvEncoder", "ConvDecoder"]


def _check(image_size: int, channels: Sequence[int]) -> int:
    if not channels or any(c < 1 for c in channels):
        raise ValueError(f"channels must be a non-empty list of positive ints, got {list(channels)}")
    side = image_size
    for _ in channels:
        if side % 2:
            raise ValueError(f"image_size={image_size} is not divisible by 2**{len(channels)} (len(channels)); "
                             f"use 2 stages for 28x28 (28->14->7) or 3 for 32x32 (32->16->8->4)")
        side //= 2
    return side


class ConvEncoder(Configurable, nn.Module):
    """Stride-2 convolutions then a linear map to ``out_features``.

    Parameters
    ----------
    in_channels : int
    image_size : int
        Side of the square input (28 or 32, or any size divisible by ``2**len(channels)``).
    out_features : int
        Size of the feature vector handed to the posterior.
    channels : sequence of int
        Output channels of each stride-2 stage.
    activation : str
    output_activation : str or None
        Optional activation after the final linear map.

    Examples
    --------
    >>> import torch
    >>> ConvEncoder(1, 28, 64)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 64])
    """

    def __init__(self, in_channels: int, image_size: int, out_features: int, channels: Sequence[int] = (32, 64),
                 activation: str = "relu", output_activation: str | None = None) -> None:
        super().__init__()
        side = _check(image_size, channels)
        layers: list[nn.Module] = []
        c_in = in_channels
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), _activation(activation)]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(c_in * side * side, out_features)
        self.out_act = _activation(output_activation) if output_activation else nn.Identity()
        self.in_channels, self.image_size = in_channels, image_size

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-3]
        h = self.convs(x.reshape(-1, *x.shape[-3:]))
        return self.out_act(self.linear(h.flatten(1))).reshape(*lead, -1)


class ConvDecoder(Configurable, nn.Module):
    """Linear map to a small feature map, then stride-2 transposed convolutions.

    Parameters
    ----------
    in_features : int
        Latent size.
    out_channels : int
        Output channels: image channels times the likelihood's ``params_per_dim``.
    image_size : int
    channels : sequence of int
        Channels of each upsampling stage, from the smallest feature map up.
    activation : str

    Examples
    --------
    >>> import torch
    >>> ConvDecoder(16, 2, 32, channels=(128, 64, 32))(torch.zeros(5, 3, 16)).shape
    torch.Size([5, 3, 2, 32, 32])
    """

    def __init__(self, in_features: int, out_channels: int, image_size: int, channels: Sequence[int] = (64, 32),
                 activation: str = "relu") -> None:
        super().__init__()
        self.side = _check(image_size, channels)
        self.channels = list(channels)
        self.linear = nn.Sequential(nn.Linear(in_features, self.channels[0] * self.side ** 2), _activation(activation))
        layers: list[nn.Module] = []
        for i, c in enumerate(self.channels):
            last = i == len(self.channels) - 1
            c_out = out_channels if last else self.channels[i + 1]
            layers.append(nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1))
            if not last:
                layers.append(_activation(activation))
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        h = self.linear(z.reshape(-1, z.shape[-1])).reshape(-1, self.channels[0], self.side, self.side)
        out = self.deconvs(h)
        return out.reshape(*lead, *out.shape[1:])
