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
``"hvae-efficientvdvae"`` maps its state dict one to one. Two outputs are built: the
binarized-MNIST one, a Bernoulli over the logits of ``output_conv`` (Efficient-VDVAE's
``BernoulliLoss``) on images zero-padded to ``resolution`` and cropped back, as Efficient-VDVAE
pads MNIST to 32x32; and hVAE's ``'mol'`` output of its ImageNet-32 model
(``output_distribution="mol"``): ``output_conv`` to ``M (3 C + 1)`` channels scored by hVAE's
``DiscMixLogistic`` (``src/elements/losses.py``, Efficient-VDVAE's loss), on 8-bit RGB images
that the encoder and the likelihood read in [-1, 1] (:class:`HVAEScalePixels`,
:class:`HVAEMoLLayout`, :class:`HVAEMixtureOfLogistics`). hVAE's own code at that commit cannot
compute that likelihood (its ``OutputBlock`` hands only the first half of the channels to a
``MixtureOfLogistics`` whose ``log_prob`` raises, and ``DiscMixLogistic`` unpacks its
``(3, 32, 32)`` data shape as ``h, w, c``); vaekit scores all ``M (3 C + 1)`` channels with
``C = 3``, what Efficient-VDVAE computes.

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
from torch import Size, Tensor, nn
from torch.distributions import Distribution, constraints

from ..._checks import InvalidArgumentError, check_choice, check_float, check_int
from ..._recording import Configurable
from ...distributions import Bernoulli, DiscretizedLogistic
from ...nn import BottleneckBlock, Resample, conv1x1
from ._common import Base, HVAEHead, SigmaParam, block_module, check_hvae_head
from .blocks import Block, InputBlock, OutputBlock, SimpleBlock, TopSimpleBlock
from .generative import ResidualGenBlock
from .model import HierarchicalVAE

__all__ = ["HVAEPool", "HVAEUnpool", "HVAEResidualGenBlock", "HVAEScalePixels", "HVAEMoLLayout", "HVAEMixtureOfLogistics",
           "HVAEMixtureOfLogisticsDistribution", "hvae_convnet", "efficient_vdvae_blocks", "efficient_vdvae", "BINARIZED_MNIST"]

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


class HVAEScalePixels(Configurable, nn.Module):
    """Images in [0, 1] to [-1, 1] (``2 x - 1``): what the Efficient-VDVAE weights that hVAE migrates saw as input.

    Efficient-VDVAE's and hVAE's ``scale_pixels`` map an 8-bit level ``k`` to ``(k - 127.5) / 127.5``,
    which is ``2 (k / 255) - 1``.

    >>> HVAEScalePixels()(torch.tensor([0.0, 0.5, 1.0]))
    tensor([-1.,  0.,  1.])
    """

    def forward(self, x: Tensor) -> Tensor:
        return x * 2 - 1


class HVAEMoLLayout(Configurable, nn.Module):
    r"""hVAE's mixture-of-logistics output channels rearranged into :class:`HVAEMixtureOfLogistics`' layout.

    hVAE's (and Efficient-VDVAE's) ``output_conv`` gives ``M (3 C + 1)`` channels per pixel:
    the ``M`` mixture logits, then per image channel ``c`` its ``M`` means, ``M`` raw log-scales
    and ``M`` raw coefficients (channel ``M + 3 M c + j``). The likelihood reads ``4 M`` groups
    of ``C`` channels, channel-stacked like every vaekit likelihood (group ``g``, channel
    ``c`` at ``g C + c``): logits, means, raw log-scales, raw coefficients. A logit goes to
    channel 0 of its group and the other ``C - 1`` get zeros (the likelihood sums a group's
    channels). No parameters: the state dict is hVAE's.

    >>> lay = HVAEMoLLayout(2, 3)
    >>> out = lay(torch.arange(20.0).reshape(1, 20, 1, 1)).flatten()
    >>> out[:6].tolist(), out[6:12].tolist(), out[18:].tolist()
    ([0.0, 0.0, 0.0, 1.0, 0.0, 0.0], [2.0, 8.0, 14.0, 3.0, 9.0, 15.0], [6.0, 12.0, 18.0, 7.0, 13.0, 19.0])
    """

    def __init__(self, n_mixtures: int, channels: int = 3) -> None:
        super().__init__()
        self.n_mixtures, self.channels = check_int("n_mixtures", n_mixtures), check_int("channels", channels)

    def forward(self, y: Tensor) -> Tensor:
        m, c = self.n_mixtures, self.channels
        if y.dim() < 3 or y.shape[-3] != m * (3 * c + 1):
            raise ValueError(f"HVAEMoLLayout(n_mixtures={m}, channels={c}) needs {m * (3 * c + 1)} channels (M (3 C + 1)), got "
                             f"shape {tuple(y.shape)}")
        logits = y[..., :m, :, :].unsqueeze(-3)  # (*, M, 1, H, W)
        logits = torch.cat([logits, logits.new_zeros(*logits.shape[:-3], c - 1, *logits.shape[-2:])], -3)
        rest = y[..., m:, :, :].unflatten(-3, (c, 3, m)).movedim(-5, -3)  # (*, 3, M, C, H, W)
        return torch.cat([logits.unsqueeze(-5), rest], -5).flatten(-5, -3)


def _log_scales(raw: Tensor, base: str, beta: float, min_log_scale: float) -> tuple[Tensor, Tensor]:
    """hVAE's ``DiscMixLogistic._compute_inv_stdv``: ``(inv_stdv, log_scales)`` of the raw log-scale channels."""
    if base == "logstd":  # the clamp acts on the raw value, beta after it; log_scales stays unscaled (as hVAE's)
        log_scales = raw.clamp_min(min_log_scale)
        return torch.exp(-beta * log_scales), log_scales
    scales = F.softplus(raw, beta=beta).clamp_min(math.exp(min_log_scale))
    return 1.0 / scales, torch.log(scales)


class HVAEMixtureOfLogisticsDistribution(Distribution):
    r"""hVAE's discretized mixture of logistics over 8-bit RGB images in [0, 1], the channels autoregressive.

    Per pixel, ``M`` components shared by the three channels (PixelCNN++'s mixture):
    :math:`p(x) = \sum_m \pi_m \prod_c \mathrm{DLogistic}(x_c; \mu_{m,c}, s_{m,c})` with
    :math:`\mu_{m,1} = a_{m,1} + t_{m,0} x_0` and :math:`\mu_{m,2} = a_{m,2} + t_{m,1} x_0 + t_{m,2} x_1`
    (:math:`t = \tanh` of the raw coefficients, :math:`x` in [-1, 1]), each channel binned in
    bins of half-width 1/255 with the tails at levels 0 and 255, and the density at the bin
    centre times 2/255 where a bin's mass is below 1e-5: hVAE's ``DiscMixLogistic`` (from
    Efficient-VDVAE's). Kept from it: with ``base="logstd"`` that density divides by
    ``exp(raw)`` where the scale is ``exp(beta raw)``, so where the fallback applies (scales of
    a few bins) the masses sum to more than one.

    Parameters
    ----------
    logits : Tensor of shape (*batch, M, H, W)
    loc, raw_log_scale, raw_coeff : Tensor of shape (*batch, M, 3, H, W)
        Means (in [-1, 1] units), raw log-scales and raw coefficients.
    base : {"logstd", "std"}
        ``"logstd"``: scale ``exp(beta * max(raw, min_log_scale))``; ``"std"``:
        ``max(softplus_beta(raw), exp(min_log_scale))``.
    beta, min_log_scale : float
    """

    arg_constraints = {"logits": constraints.real, "loc": constraints.real}
    support = constraints.unit_interval

    def __init__(self, logits: Tensor, loc: Tensor, raw_log_scale: Tensor, raw_coeff: Tensor, base: str = "logstd",
                 beta: float = 0.6931472, min_log_scale: float = -250.0, validate_args: bool | None = False) -> None:
        self.logits, self.loc, self.coeff = logits, loc, torch.tanh(raw_coeff)
        self.inv_scale, self.log_scale = _log_scales(raw_log_scale, base, beta, min_log_scale)
        super().__init__(logits.shape[:-3], loc.shape[-3:], validate_args=validate_args)

    def _means(self, x: Tensor) -> Tensor:
        """Each component's channel means given the (conditioning) channels ``x`` in [-1, 1], shape (*, M, 3, H, W)."""
        a, t = self.loc, self.coeff
        return torch.stack(torch.broadcast_tensors(
            a[..., 0, :, :], a[..., 1, :, :] + t[..., 0, :, :] * x[..., 0, :, :],
            a[..., 2, :, :] + t[..., 1, :, :] * x[..., 0, :, :] + t[..., 2, :, :] * x[..., 1, :, :]), -3)

    @property
    def mean(self) -> Tensor:
        """The mean of the mixture before binning and clipping (each component's means chained through the channels),
        clipped to [-1, 1], in [0, 1] units."""
        a, t = self.loc, self.coeff
        m0 = a[..., 0, :, :]
        m1 = a[..., 1, :, :] + t[..., 0, :, :] * m0
        m2 = a[..., 2, :, :] + t[..., 1, :, :] * m0 + t[..., 2, :, :] * m1
        w = F.softmax(self.logits, -3).unsqueeze(-3)
        return ((w * torch.stack([m0, m1, m2], -3)).sum(-4).clamp(-1, 1) + 1) / 2

    def log_prob(self, value: Tensor) -> Tensor:
        x = (value * 2 - 1).unsqueeze(-4)  # (*, 1, 3, H, W) in [-1, 1]
        centered = x - self._means(x)
        half = 1.0 / 255
        plus_in, min_in, mid_in = self.inv_scale * (centered + half), self.inv_scale * (centered - half), self.inv_scale * centered
        log_cdf_plus = plus_in - F.softplus(plus_in)  # level 0
        log_one_minus_cdf_min = -F.softplus(min_in)  # level 255
        cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
        log_pdf_mid = mid_in - self.log_scale - 2.0 * F.softplus(mid_in)
        interior = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp_min(1e-12)), log_pdf_mid - math.log(255 / 2))
        x = x.expand_as(centered)
        per_channel = torch.where(x < -1 + half, log_cdf_plus, torch.where(x > 1 - half, log_one_minus_cdf_min, interior))
        per_pixel = torch.logsumexp(per_channel.sum(-3) + F.log_softmax(self.logits, -3), -3)
        return per_pixel.sum((-2, -1))

    def sample(self, sample_shape: Size = Size()) -> Tensor:
        """A component per pixel (Gumbel-max), logistic noise, the channels in order, each clipped to [-1, 1]; then the
        8-bit level in [0, 1]."""
        with torch.no_grad():
            shape = Size(sample_shape)
            logits = self.logits.expand(*shape, *self.logits.shape)

            def uniform(like: Tensor) -> Tensor:
                return torch.rand(like.shape, dtype=like.dtype, device=like.device).clamp(1e-5, 1 - 1e-5)
            u = uniform(logits)
            pick = (logits - torch.log(-torch.log(u))).argmax(-3, keepdim=True).unsqueeze(-3)  # (*, 1, 1, H, W)
            full = (*shape, *self.loc.shape)
            index = pick.expand(*full[:-4], 1, *full[-3:])  # gathered, so an unpicked component's scale is never read
            loc, t, inv = (p.expand(full).gather(-4, index).squeeze(-4) for p in (self.loc, self.coeff, self.inv_scale))
            u = uniform(loc)
            y = loc + (torch.log(u) - torch.log1p(-u)) / inv
            x0 = y[..., 0, :, :].clamp(-1, 1)
            x1 = (y[..., 1, :, :] + t[..., 0, :, :] * x0).clamp(-1, 1)
            x2 = (y[..., 2, :, :] + t[..., 1, :, :] * x0 + t[..., 2, :, :] * x1).clamp(-1, 1)
            return torch.round((torch.stack([x0, x1, x2], -3) + 1) / 2 * 255) / 255


