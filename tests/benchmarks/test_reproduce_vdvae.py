"""benchmarks/reproduce_vdvae.py: the vdvae/binarized_mnist row from a (stand-in) run directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("VAEKIT_DATA") or ROOT.parent / "shared" / "data")
pytestmark = pytest.mark.skipif(not (SHARED / "binarized_mnist").is_dir(), reason=f"no binarized MNIST under {SHARED}")


@pytest.fixture(scope="module", autouse=True)
def shared_data():
    """The data folder for the whole module: the stand-in run reads it when it trains and when it is evaluated."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAEKIT_DATA", os.environ.get("VAEKIT_DATA") or str(SHARED))
        yield


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, shared_data):
    """A tiny spatial VDVAE trained for 4 steps on binarized MNIST, with one validation."""
    from vaekit.config import fit_config

    root = tmp_path_factory.mktemp("runs")
    cfg = {
        "model": {"class_path": "vaekit.models.hierarchical.vdvae",
                  "init_args": {"data_shape": [1, 28, 28], "enc_blocks": "28d4,7d7,1x1", "dec_blocks": "1x1,7m1,28m7",
                                "width": 4, "latent_channels": 2, "likelihood": "bernoulli"}},
        "data": {"class_path": "vaekit.data.BinarizedMNIST", "init_args": {"flatten": False}},
        "objective": {"class_path": "vaekit.objectives.ELBO"},
        "trainer": {"run_name": "tiny_vdvae", "max_steps": 4, "batch_size": 16, "val_every_steps": 4,
                    "val_every_epochs": None, "log_every_steps": 2, "root_dir": str(root), "progress_bar": False},
    }
    return Path(fit_config(cfg).run_dir)


@pytest.fixture
def script(load_benchmark):
    return load_benchmark("reproduce_vdvae")


def test_rows_page_and_chunk_cache(script, run_dir, tmp_path, capsys):
    out = tmp_path / "results"
    argv = [str(run_dir), "--iwae-k", "4", "--n-points", "20", "--chunk-points", "8", "--threads", "1",
            "--out-dir", str(out), "--cache-dir", str(tmp_path / "cache")]
    assert script.main(argv) == 0
    rows = {r["quantity"]: r for r in json.loads((out / "reproductions.json").read_text())}
    assert set(rows) == {"log_px", "elbo"}
    lp, elbo = rows["log_px"], rows["elbo"]
    assert lp["experiment"] == elbo["experiment"] == "vdvae/binarized_mnist"
    assert lp["paper"] == -79.09 and lp["n_points"] == 20 and lp["steps"] == 4
    from vaekit.runs import load
    assert lp["params"] == sum(p.numel() for p in load(run_dir).parameters())
    # IWAE per image is a log-mean-exp of the same log-weights whose mean is the ELBO: never below it
    assert torch.isfinite(torch.tensor([lp["vaekit"], elbo["vaekit"]])).all() and lp["vaekit"] >= elbo["vaekit"]
    assert "misses the goal" in lp["note"] and "20 of the 10000 test images" in lp["note"]
    chunks = sorted((tmp_path / "cache").iterdir())
    assert len(chunks) == 3  # 8 + 8 + 4 images
    page = (out / "vdvae_binarized_mnist_cpu.md").read_text()
    assert "| log p(x), IWAE k=4 |" in page and "| 4 | 0 |" in page  # the validation at step 4 in the curve
    assert "| vdvae/binarized_mnist | log_px |" in (out / "reproductions.md").read_text()
    # a second run reads the chunks it finds; one chunk lost is computed again with the same draws (seeded per chunk)
    chunks[1].unlink()
    capsys.readouterr()
    assert script.main(argv) == 0
    printed = capsys.readouterr().out
    assert "chunk 2/3" in printed and "chunk 1/3" not in printed and "chunk 3/3" not in printed
    assert not list((tmp_path / "cache").glob("*.tmp"))
    again = {r["quantity"]: r for r in json.loads((out / "reproductions.json").read_text())}
    assert again["log_px"]["vaekit"] == lp["vaekit"] and again["elbo"]["vaekit"] == elbo["vaekit"]
    # a chunk file whose contents belong to other settings is not used
    foreign = torch.load(chunks[0], weights_only=True)
    foreign["key"]["k"] = 99
    torch.save(foreign, chunks[0])
    assert script.main(argv) == 0
    printed = capsys.readouterr().out
    assert "could not be used" in printed and "chunk 1/3" in printed and "chunk 2/3" not in printed
    # other settings (here k) are other chunks: every one computed, none of the first ones read
    assert script.main([*argv[:2], "5", *argv[3:]]) == 0
    printed = capsys.readouterr().out
    assert all(f"chunk {i}/3" in printed for i in (1, 2, 3)) and len(list((tmp_path / "cache").iterdir())) == 6


