"""VDVAE on spatial latents (Child, 2021; Efficient-VDVAE, Hazami et al., 2022): its top-down block and its layouts.

:class:`TopDownBlock` is VDVAE's ``DecBlock`` as a vaekit latent layer: a
:class:`~vaekit.models.hierarchical.ResidualGenBlock` whose networks are VDVAE's
bottleneck blocks (:class:`vaekit.nn.BottleneckBlock`) on (C, H, W) maps. :func:`vdvae`
builds a whole model from VDVAE's layer strings (``enc_blocks`` / ``dec_blocks``, e.g.
``"32x11,32d2,16x6"`` and ``"1x1,4m1,4x2"``) with ordinary blocks, so every pass, estimator,
analysis tool and migration of :class:`~vaekit.models.hierarchical.HierarchicalVAE` works on it;
:data:`LAYOUTS` holds the published layouts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..._checks import InvalidArgumentError, check_choice, check_float, check_int
from ...nn import BottleneckBlock, Resample, conv1x1, conv3x3
from ..vae import LikelihoodName, make_likelihood
from .blocks import Block, DualInputBlock, InputBlock, OutputBlock, SimpleBlock, TopSimpleBlock
from ._common import LATENT_FAMILIES, check_categories, head_features
from .generative import LatentFamily, ResidualGenBlock
from .model import HierarchicalVAE

__all__ = ["TopDownBlock", "parse_layer_string", "vdvae_spatial_blocks", "vdvae", "LAYOUTS"]

#: Published layouts, by name: the model's arguments (``model``) and the training settings that
#: went with them (``trainer``, in :class:`vaekit.Trainer`'s arguments; what ``examples/configs/vdvae_*.yaml``
#: use). The papers' gradient thresholds are for a loss in nats per dimension; vaekit's loss is in nats
#: per example, so ``grad_clip`` and ``skip_threshold`` here are the published values times the data's
#: dimensions (3072 for CIFAR-10, 784 for MNIST).
LAYOUTS: dict[str, dict[str, Any]] = {
    # openai/vdvae hps.py, ``cifar10`` (Child, 2021, table 4): 39M parameters, 2.87 bits/dim.
    "vdvae_cifar10": {
        "model": {"width": 384, "latent_channels": 16, "bottleneck_multiple": 0.25, "input_kernel": 3,
                  "enc_blocks": "32x11,32d2,16x6,16d2,8x6,8d2,4x3,4d4,1x3",
                  "dec_blocks": "1x1,4m1,4x2,8m4,8x5,16m8,16x10,32m16,32x21",
                  "skips": "resolution", "likelihood": "discretized_logistic_mixture"},
        "trainer": {"optimizer": "adamw", "lr": 2e-4, "weight_decay": 0.01, "adam_betas": [0.9, 0.9], "warmup_steps": 100,
                    "batch_size": 16, "ema_decay": 0.9999, "grad_clip": 200.0 * 3072, "skip_threshold": 400.0 * 3072},
    },
    # Rayhane-mamah/Efficient-VDVAE egs/binarized_mnist_baseline.cfg (79.09 nats): 23 bottom-up and 23 top-down
    # blocks, every top-down block reading its own bottom-up block; MNIST zero-padded to 32x32.
    "efficient_vdvae_binarized_mnist": {
        "model": {"width": 32, "widths": {32: 32, 16: 64, 8: 128, 4: 256, 1: 512}, "latent_channels": 32,
                  "bottleneck_multiple": 1.0, "input_kernel": 1,
                  "enc_blocks": "32d2,16x1,16d2,8x9,8d2,4x4,4d4,1x5",
                  "dec_blocks": "1x5,4m1,4x4,8m4,8x9,16m8,16x1,32m16",
                  "skips": "block", "likelihood": "bernoulli"},
        "trainer": {"optimizer": "adamax", "lr": 1e-3, "weight_decay": 0.01, "lr_schedule": "cosine", "min_lr": 1e-4,
                    "warmup_steps": 100, "batch_size": 32, "ema_decay": 0.9999, "skip_threshold": 800.0 * 784,
                    "max_steps": 200000},
    },
}


class TopDownBlock(ResidualGenBlock):
    r"""VDVAE's top-down residual block with a spatial latent of shape (``latent_channels``, H, W).

    With state ``h`` (``width`` channels, from ``inputs``) and the encoder activation ``c``
    at the same resolution (``condition``, ``condition_width`` channels):

    - prior: ``BottleneckBlock(h)`` gives ``2 * latent_channels + width`` channels: the prior's
      location, raw scale and a residual ``r`` (its last convolution zeroed at
      initialisation, as VDVAE's); a relaxed categorical layer's parameters take
      ``head_features`` channels instead of ``2 * latent_channels`` (see
      :class:`~vaekit.models.hierarchical.GenerativeBlock`);
    - posterior: ``BottleneckBlock(cat(h, c))`` gives the location and raw scale;
    - output: ``resnet(h + r + z_projection(z))`` with a 1x1 ``z_projection`` and a residual
      bottleneck ``resnet``, both output convolutions scaled by ``1 / sqrt(n_blocks)`` at
      initialisation.

    Scales are ``softplus(raw) + min_scale`` as in every vaekit Gaussian head, the softplus with
    :math:`\beta = 1`. Efficient-VDVAE (``distribution_base = 'std'``) uses the smoothed
    softplus :math:`\frac{1}{\beta}\log(1 + e^{\beta\,\mathrm{raw}})` with
    :math:`\beta = \ln 2` (its ``gradient_smoothing_beta``), VDVAE itself ``exp``: the same
    raw outputs give other scales, so their weights do not load as they are.

    Parameters
    ----------
    name : str
    inputs : str
        The state ``h``, shape (N, width, H, W).
    condition : str
        The encoder activation at this resolution, shape (N, condition_width, H, W).
    width : int
    resolution : int or (int, int)
        H (= W) or (H, W) of the maps.
    latent_channels : int
    bottleneck_multiple : float
        Channels inside the bottleneck blocks: ``int(width * bottleneck_multiple)``.
    n_blocks : int
        Number of top-down blocks of the model (the output scaling).
    condition_width : int, optional
        Channels of the condition (default ``width``).
    use_3x3 : bool, optional
        3x3 convolutions inside the bottlenecks (default: when the resolution exceeds 2, as VDVAE).
    min_scale : float
    latent_family : {"gaussian", "laplace", "gs", "igr_i"}
    categories : int, optional
    relaxation_temperature : float
        See :class:`~vaekit.models.hierarchical.GenerativeBlock` (``categories`` divides ``latent_channels``).

    Examples
    --------
    >>> import torch
    >>> b = TopDownBlock("z", "h", "c", width=8, resolution=4, latent_channels=2, n_blocks=3)
    >>> h, c = torch.zeros(5, 8, 4, 4), torch.zeros(5, 8, 4, 4)
    >>> p, r = b.prior([h], 5)
    >>> q = b.posterior(c, [h], r)
    >>> b.latent_shape, q.event_shape, b.output(q.rsample(), [h], r).shape
    ((2, 4, 4), torch.Size([2, 4, 4]), torch.Size([5, 8, 4, 4]))
    """

    def __init__(self, name: str, inputs: str, condition: str, width: int, resolution: int | Sequence[int],
                 latent_channels: int = 16, bottleneck_multiple: float = 0.25, n_blocks: int = 1,
                 condition_width: int | None = None, use_3x3: bool | None = None, min_scale: float = 1e-4,
                 latent_family: LatentFamily = "gaussian", categories: int | None = None,
                 relaxation_temperature: float = 0.5) -> None:
        width, zc = check_int("width", width), check_int("latent_channels", latent_channels)
        family = check_choice("latent_family", latent_family, LATENT_FAMILIES)
        hf = head_features(family, zc, check_categories(family, categories, (zc,), relaxation_temperature, name)[0])
        res = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
        hw = tuple(check_int("resolution", r) for r in res)
        if len(hw) != 2:
            raise InvalidArgumentError(f"resolution of block {name!r} must be an int or [H, W], got {resolution!r}")
        mid = max(1, int(width * check_float("bottleneck_multiple", bottleneck_multiple, 0, low_open=True)))
        scale = 1.0 / math.sqrt(check_int("n_blocks", n_blocks))
        cw = width if condition_width is None else check_int("condition_width", condition_width)
        use_3x3 = min(hw) > 2 if use_3x3 is None else bool(use_3x3)
        super().__init__(
            name, inputs, condition,
            prior_net=BottleneckBlock(width, mid, hf + width, use_3x3=use_3x3, zero_last=True),
            posterior_net=BottleneckBlock(width + cw, mid, hf, use_3x3=use_3x3),
            z_projection=conv1x1(zc, width, scale=scale),
            latent_features=[zc, *hw],
            residual_net=BottleneckBlock(width, mid, width, residual=True, use_3x3=use_3x3, last_scale=scale),
            min_scale=min_scale, latent_family=family, categories=categories, relaxation_temperature=relaxation_temperature)
        self.width = width


def parse_layer_string(layers: str | Sequence[str], what: str = "blocks") -> list[tuple[int, int | None, str]]:
    """VDVAE's layer string as a list of ``(resolution, rate, kind)``, one entry per block.

    ``"RxN"``: N blocks at resolution R; ``"RdK"``: one encoder block at R that pools by K;
    ``"RmM"``: one decoder block at R that mixes in the state of resolution M (up-sampled);
    ``"R"``: one block. ``kind`` is ``"x"``, ``"d"`` or ``"m"``.

    >>> parse_layer_string("32x2,32d2,16m4")
    [(32, None, 'x'), (32, None, 'x'), (32, 2, 'd'), (16, 4, 'm')]
    """
    items = layers.split(",") if isinstance(layers, str) else list(layers)
    out: list[tuple[int, int | None, str]] = []
    for item in items:
        s = str(item).strip()
        count = 1
        try:
            if "x" in s:
                res, count = (int(a) for a in s.split("x"))
                out += [(res, None, "x")] * count
            elif "d" in s or "m" in s:
                kind = "d" if "d" in s else "m"
                res, rate = (int(a) for a in s.split(kind))
                out.append((res, rate, kind))
            else:
                out.append((int(s), None, "x"))
        except ValueError:
            raise InvalidArgumentError(f"{what} item {s!r} is not VDVAE's 'RxN', 'RdK', 'RmM' or 'R' (R a resolution, N a "
                                       f"count, K a pooling rate, M a coarser resolution); got {layers!r}") from None
        if count < 1:
            raise InvalidArgumentError(f"{what} item {s!r}: the number of blocks after 'x' must be >= 1, got {count} "
                                       f"(in {layers!r})")
    if not out or any(r < 1 or (k is not None and k < 1) for r, k, _ in out):
        raise InvalidArgumentError(f"{what} must list at least one block with positive resolutions and rates, got {layers!r}")
    return out


def _widths(width: int, widths: dict[int, int] | str | None) -> dict[int, int]:
    """Channels per resolution: ``widths`` (a dict, or VDVAE's ``"32:64,16:128"``) over the default ``width``."""
    if widths is None:
        return {}
    if isinstance(widths, str):
        try:
            widths = {int(k): int(v) for k, v in (item.split(":") for item in widths.split(",") if item)}
        except ValueError:
            raise InvalidArgumentError(f"widths must be a dict {{resolution: channels}} or 'R:C,R:C', got {widths!r}") from None
    return {int(k): check_int("widths", v) for k, v in dict(widths).items()}


def vdvae_spatial_blocks(data_shape: Sequence[int], enc_blocks: str | Sequence[str], dec_blocks: str | Sequence[str],
                         width: int = 384, widths: dict[int, int] | str | None = None, latent_channels: int = 16,
                         bottleneck_multiple: float = 0.25, skips: str = "resolution", input_kernel: int = 3,
                         likelihood: LikelihoodName = "discretized_logistic_mixture", min_scale: float = 1e-4,
                         latent_family: LatentFamily = "gaussian", categories: int | None = None,
                         relaxation_temperature: float = 0.5) -> list[Block]:
    """Blocks of a VDVAE with spatial latents (see :func:`vdvae` for the arguments)."""
    if len(data_shape) != 3:
        raise InvalidArgumentError(f"vdvae needs image data_shape [C, H, W], got {list(data_shape)}")
    channels, height, w_img = (int(d) for d in data_shape)
    skips = check_choice("skips", skips, ("resolution", "block"))
    k_in = check_choice("input_kernel", input_kernel, (1, 3))
    width = check_int("width", width)
    per_res = _widths(width, widths)
    wid = lambda r: per_res.get(r, width)  # noqa: E731
    enc, dec = parse_layer_string(enc_blocks, "enc_blocks"), parse_layer_string(dec_blocks, "dec_blocks")
    size = enc[0][0]
    unused = sorted(set(per_res) - {r for r, _, _ in enc} - {r // k for r, k, kind in enc if kind == "d"})
    if unused:
        raise InvalidArgumentError(f"widths names resolutions {unused} that the layout does not have (its resolutions: "
                                   f"{sorted({r for r, _, _ in enc} | {r for r, _, _ in dec})}); got widths={widths!r}")
    if height != w_img or size < height or (size - height) % 2:
        raise InvalidArgumentError(f"enc_blocks start at resolution {size}, but the images are {height}x{w_img}; vdvae takes "
                                   "square images no larger than that resolution (smaller ones are zero-padded evenly)")
    pad = (size - height) // 2
    lik = make_likelihood(likelihood)
    mid = lambda r: max(1, int(wid(r) * bottleneck_multiple))  # noqa: E731
    conv_in = (conv3x3 if k_in == 3 else conv1x1)(channels, wid(size))
    blocks: list[Block] = [InputBlock("x_in", nn.Sequential(nn.ZeroPad2d(pad), conv_in) if pad else conv_in)]
    # bottom-up: residual bottlenecks, pooling after a "d" block; activations per resolution
    res_last: dict[int, str] = {size: "x_in"}
    res_all: dict[int, list[str]] = {}
    prev, res, scale = "x_in", size, 1.0 / math.sqrt(len(enc))
    for i, (r, rate, kind) in enumerate(enc, 1):
        if r != res:
            raise InvalidArgumentError(f"enc_blocks item {i} is at resolution {r} but the encoder is at {res} there; each "
                                       "resolution's blocks must follow the 'RdK' that pools to it")
        name = f"enc{i}"
        blocks.append(SimpleBlock(name, prev, BottleneckBlock(wid(r), mid(r), wid(r), residual=True, use_3x3=r > 2,
                                                              last_scale=scale)))
        res_all.setdefault(r, []).append(name)
        prev = name
        if kind != "d":  # VDVAE's activation at a resolution: the last block output there (a pooling block's is coarser)
            res_last[r] = name
        else:
            if r % rate:
                raise InvalidArgumentError(f"enc_blocks item {r}d{rate}: resolution {r} is not divisible by {rate}")
            res = r // rate
            blocks.append(SimpleBlock(f"{name}_down", name, Resample(rate, "down", channels=wid(res))))
            res_last[res], prev = f"{name}_down", f"{name}_down"
    # top-down: per resolution a trainable zero start state; the first block of a resolution adds the coarser state
    n_dec, state, res = len(dec), None, None
    used: dict[int, int] = {}
    for j, (r, mixin, kind) in enumerate(dec, 1):
        if kind == "m" and r == res:
            raise InvalidArgumentError(f"dec_blocks item {r}m{mixin}: a mix-in starts a new resolution, but the decoder is "
                                       f"already at {r}")
        if kind == "d":
            raise InvalidArgumentError(f"dec_blocks item {r}d{mixin}: 'RdK' (pooling) belongs in enc_blocks")
        if r != res:
            blocks.append(TopSimpleBlock(f"bias{r}", [wid(r), r, r]))
            state = f"bias{r}"
            if kind == "m":
                if mixin is None or r % mixin or res != mixin:
                    raise InvalidArgumentError(f"dec_blocks item {r}m{mixin} must mix in the resolution just above it "
                                               f"({res}), and {r} must be a multiple of it")
                blocks.append(SimpleBlock(f"up{j}", f"z{j - 1}", Resample(r // mixin, "nearest", channels=wid(r))))
                blocks.append(DualInputBlock(f"in{j}", [f"bias{r}", f"up{j}"], mode="sum"))
                state = f"in{j}"
            res = r
        if skips == "resolution":
            if r not in res_last:
                raise InvalidArgumentError(f"dec_blocks has a block at resolution {r} but the encoder has no activation there "
                                           f"(encoder resolutions: {sorted(res_last)})")
            condition = res_last[r]
        else:
            acts = res_all.get(r, [])
            k = used.get(r, 0)
            if k >= len(acts):
                raise InvalidArgumentError(f"skips='block' pairs every top-down block with its own bottom-up block, but "
                                           f"resolution {r} has {len(acts)} encoder blocks and more decoder blocks")
            condition, used[r] = acts[len(acts) - 1 - k], k + 1
        blocks.append(TopDownBlock(f"z{j}", state, condition, wid(r), r, latent_channels, bottleneck_multiple, n_dec,
                                   min_scale=min_scale, latent_family=latent_family, categories=categories,
                                   relaxation_temperature=relaxation_temperature))
        state = f"z{j}"
    if skips == "block" and any(used.get(r, 0) != len(a) for r, a in res_all.items()):
        raise InvalidArgumentError(f"skips='block' needs as many decoder as encoder blocks per resolution; encoder "
                                   f"{ {r: len(a) for r, a in res_all.items()} }, decoder {used}")
    if res != size:
        raise InvalidArgumentError(f"dec_blocks must end at the image resolution {size}, ends at {res}")
    out = conv1x1(wid(size), lik.params_per_dim * channels)
    blocks.append(OutputBlock("x_out", state, nn.Sequential(out, nn.ZeroPad2d(-pad)) if pad else out, lik))
    return blocks


def vdvae(data_shape: Sequence[int], layout: str | None = None, *, enc_blocks: str | Sequence[str] | None = None,
          dec_blocks: str | Sequence[str] | None = None, width: int | None = None,
          widths: dict[int, int] | str | None = None, latent_channels: int | None = None,
          bottleneck_multiple: float | None = None, skips: str | None = None, input_kernel: int | None = None,
          likelihood: LikelihoodName | None = None, min_scale: float = 1e-4,
          latent_family: LatentFamily = "gaussian", categories: int | None = None,
          relaxation_temperature: float = 0.5) -> HierarchicalVAE:
    """A VDVAE (Child, 2021) with spatial latents, from VDVAE's layer strings or a published layout.

    The encoder is an input convolution, then VDVAE's residual bottleneck blocks
    (:class:`vaekit.nn.BottleneckBlock`), average-pooling after each ``"RdK"`` item (and
    zero-padding the channels where the next resolution is wider). The decoder starts at
    a trainable zero state per resolution; the first block of a resolution (``"RmM"``)
    adds the nearest-up-sampled state of resolution M; every block is a
    :class:`TopDownBlock` whose posterior reads the encoder activation at its resolution
    (``skips="resolution"``, VDVAE: the last encoder block there) or its own encoder block
    (``skips="block"``, Efficient-VDVAE: the k-th decoder block at a resolution reads the
    k-th encoder block there counted from the top). A 1x1 convolution gives the
    likelihood's parameters. Images smaller than the first encoder resolution are
    zero-padded (MNIST to 32x32, as Efficient-VDVAE) and the output cropped back.

    Parameters
    ----------
    data_shape : [C, H, W]
    layout : str, optional
        A name in :data:`LAYOUTS` (``"vdvae_cifar10"``, ``"efficient_vdvae_binarized_mnist"``),
        whose values the other arguments override; without one ``enc_blocks`` and
        ``dec_blocks`` are required.
    enc_blocks, dec_blocks : str or list of str
        VDVAE's layer strings (see :func:`parse_layer_string`).
    width : int
        Channels at every resolution not in ``widths`` (default 384).
    widths : dict of int to int or str, optional
        Channels per resolution (VDVAE's ``custom_width_str``, e.g. ``"32:64,16:128"``).
    latent_channels : int
        Channels of each block's latent (VDVAE's ``zdim``; default 16).
    bottleneck_multiple : float
        Bottleneck channels per width (default 0.25).
    skips : {"resolution", "block"}
        Which encoder activation a decoder block reads (default ``"resolution"``).
    input_kernel : {1, 3}
        Kernel of the input convolution (default 3).
    likelihood : str
        See :func:`vaekit.models.make_likelihood` (default ``"discretized_logistic_mixture"``,
        10 components as VDVAE).
    min_scale : float
    latent_family : {"gaussian", "laplace", "gs", "igr_i"}
        Family of every latent layer (see :class:`~vaekit.models.hierarchical.GenerativeBlock`).
    categories : int, optional
        ``K`` of a relaxed categorical family (``"gs"``, ``"igr_i"``): each block's
        ``latent_channels`` are ``latent_channels / K`` categorical variables per position.
    relaxation_temperature : float
        :math:`\\tau` of a relaxed categorical family.

    Examples
    --------
    >>> model = vdvae([1, 8, 8], enc_blocks="8x1,8d2,4x1,4d4,1x1", dec_blocks="1x1,4m1,4x1,8m4",
    ...               width=8, latent_channels=2, likelihood="bernoulli")
    >>> model.latent_names, model.blocks["z1"].latent_shape, model.blocks["z4"].latent_shape
    (('z1', 'z2', 'z3', 'z4'), (2, 1, 1), (2, 8, 8))
    >>> model.latent_dims["z4"]
    128
    """
    args: dict[str, Any] = {"width": 384, "widths": None, "latent_channels": 16, "bottleneck_multiple": 0.25,
                            "skips": "resolution", "input_kernel": 3, "likelihood": "discretized_logistic_mixture"}
    if layout is not None:
        args.update(LAYOUTS[check_choice("layout", layout, tuple(LAYOUTS))]["model"])
    given = {"enc_blocks": enc_blocks, "dec_blocks": dec_blocks, "width": width, "widths": widths,
             "latent_channels": latent_channels, "bottleneck_multiple": bottleneck_multiple, "skips": skips,
             "input_kernel": input_kernel, "likelihood": likelihood}
    args.update({k: v for k, v in given.items() if v is not None})
    if "enc_blocks" not in args or "dec_blocks" not in args:
        raise InvalidArgumentError(f"vdvae needs a layout (one of {sorted(LAYOUTS)}) or both enc_blocks and dec_blocks "
                                   "(VDVAE's layer strings, e.g. enc_blocks='32x2,32d2,16x2', dec_blocks='16x2,32m16')")
    return HierarchicalVAE(vdvae_spatial_blocks(data_shape, min_scale=min_scale, latent_family=latent_family,
                                                categories=categories, relaxation_temperature=relaxation_temperature, **args),
                           data_shape)
