r"""The importance-weighted (IWAE) estimate of the log-likelihood :math:`\log p(x)`.

For each example the estimator draws :math:`k` samples :math:`z_i \sim q(z \mid x)` and
returns

.. math::

    \hat{\mathcal{L}}_k(x) = \log \frac{1}{k} \sum_{i=1}^{k} w_i, \qquad
    \log w_i = \log p(x, z_i) - \log q(z_i \mid x),

the stochastic lower bound of Burda et al. (2016). Its expectation increases with
:math:`k` and converges to :math:`\log p(x)`; :math:`k = 1` is the ELBO.

The estimator sees a model only through ``draw = model.importance_sampler(x_batch)``, called
once per batch, and ``draw(k_chunk)``, called once per chunk (by default
``model.log_weights(x_batch, k_chunk)``), so it works for every
:class:`~vaekit.models.LatentVariableModel`, and a model whose proposal is costly to build
builds it once per batch. It is batched over the data
and chunked over the samples, so memory stays bounded for any ``k`` (5000 and beyond):
the model is never asked for more than ``chunk_size`` samples of ``batch_size`` examples
at once, and the log-sum-exp over chunks is accumulated in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._checks import check_int
from ..models.base import LatentVariableModel
from ..nn.modes import eval_mode
from ._common import DEFAULT_BUDGET, finite_or_none, resolve_device
from .budget import Progress, Work, check_force, check_progress, max_pairs, progress_reporter, too_large

__all__ = ["IWAEResult", "iwae_log_likelihood"]


@dataclass(eq=False)
class IWAEResult:
    """Per-example IWAE estimates of ``log p(x)`` and their summary.

    Parameters
    ----------
    per_example : Tensor of shape (n,), float64, on the CPU
        ``logsumexp_i(log w_i) - log k`` for every example.
    elbo_per_example : Tensor of shape (n,), float64, on the CPU
        Mean of the same ``k`` log-weights: an ELBO estimate averaged over ``k`` samples.
    k : int
        Number of importance samples per example.
    batch_size : int
        Examples per call of ``model.log_weights``.
    chunk_size : int
        Samples per call of ``model.log_weights``.

    Attributes
    ----------
    mean : float
        Mean of ``per_example`` (nats per example).
    stderr : float
        Standard error of ``mean`` over the examples (``std(ddof=1) / sqrt(n)``; NaN
        when ``n == 1``).
    elbo : float
        Mean of ``elbo_per_example``.

    Examples
    --------
    >>> r = IWAEResult(torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -4.0]), k=10,
    ...                batch_size=2, chunk_size=10)
    >>> r.mean, round(r.stderr, 4), r.elbo
    (-2.0, 1.0, -3.0)
    >>> r.to_dict()["mean"]
    -2.0
    """

    per_example: Tensor = field(repr=False)
    elbo_per_example: Tensor = field(repr=False)
    k: int
    batch_size: int
    chunk_size: int
    mean: float = field(init=False)
    stderr: float = field(init=False)
    elbo: float = field(init=False)

    def __post_init__(self) -> None:
        self.per_example = self.per_example.detach().to("cpu", torch.float64)
        self.elbo_per_example = self.elbo_per_example.detach().to("cpu", torch.float64)
        n = self.per_example.numel()
        self.mean = float(self.per_example.mean())
        self.stderr = float(self.per_example.std() / math.sqrt(n)) if n > 1 else math.nan
        self.elbo = float(self.elbo_per_example.mean())

    @property
    def n(self) -> int:
        """Number of examples."""
        return self.per_example.numel()

    def to_dict(self, per_example: bool = False) -> dict[str, Any]:
        """A JSON-serialisable summary (NaN becomes ``None``).

        Parameters
        ----------
        per_example : bool
            Also include the per-example estimates as lists of floats.

        Returns
        -------
        dict
            Keys ``estimator, k, n, mean, stderr, elbo, batch_size, chunk_size`` (and
            ``per_example, elbo_per_example`` when asked).
        """
        out: dict[str, Any] = {
            "estimator": "iwae", "k": self.k, "n": self.n,
            "mean": finite_or_none(self.mean), "stderr": finite_or_none(self.stderr),
            "elbo": finite_or_none(self.elbo),
            "batch_size": self.batch_size, "chunk_size": self.chunk_size,
        }
        if per_example:
            out["per_example"] = [finite_or_none(v) for v in self.per_example.tolist()]
            out["elbo_per_example"] = [finite_or_none(v) for v in self.elbo_per_example.tolist()]
        return out


def iwae_log_likelihood(
    model: LatentVariableModel,
    x: Any,
    k: int = 5000,
    *,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    max_elements: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress = False,
    force: bool = False,
) -> IWAEResult:
    r"""Estimate ``log p(x)`` of every example with ``k`` importance samples.

    Parameters
    ----------
    model : LatentVariableModel
        Any model implementing ``log_weights(x, k) -> Tensor of shape (k, batch)``.
        It is put in eval mode for the call (every submodule's mode is restored after)
        and run under :func:`torch.no_grad`.
    x : Tensor of shape (n, *data_shape)
        The data, or anything ``model.validate_data`` accepts (it is checked first). It
        may stay on the CPU: each batch is moved to ``device`` when it is used.
    k : int
        Importance samples per example (>= 1). ``k = 1`` gives the ELBO.
    batch_size : int, optional
        Examples per call of ``model.log_weights`` (>= 1).
    chunk_size : int, optional
        Samples per call (>= 1); the model is never asked for more than this many.
    max_elements : int, optional
        Budget of (sample, example) pairs per call, used to choose whichever of
        ``chunk_size`` (first, up to ``k``) and ``batch_size`` is not given. Default:
        ``2**22`` floats of the size of one example on the CPU, ``2**28`` on an
        accelerator (5,350 and 342,000 pairs for 28x28 images). Explicit sizes whose call
        would not fit in half of the device's memory are refused, automatic ones capped
        (:mod:`vaekit.inference.budget`).
    device : str or torch.device, optional
        Where to compute. Defaults to the device of the model's parameters (the model is
        never moved: a different device raises).
    progress : bool or callable
        True: a progress bar with the time left, over the ``len(x) * k`` (sample, example)
        pairs (plain lines when stderr is not a terminal). A callable is called as
        ``progress(done, total)``.
    force : bool
        Run even when ``len(x) * k`` exceeds
        :data:`~vaekit.inference.budget.WORK_BUDGET` (1e10) pairs.

    Returns
    -------
    IWAEResult
        Per-example estimates (float64, CPU), their mean and standard error, and the
        ELBO averaged over the same samples.

    Raises
    ------
    TypeError, ValueError
        For a non-integer or non-positive ``k``, ``batch_size``, ``chunk_size`` or
        ``max_elements``, sizes whose call would not fit in memory, data the model
        rejects, or a ``device`` that is not the model's; all raised before the model's
        mode is touched.
    vaekit.inference.budget.WorkBudgetError
        (a ValueError) When ``len(x) * k`` exceeds the work budget and ``force`` is False.
    RuntimeError
        If ``model.log_weights`` returns the wrong shape or NaN / +inf.

    Examples
    --------
    A model whose importance weights all equal 1 has ``log p(x) = 0`` for every ``k``:

    >>> import torch
    >>> from vaekit.models import LatentVariableModel
    >>> from vaekit.models import ElboTerms
    >>> class Flat(LatentVariableModel):
    ...     data_shape = (2,)
    ...     def log_weights(self, x, k=1):
    ...         return torch.zeros(k, x.shape[0])
    ...     def elbo_terms(self, x):
    ...         return ElboTerms(rec=torch.zeros(x.shape[0]), kl={})
    >>> res = iwae_log_likelihood(Flat(), torch.zeros(3, 2), k=100, chunk_size=16)
    >>> res.per_example
    tensor([0., 0., 0.], dtype=torch.float64)
    >>> res.mean, res.chunk_size, res.batch_size
    (0.0, 16, 3)
    """
    k = check_int("k", k)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size)
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size)
    if max_elements is not None:
        max_elements = check_int("max_elements", max_elements)
    progress, force = check_progress(progress), check_force(force)
    if not isinstance(model, LatentVariableModel):
        raise TypeError(f"model must be a vaekit.models.LatentVariableModel, got {type(model).__name__}")
    x = model.validate_data(x, "x")
    device = resolve_device(model, x, device)
    n = int(x.shape[0])
    iwae_work(n, k).check(force)
    batch_size, chunk_size = _plan(n, k, x, device, batch_size, chunk_size, max_elements, model)

    with eval_mode(model), torch.no_grad():
        lse, mean_lw = _estimate(model, x, k, batch_size, chunk_size, device, progress)
    bad = torch.isnan(lse) | (lse == math.inf)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise RuntimeError(
            f"{type(model).__name__}.log_weights returned NaN or +inf for {int(bad.sum())} of {n} "
            f"example(s) (first: index {first}); check the model's parameters and the data")
    return IWAEResult(lse - math.log(k), mean_lw, k=k, batch_size=batch_size, chunk_size=chunk_size)


def iwae_work(n: int, k: int) -> Work:
    """The (sample, example) pairs of an IWAE estimate on ``n`` examples: ``n * k``."""
    return Work("iwae_log_likelihood", "{n} x {k}", {"n": n, "k": k}, n * k, {"n": "len(x)"})


def _estimate(model: LatentVariableModel, x: Tensor, k: int, batch_size: int, chunk_size: int,
              device: torch.device, progress: Progress) -> tuple[Tensor, Tensor]:
    """Float64 ``logsumexp`` and mean of the ``k`` log-weights of every example, shape (n,)."""
    n = int(x.shape[0])
    # The results are written into tensors allocated before the loop: small tensors kept alive across
    # iterations (one per batch, joined at the end) landed in the heap between the per-chunk
    # temporaries of just under glibc's mmap threshold and fragmented it (IWAE k=5000 of the Cremer
    # FFG model, batches of one image: +0.9 MB per image, 312 MB over 400 images; flat with this).
    lse_all = torch.full((n,), -math.inf, dtype=torch.float64, device=device)
    total_all = torch.zeros(n, dtype=torch.float64, device=device)
    with progress_reporter(progress, n * k, f"IWAE k={k} on {n} examples") as bar:
        for start in range(0, n, batch_size):
            xb = x[start:start + batch_size].to(device, non_blocking=True)
            b = int(xb.shape[0])
            lse, total = lse_all[start:start + b], total_all[start:start + b]
            draw = model.importance_sampler(xb)
            for done in range(0, k, chunk_size):
                kc = min(chunk_size, k - done)
                lw = draw(kc)
                if not isinstance(lw, Tensor) or tuple(lw.shape) != (kc, b):
                    got = tuple(lw.shape) if isinstance(lw, Tensor) else type(lw).__name__
                    raise RuntimeError(f"{type(model).__name__}.log_weights(x, {kc}) for a batch of {b} "
                                       f"must return a tensor of shape ({kc}, {b}), got {got}")
                lw = lw.to(torch.float64)
                torch.logaddexp(lse, torch.logsumexp(lw, 0), out=lse)
                total += lw.sum(0)
                bar.update(kc * b)
    return lse_all.cpu(), (total_all / k).cpu()


def _plan(n: int, k: int, x: Tensor, device: torch.device, batch_size: int | None,
          chunk_size: int | None, max_elements: int | None, model: torch.nn.Module) -> tuple[int, int]:
    """Choose ``(batch_size, chunk_size)`` from the budget of (sample, example) pairs.

    A call may hold at most :func:`~vaekit.inference.budget.max_pairs` pairs: sizes chosen
    here are capped to it; sizes given that exceed it raise a ValueError naming them.
    """
    limit = max_pairs(model, tuple(x.shape[1:]), device)
    if max_elements is not None and max_elements > limit:
        raise too_large({"max_elements": max_elements}, limit, "(sample, example) pairs", device)
    if max_elements is None:
        budget = DEFAULT_BUDGET["cpu" if device.type == "cpu" else "accelerator"]
        max_elements = min(limit, max(1, budget // max(1, math.prod(x.shape[1:]))))
    given = {name: v for name, v in (("chunk_size", chunk_size), ("batch_size", batch_size)) if v is not None}
    if chunk_size is None:
        chunk_size = max(1, min(k, max_elements // (batch_size or 1)))
    if batch_size is None:
        batch_size = max(1, max_elements // chunk_size)
    batch_size, chunk_size = min(batch_size, n), min(chunk_size, k)
    if batch_size * chunk_size > limit and given:  # sizes chosen here stay within max_elements <= limit
        if "batch_size" in given and batch_size > limit:
            raise too_large({"batch_size": given["batch_size"]}, limit, "(sample, example) pairs", device)
        first = next(iter(given))
        other = batch_size if first == "chunk_size" and "batch_size" in given else 1
        raise too_large(given, max(1, limit // other), "(sample, example) pairs", device)
    return batch_size, chunk_size
