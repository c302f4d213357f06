"""Blocks with the predecessor hVAE's distribution heads, and its TDVAE layout built from them.

hVAE (repository ``lacykaltgr/hvae``) maps a network output ``(mu, rho)`` to a scale by
``model_params.distribution_base`` and ``distribution_sigma_param``:

- ``base="logstd"``: :math:`s = \\exp(\\beta\\rho)`; ``base="std"``: :math:`s = \\mathrm{softplus}_\\beta(\\rho)`;
- ``sigma_param="var"``: the scale is :math:`\\sqrt{s}` (``s`` was a variance); ``"std"``: ``s``;

with the gradient-smoothing :math:`\\beta` (``gradient_smoothing_beta``; ln 2 in its TDVAE), and
draws latents from a Normal or a Laplace of that location and scale. vaekit's own Gaussian
heads use :math:`\\mathrm{softplus}(\\rho) + \\sigma_{\\min}`, so weights trained by hVAE give
the same model only inside these blocks: :class:`HVAETopGenBlock`, :class:`HVAEGenBlock` and
the likelihood :class:`HVAEGaussian`. :func:`tdvae` builds hVAE's TDVAE (``models/TDVAE.py``:
``x -> hiddens -> y`` (Laplace) ``-> y_concat -> z -> x``) from them; the migration preset
``"hvae-tdvae"`` (:mod:`vaekit.models.hierarchical.migration_presets`) loads its state dict.

The latent blocks are core vaekit layers with ``latent_family="gaussian"`` or ``"laplace"``
(:class:`~vaekit.distributions.DiagonalNormal`, :class:`~vaekit.distributions.DiagonalLaplace`)
and hVAE's scale map; they sample at a temperature :math:`t` as every vaekit layer does, the
scale times :math:`t`. hVAE tempers differently: it adds :math:`\\log t` to the raw scale
before its scale map, so with ``base="logstd"``, ``sigma_param="var"`` its scale is multiplied
by :math:`t^{\\beta/2}` (:math:`t^{0.35}` in TDVAE). A migrated model gives the foreign model's
likelihoods and samples at :math:`t = 1`, but samples differently at :math:`t \\ne 1`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from ..._checks import check_int
from ...distributions import Likelihood
from ...nn import MLP
from ._common import Base, HVAEHead, SigmaParam, block_module, check_hvae_head, hvae_scale
from .blocks import InputBlock, OutputBlock, SimpleBlock
from .generative import GenerativeBlock
from .model import HierarchicalVAE

__all__ = ["hvae_scale", "HVAETopGenBlock", "HVAEGenBlock", "HVAEGaussian", "tdvae_blocks", "tdvae"]

Family = Literal["normal", "laplace"]


def _latent_family(distribution: str) -> str:
    """The core ``latent_family`` of hVAE's ``distribution`` name."""
    return "laplace" if distribution == "laplace" else "gaussian"


class HVAETopGenBlock(HVAEHead, GenerativeBlock):
    """hVAE's ``TopGenBlock`` with a fixed prior: ``p(z)`` has location 0 and raw scale 0, ``q(z | c) = head(net(c))``.

    Parameters
    ----------
    name : str
    condition : str
        The encoder output the posterior reads.
    net : nn.Module
        ``condition -> 2 * latent_features`` (location, raw scale).
    latent_features : int
    distribution : {"normal", "laplace"}
    base : {"logstd", "std"}
    sigma_param : {"var", "std"}
    beta : float
        hVAE's ``gradient_smoothing_beta``.

    Examples
    --------
    >>> b = HVAETopGenBlock("y", "h", nn.Linear(3, 4), 2, distribution="laplace")
    >>> p, _ = b.prior([], 5)
    >>> type(p.base_dist).__name__, p.mean.shape, float(p.base_dist.scale.max())
    ('Laplace', torch.Size([5, 2]), 1.0)
    """

    def __init__(self, name: str, condition: str, net: nn.Module, latent_features: int, distribution: Family = "normal",
                 base: Base = "logstd", sigma_param: SigmaParam = "var", beta: float = 1.0) -> None:
        distribution, base, sigma_param, beta = check_hvae_head(name, distribution, base, sigma_param, beta)
        super().__init__(name, (), condition, latent_features, 0.0, block_module("net", net, name, optional=False),
                         latent_family=_latent_family(distribution))
        self.distribution, self.base, self.sigma_param, self.beta = distribution, base, sigma_param, beta

    def prior(self, inputs: list[Tensor], n: int) -> tuple[Distribution, Any]:
        like = next(self.parameters())
        zeros = torch.zeros(n, 2 * self.latent_features, dtype=like.dtype, device=like.device)
        return self.head(zeros, f"the prior of {self.name!r}"), None

    def posterior(self, condition: Tensor, inputs: list[Tensor], state: Any) -> Distribution:
        return self.head(self.net(condition), f"net of {self.name!r}")


