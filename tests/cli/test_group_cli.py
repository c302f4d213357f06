"""`vaekit fit` + `vaekit evaluate` on a group-latent config: per-group metrics and the new-group curve."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from vaekit.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("VAEKIT_DATA") or ROOT.parent / "shared" / "data")


def test_fit_and_evaluate_a_group_run(tmp_path, monkeypatch, capsys):
    if not (SHARED / "grouped_tabular").is_dir():
        pytest.skip(f"shared datasets not found at {SHARED} (set VAEKIT_DATA)")
    monkeypatch.setenv("VAEKIT_DATA", str(SHARED))
    monkeypatch.chdir(tmp_path)
    cfg = ROOT / "examples" / "configs" / "groups_hsb_factor.yaml"
    assert main(["fit", "--config", str(cfg), "--trainer.max_epochs", "2", "--trainer.batch_size", "1024", "--trainer.progress_bar", "false",
                 "--trainer.early_stopping_patience", "null", "--trainer.run_name", "hsb"]) == 0
    (run,) = list((tmp_path / "runs" / "hsb").glob("*"))
    with open(run / "eval" / "groups.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:2] == ["epoch", "step"] and {r["epoch"] for r in rows} == {"0", "1"}
    capsys.readouterr()
    assert main(["evaluate", str(run), "--ks", "1", "5", "--max-groups", "6", "--checkpoint", "last"]) == 0
    printed = capsys.readouterr().out
    assert "new groups" in printed and "k=  5" in printed
    assert "variance components (outcome units, likelihood gaussian_learned)" in printed and "between school" in printed
    components = json.loads((run / "eval" / "variance_components.json").read_text())
    assert components["residual_source"] == "learned" and components["n_groups"] == {"school": 160}
    assert 10 < components["between"]["school"] + components["residual"] < 80  # math achievement: total variance 47
    result = json.loads((run / "eval" / "group_metrics.json").read_text())
    assert {r["k"] for r in result["data_efficiency"]} == {1, 5}
    assert (run / "eval" / "data_efficiency.png").is_file()
    assert main(["evaluate", str(run), "--ks", "0"]) == 2


def test_fit_builds_the_data_module_of_a_data_sized_model_once(tmp_path, monkeypatch):
    """vaekit fit sizes a group model from its data module and trains on that same module: the data
    module (a file read in its constructor) is constructed once, and the model is built as before."""
    import functools

    import yaml

    import vaekit.data
    from vaekit.config import fit_config

    raw = yaml.safe_load((ROOT / "examples" / "configs" / "groups_table.yaml").read_text())
    raw["data"]["init_args"]["path"] = str(ROOT / raw["data"]["init_args"]["path"])
    raw["trainer"].update(max_steps=2, max_epochs=1, progress_bar=False, root_dir=str(tmp_path / "runs"))
    built = []
    init = vaekit.data.Table.__init__

    @functools.wraps(init)  # the same signature for jsonargparse
    def counting(self, *args, **kwargs):
        built.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(vaekit.data.Table, "__init__", counting)
    monkeypatch.chdir(tmp_path)
    res = fit_config(raw)
    assert len(built) == 1
    config = yaml.safe_load(res.run_dir.config_file.read_text())
    assert config["model"]["init_args"]["group_names"] == built[0].group_names and config["model"]["init_args"]["n_train"] == 510
