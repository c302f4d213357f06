"""New groups for group-latent models: posterior inference from k labelled examples, the
amortized set encoder, the data-efficiency curve and the evaluation of a grouped run.

(a) :func:`infer_new_group` optimises a new group's mean-field Gaussian posterior with the
network frozen (the group's own ELBO: its k examples' log-likelihood minus its KL to the
prior). (b) :func:`amortized_new_group` maps the k examples to the posterior in one pass with
the model's :class:`~vaekit.nn.predictors.SetEncoder`, trained after the model by
:func:`fit_group_encoder`. :func:`data_efficiency_curve` scores both against the prior mean
(what the model predicts for a group it knows nothing about) on each group's other examples.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Normal, kl_divergence

from .._checks import check_float, check_int
from ..models.group import GroupPredictor
from ..nn.modes import eval_mode

__all__ = ["infer_new_group", "amortized_new_group", "fit_group_encoder", "data_efficiency_curve", "evaluate_groups"]

Method = Literal["prior", "optimize", "amortized"]


def _latent_index(model: GroupPredictor, level: int) -> int:
    if not isinstance(model, GroupPredictor):
        raise TypeError(f"model must be a GroupPredictor, got {type(model).__name__}")
    model._require_built()
    if level not in getattr(model, "latent_levels", []):
        raise ValueError(f"level {level} has no group latent (injection per level: {model.modes}); pick one of "
                         f"{model.latent_levels}")
    return model.latent_levels.index(level)


def _check_set(model: GroupPredictor, x: Tensor, y: Tensor, groups: Tensor | None) -> None:
    if x.shape[0] == 0 or x.shape[0] != y.shape[0] or (groups is not None and groups.shape[0] != x.shape[0]):
        raise ValueError(f"x, y (and groups) must have the same non-zero number of examples, got {x.shape[0]}, "
                         f"{y.shape[0]}{'' if groups is None else ', ' + str(groups.shape[0])}")
    model._check_y(y, "y")


def _other_latents(model: GroupPredictor, n: int, groups: Tensor | None) -> list[Tensor]:
    """Posterior means of the known levels' groups (prior means without ids), each (n, d)."""
    if groups is not None:
        return [z.detach() for z in model.latents(groups, "mean", new_groups="prior")]
    return [model.latent.prior_params(i)[0].detach().expand(n, -1) for i in range(len(model.latent_levels))]


def _log_lik(model: GroupPredictor, x: Tensor, y: Tensor, zs: list[Tensor], i: int, z: Tensor) -> Tensor:
    zs = list(zs)
    zs[i] = z.expand(x.shape[0], -1)
    return model.log_likelihood(model.outputs(x, zs), y)


def infer_new_group(model: GroupPredictor, x: Tensor, y: Tensor, groups: Tensor | None = None, *, level: int = 0,
                    steps: int = 200, lr: float = 0.05, samples: int = 4, assign_to: int | None = None,
                    seed: int = 0) -> Normal:
    """Fit a new group's posterior ``q(z) = N(loc, scale)`` to its labelled examples, network frozen.

    Maximises ``E_q[sum_i log p(y_i | x_i, z)] - KL(q || prior)`` with Adam (``samples``
    reparameterised draws per step), starting at the prior mean.

    Parameters
    ----------
    model : GroupPredictor
    x : Tensor of shape (k, *x_shape)
    y : Tensor of shape (k, ...)
    groups : Tensor of shape (k, n_levels), optional
        Ids at the *other* levels (used at their posterior means; column ``level`` ignored);
        without it every other level is at its prior mean.
    level : int
        The group level of the new group.
    steps, lr, samples : int, float, int
    assign_to : int, optional
        Write the result into the model's table at this group id (and mark it known).
    seed : int

    Returns
    -------
    torch.distributions.Normal with batch shape (d,)
    """
    i = _latent_index(model, level)
    steps, samples = check_int("steps", steps, 0), check_int("samples", samples)
    lr = check_float("lr", lr, 0, low_open=True)
    _check_set(model, x, y, groups)
    g = torch.Generator(device="cpu").manual_seed(seed)
    with eval_mode(model):
        zs = _other_latents(model, x.shape[0], groups)
        mu0, s0 = (t.detach() for t in model.latent.prior_params(i))
        loc = mu0.clone().requires_grad_(True)
        raw = torch.log(torch.expm1(0.5 * s0)).clone().requires_grad_(True)
        opt = torch.optim.Adam([loc, raw], lr=lr)
        for _ in range(steps):
            scale = F.softplus(raw) + 1e-6
            eps = torch.randn(samples, loc.shape[0], generator=g).to(loc)
            rec = torch.stack([_log_lik(model, x, y, zs, i, loc + scale * e).sum() for e in eps]).mean()
            loss = -rec + kl_divergence(Normal(loc, scale), Normal(mu0, s0)).sum()
            opt.zero_grad()
            loc.grad, raw.grad = torch.autograd.grad(loss, [loc, raw])
            opt.step()
    q = Normal(loc.detach(), F.softplus(raw.detach()) + 1e-6)
    if assign_to is not None:
        model.latent.set_posterior(i, int(assign_to), q.loc, q.scale)
    return q