class HVAEGenBlock(HVAEHead, GenerativeBlock):
    """hVAE's ``GenBlock``: ``p(z | h) = head(prior_net(h))``, ``q(z | c, h) = head(posterior_net(c [, h]))``.

    With ``concat_posterior`` the posterior reads ``cat(condition, h)``, condition first, as
    hVAE concatenates them.

    Parameters
    ----------
    name : str
    inputs : str
        The generator-side input ``h``.
    condition : str
        The encoder output ``c``.
    prior_net, posterior_net : nn.Module
        ``-> 2 * latent_features`` each.
    latent_features : int
    concat_posterior : bool
    distribution, base, sigma_param, beta
        As in :class:`HVAETopGenBlock`.

    Examples
    --------
    >>> b = HVAEGenBlock("z", "h", "c", nn.Linear(2, 6), nn.Linear(5, 6), 3, concat_posterior=True)
    >>> p, _ = b.prior([torch.zeros(4, 2)], 4)
    >>> b.posterior(torch.zeros(4, 3), [torch.zeros(4, 2)], None).event_shape
    torch.Size([3])
    """

    def __init__(self, name: str, inputs: str, condition: str, prior_net: nn.Module, posterior_net: nn.Module,
                 latent_features: int, concat_posterior: bool = False, distribution: Family = "normal",
                 base: Base = "logstd", sigma_param: SigmaParam = "var", beta: float = 1.0) -> None:
        distribution, base, sigma_param, beta = check_hvae_head(name, distribution, base, sigma_param, beta)
        super().__init__(name, inputs, condition, latent_features, 0.0, latent_family=_latent_family(distribution))
        self.prior_net = block_module("prior_net", prior_net, name, optional=False)
        self.posterior_net = block_module("posterior_net", posterior_net, name, optional=False)
        self.concat_posterior = bool(concat_posterior)
        self.distribution, self.base, self.sigma_param, self.beta = distribution, base, sigma_param, beta

    def prior(self, inputs: list[Tensor], n: int) -> tuple[Distribution, Any]:
        return self.head(self.prior_net(inputs[0]), f"prior_net of {self.name!r}"), None

    def posterior(self, condition: Tensor, inputs: list[Tensor], state: Any) -> Distribution:
        c = torch.cat([condition, inputs[0]], 1) if self.concat_posterior else condition
        return self.head(self.posterior_net(c), f"posterior_net of {self.name!r}")


class HVAEGaussian(Likelihood):
    """hVAE's Normal output: location and raw scale from the decoder, the scale by :func:`hvae_scale`.

    >>> px = HVAEGaussian(beta=1.0)(torch.zeros(1, 4), event_ndim=1)   # loc 0, raw 0: scale 1
    >>> px.log_prob(torch.zeros(1, 2))
    tensor([-1.8379])
    """

    params_per_dim = 2

    def __init__(self, base: Base = "logstd", sigma_param: SigmaParam = "var", beta: float = 1.0) -> None:
        super().__init__()
        _, self.base, self.sigma_param, self.beta = check_hvae_head("output", "normal", base, sigma_param, beta)

    def forward(self, params: Tensor, event_ndim: int) -> Distribution:
        loc, raw = params.chunk(2, dim=-event_ndim)
        return Independent(Normal(loc, hvae_scale(raw, self.base, self.sigma_param, self.beta),  # type: ignore[arg-type]
                                  validate_args=False), event_ndim)


