"""The model protocol that every vaekit latent-variable model implements.

Objectives (:mod:`vaekit.objectives`), estimators (:mod:`vaekit.inference`), the
training loop (:mod:`vaekit.training`) and analysis never special-case a model: they
only call the methods below.

Latents are always named: a model's latent state is a ``dict[str, Tensor]`` even when
there is a single latent (``{"z": z}``).
"""

from __future__ import annotations

import functools
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .._recording import Configurable, recorded_args
from ._common import plain_arg, short_arg

if TYPE_CHECKING:
    from ..distributions import ConditionalDistribution

__all__ = ["ElboTerms", "LazyTerms", "LatentVariableModel", "ValidationReport"]


class LazyTerms(Mapping[str, Tensor]):
    """A dict of per-latent terms computed on first access (and kept).

    :class:`ElboTerms` ``log_q`` / ``log_p`` of a model whose KL has a closed form are not
    part of the loss; the model passes them as ``LazyTerms`` so that a training step that
    never reads them does not compute them.

    >>> calls = []
    >>> t = LazyTerms({"z": lambda: calls.append(1) or torch.tensor(2.0)})
    >>> list(t), calls
    (['z'], [])
    >>> t["z"], t["z"], calls
    (tensor(2.), tensor(2.), [1])
    """

    def __init__(self, thunks: Mapping[str, Callable[[], Tensor] | Tensor], callables: bool = False) -> None:
        if callables:  # the caller's own dict, of callables only: kept as it is (a model's step, no copies)
            self._thunks, self._values = thunks, {}
            return
        # values may also be tensors already (a collection rebuilt by a wrapper, e.g. Fabric's output conversion)
        self._thunks = {k: (lambda v=v: v) if isinstance(v, Tensor) else v for k, v in thunks.items()}
        self._values: dict[str, Tensor] = {k: v for k, v in thunks.items() if isinstance(v, Tensor)}

    def __getitem__(self, name: str) -> Tensor:
        if name not in self._values:
            self._values[name] = self._thunks[name]()
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._thunks)

    def __len__(self) -> int:
        return len(self._thunks)

    def __repr__(self) -> str:
        return f"LazyTerms({sorted(self._thunks)})"


@dataclass
class ElboTerms:
    """Per-example pieces of the evidence lower bound, one entry per named latent.

    Attributes
    ----------
    rec : Tensor of shape (batch,)
        Reconstruction log-likelihood ``log p(x | z)`` at one posterior sample.
    kl : dict of str to Tensor of shape (batch,)
        ``KL(q(z_name | x) || p(z_name))`` per named latent: closed form where it exists,
        otherwise the single-sample Monte Carlo value ``log q - log p``.
    log_q : dict (or :class:`LazyTerms`) of str to Tensor of shape (batch,)
        ``log q(z_name | x)`` at the sample (used by entropy warm-up schedules).
    log_p : dict (or :class:`LazyTerms`) of str to Tensor of shape (batch,)
        ``log p(z_name)`` (or ``log p(z_name | parents)``) at the sample.
    extras : dict of str to Tensor
        Model-specific per-example diagnostics (never part of the loss).

    Examples
    --------
    >>> import torch
    >>> t = ElboTerms(rec=torch.tensor([-3.0]), kl={"z": torch.tensor([1.0])})
    >>> t.elbo
    tensor([-4.])
    """

    rec: Tensor
    kl: dict[str, Tensor]
    log_q: Mapping[str, Tensor] = field(default_factory=dict)
    log_p: Mapping[str, Tensor] = field(default_factory=dict)
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def kl_total(self) -> Tensor:
        """Sum of the KL terms over all named latents, shape (batch,)."""
        if len(self.kl) == 1:
            return next(iter(self.kl.values()))
        return torch.stack(list(self.kl.values()), 0).sum(0) if self.kl else torch.zeros_like(self.rec)

    @property
    def elbo(self) -> Tensor:
        """``rec - sum(kl)``, shape (batch,)."""
        return self.rec - self.kl_total


