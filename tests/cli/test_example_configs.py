"""Every YAML in examples/configs builds, and trains for a few steps on the shared data."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import yaml

from vaekit.cli import main
from vaekit.config import build_fit_parser, check_config_keys, instantiate, size_model_from_data
from vaekit.models import LatentVariableModel

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "examples" / "configs").glob("*.yaml"))
SHARED = Path(os.environ.get("VAEKIT_DATA") or ROOT.parent / "shared" / "data")
#: Datasets that the offline data folder does not hold, by data class: (folder under VAEKIT_DATA,
#: why it is missing). A config reading one is built but not trained when its folder is absent.
NOT_OFFLINE = {
    "vaekit.data.leaf.LEAFFemnist": ("leaf/femnist", "LEAF FEMNIST is not available offline (generate it with LEAF's "
                                     "preprocess.sh and place data/femnist/data at $VAEKIT_DATA/leaf/femnist)"),
}


def missing_dataset(raw: dict) -> str | None:
    """Why a config's dataset is missing here (None when it is present or not in NOT_OFFLINE)."""
    entry = NOT_OFFLINE.get(raw["data"]["class_path"])
    if entry is None:
        return None
    root = (raw["data"].get("init_args") or {}).get("root")
    folder = Path(root) if root else SHARED / entry[0]
    return None if folder.is_dir() else f"{entry[1]}; not found: {folder}"


def stand_in_cifar10(root: Path, per_file: int = 8) -> Path:
    """A CIFAR-10 binary folder of ``per_file`` random images per batch file (the real one is not offline)."""
    import numpy as np

    folder = root / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = np.concatenate([rng.integers(0, 10, (per_file, 1)), rng.integers(0, 256, (per_file, 3072))], 1)
        (folder / name).write_bytes(records.astype(np.uint8).tobytes())
    return root


def test_there_are_example_configs():
    assert {p.stem for p in CONFIGS} >= {"cremer_mlp_binarized_mnist", "conv_fashion_mnist", "gaussian_tabular"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds(path, monkeypatch):
    raw = yaml.safe_load(path.read_text())
    check_config_keys(raw)
    parser = build_fit_parser()
    cfg = parser.parse_object(raw)
    module, _, name = raw["model"]["class_path"].rpartition(".")
    build = getattr(importlib.import_module(module), name)  # a class, or a factory function (ladder_vae)
    if isinstance(build, type) and build.data_args.__func__ is not LatentVariableModel.data_args.__func__:
        # sized by its data (a group model's tables), as vaekit fit builds it: the data first, where it is here
        if SHARED.is_dir() and missing_dataset(raw) is None:
            monkeypatch.setenv("VAEKIT_DATA", str(SHARED))
            monkeypatch.chdir(ROOT)  # a Table config names its file relative to the repository
            data = size_model_from_data(cfg)
            assert data.is_setup and cfg.model.init_args.group_names == data.group_names
        else:  # the dataset is not here: the model's own arguments are still checked, with one stand-in group per level
            injection = raw["model"]["init_args"].get("injection", "factor")
            cfg.model.init_args.group_names = [["g0"]] * (1 if isinstance(injection, str) else len(injection))
    init = instantiate(parser, cfg)
    assert init.model.data_shape == tuple(raw["model"]["init_args"]["data_shape"])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_a_few_steps(path, tmp_path, monkeypatch):
    if not SHARED.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED} (set VAEKIT_DATA)")
    raw = yaml.safe_load(path.read_text())
    reason = missing_dataset(raw)
    if reason is not None:
        pytest.skip(reason)
    monkeypatch.setenv("VAEKIT_DATA", str(SHARED))
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(path), "--trainer.max_steps", "3", "--trainer.max_epochs", "1",
            "--trainer.progress_bar", "false", "--trainer.early_stopping_patience", "null"]
    if raw["data"]["class_path"].endswith("ArrayFile"):
        args += ["--data.init_args.path", str(SHARED / "grouped_tabular" / "hsb_mathachieve.npz")]
    if raw["data"]["class_path"].endswith(".Table"):  # a file under examples/data/, named relative to the repository
        args += ["--data.init_args.path", str(ROOT / raw["data"]["init_args"]["path"])]
    if raw["trainer"].get("lr_schedule") == "plateau":
        args += ["--trainer.lr_schedule", "constant"]
    if raw["model"]["class_path"] == "vaekit.models.hierarchical.vdvae":  # the published layout strings, 8 channels wide
        args += ["--model.init_args.width", "8", "--model.init_args.widths", "null", "--model.init_args.latent_channels", "2",
                 "--model.init_args.bottleneck_multiple", "0.5", "--trainer.batch_size", "4"]
    if raw["data"]["class_path"] == "vaekit.data.CIFAR10" and not (SHARED / "cifar10").is_dir():
        args += ["--data.init_args.root", str(stand_in_cifar10(tmp_path / "data")), "--data.init_args.download", "false",
                 "--data.init_args.val_size", "4"]
    assert main(args) == 0
    (run,) = list((tmp_path / "runs").glob("*/*"))
    assert (run / "checkpoints" / "last.safetensors").is_file()


def test_missing_dataset_names_the_folder_and_the_reason(tmp_path):
    femnist = {"data": {"class_path": "vaekit.data.leaf.LEAFFemnist", "init_args": {"root": str(tmp_path / "nowhere")}}}
    reason = missing_dataset(femnist)
    assert reason is not None and "LEAF FEMNIST is not available offline" in reason and str(tmp_path / "nowhere") in reason
    (tmp_path / "nowhere").mkdir()
    assert missing_dataset(femnist) is None
    assert missing_dataset({"data": {"class_path": "vaekit.data.grouped_writers.MNISTWriters"}}) is None
