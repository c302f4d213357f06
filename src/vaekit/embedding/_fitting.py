"""``VAEEmbedder.fit``: input, normalisation, split, warm start, logdir checkpoints, Ctrl-C."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn.utils import check_random_state

from . import io
from ._training import LoopState, TrainData, run_epochs
from ._model import auto_hidden_layers, build_vae, state_size
from ._neighbors import N_PCA_ROWS, NeighborTerm, knn_graph, pca_projection
from .inputs import ArraySource, ConcatSource, Source, as_source, check_array_input, feature_statistics, validate_source

if TYPE_CHECKING:
    from .estimator import VAEEmbedder

__all__ = ["fit", "build_model", "model_size", "resolve_max_epochs", "ARCHITECTURE_PARAMS", "SCALE_FLOOR"]

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
        if name.endswith("_") and not name.startswith("__") or name in ("_optimizer_state", "_loop_lr"):
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
        raise type(e)(f"validation_data: {e}") from None
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
        else:
            model = build_model(est, source.n_features).to(device)
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
        optimizer = adam(model.parameters(), est.learning_rate)
        history = list(est.history_) if continuing else []
        state = LoopState(lr=getattr(est, "_loop_lr", est.learning_rate) if continuing else est.learning_rate,
                          history=history)
        if continuing and getattr(est, "_optimizer_state", None) is not None:
            optimizer.load_state_dict(est._optimizer_state)
        generator = torch.Generator().manual_seed(seed + len(history))
        term = neighbor_term(est, data, seed)
        # with the neighbour term a batch holds batch_size // 2 anchors (an epoch has twice the steps), and the
        # map's neighbourhoods settle within ~1,500 steps (MNIST 10-NN accuracy 0.921 after 7 epochs, 0.927 after 10)
        if term is None:
            n_epochs = resolve_max_epochs(est.max_epochs, len(data.train), est.batch_size)
        else:
            n_epochs = resolve_max_epochs(est.max_epochs, len(data.train), max(1, est.batch_size // 2), steps=1500)

        def finish(reason: str) -> None:
            est.model_, est.mean_, est.scale_ = model, np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64)
            est.history_, est.n_iter_, est.stop_reason_ = state.history, len(state.history), reason
            est._optimizer_state, est._loop_lr = optimizer.state_dict(), state.lr

        curves = _Curves(est, len(history) + 1)

        def on_epoch(record: dict[str, Any]) -> None:
            if est.verbose:
                print(f"epoch {record['epoch']:4d}  train {record['train_loss']:.4f}  val {record['val_loss']:.4f}  "
                      f"lr {record['lr']:.2e}" + (f"  skipped {record['skipped_steps']}" if record["skipped_steps"] else ""),
                      flush=True)
            if est.logdir is not None:
                finish("checkpoint")
                io.save(est, est.logdir, overwrite=True, training_state=True)
                curves.add(record)

        interrupted = False
        try:
            run_epochs(model, optimizer, data, state, n_epochs=n_epochs, batch_size=est.batch_size, generator=generator,
                       plateau=est.lr_schedule == "plateau", early_stopping=est.early_stopping,
                       n_iter_no_change=est.n_iter_no_change, tol=est.tol, min_lr=1e-3 * est.learning_rate,
                       on_epoch=on_epoch, term=term)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            curves.close()
        if state.best_state is not None:
            model.load_state_dict(state.best_state)
        finish("interrupted" if interrupted else state.stopped)
    if est.logdir is not None:
        io.save(est, est.logdir, overwrite=True, training_state=True)
    if interrupted:
        warnings.warn(f"fit interrupted (KeyboardInterrupt) after {est.n_iter_} epoch(s); the embedder keeps the best "
                      "weights so far and is usable; call fit again with warm_start=True to continue", RuntimeWarning,
                      stacklevel=3)
    return est


def neighbor_term(est: VAEEmbedder, data: TrainData, seed: int) -> NeighborTerm | None:
    """The neighbour term for ``est.neighbor_weight > 0`` (weight times the number of features), else None.

    The inputs' principal components come from a seeded sample of training rows (in the
    inputs' original units, undoing the standardisation); every training row is projected
    on them in one streaming pass and gets its ``n_neighbors`` nearest training rows (:func:`knn_graph`).
    """
    n_train = len(data.train)
    if est.neighbor_weight == 0 or n_train < 2:  # one training row has no neighbour
        return None
    rows = np.sort(np.random.default_rng(seed).permutation(data.train)[:N_PCA_ROWS])
    projection = data.scale[:, None] * pca_projection(data.rows(rows) * data.scale)
    y = torch.cat([data.rows(data.train[i:i + 4096]) @ projection for i in range(0, n_train, 4096)])
    graph = knn_graph(y, min(int(est.n_neighbors), n_train - 1), seed=seed).cpu()
    return NeighborTerm(float(est.neighbor_weight) * data.source.n_features, graph)


def _check_unit_interval(source: ArraySource | Any) -> None:
    """Bernoulli data must lie in [0, 1] (checked in a streaming pass)."""
    for start in range(0, len(source), 4096):
        block = source.rows(np.arange(start, min(start + 4096, len(source))))
        if block.min() < 0 or block.max() > 1:
            raise ValueError(f"likelihood='bernoulli' needs data in [0, 1], but {source.description} has values in "
                             f"[{block.min():.3g}, {block.max():.3g}] (rows {start}..); scale them, or use "
                             "likelihood='gaussian' with feature_normalization=True")


def adam(params: Any, lr: float) -> torch.optim.Adam:
    """Adam, fused into one kernel per step where this torch supports it (CPU from torch 2.4; ~5% of a step)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device without a fused Adam
        return torch.optim.Adam(params, lr=lr)


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


def hidden_layers_of(est: VAEEmbedder, n_features: int) -> tuple[int, ...]:
    """The encoder hidden sizes ``est`` uses for ``n_features`` inputs."""
    if est.hidden_layers is None:
        return auto_hidden_layers(n_features, est.n_components)
    return tuple(int(h) for h in est.hidden_layers)


def build_model(est: VAEEmbedder, n_features: int) -> Any:
    """A fresh VAE for ``est``'s parameters (initialised from torch's global generator)."""
    return build_vae(n_features, est.n_components, hidden_layers_of(est, n_features), est.posterior, est.n_flows,
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