def _set_features(model: GroupPredictor, x: Tensor, y: Tensor) -> Tensor:
    """Per-example input of the set encoder: trunk features (last step for sequences) and encoded y."""
    h = model.predictor.trunk(x)
    h = h[:, -1] if h.dim() == 3 else h
    if model.likelihood == "categorical":
        oh = F.one_hot(y.long(), model.predictor.out_features).to(h)
        yf = oh.mean(1) if oh.dim() == 3 else oh
    else:
        yf = y.reshape(y.shape[0], -1).to(h)
    return torch.cat([h.detach(), yf], -1)


def _encoder(model: GroupPredictor) -> Any:
    enc = getattr(model, "group_encoder", None)
    if enc is None:
        raise ValueError("this model has no amortized group encoder: build it with new_group_encoder=True "
                         "(level 0 must have a latent)")
    return enc


def amortized_new_group(model: GroupPredictor, x: Tensor, y: Tensor, *, assign_to: int | None = None) -> Normal:
    """A new level-0 group's posterior from its labelled examples in one pass of the set encoder.

    Parameters
    ----------
    x : Tensor of shape (k, *x_shape)
    y : Tensor of shape (k, ...)
    assign_to : int, optional
        Write it into the model's level-0 table at this id.

    Returns
    -------
    torch.distributions.Normal with batch shape (d,)
    """
    _latent_index(model, 0)
    enc = _encoder(model)
    _check_set(model, x, y, None)
    with eval_mode(model), torch.no_grad():
        loc, scale = enc(_set_features(model, x, y))
    if assign_to is not None:
        model.latent.set_posterior(0, int(assign_to), loc, scale)
    return Normal(loc, scale)


def fit_group_encoder(model: GroupPredictor, train: Mapping[str, Tensor], *, steps: int = 300, lr: float = 1e-3,
                      k_max: int = 20, sets_per_step: int = 16, target: Literal["posterior", "elbo"] = "posterior",
                      seed: int = 0) -> list[float]:
    """Train the model's set encoder on random subsets of training groups (network frozen).

    Each step draws ``sets_per_step`` level-0 groups and for each a random subset of
    ``1..k_max`` of its examples, and fits the encoder's posterior ``r`` for that subset:

    - ``target="posterior"`` (default): minimise ``KL(q_g || r)``, where ``q_g`` is the
      group's posterior learnt in training (its row of the model's table). Averaged over
      groups and subsets, the best ``r`` for a subset is the moment-matched mixture of the
      training groups' posteriors consistent with it: amortized inference learnt from the
      groups the model already knows. It keeps working when the network fits the training
      examples almost perfectly, which leaves their likelihood nothing to teach.
    - ``target="elbo"``: maximise the subset's own ELBO under ``r`` (the amortized version
      of :func:`infer_new_group`), per example.

    Returns
    -------
    list of float
        The loss of each step.
    """
    if target not in ("posterior", "elbo"):
        raise ValueError(f"target must be 'posterior' or 'elbo', got {target!r}")
    i = _latent_index(model, 0)
    enc = _encoder(model)
    steps, k_max, sets_per_step = check_int("steps", steps), check_int("k_max", k_max), check_int("sets_per_step", sets_per_step)
    x, y, groups = model._unpack(train)
    g = torch.Generator().manual_seed(seed)
    ids = groups[:, 0]
    known = torch.unique(ids)
    members = [torch.nonzero(ids == j).flatten() for j in known.tolist()]
    if not members:
        raise ValueError("train has no examples")
    opt = torch.optim.Adam(enc.parameters(), lr=check_float("lr", lr, 0, low_open=True))
    params = list(enc.parameters())
    losses = []
    with eval_mode(model):
        mu0, s0 = (t.detach() for t in model.latent.prior_params(i))
        table = model.latent.posterior(i)
        table = Normal(table.loc.detach(), table.scale.detach())
        for _ in range(steps):
            loss = 0.0
            for j in torch.randint(len(members), (sets_per_step,), generator=g).tolist():
                m = members[j]
                k = int(torch.randint(1, min(k_max, len(m)) + 1, (1,), generator=g))
                idx = m[torch.randperm(len(m), generator=g)[:k]]
                loc, scale = enc(_set_features(model, x[idx], y[idx]))
                if target == "posterior":
                    row = int(known[j])
                    loss = loss + kl_divergence(Normal(table.loc[row], table.scale[row]), Normal(loc, scale)).sum()
                    continue
                z = loc + scale * torch.randn(loc.shape, generator=g).to(loc)
                zs = _other_latents(model, k, groups[idx])
                elbo = _log_lik(model, x[idx], y[idx], zs, i, z).sum() - kl_divergence(Normal(loc, scale), Normal(mu0, s0)).sum()
                loss = loss - elbo / k
            loss = loss / sets_per_step
            opt.zero_grad()
            grads = torch.autograd.grad(loss, params)
            for p, gr in zip(params, grads):
                p.grad = gr
            opt.step()
            losses.append(float(loss.detach()))
    return losses


