r"""Annealed importance sampling (AIS) of ``log p(x)`` with HMC transitions, and BDMC.

Forward AIS (Neal 2001) anneals from the prior :math:`\pi_0 = p(z)` to the posterior
:math:`\pi_T \propto p(x, z)` through :math:`\pi_t(z) \propto p(z)\,p(x \mid z)^{\beta_t}`,
:math:`0 = \beta_0 < \dots < \beta_T = 1`. Each chain starts at :math:`z_0 \sim p(z)`,
moves by an HMC transition that leaves :math:`\pi_t` invariant (:mod:`._hmc`), and
accumulates, in float64,

.. math::

    \log w = \sum_{t=1}^{T} (\beta_t - \beta_{t-1}) \log p(x \mid z_{t-1}),

an unbiased estimate of :math:`p(x)` in :math:`w`; the per-example estimate
:math:`\log \frac1C \sum_c w_c` over ``C`` chains is a stochastic lower bound on
:math:`\log p(x)`. Reverse AIS starts at an exact posterior sample and anneals from
:math:`\beta = 1` to 0; it gives a stochastic *upper* bound. On data simulated from the
model, where exact posterior samples are the latents that generated the data, the pair
brackets the true value: bidirectional Monte Carlo (BDMC, Grosse et al. 2015).

Estimators see a model only through ``log_joint(x, z)``, ``log_prior(z)`` and
``sample_prior(n)`` (BDMC also ``decode(z)``); named latents are flattened into one vector
per chain, so hierarchical models work unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import time
from numbers import Real
from typing import Any, Literal

import torch
from torch import Tensor

from ..models.base import LatentVariableModel
from ..nn.modes import eval_mode
from .._checks import InvalidArgumentError, check_int
from ._ais_results import AISResult, BDMCResult
from ._common import DEFAULT_BUDGET, resolve_device
from ._hmc import HMCSettings, LatentPacker, anneal
from .budget import Progress, Work, check_force, check_progress, max_pairs, progress_reporter, too_large

__all__ = ["AISResult", "BDMCResult", "HMCSettings", "ais_log_likelihood", "ais_schedule", "bdmc", "check_annealable",
           "combine_max", "reverse_ais"]

Schedule = Literal["linear", "sigmoidal"]


def ais_schedule(n_steps: int, kind: Schedule = "sigmoidal", radius: float = 4.0) -> Tensor:
    r"""The inverse temperatures :math:`\beta_0 = 0 < \dots < \beta_T = 1`, ``T = n_steps``.

    ``"linear"`` spaces them evenly. ``"sigmoidal"`` (Grosse et al. 2015; Wu et al. 2017)
    takes :math:`\sigma(s)` at ``T + 1`` evenly spaced :math:`s \in [-r, r]` and rescales
    to [0, 1], so steps are small at both ends, where the log-weight increments are large.

    Parameters
    ----------
    n_steps : int
        Number of annealing increments ``T`` (>= 1).
    kind : {"linear", "sigmoidal"}
    radius : float
        ``r`` of the sigmoidal schedule (> 0).

    Returns
    -------
    Tensor of shape (n_steps + 1,), float64
        Non-decreasing, exactly 0 first and exactly 1 last.

    Examples
    --------
    >>> ais_schedule(4, "linear")
    tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000], dtype=torch.float64)
    >>> ais_schedule(4, "sigmoidal")
    tensor([0.0000, 0.1050, 0.5000, 0.8950, 1.0000], dtype=torch.float64)
    """
    n_steps = check_int("n_steps", n_steps)
    if kind not in ("linear", "sigmoidal"):
        raise InvalidArgumentError(f"schedule must be 'linear' or 'sigmoidal', got {kind!r}")
    if isinstance(radius, bool) or not isinstance(radius, Real) or not radius > 0:
        raise InvalidArgumentError(f"radius must be a number > 0, got {radius!r}")
    if kind == "linear":
        betas = torch.linspace(0.0, 1.0, n_steps + 1, dtype=torch.float64)
    else:
        s = torch.sigmoid(torch.linspace(-float(radius), float(radius), n_steps + 1, dtype=torch.float64))
        betas = (s - s[0]) / (s[-1] - s[0])
    betas[0], betas[-1] = 0.0, 1.0
    return betas


def ais_log_likelihood(
    model: LatentVariableModel,
    x: Any,
    *,
    n_chains: int = 16,
    n_steps: int = 1000,
    schedule: Schedule = "sigmoidal",
    hmc: HMCSettings | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress = False,
    return_diagnostics: bool = True,
    force: bool = False,
    **hmc_fields: Any,
) -> AISResult:
    r"""Estimate ``log p(x)`` of every example by forward AIS with HMC transitions.

    All ``n_chains`` chains of ``batch_size`` examples run as one batch: latents of
    shape (chains, batch, ...) go to ``model.log_joint(x_batch, z)``. The ``n_steps - 1``
    transitions are the HMC kernel of ``hmc`` (:class:`HMCSettings`): after each, the step
    size of each example is multiplied by 1.02 if the mean acceptance probability of its
    chains exceeded ``hmc.target_accept``, else divided by 1.02, and clamped to
    ``hmc.step_size_bounds`` (Wu et al. 2017). Adaptation makes a chain's kernel depend on
    the past of its example's chains, the common practice of Wu et al. (2017) and Cremer et
    al. (2018); ``adapt=False`` keeps the estimator exactly unbiased in ``w``.

    Parameters
    ----------
    model : LatentVariableModel
        Implements ``log_joint(x, z)``, ``log_prior(z)`` (both of shape = the leading
        (chains, batch) dims of ``z``) and ``sample_prior(n)``, with continuous latents.
        Put in eval mode for the call (every submodule's mode is restored after);
        gradients are taken with respect to ``z`` only.
    x : Tensor of shape (n, *data_shape)
        Data, checked by ``model.validate_data``. May stay on the CPU.
    n_chains : int
        Chains per example (>= 1).
    n_steps : int
        Annealing increments ``T`` (>= 1): ``T + 1`` distributions, ``T - 1`` HMC
        transitions; ``n_steps=1`` is importance sampling from the prior.
    schedule : {"linear", "sigmoidal"}
        See :func:`ais_schedule`.
    hmc : HMCSettings, optional
        The HMC kernel and its step-size adaptation (default ``HMCSettings()``: 10 leapfrog
        steps, step size 0.05 adapted towards an acceptance of 0.65 within (1e-4, 0.5)).
    batch_size : int, optional
        Examples per batch (>= 1). Default: all chains of a batch hold at most ``2**22``
        floats of the size of one example on the CPU (``2**28`` on an accelerator).
        A batch whose chains would not fit in half of the device's memory is refused
        (:mod:`vaekit.inference.budget`).
    device : str or torch.device, optional
        Where to compute; defaults to the device of the model (which is never moved).
    progress : bool or callable
        True: a progress bar with the time left, over the gradient evaluations (plain
        lines when stderr is not a terminal). A callable is called as
        ``progress(done, total)``.
    return_diagnostics : bool
        Also record the acceptance rate and step size of every transition (mean over
        examples) in ``result.trace``.
    force : bool
        Run even when the ``len(x) * n_chains * (1 + (n_steps - 1) * leapfrog_steps)``
        gradient evaluations exceed :data:`~vaekit.inference.budget.WORK_BUDGET` (1e10).
    **hmc_fields
        Fields of :class:`HMCSettings` one by one (``leapfrog_steps=5, adapt=False``):
        the same as ``hmc=HMCSettings(leapfrog_steps=5, adapt=False)``; not together with ``hmc``.

    Returns
    -------
    AISResult
        ``direction="forward"``; per-example estimates, per-chain log-weights and
        diagnostics, all float64 on the CPU.

    Raises
    ------
    TypeError, ValueError
        For settings out of range (naming the argument), data the model rejects, a
        device that is not the model's or a batch that cannot fit in memory: all before
        any work.
    vaekit.inference.budget.WorkBudgetError
        (a ValueError) When the work exceeds the budget and ``force`` is False.
    RuntimeError
        If the model returns log densities of the wrong shape, or a non-finite estimate.

    Examples
    --------
    With a flat likelihood ``p(x | z) = 1`` every weight is 1, so ``log p(x) = 0``:

    >>> import torch
    >>> from vaekit.models import LatentVariableModel
    >>> from vaekit.models import ElboTerms
    >>> class Flat(LatentVariableModel):
    ...     data_shape = (2,)
    ...     def log_prior(self, z):
    ...         return -0.5 * (z["z"] ** 2).sum(-1)
    ...     def log_joint(self, x, z):
    ...         return self.log_prior(z)
    ...     def sample_prior(self, n):
    ...         return {"z": torch.randn(n, 3)}
    ...     def log_weights(self, x, k=1):  # the prior as q: log p(x | z) = 0
    ...         return torch.zeros(k, x.shape[0])
    ...     def elbo_terms(self, x):
    ...         return ElboTerms(rec=torch.zeros(x.shape[0]), kl={"z": torch.zeros(x.shape[0])})
    >>> res = ais_log_likelihood(Flat(), torch.zeros(4, 2), n_chains=5, n_steps=20, hmc=HMCSettings(leapfrog_steps=2))
    >>> res.per_example
    tensor([0., 0., 0., 0.], dtype=torch.float64)
    >>> res.log_weights.shape, res.direction
    (torch.Size([4, 5]), 'forward')
    """
    settings = ais_settings(n_chains=n_chains, n_steps=n_steps, schedule=schedule, hmc=hmc, batch_size=batch_size,
                            **hmc_fields)
    progress, force = check_progress(progress), check_force(force)
    model, x, device = _check_model_data(model, x, device, ("log_joint", "log_prior", "sample_prior"))
    _plan(model, int(x.shape[0]), settings, device, force, "ais_log_likelihood")
    return _run(model, x, None, "forward", settings, device, progress, return_diagnostics)


def reverse_ais(
    model: LatentVariableModel,
    x: Any,
    z_init: dict[str, Tensor],
    *,
    n_chains: int = 16,
    n_steps: int = 1000,
    schedule: Schedule = "sigmoidal",
    hmc: HMCSettings | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress = False,
    return_diagnostics: bool = True,
    force: bool = False,
    **hmc_fields: Any,
) -> AISResult:
    r"""Reverse AIS from exact posterior samples: a stochastic upper bound on ``log p(x)``.

    Each chain starts at ``z_init`` (which must be an exact draw from :math:`p(z \mid x)`,
    e.g. the latents that generated simulated data) and anneals from :math:`\beta = 1` to
    0 with the same kernels as :func:`ais_log_likelihood`. With
    :math:`\log u = \sum_t (\beta_t - \beta_{t-1}) \log p(x \mid z_{t-1})` along the
    reversed chain, :math:`E[e^{-\log u}] = 1 / p(x)`, so every ``log u`` and the
    per-example estimate :math:`-\log \frac1C \sum_c e^{-\log u_c}` are stochastic upper
    bounds. The bound is only valid when ``z_init`` is an exact posterior sample.

    Parameters
    ----------
    model, x
        As in :func:`ais_log_likelihood`.
    z_init : dict of str to Tensor
        Every named latent, of shape (n, *event): one exact posterior sample per example,
        the start of all its chains.
    n_chains, n_steps, schedule, hmc, batch_size, device, progress, return_diagnostics, force, **hmc_fields
        As in :func:`ais_log_likelihood`.

    Returns
    -------
    AISResult
        ``direction="reverse"``; ``log_weights`` are the per-chain ``log u``.
    """
    settings = ais_settings(n_chains=n_chains, n_steps=n_steps, schedule=schedule, hmc=hmc, batch_size=batch_size,
                            **hmc_fields)
    progress, force = check_progress(progress), check_force(force)
    model, x, device = _check_model_data(model, x, device, ("log_joint", "log_prior"))
    z_init = _check_z_init(z_init, int(x.shape[0]), n_chains)
    _plan(model, int(x.shape[0]), settings, device, force, "reverse_ais")
    return _run(model, x, z_init, "reverse", settings, device, progress, return_diagnostics)


def bdmc(
    model: LatentVariableModel,
    n_examples: int,
    *,
    n_chains: int = 16,
    n_steps: int = 1000,
    schedule: Schedule = "sigmoidal",
    hmc: HMCSettings | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress = False,
    return_diagnostics: bool = True,
    force: bool = False,
    **hmc_fields: Any,
) -> BDMCResult:
    r"""Bidirectional Monte Carlo: bracket ``log p(x)`` on data simulated from the model.

    Draws :math:`z \sim p(z)` and :math:`x \sim p(x \mid z)` (``model.decode(z).sample()``),
    so ``z`` is an exact posterior sample for ``x``; runs forward AIS (a stochastic lower
    bound) and reverse AIS from ``z`` (a stochastic upper bound). The gap between them
    bounds the error of forward AIS with the same settings on data like this (Grosse et
    al. 2015; Wu et al. 2017). Step-size adaptation is OFF by default here (``adapt=False``):
    adapting makes each chain's kernel depend on its own past, and on simulated
    linear-Gaussian data it pushed reverse AIS below the exact value (no longer an upper
    bound), so a bracket you rely on needs fixed step sizes: without ``hmc`` (or ``adapt``)
    the kernel is ``HMCSettings(adapt=False)``. With ``adapt=True`` both directions adapt
    from ``step_size``. Uses the global torch random generator.

    Parameters
    ----------
    model : LatentVariableModel
        As in :func:`ais_log_likelihood`, also implementing ``decode(z)``.
    n_examples : int
        Number of simulated examples (>= 1).
    n_chains, n_steps, schedule, hmc, batch_size, device, progress, return_diagnostics, force, **hmc_fields
        As in :func:`ais_log_likelihood` (default kernel ``HMCSettings(adapt=False)``), used for both directions.

    Returns
    -------
    BDMCResult
        The simulated data and latents, both :class:`AISResult` and the per-example gap.

    The work budget counts both directions: ``2 * n_examples * n_chains * (1 + (n_steps - 1)
    * leapfrog_steps)`` gradient evaluations.
    """
    settings = ais_settings(n_chains=n_chains, n_steps=n_steps, schedule=schedule, hmc=hmc, batch_size=batch_size,
                            default_adapt=False, **hmc_fields)
    n_examples = check_int("n_examples", n_examples)
    progress, force = check_progress(progress), check_force(force)
    model, _, device = _check_model_data(model, None, device, ("log_joint", "log_prior", "sample_prior", "decode"))
    _plan(model, n_examples, settings, device, force, "bdmc", directions=2)
    with eval_mode(model), torch.no_grad():
        z = {k: v.to(device) for k, v in model.sample_prior(n_examples).items()}
        x = model.decode(z).sample()
    x = model.validate_data(x, "simulated x")
    forward = _run(model, x, None, "forward", settings, device, progress, return_diagnostics)
    reverse = _run(model, x, _check_z_init(z, n_examples, n_chains), "reverse", settings, device, progress,
                   return_diagnostics)
    return BDMCResult(x.detach().cpu(), {k: v.detach().cpu() for k, v in z.items()}, forward, reverse)


def combine_max(ais: Tensor | AISResult, iwae: Any) -> Tensor:
    """Per-example maximum of an AIS and an IWAE estimate, as Cremer et al. (2018) reported.

    Both are stochastic lower bounds on ``log p(x)``, so their maximum is a tighter (but
    biased: it is **not** an unbiased estimate of anything, and its expectation can
    exceed either estimator's) number to quote as "log p̂(x)". Label it as such.

    Parameters
    ----------
    ais : Tensor of shape (n,) or AISResult
    iwae : Tensor of shape (n,) or an object with ``per_example`` (e.g. IWAEResult)

    Returns
    -------
    Tensor of shape (n,), float64

    Examples
    --------
    >>> combine_max(torch.tensor([-90.0, -85.0]), torch.tensor([-89.5, -86.0]))
    tensor([-89.5000, -85.0000], dtype=torch.float64)
    """
    values = []
    for name, v in (("ais", ais), ("iwae", iwae)):
        v = getattr(v, "per_example", v)
        if not isinstance(v, Tensor) or v.dim() != 1:
            got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(f"{name} must be a 1-d tensor of per-example estimates (or a result with "
                             f"per_example), got {got}")
        values.append(v.detach().to("cpu", torch.float64))
    if values[0].shape != values[1].shape:
        raise ValueError(f"ais and iwae must hold the same examples, got {values[0].numel()} and {values[1].numel()}")
    return torch.maximum(values[0], values[1])


# ---------------------------------------------------------------------------- internals
def ais_work(n: int, settings: dict[str, Any], estimator: str = "ais_log_likelihood", directions: int = 1) -> Work:
    """The gradient evaluations of AIS on ``n`` examples (both directions for BDMC), as a :class:`Work`."""
    chains, steps, leapfrog = settings["n_chains"], settings["n_steps"], settings["hmc"].leapfrog_steps
    formula = "{n} x {n_chains} x (1 + ({n_steps} - 1) x {leapfrog_steps})"
    args = {"n": n, "n_chains": chains, "n_steps": steps, "leapfrog_steps": leapfrog}
    if directions > 1:
        formula = f"{directions} x {formula}"
    labels = {"n": "n_examples" if estimator == "bdmc" else "len(x)"}
    return Work(estimator, formula, args, directions * n * chains * (1 + (steps - 1) * leapfrog), labels)


def _plan(model: LatentVariableModel, n: int, settings: dict[str, Any], device: torch.device, force: bool,
          estimator: str, directions: int = 1) -> None:
    """Check the work budget and set ``settings["batch_size"]`` so that a batch's chains fit in memory."""
    ais_work(n, settings, estimator, directions).check(force)
    chains, shape = settings["n_chains"], tuple(model.data_shape)
    limit = max_pairs(model, shape, device)  # chains x examples per batch
    if chains > limit:
        raise too_large({"n_chains": chains}, limit, "chains", device, optional=False)
    batch_size = settings["batch_size"]
    if batch_size is None:
        budget = DEFAULT_BUDGET["cpu" if device.type == "cpu" else "accelerator"]
        batch_size = min(limit // chains, max(1, budget // max(1, math.prod(shape)) // chains))
    elif min(batch_size, n) * chains > limit:
        raise too_large({"batch_size": batch_size, "n_chains": chains}, limit // chains, "chains", device)
    settings["batch_size"] = max(1, min(batch_size, n))


class _StepsToPairs:
    """Turns the once-per-annealing-step updates of :func:`._hmc.anneal` into gradient evaluations.

    A batch's ``pairs`` chain-example pairs cost one evaluation at the start and
    ``leapfrog`` per transition; there are ``steps`` updates and ``steps - 1`` transitions.
    """

    def __init__(self, report: Any, pairs: int, leapfrog: int, steps: int) -> None:
        self.report, self.pairs, self.leapfrog, self.left = report, pairs, leapfrog, steps

    def update(self, n: int = 1) -> None:
        for _ in range(n):
            self.left -= 1
            self.report.update(self.pairs * (self.leapfrog if self.left > 0 else 1))


def ais_settings(*, n_chains: int = 16, n_steps: int = 1000, schedule: Schedule = "sigmoidal",
                 hmc: HMCSettings | None = None, batch_size: int | None = None, default_adapt: bool = True,
                 **hmc_fields: Any) -> dict[str, Any]:
    """Validate the sampler settings of an AIS call; return them as a dict (``hmc`` an :class:`HMCSettings`).

    ``hmc_fields`` are fields of :class:`HMCSettings` given one by one, the shorthand of
    ``hmc=HMCSettings(**hmc_fields)``; without either the kernel is
    ``HMCSettings(adapt=default_adapt)``.

    >>> s = ais_settings(n_chains=4, leapfrog_steps=3)
    >>> s["n_chains"], s["hmc"].leapfrog_steps, s["hmc"].adapt
    (4, 3, True)
    """
    out: dict[str, Any] = {"n_chains": check_int("n_chains", n_chains), "n_steps": check_int("n_steps", n_steps),
                           "schedule": schedule}
    if schedule not in ("linear", "sigmoidal"):
        raise InvalidArgumentError(f"schedule must be 'linear' or 'sigmoidal', got {schedule!r}")
    fields = {f.name for f in dataclasses.fields(HMCSettings)}
    unknown = sorted(set(hmc_fields) - fields)
    if unknown:
        raise TypeError(f"unexpected keyword argument{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                        f"the HMC settings are {sorted(fields)} (or hmc=HMCSettings(...))")
    if hmc is None:
        hmc = HMCSettings(**{"adapt": default_adapt, **hmc_fields})
    elif not isinstance(hmc, HMCSettings):
        raise InvalidArgumentError(f"hmc must be a vaekit.inference.HMCSettings, got {type(hmc).__name__}")
    elif hmc_fields:
        raise InvalidArgumentError(f"give the HMC settings either as hmc=HMCSettings(...) or one by one, not both; "
                                   f"got hmc={hmc!r} and {', '.join(f'{k}={v!r}' for k, v in hmc_fields.items())}")
    out["hmc"] = hmc
    out["batch_size"] = None if batch_size is None else check_int("batch_size", batch_size)
    return out


def check_annealable(model: LatentVariableModel) -> None:
    """Refuse a model whose latents AIS cannot anneal: those on the probability simplex (``model.simplex_latents``).

    HMC moves a latent freely in :math:`\\mathbb R^d`, off the simplex where a relaxed
    categorical latent (Gumbel-Softmax, IGR) has its density, so the annealed estimate would
    be a plausible but meaningless number. :func:`ais_log_likelihood`, :func:`reverse_ais`,
    :func:`bdmc` and :func:`~vaekit.inference.inference_gaps` (with ``ais``) call it before
    any work.

    Raises
    ------
    vaekit.InvalidArgumentError
        Naming the model, its simplex-valued latents and their families, and IWAE
        (:func:`~vaekit.inference.iwae_log_likelihood`) as the estimator to use.
    """
    simplex = dict(model.simplex_latents)
    if simplex:
        names = ", ".join(f"{k!r} ({v})" for k, v in simplex.items())
        raise InvalidArgumentError(f"AIS cannot estimate log p(x) of this {type(model).__name__}: its latent(s) {names} are "
                                   "relaxed categorical variables on the probability simplex, which the HMC steps of AIS "
                                   "leave; estimate log p(x) with IWAE (vaekit.inference.iwae_log_likelihood) instead")


def _check_model_data(model: Any, x: Any, device: Any, needs: tuple[str, ...]
                      ) -> tuple[LatentVariableModel, Tensor | None, torch.device]:
    if not isinstance(model, LatentVariableModel):
        raise TypeError(f"model must be a vaekit.models.LatentVariableModel, got {type(model).__name__}")
    check_annealable(model)
    base = LatentVariableModel
    missing = [m for m in needs if getattr(type(model), m, None) is getattr(base, m, None)]
    if missing:
        raise TypeError(f"AIS needs {type(model).__name__} to implement {', '.join(missing)} (the model protocol)")
    if x is not None:
        x = model.validate_data(x, "x")
    return model, x, resolve_device(model, x if x is not None else torch.empty(0), device)


def _check_z_init(z_init: Any, n: int, n_chains: int) -> dict[str, Tensor]:
    """``z_init`` of shapes (n, *event) expanded to (n_chains, n, *event)."""
    if not isinstance(z_init, dict) or not z_init or not all(isinstance(v, Tensor) for v in z_init.values()):
        raise InvalidArgumentError(f"z_init must be a non-empty dict of str to Tensor, got {type(z_init).__name__}")
    for name, v in z_init.items():
        if v.dim() < 1 or v.shape[0] != n:
            raise InvalidArgumentError(f"z_init[{name!r}] has shape {tuple(v.shape)}; expected (n, *event) with n = {n}, "
                             "the number of examples in x (one exact posterior sample per example)")
    return {name: v.detach().expand(n_chains, *v.shape) for name, v in z_init.items()}


def _run(model: LatentVariableModel, x: Tensor, z_init: dict[str, Tensor] | None, direction: str,
         settings: dict[str, Any], device: torch.device, progress: bool,
         return_diagnostics: bool) -> AISResult:
    """Run AIS over batches of examples; ``z_init`` (chains, n, ...) only for reverse."""
    n, chains, steps = int(x.shape[0]), settings["n_chains"], settings["n_steps"]
    batch_size = min(settings["batch_size"], n)  # chosen by _plan
    hmc: HMCSettings = settings["hmc"]
    leapfrog = hmc.leapfrog_steps
    betas = ais_schedule(steps, settings["schedule"])
    if direction == "reverse":
        betas = betas.flip(0)
    parts: dict[str, list[Tensor]] = {"lw": [], "acc": [], "eps": [], "trace_acc": [], "trace_eps": []}
    start_time = time.perf_counter()
    with eval_mode(model):
        total = n * chains * (1 + (steps - 1) * leapfrog)
        desc = f"AIS ({direction}) {chains} chains x {steps} steps on {n} examples"
        with progress_reporter(progress, total, desc) as report:
            for lo in range(0, n, batch_size):
                xb = x[lo:lo + batch_size].to(device)
                if z_init is None:
                    with torch.no_grad():
                        z0 = model.sample_prior(chains * xb.shape[0])
                    packer = LatentPacker(z0, 1)
                    z = packer.pack(z0, 1).to(device).reshape(chains, xb.shape[0], packer.dim)
                else:
                    zb = {k: v[:, lo:lo + batch_size] for k, v in z_init.items()}
                    packer = LatentPacker(zb, 2)
                    z = packer.pack(zb, 2).to(device)
                bar = _StepsToPairs(report, chains * int(xb.shape[0]), leapfrog, steps)
                for key, value in zip(parts, anneal(model, xb, packer, z, betas, hmc, bar)):
                    parts[key].append(value)
    lw = torch.cat(parts["lw"], 1).T  # (n, chains), float64: forward log w or reverse -log u
    trace = None
    if return_diagnostics and steps > 1:
        sizes = torch.tensor([t.shape[1] for t in parts["lw"]], dtype=torch.float64)
        trace = {k: (torch.stack(parts[f"trace_{k}"], 0) * sizes[:, None]).sum(0) / n for k in ("acc", "eps")}
        trace = {"acceptance": trace["acc"], "step_size": trace["eps"]}
    result = AISResult(
        log_weights=lw if direction == "forward" else -lw, direction=direction,
        acceptance=torch.cat(parts["acc"]), step_size=torch.cat(parts["eps"]),
        settings={"n_chains": chains, "n_steps": steps, "schedule": settings["schedule"], **dataclasses.asdict(hmc),
                  "batch_size": batch_size, "device": str(device)},
        seconds=time.perf_counter() - start_time, grad_evals=n * chains * (1 + max(steps - 1, 0) * leapfrog),
        trace=trace)
    bad = ~torch.isfinite(result.per_example)
    if bool(bad.any()):
        raise RuntimeError(f"AIS gave a non-finite estimate for {int(bad.sum())} of {n} example(s) (first: index "
                           f"{int(bad.nonzero()[0, 0])}); check the model's log_joint/log_prior on these data")
    return result
