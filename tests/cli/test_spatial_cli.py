"""A VDVAE with spatial latents through the CLI: fit, evaluate --iwae-k, resume to the same weights, load."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

import vaekit
from vaekit.cli import main

SPATIAL = {
    "model": {"class_path": "vaekit.models.hierarchical.vdvae", "init_args": {
        "data_shape": [1, 8, 8], "enc_blocks": "8x1,8d2,4x1,4d4,1x1", "dec_blocks": "1x1,4m1,4x1,8m4",
        "width": 8, "latent_channels": 2, "bottleneck_multiple": 0.5, "likelihood": "bernoulli"}},
    "data": {"class_path": "vaekit.data.Digits", "init_args": {"binarize": "dynamic", "flatten": False, "test_fraction": 0.2}},
    "objective": {"class_path": "vaekit.objectives.ELBO", "init_args": {"warmup_steps": 10}},
    "trainer": {"max_epochs": 2, "batch_size": 128, "progress_bar": False, "seed": 3, "run_name": "spatial",
                "skip_threshold": 1.0e6, "ema_decay": 0.99},
}


def _run(root: Path, name: str) -> Path:
    (run,) = [p for p in (root / "runs" / name).glob("*") if p.is_dir()]
    return run


def test_spatial_vdvae_fits_evaluates_resumes_and_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "spatial.yaml"
    config.write_text(yaml.safe_dump(SPATIAL, sort_keys=False))
    assert main(["fit", "--config", str(config), "--trainer.run_name", "full"]) == 0
    assert main(["fit", "--config", str(config), "--trainer.run_name", "cut", "--trainer.max_epochs", "1"]) == 0
    full, cut = _run(tmp_path, "full"), _run(tmp_path, "cut")

    assert main(["evaluate", str(full), "--iwae-k", "20", "--n-points", "30"]) == 0
    out = json.loads((full / "eval" / "evaluate-test-k20.json").read_text())
    assert out["n"] == 30 and out["k"] == 20 and out["elbo"] <= out["iwae"] < 0

    # resume: the cut run continued to epoch 2 ends at the weights of the uninterrupted run
    assert main(["fit", "--resume", str(cut / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "2"]) == 0
    a = vaekit.load(full, checkpoint="last").state_dict()
    b = vaekit.load(cut, checkpoint="last").state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)

    model = vaekit.load(full)
    assert model.blocks["z4"].latent_shape == (2, 8, 8) and model.latent_dims["z4"] == 128
    assert model.sample(3).shape == (3, 1, 8, 8)
