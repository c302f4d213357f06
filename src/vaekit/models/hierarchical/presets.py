"""Ready-made hierarchical VAEs: the IWAE-paper two-layer model and a small VDVAE-style stack."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..._checks import check_int
from ...nn import MLP
from ..vae import LikelihoodName, make_likelihood
from .blocks import Block, InputBlock, OutputBlock, SimpleBlock, TopSimpleBlock
from .generative import GenBlock, ResidualGenBlock, TopGenBlock
from .model import HierarchicalVAE

__all__ = ["ladder_vae", "ladder_blocks", "small_vdvae", "vdvae_blocks"]


def ladder_blocks(data_shape: Sequence[int], hidden: Sequence[int] = (100, 50), latent: Sequence[int] = (100, 50),
                  activation: str = "tanh", likelihood: LikelihoodName = "bernoulli") -> list[Block]:
    """Blocks of a two-stochastic-layer ladder VAE (see :func:`ladder_vae`)."""
    (h1, h2), (d1, d2) = [check_int("hidden", h) for h in hidden], [check_int("latent", d) for d in latent]
    lik = make_likelihood(likelihood)
    d = math.prod(data_shape)
    act = {"activation": activation, "output_activation": activation}
    return [
        InputBlock("x_in", flatten=True),
        SimpleBlock("h1", "x_in", MLP(d, h1, [h1], **act)),
        SimpleBlock("h2", "h1", MLP(h1, h2, [h2], **act)),
        TopGenBlock("z2", "h2", MLP(h2, 2 * d2), d2),
        GenBlock("z1", "z2", "h1", MLP(d2, 2 * d1, [h2, h2], activation), MLP(h1, 2 * d1), d1),
        OutputBlock("x_out", "z1", MLP(d1, lik.params_per_dim * d, [h1, h1], activation), lik),
    ]


def ladder_vae(data_shape: Sequence[int], hidden: Sequence[int] = (100, 50), latent: Sequence[int] = (100, 50),
               activation: str = "tanh", likelihood: LikelihoodName = "bernoulli") -> HierarchicalVAE:
    """The two-stochastic-layer architecture of the IWAE paper (Burda et al., 2016).

    Inference ``784-100-100-(100)`` and ``(100)-50-50-(50)``; generation
    ``(50)-50-50-(100)`` and ``(100)-100-100-784`` with tanh and Bernoulli pixels.
    One difference: q(z2 | x) reads the deterministic 100-unit features under z1 (a
    ladder-style bottom-up pass), not a draw of z1, because blocks compute the posterior
    top-down. Layer sizes and parameter count match the paper's.

    Parameters
    ----------
    data_shape : sequence of int
    hidden : (int, int)
        Deterministic widths below z1 and below z2.
    latent : (int, int)
        Sizes of z1 (bottom) and z2 (top).
    activation : str
    likelihood : str
        See :func:`vaekit.models.make_likelihood`.

    Examples
    --------
    >>> ladder_vae([784]).latent_dims
    {'z2': 50, 'z1': 100}
    """
    return HierarchicalVAE(ladder_blocks(data_shape, hidden, latent, activation, likelihood), data_shape)


def vdvae_blocks(data_shape: Sequence[int], width: int = 128, latent_features: int = 16, n_layers: int = 4,
                 encoder_hidden: Sequence[int] = (256,), activation: str = "gelu",
                 likelihood: LikelihoodName = "bernoulli") -> list[Block]:
    """Blocks of a small VDVAE-style model (see :func:`small_vdvae`)."""
    w, zd, n_layers = check_int("width", width), check_int("latent_features", latent_features), check_int("n_layers", n_layers)
    lik = make_likelihood(likelihood)
    d = math.prod(data_shape)
    blocks: list[Block] = [InputBlock("x_in", flatten=True),
                           SimpleBlock("enc", "x_in", MLP(d, w, list(encoder_hidden), activation, output_activation=activation)),
                           TopSimpleBlock("h0", [w])]
    prev = "h0"
    for i in range(1, n_layers + 1):
        blocks.append(ResidualGenBlock(
            f"z{i}", prev, "enc",
            prior_net=MLP(w, 2 * zd + w, [w], activation),
            posterior_net=MLP(2 * w, 2 * zd, [w], activation),
            z_projection=MLP(zd, w),
            latent_features=zd,
            residual_net=None,
        ))
        prev = f"z{i}"
    blocks.append(OutputBlock("x_out", prev, MLP(w, lik.params_per_dim * d, [w, w], activation), lik))
    return blocks


def small_vdvae(data_shape: Sequence[int], width: int = 128, latent_features: int = 16, n_layers: int = 4,
                encoder_hidden: Sequence[int] = (256,), activation: str = "gelu",
                likelihood: LikelihoodName = "bernoulli") -> HierarchicalVAE:
    """A small VDVAE-style top-down model on feature vectors (MLP version).

    A trainable start state ``h0`` (width ``width``) runs through ``n_layers``
    :class:`~vaekit.models.hierarchical.ResidualGenBlock` layers; every layer's posterior
    reads the state and the bottom-up encoder features; an MLP decodes the final state.

    Parameters
    ----------
    data_shape : sequence of int
    width : int
        Width of the top-down state.
    latent_features : int
        Latents per layer.
    n_layers : int
        Number of latent layers (named ``z1`` top ... ``zN`` bottom).
    encoder_hidden : sequence of int
        Hidden sizes of the bottom-up encoder MLP.
    activation : str
    likelihood : str

    Examples
    --------
    >>> small_vdvae([784], width=32, latent_features=4, n_layers=3).latent_names
    ('z1', 'z2', 'z3')
    """
    return HierarchicalVAE(vdvae_blocks(data_shape, width, latent_features, n_layers, encoder_hidden, activation, likelihood),
                           data_shape)
