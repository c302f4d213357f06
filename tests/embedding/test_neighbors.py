"""The stochastic-neighbour term of VAEEmbedder (``neighbor_weight``): values, effect on neighbourhoods, checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from sklearn.neighbors import KNeighborsClassifier

from vaekit.embedding import VAEEmbedder
from vaekit.embedding._neighbors import NeighborTerm, input_affinities, neighbor_kl, pca_projection


def hand_affinities(x: np.ndarray, perplexity: float) -> np.ndarray:
    """Textbook t-SNE input affinities (all other rows are neighbours), bandwidth by root finding."""
    n = len(x)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    cond = np.zeros((n, n))
    for i in range(n):
        di = np.delete(d[i], i)

        def entropy_gap(log_beta: float) -> float:
            logits = -di * math.exp(log_beta)
            log_p = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
            return -(np.exp(log_p) * log_p).sum() - math.log(perplexity)

        beta = math.exp(brentq(entropy_gap, -20, 20, xtol=1e-12))
        w = np.exp(-(di - di.min()) * beta)
        cond[i, np.arange(n) != i] = w / w.sum()
    return (cond + cond.T) / (2 * n)


def test_input_affinities_match_hand_computed_values():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    p = input_affinities(torch.tensor(x), perplexity=2.0).double().numpy()
    expected = hand_affinities(x, 2.0)
    np.testing.assert_allclose(p, expected, atol=2e-4)
    assert p.sum() == pytest.approx(1.0, abs=1e-5) and np.allclose(p, p.T)


def test_neighbor_kl_matches_hand_computed_value():
    p = torch.tensor([[0.0, 0.3, 0.1], [0.3, 0.0, 0.1], [0.1, 0.1, 0.0]], dtype=torch.float64)
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    w = {(0, 1): 1 / 2, (0, 2): 1 / 5, (1, 2): 1 / 6}  # (1 + squared distance)^-1
    total = 2 * sum(w.values())
    expected = sum(2 * p[i, j].item() * math.log(p[i, j].item() / (w[i, j] / total)) for i, j in w)
    assert neighbor_kl(p, z).item() == pytest.approx(expected, rel=1e-10)


def test_term_gradient_pulls_neighbours_together():
    p = input_affinities(torch.tensor([[0.0], [0.1], [5.0], [5.1]]), perplexity=1.0)
    z = torch.tensor([[0.0], [3.0], [10.0], [13.0]], requires_grad=True)
    neighbor_kl(p, z).backward()
    assert z.grad[0, 0] < 0 < z.grad[1, 0]  # rows 0 and 1 are input neighbours: their embeddings approach


def test_pca_projection_and_single_row_batch():
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(0))
    v = pca_projection(x, 3)
    assert torch.allclose(v.T @ v, torch.eye(3), atol=1e-5)
    term = NeighborTerm(2.0, 5.0, torch.eye(4))
    assert term(None, torch.zeros(1, 4)).item() == 0.0  # a batch of one row has no neighbours


def hidden_classes(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """4 classes apart in 4 raw features, hidden from a 2-D VAE by 2 continuous factors copied to 16 features."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    centres = 3.0 * np.eye(4)
    classes = centres[y] + 0.3 * rng.normal(size=(n, 4))
    factors = rng.normal(size=(n, 2))
    copies = 0.3 * np.repeat(factors, 8, axis=1) + 0.02 * rng.normal(size=(n, 16))
    return np.concatenate([classes, copies], axis=1), y


def test_neighbor_term_raises_knn_accuracy():
    X, y = hidden_classes()
    args = dict(hidden_layers=(32,), n_flows=1, n_prior_modes=4, max_epochs=80, batch_size=100, random_state=0,
                device="cpu", early_stopping=False)
    accs = []
    for weight in (0.0, 20.0):
        emb = VAEEmbedder(neighbor_weight=weight, **args).fit(X[:300])
        accs.append(KNeighborsClassifier(5).fit(emb.transform(X[:300]), y[:300]).score(emb.transform(X[300:]), y[300:]))
    assert accs[1] >= 0.9 and accs[1] > accs[0] + 0.1, accs


def test_neighbor_fit_is_deterministic():
    X, _ = hidden_classes(120)
    args = dict(hidden_layers=(8,), n_flows=1, n_prior_modes=2, max_epochs=2, batch_size=32, device="cpu",
                neighbor_weight=5.0)
    a = VAEEmbedder(random_state=3, **args).fit_transform(X)
    assert np.array_equal(a, VAEEmbedder(random_state=3, **args).fit_transform(X))
    assert not np.allclose(a, VAEEmbedder(random_state=4, **args).fit_transform(X), atol=1e-3)


@pytest.mark.parametrize("param, value", [("neighbor_weight", -1.0), ("perplexity", 0.5)])
def test_bad_neighbor_parameters(param, value):
    with pytest.raises(ValueError, match=param):
        VAEEmbedder(**{param: value}, max_epochs=1).fit(np.zeros((10, 3)))
