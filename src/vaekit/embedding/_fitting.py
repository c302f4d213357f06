"""``VAEEmbedder.fit``: input, normalisation, split, warm start, logdir checkpoints, Ctrl-C.

Training runs on vaekit's one training core: every batch goes through
:class:`~vaekit.training.step.TrainStep` (forward, backward, non-finite check, gradient
clipping, fused Adam update masked on the device) and the epochs are driven by
:func:`~vaekit.training.policy.fit_epochs` (plateau schedule, monitored loss, early
stopping, best weights). One epoch = one pass over the training rows in a seeded random
order, in minibatches whose rows are read (and, for out-of-core data, normalised) batch by
batch. After each epoch the validation loss (negative ELBO per example) drives the
learning-rate plateau schedule and early stopping, and the best weights so far are remembered.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn.utils import check_random_state
from torch import Tensor

from ..models.vae import VAE
from ..nn import eval_mode
from ..training.policy import EpochFit, Monitor, fit_epochs
from ..training.schedules import LRSchedule
from ..training.step import TrainStep, adam
from . import io
from ._model import anchor_elbo_and_embedding, auto_hidden_layers, build_vae, state_size
from ._neighbors import (EARLY_FRACTION, N_PCA_ROWS, Layout, NeighborTerm, early_exaggeration, graph_weights, knn_graph,
                         optimize_layout, pca_projection, term_weight, umap_layout)
from .inputs import (ArraySource, ConcatSource, Source, as_source, batches, check_array_input, feature_statistics,
                     validate_source)

if TYPE_CHECKING:
    from .estimator import VAEEmbedder

__all__ = ["fit", "build_model", "model_size", "resolve_max_epochs", "TrainData", "mean_loss", "ARCHITECTURE_PARAMS",
           "SCALE_FLOOR", "CLIP_NORM", "MAX_BAD_STEPS"]

#: ``layout_steps`` needs at least this many rows per neighbour: with fewer (e.g. 16 rows and 15 neighbours) the
#: neighbours cover most rows and the t-SNE form of the loss draws the whole layout onto one point.
LAYOUT_MIN_ROWS_PER_NEIGHBOR = 4

#: Gradient-norm clip of every step (the norm itself is logged per epoch).
CLIP_NORM = 100.0
#: An epoch of at least this many steps, all skipped (non-finite loss or gradient), ends the fit with an error
#: (and is the run of skipped steps at which ``fit_epochs`` hands back to :func:`run_epochs`).
MAX_BAD_STEPS = 100

#: Feature scales below this fraction of the mean scale are raised to it (near-constant features, e.g.
#: the border pixels of MNIST, would otherwise be blown up to dominate the likelihood).
SCALE_FLOOR = 0.1

#: Parameters that fix the model's shape; a checkpoint continued from ``logdir`` must agree on them.
ARCHITECTURE_PARAMS = ("n_components", "hidden_layers", "posterior", "n_flows", "prior", "n_prior_modes", "likelihood",
                       "activation", "feature_normalization")


def _check_logdir(est: VAEEmbedder, continuing: bool) -> bool:
    """Whether to continue from a checkpoint in ``est.logdir``; refuses foreign or unrequested content."""
    if est.logdir is None or continuing:
        return False
    logdir = Path(est.logdir)
    if io.is_saved(logdir):
        if not est.warm_start:
            raise ValueError(f"logdir={str(logdir)!r} already holds a VAEEmbedder checkpoint; pass warm_start=True to "
                             "continue training it, or choose another logdir (nothing is ever overwritten or deleted)")
        return True
    if logdir.exists() and (not logdir.is_dir() or any(logdir.iterdir())):
        raise ValueError(f"logdir={str(logdir)!r} exists and is not an empty directory (nor a VAEEmbedder checkpoint); "
                         "choose a new or empty directory, its files are never overwritten or deleted")
    return False


def _adopt_checkpoint(est: VAEEmbedder) -> None:
    """Load ``est.logdir``'s checkpoint into ``est`` (fitted attributes and optimiser state)."""
    saved = io.load(est.logdir, device=est.device)
    diff = {p: (getattr(saved, p), getattr(est, p)) for p in ARCHITECTURE_PARAMS
            if _norm(getattr(saved, p)) != _norm(getattr(est, p))}
    if diff:
        detail = ", ".join(f"{p}: checkpoint {a!r} vs now {b!r}" for p, (a, b) in diff.items())
        raise ValueError(f"logdir={str(est.logdir)!r} holds a model with other architecture parameters ({detail}); "
                         "use the same values or another logdir")
    for name, value in vars(saved).items():
        if name.endswith("_") and not name.startswith("__") or name in ("_optimizer_state", "_loop_lr", "_layout", "_width_rows"):
            setattr(est, name, value)


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