@dataclass
class ValidationReport:
    """What a model adds to each validation of the training loop (see
    :meth:`LatentVariableModel.validation_report`).

    Attributes
    ----------
    metrics : dict of str to float
        Scalars logged to ``metrics.csv`` (split ``"val"``) and the console beside the
        objective's metrics, e.g. ``{"accuracy": 0.91, "group_accuracy_p10": 0.7}``.
    tables : dict of str to list of dict
        Long-format rows per table name; the loop appends each table's rows, with ``epoch``
        and ``step`` columns in front, to ``eval/<name>.csv`` in the run directory (one
        file for the whole run, never one per epoch).

    Examples
    --------
    >>> r = ValidationReport({"accuracy": 0.5}, {"groups": [{"level": 0, "group": "a", "metric": "accuracy", "value": 0.5}]})
    >>> r.metrics["accuracy"], len(r.tables["groups"])
    (0.5, 1)
    """

    metrics: dict[str, float] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class LatentVariableModel(Configurable, nn.Module, metaclass=ABCMeta):
    """Base class of every vaekit model (the protocol of docs/design.md).

    Every model implements the two abstract methods :meth:`elbo_terms` and
    :meth:`log_weights` (a class that lacks either cannot be instantiated). Models whose
    latents are per example (all VAEs) also implement :meth:`encode`, :meth:`decode`,
    :meth:`log_joint`, :meth:`log_prior` and :meth:`sample_prior`: their defaults raise
    ``NotImplementedError`` naming the model, so a model with global latents (group
    latents) simply leaves them out. :meth:`sample` and :meth:`prior_distributions` have
    working defaults built on the methods above.

    A model whose size depends on its data declares the constructor arguments the data
    determine (:meth:`data_args`) and is built by :meth:`from_data`; the training loop calls
    :meth:`check_data_module` before training and :meth:`validation_report` after each
    validation (both have defaults that do nothing for models that need nothing).

    Attributes
    ----------
    data_shape : tuple of int
        Shape of one example ``x`` (without the batch dimension).
    latent_names : tuple of str
        Names of the latent variables, in generative order (top first).
    latent_dims : dict of str to int
        Number of dimensions of each named latent (the free-bits floor and KL balancing of
        :class:`~vaekit.objectives.ELBO` scale with it); empty when the model does not say.
    """

    data_shape: tuple[int, ...] = ()
    latent_names: tuple[str, ...] = ("z",)
    latent_dims: Mapping[str, int] = MappingProxyType({})

    # ------------------------------------------------------------------ protocol: every model
    @abstractmethod
    def elbo_terms(self, batch: Any) -> ElboTerms:
        """Per-example reconstruction log-likelihood and KL per named latent."""

    @abstractmethod
    def log_weights(self, x: Tensor, k: int = 1) -> Tensor:
        """Importance log-weights ``log p(x, z_i) - log q(z_i | x)``, ``z_i ~ q(z | x)``.

        Parameters
        ----------
        x : Tensor of shape (batch, *data_shape)
        k : int
            Number of posterior samples per example.

        Returns
        -------
        Tensor of shape (k, batch)
        """

    def importance_sampler(self, x: Tensor) -> Callable[[int], Tensor]:
        """``draw(k)`` giving ``k`` fresh importance log-weights of ``x`` per call, shape (k, batch).

        Estimators that chunk the samples of one batch (:func:`~vaekit.inference.iwae_log_likelihood`)
        call this once per batch and ``draw`` once per chunk, so work that depends only on ``x`` is
        done once: a model whose proposal is costly to build (the Monte Carlo implied categorical of
        the relaxed-latent models) overrides this and builds it here. The default calls
        :meth:`log_weights` for every chunk; so does the sampler of any subclass that overrides
        :meth:`log_weights` without overriding this (its ``log_weights`` is what estimators use).
        """
        return functools.partial(self.log_weights, x)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if "log_weights" in own and "importance_sampler" not in own \
                and not getattr(own["log_weights"], "draws_from_importance_sampler", False):
            # a new log_weights is what estimators must use, not an inherited sampler's draws
            cls.importance_sampler = LatentVariableModel.importance_sampler  # type: ignore[method-assign]

    # ------------------------------------------------------------------ protocol: models with per-example latents
    def encode(self, x: Tensor) -> dict[str, Distribution]:
        """Posterior distribution of every named latent given ``x``."""
        raise self._not_implemented("encode")

    def decode(self, z: dict[str, Tensor]) -> Distribution:
        """Distribution over ``x`` given the latents (batch shape = leading dims of z)."""
        raise self._not_implemented("decode")

    def log_joint(self, x: Tensor, z: dict[str, Tensor]) -> Tensor:
        """``log p(x, z)`` with shape = the leading (sample, batch) dims of ``z``."""
        raise self._not_implemented("log_joint")

    def log_prior(self, z: dict[str, Tensor]) -> Tensor:
        """``log p(z)`` summed over the named latents, shape = leading (sample, batch) dims of ``z``.

        ``log_joint(x, z) - log_prior(z)`` is ``log p(x | z)``: AIS anneals that term.
        """
        raise self._not_implemented("log_prior")

    def sample_prior(self, n: int) -> dict[str, Tensor]:
        """``n`` draws of every named latent from the prior, each of shape (n, ...)."""
        raise self._not_implemented("sample_prior")

    @property
    def simplex_latents(self) -> dict[str, str]:
        """The named latents that live on the probability simplex, each with its family (none by default).

        A relaxed categorical latent (Gumbel-Softmax ``"gs"``, IGR) has a density only on the
        simplex; estimators that move latents freely in :math:`\\mathbb R^d` (AIS and BDMC,
        whose HMC steps leave the simplex) refuse a model that names one.
        """
        return {}

    def prior_distributions(self) -> dict[str, Distribution] | None:
        """The prior of every named latent as a distribution, or None (the default).

        A model whose latents have fixed priors, not conditioned on other latents (a VAE's
        ``p(z)``), returns ``{name: distribution}`` with the latent's event shape; analysis
        uses it for the prior's centre and for per-dimension KLs. Models with conditional
        priors (hierarchical VAEs) keep the default: consumers then fall back to
        :meth:`sample_prior`.
        """
        return None

    def latent_pairs(self, x: Tensor) -> dict[str, tuple[Distribution, Distribution]] | None:
        """``{name: (prior, posterior)}`` of every named latent for the batch ``x``, or None.

        What per-dimension KL statistics compare. By default the declared priors
        (:meth:`prior_distributions`) with the posteriors of :meth:`encode`, and None for a
        model that declares no priors. A model whose priors are conditional (a hierarchical
        VAE) overrides it with each layer's prior given the posterior draws above it.
        """
        priors = self.prior_distributions()
        if priors is None:
            return None
        q = self.encode(x)
        return {name: (priors[name], q[name]) for name in self.latent_names}

    def amortized(self, x: Tensor) -> tuple[Tensor, ConditionalDistribution]:
        """The amortized posterior of a single-latent model as its two parts: ``(context, family)``.

        ``family(context)`` is ``encode(x)[latent_names[0]]``: ``context`` (batch, C) is what the
        encoder computes from ``x``, ``family`` the posterior family module
        (a :class:`~vaekit.distributions.ConditionalDistribution` with ``context_features`` C
        and ``latent_features``). Local optimisation
        (:func:`~vaekit.inference.optimize_local_posterior`) re-fits the family's parameters and
        the context per example; the inference-gap analysis builds other families of the same
        context width.

        Parameters
        ----------
        x : Tensor of shape (batch, *data_shape)

        Returns
        -------
        context : Tensor of shape (batch, C)
        family : ConditionalDistribution

        Raises
        ------
        TypeError
            For models whose posterior is not one family of one context (the default).
        """
        raise TypeError(f"{type(self).__name__} does not declare amortized(x) -> (context, family): local optimisation and "
                        "the inference-gap analysis need a single-latent model with an encoder and a posterior family "
                        "(like vaekit.models.VAE)")

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True) -> Tensor:
        """Generate ``n`` examples: decode prior samples.

        Parameters
        ----------
        n : int
            Number of examples.
        mean : bool
            Return the mean of p(x | z) (smooth images) instead of a draw from it.

        Returns
        -------
        Tensor of shape (n, *data_shape)
        """
        px = self.decode(self.sample_prior(n))
        return px.mean if mean else px.sample()

    def _not_implemented(self, method: str) -> NotImplementedError:
        return NotImplementedError(f"{type(self).__name__} does not implement {method} (a method of the protocol for "
                                   "models whose latents are per example; see vaekit.models.LatentVariableModel)")

    # ------------------------------------------------------------------ sized by the data
    @classmethod
    def data_args(cls, data: Any) -> dict[str, Any]:
        """The constructor arguments that a set-up data module determines (none by default).

        A model whose size depends on its data (the group tables of
        :class:`~vaekit.models.group.GroupPredictor`) overrides this; :meth:`from_data` and
        ``vaekit fit`` pass the result to the constructor, so ``config.yaml`` holds exactly what
        the constructor received.

        Parameters
        ----------
        data : DataModule
            After ``setup()``.

        Returns
        -------
        dict of str to plain values (YAML-ready)
        """
        return {}

    @classmethod
    def args_for_data(cls, data: Any, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """:meth:`data_args` of ``data``, checked against the constructor arguments ``given``.

        ``data.setup()`` is called first (a second call does nothing). An argument that
        ``given`` sets (not None) must equal the data's value.

        Raises
        ------
        ValueError
            When a given argument differs from the value the data determine; the message names
            the argument and both values.
        """
        if callable(getattr(data, "setup", None)):
            data.setup()
        derived = cls.data_args(data)
        given = dict(given or {})
        for key, value in derived.items():
            mine = given.get(key)
            if mine is not None and plain_arg(mine) != plain_arg(value):
                raise ValueError(f"{cls.__name__}: {key}={short_arg(mine)} does not fit the data, which gives "
                                 f"{key}={short_arg(value)}; leave {key} out (it is derived from the data) or use the "
                                 f"data it was derived from")
        return derived

    @classmethod
    def from_data(cls, data: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Build the model sized from ``data``: ``cls(*args, **kwargs, **data_args(data))``.

        The one way to build a model whose size depends on its data; the constructor receives
        every argument, so the model's recorded config rebuilds it (``vaekit.load``).

        Raises
        ------
        ValueError
            When an argument given here differs from the value the data determine.
        """
        import inspect

        sig = inspect.signature(cls)
        bound = sig.bind_partial(*args, **kwargs).arguments
        given: dict[str, Any] = {}
        for name, value in bound.items():  # by name, with a **kwargs constructor's keywords spread out
            kind = sig.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                given.update(value)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                given[name] = value
        derived = cls.args_for_data(data, given)  # equal to the given ones where both are set
        positional = [p.name for p in sig.parameters.values()
                      if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        passed = set(positional[:len(args)])
        model = cls(*args, **{**kwargs, **{k: v for k, v in derived.items() if k not in passed}})
        model.check_data_module(data)
        return model

    def check_data_module(self, data: Any) -> None:
        """Raise when ``data`` (set up) does not fit this model; called by ``Trainer.fit`` before training.

        By default: every argument of :meth:`data_args` that the model was built with must
        equal the data's (a model sized for other grouped data is refused). Subclasses may
        check more (and call this).

        Raises
        ------
        ValueError
            Naming the argument, the model's value and the data's.
        """
        derived = type(self).data_args(data)
        if not derived:
            return
        mine = recorded_args(self) or {}
        for key, value in derived.items():
            if mine.get(key) is not None and plain_arg(mine[key]) != plain_arg(value):
                raise ValueError(f"this {type(self).__name__} was built for other data: its {key}={short_arg(mine[key])} "
                                 f"but the data give {key}={short_arg(value)}; use the data it was built from, or build "
                                 f"a new model with {type(self).__name__}.from_data(data, ...)")

    # ------------------------------------------------------------------ training-loop hook
    def validation_report(self, val: Any, batch_size: int = 4096) -> ValidationReport | None:
        """Extra metrics and tables for each validation of the training loop (none by default).

        Called by the loop on rank 0 after each validation with the whole validation split (a
        Tensor or a dict of Tensors, on the training device), in eval mode, without gradients
        (and with the EMA weights when ``ema_decay`` is set).

        Returns
        -------
        ValidationReport or None
            Its ``metrics`` are logged beside the objective's (``metrics.csv``, split
            ``"val"``), its ``tables`` appended to ``eval/<name>.csv``. None: nothing to add.
        """
        return None

    # ------------------------------------------------------------------ helpers
    def check_batch_shape(self, x: Any, name: str = "x") -> None:
        """Check only that ``x`` is a tensor of shape (batch, *data_shape): the part of
        :meth:`validate_data` cheap enough for every forward pass (no pass over the values).

        Raises
        ------
        TypeError
            If ``x`` is not a tensor.
        ValueError
            If its shape is not (batch, *data_shape).
        """
        shape = tuple(self.data_shape)
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (batch, {', '.join(map(str, shape))}), got {type(x).__name__}")
        if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)} but this model expects (batch, {', '.join(map(str, shape))}) (data_shape={shape})")

    def validate_data(self, x: Any, name: str = "x") -> Tensor:
        """Check that ``x`` is a finite float tensor of shape (batch, *data_shape).

        Raises
        ------
        TypeError
            If ``x`` is not a floating-point tensor.
        ValueError
            If its trailing shape is not ``data_shape``, it is empty, or holds NaN/inf.
        """
        self.check_batch_shape(x, name)
        if not torch.is_floating_point(x):
            raise TypeError(f"{name} must be a floating-point tensor (float32/float64/bfloat16), got dtype {x.dtype}; convert with x.float()")
        if x.shape[0] == 0:
            raise ValueError(f"{name} is empty (batch size 0); pass at least one example")
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"{name} contains {bad} NaN/inf value(s); clean or impute the data first")
        return x
