"""Convolutional pieces of spatial hierarchical VAEs: VDVAE's bottleneck residual block, resampling, vector-to-map.

Every module maps tensors of shape (N, C, H, W) (``VectorToMap``: (N, features) to a map),
so that a block of :mod:`vaekit.models.hierarchical` can wrap it as its ``net``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import InvalidArgumentError, check_choice, check_float, check_int
from .._recording import Configurable

__all__ = ["conv1x1", "conv3x3", "BottleneckBlock", "Resample", "VectorToMap"]


def conv1x1(in_channels: int, out_channels: int, *, zero_init: bool = False, scale: float = 1.0) -> nn.Conv2d:
    """A 1x1 convolution; ``zero_init`` zeroes its weight and bias, ``scale`` multiplies its initial weight.

    >>> conv1x1(4, 2, zero_init=True).weight.abs().sum().item()
    0.0
    """
    conv = nn.Conv2d(check_int("in_channels", in_channels), check_int("out_channels", out_channels), 1)
    _init(conv, zero_init, scale)
    return conv


def conv3x3(in_channels: int, out_channels: int, *, zero_init: bool = False, scale: float = 1.0) -> nn.Conv2d:
    """A 3x3 convolution with padding 1 (same height and width); see :func:`conv1x1`.

    >>> conv3x3(4, 2)(torch.zeros(1, 4, 5, 5)).shape
    torch.Size([1, 2, 5, 5])
    """
    conv = nn.Conv2d(check_int("in_channels", in_channels), check_int("out_channels", out_channels), 3, padding=1)
    _init(conv, zero_init, scale)
    return conv


def _init(conv: nn.Conv2d, zero_init: bool, scale: float) -> None:
    with torch.no_grad():
        if zero_init:
            conv.weight.zero_()
            conv.bias.zero_()  # type: ignore[union-attr]
        else:
            conv.weight.mul_(check_float("scale", scale, 0))


def _pad_channels(h: Tensor, channels: int) -> Tensor:
    """``h`` with zero channels appended up to ``channels`` (VDVAE's ``pad_channels``)."""
    extra = channels - h.shape[1]
    return h if extra == 0 else F.pad(h, (0, 0, 0, 0, 0, extra))


class BottleneckBlock(Configurable, nn.Module):
    r"""VDVAE's residual bottleneck block (Child, 2021): 1x1, 3x3, 3x3, 1x1 convolutions, each after a GELU.

    :math:`\hat h = c_4(\sigma(c_3(\sigma(c_2(\sigma(c_1(\sigma(h))))))))`, the output
    :math:`h + \hat h` (``residual``) or :math:`\hat h`, then average-pooled by ``down_rate``
    and zero-padded to ``pad_to`` channels where they are given (how VDVAE's encoder
    changes resolution and width). :math:`\sigma` is ``activation`` (GELU by default; the
    predecessor hVAE's Efficient-VDVAE ``ConvNet`` uses SiLU and, with ``output_activation``,
    applies it once more to the output, after the residual sum and before any pooling).

    Parameters
    ----------
    in_width, middle_width, out_width : int
        Channels in, inside the bottleneck, and out (``out_width == in_width`` when ``residual``).
    residual : bool
        Add the input to the output.
    use_3x3 : bool
        3x3 middle convolutions (VDVAE uses 1x1 at resolutions of 2x2 and below).
    down_rate : int, optional
        Average-pool the output by this factor.
    zero_last : bool
        Zero the last convolution at initialisation (VDVAE's prior network: the prior starts
        at N(0, softplus(0)) and the residual at 0).
    last_scale : float
        Multiply the last convolution's initial weight (VDVAE: ``1 / sqrt(number of blocks)``).
    pad_to : int, optional
        Zero-pad the output to this many channels (>= ``out_width``).
    activation : {"gelu", "silu"}
        :math:`\sigma` before each convolution.
    output_activation : bool
        Apply :math:`\sigma` to the output too (after the residual sum).

    Examples
    --------
    >>> b = BottleneckBlock(8, 2, 8, residual=True, down_rate=2, pad_to=12)
    >>> b(torch.zeros(3, 8, 16, 16)).shape
    torch.Size([3, 12, 8, 8])
    >>> s = BottleneckBlock(2, 2, 2, residual=True, activation="silu", output_activation=True)
    >>> with torch.no_grad():
    ...     _ = s.c4.weight.zero_(), s.c4.bias.zero_()   # the residual branch gives 0: the output is silu(h)
    >>> s(torch.full((1, 2, 1, 1), 2.0)).detach().flatten()
    tensor([1.7616, 1.7616])
    """

    def __init__(self, in_width: int, middle_width: int, out_width: int, residual: bool = False, use_3x3: bool = True,
                 down_rate: int | None = None, zero_last: bool = False, last_scale: float = 1.0,
                 pad_to: int | None = None, activation: Literal["gelu", "silu"] = "gelu",
                 output_activation: bool = False) -> None:
        super().__init__()
        self.activation = check_choice("activation", activation, ("gelu", "silu"))
        self.output_activation = bool(output_activation)
        in_width, middle_width = check_int("in_width", in_width), check_int("middle_width", middle_width)
        out_width = check_int("out_width", out_width)
        if residual and out_width != in_width:
            raise InvalidArgumentError(f"a residual BottleneckBlock keeps its width: out_width must equal in_width={in_width}, "
                                       f"got out_width={out_width}")
        self.down_rate = None if down_rate is None else check_int("down_rate", down_rate)
        self.pad_to = None if pad_to is None else check_int("pad_to", pad_to, out_width)
        self.residual = bool(residual)
        mid = conv3x3 if use_3x3 else conv1x1
        self.c1 = conv1x1(in_width, middle_width)
        self.c2 = mid(middle_width, middle_width)
        self.c3 = mid(middle_width, middle_width)
        self.c4 = conv1x1(middle_width, out_width, zero_init=bool(zero_last), scale=check_float("last_scale", last_scale, 0))

    def forward(self, h: Tensor) -> Tensor:
        act = F.gelu if self.activation == "gelu" else F.silu
        out = self.c4(act(self.c3(act(self.c2(act(self.c1(act(h))))))))
        if self.residual:
            out = h + out
        if self.output_activation:
            out = act(out)
        if self.down_rate is not None:
            out = F.avg_pool2d(out, kernel_size=self.down_rate, stride=self.down_rate)
        return out if self.pad_to is None else _pad_channels(out, self.pad_to)


class Resample(Configurable, nn.Module):
    """Change a map's resolution by ``factor``: average pooling (``mode="down"``) or nearest/bilinear up-sampling.

    Parameters
    ----------
    factor : int
        Scale factor of height and width.
    mode : {"down", "nearest", "bilinear"}
        ``"down"`` average-pools by ``factor``; the others interpolate up by ``factor``.
    channels : int, optional
        Keep the first ``channels`` channels (VDVAE's mix-in of a wider coarse state) or
        zero-pad up to them.

    Examples
    --------
    >>> Resample(4, "nearest", channels=2)(torch.ones(1, 3, 1, 1)).shape
    torch.Size([1, 2, 4, 4])
    >>> Resample(2, "down")(torch.ones(1, 3, 4, 4)).shape
    torch.Size([1, 3, 2, 2])
    """

    def __init__(self, factor: int, mode: Literal["down", "nearest", "bilinear"] = "nearest",
                 channels: int | None = None) -> None:
        super().__init__()
        self.factor = check_int("factor", factor)
        self.mode = check_choice("mode", mode, ("down", "nearest", "bilinear"))
        self.channels = None if channels is None else check_int("channels", channels)

    def forward(self, h: Tensor) -> Tensor:
        if self.mode == "down":
            h = F.avg_pool2d(h, kernel_size=self.factor, stride=self.factor)
        elif self.factor != 1:
            h = F.interpolate(h, scale_factor=self.factor, mode=self.mode)
        if self.channels is not None:
            h = h[:, : self.channels] if h.shape[1] >= self.channels else _pad_channels(h, self.channels)
        return h

    def extra_repr(self) -> str:
        return f"factor={self.factor}, mode={self.mode!r}, channels={self.channels}"


class VectorToMap(Configurable, nn.Module):
    """A linear map from a feature vector to a (C, H, W) map: how a vector latent feeds a spatial stack.

    Parameters
    ----------
    in_features : int
    shape : sequence of int
        ``[C, H, W]`` of the output for one example.

    Examples
    --------
    >>> VectorToMap(5, [3, 2, 2])(torch.zeros(4, 5)).shape
    torch.Size([4, 3, 2, 2])
    """

    def __init__(self, in_features: int, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = tuple(check_int("shape", s) for s in shape)
        if not self.shape:
            raise InvalidArgumentError("shape must list the output's dimensions, e.g. [C, H, W], got []")
        self.linear = nn.Linear(check_int("in_features", in_features), math.prod(self.shape))

    def forward(self, z: Tensor) -> Tensor:
        return self.linear(z).reshape(*z.shape[:-1], *self.shape)