def read_validation(est: VAEEmbedder) -> Source:
    """``est.validation_data`` as a checked :class:`Source` with ``X``'s features (after ``X`` was read).

    Any kind of input ``fit`` accepts; in-memory data are checked by scikit-learn against the
    fitted feature count and names. Errors name ``validation_data``.
    """
    V = est.validation_data
    try:
        source = as_source(V)
        if source is None:
            source = ArraySource(check_array_input(est, V, reset=False), "validation_data")
        validate_source(source, est.n_features_in_)
    except (ValueError, TypeError, FileNotFoundError) as e:
        message = str(e)
        raise type(e)(message if message.startswith("validation_data") else f"validation_data: {message}") from None
    return source


def _in_memory(source: Source) -> bool:
    return isinstance(source, ArraySource) and not isinstance(source.array, np.memmap)


class _Curves:
    """TensorBoard curves of a fit in ``logdir/tensorboard/`` (opened at the first epoch, after its checkpoint)."""

    def __init__(self, est: VAEEmbedder, first_epoch: int) -> None:
        self.folder = Path(est.logdir) / "tensorboard" if est.logdir is not None and est.tensorboard else None
        self.first_epoch, self.writer = first_epoch, None

    def add(self, record: dict[str, Any]) -> None:
        if self.folder is None:
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=self.first_epoch)
        step = int(record["epoch"])
        for tag, key in (("train/loss", "train_loss"), ("val/loss", "val_loss"), ("train/lr", "lr"),
                         ("train/grad_norm", "grad_norm")):
            if math.isfinite(record[key]):
                self.writer.add_scalar(tag, float(record[key]), step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def fit(est: VAEEmbedder, X: Any) -> VAEEmbedder:
    """Train ``est`` on ``X`` (parameters already validated); see :meth:`VAEEmbedder.fit`."""
    continuing = bool(est.warm_start and hasattr(est, "model_"))
    if _check_logdir(est, continuing):
        _adopt_checkpoint(est)
        continuing = True
    before = {k: est.__dict__[k] for k in ("n_features_in_", "feature_names_in_") if k in est.__dict__}
    source = est._read_input(X, reset=not continuing)
    val_source = None
    if est.validation_data is not None:
        try:
            val_source = read_validation(est)
        except BaseException:  # X's feature count and names are not kept when its validation data are refused
            for k in ("n_features_in_", "feature_names_in_"):
                est.__dict__.pop(k, None)
            est.__dict__.update(before)
            raise
    n = len(source)
    if n < 2 and val_source is None:
        raise ValueError(f"n_samples = {n}: VAEEmbedder needs at least 2 examples to fit")
    if val_source is None:
        n_val = max(1, int(round(est.validation_fraction * n))) if est.validation_fraction > 0 else 0
    else:  # every row of X trains
        n_val = 0
    if n - n_val < 1:
        raise ValueError(f"validation_fraction={est.validation_fraction} leaves no training examples out of "
                         f"n_samples = {n}; lower it")
    mean, scale = normalisation(est, source)  # also rejects non-finite streamed values
    if est.likelihood == "bernoulli":
        _check_unit_interval(source)
        if val_source is not None:
            _check_unit_interval(val_source)
    seed = int(check_random_state(est.random_state).randint(2**31 - 1))
    device = est._torch_device()
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        if continuing:
            model, mean, scale = est.model_, est.mean_, est.scale_
            width_rows = getattr(est, "_width_rows", None)
        else:
            width_rows = n - n_val  # the training rows, which bound the automatic hidden sizes
            model = build_model(est, source.n_features, width_rows).to(device)
        perm = np.random.default_rng(seed).permutation(n)
        mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device)
        scale_t = torch.as_tensor(scale, dtype=torch.float32, device=device)
        if val_source is None:
            data = TrainData(source, np.sort(perm[n_val:]), np.sort(perm[:n_val]), mean_t, scale_t, device)
        else:  # X's rows, then the validation rows
            data = TrainData(ConcatSource(source, val_source), np.arange(n), np.arange(n, n + len(val_source)),
                             mean_t, scale_t, device)
        parts = [source] if val_source is None else [source, val_source]
        if all(_in_memory(p) for p in parts):  # in memory: flat float32
            flat = np.concatenate([np.ascontiguousarray(p.array.reshape(len(p), -1), dtype=np.float32) for p in parts])
            data.cache = data.normalise(torch.from_numpy(flat).to(device))
        term, projection = neighbor_term(est, data, seed)
        optimizer = adam(model.parameters(), lr=est.learning_rate)
        history = list(est.history_) if continuing else []
        if continuing and getattr(est, "_optimizer_state", None) is not None:
            optimizer.load_state_dict(est._optimizer_state)
        # a warm start continues at the rate the plateau schedule had reached (its counters start anew; a cosine
        # schedule starts again from its base rate)
        lr = getattr(est, "_loop_lr", est.learning_rate) if continuing else est.learning_rate
        # with the neighbour term the map forms over the whole step budget, as UMAP's and t-SNE's layouts do over
        # their fixed epochs: by default ("auto") a constant rate, no early stopping, the last weights kept (the
        # validation ELBO, which the term does not enter, stopped training or halved the rate before the map had
        # formed); explicit values are honoured. (A cosine decay from 3e-3 to 0, the suite's run 3 in
        # benchmarks/results/embedding_suite_cpu_cosine.md, was no better over the suite.)
        kind, stop_early = auto_policy(est.lr_schedule, est.early_stopping, term is not None)
        keep_best = term is None or stop_early
        # with the neighbour term a batch holds batch_size // 2 anchors (an epoch has twice the steps), and the
        # map's neighbourhoods settle within ~1,500 steps (MNIST 10-NN accuracy 0.921 after 7 epochs, 0.927 after 10)
        per_batch = est.batch_size if term is None else max(1, est.batch_size // 2)
        n_epochs = resolve_max_epochs(est.max_epochs, len(data.train), per_batch, steps=2000 if term is None else 1500)
        schedule = LRSchedule(kind, lr, total_steps=n_epochs * math.ceil(len(data.train) / per_batch),
                              patience=max(1, est.n_iter_no_change // 2), factor=0.5, threshold=est.tol)
        state = EpochFit(schedule, Monitor(est.tol) if keep_best else _LastWeights(est.tol), history=history)
        generator = torch.Generator().manual_seed(seed + len(history))

        def finish(reason: str) -> None:
            est.model_, est.mean_, est.scale_ = model, np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64)
            est._width_rows = width_rows
            est.history_, est.n_iter_, est.stop_reason_ = list(state.history), len(state.history), reason
            est._optimizer_state, est._loop_lr = optimizer.state_dict(), schedule.lr(0, len(state.history))
            # the training layout of transform: at the end of the fit only (a logdir checkpoint written after an epoch
            # holds none, and transforms with the encoder alone until the fit ends)
            # (an interrupted fit keeps the encoder's layout: layout_steps would delay the return to the user)
            if set_reference(est, source, None if reason == "checkpoint" else projection, seed,
                             move_layout=reason != "interrupted"):
                finetune_to_layout(model, data, est.embedding_, seed, max(1, est.batch_size // 2))

        curves = _Curves(est, len(history) + 1)

        bad_run = [0]  # skipped steps of the epochs in a row, up to this one, that had no good step

        def on_epoch(record: dict[str, Any]) -> None:
            bad_run[0] = bad_run[0] + record["skipped_steps"] if not math.isfinite(record["train_loss"]) else 0
            if bad_run[0] >= MAX_BAD_STEPS:
                # MAX_BAD_STEPS or more steps, over one epoch or several in a row, none of them good: nothing trains
                raise FloatingPointError(f"{bad_run[0]} training steps in a row (epochs without one good step) gave a "
                                         "non-finite loss or gradient; lower learning_rate or check the data's scale")
            if est.verbose:
                print(f"epoch {record['epoch']:4d}  train {record['train_loss']:.4f}  val {record['val_loss']:.4f}  "
                      f"lr {record['lr']:.2e}" + (f"  skipped {record['skipped_steps']}" if record["skipped_steps"] else ""),
                      flush=True)
            if est.logdir is not None:
                finish("checkpoint")
                io.save(est, est.logdir, overwrite=True, training_state=True)
                curves.add(record)

        objective = elbo_objective(model, term, rows_per_step(len(data.train), est.batch_size, term))
        step = TrainStep(objective, list(model.parameters()), optimizer, grad_clip=CLIP_NORM)
        validate = (lambda: mean_loss(model, data, data.val, est.batch_size)) if len(data.val) else None
        interrupted = False
        if term is not None and not continuing:  # a fresh map is laid out by the graph first (a warm start goes on)
            term.early_epochs = math.ceil(EARLY_FRACTION * n_epochs)
        try:
            run_epochs(step, model, epoch_batches(data, est.batch_size, term, generator, len(history)), state,
                       n_epochs=n_epochs, validate=validate, early_stopping=stop_early,
                       n_iter_no_change=est.n_iter_no_change,
                       min_lr=1e-3 * est.learning_rate if kind == "plateau" else None, on_epoch=on_epoch)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            curves.close()
            model.zero_grad(set_to_none=True)  # a step interrupted after its backward leaves no gradient behind
        if state.best_state is not None and keep_best:
            model.load_state_dict(state.best_state)
        try:
            finish("interrupted" if interrupted else state.stopped)
        except KeyboardInterrupt:  # while the layout moved or the model was fine-tuned towards it: the encoder's layout
            interrupted = True  # (of the model as it is), as for a fit interrupted during its epochs
            model.zero_grad(set_to_none=True)
            finish("interrupted")
        if bad_run[0]:  # the fit ended in epochs without one good step (too few steps for the error above)
            warnings.warn(f"the last {bad_run[0]} training steps were all skipped (non-finite loss or gradient): the "
                          "fit stopped learning; lower learning_rate or check the data's scale", RuntimeWarning,
                          stacklevel=3)
    if est.logdir is not None:
        io.save(est, est.logdir, overwrite=True, training_state=True)
    if interrupted:
        kept = "best weights so far" if keep_best else "weights of the last epoch"
        warnings.warn(f"fit interrupted (KeyboardInterrupt) after {est.n_iter_} epoch(s); the embedder keeps the {kept} "
                      "and is usable; call fit again with warm_start=True to continue", RuntimeWarning, stacklevel=3)
    return est


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

    def batch_rows(self, index_batches: list[np.ndarray]) -> Iterator[Tensor]:
        """:meth:`rows` of each batch of indices in turn.

        In memory, every batch's indices go to the device in one copy: a copy from (pageable)
        host memory waits for the device, so one per batch would be a synchronisation per
        training step, which the training step itself avoids.
        """
        if self.cache is None:
            for index in index_batches:
                yield self.rows(index)
            return
        flat = torch.from_numpy(np.concatenate(index_batches)).to(self.device)
        start = 0
        for index in index_batches:
            yield self.cache[flat[start:start + len(index)]]
            start += len(index)


@torch.no_grad()
def mean_loss(model: VAE, data: TrainData, index: np.ndarray, batch_size: int) -> float:
    """Negative ELBO per example over rows ``index`` (eval mode, no gradients; summed on the device, read once)."""
    total = torch.zeros((), dtype=torch.float64, device=data.device)
    with eval_mode(model):
        for idx in batches(len(index), batch_size, index):
            total -= model.elbo_terms(data.rows(idx)).elbo.sum()
    return float(total) / max(len(index), 1)


def elbo_objective(model: VAE, term: NeighborTerm | None,
                   rows_per_step: float) -> Callable[[Tensor, int], tuple[Tensor, dict[str, Tensor]]]:
    """The training step's ``forward``: ``-mean ELBO`` of a batch (plus the neighbour ``term``).

    With a neighbour ``term``, a batch is anchors then their partners (:meth:`NeighborTerm.expand`):
    one encoder and flow pass gives every row's embedding for the term and the anchors' ELBO
    (:func:`anchor_elbo_and_embedding`); the ELBO is taken over the anchors only, so each
    training row enters it once per epoch, as without the term.

    The ``"loss"`` metric is the loss times the batch's rows over ``rows_per_step`` (the
    epoch's mean), so that its mean over the epoch's steps, ``history_``'s ``train_loss``,
    is the mean per row: a smaller last batch weighs by its rows.
    """

    def forward(x: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        if term is None:
            loss = -model.elbo_terms(x).elbo.mean()
        else:
            elbo, z = anchor_elbo_and_embedding(model, x, x.shape[0] - x.shape[0] // 2)
            loss = -elbo.mean() + term(z)
        return loss, {"loss": loss.detach() * (x.shape[0] / rows_per_step)}

    return forward


def rows_per_step(n_train: int, batch_size: int, term: NeighborTerm | None) -> float:
    """The mean number of rows of an epoch's training batches (:func:`epoch_batches`).

    >>> rows_per_step(100, 32, None), rows_per_step(100, 32, NeighborTerm(1.0, torch.zeros(100, 1)))
    (25.0, 28.571428571428573)
    """
    per_batch = batch_size if term is None else max(1, batch_size // 2)
    return (n_train if term is None else 2 * n_train) / math.ceil(n_train / per_batch)


def epoch_batches(data: TrainData, batch_size: int, term: NeighborTerm | None,
                  generator: torch.Generator, first_epoch: int = 0) -> Callable[[int], Iterator[Tensor]]:
    """``batches(epoch)`` for :func:`~vaekit.training.policy.fit_epochs`: an epoch's training rows on the device.

    Each epoch draws a new order of the training rows from ``generator`` (and, with a
    neighbour ``term``, each anchor's partner), so a fit's batches depend only on its seed.
    """

    def epoch(index: int) -> Iterator[Tensor]:
        if term is not None:
            term.start_epoch(index - first_epoch)
        order = torch.randperm(len(data.train), generator=generator).numpy()
        yield from data.batch_rows(list(_train_batches(order, data.train, batch_size, term, generator)))

    return epoch


def _train_batches(order: np.ndarray, train: np.ndarray, batch_size: int, term: NeighborTerm | None,
                   generator: torch.Generator) -> Iterator[np.ndarray]:
    """Row indices of an epoch's training batches: sorted, or anchors then partners with a neighbour ``term``."""
    if term is None:
        yield from batches(len(order), batch_size, train[order])
        return
    anchors = max(1, batch_size // 2)
    for start in range(0, len(order), anchors):
        yield train[term.expand(order[start:start + anchors], generator)]


def run_epochs(step: TrainStep, model: VAE, batches_of: Callable[[int], Iterator[Tensor]], state: EpochFit, *,
               n_epochs: int, validate: Callable[[], float] | None, early_stopping: bool, n_iter_no_change: int,
               min_lr: float, on_epoch: Callable[[dict[str, Any]], None]) -> None:
    """Train for at most ``n_epochs`` epochs with :func:`~vaekit.training.policy.fit_epochs`, updating ``state``.

    The learning rate halves after ``n_iter_no_change // 2`` epochs (at least 1) without a
    relative improvement of ``tol`` in the monitored loss (validation loss, or the training
    loss without validation rows) under the plateau schedule; with ``early_stopping``
    training ends after ``n_iter_no_change`` such epochs or once the rate falls below
    ``min_lr``. Epochs in a row without one good step, at least :data:`MAX_BAD_STEPS`
    skipped steps in all, raise ``FloatingPointError`` (``fit``'s ``on_epoch`` does; fewer
    such steps at the end of the fit give a ``RuntimeWarning``); skipped steps in an epoch
    that also had a good step do not end the fit.
    A ``KeyboardInterrupt`` propagates after the state is consistent (the caller keeps the model).
    """
    fit_epochs(step, model, batches_of, state, n_epochs=n_epochs, validate=validate,
               patience=n_iter_no_change if early_stopping else None, min_lr=min_lr if early_stopping else None,
               on_epoch=on_epoch)


def auto_policy(lr_schedule: str, early_stopping: bool | str, with_term: bool) -> tuple[str, bool]:
    """(schedule kind, early stopping?) for ``lr_schedule`` and ``early_stopping``.

    "auto" is the constant schedule and no early stopping with the neighbour term, the plateau
    schedule and early stopping without it.

    >>> auto_policy("auto", "auto", False), auto_policy("auto", "auto", True), auto_policy("plateau", True, True)
    (('plateau', True), ('constant', False), ('plateau', True))
    >>> auto_policy("cosine", "auto", True)
    ('cosine', False)
    >>> auto_policy("constant", False, False)
    ('constant', False)
    """
    kind = lr_schedule if lr_schedule != "auto" else ("constant" if with_term else "plateau")
    stop = (not with_term) if isinstance(early_stopping, str) else bool(early_stopping)
    return kind, stop


class _LastWeights(Monitor):
    """A :class:`~vaekit.training.policy.Monitor` that tracks the best value but reports no improvement.

    With the neighbour term and no early stopping the last weights are kept, so ``fit_epochs``
    need not copy the weights at every improvement of the validation loss.
    """

    def observe(self, value: float) -> bool:
        super().observe(value)
        return False


def neighbor_term(est: VAEEmbedder, data: TrainData, seed: int) -> tuple[NeighborTerm | None, Tensor | None]:
    """The neighbour term for ``est.neighbor_weight > 0`` (weight times the number of features) and its projection.

    The inputs' principal components come from a seeded sample of training rows (in the
    inputs' original units, undoing the standardisation); every training row is projected
    on them in one streaming pass and gets its ``n_neighbors`` nearest training rows
    (:func:`knn_graph`). The projection (normalised rows to principal coordinates, shape
    (n_features, <= 50)) is returned beside the term: :func:`set_reference` projects the
    reference rows of ``transform`` with it. (None, None) without the term.
    """
    n_train = len(data.train)
    if est.neighbor_weight == 0:
        return None, None
    if n_train < 2:  # one training row has no neighbour
        warnings.warn(f"neighbor_weight={est.neighbor_weight} but only {n_train} training row is left (validation "
                      f"rows held out: {len(data.val)}): the neighbour term needs 2, so this fit is the plain VAE and "
                      "transform the encoder alone (lower validation_fraction, or give more rows)",
                      RuntimeWarning, stacklevel=4)
        return None, None
    rows = np.sort(np.random.default_rng(seed).permutation(data.train)[:N_PCA_ROWS])
    projection = data.scale[:, None] * pca_projection(data.rows(rows) * data.scale)
    y = torch.cat([data.rows(data.train[i:i + 4096]) @ projection for i in range(0, n_train, 4096)])
    graph = knn_graph(y, min(int(est.n_neighbors), n_train - 1), seed=seed).cpu()
    features = data.source.n_features
    y = y.cpu()
    weights = graph_weights(est.neighbor_graph, y, y, graph)
    term = NeighborTerm(term_weight(est.neighbor_weight, features), graph, est.neighbor_loss,
                        early_exaggeration=early_exaggeration(features),
                        probs=None if weights is None else weights.float())
    return term, projection


def set_reference(est: VAEEmbedder, source: Source, projection: Tensor | None, seed: int,
                  move_layout: bool = True) -> bool:
    """Record what ``transform``'s local optimisation places rows against: every row of ``X``, embedded and projected.

    ``embedding_`` is the encoder's embedding of ``X``'s rows (validation rows split off
    ``X`` included; ``validation_data`` not), moved by ``est.layout_method`` for
    ``est.layout_steps`` steps when those are > 0 (:func:`move_layout_of`), and ``_layout``
    (:class:`~vaekit.embedding._neighbors.Layout`) their coordinates on the neighbour term's
    principal components (``projection``), computed in the same float64 pass as
    ``transform`` computes a new row's, with the seed of the negatives and the loss and
    neighbour count of this fit. Without ``projection`` (no neighbour term, or a checkpoint
    written during the fit) both are removed: ``transform`` is then the encoder alone.
    Returns whether the layout moved (the caller then fits the model to it:
    :func:`finetune_to_layout`).
    """
    for name in ("embedding_", "_layout"):
        est.__dict__.pop(name, None)
    if projection is None:
        return False
    projection = projection.detach().cpu().double().numpy()
    both = est._encode_and_project(source, projection)
    est.embedding_ = np.ascontiguousarray(both[:, :est.n_components])
    est._layout = Layout(projection, np.ascontiguousarray(both[:, est.n_components:]), int(seed), est.neighbor_loss,
                         min(int(est.n_neighbors), len(both)), graph=est.neighbor_graph)
    return move_layout and move_layout_of(est, seed)


def move_layout_of(est: VAEEmbedder, seed: int) -> bool:
    """Move ``est.embedding_`` (the encoder's layout) as ``layout_method`` and ``layout_steps`` say; whether it moved.

    "umap": :func:`~vaekit.embedding._neighbors.umap_layout` (UMAP's edge-sampled layout
    optimisation over its fuzzy graph of the rows, back in the encoder's frame), and
    ``transform`` then weighs each new row's neighbours by their fuzzy memberships, the graph
    the layout was laid out on. "neighbor_loss": the fit's own neighbour loss, all rows
    together (:func:`~vaekit.embedding._neighbors.optimize_layout`), skipped with a warning
    below :data:`LAYOUT_MIN_ROWS_PER_NEIGHBOR` rows per neighbour. Each row's neighbours are
    its nearest other rows in the term's principal coordinates. On the CPU (2-D rows).
    """
    n = len(est.embedding_)
    method = resolve_layout_method(getattr(est, "layout_method", "auto"), n)
    steps = resolve_layout_steps(getattr(est, "layout_steps", 0), n, method)
    k = min(int(est.n_neighbors), n - 1)
    if not steps or k < 1:
        return False
    if method == "neighbor_loss" and n < LAYOUT_MIN_ROWS_PER_NEIGHBOR * k:
        warnings.warn(f"layout_steps={steps} ignored: {n} rows for n_neighbors={est.n_neighbors} (moving the "
                      f"layout with layout_method='neighbor_loss' needs at least {LAYOUT_MIN_ROWS_PER_NEIGHBOR} rows "
                      "per neighbour; with fewer the neighbours cover most rows and the loss draws them onto one "
                      "point)", RuntimeWarning, stacklevel=5)
        return False
    coords = torch.from_numpy(est._layout.coords)
    neighbors = knn_graph(coords, k, seed=seed)
    z = torch.from_numpy(est.embedding_)
    if method == "umap":
        moved = umap_layout(z, coords, neighbors, steps, seed)
        est._layout.graph = "fuzzy"
    else:
        moved = optimize_layout(z, neighbors, steps, seed, est.neighbor_loss,
                                weights=graph_weights(est.neighbor_graph, coords, coords, neighbors))
    est.embedding_ = np.ascontiguousarray(moved.numpy(), dtype=np.float32)
    est._layout.moved = True  # transform starts rows at their neighbours' median (the encoder's frame is the old one)
    return True


#: After the layout moved, the model trains this many steps towards it (:func:`finetune_to_layout`).
FINETUNE_STEPS = 300
#: The rate of those steps (Adam).
FINETUNE_LR = 1e-3
#: Their pull of each row's embedding to its place in the moved layout, per input feature.
FINETUNE_PULL = 0.5


def finetune_to_layout(model: VAE, data: TrainData, layout: np.ndarray, seed: int, batch_size: int,
                       steps: int = FINETUNE_STEPS) -> None:
    r"""Train ``model`` ``steps`` steps so that its latent space is the moved ``layout``, on the training core.

    Each step (:class:`~vaekit.training.step.TrainStep`, Adam at :data:`FINETUNE_LR`, the
    gradient norm clipped as the fit's) draws ``batch_size`` training rows at random (seeded)
    and minimises their negative single-sample ELBO plus
    :math:`\lambda D \, \overline{\lVert z_i - y_i \rVert^2}`, with :math:`z_i` the
    posterior's point estimate of row :math:`i` (its embedding), :math:`y_i` its place in
    ``layout``, :math:`D` the number of input features and :math:`\lambda` =
    :data:`FINETUNE_PULL` (per feature, as the ELBO it balances grows with the features). The
    decoder thus learns the moved layout's frame: ``inverse_transform`` of a point of the map
    decodes what lies there, where the unchanged model would decode what lay there before the
    move (measured: docs/embedding.md). ``layout`` has a row for every row of the source.
    """
    pull = FINETUNE_PULL * data.source.n_features
    target = torch.as_tensor(layout, dtype=torch.float32, device=data.device)
    train = torch.from_numpy(data.train)
    draws = torch.Generator().manual_seed(int(seed))

    def forward(index: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        elbo, z = anchor_elbo_and_embedding(model, data.rows(index.numpy()), len(index))
        loss = -elbo.mean() + pull * (z - target[index.to(data.device)]).square().sum(1).mean()
        return loss, {"loss": loss.detach()}

    step = TrainStep(forward, list(model.parameters()), adam(model.parameters(), lr=FINETUNE_LR), grad_clip=CLIP_NORM)
    model.train()
    try:
        for i in range(int(steps)):
            step(train[torch.randint(len(train), (min(batch_size, len(train)),), generator=draws)], i)
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


#: ``layout_steps="auto"`` with ``layout_method="neighbor_loss"``: this many steps (measured on MNIST subsets and the
#: suite's small sets: docs/embedding.md).
AUTO_LAYOUT_STEPS = 100

#: ``layout_steps="auto"`` with ``layout_method="umap"``: UMAP's default ``n_epochs``, 500 epochs below 10,000 rows
#: and 200 from 10,000 on.
AUTO_UMAP_EPOCHS = (500, 200)

#: ``layout_method="auto"`` is "umap" below this many rows of the layout and "neighbor_loss" from it on.
AUTO_LAYOUT_ROWS = 10_000


def resolve_layout_method(layout_method: str, n_rows: int) -> str:
    """``layout_method``, or for "auto" "umap" below :data:`AUTO_LAYOUT_ROWS` rows and "neighbor_loss" from them on.

    >>> resolve_layout_method("auto", 9999), resolve_layout_method("auto", 10000), resolve_layout_method("umap", 10**6)
    ('umap', 'neighbor_loss', 'umap')
    """
    if layout_method == "auto":
        return "umap" if n_rows < AUTO_LAYOUT_ROWS else "neighbor_loss"
    return layout_method


def resolve_layout_steps(layout_steps: int | str, n_rows: int, method: str = "neighbor_loss") -> int:
    """``layout_steps``, or for "auto" the default of the (resolved) ``method`` for a layout of ``n_rows`` rows.

    "umap": :data:`AUTO_UMAP_EPOCHS` (UMAP's ``n_epochs``); "neighbor_loss": :data:`AUTO_LAYOUT_STEPS`.

    >>> resolve_layout_steps("auto", 10000, "umap"), resolve_layout_steps("auto", 10001, "umap")
    (500, 200)
    >>> resolve_layout_steps("auto", 10000), resolve_layout_steps(7, 10, "umap")
    (100, 7)
    """
    if isinstance(layout_steps, str):
        if method == "umap":
            return AUTO_UMAP_EPOCHS[0] if n_rows <= AUTO_LAYOUT_ROWS else AUTO_UMAP_EPOCHS[1]
        return AUTO_LAYOUT_STEPS
    return int(layout_steps)


def _check_unit_interval(source: ArraySource | Any) -> None:
    """Bernoulli data must lie in [0, 1] (checked in a streaming pass)."""
    for start in range(0, len(source), 4096):
        block = source.rows(np.arange(start, min(start + 4096, len(source))))
        if block.min() < 0 or block.max() > 1:
            raise ValueError(f"likelihood='bernoulli' needs data in [0, 1], but {source.description} has values in "
                             f"[{block.min():.3g}, {block.max():.3g}] (rows {start}..); scale them, or use "
                             "likelihood='gaussian' with feature_normalization=True")


def resolve_max_epochs(max_epochs: int | None, n_train: int, batch_size: int, steps: int = 2000) -> int:
    """``max_epochs``, or for None about ``steps`` gradient steps within [5, 500] epochs.

    >>> resolve_max_epochs(None, 63000, 512), resolve_max_epochs(None, 900, 512), resolve_max_epochs(7, 10, 1)
    (17, 500, 7)
    >>> resolve_max_epochs(None, 54000, 256, steps=1500)
    8
    """
    if max_epochs is not None:
        return int(max_epochs)
    per_epoch = max(1, math.ceil(n_train / batch_size))
    return int(min(500, max(5, math.ceil(steps / per_epoch))))


def hidden_layers_of(est: VAEEmbedder, n_features: int, n_rows: int | None = None) -> tuple[int, ...]:
    """The encoder hidden sizes ``est`` uses for ``n_features`` inputs.

    With ``hidden_layers=None`` they depend on the training rows too (:func:`auto_hidden_layers`):
    ``n_rows``, or else those the fitted model was built for (``est._width_rows``; None for
    embedders fitted before the rule, whose sizes depend on the features alone).
    """
    if est.hidden_layers is None:
        rows = n_rows if n_rows is not None else getattr(est, "_width_rows", None)
        return auto_hidden_layers(n_features, est.n_components, rows)
    return tuple(int(h) for h in est.hidden_layers)


def build_model(est: VAEEmbedder, n_features: int, n_rows: int | None = None) -> Any:
    """A fresh VAE for ``est``'s parameters (initialised from torch's global generator); ``n_rows`` as for :func:`hidden_layers_of`."""
    return build_vae(n_features, est.n_components, hidden_layers_of(est, n_features, n_rows), est.posterior, est.n_flows,
                     est.prior, est.n_prior_modes, est.likelihood, est.activation, est.dropout)


def model_size(est: VAEEmbedder, n_features: int) -> int:
    """How many numbers (weights and buffers) :func:`build_model` would allocate, computed without building it."""
    return state_size(n_features, est.n_components, hidden_layers_of(est, n_features), est.posterior, est.n_flows,
                      est.prior, est.n_prior_modes, est.likelihood)


def normalisation(est: VAEEmbedder, source: Source) -> tuple[np.ndarray, np.ndarray]:
    """Feature mean and scale (floored) from one streaming pass; also checks the data are finite."""
    mean, std = feature_statistics(source)
    if not est.feature_normalization:
        return np.zeros_like(mean), np.ones_like(std)
    floor = SCALE_FLOOR * float(std.mean()) if std.mean() > 0 else 1.0
    return mean, np.maximum(std, floor if floor > 0 else 1.0)
