"""Diagnostics of relaxed discrete latents (Potapczynski et al. 2020): how close samples come to
one-hot vectors per temperature, how noisy the encoder's gradient estimator is, and how many
categories the stick-breaking IGR uses.

:func:`discrete_diagnostics` runs them all on a trained model and writes
``discrete.json`` (and ``discrete_proximity.png``) to the analysis folder; it returns None for
models without a relaxed categorical latent, so ``vaekit analyze`` can call it on any model.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .._checks import InvalidArgumentError, check_float, check_int
from ..distributions.relaxed import RelaxedCategorical
from ..models.base import LatentVariableModel
from ..models.discrete import RelaxedLatentModel
from ..nn.modes import eval_mode

__all__ = ["simplex_proximity", "gradient_variance", "categories_used", "discrete_diagnostics", "relaxed_family",
           "DEFAULT_TEMPERATURES"]

#: The paper's temperature grid.
DEFAULT_TEMPERATURES = (0.03, 0.07, 0.1, 0.15, 0.25, 0.5, 0.67)


def _vertex_fraction(z: Tensor, d: float) -> float:
    vertex = torch.nn.functional.one_hot(z.argmax(-1), z.shape[-1]).to(z.dtype)
    return float(((z - vertex).norm(dim=-1) <= d).to(torch.float64).mean())


def _check_temperatures(temperatures: Sequence[float]) -> list[float]:
    if isinstance(temperatures, (str, bytes)) or not isinstance(temperatures, Sequence) or len(temperatures) == 0:
        raise InvalidArgumentError(f"temperatures must be a non-empty sequence of positive floats, got {temperatures!r}")
    return [check_float(f"temperatures[{i}]", t, 0, low_open=True) for i, t in enumerate(temperatures)]


def _at_temperature(source: Any, tau: float, context: Tensor | None) -> Distribution:
    if isinstance(source, RelaxedCategorical):
        old = source.temperature
        source.set_temperature(tau)
        try:
            return source(context) if context is not None else source.prior_distribution()
        finally:
            source.set_temperature(old)
    if isinstance(source, Distribution):
        if not hasattr(source, "temperature"):
            raise TypeError(f"family_or_dist is a {type(source).__name__} without a temperature; pass a relaxed "
                            f"distribution, a RelaxedCategorical or a callable temperature -> distribution")
        dist = copy.copy(source)
        inner = getattr(dist, "exp_concrete", None)
        if inner is not None:  # GumbelSoftmax keeps its temperature in the log-space distribution
            dist.exp_concrete = copy.copy(inner)
            dist.exp_concrete.temperature = tau
        else:
            dist.temperature = tau
        return dist
    if callable(source):
        return source(tau)
    raise TypeError(f"family_or_dist must be a RelaxedCategorical, a relaxed distribution or a callable "
                    f"temperature -> distribution, got {type(source).__name__}")


@torch.no_grad()
def simplex_proximity(family_or_dist: RelaxedCategorical | Distribution | Callable[[float], Distribution],
                      temperatures: Sequence[float] = DEFAULT_TEMPERATURES, d: float = 0.1, n: int = 1000,
                      context: Tensor | None = None) -> dict[str, Any]:
    """Fraction of relaxed samples within Euclidean distance ``d`` of a simplex vertex, per temperature.

    Parameters
    ----------
    family_or_dist : RelaxedCategorical, Distribution or callable
        A conditional family (its prior, or its posterior at ``context``), a relaxed
        distribution with a ``temperature`` (copied, not changed), or a function
        ``temperature -> distribution``.
    temperatures : sequence of float
        Temperatures to try (> 0).
    d : float
        Radius around the vertices (> 0; the paper uses 0.1 and 0.2).
    n : int
        Samples per temperature (each sample covers every batch entry and variable).
    context : Tensor of shape (batch, in_features), optional
        Encoder features for a conditional family.

    Returns
    -------
    dict
        ``{"temperatures": [...], "fraction": [...], "d": d, "n": n}``, ``fraction[i]`` in [0, 1].

    Examples
    --------
    >>> from vaekit.distributions.relaxed import GumbelSoftmax
    >>> out = simplex_proximity(GumbelSoftmax(torch.zeros(5), 1.0), [0.05, 1.0], n=500)
    >>> out["fraction"][0] > out["fraction"][1]
    True
    """
    temps = _check_temperatures(temperatures)
    d = check_float("d", d, 0, low_open=True)
    n = check_int("n", n)
    fractions = [_vertex_fraction(_at_temperature(family_or_dist, t, context).rsample((n,)), d) for t in temps]
    return {"temperatures": temps, "fraction": fractions, "d": d, "n": n}


def relaxed_family(model: nn.Module) -> RelaxedCategorical | None:
    """The relaxed categorical family of a model (``model.relaxed_family`` or the first such submodule)."""
    if isinstance(model, RelaxedLatentModel):
        return model.relaxed_family
    return next((m for m in model.modules() if isinstance(m, RelaxedCategorical)), None)


def _encoder_parameters(model: nn.Module) -> list[nn.Parameter]:
    params = model.inference_parameters() if isinstance(model, RelaxedLatentModel) else []
    if not params:
        raise ValueError(f"{type(model).__name__} has no encoder/posterior parameters to measure gradients of "
                         "(gradient_variance measures models with a relaxed latent, vaekit.models.RelaxedLatentModel)")
    return params


def gradient_variance(model: nn.Module, x: Tensor, n_samples: int = 20) -> dict[str, float]:
    """Variance of the reparameterization gradient of the negative relaxed ELBO w.r.t. the encoder.

    The loss ``-mean(elbo_terms(x).elbo)`` is differentiated ``n_samples`` times with fresh
    noise and the same ``x``; the variance is taken over repetitions per parameter entry.

    Parameters
    ----------
    model : LatentVariableModel
        A model with ``encoder`` (and posterior) submodules.
    x : Tensor of shape (batch, *data_shape)
    n_samples : int
        Repetitions (>= 2).

    Returns
    -------
    dict
        ``mean_variance`` (mean over parameter entries), ``total_variance`` (their sum, the
        trace of the covariance), ``mean_squared_norm`` of the mean gradient, the
        ``snr`` = ``mean_squared_norm / total_variance``, ``n_samples``, ``n_parameters``.
    """
    n_samples = check_int("n_samples", n_samples, 2)
    params = _encoder_parameters(model)
    grads = []
    was_training = model.training
    model.eval()  # dropout off; the latent noise is what we measure
    step = model.train_step if isinstance(model, RelaxedLatentModel) else None  # elbo_terms counts steps
    saved = step.clone() if step is not None else None
    try:
        for _ in range(n_samples):
            loss = -model.elbo_terms(x).elbo.mean()
            g = torch.autograd.grad(loss, params, allow_unused=True)
            grads.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                                    for gi, p in zip(g, params)]).to(torch.float64))
    finally:
        model.train(was_training)
        if saved is not None:
            step.copy_(saved)
    g = torch.stack(grads)
    var = g.var(0, unbiased=True)
    total = float(var.sum())
    sq = float(g.mean(0).pow(2).sum())
    return {"mean_variance": float(var.mean()), "total_variance": total, "mean_squared_norm": sq,
            "snr": sq / total if total > 0 else math.inf, "n_samples": n_samples, "n_parameters": int(g.shape[1])}


@torch.no_grad()
def categories_used(model: nn.Module, x: Tensor, n: int = 10) -> dict[str, Any] | None:
    """How many categories the IGR-SB posterior uses on ``x`` (None for other relaxations).

    Returns
    -------
    dict or None
        ``mean``, ``min`` and ``max`` of the per-sample category counts over ``n`` draws,
        ``max_categories`` and ``truncated_fraction`` (share of draws that reached the
        maximum before the threshold: raise ``n_categories`` when it is large).
    """
    family = relaxed_family(model)
    if family is None or family.relaxation != "igr_sb":
        return None
    n = check_int("n", n)
    with eval_mode(model):
        q = model.encode(x)[model.relaxed_latent] if isinstance(model, RelaxedLatentModel) else family.prior_distribution()
        counts, truncated = [], []
        for _ in range(n):
            q.rsample()
            used = q.last_n_used
            counts.append(used.reshape(-1).to(torch.float64))
            truncated.append((used >= family.n_categories).reshape(-1).to(torch.float64))
    c, t = torch.cat(counts), torch.cat(truncated)
    return {"mean": float(c.mean()), "min": int(c.min()), "max": int(c.max()), "max_categories": int(family.n_categories),
            "truncated_fraction": float(t.mean())}


def discrete_diagnostics(model: nn.Module, x: Tensor, out_dir: str | Path, *,
                         temperatures: Sequence[float] = DEFAULT_TEMPERATURES, d: float = 0.1, n: int = 200,
                         grad_samples: int = 10, max_examples: int = 256) -> dict[str, Any] | None:
    """Run every discrete diagnostic and write ``out_dir/discrete.json`` and ``out_dir/discrete_proximity.png``.

    Parameters
    ----------
    model : LatentVariableModel
        Any model; returns None (writing nothing) when it has no relaxed categorical latent.
    x : Tensor of shape (batch, *data_shape)
        Data (the first ``max_examples`` are used).
    out_dir : path
        Analysis folder, e.g. ``RUN_DIR/eval/analysis`` (created if missing).
    temperatures, d, n
        Grid, radius and samples of :func:`simplex_proximity` (posterior at the data).
    grad_samples : int
        Repetitions of :func:`gradient_variance`.

    Returns
    -------
    dict or None
        ``relaxation``, ``temperature``, ``proximity`` (posterior at x per temperature, or
        the prior for models without ``relaxed_context``),
        ``gradient_variance``, ``categories_used`` (IGR-SB), and for models with
        ``discrete_kl`` the mean exact ``discrete_kl``.
    """
    family = relaxed_family(model)
    if family is None:
        return None
    temps = _check_temperatures(temperatures)
    check_float("d", d, 0, low_open=True)
    check_int("n", n)
    check_int("grad_samples", grad_samples, 2)
    if isinstance(model, LatentVariableModel):
        model.validate_data(x)
    x = x[: check_int("max_examples", max_examples)]
    out_dir = Path(out_dir)
    feats = None
    if isinstance(model, RelaxedLatentModel):
        with eval_mode(model), torch.no_grad():
            feats = model.relaxed_context(x)
    result: dict[str, Any] = {"relaxation": family.relaxation, "temperature": float(family.temperature),
                              "n_variables": int(family.n_variables), "n_categories": int(family.n_categories)}
    result["proximity"] = simplex_proximity(family, temps, d=d, n=n, context=feats)
    result["gradient_variance"] = gradient_variance(model, x, grad_samples)
    result["categories_used"] = categories_used(model, x)
    if isinstance(model, RelaxedLatentModel):
        with eval_mode(model), torch.no_grad():
            kl = model.discrete_kl(x)
        if kl is not None:
            result["discrete_kl"] = float(kl.mean())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "discrete.json").write_text(json.dumps(result, indent=2))
    _plot_proximity(result["proximity"], out_dir / "discrete_proximity.png", family.relaxation)
    return result


def _plot_proximity(prox: dict[str, Any], path: Path, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(prox["temperatures"], prox["fraction"], "o-", label=label)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("temperature")
    ax.set_ylabel(f"fraction within {prox['d']:g} of a vertex")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
