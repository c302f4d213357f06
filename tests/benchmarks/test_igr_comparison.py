"""benchmarks/igr_comparison.py: a grid that takes hours runs a few models at a time, in several processes. Each
finished model is written at once (results file and a reproductions row), runs sharing a results file keep each
other's models, ``--resume`` trains only the selected models not yet in the file, and a results file of other
settings or a bad temperature is refused before anything is trained or written."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture
def script(load_benchmark, monkeypatch):
    module = load_benchmark("igr_comparison")
    tiny = {"temperatures": [0.5], "epochs": 1, "lr": 1e-3, "batch_size": 50, "n_variables": 3, "n_train": 200,
            "n_test": 20, "k": 4}
    monkeypatch.setattr(module, "FULL", {**tiny, "temperatures": [0.1, 0.5]})
    monkeypatch.setattr(module, "SHORT", {**tiny, "n_test": 10})
    trained = []

    def load(dataset, n_train, n_test):
        g = torch.Generator().manual_seed(0)
        return torch.bernoulli(torch.full((n_train, 784), 0.3), generator=g), torch.bernoulli(torch.full((n_test, 784), 0.3), generator=g)

    run_one = module.run_one
    monkeypatch.setattr(module, "load", load)
    monkeypatch.setattr(module, "run_one", lambda method, tau, *a, **kw: trained.append((method, tau)) or run_one(method, tau, *a, **kw))
    module.trained = trained
    return module


def models(path):
    return [(r["method"], r["temperature"]) for r in json.loads(path.read_text())["rows"]]


def test_each_model_is_written_at_once_and_resume_trains_only_the_missing(script, tmp_path):
    out, rep = tmp_path / "igr", tmp_path / "rep"
    common = ["--datasets", "binarized_mnist", "--out", str(out), "--reproductions", str(rep)]
    script.main([*common, "--methods", "gs", "--temperatures", "0.5"])
    assert script.trained == [("gs", 0.5)]
    rows = json.loads((rep / "reproductions.json").read_text())
    assert [(r["experiment"], r["quantity"], r["n_points"], r["epochs"]) for r in rows] == [
        ("igr2020/binarized_mnist/gs/tau=0.5", "test_ll", 20, 1)]
    assert rows[0]["vaekit"] == pytest.approx(json.loads((tmp_path / "igr.json").read_text())["rows"][0]["test_ll"], abs=1e-4)
    assert "igr2020/binarized_mnist/gs/tau=0.5" in (rep / "reproductions.md").read_text()
    script.main([*common, "--resume", "--methods", "gs", "igr_i", "gs", "--temperatures", "0.5", "0.1", "0.5"])
    assert script.trained == [("gs", 0.5), ("gs", 0.1), ("igr_i", 0.5), ("igr_i", 0.1)]  # gs at 0.5 not again; no twice
    assert models(tmp_path / "igr.json") == [("gs", 0.1), ("gs", 0.5), ("igr_i", 0.1), ("igr_i", 0.5)]
    assert json.loads((tmp_path / "igr.json").read_text())["settings"]["temperatures"] == [0.1, 0.5]
    assert len(json.loads((rep / "reproductions.json").read_text())) == 4
    md = (tmp_path / "igr.md").read_text()
    assert "| binarized_mnist | igr_i | 0.1 |" in md and "beats GS at its best?" in md
    # without --resume the selected models are trained again, the others kept
    script.main([*common, "--methods", "gs", "--temperatures", "0.1"])
    assert script.trained[-1] == ("gs", 0.1) and len(models(tmp_path / "igr.json")) == 4


def test_a_model_written_without_its_reproductions_row_gets_it_from_the_next_run(script, tmp_path):
    out, rep = tmp_path / "igr", tmp_path / "rep"
    common = ["--datasets", "binarized_mnist", "--out", str(out)]
    script.main([*common, "--methods", "gs", "--temperatures", "0.5", "--reproductions", "none"])
    script.main([*common, "--methods", "igr_i", "--temperatures", "0.5", "--reproductions", str(rep)])
    assert sorted(r["experiment"] for r in json.loads((rep / "reproductions.json").read_text())) == [
        "igr2020/binarized_mnist/gs/tau=0.5", "igr2020/binarized_mnist/igr_i/tau=0.5"]


def test_other_settings_and_bad_input_are_refused_before_training(script, tmp_path):
    out, rep = tmp_path / "igr", tmp_path / "rep"
    script.main(["--datasets", "binarized_mnist", "--methods", "gs", "--temperatures", "0.5", "--out", str(out),
                 "--reproductions", "none"])
    before = (tmp_path / "igr.json").read_text()
    with pytest.raises(SystemExit, match="other settings"):
        script.main(["--short", "--datasets", "binarized_mnist", "--methods", "gs", "--out", str(out)])
    with pytest.raises(SystemExit, match=r"--temperatures must be finite and > 0, got \[0.0\]"):
        script.main(["--datasets", "binarized_mnist", "--temperatures", "0", "--out", str(out), "--reproductions", str(rep)])
    with pytest.raises(SystemExit, match="--threads must be >= 1, got 0"):
        script.main(["--datasets", "binarized_mnist", "--threads", "0", "--out", str(out), "--reproductions", str(rep)])
    assert script.trained == [("gs", 0.5)] and (tmp_path / "igr.json").read_text() == before
    assert not rep.exists()
    # --fresh replaces the file of other settings
    script.main(["--short", "--fresh", "--datasets", "binarized_mnist", "--methods", "igr_i", "--out", str(out)])
    data = json.loads((tmp_path / "igr.json").read_text())
    assert data["mode"] == "short" and models(tmp_path / "igr.json") == [("igr_i", 0.5)]


def test_two_runs_sharing_a_results_file_keep_each_others_models(script, tmp_path, monkeypatch):
    out = tmp_path / "igr"
    common = ["--datasets", "binarized_mnist", "--out", str(out), "--reproductions", "none"]
    script.main([*common, "--methods", "gs", "--temperatures", "0.5"])
    other = json.loads((tmp_path / "igr.json").read_text())
    run_one = script.run_one

    def meanwhile(method, tau, *a, **kw):  # another process finishes igr_sb at 0.1 while this one trains
        data = json.loads((tmp_path / "igr.json").read_text())
        data["rows"].append({**other["rows"][0], "method": "igr_sb", "temperature": 0.1})
        (tmp_path / "igr.json").write_text(json.dumps(data))
        return run_one(method, tau, *a, **kw)

    monkeypatch.setattr(script, "run_one", meanwhile)
    script.main([*common, "--methods", "igr_i", "--temperatures", "0.1"])
    assert models(tmp_path / "igr.json") == [("gs", 0.5), ("igr_i", 0.1), ("igr_sb", 0.1)]
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic writes leave no temporary file behind


def test_the_committed_short_results_are_of_the_short_settings(load_benchmark):
    """Files written before batch size and variable count were settings read as the values fixed then."""
    module = load_benchmark("igr_comparison")
    data = json.loads((module.Path(module.__file__).parent / "results" / "igr_comparison_cpu_short.json").read_text())
    settings = {k: v for k, v in module.SHORT.items() if k != "temperatures"}
    assert module.same_run(data, "short", settings, 0)
    assert not module.same_run(data, "short", {**settings, "n_variables": 30}, 0)
