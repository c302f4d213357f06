"""analyze_model runs the relaxed-categorical diagnostics for discrete models, and only for them."""

from __future__ import annotations

import json

import torch

from vaekit.analysis import analyze_model
from vaekit.models import discrete_vae, mlp_vae


def test_discrete_model_gets_discrete_diagnostics(tmp_path):
    torch.manual_seed(0)
    model = discrete_vae([16], n_variables=2, n_categories=3, hidden=(8,), relaxation="igr_sb", temperature=0.5)
    x = torch.bernoulli(torch.full((24, 16), 0.4))
    out = analyze_model(model, x, out_dir=tmp_path / "d", which=["kl", "extra"])
    extra = out["extra"]["discrete"]
    assert (tmp_path / "d" / "discrete.json").is_file() and (tmp_path / "d" / "discrete_proximity.png").is_file()
    saved = json.loads((tmp_path / "d" / "discrete.json").read_text())
    assert set(saved) >= {"proximity"} and extra["files"] == ["discrete.json", "discrete_proximity.png"]


def test_continuous_model_skips_them(tmp_path):
    out = analyze_model(mlp_vae([16], 2, hidden=[8]), torch.bernoulli(torch.full((8, 16), 0.4)),
                        out_dir=tmp_path, which=["extra"])
    assert "discrete" not in out.get("extra", {}) or out["extra"]["discrete"] is None
    assert not (tmp_path / "discrete.json").exists()
