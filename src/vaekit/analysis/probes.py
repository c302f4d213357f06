"""Decodability: how well labels can be read out of each latent's posterior mean, or any block's output (linear and MLP probes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import InvalidArgumentError, check_float, check_int
from ..nn import eval_mode
from ._common import block_outputs, check_block, check_labels, check_x, posterior_means

__all__ = ["ProbeResult", "probe_accuracy", "probe_latents"]


@dataclass
class ProbeResult:
    """Held-out accuracy of the probes trained on one set of features.

    Attributes
    ----------
    linear_accuracy : float
        Multinomial logistic regression on standardised features.
    mlp_accuracy : float or None
        One-hidden-layer MLP classifier (when asked for).
    chance : float
        Accuracy on the held-out set of always predicting the most frequent training class.
    n_train, n_test, n_classes : int
    """

    linear_accuracy: float
    mlp_accuracy: float | None
    chance: float
    n_train: int
    n_test: int
    n_classes: int

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers (what ``analysis.json`` stores)."""
        return asdict(self)


def _split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/held-out indices, stratified when every class has at least two examples."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    counts = np.unique(y, return_counts=True)[1]
    n_test = max(1, round(test_fraction * len(y)))
    strat = y if counts.min() >= 2 and n_test >= len(counts) and len(y) - n_test >= len(counts) else None
    train, test = train_test_split(idx, test_size=n_test, random_state=seed, stratify=strat)
    return np.sort(train), np.sort(test)


def probe_accuracy(features: Tensor | np.ndarray, labels: Tensor | np.ndarray, *, test_fraction: float = 0.3,
                   mlp: bool = False, seed: int = 0, max_iter: int = 1000) -> ProbeResult:
    """Train probes from ``features`` to ``labels`` and score them on held-out examples.

    Parameters
    ----------
    features : Tensor or ndarray of shape (n, D)
    labels : Tensor or ndarray of shape (n,)
        Integer class labels, at least two classes.
    test_fraction : float
        Fraction of examples held out for scoring, in (0, 1).
    mlp : bool
        Also train an ``MLPClassifier`` (one hidden layer of 64 units).
    seed : int
        Seed of the split and of the MLP.
    max_iter : int
        Iterations of the solvers.

    Returns
    -------
    ProbeResult

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.arange(60) % 2
    >>> f = torch.randn(60, 3, generator=g) + 4 * y[:, None]
    >>> r = probe_accuracy(f, y)
    >>> r.linear_accuracy, r.chance, r.n_test
    (1.0, 0.5, 18)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f = np.asarray(features.detach().cpu().numpy() if isinstance(features, Tensor) else features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must have shape (n, D), got {f.shape}")
    y = check_labels(labels, f.shape[0]).numpy()
    test_fraction = check_float("test_fraction", test_fraction, 0, 1, low_open=True, high_open=True)
    seed, max_iter = check_int("seed", seed, 0), check_int("max_iter", max_iter)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"labels must hold at least 2 classes for a probe, got only {classes.tolist()}")
    train, test = _split(y, test_fraction, seed)
    if len(np.unique(y[train])) < 2:
        raise ValueError(f"the training part of the split ({len(train)} examples) holds one class only; pass more examples")
    values, counts = np.unique(y[train], return_counts=True)
    chance = float(np.mean(y[test] == values[np.argmax(counts)]))
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    linear.fit(f[train], y[train])
    mlp_acc = None
    if mlp:
        net = make_pipeline(StandardScaler(), MLPClassifier((64,), max_iter=max_iter, random_state=seed))
        net.fit(f[train], y[train])
        mlp_acc = float(net.score(f[test], y[test]))
    return ProbeResult(float(linear.score(f[test], y[test])), mlp_acc, chance, len(train), len(test), len(classes))


def probe_latents(model: Any, x: Tensor, labels: Tensor | np.ndarray, *, test_fraction: float = 0.3,
                  mlp: bool = False, seed: int = 0, batch_size: int = 256,
                  blocks: str | Sequence[str] | None = None) -> dict[str, ProbeResult]:
    """Probes from each named latent's posterior mean (or each block's output) to the labels.

    Parameters
    ----------
    model : LatentVariableModel
    x : Tensor of shape (n, *data_shape)
    labels : Tensor or ndarray of shape (n,)
    test_fraction, mlp, seed
        As in :func:`probe_accuracy`.
    batch_size : int
    blocks : str or sequence of str, optional
        What to probe (default: every latent). A latent name probes its posterior mean; any
        other block of a hierarchical VAE probes its output in the posterior pass at
        posterior means (:func:`vaekit.analysis.block_output`), flattened per example.

    Returns
    -------
    dict of str to ProbeResult
        One entry per latent (or block), plus ``"all"`` (the features concatenated) when there are several.

    Examples
    --------
    >>> from vaekit.models.hierarchical import ladder_vae
    >>> model = ladder_vae([6], hidden=(8, 4), latent=(3, 2))
    >>> x, y = torch.rand(40, 6).round(), torch.arange(40) % 2
    >>> sorted(probe_latents(model, x, y, blocks=["h1", "z2"]))
    ['all', 'h1', 'z2']
    """
    x = check_x(model, x)
    labels = check_labels(labels, x.shape[0])
    names = [blocks] if isinstance(blocks, str) else None if blocks is None else list(blocks)
    if names is not None:
        if not names:
            raise InvalidArgumentError("blocks must name at least one latent or block (or be None for every latent)")
        names = [check_block(model, b, "blocks") for b in names]
    with eval_mode(model), torch.no_grad():
        if names is None:
            means = posterior_means(model, x, batch_size=batch_size)
        else:
            means = {b: block_outputs(model, x, b, batch_size=batch_size).flatten(1) for b in names}
    out = {name: probe_accuracy(m, labels, test_fraction=test_fraction, mlp=mlp, seed=seed) for name, m in means.items()}
    if len(means) > 1:
        out["all" if "all" not in means else "all_latents"] = probe_accuracy(torch.cat(list(means.values()), 1), labels, test_fraction=test_fraction, mlp=mlp, seed=seed)
    return out
