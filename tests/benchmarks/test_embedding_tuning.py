"""benchmarks/embedding_tuning.py: the former and the new neighbour-term defaults side by side (tiny data)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import vaekit.embedding
import vaekit.embedding._neighbors as neighbors


@pytest.fixture
def tuning(load_benchmark):
    return load_benchmark("embedding_tuning")


def test_before_fits_with_the_former_term_and_after_with_the_defaults(tuning, monkeypatch, tmp_path):
    seen, base = [], vaekit.embedding.VAEEmbedder

    class Short(base):  # the script's fits, 2 epochs each
        def fit(self, X, y=None):
            seen.append((neighbors.MIN_TERM_FEATURES, neighbors.EARLY_ATTRACTION_FEATURES, self.random_state))
            return base.fit(self.set_params(max_epochs=2), X)

    monkeypatch.setattr(vaekit.embedding, "VAEEmbedder", Short)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    x = (rng.normal(scale=6.0, size=(3, 6))[y] + rng.normal(size=(90, 6))).astype(np.float32)
    monkeypatch.setitem(tuning.suite.DATASETS, "digits",
                        lambda root: tuning.suite._split("digits", x, y, 0.3, "three tiny clusters"))
    tuning.main(["--datasets", "digits", "--seeds", "2", "--out-dir", str(tmp_path), "--name", "t"])
    assert seen == [(0, 0, 0), (0, 0, 1), (50, 600, 0), (50, 600, 1)]  # before, then after; constants restored
    assert (neighbors.MIN_TERM_FEATURES, neighbors.EARLY_ATTRACTION_FEATURES) == (50, 600)
    rows = json.loads((tmp_path / "t.json").read_text())["results"]
    assert [(r["setting"], r["seed"]) for r in rows] == [("before", 0), ("before", 1), ("after", 0), ("after", 1)]
    assert [(r["term_weight"], r["early_exaggeration"]) for r in rows] == [(0.4 * 6, 1.0)] * 2 + [(0.4 * 50, 12.0)] * 2
    assert all(0 <= r["knn_acc"] <= 1 and 0 <= r["trust"] <= 1 and np.isfinite(r["elbo"]) for r in rows)
    table = (tmp_path / "t.md").read_text()
    acc = np.array([r["knn_acc"] for r in rows[2:]])
    assert f"| digits | after | {acc.mean():.3f} ± {np.std(acc, ddof=1):.3f} |" in table
