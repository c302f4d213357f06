"""examples/configs/vdvae_binarized_mnist.yaml against Efficient-VDVAE's binarized-MNIST model, parameter for parameter.

The config is ``vdvae(...)`` with the layout of Efficient-VDVAE's ``egs/binarized_mnist_baseline.cfg``
(``Rayhane-mamah/Efficient-VDVAE``). Efficient-VDVAE's own module tree is
``hvae_compat_evdvae.efficient_vdvae(wiring="efficient_vdvae")`` with its defaults (that cfg's lists,
:data:`~vaekit.models.hierarchical.hvae_compat_evdvae.BINARIZED_MNIST`): hVAE's migration copies each
Efficient-VDVAE tensor into one of its modules, and the ``hvae-efficientvdvae`` preset maps those one to
one. Both models are built on the meta device (sizes only, no memory).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import yaml

from vaekit.models.hierarchical import vdvae
from vaekit.models.hierarchical.hvae_compat_evdvae import HVAEPool, HVAEUnpool, efficient_vdvae

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "configs" / "vdvae_binarized_mnist.yaml"


def _count(module: torch.nn.Module, keep=lambda name: True) -> int:
    return sum(p.numel() for name, p in module.named_parameters() if keep(name))


def test_the_binarized_mnist_config_has_efficient_vdvaes_layout_and_vdvaes_blocks():
    """The numbers docs/hierarchical.md gives: 62,024,673 parameters against Efficient-VDVAE's 69,919,585.

    The bottom-up difference is exactly Efficient-VDVAE's strided-convolution pooling and 1x1 skip projections,
    which VDVAE's blocks (average pooling, channels zero-padded, the block's output as the skip) do not have; the
    top-down difference exactly its unpooling convolutions and the heads of its 23 latent blocks, its unpooling scale
    biases matching VDVAE's per-resolution biases one for one."""
    init_args = yaml.safe_load(CONFIG.read_text())["model"]["init_args"]
    with torch.device("meta"):
        ours, theirs = vdvae(**init_args), efficient_vdvae(wiring="efficient_vdvae")
    assert (_count(ours), _count(theirs)) == (62_024_673, 69_919_585)
    # the same depth: 23 latent layers of 32 channels at the same resolutions
    assert [ours.blocks[n].latent_shape for n in ours.latent_names] == \
        [theirs.blocks[n].latent_shape for n in theirs.latent_names]
    assert len(ours.latent_names) == 23
    up_ours = _count(ours, lambda n: n.startswith(("blocks.enc", "blocks.x_in.")))
    up_theirs = _count(theirs, lambda n: n.startswith(("blocks.level_up_", "blocks.x_in.")))
    pools = sum(_count(m) for m in theirs.modules() if isinstance(m, HVAEPool))
    skips = _count(theirs, lambda n: n.startswith("blocks.level_up_") and n.split(".")[1].endswith("_skip"))
    assert (up_ours, up_theirs, pools, skips) == (15_278_784, 19_365_664, 2_270_144, 1_816_736)
    assert up_theirs - up_ours == pools + skips
    # top-down: Efficient-VDVAE's unpooling (1x1 convolutions and the scale biases it creates at its first forward pass)
    unpools = sum(_count(m) for m in theirs.modules() if isinstance(m, HVAEUnpool))
    scale_bias = sum(m.scale_bias.numel() for m in theirs.modules() if isinstance(m, HVAEUnpool))
    assert (_count(ours) - up_ours, _count(theirs) - up_theirs, unpools, scale_bias) == (
        46_745_889, 50_553_921, 236_000, 61_440)
    # and its heads: a 1x1-resolution top-down block, prior net to 2 x 512 channels then 1x1 to the latent's 64
    # statistics (VDVAE: one block straight to 64 + 512), the posterior net to 512 then 1x1 to 64 (VDVAE: to 64)
    assert (_count(theirs.blocks["level_down_0"]), _count(ours.blocks["z1"])) == (3_759_232, 3_233_920)
    heads = [_count(theirs.blocks[b]) - _count(ours.blocks[a]) for a, b in zip(ours.latent_names, theirs.latent_names)]
    assert heads == [525_312] * 5 + [131_584] * 5 + [33_024] * 10 + [8_320] * 2 + [2_112]
    # VDVAE's per-resolution biases (bias_xs) are Efficient-VDVAE's scale biases one for one, bias1 its start state
    # ``top``, x_out its x_hat: the top-down difference is the unpooling convolutions and the heads, nothing else
    biases = {r: tuple(ours.blocks[f"bias{r}"].h0.shape) for r in (1, 4, 8, 16, 32)}
    assert biases == {1: tuple(theirs.blocks["top"].h0.shape), **{
        m.scale_bias.shape[-1]: tuple(m.scale_bias.shape[1:]) for m in theirs.modules() if isinstance(m, HVAEUnpool)}}
    assert _count(ours.blocks["x_out"]) == _count(theirs.blocks["x_hat"]) == 33
    # every top-down parameter is in one of those blocks (ours: its up-sampling blocks have none)
    assert _count(ours) - up_ours == sum(_count(ours.blocks[n]) for n in (*ours.latent_names, "x_out")) + \
        sum(math.prod(shape) for shape in biases.values())
    assert _count(theirs) - up_theirs == sum(_count(theirs.blocks[n]) for n in (*theirs.latent_names, "top", "x_hat")) + \
        unpools
    assert (unpools - scale_bias, sum(heads)) == (174_560, 3_633_472)
    assert (_count(theirs) - up_theirs) - (_count(ours) - up_ours) == unpools - scale_bias + sum(heads)
    assert scale_bias == sum(math.prod(shape) for r, shape in biases.items() if r > 1)
