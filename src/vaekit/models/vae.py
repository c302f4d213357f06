"""The variational autoencoder: encoder -> posterior family, prior, decoder -> likelihood."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..distributions import (Bernoulli, ConditionalDistribution, DiagonalGaussian, DiscretizedLogistic,
                             DiscretizedLogisticMixture, Gaussian,
                             Likelihood, StandardNormal, closed_form_kl, kl_divergence, rsample_and_log_prob)
from .._checks import InvalidArgumentError, check_int
from ..nn import MLP, ConvDecoder, ConvEncoder
from .base import ElboTerms, LatentVariableModel, LazyTerms

__all__ = ["VAE", "mlp_vae", "conv_vae", "make_likelihood"]


class VAE(LatentVariableModel):
    r"""Variational autoencoder with one named latent (default ``"z"``).

    :math:`p(x, z) = p(z)\,p(x|z)`, :math:`q(z|x)` = ``posterior(encoder(x))``,
    :math:`p(x|z)` = ``likelihood(decoder(z))``. Any posterior family (Gaussian, flows),
    prior, network and likelihood plug in through the constructor, so a YAML config with
    ``class_path``/``init_args`` builds any combination.

    Parameters
    ----------
    encoder : nn.Module
        Maps x of shape (batch, *data_shape) to context features (batch, C). Modules with
        ``flat_input = True`` (e.g. :class:`vaekit.nn.MLP`) receive x flattened per example.
    posterior : ConditionalDistribution
        Context -> distribution over z (e.g. :class:`vaekit.distributions.DiagonalGaussian`).
    decoder : nn.Module
        Maps z of shape (*lead, latent) to ``params_per_dim * prod(data_shape)`` numbers per
        example (flat, or already shaped like the data with channels multiplied).
    likelihood : Likelihood
        Decoder output -> distribution over x.
    data_shape : sequence of int
        Shape of one example, e.g. ``[784]`` or ``[1, 28, 28]``.
    prior : ConditionalDistribution, optional
        Default :class:`~vaekit.distributions.StandardNormal` of the posterior's size.
    kl : {"auto", "analytic", "mc"}
        How :meth:`elbo_terms` computes the KL: closed form when registered (``"auto"``),
        always closed form, or single-sample Monte Carlo.
    latent_name : str
        Name of the latent in every dict this model returns.

    Examples
    --------
    >>> import torch
    >>> model = mlp_vae([784], latent_features=8, hidden=[64])
    >>> x = torch.bernoulli(torch.full((5, 784), 0.3))
    >>> model.log_weights(x, k=10).shape
    torch.Size([10, 5])
    >>> terms = model.elbo_terms(x)
    >>> terms.rec.shape, sorted(terms.kl)
    (torch.Size([5]), ['z'])
    >>> model.sample(3).shape
    torch.Size([3, 784])
    """

    def __init__(self, encoder: nn.Module, posterior: ConditionalDistribution, decoder: nn.Module,
                 likelihood: Likelihood, data_shape: Sequence[int], prior: ConditionalDistribution | None = None,
                 kl: Literal["auto", "analytic", "mc"] = "auto", latent_name: str = "z") -> None:
        super().__init__()
        data_shape = tuple(int(d) for d in data_shape)
        if not data_shape or any(d < 1 for d in data_shape):
            raise ValueError(f"data_shape must be a non-empty list of positive ints, got {list(data_shape)}")
        if kl not in ("auto", "analytic", "mc"):
            raise ValueError(f"kl must be 'auto', 'analytic' or 'mc', got {kl!r}")
        for arg, value, cls in (("encoder", encoder, nn.Module), ("decoder", decoder, nn.Module),
                                ("posterior", posterior, ConditionalDistribution), ("likelihood", likelihood, Likelihood),
                                ("prior", prior if prior is not None else StandardNormal(1), ConditionalDistribution)):
            if not isinstance(value, cls):
                raise TypeError(f"{arg} must be a {cls.__name__}, got {type(value).__name__}")
        self.encoder, self.posterior, self.decoder, self.likelihood = encoder, posterior, decoder, likelihood
        self.prior = prior if prior is not None else StandardNormal(posterior.latent_features)
        if self.prior.latent_features != posterior.latent_features:
            raise ValueError(f"prior has {self.prior.latent_features} latent features but posterior has {posterior.latent_features}")
        self.data_shape, self.kl_method, self.latent_name = data_shape, kl, latent_name
        self.latent_names = (latent_name,)
        self.latent_dims = {latent_name: posterior.latent_features}

    # ------------------------------------------------------------------ pieces
    def _features(self, x: Tensor) -> Tensor:
        if getattr(self.encoder, "flat_input", False) and len(self.data_shape) > 1:  # (flat data: no operator)
            x = x.flatten(-len(self.data_shape))
        return self.encoder(x)

    def encode(self, x: Tensor) -> dict[str, Distribution]:
        """Posterior ``{latent_name: q(z|x)}`` with batch shape (batch,)."""
        return {self.latent_name: self.posterior(self._features(x))}

    def amortized(self, x: Tensor) -> tuple[Tensor, ConditionalDistribution]:
        """``(encoder features of x, the posterior family)``: ``posterior(context)`` is ``encode(x)[latent_name]``.

        >>> model = mlp_vae([6], latent_features=2, hidden=[4])
        >>> context, family = model.amortized(torch.zeros(3, 6))
        >>> context.shape, family is model.posterior
        (torch.Size([3, 4]), True)
        """
        return self._features(x), self.posterior

    def decode(self, z: dict[str, Tensor] | Tensor) -> Distribution:
        """``p(x|z)`` with batch shape = the leading dims of z and event shape ``data_shape``."""
        if isinstance(z, dict):
            z = z[self.latent_name]
        out = self.decoder(z)
        likelihood, data_shape = self.likelihood, self.data_shape
        ppd = likelihood.params_per_dim
        lead = z.shape[:-1]
        if len(data_shape) == 1 and out.shape == (*lead, ppd * data_shape[0]):  # flat data, already shaped
            return likelihood(out, 1)
        per_example = out.numel() // max(math.prod(lead), 1)
        want = ppd * math.prod(data_shape)
        if per_example != want:
            raise ValueError(f"decoder returns {per_example} numbers per example but {type(likelihood).__name__} "
                             f"needs params_per_dim * prod(data_shape) = {ppd} * {math.prod(data_shape)} = {want}")
        shape = (*lead, ppd * data_shape[0], *data_shape[1:])
        params = out if out.shape == shape else out.reshape(shape)  # (already shaped: no operator)
        return likelihood(params, len(data_shape))

    def validate_data(self, x, name: str = "x") -> Tensor:  # noqa: D102 - see base class
        x = super().validate_data(x, name)
        self.likelihood.validate(x, name)
        return x

    # ------------------------------------------------------------------ protocol
    def elbo_terms(self, x: Tensor) -> ElboTerms:
        # encode(x)[latent_name], without its dict unless a subclass has its own encode
        q = self.posterior(self._features(x)) if type(self).encode is VAE.encode else self.encode(x)[self.latent_name]
        p = self.prior()
        n = self.latent_name
        kl = closed_form_kl(q, p) if self.kl_method != "mc" else None
        if kl is not None:  # log q and log p are not in the loss: computed only if an objective reads them
            z = q.rsample()
            log_q: Mapping[str, Tensor] = LazyTerms({n: lambda: q.log_prob(z)}, callables=True)
            log_p: Mapping[str, Tensor] = LazyTerms({n: lambda: p.log_prob(z)}, callables=True)
        else:
            z, lq = rsample_and_log_prob(q)
            lp = p.log_prob(z)
            kl = kl_divergence(q, p, z, lq, self.kl_method)
            log_q, log_p = {n: lq}, {n: lp}
        rec = self.decode(z).log_prob(x)
        return ElboTerms(rec=rec, kl={n: kl}, log_q=log_q, log_p=log_p)

    def log_weights(self, x: Tensor, k: int = 1) -> Tensor:
        k = check_int("k", k)
        q = self.encode(x)[self.latent_name]
        z, log_q = rsample_and_log_prob(q, (k,))
        return self.decode(z).log_prob(x) + self.prior().log_prob(z) - log_q

    def log_prior(self, z: dict[str, Tensor]) -> Tensor:
        return self.prior().log_prob(z[self.latent_name])

    def log_joint(self, x: Tensor, z: dict[str, Tensor]) -> Tensor:
        return self.decode(z).log_prob(x) + self.log_prior(z)

    def sample_prior(self, n: int) -> dict[str, Tensor]:
        return {self.latent_name: self.prior().sample((check_int("n", n),))}

    def prior_distributions(self) -> dict[str, Distribution]:
        """``{latent_name: p(z)}``, the prior module's distribution (event shape (latent_features,))."""
        return {self.latent_name: self.prior()}

    def forward(self, x: Tensor) -> ElboTerms:
        """Same as :meth:`elbo_terms` (so DDP wrappers see a forward)."""
        return self.elbo_terms(x)


