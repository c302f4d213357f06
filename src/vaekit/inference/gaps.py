r"""The inference-gap decomposition of Cremer, Li & Duvenaud (2018), Table 2.

For a trained model and test points :math:`x`:

.. math::

    \underbrace{\log p(x) - \mathcal L[q]}_{\text{inference gap}}
    = \underbrace{\log p(x) - \mathcal L[q^*]}_{\text{approximation gap}}
    + \underbrace{\mathcal L[q^*] - \mathcal L[q]}_{\text{amortization gap}},

where :math:`q` is the amortized posterior, :math:`q^*` the best posterior of the same
family for each datapoint (found by :func:`~vaekit.inference.optimize_local_posterior`),
and :math:`\log p(x)` is estimated by :math:`\log \hat p(x)` = the per-example maximum of the
AIS and IWAE estimates, as the paper did (labelled as such: the maximum of two stochastic
estimates is not itself an unbiased bound). Without AIS, :math:`\log \hat p(x)` is IWAE.

The inference gap :math:`\log \hat p(x) - \mathcal L[q]` needs no :math:`q^*` and is
reported for every model; the approximation/amortization split needs
:math:`\mathcal L[q^*]`, that is local optimisation, which needs a model that declares
:meth:`~vaekit.models.LatentVariableModel.amortized` (a single-latent VAE). A model without
it (a hierarchical VAE, say) gets its column with ``local_opt=()``: log p̂(x), IWAE, AIS,
:math:`\mathcal L[q]` and the inference gap, and the split left out (``None``).

:func:`inference_gaps` computes one column (one model); :func:`write_gap_report` writes
the table of several columns as Markdown, JSON and CSV.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..distributions import POSTERIORS, ConditionalDistribution, DiagonalGaussian, make_posterior
from ..distributions.flows import posterior_name
from .._checks import InvalidArgumentError, check_int
from ..models.base import LatentVariableModel
from ..nn.modes import eval_mode
from .budget import Progress, check_force, check_progress
from .iwae import IWAEResult, iwae_log_likelihood, iwae_work
from .local_opt import LocalOptResult, local_opt_work, optimize_local_posterior

__all__ = ["GapColumn", "inference_gaps", "gap_table", "write_gap_report", "family_name", "LOCAL_ALIASES", "check_budgets"]

#: Names accepted for local-optimisation families besides vaekit.distributions.flows.POSTERIORS.
LOCAL_ALIASES = {"ffg": "gaussian"}


@dataclass
class GapColumn:
    """One model's column of the gap table (all values are means over the test points, in nats).

    Attributes
    ----------
    label : str
        Column title (e.g. the model's posterior family or run name).
    own : str or None
        Short name of the model's amortized family (``"gaussian"``, ``"af"``...); None for a
        model that declares no :meth:`~vaekit.models.LatentVariableModel.amortized` (e.g. a
        hierarchical VAE), which has no local optimisation and so no approximation/amortization split.
    n : int
        Test points.
    log_px : float
        :math:`\\log \\hat p(x)`: mean of the per-example ``max(AIS, IWAE)`` (or IWAE alone).
    log_px_source : str
        ``"max(AIS, IWAE)"`` or ``"IWAE"``.
    iwae, ais : float or None
        The two estimates' means (``ais`` is None when AIS was not run).
    local : dict of str to float
        :math:`\\mathcal L[q^*_f]` for every locally optimised family ``f``.
    elbo : float
        :math:`\\mathcal L[q]` of the amortized posterior.
    settings : dict
    stderr : dict of str to float
        Standard errors over the test points (``std(ddof=1) / sqrt(n)``) of ``log_px``,
        ``iwae``, ``ais``, ``elbo``, ``local:<family>`` and the gaps (paired per point);
        empty when the column was built from means only.
    """

    label: str
    own: str | None
    n: int
    log_px: float
    log_px_source: str
    iwae: float
    ais: float | None
    local: dict[str, float]
    elbo: float
    settings: dict[str, Any] = field(default_factory=dict)
    stderr: dict[str, float] = field(default_factory=dict)

    @property
    def approximation_gap(self) -> float | None:
        """:math:`\\log \\hat p(x) - \\mathcal L[q^*]` with :math:`q^*` in the model's own family."""
        return self.log_px - self.local[self.own] if self.own is not None and self.own in self.local else None

    @property
    def amortization_gap(self) -> float | None:
        """:math:`\\mathcal L[q^*] - \\mathcal L[q]`."""
        return self.local[self.own] - self.elbo if self.own is not None and self.own in self.local else None

    @property
    def inference_gap(self) -> float:
        """:math:`\\log \\hat p(x) - \\mathcal L[q]`."""
        return self.log_px - self.elbo

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields plus the three gaps."""
        return {**asdict(self), "approximation_gap": self.approximation_gap, "amortization_gap": self.amortization_gap,
                "inference_gap": self.inference_gap}


def family_name(posterior: ConditionalDistribution) -> str:
    """Short name of a posterior family (as :func:`vaekit.distributions.make_posterior` names it).

    >>> family_name(DiagonalGaussian(4, 2))
    'gaussian'
    """
    return posterior_name(posterior) or type(posterior).__name__


def _own_family(model: LatentVariableModel, x: Tensor, local_opt: Sequence[Any]) -> ConditionalDistribution | None:
    """The model's posterior family, from the declared :meth:`~vaekit.models.LatentVariableModel.amortized`.

    None for a model without one when ``local_opt`` is empty; with families to optimise its
    ``TypeError`` names the model and ``local_opt``. Bad data are refused first. All before any work.
    """
    first = model.validate_data(x)[:1]
    dev = next((t.device for t in model.parameters()), first.device)
    with torch.no_grad(), eval_mode(model):
        try:
            return model.amortized(first.to(dev))[1]
        except TypeError as e:
            if not local_opt:
                return None
            raise TypeError(f"{e}. local_opt={list(local_opt)!r} needs it; pass local_opt=() for log p̂(x), IWAE, "
                            "AIS, L[q] and the inference gap without the approximation/amortization split "
                            "(which needs L[q*])") from e


def _local_family(name: str | ConditionalDistribution,
                  own: ConditionalDistribution) -> tuple[ConditionalDistribution | None, str]:
    """(family module or None for the model's own, init) for a local-optimisation family name or module."""

    if isinstance(name, ConditionalDistribution):  # any family, configured by the caller
        return name, "scratch"
    canonical = LOCAL_ALIASES.get(name, name)
    if canonical not in POSTERIORS:
        raise ValueError(f"unknown local-optimisation family {name!r}; accepted: "
                         f"{', '.join([*LOCAL_ALIASES, *POSTERIORS])}")
    if canonical == family_name(own):
        return None, "amortized"
    if own.context_features is None:
        raise TypeError(f"the model's posterior {type(own).__name__} reads no context (context_features is None); "
                        f"local optimisation of another family needs the encoder's features")
    return make_posterior(canonical, own.context_features, own.latent_features), "scratch"


def inference_gaps(model: LatentVariableModel, x: Tensor, *, local_opt: Sequence[str] = ("ffg",), iwae_k: int = 5000,
                   ais: dict[str, Any] | None = None, local_opt_kwargs: dict[str, Any] | None = None,
                   label: str | None = None, batch_size: int | None = None,
                   device: str | torch.device | None = None, iwae: IWAEResult | None = None,
                   progress: Progress = False, force: bool = False, precomputed: Mapping[str, Any] | None = None,
                   on_result: Callable[[str, Any, float], None] | None = None, seed: int | None = None) -> GapColumn:
    """One column of the gap table for ``model`` on test points ``x``.

    Parameters
    ----------
    model : LatentVariableModel
        Any model for IWAE and AIS; local optimisation (a non-empty ``local_opt``) needs one
        that declares :meth:`~vaekit.models.LatentVariableModel.amortized` (e.g. a VAE).
    x : Tensor of shape (n, *data_shape)
    local_opt : sequence of str or ConditionalDistribution
        Families to optimise per datapoint: names (``"ffg"``/``"gaussian"``, ``"af"``, any
        name of :data:`vaekit.distributions.flows.POSTERIORS`, built with default settings)
        or family modules configured by the caller (optimised from scratch, listed under
        their :func:`family_name`). The model's own family, given by name, is started from
        the amortized posterior; other families from scratch. Empty: no local
        optimisation, and no approximation/amortization split (the only choice for a model
        without ``amortized``, such as a hierarchical VAE).
    iwae_k : int
        Samples of the IWAE estimate (which also gives :math:`\\mathcal L[q]`).
    ais : dict, optional
        Keyword arguments of :func:`vaekit.inference.ais_log_likelihood` (e.g.
        ``{"n_chains": 100, "n_steps": 10000}``); None skips AIS.
    local_opt_kwargs : dict, optional
        Keyword arguments of :func:`~vaekit.inference.optimize_local_posterior`.
    label : str, optional
        Column title (default: the model's family name, or its class name when it has no
        amortized family).
    batch_size : int, optional
    device : str or torch.device, optional
    iwae : IWAEResult, optional
        An IWAE result already computed on the same ``x`` (it is reused instead of
        recomputed).
    progress : bool or callable
        Passed to every estimator (a callable sees each estimate from 0 to its total).
    force : bool
        Passed to every estimator. Their work budgets are all checked before the first
        one starts (:mod:`vaekit.inference.budget`), those of the estimates that will run
        (not of those given in ``iwae`` or ``precomputed``).
    precomputed : mapping, optional
        Estimates already computed on the same ``x`` with the same settings, reused instead
        of recomputed: ``"ais"`` an :class:`~vaekit.inference.AISResult` (only when ``ais``
        is given) and ``"local:<family>"`` (``<family>`` a name of ``local_opt`` as the
        column lists it: ``"local:gaussian"`` for ``"ffg"``) a
        :class:`~vaekit.inference.LocalOptResult`. With ``on_result``, this lets a caller
        keep each estimate as it finishes and resume a killed computation.
    on_result : callable, optional
        Called as ``on_result(piece, result, seconds)`` after each estimate this call computes
        (``"iwae"``, ``"ais"``, ``"local:<family>"``; not those passed in), with its wall time.
    seed : int, optional
        When given, ``torch.manual_seed(seed + i)`` is called before the ``i``-th estimate
        (0: IWAE; 1: AIS; 2, 3, ...: the ``local_opt`` families in order; the modules of the
        families optimised from scratch are built from ``seed`` on a forked generator), so
        each estimate's draws are the same whether the others were computed or passed in.
        torch's global generator is left where the last computed estimate left it (so it
        depends on which estimates were passed in); None (the default) reseeds nothing.

    Returns
    -------
    GapColumn

    Raises
    ------
    TypeError
        Before any work, when ``local_opt`` is not empty and the model declares no
        :meth:`~vaekit.models.LatentVariableModel.amortized` (the message names the model).
    vaekit.inference.budget.WorkBudgetError
        (a ValueError) Before any work, when one of the estimates exceeds the work budget
        and ``force`` is False.
    vaekit.InvalidArgumentError
        Before any work, when ``ais`` is given and the model has latents on the probability
        simplex (relaxed categorical layers; :func:`~vaekit.inference.check_annealable`).
    vaekit.InvalidArgumentError
        Before any work, when ``precomputed`` holds a piece this call would not compute, a
        result of the wrong type, one for another number of points than ``x``, an AIS result
        of other chains or steps than ``ais``, or a local optimisation of another family.

    Examples
    --------
    >>> from vaekit.models import mlp_vae
    >>> model = mlp_vae([20], 2, hidden=[8])
    >>> x = torch.bernoulli(torch.full((3, 20), 0.3))
    >>> col = inference_gaps(model, x, iwae_k=20, local_opt=["ffg"],
    ...                      local_opt_kwargs={"max_steps": 20, "check_every": 10, "eval_k": 20})
    >>> col.own, sorted(col.local), col.log_px_source
    ('gaussian', ['gaussian'], 'IWAE')
    """
    if ais is not None and "device" in ais:
        raise ValueError("ais must not contain 'device': pass device= to inference_gaps")
    if seed is not None:
        seed = check_int("seed", seed, minimum=0)
    if on_result is not None and not callable(on_result):
        raise InvalidArgumentError(f"on_result must be a callable (piece, result, seconds) or None, got {on_result!r}")
    if ais is not None:
        from .ais import check_annealable

        check_annealable(model)  # relaxed categorical latents: refused before any work (IWAE alone is log p(x) there)
    local_opt = list(local_opt)
    if seed is not None and seed + 2 + len(local_opt) > 2**63:  # (seed + i for every piece i fits torch's seed)
        raise InvalidArgumentError(f"seed must be an int in [0, 2**63 - {2 + len(local_opt)}] (seed + i seeds piece i), "
                                   f"got {seed}")
    own_family = _own_family(model, x, local_opt)  # a clear TypeError before any work when local_opt cannot run
    with torch.random.fork_rng(devices=[], enabled=seed is not None):  # torch's generator changes only once work starts
        if seed is not None:
            torch.default_generator.manual_seed(seed)  # the families built from scratch (on the CPU)
        families = [(family_name(n) if isinstance(n, ConditionalDistribution) else LOCAL_ALIASES.get(n, n),
                     *_local_family(n, own_family)) for n in local_opt]  # checks names before any work
    progress, force = check_progress(progress), check_force(force)
    t0 = time.perf_counter()
    if iwae is not None and iwae.per_example.shape[0] != x.shape[0]:
        raise ValueError(f"iwae holds {iwae.per_example.shape[0]} examples but x has {x.shape[0]}")
    done = _check_precomputed(precomputed, int(x.shape[0]), ais,  # (None: the model's own family)
                              {name: own_family if family is None else family for name, family, _ in families})
    check_budgets(len(x), iwae_k=None if iwae is not None else iwae_k, ais=None if "ais" in done else ais,
                  local_opt_kwargs=local_opt_kwargs if any(f"local:{n}" not in done for n, _, _ in families) else None,
                  force=force)
    shared = {"progress": progress, "force": force}

    def run(piece: str, index: int, estimate: Callable[[], Any]) -> Any:
        if piece in done:
            return done[piece]
        if seed is not None:
            torch.manual_seed(seed + index)
        start = time.perf_counter()
        result = estimate()
        if on_result is not None:
            on_result(piece, result, time.perf_counter() - start)
        return result

    iw = iwae if iwae is not None else run("iwae", 0, lambda: iwae_log_likelihood(
        model, x, k=iwae_k, batch_size=batch_size, device=device, **shared))
    iwae_k = iw.k
    log_px, source, ais_mean = iw.per_example, "IWAE", None
    per_point = {"iwae": iw.per_example}
    if ais is not None:
        from .ais import ais_log_likelihood, combine_max

        a = run("ais", 1, lambda: ais_log_likelihood(model, x, device=device, **{**shared, **ais}))
        ais_mean = a.mean
        log_px, source = combine_max(a, iw), "max(AIS, IWAE)"
        per_point["ais"] = a.per_example
    local: dict[str, float] = {}
    per_point.update({"log_px": log_px, "elbo": iw.elbo_per_example, "inference_gap": log_px - iw.elbo_per_example})
    for j, (name, family, init) in enumerate(families):
        res = run(f"local:{name}", 2 + j, lambda family=family, init=init: optimize_local_posterior(
            model, x, family=family, init=init, device=device, **{**shared, **(local_opt_kwargs or {})}))
        local[name] = res.mean
        per_point[f"local:{name}"] = res.elbo.detach().to("cpu", torch.float64)
    own = family_name(own_family) if own_family is not None else None
    if own is not None and f"local:{own}" in per_point:
        per_point["approximation_gap"] = log_px - per_point[f"local:{own}"]
        per_point["amortization_gap"] = per_point[f"local:{own}"] - iw.elbo_per_example
    settings = {"model": type(model).__name__, "iwae_k": iwae_k, "ais": ais,
                "local_opt": [name for name, _, _ in families], "local_opt_kwargs": local_opt_kwargs or {},
                "seconds": time.perf_counter() - t0}
    return GapColumn(label=label or own or type(model).__name__, own=own, n=int(x.shape[0]),
                     log_px=float(log_px.mean()), log_px_source=source, iwae=iw.mean, ais=ais_mean, local=local,
                     elbo=float(iw.elbo_per_example.mean()), settings=settings,
                     stderr={key: _stderr(v) for key, v in per_point.items()})


def _check_precomputed(precomputed: Mapping[str, Any] | None, n: int, ais: dict[str, Any] | None,
                       families: Mapping[str, Any]) -> dict[str, Any]:
    """The pieces of ``precomputed`` (checked: known names, result types, ``n`` points, the family a local
    optimisation optimised, the chains and steps of AIS), before any work."""
    if precomputed is None:
        return {}
    if not isinstance(precomputed, Mapping):
        raise InvalidArgumentError(f"precomputed must be a mapping of piece name to result, got {type(precomputed).__name__}")
    from .ais import AISResult, ais_settings

    expected = {**({"ais": AISResult} if ais is not None else {}),
                **{f"local:{name}": LocalOptResult for name in families}}
    for piece, result in precomputed.items():
        if piece == "iwae":
            raise InvalidArgumentError("precomputed['iwae']: pass a precomputed IWAE as iwae= (an IWAEResult)")
        if piece not in expected:
            raise InvalidArgumentError(f"precomputed[{piece!r}] is not an estimate of this call; accepted: "
                                       f"{', '.join(map(repr, expected)) or 'none (no ais, no local_opt)'}")
        if not isinstance(result, expected[piece]):
            raise InvalidArgumentError(f"precomputed[{piece!r}] must be of type {expected[piece].__name__}, "
                                       f"got {type(result).__name__}")
        values = result.per_example if piece == "ais" else result.elbo
        if values.ndim != 1 or values.shape[0] != n:
            raise InvalidArgumentError(f"precomputed[{piece!r}] holds {tuple(values.shape)} per-point values but x "
                                       f"has {n} points")
        if piece == "ais":
            want = ais_settings(**{k: v for k, v in ais.items()  # type: ignore[union-attr]
                                   if k not in ("progress", "return_diagnostics", "force")})
            got = {k: result.settings.get(k) for k in ("n_chains", "n_steps")}
            if got != {k: want[k] for k in ("n_chains", "n_steps")}:
                raise InvalidArgumentError(f"precomputed['ais'] ran {got['n_chains']} chains x {got['n_steps']} "
                                           f"steps but ais asks for {want['n_chains']} x {want['n_steps']}")
        else:
            family = type(families[piece[len("local:"):]]).__name__
            if result.family != family:
                raise InvalidArgumentError(f"precomputed[{piece!r}] optimised a {result.family}, but this piece "
                                           f"optimises a {family}")
    return dict(precomputed)


def _stderr(values: Tensor) -> float:
    """Standard error of the mean of per-point values (NaN for one point)."""
    values = values.detach().to("cpu", torch.float64)
    return float(values.std() / math.sqrt(values.numel())) if values.numel() > 1 else math.nan


def check_budgets(n: int, *, iwae_k: int | None = None, ais: dict[str, Any] | None = None,
                  local_opt_kwargs: dict[str, Any] | None = None, force: bool = False) -> None:
    """Check the work budget of every estimate of a gap column on ``n`` examples, before any of them runs.

    Parameters
    ----------
    n : int
        Examples.
    iwae_k : int, optional
        The IWAE samples (None: no IWAE estimate).
    ais : dict, optional
        Keyword arguments of :func:`~vaekit.inference.ais_log_likelihood` (None: no AIS).
    local_opt_kwargs : dict, optional
        Keyword arguments of :func:`~vaekit.inference.optimize_local_posterior` (None: no
        local optimisation).
    force : bool
        Skip the budget (a ``force`` inside ``ais`` or ``local_opt_kwargs`` applies to that
        estimate).

    Raises
    ------
    TypeError, ValueError
        For unknown or bad settings (named), and
        :class:`~vaekit.inference.budget.WorkBudgetError` for work beyond the budget.
    """
    import inspect

    from .ais import ais_settings, ais_work

    if iwae_k is not None:
        iwae_work(n, check_int("iwae_k", iwae_k)).check(force)
    if ais is not None:
        settings = ais_settings(**{k: v for k, v in ais.items() if k not in ("progress", "return_diagnostics", "force")})
        ais_work(n, settings).check(check_force(ais.get("force", False)) or force)
    if local_opt_kwargs is not None:
        bound = inspect.signature(optimize_local_posterior).bind(None, None, **local_opt_kwargs)
        bound.apply_defaults()
        a = bound.arguments
        ints = {name: check_int(name, a[name]) for name in ("k", "max_steps", "check_every", "check_k", "eval_k")}
        local_opt_work(n, **ints).check(check_force(a["force"]) or force)


def _rows(columns: Sequence[GapColumn]) -> list[tuple[str, list[float | None]]]:
    names = sorted({f for c in columns for f in c.local}, key=lambda f: (f != "af", f))
    rows: list[tuple[str, list[float | None]]] = [("log p̂(x)", [c.log_px for c in columns])]
    rows += [(f"L[q*_{'FFG' if f == 'gaussian' else f.upper()}]", [c.local.get(f) for c in columns]) for f in names]
    rows += [("L[q]", [c.elbo for c in columns]), ("Approximation gap", [c.approximation_gap for c in columns]),
             ("Amortization gap", [c.amortization_gap for c in columns]),
             ("Inference gap", [c.inference_gap for c in columns])]
    return rows


def _split_notes(columns: Sequence[GapColumn]) -> list[str]:
    """Why a column's approximation/amortization split is missing (a line per reason), for the table's footer."""
    notes = []
    for c in columns:
        if c.own is None:
            model = c.settings.get("model") or "the model"
            notes.append(f"{c.label}: no approximation/amortization split: it needs L[q*], the ELBO of the posterior "
                         f"optimised per datapoint, and {model} declares no amortized(x) -> (context, family) for local "
                         "optimisation; the inference gap is log p̂(x) - L[q].")
    skipped = [c.label for c in columns if c.own is not None and c.approximation_gap is None]
    if skipped:
        notes.append(f"{', '.join(skipped)}: no approximation/amortization split: it needs L[q*] of the model's "
                     "own family (local_opt / --local-opt).")
    return notes


def gap_table(columns: Sequence[GapColumn]) -> str:
    """The table as Markdown: one column per model, the rows of Cremer et al. Table 2.

    >>> col = GapColumn("q_FFG", "gaussian", 10, -90.0, "IWAE", -90.0, None, {"gaussian": -91.5}, -93.0)
    >>> print(gap_table([col]))
    | | q_FFG |
    |---|---|
    | log p̂(x) | -90.00 |
    | L[q*_FFG] | -91.50 |
    | L[q] | -93.00 |
    | Approximation gap | 1.50 |
    | Amortization gap | 1.50 |
    | Inference gap | 3.00 |
    <BLANKLINE>
    log p̂(x): IWAE. Nats, means over 10 test points.
    """
    fmt = lambda v: "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"  # noqa: E731
    lines = ["| | " + " | ".join(c.label for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(fmt(v) for v in values) + " |" for name, values in _rows(columns)]
    sources = sorted({c.log_px_source for c in columns})
    ns = sorted({c.n for c in columns})
    lines += ["", f"log p̂(x): {', '.join(sources)}. Nats, means over {', '.join(map(str, ns))} test points."]
    lines += _split_notes(columns)
    return "\n".join(lines)


def write_gap_report(columns: Sequence[GapColumn], folder: str | Path, stem: str = "gaps") -> dict[str, Path]:
    """Write ``<stem>.md``, ``<stem>.json`` and ``<stem>.csv`` (long format: row, model, value) to ``folder``."""
    if not columns:
        raise ValueError("columns is empty: compute at least one GapColumn with inference_gaps")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"md": folder / f"{stem}.md", "json": folder / f"{stem}.json", "csv": folder / f"{stem}.csv"}
    paths["md"].write_text(gap_table(columns) + "\n", encoding="utf-8")
    paths["json"].write_text(json.dumps([c.to_dict() for c in columns], indent=2) + "\n", encoding="utf-8")
    with open(paths["csv"], "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["row", "model", "value"])
        for name, values in _rows(columns):
            for c, v in zip(columns, values):
                w.writerow([name, c.label, "" if v is None else repr(float(v))])
    return paths