@pytest.mark.parametrize("flag, value, says", [("--iwae-k", "0", "--iwae-k must be a positive integer"),
                                               ("--n-points", "-3", "--n-points must be a positive integer"),
                                               ("--chunk-points", "0", "--chunk-points must be a positive integer"),
                                               ("--seed", "-1", "--seed must be >= 0")])
def test_bad_arguments_are_refused_before_anything_is_written(script, run_dir, tmp_path, flag, value, says):
    with pytest.raises(SystemExit, match=says):
        script.main([str(run_dir), flag, value, "--out-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_a_directory_that_is_not_a_binarized_mnist_run_is_refused(script, tmp_path):
    with pytest.raises(SystemExit, match="is not a vaekit run directory"):
        script.main([str(tmp_path), "--out-dir", str(tmp_path / "out")])
    (tmp_path / "config.yaml").write_text("model: {class_path: vaekit.models.hierarchical.vdvae}\n"
                                          "data: {class_path: vaekit.data.FashionMNIST}\n")
    (tmp_path / "metrics.csv").write_text("step,epoch,split,name,value\n")
    with pytest.raises(SystemExit, match="trained on vaekit.data.FashionMNIST"):
        script.main([str(tmp_path), "--out-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_only_models_with_spatial_latents_count_as_a_vdvae(script):
    from vaekit.models import mlp_vae
    from vaekit.models.hierarchical import ladder_vae, vdvae

    script.check_vdvae(vdvae([1, 8, 8], enc_blocks="8x1,8d2,4x1,4d4,1x1", dec_blocks="1x1,4m1,4x1,8m4", width=8,
                             latent_channels=2, likelihood="bernoulli"))
    with pytest.raises(SystemExit, match="HierarchicalVAE whose latents are all vectors"):
        script.check_vdvae(ladder_vae([784]))
    with pytest.raises(SystemExit, match="the run's model is a VAE; the vdvae/binarized_mnist row needs"):
        script.check_vdvae(mlp_vae([784]))


def test_a_damaged_weights_file_is_refused_not_replaced(script, run_dir, tmp_path):
    import shutil

    run = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, run)
    best = run / "checkpoints" / "best.safetensors"
    data = bytearray(best.read_bytes())
    data[-1] ^= 0xFF
    best.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="best.safetensors cannot be used"):
        script.load_checkpoint(run, "best", "cpu", tries=2)
    model, state = script.load_checkpoint(run, "last", "cpu")
    assert state["checkpoint"] == "last" and state["step"] == 4 and len(state["sha256"]) == 64


def test_the_rendered_table_shows_a_missing_paper_epoch_count_as_a_dash(load_benchmark):
    cremer = load_benchmark("reproduce_cremer2018")
    row = {"experiment": "vdvae/binarized_mnist", "quantity": "log_px", "paper": -79.09, "vaekit": -85.0, "stderr": 0.3,
           "n_points": 10, "epochs": 1.5, "paper_epochs": None, "device": "cpu", "note": "", "binarization": "b",
           "run": "r", "commit": "c", "date": "d", "wall_s": 1, "command": "cmd", "estimator": "IWAE k=1000"}
    assert "| 10 | 1.5 / — | cpu |" in cremer.render([row], "t")


def test_the_training_curve_skips_a_half_written_last_line(script, tmp_path):
    (tmp_path / "config.yaml").write_text("trainer: {batch_size: 10, log_every_steps: 5}\n")
    (tmp_path / "metrics.csv").write_text("step,epoch,split,name,value\n5,0,train,samples_per_s,25.0\n"
                                          "5,0,val,elbo,-120.5\n10,0,train,samples_per_s,5.0\n"
                                          "15,0,train,samples_per_s,20.0\n20,0,train,samples_per_s,")
    curve = script.training_curve(tmp_path)
    # time: 50/25 + 50/5 + 50/20 s; rate: the median window (a slow window, e.g. a pause, does not move it)
    assert curve["val_elbo"] == [(5, 0, -120.5)] and curve["train_s"] == 14.5 and curve["samples_per_s"] == 20.0
    # a torn last line that still parses ("8" of "84.86") is left out too; rows after the checkpoint's step as well
    (tmp_path / "metrics.csv").write_text("step,epoch,split,name,value\n5,0,train,samples_per_s,25.0\n"
                                          "10,0,train,samples_per_s,50.0\n15,0,train,samples_per_s,8")
    assert script.training_curve(tmp_path)["train_s"] == 3.0
    assert script.training_curve(tmp_path, until_step=5)["train_s"] == 2.0