LikelihoodName = Literal["bernoulli", "gaussian", "gaussian_learned", "gaussian_predicted", "discretized_logistic",
                         "discretized_logistic_mixture"]


def make_likelihood(name: LikelihoodName) -> Likelihood:
    """A likelihood by short name.

    >>> make_likelihood("gaussian_predicted").params_per_dim
    2
    """
    table = {
        "bernoulli": Bernoulli, "gaussian": Gaussian,
        "gaussian_learned": lambda: Gaussian("learned"), "gaussian_predicted": lambda: Gaussian("predicted"),
        "discretized_logistic": DiscretizedLogistic, "discretized_logistic_mixture": DiscretizedLogisticMixture,
    }
    if name not in table:
        raise InvalidArgumentError(f"likelihood must be one of {sorted(table)}, got {name!r}")
    return table[name]()


def mlp_vae(data_shape: Sequence[int], latent_features: int = 50, hidden: Sequence[int] = (200, 200),
            activation: str = "elu", likelihood: LikelihoodName = "bernoulli", learned_prior: bool = False) -> VAE:
    """A VAE with MLP encoder and decoder (mirrored hidden sizes) and a diagonal Gaussian posterior.

    With the defaults on ``[784]`` this is the architecture of Cremer et al. (2018):
    784-200-200-(50) with ELU and a Bernoulli likelihood.

    >>> mlp_vae([784]).latent_dims
    {'z': 50}
    """
    from ..distributions import LearnedGaussian

    hidden = list(hidden)
    if not hidden:
        raise ValueError("hidden must name at least one hidden layer size; build VAE(...) directly for a linear encoder")
    lik = make_likelihood(likelihood)
    d = math.prod(data_shape)
    enc_out = hidden[-1]
    enc = MLP(d, enc_out, hidden[:-1], activation, output_activation=activation)
    dec = MLP(latent_features, lik.params_per_dim * d, hidden[::-1], activation)
    prior = LearnedGaussian(latent_features) if learned_prior else None
    return VAE(enc, DiagonalGaussian(enc_out, latent_features), dec, lik, data_shape, prior=prior)


def conv_vae(data_shape: Sequence[int], latent_features: int = 32, channels: Sequence[int] = (32, 64),
             features: int = 256, activation: str = "relu", likelihood: LikelihoodName = "bernoulli") -> VAE:
    """A VAE with a :class:`~vaekit.nn.ConvEncoder` / :class:`~vaekit.nn.ConvDecoder` pair.

    >>> conv_vae([1, 28, 28], latent_features=4).sample(2).shape
    torch.Size([2, 1, 28, 28])
    """
    if len(data_shape) != 3:
        raise ValueError(f"conv_vae needs image data_shape [channels, height, width], got {list(data_shape)}")
    c, h, w = (int(v) for v in data_shape)
    if h != w:
        raise ValueError(f"conv_vae needs square images, got {h}x{w}")
    lik = make_likelihood(likelihood)
    dec = ConvDecoder(latent_features, c * lik.params_per_dim, h, list(channels)[::-1], activation)
    enc = ConvEncoder(c, h, features, channels, activation, output_activation=activation)
    return VAE(enc, DiagonalGaussian(features, latent_features), dec, lik, data_shape)
