r"""Structured output prediction through discrete stochastic units (Potapczynski et al. 2020, sec. 5.2).

The task of Raiko et al. (2015) and Jang et al. (2017): predict the lower half of a
binarized MNIST image from its upper half. The model is

.. math::

    p(x_{low} | x_{up}) = \sum_c p(x_{low} | c)\, p(c | x_{up}),

with ``N x K`` categorical units ``c`` whose conditional distribution :math:`p(c|x_{up})` is
an encoder followed by a relaxed categorical family (any relaxation). Training maximises
the relaxed bound :math:`\log \frac1S \sum_s p(x_{low} | \tilde c_s)`,
:math:`\tilde c_s \sim p(\tilde c | x_{up})` (``train_samples = S``; ``S = 1`` is the plain
relaxed objective). Evaluation is the paper's metric, the importance-sampled conditional
log-likelihood of the discrete model with 100 one-hot samples from the implied categorical,
:math:`\log \frac1k\sum_i p(x_{low} | c_i)`: the proposal is the model's own
:math:`p_{cat}(c | x_{up})`, so the log-weights (``log_weights``, drawn by
:meth:`StructuredPredictor.importance_sampler`) are :math:`\log p(x_{low}|c_i)` and the
generic IWAE estimator gives the same number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .._checks import check_int
from ..distributions import Likelihood
from ..distributions.relaxed import RelaxedCategorical
from ..nn import MLP
from .base import ElboTerms
from .._numeric import logmeanexp
from ._common import check_data_shape
from .discrete import Relaxation, RelaxedLatentModel
from .vae import LikelihoodName, make_likelihood

__all__ = ["StructuredPredictor", "structured_predictor", "split_halves"]


def split_halves(x: Tensor, data_shape: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Upper and lower halves of a batch of images, each flattened per example.

    Flat data (``data_shape = [D]``, D even, rows of a square image laid out row-major) is
    cut at ``D / 2``; images ``[C, H, W]`` (H even) are cut between rows ``H/2 - 1`` and ``H/2``.

    Parameters
    ----------
    x : Tensor of shape (batch, *data_shape)

    Returns
    -------
    upper, lower : Tensor of shape (batch, prod(data_shape) / 2)

    Examples
    --------
    >>> up, low = split_halves(torch.arange(8.0).reshape(1, 1, 4, 2), [1, 4, 2])
    >>> up.tolist(), low.tolist()
    ([[0.0, 1.0, 2.0, 3.0]], [[4.0, 5.0, 6.0, 7.0]])
    """
    if len(data_shape) == 1:
        half = data_shape[0] // 2
        return x[:, :half], x[:, half:]
    h = data_shape[-2] // 2
    return x[..., :h, :].flatten(1), x[..., h:, :].flatten(1)


