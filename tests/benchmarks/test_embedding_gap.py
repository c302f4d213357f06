"""benchmarks/embedding_gap.py: training-layout and new-point scores of vaekit, UMAP and an MLP on UMAP's layout."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch

import vaekit.embedding


@pytest.fixture
def gap(load_benchmark):
    threads = torch.get_num_threads()  # main() sets the thread count
    yield load_benchmark("embedding_gap")
    torch.set_num_threads(threads)


def _clusters(gap, n=120, features=6, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n // 3)
    x = (rng.normal(scale=6.0, size=(3, features))[y] + rng.normal(size=(n, features))).astype(np.float32)
    return gap.suite._split("digits", x, y, 0.3, "three tiny clusters")


def test_mlp_on_layout_carries_a_smooth_layout_to_new_rows(gap):
    # the layout is a linear map of the inputs: an MLP fitted on the training rows must reproduce it on new rows
    d = _clusters(gap, n=300)
    w = np.random.default_rng(1).normal(size=(d.x_train.shape[1], 2))
    layout = d.x_train @ w
    want = (d.x_test @ w - layout.mean(0)) / layout.std(ddof=1)  # centred, one scale for both axes (its shape kept)
    state = torch.get_rng_state()
    p_train, p_test = gap.mlp_on_layout(d, layout, seed=0, steps=400)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left as it was
    assert p_train.shape == (len(d.x_train), 2) and p_test.shape == (len(d.x_test), 2)
    r2 = 1 - ((p_test - want) ** 2).sum(0) / ((want - want.mean(0)) ** 2).sum(0)
    assert r2.min() > 0.95, r2


def test_training_scores_tell_a_kept_layout_from_a_scrambled_one(gap):
    d = _clusters(gap)
    good = gap.training_scores(d, d.x_train[:, :2], seed=0)
    rng = np.random.default_rng(0)
    bad = gap.training_scores(d, rng.normal(size=(len(d.x_train), 2)), seed=0)
    assert good["train_knn"] == pytest.approx(1.0) and good["train_trust"] > 0.8
    assert bad["train_knn"] < 0.6 and bad["train_trust"] < good["train_trust"] - 0.2


def test_main_scores_three_methods_per_seed_and_writes_the_table(gap, monkeypatch, tmp_path):
    base = vaekit.embedding.VAEEmbedder

    class Short(base):  # two epochs per fit
        def fit(self, X, y=None):
            return base.fit(self.set_params(max_epochs=2), X)

    class FakeUMAP:  # umap is an optional benchmark dependency: the first two columns stand in for its layout
        def __init__(self, random_state=None):
            self.random_state = random_state

        def fit(self, x):
            self.embedding_ = np.asarray(x)[:, :2] + 0.01 * self.random_state
            return self

        def transform(self, x):
            return np.asarray(x)[:, :2]

    monkeypatch.setattr(vaekit.embedding, "VAEEmbedder", Short)
    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    monkeypatch.setattr(gap, "MLP_STEPS", 50)
    monkeypatch.setitem(gap.suite.DATASETS, "digits", lambda root: _clusters(gap))
    gap.main(["--datasets", "digits", "--seeds", "2", "--out-dir", str(tmp_path), "--name", "g"])
    saved = json.loads((tmp_path / "g.json").read_text())
    rows = saved["results"]
    assert [(r["seed"], r["method"]) for r in rows] == [(s, m) for s in (0, 1) for m in gap.METHODS]
    umap_rows = [r for r in rows if r["method"] == "umap"]
    # the stand-in layout (the first two columns) keeps the three clusters apart: UMAP's rows score 1 on training
    # and new rows, and so nearly does the MLP regressed on it (one fitted to anything else would score about 1/3)
    for r in rows:
        if r["method"] == "umap":
            assert (r["train_knn"], r["knn_acc"]) == (pytest.approx(1.0), pytest.approx(1.0)), r
        if r["method"] == "mlp_on_umap":
            assert min(r["train_knn"], r["knn_acc"]) > 0.95, r
    table = (tmp_path / "g.md").read_text()
    assert saved["seeds"] == [0, 1] and "embedding_gap.py --datasets digits --seeds 2" in table
    line = next(row for row in table.splitlines() if row.startswith("| digits | umap |"))
    assert line.split(" | ")[2:4] == ["1.000 ± 0.000", f"{np.mean([r['train_trust'] for r in umap_rows]):.3f} ± "
                                      f"{np.std([r['train_trust'] for r in umap_rows], ddof=1):.3f}"]


def test_vaekit_args_and_methods_reach_the_fit_and_the_table(gap, monkeypatch, tmp_path):
    seen, base = [], vaekit.embedding.VAEEmbedder

    class Recorded(base):
        def fit(self, X, y=None):
            seen.append(self.max_epochs)
            return base.fit(self, X)

    monkeypatch.setattr(vaekit.embedding, "VAEEmbedder", Recorded)
    monkeypatch.setitem(sys.modules, "umap", None)  # never imported when only vaekit runs
    monkeypatch.setitem(gap.suite.DATASETS, "digits", lambda root: _clusters(gap))
    gap.main(["--datasets", "digits", "--seeds", "1", "--methods", "vaekit", "--vaekit-args", '{"max_epochs": 3}',
              "--out-dir", str(tmp_path), "--name", "g"])
    saved = json.loads((tmp_path / "g.json").read_text())
    assert seen == [3] and [r["method"] for r in saved["results"]] == ["vaekit"]
    assert saved["results"][0]["n_iter"] == 3 and saved["vaekit_args"] == {"max_epochs": 3}
    assert 'VAEEmbedder(random_state=seed, **{"max_epochs": 3})' in (tmp_path / "g.md").read_text()


@pytest.mark.parametrize(("argv", "says"), [
    (["--vaekit-args", "{max_epochs: 3}"], "is not JSON"),
    (["--vaekit-args", "[3]"], "expected a JSON object"),
    (["--vaekit-args", '{"max_epoch": 60}'], "max_epoch"),                 # not a VAEEmbedder argument
    (["--vaekit-args", '{"max_epochs": -1}'], "max_epochs"),               # a value the estimator refuses
    (["--vaekit-args", '{"random_state": 3}'], "random_state is set by --seeds"),
    (["--methods", "umap", "--vaekit-args", '{"max_epochs": 3}'], "does not run vaekit"),
    (["--seeds", "0"], "expected a positive integer"),
    (["--threads", "-2"], "expected a positive integer")])
def test_bad_arguments_stop_before_any_data_is_read(gap, monkeypatch, tmp_path, capsys, argv, says):
    monkeypatch.setattr(gap.suite, "_data_root", lambda root: pytest.fail("read data before checking the arguments"))
    with pytest.raises(SystemExit) as stop:
        gap.main([*argv, "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and says in err, err
    assert argv[0] in err