def _score(model: GroupPredictor, out: Tensor, y: Tensor) -> tuple[str, float]:
    if model.likelihood == "categorical":
        return "accuracy", float((out.argmax(-1) == y).double().mean())
    return "rmse", float((out.reshape(y.shape[0], -1) - y.reshape(y.shape[0], -1)).pow(2).mean().sqrt())


def data_efficiency_curve(model: GroupPredictor, data: Mapping[str, Tensor], ks: Sequence[int] = (1, 2, 5, 10, 20),
                          methods: Sequence[Method] = ("prior", "optimize"), *, level: int = 0, steps: int = 100,
                          lr: float = 0.05, max_groups: int | None = 50, seed: int = 0) -> list[dict[str, Any]]:
    """Accuracy (RMSE for regression) on a group's other examples vs the k examples used to infer it.

    Every group of ``level`` in ``data`` with more than ``max(ks)`` examples is treated as
    new: its examples are shuffled (``seed``), the first ``k`` infer its latent and the ones
    after the first ``max(ks)`` are scored (the same query set for every k). Methods:
    ``"prior"`` (the prior mean: the baseline without group information), ``"optimize"``
    (:func:`infer_new_group`) and ``"amortized"`` (:func:`amortized_new_group`, level 0).

    Returns
    -------
    list of dict
        Rows ``{method, k, metric, value, stderr, n_groups}`` (value = mean over groups).
    """
    i = _latent_index(model, level)
    ks = sorted({check_int("ks[i]", k) for k in ks})
    bad = [m for m in methods if m not in ("prior", "optimize", "amortized")]
    if bad or not methods:
        raise ValueError(f"methods must be a non-empty list of 'prior', 'optimize', 'amortized', got {list(methods)}")
    if "amortized" in methods:
        if level != 0:
            raise ValueError(f"the amortized encoder infers level-0 groups, got level={level}")
        _encoder(model)
    x, y, groups = model._unpack(data)
    g = torch.Generator().manual_seed(seed)
    ids = groups[:, level]
    chosen = [j for j in torch.unique(ids).tolist() if int((ids == j).sum()) > ks[-1]]
    if max_groups is not None:
        chosen = [chosen[int(t)] for t in torch.randperm(len(chosen), generator=g)[:max_groups].sort().values]
    if not chosen:
        raise ValueError(f"no group of level {level} has more than max(ks)={ks[-1]} examples in the data; lower ks")
    scores: dict[tuple[str, int], list[float]] = {}
    metric = "accuracy"
    for j in chosen:
        m = torch.nonzero(ids == j).flatten()
        m = m[torch.randperm(len(m), generator=g)]
        q_idx = m[ks[-1]:]
        zs_q = _other_latents(model, len(q_idx), groups[q_idx])
        for k in ks:
            s_idx = m[:k]
            for method in methods:
                if method == "prior":
                    z = model.latent.prior_params(i)[0].detach()
                elif method == "optimize":
                    z = infer_new_group(model, x[s_idx], y[s_idx], groups[s_idx], level=level, steps=steps, lr=lr, seed=seed).loc
                else:
                    z = amortized_new_group(model, x[s_idx], y[s_idx]).loc
                with eval_mode(model), torch.no_grad():
                    zz = list(zs_q)
                    zz[i] = z.expand(len(q_idx), -1)
                    metric, v = _score(model, model.outputs(x[q_idx], zz), y[q_idx])
                scores.setdefault((method, k), []).append(v)
    rows = []
    for (method, k), vs in sorted(scores.items(), key=lambda t: (t[0][0], t[0][1])):
        t = torch.tensor(vs, dtype=torch.float64)
        se = float(t.std() / math.sqrt(len(vs))) if len(vs) > 1 else float("nan")
        rows.append({"method": method, "k": k, "metric": metric, "value": float(t.mean()), "stderr": se, "n_groups": len(vs)})
    return rows


