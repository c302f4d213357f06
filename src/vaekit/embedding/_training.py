"""The compact training loop of :class:`~vaekit.embedding.VAEEmbedder`.

One epoch = one pass over the training rows in a seeded random order, in minibatches
whose rows are read (and, for out-of-core data, normalised) batch by batch. After each
epoch the validation loss (negative ELBO per example) drives the learning-rate plateau
schedule and early stopping, and the best weights so far are remembered.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..models.vae import VAE
from ..nn import eval_mode
from ._model import anchor_elbo_and_embedding
from ._neighbors import NeighborTerm
from .inputs import Source, batches

__all__ = ["TrainData", "LoopState", "run_epochs", "mean_loss"]

#: Gradient-norm clip of every step (the norm itself is logged per epoch).
CLIP_NORM = 100.0
#: Consecutive skipped (non-finite) steps after which training stops with an error.
MAX_BAD_STEPS = 100


@dataclass
class TrainData:
    """Rows of a source split into training and validation indices, normalised on the fly.

    ``cache`` holds every normalised row on the device when the data are in memory;
    otherwise rows are read from ``source`` per batch. Both paths compute the same float32
    values, so a model does not depend on where its data came from.
    """

    source: Source
    train: np.ndarray
    val: np.ndarray
    mean: Tensor
    scale: Tensor
    device: torch.device
    cache: Tensor | None = None

    def rows(self, index: np.ndarray) -> Tensor:
        """Normalised examples ``index`` (in any order), a float32 tensor (len(index), n_features) on the device."""
        if self.cache is not None:
            return self.cache[torch.from_numpy(index).to(self.device)]
        ordered = np.argsort(index, kind="stable")  # sources read ascending rows
        block = torch.from_numpy(self.source.rows(index[ordered])).to(self.device)
        return self.normalise(block[torch.from_numpy(np.argsort(ordered)).to(self.device)])

    def normalise(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.scale


@dataclass
class LoopState:
    """What the loop carries between epochs and between ``fit`` calls (``warm_start``)."""

    lr: float
    best_loss: float = math.inf
    best_state: dict[str, Tensor] | None = None
    bad_epochs: int = 0
    plateau_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""


def _step(model: VAE, optimizer: torch.optim.Optimizer, x: Tensor,
          term: NeighborTerm | None = None) -> tuple[float, float] | None:
    """One gradient step on ``-mean ELBO`` (plus ``term``); returns (loss, grad norm), or None when skipped.

    With a neighbour ``term``, ``x`` is anchors then their partners (:meth:`NeighborTerm.expand`):
    one encoder and flow pass gives every row's embedding for the term and the anchors' ELBO
    (:func:`anchor_elbo_and_embedding`); the ELBO is taken over the anchors only, so each
    training row enters it once per epoch, as without the term.
    """
    optimizer.zero_grad(set_to_none=True)
    if term is None:
        loss = -model.elbo_terms(x).elbo.mean()
    else:
        elbo, z = anchor_elbo_and_embedding(model, x, x.shape[0] - x.shape[0] // 2)
        loss = -elbo.mean() + term(z)
    if not torch.isfinite(loss):
        return None
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
    if not torch.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return None
    optimizer.step()
    return float(loss.detach()), float(norm)


@torch.no_grad()
def mean_loss(model: VAE, data: TrainData, index: np.ndarray, batch_size: int) -> float:
    """Negative ELBO per example over rows ``index`` (eval mode, no gradients)."""
    total, count = 0.0, 0
    with eval_mode(model):
        for idx in batches(len(index), batch_size, index):
            total += float(-model.elbo_terms(data.rows(idx)).elbo.sum())
            count += len(idx)
    return total / max(count, 1)


def run_epochs(model: VAE, optimizer: torch.optim.Optimizer, data: TrainData, state: LoopState, *, n_epochs: int,
               batch_size: int, generator: torch.Generator, plateau: bool, early_stopping: bool, n_iter_no_change: int,
               tol: float, min_lr: float, on_epoch: Callable[[dict[str, Any]], None] | None = None,
               term: NeighborTerm | None = None) -> None:
    """Train for at most ``n_epochs`` epochs, updating ``state`` in place after every epoch.

    The learning rate halves after ``n_iter_no_change // 2`` epochs (at least 1) without a
    relative improvement of ``tol`` in the monitored loss (validation loss, or the training
    loss without validation rows) when ``plateau``; with ``early_stopping`` training ends
    after ``n_iter_no_change`` such epochs or once the rate falls below ``min_lr``.
    With a neighbour ``term``, every batch holds ``batch_size // 2`` anchors of the epoch's
    order followed by one k-NN partner of each (:meth:`NeighborTerm.expand`), and the term
    is added to the step's loss (not to the monitored validation loss). A
    ``KeyboardInterrupt`` propagates after the state is consistent (the caller keeps the model).
    """
    patience = max(1, n_iter_no_change // 2)
    for _ in range(n_epochs):
        for group in optimizer.param_groups:
            group["lr"] = state.lr
        order = torch.randperm(len(data.train), generator=generator).numpy()
        total, count, skipped, norms = 0.0, 0, 0, []
        model.train()
        for idx in _train_batches(order, data.train, batch_size, term, generator):
            out = _step(model, optimizer, data.rows(idx), term)
            if out is None:
                skipped += 1
                if skipped >= MAX_BAD_STEPS and count == 0:
                    raise FloatingPointError(f"{skipped} consecutive training steps gave a non-finite loss or gradient; "
                                             "lower learning_rate or check the data's scale")
                continue
            total += out[0] * len(idx)
            count += len(idx)
            norms.append(out[1])
        train_loss = total / count if count else math.nan
        val_loss = mean_loss(model, data, data.val, batch_size) if len(data.val) else math.nan
        monitored = val_loss if len(data.val) else train_loss
        record = {"epoch": len(state.history) + 1, "train_loss": train_loss, "val_loss": val_loss, "lr": state.lr,
                  "skipped_steps": skipped, "grad_norm": float(np.median(norms)) if norms else math.nan}
        state.history.append(record)
        if math.isfinite(monitored) and (not math.isfinite(state.best_loss)
                                         or monitored < state.best_loss - tol * max(1.0, abs(state.best_loss))):
            state.best_loss, state.bad_epochs, state.plateau_epochs = monitored, 0, 0
            state.best_state = copy.deepcopy(model.state_dict())
        else:
            state.bad_epochs += 1
            state.plateau_epochs += 1
        if plateau and state.plateau_epochs >= patience:
            state.lr, state.plateau_epochs = state.lr * 0.5, 0
        if on_epoch is not None:
            on_epoch(record)
        if early_stopping and state.bad_epochs >= n_iter_no_change:
            state.stopped = f"no improvement of the monitored loss for {n_iter_no_change} epochs"
            return
        if early_stopping and state.lr < min_lr:
            state.stopped = f"learning rate fell below {min_lr:g}"
            return
    state.stopped = "max_epochs reached"


def _train_batches(order: np.ndarray, train: np.ndarray, batch_size: int, term: NeighborTerm | None,
                   generator: torch.Generator) -> Iterator[np.ndarray]:
    """Row indices of an epoch's training batches: sorted, or anchors then partners with a neighbour ``term``."""
    if term is None:
        yield from batches(len(order), batch_size, train[order])
        return
    anchors = max(1, batch_size // 2)
    for start in range(0, len(order), anchors):
        yield train[term.expand(order[start:start + anchors], generator)]
