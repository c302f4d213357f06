r"""Local optimisation of the variational posterior, one set of parameters per datapoint.

For each example :math:`x_i` this finds :math:`q^*(z \mid x_i)` in a chosen family by
maximising its own ELBO with the model (decoder and prior) frozen. It is the ingredient of
the inference-gap decomposition of Cremer, Li & Duvenaud (2018):
:math:`\mathcal L[q^*]` is the best the family can do for that decoder, so
:math:`\log p(x) - \mathcal L[q^*]` is the approximation gap and
:math:`\mathcal L[q^*] - \mathcal L[q]` the amortization gap.

Vectorized: every example of a batch gets its own copy of the family's parameters and its
own context vector (stacked with :func:`torch.func.stack_module_state`), the per-example
ELBOs are evaluated with :func:`torch.func.vmap`, and one optimiser step updates the whole
batch. Each example's gradient touches only its own parameters; the batch shares only the
stopping rule (below), so the batch size changes the speed and when a batch stops, not
the objective.

Initialisation: ``"amortized"`` starts each copy from the trained posterior network and
the context from the encoder's features for that example (so the first iterate is the
amortized :math:`q`); ``"scratch"`` starts from the family module as given and a zero
context. At every convergence check each example's current parameters are scored with
``check_k`` fresh samples and kept if they beat its best so far (the starting point's
``eval_k``-sample score included), so with ``"amortized"`` the result does not end below
where it started, up to estimation noise.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from ..distributions import ConditionalDistribution, DrawWithLogProb
from ..models.base import LatentVariableModel
from ..nn.modes import eval_mode
from .._checks import check_float, check_int
from .budget import Progress, Work, check_force, check_progress, memory_limit, pair_bytes, progress_reporter, too_large
from ._common import resolve_device as _resolve_device

__all__ = ["LocalOptResult", "optimize_local_posterior"]


@dataclass(eq=False)
class LocalOptResult:
    """Per-example ELBOs of the locally optimised posteriors.

    Attributes
    ----------
    elbo : Tensor of shape (n,), float64
        :math:`\\mathcal L[q^*]` of every example, estimated with ``eval_k`` samples.
    initial_elbo : Tensor of shape (n,), float64
        The ELBO of the starting posterior, same estimator.
    steps : Tensor of shape (n,), int64
        Optimiser steps taken for each example's batch.
    converged : Tensor of shape (n,), bool
        Whether the batch stopped by the convergence rule (not by ``max_steps``).
    family : str
        Class name of the optimised family.
    """

    elbo: Tensor
    initial_elbo: Tensor
    steps: Tensor
    converged: Tensor
    family: str

    @property
    def mean(self) -> float:
        """Mean of :attr:`elbo`."""
        return float(self.elbo.mean())

    @property
    def stderr(self) -> float:
        """Standard error of :attr:`mean` (NaN for one example)."""
        n = self.elbo.numel()
        return float(self.elbo.std() / math.sqrt(n)) if n > 1 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"family": self.family, "n": int(self.elbo.numel()), "elbo": self.mean, "elbo_stderr": self.stderr,
                "initial_elbo": float(self.initial_elbo.mean()), "mean_steps": float(self.steps.float().mean()),
                "converged_fraction": float(self.converged.float().mean())}


def optimize_local_posterior(model: LatentVariableModel, x: Tensor, *, family: ConditionalDistribution | None = None,
                             init: Literal["amortized", "scratch"] = "amortized", k: int = 10, lr: float = 1e-3,
                             max_steps: int = 10000, check_every: int = 100, patience: int = 10, tol: float = 1e-3,
                             eval_k: int = 1000, check_k: int = 100, batch_size: int | None = None,
                             device: str | torch.device | None = None, progress: Progress = False,
                             force: bool = False) -> LocalOptResult:
    r"""Optimise a posterior per datapoint (vectorized over the batch) and return its ELBO.

    Parameters
    ----------
    model : LatentVariableModel
        A model whose posterior is one family of one context, declared by
        :meth:`~vaekit.models.LatentVariableModel.amortized` (e.g. :class:`~vaekit.models.VAE`);
        its parameters are frozen during the call (their ``requires_grad`` is restored).
    x : Tensor of shape (n, *data_shape)
    family : ConditionalDistribution, optional
        The family to optimise in (e.g. ``DiagonalGaussian(C, d)`` for :math:`q^*_{FFG}`, an
        auxiliary flow for :math:`q^*_{AF}`). Default: the model's own posterior family.
        Its ``latent_features`` must match the model's latent size.
    init : {"amortized", "scratch"}
        ``"amortized"``: copies of the model's trained posterior, context = encoder
        features of each example (``family`` must then be None or have the same
        parameter shapes as the model's posterior). ``"scratch"``: copies of ``family``
        as given, context = zeros.
    k : int
        Samples per example for the stochastic ELBO gradient.
    lr : float
        Adam learning rate.
    max_steps : int
        Hard cap on optimiser steps per batch.
    check_every, patience : int
        Every ``check_every`` steps each example's current parameters are scored with
        ``check_k`` samples and kept if better than its best so far; the batch stops after
        ``patience`` checks in a row in which the batch mean of the current scores did not
        beat its best by more than ``tol`` nats.
    tol : float
        Improvement (nats, >= 0) that resets the patience counter.
    eval_k : int
        Samples for the final ELBO estimates (and the initial ones).
    check_k : int
        Samples for the scores at the checks.
    batch_size : int, optional
        Examples optimised together (default: all, at most 1000, fewer when a batch would
        not fit in half of the device's memory; a ``batch_size`` given that would not fit
        is refused, see :mod:`vaekit.inference.budget`).
    device : str or torch.device, optional
        Defaults to the model's device.
    progress : bool or callable
        True: a progress bar with the time left, over the (sample, example) pairs (plain
        lines when stderr is not a terminal; a batch that converges early jumps ahead). A
        callable is called as ``progress(done, total)``.
    force : bool
        Run even when the at most ``len(x) * (max_steps * k + (max_steps // check_every) *
        check_k + 2 * eval_k)`` pairs exceed :data:`~vaekit.inference.budget.WORK_BUDGET`
        (1e10).

    Returns
    -------
    LocalOptResult

    Raises
    ------
    TypeError, ValueError
        For arguments out of range (naming them), a family or model that does not fit,
        data the model rejects, or a batch that cannot fit in memory; all before any work.
    vaekit.inference.budget.WorkBudgetError
        (a ValueError) When the work exceeds the budget and ``force`` is False.

    Examples
    --------
    >>> import torch
    >>> from vaekit.models import mlp_vae
    >>> model = mlp_vae([20], 3, hidden=[16])
    >>> x = torch.bernoulli(torch.full((4, 20), 0.3))
    >>> res = optimize_local_posterior(model, x, k=4, max_steps=50, check_every=10, eval_k=50)
    >>> res.elbo.shape, res.elbo.dtype
    (torch.Size([4]), torch.float64)
    """
    for name, value in (("k", k), ("max_steps", max_steps), ("check_every", check_every), ("patience", patience),
                        ("eval_k", eval_k), ("check_k", check_k)):
        check_int(name, value)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    if init not in ("amortized", "scratch"):
        raise ValueError(f"init must be 'amortized' or 'scratch', got {init!r}")
    check_float("lr", lr, 0, low_open=True)
    check_float("tol", tol, 0)
    progress, force = check_progress(progress), check_force(force)
    x = model.validate_data(x)
    dev = _resolve_device(model, x, device)
    with torch.no_grad(), eval_mode(model):
        own = model.amortized(x[:1].to(dev))[1]  # the declared protocol: a TypeError naming the model if it has none
    family = own if family is None else family
    if not isinstance(family, ConditionalDistribution):
        raise TypeError(f"family must be a vaekit ConditionalDistribution, got {type(family).__name__}")
    if family.latent_features != own.latent_features:
        raise ValueError(f"family has latent_features={family.latent_features} but the model's latent has "
                         f"{own.latent_features}")
    if init == "amortized":
        shapes = {n: p.shape for n, p in family.state_dict().items()}
        if family is not own and (type(family) is not type(own) or shapes != {n: p.shape for n, p in own.state_dict().items()}):
            raise ValueError("init='amortized' copies the model's trained posterior, so family must be None or the same "
                             f"family with the same shapes (got {type(family).__name__} vs {type(own).__name__}); use "
                             "init='scratch' to optimise another family")
    n = int(x.shape[0])
    work = local_opt_work(n, k, max_steps, check_every, check_k, eval_k)
    work.check(force)
    bs = _batch_size(model, family, n, k, batch_size, dev)
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in frozen:
            p.requires_grad_(False)
        with eval_mode(model), progress_reporter(progress, work.pairs,
                                                 f"local optimisation ({type(family).__name__}) on {n} examples") as bar:
            parts = [_optimize_batch(model, x[i:i + bs].to(dev), own if init == "amortized" else family,
                                     init, k, lr, max_steps, check_every, patience, tol, eval_k, check_k, bar)
                     for i in range(0, n, bs)]
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
    cat = [torch.cat([p[j] for p in parts]) for j in range(4)]
    return LocalOptResult(*cat, family=type(family).__name__)


def local_opt_work(n: int, k: int, max_steps: int, check_every: int, check_k: int, eval_k: int) -> Work:
    """The most (sample, example) pairs local optimisation of ``n`` examples evaluates, as a :class:`Work`."""
    per_example = max_steps * k + (max_steps // check_every) * check_k + 2 * eval_k
    return Work("optimize_local_posterior", "{n} x ({max_steps} x {k} + {max_steps} // {check_every} x {check_k} + "
                "2 x {eval_k})", {"n": n, "max_steps": max_steps, "k": k, "check_every": check_every,
                                  "check_k": check_k, "eval_k": eval_k}, n * per_example, {"n": "len(x)"},
                lower=("n", "max_steps", "k", "check_k", "eval_k"))


def _batch_size(model: LatentVariableModel, family: ConditionalDistribution, n: int, k: int, batch_size: int | None,
                device: torch.device) -> int:
    """Examples per batch: ``batch_size`` (default up to 1000) such that a batch fits in memory.

    A batch holds ``k`` samples of every example with their gradients (at most 256 per
    example when scoring), and per example five copies of the family's parameters (value,
    gradient, two Adam moments, best).
    """
    per_example = 5 * sum(p.numel() * p.element_size() for p in family.parameters())
    per_pair = pair_bytes(model, tuple(model.data_shape))
    limit = memory_limit(device)
    if k * per_pair + per_example > limit:
        raise too_large({"k": k}, max(1, (limit - per_example) // per_pair), "(sample, example) pairs", device,
                        optional=False)
    fits = max(1, limit // (max(k, 256) * per_pair + per_example))
    wanted = min(n, 1000 if batch_size is None else batch_size)
    if wanted > fits:
        if batch_size is not None:
            raise too_large({"batch_size": batch_size, "k": k}, fits, "examples", device)
        wanted = fits
    return wanted


def _optimize_batch(model: LatentVariableModel, x: Tensor, family: ConditionalDistribution, init: str,
                    k: int, lr: float, max_steps: int, check_every: int, patience: int, tol: float,
                    eval_k: int, check_k: int, bar: Any) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    n = x.shape[0]
    planned = n * (max_steps * k + (max_steps // check_every) * check_k + 2 * eval_k)
    done = 0

    def report(pairs: int) -> None:
        nonlocal done
        done += pairs
        bar.update(pairs)

    name = model.latent_names[0]
    template = DrawWithLogProb(copy.deepcopy(family).to(x.device))  # one call draws and scores: vmap covers it all
    params, buffers = stack_module_state([template] * n)  # stacking copies the tensors
    # Every example's linear weights are held transposed, (n, in, out), and handed to the layers as (out, in)
    # views: the backward pass of a vmapped linear layer computes the per-example weight gradient in that layout,
    # so it is written once instead of being copied transposed into (n, out, in) for every layer and step (on the
    # Cremer AF posterior, whose per-example weights dominate a step, that copy was a third of the step). Adam is
    # elementwise, so the layout changes no update.
    flipped = _linear_weights(template) & params.keys()
    params = {key: (v.detach().mT if key in flipped else v.detach()).clone(memory_format=torch.contiguous_format)
              .requires_grad_(True) for key, v in params.items()}
    with torch.no_grad():
        ctx0 = model.amortized(x)[0] if init == "amortized" else torch.zeros(n, _context_width(family), device=x.device)
    context = ctx0.detach().clone().requires_grad_(True)
    skeleton = copy.deepcopy(template).to("meta")

    def elbo_one(p: dict[str, Tensor], b: dict[str, Tensor], h: Tensor, xi: Tensor, samples: int) -> Tensor:
        p = {key: v.mT if key in flipped else v for key, v in p.items()}  # (in, out) storage -> (out, in) weight
        z, log_q = functional_call(skeleton, (p, b), (h[None], samples))
        return (model.log_joint(xi[None], {name: z}) - log_q).mean()

    batched = vmap(elbo_one, in_dims=(0, 0, 0, 0, None), randomness="different")

    def estimate(p: dict[str, Tensor], h: Tensor, samples: int = eval_k) -> Tensor:
        with torch.no_grad():
            chunks, left = [], samples
            while left > 0:  # bounded memory: at most k_chunk samples per example at once
                m = min(left, 256)
                chunks.append(batched(p, buffers, h, x, m).double() * m)
                left -= m
            report(n * samples)
            return torch.stack(chunks).sum(0) / samples

    initial = estimate(params, context)
    best = {key: v.detach().clone() for key, v in params.items()}
    best_ctx = context.detach().clone()
    # the starting point is a candidate: an example keeps its start unless a checked iterate beats it, so a run
    # that diverges (too large a learning rate) ends where it started instead of at the diverged parameters
    best_val = initial.clone()
    opt = _adam([*params.values(), context], lr, x.device)
    stale, step, converged, best_mean = 0, 0, False, -math.inf
    while step < max_steps:
        elbo = batched(params, buffers, context, x, k)
        opt.zero_grad(set_to_none=True)
        (-elbo.sum()).backward()
        opt.step()
        step += 1
        report(n * k)
        if step % check_every == 0:
            score = estimate(params, context, check_k)  # the parameters that would be kept, scored afresh
            better = score > best_val
            best_val = torch.where(better, score, best_val)
            with torch.no_grad():
                for key, v in params.items():
                    best[key][better] = v.detach()[better]
                best_ctx[better] = context.detach()[better]
            mean = float(score.mean())  # the current iterate, not the running best (a max of noisy scores creeps up)
            if mean > best_mean + tol:
                best_mean, stale = mean, 0
            else:
                stale += 1
                if stale >= patience:
                    converged = True
                    break
    report(planned - done - n * eval_k)  # the steps and checks a converged batch skips
    final = estimate(best, best_ctx)
    steps = torch.full((n,), step, dtype=torch.int64)
    return final.cpu(), initial.cpu(), steps, torch.full((n,), converged)


def _adam(params: list[Tensor], lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has it for ``device`` (CPU since torch 2.4), else the default.

    The fused kernel updates every tensor in one pass without temporaries (the loop over tensors allocates two per
    tensor and step); it agrees with the loop to rounding.
    """
    if device.type in ("cpu", "cuda"):
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except RuntimeError:  # torch < 2.4: no fused Adam on the CPU
            pass
    return torch.optim.Adam(params, lr=lr)


def _linear_weights(module: nn.Module) -> set[str]:
    """Names of the weights of the :class:`torch.nn.Linear` layers in ``module`` (as ``named_parameters`` gives them)."""
    return {f"{name}.weight" if name else "weight" for name, sub in module.named_modules() if isinstance(sub, nn.Linear)}


def _context_width(family: ConditionalDistribution) -> int:
    """Width of the context a family expects (``context_features``)."""
    width = family.context_features
    if not isinstance(width, int) or width < 1:
        raise TypeError(f"{type(family).__name__} has no integer context_features; local optimisation needs one")
    return width
