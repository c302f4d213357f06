"""benchmarks/embedding_suite.py: the suite's machinery on tiny data (rows, metrics, tables, the issue's verdict)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest


@pytest.fixture
def suite(load_benchmark):
    return load_benchmark("embedding_suite")


def _tiny(module):
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=6.0, size=(3, 6))
    y = np.repeat(np.arange(3), 30)
    x = (centers[y] + rng.normal(size=(90, 6))).astype(np.float32)
    return module._split("digits", x, y, 0.3, "three tiny clusters")


def test_suite_writes_rows_tables_and_keeps_other_datasets(suite, tmp_path, monkeypatch):
    monkeypatch.setitem(suite.DATASETS, "digits", lambda root: _tiny(suite))
    old = {"results": [{"dataset": "olivetti", "method": "pca", "seed": 0, "knn_acc": 0.5, "trust": 0.9, "cont": 0.9}],
           "datasets": {"olivetti": "kept from an earlier run"}}
    (tmp_path / "s.json").write_text(json.dumps(old))
    args = ["--datasets", "digits", "--methods", "vaekit", "pca", "--seeds", "2", "--threads", "1",
            "--data-root", str(tmp_path), "--out-dir", str(tmp_path), "--name", "s",
            "--vaekit-args", json.dumps({"hidden_layers": [8], "n_flows": 1, "max_epochs": 2, "device": "cpu"})]
    suite.main(args)
    out = json.loads((tmp_path / "s.json").read_text())
    rows = [r for r in out["results"] if r["dataset"] == "digits"]
    assert [(r["method"], r["seed"]) for r in rows] == [("vaekit", 0), ("vaekit-encoder", 0), ("vaekit", 1),
                                                        ("vaekit-encoder", 1), ("pca", 0)]
    assert [r["dataset"] for r in out["results"]].count("olivetti") == 1  # the other dataset's row is kept
    for r in rows:
        assert 0.0 <= r["knn_acc"] <= 1.0 and 0.5 <= r["trust"] <= 1.0 and 0.5 <= r["cont"] <= 1.0
        assert r["recon_mse"] > 0 and r["transform_s"] >= 0
        assert (r["method"] == "vaekit-encoder") == ("fit_s" not in r)  # the encoder rows score the same fit
    assert all(np.isfinite(r["elbo"]) for r in rows if r["method"] == "vaekit")
    pca = next(r for r in rows if r["method"] == "pca")
    assert pca["knn_acc"] == 1.0  # three well separated clusters stay apart on their first two principal axes
    md = (tmp_path / "s.md").read_text()
    assert "## digits: three tiny clusters" in md and "## olivetti: kept from an earlier run" in md
    knn = [r["knn_acc"] for r in rows if r["method"] == "vaekit"]
    assert f"| vaekit | 0, 1 (1 thread) | {np.mean(knn):.3f} ± {np.std(knn, ddof=1):.3f} |" in md
    assert "| pca | 0 (1 thread) |" in md and "| vaekit-encoder | 0, 1 (1 thread) |" in md
    # the recorded command reruns the suite, also when sys.argv[0] is another script
    assert out["runs"][-1]["command"].startswith("embedding_suite.py --datasets digits --methods vaekit pca --seeds 2")


def test_metrics_and_verdict(suite):
    d = _tiny(suite)
    z_perfect = suite.metrics(d, d.x_train[:, :2], d.x_test[:, :2], 10, 5000)
    rng = np.random.default_rng(1)
    z_random = suite.metrics(d, rng.normal(size=(len(d.x_train), 2)), rng.normal(size=(len(d.x_test), 2)), 10, 5000)
    assert z_perfect["knn_acc"] == 1.0 and z_random["knn_acc"] < 0.7
    assert z_perfect["trust"] > z_random["trust"] + 0.1 and z_perfect["cont"] > z_random["cont"] + 0.1
    rows = [{"dataset": "x", "method": "umap", "knn_acc": a, "trust": t} for a, t in ((0.90, 0.95), (0.92, 0.97))]
    ok = [{"dataset": "x", "method": "vaekit", "knn_acc": 0.91, "trust": 0.96}]
    enough = {"enough_seeds": True, "seeds_note": ""}
    assert suite.verdict(rows + ok, "x") == {"within_one_sd": True, "at_least_umap": True, **enough}
    close = [{"dataset": "x", "method": "vaekit", "knn_acc": 0.905, "trust": 0.96}]  # UMAP: 0.91 ± 0.0141
    assert suite.verdict(rows + close, "x") == {"within_one_sd": True, "at_least_umap": False, **enough}
    low = [{"dataset": "x", "method": "vaekit", "knn_acc": 0.89, "trust": 0.96}]
    assert suite.verdict(rows + low, "x") == {"within_one_sd": False, "at_least_umap": False, **enough}
    assert suite.verdict(rows, "x") is None


def test_verdict_says_insufficient_seeds(suite):
    """One UMAP seed has no sd; vaekit with fewer seeds than its run asked for is not the asked-for mean."""
    runs = [{"seeds": [0, 1, 2], "threads": 2}, {"seeds": [0, 1, 2], "threads": 1}]
    umap = [{"dataset": "digits", "method": "umap", "seed": s, "run": 0, "knn_acc": 0.9 + s / 100, "trust": 0.95}
            for s in range(3)]
    vaekit = [{"dataset": "digits", "method": "vaekit", "seed": s, "run": 1, "knn_acc": 0.95, "trust": 0.96} for s in range(3)]
    assert suite.verdict(umap + vaekit, "digits", runs)["enough_seeds"] is True
    one_vaekit = suite.verdict(umap + vaekit[:1], "digits", runs)
    assert one_vaekit["enough_seeds"] is False and one_vaekit["seeds_note"] == "vaekit 1 of 3 seeds asked for"
    assert one_vaekit["within_one_sd"] is True  # the measured comparison is still reported, marked
    one_umap = suite.verdict(umap[:1] + vaekit, "digits", runs)
    assert one_umap["enough_seeds"] is False and one_umap["seeds_note"] == "UMAP 1 seed, needs 2"
    info = {"n_datasets": 1, "cpu": "cpu", "cores": 2, "versions": {}, "eval_n": 10}
    md = suite.markdown(umap + vaekit[:1], info, {"digits": "d"}, [{**info, **run, "commit": "c", "date": "d",
                                                                "load_before": 1.0, "command": "c"} for run in runs])
    assert "(vaekit 1 of 3 seeds asked for): within one UMAP sd: **insufficient seeds (yes as measured)**" in md
    assert "| umap | 0, 1, 2 (2 threads) |" in md and "| vaekit | 0 (1 thread) |" in md
    assert "within one UMAP sd on 0 of 0 datasets with enough seeds" in md and "1 of 1 datasets have insufficient" in md
    assert "| digits | 1 / 3 |" in md  # the overall table's seed counts


def test_embedding_py_suite_records_the_suite_command(suite, load_benchmark, tmp_path, monkeypatch):
    monkeypatch.setitem(suite.DATASETS, "digits", lambda root: _tiny(suite))
    monkeypatch.setitem(sys.modules, "embedding_suite", suite)  # what embedding.py --suite imports
    monkeypatch.setattr(sys, "argv", ["embedding.py"])
    bench = load_benchmark("embedding")
    bench.main(["--suite", "--datasets", "digits", "--methods", "pca", "--threads", "1", "--data-root", str(tmp_path),
                "--out-dir", str(tmp_path), "--name", "s", "--vaekit-args", '{"max_epochs": 2}'])
    command = json.loads((tmp_path / "s.json").read_text())["runs"][-1]["command"]
    assert command == ("embedding_suite.py --datasets digits --methods pca --threads 1 --data-root " + str(tmp_path)
                       + " --out-dir " + str(tmp_path) + " --name s --vaekit-args '{\"max_epochs\": 2}'")


def test_umap_warm_up_compiles_the_nearest_neighbour_descent(suite, monkeypatch):
    """The warm-up fits data large enough for UMAP's NN-descent (>= 4,096 rows), so no timed call compiles it."""
    fitted = []

    class FakeUMAP:
        def __init__(self, **kwargs):
            pass

        def fit(self, x):
            fitted.append(len(x))
            return self

        def transform(self, x):
            return x[:, :2]

    monkeypatch.setitem(sys.modules, "umap", type(sys)("umap"))
    sys.modules["umap"].UMAP = FakeUMAP
    monkeypatch.setattr(suite, "_UMAP_COMPILE", {})
    small = suite.umap_compile_s(100)
    assert max(fitted) >= suite.UMAP_DESCENT_ROWS and min(fitted) < suite.UMAP_DESCENT_ROWS
    assert sorted(fitted) == [300, 300, 5000, 5000]
    suite._UMAP_COMPILE.update({300: 2.0, 5000: 3.0})
    assert suite.umap_compile_s(100) == 2.0 and suite.umap_compile_s(5000) == 5.0 and small >= 0.0
    assert len(fitted) == 4  # warmed up once per process