def evaluate_groups(model: GroupPredictor, data: Any, out_dir: str | os.PathLike[str], *, split: str = "test",
                    ks: Sequence[int] = (1, 2, 5, 10, 20), methods: Sequence[Method] | None = None, steps: int = 100,
                    lr: float = 0.05, max_groups: int | None = 50, encoder_steps: int = 300, device: str = "cpu",
                    seed: int = 0) -> dict[str, Any]:
    """Evaluate a trained group model on one split: overall and per-group metrics and the data-efficiency curve.

    Writes ``out_dir/group_metrics.json`` (metrics and curve), ``out_dir/groups_eval.csv`` (long
    format: split, level, group, metric, value), ``out_dir/data_efficiency.csv`` and
    ``out_dir/data_efficiency.png`` (``vaekit evaluate RUN`` of a group run: ``RUN/eval/``, through
    :func:`vaekit.runs.evaluate_group_run`). The curve treats the split's groups as new; when no
    group of the split has more than ``max(ks)`` examples (a split by example), it pools all splits
    (``data_efficiency_data = "all"``: those groups were seen in training, so the network knows
    them even though their table posterior is ignored). Methods default to prior + optimize
    (+ amortized when the model has a set encoder, which is then trained on the training split first).

    Parameters
    ----------
    model : GroupPredictor
    data : GroupedData
        Set up (its dict splits are read).

    Returns
    -------
    dict with ``metrics`` (dict of float) and ``data_efficiency`` (rows).
    """
    import csv

    if not isinstance(model, GroupPredictor):
        raise TypeError(f"model is a {type(model).__name__}, not a GroupPredictor; use vaekit.inference.iwae_log_likelihood")
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    batch = getattr(data, split)
    if batch is None:
        raise ValueError(f"{type(data).__name__} has no {split!r} split")
    batch = {k: v.to(device) for k, v in batch.items()}
    if methods is None:
        methods = ("prior", "optimize") + (("amortized",) if getattr(model, "group_encoder", None) is not None else ())
    if "amortized" in methods:
        fit_group_encoder(model, {k: v.to(device) for k, v in data.train.items()}, steps=encoder_steps, seed=seed)
    with eval_mode(model), torch.no_grad():
        report = model.validation_report(batch)
    curve, curve_data = [], split
    if model.latent is not None:
        ids = batch["groups"][:, 0]
        if int(torch.bincount(ids).max()) <= max(ks):  # split by example: too few per group in one split
            parts = [getattr(data, s) for s in ("train", "val", "test") if getattr(data, s) is not None]
            batch, curve_data = {k: torch.cat([p[k].to(device) for p in parts]) for k in batch}, "all"
        curve = data_efficiency_curve(model, batch, ks, methods, steps=steps, lr=lr, max_groups=max_groups, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {"split": split, "metrics": report.metrics, "data_efficiency": curve, "data_efficiency_data": curve_data}
    (out / "group_metrics.json").write_text(json.dumps(result, indent=2))
    for name, rows, cols in (("groups_eval.csv", [{"split": split, **r} for r in report.tables["groups"]],
                              ["split", "level", "group", "metric", "value"]),
                             ("data_efficiency.csv", curve, ["method", "k", "metric", "value", "stderr", "n_groups"])):
        with open(out / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
    if curve:
        _plot_curve(curve, out / "data_efficiency.png")
    return result


def _plot_curve(rows: list[dict[str, Any]], path: os.PathLike[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method in sorted({r["method"] for r in rows}):
        rs = [r for r in rows if r["method"] == method]
        ax.errorbar([r["k"] for r in rs], [r["value"] for r in rs], yerr=[0 if math.isnan(r["stderr"]) else r["stderr"] for r in rs],
                    marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("k labelled examples of the new group")
    ax.set_ylabel(rows[0]["metric"])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
