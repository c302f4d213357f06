r"""JointVAE (Dupont 2018): a continuous Gaussian latent ``"z"`` beside a relaxed discrete latent ``"c"``.

:math:`p(x, z, c) = p(x | z, c)\,\mathcal N(z; 0, I) \prod_n p(c_n)`,
:math:`q(z, c | x) = q(z | x) \prod_n q(c_n | x)` with one shared encoder. The decoder sees
``[z, c~]`` concatenated (``c~`` flattened to ``N*K``). Train it with
:class:`vaekit.objectives.capacity.CapacityObjective` (the paper's capacity-controlled loss) or
any other objective; :meth:`JointVAE.log_weights` evaluates the discrete model (one-hot
``c`` from the implied categorical, as :class:`~vaekit.models.discrete.DiscreteVAE`) jointly
with importance sampling of ``z``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .._checks import check_int
from ..distributions import (ConditionalDistribution, DiagonalGaussian, Likelihood, StandardNormal, kl_divergence,
                             rsample_and_log_prob)
from ..distributions.relaxed import RelaxedCategorical
from ..nn import MLP
from .base import ElboTerms
from ._common import log_categorical
from .discrete import KLMethod, Relaxation, RelaxedLatentModel, categorical_kl
from .vae import LikelihoodName, make_likelihood

__all__ = ["JointVAE", "joint_vae"]


class JointVAE(RelaxedLatentModel):
    r"""Continuous + discrete latent VAE with latents ``{"z": (..., d), "c": (..., N*K)}``.

    Parameters
    ----------
    encoder : nn.Module
        x of shape (batch, *data_shape) -> shared features (batch, C).
    continuous_posterior : ConditionalDistribution
        Features -> q(z|x), e.g. :class:`~vaekit.distributions.DiagonalGaussian` (C, d).
    discrete_posterior : RelaxedCategorical
        Features -> relaxed q(c|x) with batch shape (batch, N), event (K,); any relaxation.
    decoder : nn.Module
        ``[z, c]`` of shape (*lead, d + N*K) -> ``params_per_dim * prod(data_shape)`` numbers.
    likelihood : Likelihood
    data_shape : sequence of int
    kl : {"auto", "gaussian", "mc"}
        KL of the discrete part (see :class:`~vaekit.models.discrete.DiscreteVAE`); the
        continuous KL is closed form.
    temperature_schedule : (float, float, int), optional
        Geometric temperature annealing ``(start, end, steps)``.
    implied_samples : int
        Samples used to estimate the implied categorical of an IGR posterior.
    proposal_floor : float
        Uniform mixture weight of the discrete evaluation proposal.

    Examples
    --------
    >>> model = joint_vae([16], continuous_features=2, n_variables=1, n_categories=3, hidden=[8])
    >>> x = torch.bernoulli(torch.full((4, 16), 0.5))
    >>> sorted(model.elbo_terms(x).kl), model.log_weights(x, 5).shape
    (['c', 'z'], torch.Size([5, 4]))
    """

    def __init__(self, encoder: nn.Module, continuous_posterior: ConditionalDistribution,
                 discrete_posterior: RelaxedCategorical, decoder: nn.Module, likelihood: Likelihood,
                 data_shape: Sequence[int], kl: KLMethod = "auto",
                 temperature_schedule: tuple[float, float, int] | None = None, implied_samples: int = 1000,
                 proposal_floor: float = 1e-3) -> None:
        super().__init__()
        self._init_networks(encoder, decoder, likelihood, data_shape)
        if not isinstance(continuous_posterior, ConditionalDistribution):
            raise TypeError(f"continuous_posterior must be a ConditionalDistribution, got {type(continuous_posterior).__name__}")
        if isinstance(continuous_posterior, RelaxedCategorical):
            raise TypeError("continuous_posterior must be a continuous family (e.g. DiagonalGaussian), got a RelaxedCategorical")
        self._init_relaxed(discrete_posterior, kl, temperature_schedule, implied_samples, proposal_floor)
        self.continuous_posterior, self.discrete_posterior = continuous_posterior, discrete_posterior
        self.prior = StandardNormal(continuous_posterior.latent_features)
        self.relaxed_latent = "c"
        self.inference_modules = ("encoder", "continuous_posterior", "discrete_posterior")
        self.latent_names = ("z", "c")
        self.latent_dims = {"z": int(continuous_posterior.latent_features), "c": self.n_variables * self.n_categories}

    # ------------------------------------------------------------------ pieces
    def encode(self, x: Tensor) -> dict[str, Distribution]:
        """``{"z": q(z|x), "c": relaxed q(c|x)}`` (batch shapes (batch,) and (batch, N))."""
        h = self._features(x)
        return {"z": self.continuous_posterior(h), "c": self.relaxed_posterior(h)}

    def decode(self, z: dict[str, Tensor]) -> Distribution:
        """``p(x | z, c)`` for ``z`` (*lead, d) and ``c`` (*lead, N*K) (relaxed or one-hot)."""
        c = self._flat_units(z["c"])
        return self._decode_params(torch.cat([z["z"], c], -1), self.data_shape)

    # ------------------------------------------------------------------ protocol
    def elbo_terms(self, x: Tensor) -> ElboTerms:
        """Relaxed ELBO terms with ``kl = {"z": closed-form Gaussian KL, "c": relaxed KL}``."""
        q = self.encode(x)
        z, log_qz = rsample_and_log_prob(q["z"])
        pz = self.prior()
        kl_z = kl_divergence(q["z"], pz, z, log_qz, "auto")
        c, kl_c, log_qc, log_pc = self._relaxed_draw(q["c"])
        rec = self.decode({"z": z, "c": c.flatten(-2)}).log_prob(x)
        self._tick()
        return ElboTerms(rec=rec, kl={"z": kl_z, "c": kl_c}, log_q={"z": log_qz, "c": log_qc},
                         log_p={"z": pz.log_prob(z), "c": log_pc})

    def importance_sampler(self, x: Tensor) -> Callable[[int], Tensor]:
        """``draw(k)``: ``log p(x|z,c) + log p(z) + log p_cat(c) - log q(z|x) - log r(c|x)``, shape (k, batch);
        the encoder pass and the implied categorical of ``c`` are computed once."""
        self._check_shape(x)
        q = self.encode(x)
        probs, log_prior_c, pz = self.implied_probs(q["c"]), self.prior_probs().log(), self.prior()

        def draw(k: int) -> Tensor:
            z, log_qz = rsample_and_log_prob(q["z"], (k,))
            c, log_r = self._discrete_draw(probs, k)
            log_pc = log_categorical(c, log_prior_c)
            return self.decode({"z": z, "c": c.flatten(-2)}).log_prob(x) + pz.log_prob(z) - log_qz + log_pc - log_r
        return draw

    def discrete_kl(self, x: Tensor) -> Tensor:
        """Exact categorical KL of the discrete latent, shape (batch,)."""
        self._check_shape(x)
        return categorical_kl(self.implied_probs(self.encode(x)["c"]), self.prior_probs())

    def log_prior(self, z: dict[str, Tensor]) -> Tensor:
        c = z["c"].unflatten(-1, (self.n_variables, self.n_categories))
        return self.prior().log_prob(z["z"]) + self.relaxed_prior().log_prob(c).sum(-1)

    def log_joint(self, x: Tensor, z: dict[str, Tensor]) -> Tensor:
        return self.decode(z).log_prob(x) + self.log_prior(z)

    def sample_prior(self, n: int) -> dict[str, Tensor]:
        """``{"z": (n, d), "c": (n, N*K)}`` from the Gaussian and the relaxed prior."""
        n = check_int("n", n)
        return {"z": self.prior().sample((n,)), "c": self.relaxed_prior().sample((n,)).flatten(-2)}

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True, discrete: bool = True) -> Tensor:
        """``n`` examples, the discrete latent drawn one-hot from the discrete prior (``discrete=True``)."""
        latents = self.sample_prior(n)
        if discrete:
            idx = torch.distributions.Categorical(probs=self.prior_probs()).sample((latents["z"].shape[0],))
            latents["c"] = torch.nn.functional.one_hot(idx, self.n_categories).to(latents["z"].dtype).flatten(-2)
        px = self.decode(latents)
        return px.mean if mean else px.sample()

    def forward(self, x: Tensor) -> ElboTerms:
        """Same as :meth:`elbo_terms`."""
        return self.elbo_terms(x)


def joint_vae(data_shape: Sequence[int], continuous_features: int = 10, n_variables: int = 1, n_categories: int = 10,
              hidden: Sequence[int] = (512, 256), relaxation: Relaxation = "gs", temperature: float = 0.67,
              likelihood: LikelihoodName = "bernoulli", activation: str = "relu") -> JointVAE:
    """Dupont's MNIST JointVAE latent space (10 continuous + one 10-way discrete) with MLP networks.

    >>> joint_vae([784]).latent_dims
    {'z': 10, 'c': 10}
    """
    hidden = [int(h) for h in hidden]
    if not hidden:
        raise ValueError("hidden must name at least one hidden layer size, e.g. (512, 256)")
    lik = make_likelihood(likelihood)
    d = math.prod(int(v) for v in data_shape)
    enc = MLP(d, hidden[-1], hidden[:-1], activation, output_activation=activation)
    cont = DiagonalGaussian(hidden[-1], continuous_features)
    disc = RelaxedCategorical(hidden[-1], n_variables, n_categories, relaxation=relaxation, temperature=temperature)
    dec = MLP(continuous_features + n_variables * n_categories, lik.params_per_dim * d, hidden[::-1], activation)
    return JointVAE(enc, cont, disc, dec, lik, data_shape)

