"""Predictive metrics of grouped models, overall and per group (long-format rows)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["f1_weighted", "group_metric_rows", "summary_metrics"]


def f1_weighted(y_true: Tensor, y_pred: Tensor, n_classes: int) -> float:
    """Support-weighted mean of per-class F1 (scikit-learn's ``f1_score(average="weighted")``).

    >>> f1_weighted(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]), 2)
    0.7333333333333334
    """
    y_true, y_pred = y_true.reshape(-1).long(), y_pred.reshape(-1).long()
    if y_true.numel() == 0:
        return float("nan")
    tp = torch.bincount(y_true[y_true == y_pred], minlength=n_classes).double()
    support = torch.bincount(y_true, minlength=n_classes).double()
    predicted = torch.bincount(y_pred, minlength=n_classes).double()
    denom = support + predicted
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp))
    return float((f1 * support).sum() / support.sum())


def _per_example(out: Tensor, y: Tensor, task: str) -> dict[str, Tensor]:
    """Per-example metric values (sequence targets are averaged over their steps)."""
    if task == "classification":
        logp = torch.log_softmax(out.float(), -1)
        nll = -logp.gather(-1, y.long().unsqueeze(-1)).squeeze(-1)
        correct = (out.argmax(-1) == y).double()
        if y.dim() == 2:  # sequences: mean over steps
            nll, correct = nll.mean(-1), correct.mean(-1)
        return {"accuracy": correct, "log_loss": nll.double()}
    err = (out.reshape(y.shape[0], -1) - y.reshape(y.shape[0], -1)).double()
    return {"sq_error": err.pow(2).mean(-1), "abs_error": err.abs().mean(-1)}


def group_metric_rows(out: Tensor, y: Tensor, groups: Tensor, task: str, level_names: Sequence[str],
                      group_names: Sequence[Sequence[str]], n_classes: int | None = None) -> list[dict[str, Any]]:
    """Long-format rows ``{level, group, metric, value}`` per level and group present in ``groups``.

    Classification: ``n``, ``accuracy``, ``log_loss``, ``f1_weighted``; regression: ``n``,
    ``rmse``, ``mae``.

    Parameters
    ----------
    out : Tensor of shape (n, ..., outputs)
        Logits (classification) or predicted means (regression).
    y : Tensor of shape (n, ...)
    groups : Tensor of shape (n, L)
    task : {"classification", "regression"}
    """
    per = _per_example(out, y, task)
    rows: list[dict[str, Any]] = []
    pred = out.argmax(-1) if task == "classification" else None
    for l, lname in enumerate(level_names):
        g = groups[:, l].long()
        G = len(group_names[l])
        n = torch.bincount(g, minlength=G).double()
        present = torch.nonzero(n > 0).flatten().tolist()
        sums = {k: torch.bincount(g, weights=v, minlength=G) for k, v in per.items()}
        if task == "classification":
            stats = {"accuracy": sums["accuracy"] / n.clamp_min(1), "log_loss": sums["log_loss"] / n.clamp_min(1)}
        else:
            stats = {"rmse": (sums["sq_error"] / n.clamp_min(1)).sqrt(), "mae": sums["abs_error"] / n.clamp_min(1)}
        order = torch.argsort(g, stable=True) if task == "classification" else None
        starts = torch.cumsum(n, 0).long() - n.long()
        for gid in present:
            name = group_names[l][gid]
            rows.append({"level": lname, "group": name, "metric": "n", "value": float(n[gid])})
            for k, v in stats.items():
                rows.append({"level": lname, "group": name, "metric": k, "value": float(v[gid])})
            if order is not None:
                idx = order[int(starts[gid]): int(starts[gid]) + int(n[gid])]
                f1 = f1_weighted(y[idx], pred[idx], int(n_classes or out.shape[-1]))
                rows.append({"level": lname, "group": name, "metric": "f1_weighted", "value": f1})
    return rows


def summary_metrics(out: Tensor, y: Tensor, groups: Tensor, task: str, n_classes: int | None = None) -> dict[str, float]:
    """Overall metrics and the 10th/50th/90th percentiles over the level-0 groups present.

    Classification: ``accuracy``, ``log_loss``, ``f1_weighted``, ``group_accuracy_p{10,50,90}``;
    regression: ``rmse``, ``mae``, ``group_rmse_p{10,50,90}``.

    >>> m = summary_metrics(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0]), torch.tensor([[0], [1]]), "classification")
    >>> m["accuracy"], m["group_accuracy_p50"]
    (0.5, 0.5)
    """
    per = _per_example(out, y, task)
    g = groups[:, 0].long()
    n = torch.bincount(g).double()
    q = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    if task == "classification":
        res = {"accuracy": float(per["accuracy"].mean()), "log_loss": float(per["log_loss"].mean()),
               "f1_weighted": f1_weighted(y, out.argmax(-1), int(n_classes or out.shape[-1]))}
        acc = (torch.bincount(g, weights=per["accuracy"]) / n.clamp_min(1))[n > 0]
        res.update({f"group_accuracy_p{int(p * 100)}": float(v) for p, v in zip(q, torch.quantile(acc, q))})
    else:
        res = {"rmse": float(per["sq_error"].mean().sqrt()), "mae": float(per["abs_error"].mean())}
        rmse = (torch.bincount(g, weights=per["sq_error"]) / n.clamp_min(1))[n > 0].sqrt()
        res.update({f"group_rmse_p{int(p * 100)}": float(v) for p, v in zip(q, torch.quantile(rmse, q))})
    return res
