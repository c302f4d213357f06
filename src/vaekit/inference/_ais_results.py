"""Result containers of the AIS and BDMC estimators (:mod:`vaekit.inference.ais`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from .._numeric import logmeanexp
from ._common import finite_or_none

__all__ = ["AISResult", "BDMCResult"]


@dataclass(eq=False)
class AISResult:
    """Per-example AIS estimates of ``log p(x)``, per-chain log-weights and diagnostics.

    Parameters
    ----------
    log_weights : Tensor of shape (n, n_chains), float64
        Per-chain estimates. Forward: ``log w``, with ``E[w] = p(x)`` (so ``E[log w] <=
        log p(x)``). Reverse: ``log u``, with ``E[1/u] = 1/p(x)`` (so ``E[log u] >=
        log p(x)``).
    direction : {"forward", "reverse"}
    acceptance : Tensor of shape (n,), float64
        Fraction of accepted HMC proposals, over all chains and transitions (NaN with a
        single annealing step, which has no transition).
    step_size : Tensor of shape (n,), float64
        Leapfrog step size of each example at the end.
    settings : dict
        Every sampler setting, including the batch size and device used.
    seconds : float
        Wall time.
    grad_evals : int
        Gradient evaluations of ``log p(x, z)``, counted per chain.
    trace : dict of str to Tensor of shape (n_steps - 1,), optional
        ``"acceptance"`` and ``"step_size"`` of every transition, averaged over examples.

    Attributes
    ----------
    per_example : Tensor of shape (n,), float64
        Forward: ``logmeanexp`` of the chains' ``log w`` (a stochastic lower bound).
        Reverse: ``-logmeanexp(-log u)`` (a stochastic upper bound).
    log_weight_var : Tensor of shape (n,), float64
        Variance of ``log_weights`` over the chains (``ddof=1``; NaN for one chain).
    ess : Tensor of shape (n,), float64
        Effective sample size ``(sum w)^2 / sum w^2`` of the normalised weights (``w``
        forward, ``1/u`` reverse), between 1 and ``n_chains``.
    mean, stderr : float
        Mean of ``per_example`` and its standard error over examples (NaN for one).

    Examples
    --------
    >>> lw = torch.log(torch.tensor([[1.0, 3.0], [2.0, 2.0]], dtype=torch.float64))
    >>> r = AISResult(lw, "forward", torch.ones(2), torch.ones(2), settings={})
    >>> r.per_example.exp()
    tensor([2., 2.], dtype=torch.float64)
    >>> r.ess
    tensor([1.6000, 2.0000], dtype=torch.float64)
    >>> AISResult(lw, "reverse", torch.ones(2), torch.ones(2), settings={}).per_example.exp()
    tensor([1.5000, 2.0000], dtype=torch.float64)
    """

    log_weights: Tensor = field(repr=False)
    direction: Literal["forward", "reverse"]
    acceptance: Tensor = field(repr=False)
    step_size: Tensor = field(repr=False)
    settings: dict[str, Any] = field(repr=False)
    seconds: float = math.nan
    grad_evals: int = 0
    trace: dict[str, Tensor] | None = field(default=None, repr=False)
    per_example: Tensor = field(init=False, repr=False)
    log_weight_var: Tensor = field(init=False, repr=False)
    ess: Tensor = field(init=False, repr=False)
    mean: float = field(init=False)
    stderr: float = field(init=False)

    def __post_init__(self) -> None:
        if self.direction not in ("forward", "reverse"):
            raise ValueError(f"direction must be 'forward' or 'reverse', got {self.direction!r}")
        lw = self.log_weights = self.log_weights.detach().to("cpu", torch.float64)
        self.acceptance = self.acceptance.detach().to("cpu", torch.float64)
        self.step_size = self.step_size.detach().to("cpu", torch.float64)
        chains = lw.shape[1]
        sign = 1.0 if self.direction == "forward" else -1.0
        signed = sign * lw  # log of the importance weights whose mean is unbiased
        self.per_example = sign * logmeanexp(signed, 1)
        self.log_weight_var = lw.var(1) if chains > 1 else torch.full((lw.shape[0],), math.nan, dtype=torch.float64)
        self.ess = torch.exp(2 * torch.logsumexp(signed, 1) - torch.logsumexp(2 * signed, 1))
        n = lw.shape[0]
        self.mean = float(self.per_example.mean())
        self.stderr = float(self.per_example.std() / math.sqrt(n)) if n > 1 else math.nan

    @property
    def n(self) -> int:
        """Number of examples."""
        return self.per_example.numel()

    @property
    def n_chains(self) -> int:
        """Chains per example."""
        return self.log_weights.shape[1]

    def to_dict(self, per_example: bool = False) -> dict[str, Any]:
        """A JSON-serialisable summary (NaN becomes ``None``).

        Parameters
        ----------
        per_example : bool
            Also include per-example estimates and diagnostics as lists of floats.

        Returns
        -------
        dict
            Keys ``estimator, direction, n, n_chains, mean, stderr, acceptance,
            step_size, log_weight_var, ess`` (means over examples), ``seconds,
            grad_evals, settings``; with ``per_example`` also ``per_example,
            acceptance_per_example, step_size_per_example, log_weight_var_per_example,
            ess_per_example``.
        """
        def avg(t: Tensor) -> float | None:
            return finite_or_none(float(t.mean())) if t.numel() else None

        out: dict[str, Any] = {
            "estimator": "ais", "direction": self.direction, "n": self.n, "n_chains": self.n_chains,
            "mean": finite_or_none(self.mean), "stderr": finite_or_none(self.stderr),
            "acceptance": avg(self.acceptance), "step_size": avg(self.step_size),
            "log_weight_var": avg(self.log_weight_var), "ess": avg(self.ess),
            "seconds": finite_or_none(self.seconds), "grad_evals": self.grad_evals,
            "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in self.settings.items()},
        }
        if per_example:
            for key, t in (("per_example", self.per_example), ("acceptance_per_example", self.acceptance),
                           ("step_size_per_example", self.step_size),
                           ("log_weight_var_per_example", self.log_weight_var), ("ess_per_example", self.ess)):
                out[key] = [finite_or_none(v) for v in t.tolist()]
        return out


@dataclass(eq=False)
class BDMCResult:
    """Forward and reverse AIS on simulated data: a bracket around ``log p(x)``.

    Parameters
    ----------
    x : Tensor of shape (n, *data_shape)
        Data simulated from the model (CPU).
    z : dict of str to Tensor of shape (n, *event)
        The latents that generated ``x``: exact posterior samples (CPU).
    forward : AISResult
        Stochastic lower bounds.
    reverse : AISResult
        Stochastic upper bounds.

    Attributes
    ----------
    gap : Tensor of shape (n,), float64
        ``reverse.per_example - forward.per_example``; its mean bounds the bias of forward
        AIS with these settings (in expectation).
    mean_gap : float

    Examples
    --------
    >>> def res(v, d):
    ...     return AISResult(torch.tensor(v, dtype=torch.float64)[:, None], d, torch.ones(2), torch.ones(2), {})
    >>> b = BDMCResult(torch.zeros(2, 1), {}, res([-3.0, -2.0], "forward"), res([-2.5, -1.0], "reverse"))
    >>> b.gap, b.mean_gap
    (tensor([0.5000, 1.0000], dtype=torch.float64), 0.75)
    """

    x: Tensor = field(repr=False)
    z: dict[str, Tensor] = field(repr=False)
    forward: AISResult
    reverse: AISResult
    gap: Tensor = field(init=False, repr=False)
    mean_gap: float = field(init=False)

    def __post_init__(self) -> None:
        self.gap = self.reverse.per_example - self.forward.per_example
        self.mean_gap = float(self.gap.mean())

    def to_dict(self, per_example: bool = False) -> dict[str, Any]:
        """``{"estimator": "bdmc", "n", "mean_gap", "forward": {...}, "reverse": {...}}``
        (and ``gap`` per example when asked); the two sides are :meth:`AISResult.to_dict`."""
        out: dict[str, Any] = {"estimator": "bdmc", "n": self.forward.n, "mean_gap": finite_or_none(self.mean_gap),
                               "forward": self.forward.to_dict(per_example),
                               "reverse": self.reverse.to_dict(per_example)}
        if per_example:
            out["gap"] = [finite_or_none(v) for v in self.gap.tolist()]
        return out
