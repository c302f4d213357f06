"""Every YAML in examples/configs builds, and trains for a few steps on the shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from vaekit.cli import main
from vaekit.config import build_fit_parser, check_config_keys, instantiate

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "examples" / "configs").glob("*.yaml"))
SHARED = Path(os.environ.get("VAEKIT_DATA") or ROOT.parent / "shared" / "data")


def test_there_are_example_configs():
    assert {p.stem for p in CONFIGS} >= {"cremer_mlp_binarized_mnist", "conv_fashion_mnist", "gaussian_tabular"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds(path):
    raw = yaml.safe_load(path.read_text())
    check_config_keys(raw)
    parser = build_fit_parser()
    cfg = parser.parse_object(raw)
    init = instantiate(parser, cfg)
    assert init.model.data_shape == tuple(raw["model"]["init_args"]["data_shape"])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_a_few_steps(path, tmp_path, monkeypatch):
    if not SHARED.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED} (set VAEKIT_DATA)")
    monkeypatch.setenv("VAEKIT_DATA", str(SHARED))
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(path), "--trainer.max_steps", "3", "--trainer.max_epochs", "1",
            "--trainer.progress_bar", "false", "--trainer.early_stopping_patience", "null"]
    raw = yaml.safe_load(path.read_text())
    if raw["data"]["class_path"].endswith("ArrayFile"):
        args += ["--data.init_args.path", str(SHARED / "grouped_tabular" / "hsb_mathachieve.npz")]
    if raw["trainer"].get("lr_schedule") == "plateau":
        args += ["--trainer.lr_schedule", "constant"]
    assert main(args) == 0
    (run,) = list((tmp_path / "runs").glob("*/*"))
    assert (run / "checkpoints" / "last.safetensors").is_file()
