"""Run directories: exact layout, no overwriting, validation on open."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from vaekit.training import RunDir
from vaekit.training.rundir import METRICS_HEADER

LAYOUT = ["checkpoints", "config.yaml", "eval", "log.txt", "metrics.csv", "tensorboard"]


def test_create_lays_out_exactly_the_documented_tree(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "runs", "VAE", config={"trainer": {"lr": 0.001}, "seed": 3},
                        timestamp=datetime(2024, 5, 6, 7, 8, 9))
    assert run.path == tmp_path / "runs" / "VAE" / "20240506-070809"
    assert sorted(p.name for p in run.path.iterdir()) == LAYOUT
    assert run.metrics.read_text() == METRICS_HEADER + "\n"
    assert run.read_config() == {"trainer": {"lr": 0.001}, "seed": 3}
    assert (run.last_checkpoint, run.best_weights, run.step_checkpoint(7)) == (
        run.checkpoints / "last.ckpt", run.checkpoints / "best.safetensors", run.checkpoints / "step-7.ckpt")


def test_create_never_reuses_a_directory(tmp_path: Path) -> None:
    stamp = datetime(2024, 1, 1, 0, 0, 0)
    a = RunDir.create(tmp_path, "m", config={"a": 1}, timestamp=stamp)
    b = RunDir.create(tmp_path, "m", config={"b": 2}, timestamp=stamp)
    c = RunDir.create(tmp_path, "m", timestamp=stamp)
    assert [p.name for p in (a.path, b.path, c.path)] == ["20240101-000000", "20240101-000000-1", "20240101-000000-2"]
    assert a.read_config() == {"a": 1} and b.read_config() == {"b": 2} and c.read_config() == {}


def test_create_rejects_bad_name_and_config_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="run name"):
        RunDir.create(tmp_path, "a/b")
    with pytest.raises(TypeError, match="config must hold only plain values"):
        RunDir.create(tmp_path, "m", config={"x": object()})
    with pytest.raises(TypeError, match="config must be a dict"):
        RunDir.create(tmp_path, "m", config=[1, 2])  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_init_at_a_path(tmp_path: Path) -> None:
    run = RunDir.init(tmp_path / "here", {"k": "v"})
    assert sorted(p.name for p in run.path.iterdir()) == LAYOUT
    with pytest.raises(ValueError, match="already exists and is not empty"):
        RunDir.init(tmp_path / "here")


def test_open_validates_and_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RunDir.open(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "metrics.csv").write_text(METRICS_HEADER + "\n")
    with pytest.raises(ValueError, match=r"not a vaekit run directory: missing config.yaml, checkpoints/"):
        RunDir.open(tmp_path / "plain")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match="not a vaekit run directory"):
        RunDir.open(tmp_path / "f.txt")


def test_open_recreates_optional_parts(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "m")
    run.tensorboard.rmdir()
    run.log.unlink()
    again = RunDir.open(run.path)
    assert again.tensorboard.is_dir() and again.log.is_file()
    assert repr(again) == f"RunDir({str(run.path)!r})"
    assert Path(again).resolve() == run.path.resolve()
