"""HLVNNFolder: HLVNN's x/gid/y_{train,test}.npy layout with its fixed split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from vaekit._recording import to_config
from vaekit.data import HLVNNFolder
from vaekit.data.grouped_sets import hlvnn_levels


def write_folder(folder, n_train=60, n_test=12, users=6, d=(3,), levels=2, seed=0, x_dtype=np.float32, **replace):
    """An HLVNN folder: users 0..users-1 (the test files also hold an extra user), gid2 = gid // 2."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n, k in (("train", n_train, users), ("test", n_test, users + 1)):
        gid = (np.arange(n) % k).astype(np.int32)
        arrays[f"gid_{split}"] = gid
        if levels > 1:
            arrays[f"gid2_{split}"] = (gid // 2).astype(np.int32)
        x = rng.normal(size=(n, *d)) if x_dtype == np.float32 else rng.integers(0, 9, size=(n, *d))
        arrays[f"x_{split}"] = x.astype(x_dtype)
        arrays[f"y_{split}"] = ((gid + np.arange(n)) % 3).astype(np.int64)
    arrays.update(replace)
    for name, a in arrays.items():
        np.save(folder / f"{name}.npy", a)
    return arrays


def test_reads_the_fixed_split_and_carves_validation_from_train(tmp_path):
    arrays = write_folder(tmp_path / "femnist" / "small")
    data = HLVNNFolder(str(tmp_path / "femnist" / "small"), val_fraction=0.2, seed=1)
    data.setup()
    assert data.level_names == ["gid", "gid2"] and data.task == "classification" and data.n_classes == 3
    assert data.group_names == [[str(i) for i in range(7)], ["0", "1", "2", "3"]]
    assert data.group_parents == [[0, 0, 1, 1, 2, 2, 3]]
    # the test split is the test files, in order
    torch.testing.assert_close(data.test["x"], torch.from_numpy(arrays["x_test"]))
    assert data.test["y"].tolist() == arrays["y_test"].tolist()
    assert data.test["groups"].tolist() == np.stack([arrays["gid_test"], arrays["gid2_test"]], 1).tolist()
    # train + val are the train files: 10 examples per user, 2 of each to validation
    assert len(data.train["y"]) == 48 and len(data.val["y"]) == 12
    assert torch.bincount(data.val["groups"][:, 0], minlength=7).tolist() == [2, 2, 2, 2, 2, 2, 0]
    assert data.train_group_counts == [[8, 8, 8, 8, 8, 8, 0], [16, 16, 16, 0]]  # user 6 is only in the test files
    pooled = torch.cat([data.train["x"], data.val["x"]])
    assert sorted(pooled[:, 0].tolist()) == sorted(arrays["x_train"][:, 0].tolist())
    again = HLVNNFolder(str(tmp_path / "femnist" / "small"), val_fraction=0.2, seed=1)
    again.setup()
    assert torch.equal(again.val["x"], data.val["x"])  # deterministic in seed


def test_group_validation_tokens_regression_and_level_names(tmp_path):
    write_folder(tmp_path / "a", levels=1)
    data = HLVNNFolder(str(tmp_path / "a"), split="group", val_fraction=0.34, level_names=["user"])
    data.setup()
    val_users = set(data.val["groups"][:, 0].tolist())
    assert len(val_users) == 2 and not val_users & set(data.train["groups"][:, 0].tolist())  # whole users held out
    assert data.level_names == ["user"]

    write_folder(tmp_path / "tok", d=(5,), x_dtype=np.int32)
    tok = HLVNNFolder(str(tmp_path / "tok"))
    tok.setup()
    assert tok.train["x"].dtype == torch.int64 and tok.data_shape == (5,)
    feats = HLVNNFolder(str(tmp_path / "tok"), tokens=False, task="regression", standardize=True, standardize_y=True)
    feats.setup()
    assert feats.train["x"].dtype == torch.float32 and feats.task == "regression" and feats.n_classes is None
    assert float(feats.train["y"].mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(feats.train["x"].std(0, unbiased=False).mean()) == pytest.approx(1.0, abs=1e-5)


def test_the_config_records_an_absolute_path(tmp_path, monkeypatch):
    write_folder(tmp_path / "data" / "x")
    monkeypatch.chdir(tmp_path)
    data = HLVNNFolder("data/x")
    cfg = to_config(data)
    assert cfg["class_path"] == "vaekit.data.grouped_sets.HLVNNFolder"
    assert cfg["init_args"]["path"] == str(tmp_path / "data" / "x")
    monkeypatch.chdir("/")
    data.setup()  # still found from elsewhere
    assert len(data.test["y"]) == 12
    assert hlvnn_levels(tmp_path / "data" / "x") == ["gid", "gid2"]


def test_a_config_saved_with_the_old_module_path_still_loads(tmp_path):
    """Runs saved before the grouped modules were merged name ``vaekit.data.grouped_hlvnn.HLVNNFolder``."""
    from jsonargparse import ArgumentParser

    from vaekit.data import DataModule
    from vaekit.trust import check_config_trust

    write_folder(tmp_path / "x")
    section = {"class_path": "vaekit.data.grouped_hlvnn.HLVNNFolder", "init_args": {"path": str(tmp_path / "x")}}
    assert check_config_trust({"data": section}) == []  # inside the registry: no trust_code needed
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--data", type=DataModule)
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    data = instantiate(parser.parse_object({"data": section})).data
    assert type(data) is HLVNNFolder
    data.setup()
    assert len(data.test["y"]) == 12 and data.level_names == ["gid", "gid2"]
    assert to_config(data)["class_path"] == "vaekit.data.grouped_sets.HLVNNFolder"


@pytest.mark.parametrize("change, err, match", [
    ({"y_test": None}, FileNotFoundError, r"y_test\.npy not found"),
    ({"gid_train": np.zeros(59, np.int32)}, ValueError, r"train files must share.*gid_train\.npy"),
    ({"gid_test": np.zeros(12, np.float32)}, ValueError, r"gid_test\.npy must hold integer group ids"),
    ({"gid_test": -np.ones(12, np.int32)}, ValueError, r"gid_test\.npy must hold integer group ids >= 0.*min -1"),
    ({"x_test": np.zeros((12, 4), np.float32)}, ValueError, r"x_train\.npy has examples of shape \(3,\) but x_test\.npy \(4,\)"),
    ({"x_train": np.zeros(60, np.float32)}, ValueError, r"x_train\.npy must have shape \(n, \*x_shape\)"),
    ({"x_test": np.array(["a"] * 12, dtype=object)}, ValueError, r"x_test\.npy is not a plain numeric"),
])
def test_bad_folders_fail_naming_the_file(tmp_path, change, err, match):
    write_folder(tmp_path, **{k: v for k, v in change.items() if v is not None})
    for k, v in change.items():
        if v is None:
            (tmp_path / f"{k}.npy").unlink()
    data = HLVNNFolder(str(tmp_path))
    with pytest.raises(err, match=match):
        data.setup()
    assert not data.is_setup


def test_bad_arguments_fail_in_the_constructor(tmp_path):
    with pytest.raises(ValueError, match="task='ranking' is not accepted"):
        HLVNNFolder(str(tmp_path), task="ranking")
    with pytest.raises(ValueError, match="split='leaf' is not accepted"):
        HLVNNFolder(str(tmp_path), split="leaf")
    with pytest.raises(TypeError, match="path must be a str"):
        HLVNNFolder(3)
    with pytest.raises(FileNotFoundError, match="has no gid_train.npy"):
        HLVNNFolder(str(tmp_path)).setup()
    write_folder(tmp_path)
    with pytest.raises(ValueError, match=r"level_names=\['user'\] names 1 level\(s\) but .* has 2"):
        HLVNNFolder(str(tmp_path), level_names=["user"]).setup()


def test_a_group_model_trains_on_an_hlvnn_folder_from_the_cli(tmp_path, monkeypatch):
    from vaekit.cli import main

    write_folder(tmp_path / "data", n_train=120, n_test=24)
    monkeypatch.chdir(tmp_path)
    cfg = {
        "model": {"class_path": "vaekit.models.group.GroupPredictor", "init_args": {
            "predictor": {"class_path": "vaekit.nn.predictors.MLPPredictor",
                          "init_args": {"in_features": 3, "out_features": 3, "hidden": [8]}},
            "latent_features": 2, "injection": ["weight", "bias"]}},
        "data": {"class_path": "vaekit.data.HLVNNFolder", "init_args": {"path": "data"}},
        "objective": {"class_path": "vaekit.objectives.ELBO"},
        "trainer": {"max_epochs": 2, "batch_size": 32, "progress_bar": False, "run_name": "hl"},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert main(["fit", "--config", "cfg.yaml"]) == 0
    (run,) = list((tmp_path / "runs" / "hl").glob("*"))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["init_args"]["path"] == str(tmp_path / "data")
    assert saved["model"]["init_args"]["group_names"][0] == [str(i) for i in range(7)]