def test_breast_cancer_is_standardised_on_the_training_rows(suite):
    d = suite._breast_cancer(None)
    assert np.allclose(d.x_train.mean(axis=0), 0.0, atol=1e-5) and np.allclose(d.x_train.std(axis=0), 1.0, atol=1e-4)
    assert np.abs(d.x_test).max() < 20  # raw columns reach 4,254 (worst area); the same scaler brings the new rows to sd units
    assert not np.allclose(d.x_test.mean(axis=0), 0.0, atol=1e-3)  # not refitted on the new rows


def test_merge_adds_rows_of_runs_made_under_other_names(suite, tmp_path):
    def run(commit):
        return {"commit": commit, "date": "d", "load_before": 1.0, "load_after": 1.0, "command": "c", "cpu": "cpu",
                "cores": 2, "threads": 2, "versions": {}, "seeds": [0], "eval_n": 10, "neighbors": 10}

    def row(dataset, method, acc, run_index=0):
        return {"dataset": dataset, "method": method, "seed": 0, "run": run_index, "knn_acc": acc, "trust": 0.9}

    base = {**run("a"), "runs": [run("a")], "datasets": {"digits": "d"},
            "results": [row("digits", "umap", 0.9), row("digits", "vaekit", 0.1)]}
    other = {**run("b"), "runs": [run("b")], "datasets": {"digits": "d", "olivetti": "o"},
             "results": [row("digits", "vaekit", 0.95), row("olivetti", "vaekit", 0.5)]}
    (tmp_path / "s.json").write_text(json.dumps(base))
    (tmp_path / "v.json").write_text(json.dumps(other))
    suite.main(["--merge", str(tmp_path / "v.json"), "--out-dir", str(tmp_path), "--name", "s"])
    out = json.loads((tmp_path / "s.json").read_text())
    assert [(r["dataset"], r["method"], r["knn_acc"], r["run"]) for r in out["results"]] == [
        ("digits", "umap", 0.9, 0), ("digits", "vaekit", 0.95, 1), ("olivetti", "vaekit", 0.5, 1)]
    assert [r["commit"] for r in out["runs"]] == ["a", "b"] and out["n_datasets"] == 2
    md = (tmp_path / "s.md").read_text()
    assert "Run 1: vaekit commit b" in md and "at least UMAP's mean: **insufficient seeds (yes as measured)**" in md
    # the overall table; UMAP's one seed has no sd, so the verdict is marked
    assert ("| digits | 1 / 1 | 0.950 | 0.900 | 0.900 | 0.900 | — | — | insufficient seeds (yes as measured) | "
            "insufficient seeds (yes as measured) |") in md
