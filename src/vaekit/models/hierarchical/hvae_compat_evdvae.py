"""hVAE's EfficientVDVAE (``lacykaltgr/hvae``) as a vaekit hierarchical VAE, block for block.

The predecessor hVAE ported Efficient-VDVAE (Hazami et al., 2022) as an ``hVAE`` of its own
blocks (``models/EfficientVDVAE_migrate.py`` and ``migration/EfficientVDVAE_migration/``
at commit 00583f6). Its modules compute, with ``act`` = SiLU:

- ``ConvNet`` (``elements/nets.py``, ``n_layers = 2``, ``use_1x1``): ``convs`` =
  ``[act, 1x1, act, kxk, act, kxk, act, 1x1]`` on the input, plus the input when
  ``residual``, then ``act`` of the sum. That is :class:`vaekit.nn.BottleneckBlock` with
  ``activation="silu"``, ``output_activation=True`` (``c1 .. c4`` are ``convs.1, 3, 5, 7``);
- ``PoolLayer``: a ``stride x stride`` convolution of stride ``stride``, then
  LeakyReLU(0.1): :class:`HVAEPool`;
- ``UnpooLayer``: a 1x1 convolution, LeakyReLU(0.1), nearest up-sampling by ``stride``, plus
  a ``scale_bias`` of shape (1, C, H, W) that hVAE creates at the first forward pass (a
  checkpoint saved before one has no such tensor, and the migration refuses it by name):
  :class:`HVAEUnpool`;
- ``ResidualGenBlock``: ``prior_net(h)`` (a ``ConvNet`` to ``2 * width`` channels) is split in
  halves, the first the residual ``r``, the second mapped by ``prior_layer`` (1x1) to the
  prior's location and raw scale; the posterior is ``posterior_layer(posterior_net(cat(h, c)))``;
  the output ``net(h + r + z_projection(z))``: :class:`HVAEResidualGenBlock`, vaekit's
  :class:`~vaekit.models.hierarchical.ResidualGenBlock` with hVAE's split and scale map
  (:func:`~vaekit.models.hierarchical.hvae_compat.hvae_scale`).

:func:`efficient_vdvae` assembles them from Efficient-VDVAE's layout lists (``up_strides``,
``down_latent_variates``, ...) with hVAE's block names, so the migration preset
``"hvae-efficientvdvae"`` maps its state dict one to one. Only the binarized-MNIST output is
built: a Bernoulli over the logits of ``output_conv`` (Efficient-VDVAE's ``BernoulliLoss``),
on images zero-padded to ``resolution`` and cropped back, as Efficient-VDVAE pads MNIST to 32x32.

The bottom-up graph is hVAE's by default (``wiring="hvae"``): ``_model`` adds each level's
block and its skip projection in one ``dict.update`` whose two ``input_id``\\ s are both the
last key before it, so ``level_up_{i}_skip`` reads the level's *input* (not ``level_up_{i}``'s
output), and after a level without pooling the next ``level_up_{i+1}`` (without
per-resolution blocks) reads ``level_up_{i}_skip``; only the per-resolution blocks drop
``_skip`` from the key they read. ``wiring="efficient_vdvae"`` is Efficient-VDVAE's graph
(``LevelBlockUp``: the skip projection of the level's output, the next level reading that
output), the one this builder made before it took ``wiring``.

The model is hVAE's, not Efficient-VDVAE's: hVAE's ``ConvNet`` applies SiLU to its output,
which Efficient-VDVAE's ``ResidualConvCell`` does not, and the heads default to hVAE's
``model_params`` (``'logstd'``, ``'var'``, ln 2), not to Efficient-VDVAE's configs
(``distribution_base = 'std'``).

Where the arithmetic is not hVAE's own: hVAE's ``TopSimpleBlock`` tiles ``trainable_h`` with
``torch.tile(h, (N, 1))``, which on its (1, C, H, W) tensor stacks the batch along the height
(a bug that confines hVAE to batches of one); vaekit expands it along the batch, what
Efficient-VDVAE computes. Temperatures act as in :mod:`.hvae_compat` (the scale times ``t``,
not ``log t`` added to the raw scale).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

from ..._checks import InvalidArgumentError, check_choice, check_float, check_int
from ..._recording import Configurable
from ...distributions import Bernoulli
from ...nn import BottleneckBlock, Resample, conv1x1
from ._common import Base, HVAEHead, SigmaParam, block_module, check_hvae_head
from .blocks import Block, InputBlock, OutputBlock, SimpleBlock, TopSimpleBlock
from .generative import ResidualGenBlock
from .model import HierarchicalVAE

__all__ = ["HVAEPool", "HVAEUnpool", "HVAEResidualGenBlock", "hvae_convnet", "efficient_vdvae_blocks", "efficient_vdvae",
           "BINARIZED_MNIST"]

#: Efficient-VDVAE's ``egs/binarized_mnist_baseline`` layout (23 bottom-up and 23 top-down levels, one block each, every
#: top-down block reading its own bottom-up skip): :func:`efficient_vdvae`'s defaults.
BINARIZED_MNIST: dict[str, Any] = {
    "resolution": 32, "input_conv_filters": 32, "input_kernel_size": 1,
    "up_strides": [2, 1, 2] + [1] * 9 + [2] + [1] * 4 + [4] + [1] * 5,
    "up_n_blocks_per_res": [0] * 23, "up_n_blocks": [1] * 23,
    "up_filters": [64, 64] + [128] * 10 + [256] * 5 + [512] * 6,
    "up_mid_filters_ratio": [1.0] * 23, "up_kernel_size": [3] * 18 + [1] * 5,
    "up_skip_filters": [32, 64, 64] + [128] * 10 + [256] * 5 + [512] * 5,
    "down_strides": [1] * 5 + [4] + [1] * 4 + [2] + [1] * 9 + [2, 1, 2],
    "down_n_blocks_per_res": [0] * 23, "down_n_blocks": [1] * 23,
    "down_filters": [512] * 5 + [256] * 5 + [128] * 10 + [64, 64, 32],
    "down_mid_filters_ratio": [1.0] * 23, "down_kernel_size": [1] * 5 + [3] * 18,
    "down_latent_variates": [32] * 23, "output_kernel_size": 1,
}


class HVAEPool(Configurable, nn.Module):
    """hVAE's ``PoolLayer``: a ``stride x stride`` convolution of stride ``stride``, then LeakyReLU(0.1).

    >>> HVAEPool(3, 5, 2)(torch.zeros(1, 3, 8, 8)).shape
    torch.Size([1, 5, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        s = check_int("stride", stride)
        self.conv = nn.Conv2d(check_int("in_channels", in_channels), check_int("out_channels", out_channels), s, stride=s)

    def forward(self, h: Tensor) -> Tensor:
        return F.leaky_relu(self.conv(h), 0.1)


class HVAEUnpool(Configurable, nn.Module):
    """hVAE's ``UnpooLayer``: 1x1 convolution, LeakyReLU(0.1), nearest up-sampling by ``stride``, plus ``scale_bias``.

    ``scale_bias`` has shape (1, ``out_channels``, H, W) at the output ``resolution``
    (H = W); hVAE creates it (zeros) at its first forward pass, vaekit when the layer is built.

    >>> u = HVAEUnpool(4, 2, 2, resolution=6)
    >>> u(torch.zeros(3, 4, 3, 3)).shape, tuple(u.scale_bias.shape)
    (torch.Size([3, 2, 6, 6]), (1, 2, 6, 6))
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, resolution: int) -> None:
        super().__init__()
        out_channels, r = check_int("out_channels", out_channels), check_int("resolution", resolution)
        self.conv = conv1x1(in_channels, out_channels)
        self.upsample = Resample(stride, "nearest")
        self.scale_bias = nn.Parameter(torch.zeros(1, out_channels, r, r))

    def forward(self, h: Tensor) -> Tensor:
        return self.upsample(F.leaky_relu(self.conv(h), 0.1)) + self.scale_bias


def hvae_convnet(in_filters: int, bottleneck_ratio: float, kernel_size: int, residual: bool = True,
                 output_ratio: float = 1.0, last_scale: float = 1.0) -> BottleneckBlock:
    """hVAE's ``ConvNet`` (``n_layers=2``, ``use_1x1=True``, SiLU) as a :class:`~vaekit.nn.BottleneckBlock`.

    Middle channels ``int(in_filters * bottleneck_ratio)``, output ``int(in_filters * output_ratio)``
    (hVAE's truncations); ``kernel_size`` 3 or 1 for the two middle convolutions.

    >>> hvae_convnet(6, 0.5, 3, residual=False, output_ratio=2.0)(torch.zeros(1, 6, 4, 4)).shape
    torch.Size([1, 12, 4, 4])
    """
    if kernel_size not in (1, 3):
        raise InvalidArgumentError(f"kernel_size must be 1 or 3 (hVAE's ConvNet as vaekit builds it), got {kernel_size!r}")
    ratio = check_float("bottleneck_ratio", bottleneck_ratio, 0, low_open=True)
    return BottleneckBlock(in_filters, max(1, int(in_filters * ratio)), int(in_filters * output_ratio), residual=residual,
                           use_3x3=kernel_size == 3, last_scale=last_scale, activation="silu", output_activation=True)


class HVAEResidualGenBlock(HVAEHead, ResidualGenBlock):
    r"""hVAE's ``ResidualGenBlock``: the residual is the first half of ``prior_net(h)``, and 1x1 layers give the heads.

    ``prior_net(h)`` has ``2 * width`` channels: ``r`` (the first ``width``) and ``y`` (the
    rest); the prior is ``head(prior_layer(y))``, the posterior
    ``head(posterior_layer(posterior_net(cat(h, c))))``, the output
    ``residual_net(h + r + z_projection(z))`` (:class:`~vaekit.models.hierarchical.ResidualGenBlock`'s).
    Heads as hVAE's (``base``, ``sigma_param``, ``beta``: :func:`~.hvae_compat.hvae_scale`).

    Examples
    --------
    >>> b = HVAEResidualGenBlock("z", "h", "c", hvae_convnet(4, 1.0, 1, False, 2.0), hvae_convnet(8, 0.5, 1, False, 0.5),
    ...                          conv1x1(2, 4), conv1x1(4, 4), conv1x1(4, 4), [2, 3, 3])
    >>> h = torch.zeros(5, 4, 3, 3)
    >>> p, r = b.prior([h], 5)
    >>> q = b.posterior(torch.zeros(5, 4, 3, 3), [h], r)
    >>> p.event_shape, b.output(q.rsample(), [h], r).shape
    (torch.Size([2, 3, 3]), torch.Size([5, 4, 3, 3]))
    """

    def __init__(self, name: str, inputs: str, condition: str, prior_net: nn.Module, posterior_net: nn.Module,
                 z_projection: nn.Module, prior_layer: nn.Module, posterior_layer: nn.Module,
                 latent_features: int | Sequence[int], residual_net: nn.Module | None = None, base: Base = "logstd",
                 sigma_param: SigmaParam = "var", beta: float = 1.0) -> None:
        _, base, sigma_param, beta = check_hvae_head(name, "normal", base, sigma_param, beta)
        super().__init__(name, inputs, condition, prior_net, posterior_net, z_projection, latent_features, residual_net, 0.0)
        self.prior_layer = block_module("prior_layer", prior_layer, name, optional=False)
        self.posterior_layer = block_module("posterior_layer", posterior_layer, name, optional=False)
        self.base, self.sigma_param, self.beta = base, sigma_param, beta

    def prior(self, inputs: list[Tensor], n: int) -> tuple[Distribution, Any]:
        h, out = inputs[0], self.prior_net(inputs[0])
        if out.dim() < 2 or out.shape[1] != 2 * h.shape[1]:
            raise ValueError(f"prior_net of {self.name!r} returned shape {tuple(out.shape)} but needs 2 * width = "
                             f"{2 * h.shape[1]} channels (the residual, then prior_layer's input)")
        residual, y = out.chunk(2, dim=1)
        return self.head(self.prior_layer(y), f"prior_layer of {self.name!r}"), residual

    def posterior(self, condition: Tensor, inputs: list[Tensor], state: Any) -> Distribution:
        out = self.posterior_layer(self.posterior_net(torch.cat([inputs[0], condition], 1)))
        return self.head(out, f"posterior_layer of {self.name!r}")


def _conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """hVAE's ``Conv2d`` with padding 'same' and stride 1 (odd kernels: symmetric zero padding)."""
    k = check_int("kernel_size", kernel_size)
    if k % 2 == 0:
        raise InvalidArgumentError(f"kernel_size must be odd (hVAE pads 'same' unevenly for even kernels), got {k}")
    return nn.Conv2d(in_channels, out_channels, k, padding=k // 2)


def _lists(levels: int, **lists: Sequence[Any]) -> None:
    for key, value in lists.items():
        if len(value) != levels:
            raise InvalidArgumentError(f"{key} must have one entry per level ({levels}, as up_strides), got {len(value)}: "
                                       f"{list(value)}")


_HEADS: dict[str, Any] = {"base": "logstd", "sigma_param": "var", "beta": 0.6931472}
#: ``wiring``: hVAE's bottom-up graph or Efficient-VDVAE's (see the module docstring).
Wiring = Literal["hvae", "efficient_vdvae"]
_OPTIONS: dict[str, Any] = {**_HEADS, "wiring": "hvae"}


def efficient_vdvae_blocks(data_shape: Sequence[int] = (1, 28, 28), **layout: Any) -> list[Block]:
    """Blocks of hVAE's EfficientVDVAE: ``layout`` takes :func:`efficient_vdvae`'s other arguments, by name, same defaults.

    >>> efficient_vdvae_blocks(up_layers=[2])
    Traceback (most recent call last):
    ...
    vaekit._checks.InvalidArgumentError: efficient_vdvae_blocks got unknown arguments ['up_layers']; it takes ['base', 'beta', 'down_filters', 'down_kernel_size', 'down_latent_variates', 'down_mid_filters_ratio', 'down_n_blocks', 'down_n_blocks_per_res', 'down_strides', 'input_conv_filters', 'input_kernel_size', 'output_kernel_size', 'resolution', 'sigma_param', 'up_filters', 'up_kernel_size', 'up_mid_filters_ratio', 'up_n_blocks', 'up_n_blocks_per_res', 'up_skip_filters', 'up_strides', 'wiring']
    """
    unknown = sorted(set(layout) - set(BINARIZED_MNIST) - set(_OPTIONS))
    if unknown:
        raise InvalidArgumentError(f"efficient_vdvae_blocks got unknown arguments {unknown}; it takes "
                                   f"{sorted([*BINARIZED_MNIST, *_OPTIONS])}")
    a = {**BINARIZED_MNIST, **_OPTIONS, **layout}
    wiring = check_choice("wiring", a["wiring"], get_args(Wiring))
    up_strides, up_n_blocks_per_res, up_n_blocks, up_filters = (a[k] for k in (
        "up_strides", "up_n_blocks_per_res", "up_n_blocks", "up_filters"))
    up_mid_filters_ratio, up_kernel_size, up_skip_filters = (a[k] for k in (
        "up_mid_filters_ratio", "up_kernel_size", "up_skip_filters"))
    down_strides, down_n_blocks_per_res, down_n_blocks, down_filters = (a[k] for k in (
        "down_strides", "down_n_blocks_per_res", "down_n_blocks", "down_filters"))
    down_mid_filters_ratio, down_kernel_size, down_latent_variates = (a[k] for k in (
        "down_mid_filters_ratio", "down_kernel_size", "down_latent_variates"))
    input_conv_filters = check_int("input_conv_filters", a["input_conv_filters"])
    if len(data_shape) != 3:
        raise InvalidArgumentError(f"efficient_vdvae needs image data_shape [C, H, W], got {list(data_shape)}")
    channels, height, width = (check_int("data_shape", int(d)) for d in data_shape)
    res = check_int("resolution", a["resolution"])
    if height != width or height > res or (res - height) % 2:
        raise InvalidArgumentError(f"resolution {res} must be at least the image size and differ from it by an even number "
                                   f"(square images, zero-padded evenly); got images {height}x{width}")
    levels = len(up_strides)
    _lists(levels, up_n_blocks_per_res=up_n_blocks_per_res, up_n_blocks=up_n_blocks, up_filters=up_filters,
           up_mid_filters_ratio=up_mid_filters_ratio, up_kernel_size=up_kernel_size, up_skip_filters=up_skip_filters,
           down_strides=down_strides, down_n_blocks_per_res=down_n_blocks_per_res, down_n_blocks=down_n_blocks,
           down_filters=down_filters, down_mid_filters_ratio=down_mid_filters_ratio, down_kernel_size=down_kernel_size,
           down_latent_variates=down_latent_variates)
    if list(down_strides) != list(up_strides)[::-1]:
        raise InvalidArgumentError(f"down_strides must be up_strides reversed (Efficient-VDVAE's rule), got up_strides="
                                   f"{list(up_strides)}, down_strides={list(down_strides)}")
    total = math.prod(check_int("up_strides", s) for s in up_strides)
    if res % total:
        raise InvalidArgumentError(f"resolution {res} must be divisible by the product of up_strides ({total})")
    head = {k: a[k] for k in _HEADS}
    scale = 1.0 / math.sqrt(sum(down_n_blocks_per_res) + levels)  # Efficient-VDVAE's stable_init
    pad = (res - height) // 2
    conv_in = _conv(channels, input_conv_filters, a["input_kernel_size"])
    blocks: list[Block] = [InputBlock("x_in", nn.Sequential(nn.ZeroPad2d(pad), conv_in) if pad else conv_in)]
    # bottom-up: per level, up_n_blocks_per_res blocks, the level's block, its skip projection and its pooling
    # ``last`` is the block added last (hVAE's ``list(_blocks.keys())[-1]``); ``strip`` drops its ``_skip``
    in_up = [input_conv_filters, *up_filters[:-1]]
    last, r = "x_in", res

    def strip(name: str) -> str:
        return name[:-len("_skip")] if name.endswith("_skip") else name
    for i, stride in enumerate(up_strides):
        if stride == 1 and up_filters[i] != in_up[i]:
            raise InvalidArgumentError(f"up_filters[{i}] = {up_filters[i]} but level {i} has stride 1 (no pooling), so it "
                                       f"keeps its {in_up[i]} channels; give up_filters[{i}] = {in_up[i]}")
        if up_kernel_size[i] not in (1, 3):
            raise InvalidArgumentError(f"up_kernel_size[{i}] must be 1 or 3 (hVAE's ConvNet as vaekit builds it), got "
                                       f"{up_kernel_size[i]!r}")

        def up(name: str, src: str, i: int = i) -> SimpleBlock:
            return SimpleBlock(name, src, nn.Sequential(*[hvae_convnet(in_up[i], up_mid_filters_ratio[i], up_kernel_size[i],
                                                                        last_scale=scale) for _ in range(up_n_blocks[i])]))
        for n in range(up_n_blocks_per_res[i]):
            blocks.append(up(f"level_up_{i}_{n}", strip(last)))
            last = f"level_up_{i}_{n}"
        src = last if wiring == "hvae" else strip(last)  # the level's input
        if src.endswith("_skip") and up_skip_filters[i - 1] != in_up[i]:
            raise InvalidArgumentError(
                f"up_skip_filters[{i - 1}] = {up_skip_filters[i - 1]} but level {i} reads {src} (wiring 'hvae': after a "
                f"level without pooling the next level reads its skip projection), which must have level {i}'s "
                f"{in_up[i]} input channels (up_filters[{i - 1}]); give up_skip_filters[{i - 1}] = {in_up[i]}, "
                f"per-resolution blocks (up_n_blocks_per_res[{i}] > 0) or wiring='efficient_vdvae'")
        blocks.append(up(f"level_up_{i}", src))
        blocks.append(SimpleBlock(f"level_up_{i}_skip", src if wiring == "hvae" else f"level_up_{i}",
                                  conv1x1(in_up[i], up_skip_filters[i])))
        last = f"level_up_{i}_skip"
        if stride > 1:
            if r % stride:
                raise InvalidArgumentError(f"level {i} pools by {stride} a map of {r}x{r}")
            blocks.append(SimpleBlock(f"level_up_{i}_pool", f"level_up_{i}", HVAEPool(in_up[i], up_filters[i], stride)))
            last, r = f"level_up_{i}_pool", r // stride
    # top-down: the trainable start state, then per level an (unpooling) block reading the matching skip
    r = res // total
    blocks.append(TopSimpleBlock("top", [down_filters[0], r, r]))
    in_down = [down_filters[0], *down_filters[:-1]]
    prev = "top"
    for d, stride in enumerate(down_strides):
        skip, skip_filters = f"level_up_{levels - 1 - d}_skip", up_skip_filters[levels - 1 - d]
        f = down_filters[d]
        if stride > 1:
            r *= stride
            blocks.append(SimpleBlock(f"level_down_{d}_unpool", prev, HVAEUnpool(in_down[d], f, stride, r)))
            prev = f"level_down_{d}_unpool"
        elif f != in_down[d]:
            raise InvalidArgumentError(f"down_filters[{d}] = {f} but level {d} has stride 1 (no unpooling), so it keeps "
                                       f"its {in_down[d]} channels; give down_filters[{d}] = {in_down[d]}")
        if skip_filters != f:
            raise InvalidArgumentError(f"up_skip_filters[{levels - 1 - d}] = {skip_filters} feeds top-down level {d} of "
                                       f"{f} channels; hVAE's posterior_net (output_ratio 0.5) needs them equal")
        ratio, k, zc = down_mid_filters_ratio[d], down_kernel_size[d], check_int("down_latent_variates", down_latent_variates[d])
        if k not in (1, 3):
            raise InvalidArgumentError(f"down_kernel_size[{d}] must be 1 or 3 (hVAE's ConvNet as vaekit builds it), got {k!r}")
        names = [f"level_down_{d}"] + [f"level_down_{d}_{n}" for n in range(down_n_blocks_per_res[d])]
        for name in names:
            blocks.append(HVAEResidualGenBlock(
                name, prev, skip,
                prior_net=hvae_convnet(f, ratio, k, residual=False, output_ratio=2.0),
                posterior_net=hvae_convnet(f + skip_filters, ratio * 0.5, k, residual=False, output_ratio=0.5),
                z_projection=conv1x1(zc, f, scale=scale), prior_layer=conv1x1(f, 2 * zc), posterior_layer=conv1x1(f, 2 * zc),
                latent_features=[zc, r, r],
                residual_net=nn.Sequential(*[hvae_convnet(f, ratio, k, last_scale=scale) for _ in range(down_n_blocks[d])]),
                **head))
            prev = name
    if r != res:
        raise InvalidArgumentError(f"the top-down levels end at {r}x{r}, not at resolution {res}")
    out = _conv(down_filters[-1], channels, a["output_kernel_size"])
    blocks.append(OutputBlock("x_hat", prev, nn.Sequential(out, nn.ZeroPad2d(-pad)) if pad else out, Bernoulli()))
    return blocks


def efficient_vdvae(data_shape: Sequence[int] = (1, 28, 28), resolution: int = BINARIZED_MNIST["resolution"],
                    input_conv_filters: int = 32, input_kernel_size: int = 1,
                    up_strides: Sequence[int] = BINARIZED_MNIST["up_strides"],
                    up_n_blocks_per_res: Sequence[int] = BINARIZED_MNIST["up_n_blocks_per_res"],
                    up_n_blocks: Sequence[int] = BINARIZED_MNIST["up_n_blocks"],
                    up_filters: Sequence[int] = BINARIZED_MNIST["up_filters"],
                    up_mid_filters_ratio: Sequence[float] = BINARIZED_MNIST["up_mid_filters_ratio"],
                    up_kernel_size: Sequence[int] = BINARIZED_MNIST["up_kernel_size"],
                    up_skip_filters: Sequence[int] = BINARIZED_MNIST["up_skip_filters"],
                    down_strides: Sequence[int] = BINARIZED_MNIST["down_strides"],
                    down_n_blocks_per_res: Sequence[int] = BINARIZED_MNIST["down_n_blocks_per_res"],
                    down_n_blocks: Sequence[int] = BINARIZED_MNIST["down_n_blocks"],
                    down_filters: Sequence[int] = BINARIZED_MNIST["down_filters"],
                    down_mid_filters_ratio: Sequence[float] = BINARIZED_MNIST["down_mid_filters_ratio"],
                    down_kernel_size: Sequence[int] = BINARIZED_MNIST["down_kernel_size"],
                    down_latent_variates: Sequence[int] = BINARIZED_MNIST["down_latent_variates"],
                    output_kernel_size: int = 1, base: Base = "logstd", sigma_param: SigmaParam = "var",
                    beta: float = 0.6931472, wiring: Wiring = "hvae") -> HierarchicalVAE:
    """hVAE's EfficientVDVAE (``models/EfficientVDVAE_migrate.py`` of ``lacykaltgr/hvae``) as a vaekit hierarchical VAE.

    The layout arguments are Efficient-VDVAE's ``model`` hyperparameters, one entry per level in
    every list (their defaults: its binarized-MNIST baseline, :data:`BINARIZED_MNIST`). Images are
    zero-padded from ``data_shape`` to ``resolution`` (28 to 32 for MNIST) and the output
    cropped back. Blocks, with hVAE's names:

    - ``x_in``: the input convolution (``input_conv_filters``, ``input_kernel_size``);
    - per bottom-up level ``i``: ``level_up_{i}_{n}`` (``up_n_blocks_per_res[i]`` blocks),
      ``level_up_{i}`` (each ``up_n_blocks[i]`` residual ``ConvNet``\\ s), ``level_up_{i}_skip``
      (1x1 to ``up_skip_filters[i]``; with ``wiring="hvae"`` it reads the level's input, with
      ``"efficient_vdvae"`` ``level_up_{i}``) and, where ``up_strides[i] > 1``,
      ``level_up_{i}_pool`` (:class:`HVAEPool` to ``up_filters[i]`` channels). With
      ``wiring="hvae"`` a level after one without pooling reads that level's ``_skip`` (so
      ``up_skip_filters[i - 1]`` must equal ``up_filters[i - 1]``, as in :data:`BINARIZED_MNIST`)
      unless it has per-resolution blocks, which read ``level_up_{i - 1}``;
    - ``top``: the trainable start state (``down_filters[0]`` channels at
      ``resolution / prod(up_strides)``), vaekit's :class:`~vaekit.models.hierarchical.TopSimpleBlock`;
    - per top-down level ``d``: ``level_down_{d}_unpool`` where ``down_strides[d] > 1``
      (:class:`HVAEUnpool`), then ``level_down_{d}`` and ``level_down_{d}_{n}``
      (``down_n_blocks_per_res[d]``), :class:`HVAEResidualGenBlock`\\ s with
      ``down_latent_variates[d]`` latent channels whose posteriors read ``level_up_{L-1-d}_skip``;
    - ``x_hat``: ``output_conv`` to Bernoulli logits.

    ``down_strides`` must be ``up_strides`` reversed; a level of stride 1 keeps its width;
    ``up_skip_filters`` read backwards must equal ``down_filters`` (hVAE's posterior halves
    ``cat(h, skip)``). ``base``, ``sigma_param``, ``beta``: hVAE's heads, see
    :mod:`.hvae_compat`; the defaults are hVAE's ``model_params`` of its EfficientVDVAE
    (``'logstd'``, ``'var'``, ln 2), not the Efficient-VDVAE config's, and must match the hVAE
    run's ``distribution_base``, ``distribution_sigma_param`` and ``gradient_smoothing_beta``
    (``base="std", sigma_param="std"`` is Efficient-VDVAE's latent scale). ``wiring``: the
    bottom-up graph, ``"hvae"`` (default: what hVAE computes, so a migrated model gives
    hVAE's numbers) or ``"efficient_vdvae"`` (see the module docstring). The ``ConvNet``\\ s
    end in hVAE's SiLU, so neither wiring is Efficient-VDVAE's own forward pass.

    Examples
    --------
    >>> model = efficient_vdvae([1, 6, 6], resolution=8, input_conv_filters=4, up_strides=[2, 1],
    ...     up_n_blocks_per_res=[1, 0], up_n_blocks=[1, 1], up_filters=[6, 6], up_mid_filters_ratio=[0.5, 0.5],
    ...     up_kernel_size=[3, 1], up_skip_filters=[4, 6], down_strides=[1, 2], down_n_blocks_per_res=[0, 1],
    ...     down_n_blocks=[1, 1], down_filters=[6, 4], down_mid_filters_ratio=[0.5, 0.5], down_kernel_size=[1, 3],
    ...     down_latent_variates=[2, 3])
    >>> model.latent_names, model.blocks["level_down_1"].latent_shape
    (('level_down_0', 'level_down_1', 'level_down_1_0'), (3, 8, 8))
    >>> model.log_weights(torch.zeros(2, 1, 6, 6), k=3).shape
    torch.Size([3, 2])
    """
    layout = {k: v for k, v in locals().items() if k != "data_shape"}
    return HierarchicalVAE(efficient_vdvae_blocks(data_shape, **layout), data_shape)