def tdvae_blocks(data_shape: Sequence[int] = (1, 20, 20), hiddens: int = 2000, y_features: int = 250, z_features: int = 1800,
                 y_hidden: Sequence[int] = (1000, 500), concat_hidden: Sequence[int] = (500, 1000),
                 z_prior_hidden: Sequence[int] = (2000,), activation: str = "relu", y_distribution: Family = "laplace",
                 base: Base = "logstd", sigma_param: SigmaParam = "var", beta: float = 0.6931472) -> list[Any]:
    """Blocks of hVAE's TDVAE (see :func:`tdvae`)."""
    hiddens, y_features, z_features = (check_int(k, v) for k, v in
                                       (("hiddens", hiddens), ("y_features", y_features), ("z_features", z_features)))
    d = math.prod(data_shape)
    head: dict[str, Any] = {"base": base, "sigma_param": sigma_param, "beta": beta}
    return [
        InputBlock("x_in", flatten=True),
        SimpleBlock("hiddens", "x_in", MLP(d, hiddens, (), activation, output_activation=activation)),
        HVAETopGenBlock("y", "hiddens", MLP(hiddens, 2 * y_features, list(y_hidden), activation), y_features,
                        distribution=y_distribution, **head),
        SimpleBlock("y_concat", "y", MLP(y_features, hiddens, list(concat_hidden), activation, output_activation=activation)),
        HVAEGenBlock("z", "y_concat", "hiddens", MLP(hiddens, 2 * z_features, list(z_prior_hidden), activation),
                     MLP(2 * hiddens, 2 * z_features, (), activation), z_features, concat_posterior=True, **head),
        OutputBlock("x_hat", "z", MLP(z_features, 2 * d, (), activation), HVAEGaussian(**head)),
    ]


def tdvae(data_shape: Sequence[int] = (1, 20, 20), hiddens: int = 2000, y_features: int = 250, z_features: int = 1800,
          y_hidden: Sequence[int] = (1000, 500), concat_hidden: Sequence[int] = (500, 1000),
          z_prior_hidden: Sequence[int] = (2000,), activation: str = "relu", y_distribution: Family = "laplace",
          base: Base = "logstd", sigma_param: SigmaParam = "var", beta: float = 0.6931472) -> HierarchicalVAE:
    """hVAE's TDVAE (``models/TDVAE.py`` of ``lacykaltgr/hvae``) as a vaekit hierarchical VAE.

    ``x`` (flattened) ``-> hiddens`` (one ReLU layer) ``-> y`` (top latent, Laplace, fixed
    prior; posterior MLP ``hiddens -> 1000 -> 500 -> 2 y``) ``-> y_concat`` (MLP
    ``y -> 500 -> 1000 -> hiddens``, activated) ``-> z`` (prior MLP ``y_concat -> 2000 -> 2 z``;
    posterior one layer on ``cat(hiddens, y_concat)``) ``-> x`` (one layer to a Normal's
    location and raw scale per pixel). The defaults are that file's sizes on 20x20 patches;
    heads as hVAE's (``base``, ``sigma_param``, ``beta``: see :mod:`.hvae_compat`). Block
    names follow hVAE's (``hiddens``, ``y``, ``y_concat``, ``z``, ``x_hat``; the input is
    ``x_in``), so the migration preset ``"hvae-tdvae"`` maps its state dict one to one.

    Examples
    --------
    >>> model = tdvae([16], hiddens=12, y_features=3, z_features=4, y_hidden=[8], concat_hidden=[8], z_prior_hidden=[8])
    >>> model.latent_names, model.log_weights(torch.zeros(2, 16), k=3).shape
    (('y', 'z'), torch.Size([3, 2]))
    """
    blocks = tdvae_blocks(data_shape, hiddens, y_features, z_features, y_hidden, concat_hidden, z_prior_hidden, activation,
                          y_distribution, base, sigma_param, beta)
    return HierarchicalVAE(blocks, data_shape)
