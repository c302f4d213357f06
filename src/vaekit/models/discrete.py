r"""Discrete-latent VAEs with relaxed categorical latents (Gumbel-Softmax, IGR-I/Planar/SB).

The model has ``N`` independent categorical latents with ``K`` categories each,
:math:`p(x, c) = p(x | c) \prod_n p(c_n)`. It is *trained* through a continuous relaxation
(:class:`vaekit.distributions.relaxed.RelaxedCategorical`): the decoder sees relaxed
samples :math:`\tilde c \in \Delta^{K-1}` flattened to ``(batch, N*K)`` and the loss is the
relaxed ELBO. It is *evaluated*, as in Potapczynski et al. (2020), as the discrete model it
approximates: :meth:`DiscreteVAE.log_weights` draws one-hot :math:`c_i` from the categorical
implied by the posterior, :math:`q_{cat}(c|x)` (the distribution of the argmax of a relaxed
sample), and returns

.. math::

    \log w_i = \log p(x | c_i) + \log p_{cat}(c_i) - \log r(c_i | x), \qquad
    r = (1 - \epsilon)\, q_{cat} + \epsilon / K,

with the exact discrete prior :math:`p_{cat}` (uniform for Gumbel-Softmax and for IGR priors
fitted to a uniform target, otherwise the categorical implied by the IGR prior). The small
uniform mixture :math:`\epsilon` (``proposal_floor``) keeps every category in the proposal's
support, so the importance-sampling estimate stays unbiased even where the Monte Carlo
estimate of :math:`q_{cat}` is zero. Hence :func:`vaekit.inference.iwae_log_likelihood` and
``vaekit evaluate`` report the discrete log-likelihood without any special case.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .._checks import InvalidArgumentError, check_float, check_int
from ..distributions import Likelihood
from ..distributions.relaxed import RelaxedCategorical, relaxed_kl
from ..nn import MLP
from ._common import check_data_shape, log_categorical
from .base import ElboTerms, LatentVariableModel
from .vae import LikelihoodName, make_likelihood

__all__ = ["RelaxedLatentModel", "DiscreteVAE", "discrete_vae", "categorical_kl", "temperature_at"]

KLMethod = Literal["auto", "gaussian", "mc"]


def temperature_at(step: int, schedule: tuple[float, float, int]) -> float:
    """Temperature of a geometric annealing schedule ``(start, end, steps)`` at ``step``.

    :math:`\\tau_t = \\tau_0 (\\tau_1/\\tau_0)^{\\min(t/T, 1)}` (exponential decay, as Jang et al.).

    >>> temperature_at(0, (1.0, 0.25, 100)), temperature_at(50, (1.0, 0.25, 100)), temperature_at(900, (1.0, 0.25, 100))
    (1.0, 0.5, 0.25)
    """
    start, end, steps = schedule
    frac = 1.0 if steps == 0 else min(max(step, 0) / steps, 1.0)
    return float(start * (end / start) ** frac)


def _check_schedule(schedule: Sequence[float] | None) -> tuple[float, float, int] | None:
    if schedule is None:
        return None
    if isinstance(schedule, (str, bytes)) or not isinstance(schedule, Sequence) or len(schedule) != 3:
        raise InvalidArgumentError(f"temperature_schedule must be None or a (start, end, steps) triple, e.g. (1.0, 0.5, 10000), got {schedule!r}")
    start = check_float("temperature_schedule[0] (start temperature)", schedule[0], 0, low_open=True)
    end = check_float("temperature_schedule[1] (end temperature)", schedule[1], 0, low_open=True)
    return start, end, check_int("temperature_schedule[2] (steps)", schedule[2], 0)


def categorical_kl(q_probs: Tensor, p_probs: Tensor) -> Tensor:
    r"""Exact KL between products of independent categoricals, summed over the variables.

    :math:`\sum_n \sum_k q_{nk} (\log q_{nk} - \log p_{nk})` (terms with :math:`q_{nk}=0` are 0).

    Parameters
    ----------
    q_probs : Tensor of shape (*batch, N, K)
    p_probs : Tensor broadcastable to (*batch, N, K)

    Returns
    -------
    Tensor of shape (*batch,)

    Examples
    --------
    >>> q = torch.tensor([[0.5, 0.5, 0.0]]); p = torch.full((1, 3), 1 / 3)
    >>> round(float(categorical_kl(q, p)), 4) == round(math.log(1.5), 4)
    True
    """
    q_probs, p_probs = torch.broadcast_tensors(q_probs, p_probs)
    terms = q_probs * (q_probs.log() - p_probs.log())
    return torch.where(q_probs > 0, terms, torch.zeros_like(terms)).sum((-2, -1))


class RelaxedLatentModel(LatentVariableModel):
    """Shared machinery of models with one relaxed categorical latent (discrete, joint, structured).

    Subclasses set ``self.relaxed_family`` (a :class:`RelaxedCategorical`), ``self.relaxed_latent``
    (its name) and call :meth:`_init_relaxed`; for importance sampling they implement
    :meth:`~vaekit.models.LatentVariableModel.importance_sampler` (estimate the implied categorical
    of ``x`` once, return ``draw(k)``), from which :meth:`log_weights` draws, or override
    :meth:`log_weights` itself. Gives them the temperature schedule (a step
    counter buffer saved in checkpoints, so a resumed or reloaded model has the same
    temperature), the relaxed sample with its KL, the implied categorical of a posterior
    and the discrete prior.

    What consumers (the discrete diagnostics of :mod:`vaekit.analysis.discrete`,
    :class:`~vaekit.objectives.CapacityObjective`) read of these models, besides the protocol:
    :attr:`relaxed_family`, :attr:`relaxed_latent`, the ``train_step`` buffer (training steps
    counted, which set the temperature), :attr:`max_discrete_kl`, :meth:`relaxed_context`,
    :meth:`discrete_kl` and :meth:`inference_parameters`.

    Attributes
    ----------
    relaxed_family : RelaxedCategorical
        The relaxed categorical posterior family.
    relaxed_latent : str
        The name of the relaxed latent in :meth:`encode` and ``elbo_terms``.
    inference_modules : tuple of str
        Names of the submodules that compute ``q(latents | x)``.
    """

    relaxed_family: RelaxedCategorical
    relaxed_latent: str = "z"
    inference_modules: tuple[str, ...] = ("encoder", "posterior")

    @property
    def simplex_latents(self) -> dict[str, str]:
        """``{relaxed_latent: relaxation}``: the relaxed categorical latent lives on the simplex (AIS refuses it)."""
        return {self.relaxed_latent: self.relaxed_family.relaxation}

    def _init_relaxed(self, family: RelaxedCategorical, kl: str, temperature_schedule: Sequence[float] | None,
                      implied_samples: int, proposal_floor: float) -> None:
        if not isinstance(family, RelaxedCategorical):
            raise TypeError(f"the discrete posterior must be a vaekit.distributions.relaxed.RelaxedCategorical, got {type(family).__name__}")
        if kl not in ("auto", "gaussian", "mc"):
            raise ValueError(f"kl must be 'auto', 'gaussian' or 'mc', got {kl!r}")
        if kl == "gaussian" and family.relaxation == "gs":
            raise ValueError("kl='gaussian' needs an IGR relaxation (a Gaussian before softmax++), but the posterior is "
                             "Gumbel-Softmax (relaxation='gs'); use kl='mc' or 'auto'")
        self.kl_method = kl
        self.temperature_schedule = _check_schedule(temperature_schedule)
        self.implied_samples = check_int("implied_samples", implied_samples)
        self.proposal_floor = check_float("proposal_floor", proposal_floor, 0, 1, high_open=True)
        self.relaxed_family = family
        self.n_variables, self.n_categories = int(family.n_variables), int(family.n_categories)
        self.register_buffer("train_step", torch.zeros((), dtype=torch.long))
        self._prior_probs_cache: Tensor | None = None

    def _init_networks(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood,
                       data_shape: Sequence[int]) -> None:
        shape = check_data_shape(data_shape)
        for arg, value, cls in (("encoder", encoder, nn.Module), ("decoder", decoder, nn.Module),
                                ("likelihood", likelihood, Likelihood)):
            if not isinstance(value, cls):
                raise TypeError(f"{arg} must be a {cls.__name__}, got {type(value).__name__}")
        self.encoder, self.decoder, self.likelihood, self.data_shape = encoder, decoder, likelihood, shape

    def _features(self, x: Tensor) -> Tensor:
        if getattr(self.encoder, "flat_input", False):
            x = x.flatten(-len(self.data_shape))
        return self.encoder(x)

    def _decode_params(self, decoder_input: Tensor, event_shape: tuple[int, ...]) -> Distribution:
        """Run the decoder on (*lead, features) and wrap its output as the likelihood over ``event_shape``."""
        lead = decoder_input.shape[:-1]
        out = self.decoder(decoder_input)
        ppd = self.likelihood.params_per_dim
        want = ppd * math.prod(event_shape)
        if out.numel() != want * math.prod(lead):
            raise ValueError(f"decoder returns {out.numel() // max(math.prod(lead), 1)} numbers per example but "
                             f"{type(self.likelihood).__name__} needs params_per_dim * {math.prod(event_shape)} = {want}")
        return self.likelihood(out.reshape(*lead, ppd * event_shape[0], *event_shape[1:]), len(event_shape))

    def _flat_units(self, z: Tensor) -> Tensor:
        """Relaxed or one-hot units (*lead, N*K), also accepted as (*lead, N, K) when N > 1."""
        n, k = self.n_variables, self.n_categories
        if z.shape[-1] == n * k:
            return z
        if z.dim() >= 2 and tuple(z.shape[-2:]) == (n, k):
            return z.flatten(-2)
        raise ValueError(f"latent {self.relaxed_latent!r} has shape {tuple(z.shape)}; expected (..., {n * k}) "
                         f"(N*K = {n}*{k}, flattened) or (..., {n}, {k})")

    def validate_data(self, x, name: str = "x") -> Tensor:  # noqa: D102 - see LatentVariableModel
        x = super().validate_data(x, name)
        self.likelihood.validate(x, name)
        return x

    # ------------------------------------------------------------------ temperature
    @property
    def temperature(self) -> float:
        """Temperature of the relaxation at the current training step."""
        self._sync_temperature()
        return float(self.relaxed_family.temperature)

    def _sync_temperature(self) -> None:
        if self.temperature_schedule is not None:
            self.relaxed_family.set_temperature(temperature_at(int(self.train_step), self.temperature_schedule))

    def _tick(self) -> None:
        """Count one training step (only in training mode with gradients on)."""
        if self.training and torch.is_grad_enabled():
            self.train_step += 1

    @property
    def max_discrete_kl(self) -> float:
        """The largest KL the discrete latent can carry, ``N log K`` (nats)."""
        return self.n_variables * math.log(self.n_categories)

    # ------------------------------------------------------------------ relaxed and discrete draws
    def relaxed_posterior(self, context: Tensor) -> Distribution:
        """The relaxed posterior at the encoder features, batch shape (batch, N), event (K,)."""
        self._sync_temperature()
        return self.relaxed_family(context)

    def relaxed_context(self, x: Tensor) -> Tensor:
        """Features of ``x`` that the relaxed family reads, shape (batch, in_features)."""
        return self._features(x)

    def discrete_kl(self, x: Tensor) -> Tensor | None:
        """Exact ``KL(q_cat(c|x) || p_cat(c))`` of the implied categoricals, shape (batch,); None when the
        model has no discrete prior to compare with (the default: structured prediction)."""
        return None

    def inference_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters of ``q(latents | x)`` (those of :attr:`inference_modules`, each once)."""
        params: list[nn.Parameter] = []
        for name in self.inference_modules:
            module = getattr(self, name)
            params += [p for p in module.parameters() if p.requires_grad and all(p is not q for q in params)]
        return params

    def relaxed_prior(self) -> Distribution:
        """The relaxed prior, batch shape (N,), event (K,), at the current temperature."""
        self._sync_temperature()
        return self.relaxed_family.prior_distribution()

    def _relaxed_draw(self, q: Distribution, sample_shape: tuple[int, ...] = ()) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Relaxed sample ``(*s, *batch, N, K)`` and its KL, log q, log p, each summed over the N variables.

        IGR families are scored in their Gaussian space (lambda, before softmax++ or stick
        breaking): the KL is invariant under the invertible map, the Gaussian densities are
        stable at any temperature and the prior's density there is exact. Gumbel-Softmax is
        scored in log space (ExpConcrete), for the same reasons; a straight-through (hard)
        sample is scored at its soft version.
        """
        p = self.relaxed_prior()
        shape = torch.Size(sample_shape)
        if hasattr(q, "rsample_gaussian"):
            lam, log_q = q.rsample_gaussian(shape)
            z = q.to_simplex(lam)
            log_p = p.base.log_prob(lam)
            if self.kl_method == "mc" or q.has_flows:
                kl = log_q - log_p
            else:
                kl = relaxed_kl(q, p, "gaussian").expand(log_q.shape)
        else:
            y = q.exp_concrete.rsample(shape)
            log_q, log_p = q.exp_concrete.log_prob(y), p.exp_concrete.log_prob(y)
            kl = log_q - log_p
            z = y.exp()
            if getattr(q, "hard", False):
                z = torch.nn.functional.one_hot(z.argmax(-1), z.shape[-1]).to(z.dtype) + z - z.detach()
        return z, kl.sum(-1), log_q.sum(-1), log_p.sum(-1)

    def prior_probs(self) -> Tensor:
        """The exact discrete prior :math:`p_{cat}`, shape (N, K) (cached).

        Uniform for Gumbel-Softmax with uniform logits; for IGR priors the categorical law
        of the argmax of a prior sample (the same map that turns the posterior into
        :math:`q_{cat}`), estimated once with a fixed seed and ``2**16`` samples. An IGR
        prior fitted to a uniform *mean* (``prior="uniform_fit"``) does not have a uniform
        argmax law (the last category, fed by the softmax++ remainder, is rarer), so it is
        estimated too.
        """
        cache = self._prior_probs_cache
        ref = next(self.parameters())
        if cache is None or cache.device != ref.device or cache.dtype != ref.dtype:
            family = self.relaxed_family
            if family.relaxation == "gs":
                probs = torch.full((self.n_variables, self.n_categories), 1.0 / self.n_categories)
            else:
                with torch.random.fork_rng(devices=[]), torch.no_grad():
                    torch.manual_seed(0)
                    probs = self.relaxed_prior().implied_probs(2**16).expand(self.n_variables, self.n_categories)
            cache = self._prior_probs_cache = probs.to(ref).clamp_min(1e-12)
        return cache

    def implied_probs(self, q: Distribution) -> Tensor:
        """Categorical implied by a relaxed posterior, shape (*batch, N, K) (no gradient)."""
        with torch.no_grad():
            return q.implied_probs(self.implied_samples)

    def _discrete_draw(self, probs: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """``k`` one-hot draws from ``r = (1-eps) probs + eps/K`` and ``log r`` summed over N.

        Returns one-hot of shape (k, *batch, N, K) and log r of shape (k, *batch).
        """
        eps = self.proposal_floor
        r = (1 - eps) * probs + eps / probs.shape[-1]
        r = r / r.sum(-1, keepdim=True)
        idx = torch.distributions.Categorical(probs=r).sample((k,))
        onehot = torch.nn.functional.one_hot(idx, probs.shape[-1]).to(probs.dtype)
        return onehot, log_categorical(onehot, r.log())

    def log_weights(self, x: Tensor, k: int = 1) -> Tensor:
        """Discrete importance log-weights with one-hot decoding, shape (k, batch) (see module docstring):
        ``k`` draws of :meth:`importance_sampler`, which a subclass implements (or it overrides this)."""
        k = check_int("k", k)
        if type(self).importance_sampler is LatentVariableModel.importance_sampler:
            raise NotImplementedError(f"{type(self).__name__} must implement importance_sampler(x) (which builds the "
                                      "proposal of x once and returns draw(k)) or log_weights(x, k)")
        return self.importance_sampler(x)(k)

    log_weights.draws_from_importance_sampler = True  # type: ignore[attr-defined]

    def _check_shape(self, x: Tensor, name: str = "x") -> None:
        if not isinstance(x, Tensor) or tuple(x.shape[1:]) != tuple(self.data_shape) or x.dim() != len(self.data_shape) + 1:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} has shape {got} but this model expects (batch, {', '.join(map(str, self.data_shape))}) "
                             f"(data_shape={tuple(self.data_shape)})")


class DiscreteVAE(RelaxedLatentModel):
    r"""VAE with ``N`` relaxed categorical latents of ``K`` categories (latent name ``"z"``).

    Parameters
    ----------
    encoder : nn.Module
        x of shape (batch, *data_shape) -> features (batch, C) (``flat_input`` modules get x flattened).
    posterior : RelaxedCategorical
        Features -> relaxed posterior with batch shape (batch, N), event (K,); any relaxation
        (``"gs"``, ``"igr_i"``, ``"igr_planar"``, ``"igr_sb"``).
    decoder : nn.Module
        Flattened relaxed (or one-hot) latents (*lead, N*K) -> ``params_per_dim * prod(data_shape)`` numbers.
    likelihood : Likelihood
        Decoder output -> p(x | z).
    data_shape : sequence of int
        Shape of one example.
    kl : {"auto", "gaussian", "mc"}
        KL of the relaxed ELBO: closed-form Gaussian KL before softmax++ (IGR), the
        single-sample Monte Carlo KL of the relaxed densities (needed for Gumbel-Softmax),
        or the best available (``"auto"``).
    temperature_schedule : (float, float, int), optional
        ``(start, end, steps)`` geometric annealing of the temperature over training steps;
        None keeps the posterior's temperature.
    implied_samples : int
        Relaxed samples per example used to estimate the implied categorical (IGR; exact for GS).
    proposal_floor : float
        Uniform mixture weight :math:`\epsilon` of the evaluation proposal (see module docstring).

    Examples
    --------
    >>> model = discrete_vae([16], n_variables=3, n_categories=4, hidden=[8], relaxation="gs")
    >>> x = torch.bernoulli(torch.full((5, 16), 0.5))
    >>> model.log_weights(x, k=7).shape, model.elbo_terms(x).kl["z"].shape
    (torch.Size([7, 5]), torch.Size([5]))
    """

    def __init__(self, encoder: nn.Module, posterior: RelaxedCategorical, decoder: nn.Module, likelihood: Likelihood,
                 data_shape: Sequence[int], kl: KLMethod = "auto",
                 temperature_schedule: tuple[float, float, int] | None = None, implied_samples: int = 1000,
                 proposal_floor: float = 1e-3) -> None:
        super().__init__()
        self._init_networks(encoder, decoder, likelihood, data_shape)
        self._init_relaxed(posterior, kl, temperature_schedule, implied_samples, proposal_floor)
        self.posterior, self.relaxed_latent = posterior, "z"
        self.latent_names = ("z",)
        self.latent_dims = {"z": self.n_variables * self.n_categories}

    # ------------------------------------------------------------------ pieces
    def encode(self, x: Tensor) -> dict[str, Distribution]:
        """Relaxed posterior ``{"z": q(z|x)}``: batch shape (batch, N), event shape (K,)."""
        return {"z": self.relaxed_posterior(self._features(x))}

    def decode(self, z: dict[str, Tensor] | Tensor) -> Distribution:
        """``p(x|z)`` for latents of shape (*lead, N*K) or (*lead, N, K) with N > 1 (relaxed or one-hot)."""
        return self._decode_params(self._flat_units(z["z"] if isinstance(z, dict) else z), self.data_shape)

    # ------------------------------------------------------------------ protocol
    def elbo_terms(self, x: Tensor) -> ElboTerms:
        """Relaxed ELBO terms: ``rec = log p(x | z~)`` at one relaxed sample, ``kl = {"z": ...}``."""
        q = self.encode(x)["z"]
        z, kl, log_q, log_p = self._relaxed_draw(q)
        rec = self.decode(z.flatten(-2)).log_prob(x)
        extras = {}
        n_used = getattr(q, "last_n_used", None)
        if isinstance(n_used, Tensor):
            extras["categories_used"] = n_used.float().reshape(rec.shape[0], -1).mean(-1).detach()
        self._tick()
        return ElboTerms(rec=rec, kl={"z": kl}, log_q={"z": log_q}, log_p={"z": log_p}, extras=extras)

    def importance_sampler(self, x: Tensor) -> Callable[[int], Tensor]:
        """The implied categorical of ``q(z|x)`` (``implied_samples`` relaxed draws) is estimated once;
        each ``draw(k)`` then costs only ``k`` one-hot draws and decoder passes."""
        self._check_shape(x)
        probs = self.implied_probs(self.encode(x)["z"])
        log_prior = self.prior_probs().log()

        def draw(k: int) -> Tensor:
            c, log_r = self._discrete_draw(probs, k)
            return self.decode(c.flatten(-2)).log_prob(x) + log_categorical(c, log_prior) - log_r
        return draw

    def discrete_kl(self, x: Tensor) -> Tensor:
        """Exact ``KL(q_cat(c|x) || p_cat(c))`` of the implied categoricals, shape (batch,)."""
        self._check_shape(x)
        return categorical_kl(self.implied_probs(self.encode(x)["z"]), self.prior_probs())

    def relaxed_elbo(self, x: Tensor) -> Tensor:
        """Single-sample relaxed ELBO ``log p(x|z~) - KL``, shape (batch,)."""
        self._check_shape(x)
        return self.elbo_terms(x).elbo

    def log_prior(self, z: dict[str, Tensor]) -> Tensor:
        """Relaxed prior log-density of flattened latents (*lead, N*K), shape (*lead,)."""
        zz = z["z"].unflatten(-1, (self.n_variables, self.n_categories))
        return self.relaxed_prior().log_prob(zz).sum(-1)

    def log_joint(self, x: Tensor, z: dict[str, Tensor]) -> Tensor:
        return self.decode(z).log_prob(x) + self.log_prior(z)

    def sample_prior(self, n: int) -> dict[str, Tensor]:
        """``n`` relaxed prior draws, flattened: ``{"z": (n, N*K)}``."""
        return {"z": self.relaxed_prior().sample((check_int("n", n),)).flatten(-2)}

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True, discrete: bool = True) -> Tensor:
        """Generate ``n`` examples from one-hot draws of the discrete prior (``discrete=True``)
        or from relaxed prior draws; returns Tensor of shape (n, *data_shape)."""
        n = check_int("n", n)
        if discrete:
            c = torch.distributions.Categorical(probs=self.prior_probs()).sample((n,))
            z = torch.nn.functional.one_hot(c, self.n_categories).to(self.prior_probs().dtype).flatten(-2)
        else:
            z = self.sample_prior(n)["z"]
        px = self.decode(z)
        return px.mean if mean else px.sample()

    def forward(self, x: Tensor) -> ElboTerms:
        """Same as :meth:`elbo_terms` (so DDP wrappers see a forward)."""
        return self.elbo_terms(x)


Relaxation = Literal["gs", "igr_i", "igr_planar", "igr_sb"]


def discrete_vae(data_shape: Sequence[int], n_variables: int = 20, n_categories: int = 10,
                 hidden: Sequence[int] = (512, 256), relaxation: Relaxation = "igr_i", temperature: float = 0.5,
                 likelihood: LikelihoodName = "bernoulli", activation: str = "relu", **family_kwargs) -> DiscreteVAE:
    """The paper's nonlinear discrete VAE: MLP ``D-512-256-(N x K)`` encoder, mirrored decoder.

    The paper's code trains it with ``n_variables=30`` (and 10 categories); the default here is 20.

    ``family_kwargs`` go to :class:`RelaxedCategorical` (``delta``, ``n_flows``, ``threshold``,
    ``hard``, ``prior``).

    >>> discrete_vae([784]).latent_dims
    {'z': 200}
    """
    hidden = [int(h) for h in hidden]
    if not hidden:
        raise ValueError("hidden must name at least one hidden layer size, e.g. (512, 256)")
    lik = make_likelihood(likelihood)
    d = math.prod(int(v) for v in data_shape)
    family = RelaxedCategorical(hidden[-1], n_variables, n_categories, relaxation=relaxation, temperature=temperature,
                                **family_kwargs)
    enc = MLP(d, hidden[-1], hidden[:-1], activation, output_activation=activation)
    dec = MLP(n_variables * n_categories, lik.params_per_dim * d, hidden[::-1], activation)
    return DiscreteVAE(enc, family, dec, lik, data_shape)