class StructuredPredictor(RelaxedLatentModel):
    r"""Predict the lower half of an image from its upper half through relaxed categorical units.

    Parameters
    ----------
    encoder : nn.Module
        Upper half, flattened (batch, D/2) -> features (batch, C).
    posterior : RelaxedCategorical
        Features -> relaxed :math:`p(c | x_{up})`, batch shape (batch, N), event (K,).
    decoder : nn.Module
        Units (*lead, N*K) -> ``params_per_dim * D/2`` numbers for the lower half.
    likelihood : Likelihood
        Decoder output -> :math:`p(x_{low} | c)` (Bernoulli for binarized MNIST).
    data_shape : sequence of int
        Shape of the *full* image: ``[D]`` with D even (e.g. ``[784]``) or ``[C, H, W]`` with H even.
    train_samples : int
        Relaxed samples ``S`` of the training objective (see module docstring).
    temperature_schedule : (float, float, int), optional
        Geometric temperature annealing ``(start, end, steps)``.
    implied_samples : int
        Samples used to estimate the implied categorical of an IGR family.

    Examples
    --------
    >>> model = structured_predictor([16], n_variables=2, n_categories=3, hidden=[8])
    >>> x = torch.bernoulli(torch.full((4, 16), 0.5))
    >>> model.conditional_log_likelihood(x, k=10).shape
    torch.Size([4])
    """

    def __init__(self, encoder: nn.Module, posterior: RelaxedCategorical, decoder: nn.Module, likelihood: Likelihood,
                 data_shape: Sequence[int], train_samples: int = 1,
                 temperature_schedule: tuple[float, float, int] | None = None, implied_samples: int = 1000) -> None:
        super().__init__()
        shape = check_data_shape(data_shape)
        if len(shape) == 1 and shape[0] % 2:
            raise ValueError(f"data_shape {list(shape)}: a flat example needs an even size to split into two halves")
        if len(shape) > 1 and (len(shape) != 3 or shape[-2] % 2):
            raise ValueError(f"data_shape {list(shape)}: images must be [channels, height, width] with an even height "
                             f"(or flat [D] with D even), e.g. [1, 28, 28] or [784]")
        # the proposal is the model's own conditional p_cat(c | x_up): no uniform floor, no KL term
        self._init_relaxed(posterior, "auto", temperature_schedule, implied_samples, 0.0)
        self.train_samples = check_int("train_samples", train_samples)
        self._init_networks(encoder, decoder, likelihood, shape)
        self.posterior, self.relaxed_latent = posterior, "z"
        self.half_features = math.prod(shape) // 2
        self.latent_names = ("z",)
        self.latent_dims = {"z": self.n_variables * self.n_categories}

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(upper, lower)`` halves of x, each (batch, D/2)."""
        return split_halves(x, self.data_shape)

    def relaxed_context(self, x: Tensor) -> Tensor:
        """Encoder features of the upper half of ``x``, shape (batch, C)."""
        return self.encoder(self.split(x)[0])

    def encode(self, x: Tensor) -> dict[str, Distribution]:
        """Relaxed :math:`p(c | x_{up})` from the upper half of ``x`` (the lower half is not read)."""
        return {"z": self.relaxed_posterior(self.relaxed_context(x))}

    def decode(self, z: dict[str, Tensor] | Tensor) -> Distribution:
        """:math:`p(x_{low} | c)` over the flattened lower half, for units of shape (*lead, N*K)."""
        return self._decode_params(self._flat_units(z["z"] if isinstance(z, dict) else z), (self.half_features,))

    def elbo_terms(self, x: Tensor) -> ElboTerms:
        """``rec`` = the relaxed bound with ``train_samples`` samples; no KL (the units' distribution
        is the model's own conditional, reported as ``kl = {"z": 0}``)."""
        upper, lower = self.split(x)
        q = self.relaxed_posterior(self.encoder(upper))
        z = q.rsample((self.train_samples,)).flatten(-2)
        rec = logmeanexp(self.decode(z).log_prob(lower), 0)
        self._tick()
        return ElboTerms(rec=rec, kl={"z": torch.zeros_like(rec)})

    def importance_sampler(self, x: Tensor) -> Callable[[int], Tensor]:
        """``draw(k)``: ``log p(x_low | c_i)``, ``c_i`` one-hot from :math:`p_{cat}(c | x_{up})`; shape (k, batch).
        The implied categorical of the upper half is estimated once."""
        self._check_shape(x)
        upper, lower = self.split(x)
        probs = self.implied_probs(self.relaxed_posterior(self.encoder(upper)))

        def draw(k: int) -> Tensor:
            c, _ = self._discrete_draw(probs, k)
            return self.decode(c.flatten(-2)).log_prob(lower)
        return draw

    @torch.no_grad()
    def conditional_log_likelihood(self, x: Tensor, k: int = 100) -> Tensor:
        """Importance-sampled :math:`\\log p(x_{low} | x_{up})` with ``k`` samples (the paper's metric).

        Returns
        -------
        Tensor of shape (batch,)
        """
        return logmeanexp(self.log_weights(x, check_int("k", k)), 0)

    @torch.no_grad()
    def predict(self, x: Tensor, k: int = 100) -> Tensor:
        """Predictive mean of the lower half, :math:`\\mathbb E[x_{low} | x_{up}]`, shape (batch, D/2)."""
        self._check_shape(x)
        probs = self.implied_probs(self.relaxed_posterior(self.encoder(self.split(x)[0])))
        c, _ = self._discrete_draw(probs, check_int("k", k))
        return self.decode(c.flatten(-2)).mean.mean(0)

    def forward(self, x: Tensor) -> ElboTerms:
        """Same as :meth:`elbo_terms`."""
        return self.elbo_terms(x)


def structured_predictor(data_shape: Sequence[int] = (784,), n_variables: int = 20, n_categories: int = 10,
                         hidden: Sequence[int] = (512, 256), relaxation: Relaxation = "igr_i",
                         temperature: float = 0.5, likelihood: LikelihoodName = "bernoulli",
                         activation: str = "relu") -> StructuredPredictor:
    """The paper's SOP network: upper half (392) -> 512-256 -> N x K units -> 256-512 -> lower half (392).

    >>> structured_predictor().latent_dims
    {'z': 200}
    """
    hidden = [int(h) for h in hidden]
    if not hidden:
        raise ValueError("hidden must name at least one hidden layer size, e.g. (512, 256)")
    lik = make_likelihood(likelihood)
    half = math.prod(int(v) for v in data_shape) // 2
    enc = MLP(half, hidden[-1], hidden[:-1], activation, output_activation=activation)
    family = RelaxedCategorical(hidden[-1], n_variables, n_categories, relaxation=relaxation, temperature=temperature)
    dec = MLP(n_variables * n_categories, lik.params_per_dim * half, hidden[::-1], activation)
    return StructuredPredictor(enc, family, dec, lik, data_shape)