class HVAEMixtureOfLogistics(DiscretizedLogistic):
    """hVAE's mixture-of-logistics output for 8-bit RGB images in [0, 1] (:class:`HVAEMixtureOfLogisticsDistribution`).

    The decoder gives ``params_per_dim = 4 * n_mixtures`` groups of 3 channels (channel-stacked):
    mixture logits (a component's logit is the sum of its group's 3 channels), means, raw
    log-scales and raw coefficients; :class:`HVAEMoLLayout` puts hVAE's ``output_conv``
    channels there. ``base`` and ``beta`` act on the scales as in hVAE, which takes them from
    its latents' ``distribution_base`` and ``gradient_smoothing_beta``; ``min_log_scale`` is
    its ``min_mol_logscale`` (-250: no clamp). Data: 3 channels, 8-bit levels ``k / 255`` in [0, 1]
    (anything else is refused naming this class).

    >>> lik = HVAEMixtureOfLogistics(n_mixtures=2)
    >>> px = lik(torch.zeros(5, 24, 4, 4), event_ndim=3)
    >>> lik.params_per_dim, px.batch_shape, px.event_shape
    (8, torch.Size([5]), torch.Size([3, 4, 4]))
    """

    def __init__(self, n_mixtures: int = 10, min_log_scale: float = -250.0, base: Base = "logstd",
                 beta: float = 0.6931472) -> None:
        super().__init__(n_bins=256, min_log_scale=min_log_scale)
        self.n_mixtures = check_int("n_mixtures", n_mixtures)
        self.base = check_choice("base", base, get_args(Base))
        self.beta = check_float("beta", beta, 0, low_open=True)
        self.params_per_dim = 4 * self.n_mixtures

    def forward(self, params: Tensor, event_ndim: int) -> Distribution:
        m = self.n_mixtures
        if event_ndim != 3 or params.dim() < 3 or params.shape[-3] != 12 * m:
            raise ValueError(f"HVAEMixtureOfLogistics(n_mixtures={m}) needs RGB images: parameters of shape (*, {12 * m}, H, W) "
                             f"with event_ndim 3, got shape {tuple(params.shape)} with event_ndim {event_ndim}")
        p = params.unflatten(-3, (4, m, 3))
        return HVAEMixtureOfLogisticsDistribution(p[..., 0, :, :, :, :].sum(-3), p[..., 1, :, :, :, :], p[..., 2, :, :, :, :],
                                                  p[..., 3, :, :, :, :], self.base, self.beta, self.min_log_scale)

    def validate(self, x: Tensor, name: str = "x") -> None:
        if x.dim() < 3 or x.shape[-3] != 3:
            raise ValueError(f"{name} must be RGB images (3 channels) for HVAEMixtureOfLogistics, got shape {tuple(x.shape)}")
        if float(x.min()) < 0 or float(x.max()) > 1:
            raise ValueError(f"{name} must lie in [0, 1] (8-bit levels k/255) for HVAEMixtureOfLogistics, got values in "
                             f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")
        off = (x * 255 - (x * 255).round()).abs().max()
        if float(off) > 1e-3:
            raise ValueError(f"{name} is not on the grid of the 256 levels k/255 that HVAEMixtureOfLogistics scores "
                             f"(hVAE's 8-bit images; largest offset {float(off):.3g} levels); quantise the data to 8 bits")


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
#: ``output_distribution``: Efficient-VDVAE's binarized-MNIST output or hVAE's ``'mol'`` (see :func:`efficient_vdvae`).
OutputDistribution = Literal["bernoulli", "mol"]
_OPTIONS: dict[str, Any] = {**_HEADS, "wiring": "hvae", "output_distribution": "bernoulli", "num_output_mixtures": 10,
                            "min_mol_logscale": -250.0}


def efficient_vdvae_blocks(data_shape: Sequence[int] = (1, 28, 28), **layout: Any) -> list[Block]:
    """Blocks of hVAE's EfficientVDVAE: ``layout`` takes :func:`efficient_vdvae`'s other arguments, by name, same defaults.

    >>> efficient_vdvae_blocks(up_layers=[2])
    Traceback (most recent call last):
    ...
    vaekit._checks.InvalidArgumentError: efficient_vdvae_blocks got unknown arguments ['up_layers']; it takes ['base', 'beta', 'down_filters', 'down_kernel_size', 'down_latent_variates', 'down_mid_filters_ratio', 'down_n_blocks', 'down_n_blocks_per_res', 'down_strides', 'input_conv_filters', 'input_kernel_size', 'min_mol_logscale', 'num_output_mixtures', 'output_distribution', 'output_kernel_size', 'resolution', 'sigma_param', 'up_filters', 'up_kernel_size', 'up_mid_filters_ratio', 'up_n_blocks', 'up_n_blocks_per_res', 'up_skip_filters', 'up_strides', 'wiring']
    """
    unknown = sorted(set(layout) - set(BINARIZED_MNIST) - set(_OPTIONS))
    if unknown:
        raise InvalidArgumentError(f"efficient_vdvae_blocks got unknown arguments {unknown}; it takes "
                                   f"{sorted([*BINARIZED_MNIST, *_OPTIONS])}")
    a = {**BINARIZED_MNIST, **_OPTIONS, **layout}
    wiring = check_choice("wiring", a["wiring"], get_args(Wiring))
    output = check_choice("output_distribution", a["output_distribution"], get_args(OutputDistribution))
    mixtures = check_int("num_output_mixtures", a["num_output_mixtures"])
    min_mol_logscale = check_float("min_mol_logscale", a["min_mol_logscale"])
    for key in ("num_output_mixtures", "min_mol_logscale"):
        if output == "bernoulli" and a[key] != _OPTIONS[key]:
            raise InvalidArgumentError(f"{key} = {a[key]!r} applies to output_distribution 'mol' only, but "
                                       f"output_distribution is 'bernoulli'; give output_distribution='mol' or leave "
                                       f"{key} at its default {_OPTIONS[key]!r}")
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
    if output == "mol" and channels != 3:
        raise InvalidArgumentError(f"output_distribution 'mol' (hVAE's mixture of logistics) needs RGB images, data_shape "
                                   f"[3, H, W]; got data_shape {list(data_shape)}")
    pad = (res - height) // 2
    conv_in = _conv(channels, input_conv_filters, a["input_kernel_size"])
    # 'mol': 8-bit images in [0, 1] enter as Efficient-VDVAE's [-1, 1] (the Bernoulli model keeps hVAE's 0/1 input)
    stem = [*([HVAEScalePixels()] if output == "mol" else []), *([nn.ZeroPad2d(pad)] if pad else []), conv_in]
    blocks: list[Block] = [InputBlock("x_in", nn.Sequential(*stem) if len(stem) > 1 else conv_in)]
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
    if output == "bernoulli":
        out = _conv(down_filters[-1], channels, a["output_kernel_size"])
        blocks.append(OutputBlock("x_hat", prev, nn.Sequential(out, nn.ZeroPad2d(-pad)) if pad else out, Bernoulli()))
        return blocks
    out = _conv(down_filters[-1], mixtures * (3 * channels + 1), a["output_kernel_size"])
    net = nn.Sequential(out, *([nn.ZeroPad2d(-pad)] if pad else []), HVAEMoLLayout(mixtures, channels))
    blocks.append(OutputBlock("x_hat", prev, net, HVAEMixtureOfLogistics(mixtures, min_mol_logscale, head["base"], head["beta"])))
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
                    beta: float = 0.6931472, wiring: Wiring = "hvae", output_distribution: OutputDistribution = "bernoulli",
                    num_output_mixtures: int = 10, min_mol_logscale: float = -250.0) -> HierarchicalVAE:
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
    - ``x_hat``: ``output_conv`` to Bernoulli logits (``output_distribution="bernoulli"``,
      Efficient-VDVAE's binarized-MNIST output), or with ``output_distribution="mol"`` (hVAE's
      ``'mol'``, its ImageNet-32 output; RGB only) to ``num_output_mixtures * 10`` channels
      (:class:`HVAEMoLLayout`) of :class:`HVAEMixtureOfLogistics` with ``base``, ``beta`` and
      ``min_mol_logscale``; the input block then maps the images from [0, 1] to [-1, 1]
      (:class:`HVAEScalePixels`), as Efficient-VDVAE's ``scale_pixels``. ``num_output_mixtures``
      and ``min_mol_logscale`` other than their defaults are refused with the Bernoulli output.

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
