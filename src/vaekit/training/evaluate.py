"""Mean objective metrics over a whole split (validation), optionally sharded over processes."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..nn.modes import eval_mode
from .batches import Batch, batch_len, take

__all__ = ["evaluate_objective"]


@torch.no_grad()
def evaluate_objective(objective: Any, model: nn.Module, x: Batch, *, batch_size: int = 1000, step: int = 0,
                       fabric: Any | None = None) -> dict[str, float]:
    """Mean of every metric of ``objective`` over ``x``, in eval mode and without gradients.

    Each batch's metrics are weighted by its size, so the result is the per-example mean
    over the whole split whatever the batching.

    Parameters
    ----------
    objective : callable
        ``loss, metrics = objective(model, batch, step)``.
    model : nn.Module
        Put in eval mode for the pass, then back in its previous mode.
    x : Tensor of shape (n, *data_shape), or dict of str to Tensor
        The split, on the model's device (a dict: Tensors sharing the first dimension).
    batch_size : int
        Examples per batch.
    step : int
        Passed to the objective (KL warm-up and similar schedules depend on it).
    fabric : lightning_fabric.Fabric, optional
        When given: batches are converted to its precision and run under its autocast, and
        each process evaluates ``x[rank::world_size]``, the sums being added across processes.

    Returns
    -------
    dict of str to float
        Metric name -> mean, sorted by name.

    Examples
    --------
    >>> from vaekit.models.vae import mlp_vae
    >>> from vaekit.objectives import ELBO
    >>> x = torch.bernoulli(torch.full((10, 4), 0.5))
    >>> sorted(evaluate_objective(ELBO(), mlp_vae([4], latent_features=2, hidden=[8]), x, batch_size=3))
    ['elbo', 'kl/z', 'loss', 'rec']
    """
    rank, world = (fabric.global_rank, fabric.world_size) if fabric is not None else (0, 1)
    device = fabric.device if fabric is not None else (next(iter(x.values())) if isinstance(x, dict) else x).device
    shard = take(x, slice(rank, None, world))
    n = batch_len(shard)
    sums: dict[str, Tensor] = {}
    with eval_mode(model):
        for i in range(0, n, batch_size):
            b = take(shard, slice(i, i + batch_size))
            nb = batch_len(b)
            if fabric is not None:
                b = fabric.strategy.precision.convert_input(b)
                with fabric.autocast():
                    _, metrics = objective(model, b, step)
            else:
                _, metrics = objective(model, b, step)
            for k, v in metrics.items():
                v = torch.as_tensor(v, device=device).float() * nb
                sums[k] = sums[k] + v if k in sums else v
    names = sorted(sums)
    vec = torch.stack([sums[k] for k in names] + [torch.tensor(float(n), device=device)])
    if world > 1:
        vec = fabric.all_reduce(vec, reduce_op="sum")  # type: ignore[union-attr]
    out = vec.tolist()
    return {k: v / out[-1] for k, v in zip(names, out)}
