"""benchmarks/reproduce_cremer2018.py: the rendered table says which rows compare with the paper's,
with numbers computed from the rows (not written by hand), and ``--phase render`` rewrites only the .md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


@pytest.fixture
def script(load_benchmark):
    return load_benchmark("reproduce_cremer2018")


def row(quantity, vaekit, paper, n):
    return {"experiment": "cremer2018/mnist/ffg", "quantity": quantity, "paper": paper, "vaekit": vaekit,
            "stderr": 0.1, "n_points": n, "epochs": 3280, "paper_epochs": 3280, "device": "cpu", "wall_s": 1,
            "command": "python benchmarks/reproduce_cremer2018.py", "commit": "abc", "date": "d",
            "binarization": "static", "estimator": "e", "run": "r", "note": ""}


def test_reading_notes_compare_the_whole_test_set_with_the_paper(script):
    rows = [row("log_px", -81.5, -89.80, 100), row("iwae_all_test", -87.25, None, 10000)]
    text = "\n".join(script.reading_notes(rows))
    assert "subset mean is 5.75 nats above" in text
    assert "+2.55 nats from the paper's -89.80, so this model is at least that much better" in text
    worse = "\n".join(script.reading_notes([row("log_px", -81.5, -89.80, 100), row("iwae_all_test", -90.5, None, 10000)]))
    assert "-0.70 nats from the paper's -89.80." in worse and "better" not in worse
    no_paper = "\n".join(script.reading_notes([row("log_px", -81.5, None, 100), row("iwae_all_test", -87.0, None, 10000)]))
    assert "subset mean is 5.50 nats above" in no_paper and "from the paper's" not in no_paper
    assert script.reading_notes([row("log_px", -81.5, -89.8, 100)]) == []  # nothing to compare without the all-test row


def test_phase_render_rewrites_the_markdown_from_the_json(script, tmp_path):
    rows = [row("log_px", -81.5, -89.80, 100), row("iwae_all_test", -87.25, None, 10000)]
    (tmp_path / "reproductions.json").write_text(json.dumps(rows))
    assert script.main(["--phase", "render", "--out-dir", str(tmp_path)]) == 0
    md = (tmp_path / "reproductions.md").read_text()
    assert "| cremer2018/mnist/ffg | log_px | -89.80 | -81.50 |" in md and "## Reading the table" in md
    assert json.loads((tmp_path / "reproductions.json").read_text()) == rows


def test_the_iwae_cache_round_trips_and_is_keyed_by_what_changes_it(script, tmp_path):
    from vaekit.inference import IWAEResult

    result = IWAEResult(torch.tensor([-80.5, -90.25], dtype=torch.float64),
                        torch.tensor([-84.0, -95.0], dtype=torch.float64), k=5000, batch_size=2, chunk_size=100)
    path = script.iwae_cache_path(tmp_path / "cache", "af", Path("runs/20261205-114659"), 1640000, 5000, 10000)
    assert script.load_iwae(path) is None
    script.save_iwae(path, result, 1244.0)
    back, seconds = script.load_iwae(path)
    assert torch.equal(back.per_example, result.per_example) and torch.equal(back.elbo_per_example, result.elbo_per_example)
    assert (back.k, back.batch_size, back.chunk_size, seconds) == (5000, 2, 100, 1244.0)
    assert back.mean == result.mean
    keys = {script.iwae_cache_path(tmp_path, *args) for args in [
        ("af", Path("r"), 1, 5000, 10000), ("ffg", Path("r"), 1, 5000, 10000), ("af", Path("q"), 1, 5000, 10000),
        ("af", Path("r"), 2, 5000, 10000), ("af", Path("r"), 1, 1000, 10000), ("af", Path("r"), 1, 5000, 500)]}
    assert len(keys) == 6  # model, run, training steps, k and the test images each change the key
    assert not list((tmp_path / "cache").glob("*.tmp"))
