"""The vaekit command end to end: fit -> evaluate -> sample -> resume, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import vaekit
from vaekit.cli import main
from vaekit.training import read_metrics


def _runs(root: Path) -> list[Path]:
    """Run directories under root/runs (runs/<name>/<timestamp>)."""
    return sorted(p for p in (root / "runs").glob("*/*") if p.is_dir())


def test_fit_evaluate_sample_and_load(tiny_config, tmp_path, capsys):
    assert main(["fit", "--config", str(tiny_config), "--trainer.max_epochs", "1"]) == 0
    (run,) = _runs(tmp_path)
    assert run.parent.name == "tiny"
    for part in ("config.yaml", "checkpoints/last.ckpt", "checkpoints/best.safetensors", "metrics.csv", "tensorboard", "eval", "log.txt"):
        assert (run / part).exists(), part
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["trainer"]["max_epochs"] == 1 and saved["model"]["init_args"]["data_shape"] == [64]
    assert "Training VAE" in (run / "log.txt").read_text()

    assert main(["evaluate", str(run), "--iwae-k", "50", "--n-points", "40"]) == 0
    out = json.loads((run / "eval" / "evaluate-test-k50.json").read_text())
    assert out["n"] == 40 and out["k"] == 50
    assert out["elbo"] <= out["iwae"] < 0
    rows = [r for r in read_metrics(run / "metrics.csv") if r["split"] == "test"]
    assert {r["name"] for r in rows} == {"elbo", "iwae_k50"}

    png = tmp_path / "s.png"
    assert main(["sample", str(run), "-n", "9", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    model = vaekit.load(run)
    assert model.sample(2).shape == (2, 64)


def test_resume_continues_to_the_same_weights(tiny_config, tmp_path):
    assert main(["fit", "--config", str(tiny_config), "--trainer.run_name", "full"]) == 0
    assert main(["fit", "--config", str(tiny_config), "--trainer.run_name", "cut", "--trainer.max_epochs", "1"]) == 0
    (full,) = [p for p in _runs(tmp_path) if p.parent.name == "full"]
    (cut,) = [p for p in _runs(tmp_path) if p.parent.name == "cut"]
    assert main(["fit", "--resume", str(cut / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "2"]) == 0
    a = vaekit.load(full, checkpoint="last").state_dict()
    b = vaekit.load(cut, checkpoint="last").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


@pytest.mark.parametrize("args,message", [
    (["--trainer.max_epoch", "3"], "unknown config key 'max_epoch' in trainer (did you mean 'max_epochs'?)"),
    (["--trainer.max_epochs", "zero"], "max_epochs"),
    (["--trainer.batch_size", "0"], "batch_size"),
    (["--model.init_args.kl", "exact"], "exact"),
])
def test_bad_overrides_are_named(tiny_config, tmp_path, capsys, args, message):
    assert main(["fit", "--config", str(tiny_config), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["trainer"].update(lr_schedul="cosine"), "unknown config key 'lr_schedul' in trainer (did you mean 'lr_schedule'?)"),
    (lambda c: c["model"]["init_args"]["encoder"]["init_args"].update(hiden=[3]),
     "unknown config key 'hiden' in model (vaekit.models.VAE).encoder (vaekit.nn.MLP) (did you mean 'hidden'?); accepted keys: activation"),
    (lambda c: c.update(trainr={}), "unknown config key 'trainr' in the top level (did you mean 'trainer'?)"),
    (lambda c: c.update(runs_dir="runs"), "unknown config key 'runs_dir' in the top level"),
    (lambda c: c["data"].update(class_path="vaekit.data.NoSuchData"), "cannot import 'vaekit.data.NoSuchData'"),
    (lambda c: c["model"]["init_args"].update(data_shape=[65]), "shape"),
])
def test_bad_config_files_are_named(tiny_config, tmp_path, capsys, edit, message):
    cfg = yaml.safe_load(tiny_config.read_text())
    edit(cfg)
    tiny_config.write_text(yaml.safe_dump(cfg))
    assert main(["fit", "--config", str(tiny_config)]) == 2
    assert message in capsys.readouterr().err
    assert _runs(tmp_path) == []


def test_missing_files_and_non_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", "nope.yaml"]) == 2
    assert "'nope.yaml' does not exist" in capsys.readouterr().err
    (tmp_path / "notarun").mkdir()
    assert main(["fit", "--resume", str(tmp_path / "notarun")]) == 2
    assert "not a vaekit run directory" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "notarun")]) == 2
    assert "not a vaekit run directory" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_corrupt_weights_give_a_clear_error(tiny_config, tmp_path, capsys):
    assert main(["fit", "--config", str(tiny_config), "--trainer.max_epochs", "1"]) == 0
    (run,) = _runs(tmp_path)
    for name in ("best.safetensors", "last.safetensors"):
        (run / "checkpoints" / name).write_bytes(b"garbage")
    with pytest.warns(UserWarning, match=r"best.safetensors' is truncated or corrupt: .* Using .*last.safetensors"):
        assert main(["sample", str(run)]) == 2  # best is corrupt: falls back to last, which is corrupt too
    assert "last.safetensors' is truncated or corrupt" in capsys.readouterr().err


def test_print_config_and_console_script(tiny_config, tmp_path):
    exe = Path(sys.executable).with_name("vaekit")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vaekit"]
    out = subprocess.run([*cmd, "fit", "--config", str(tiny_config), "--print_config"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    printed = yaml.safe_load(out.stdout)
    assert printed["trainer"]["lr"] == 0.001 and printed["model"]["class_path"] == "vaekit.models.VAE"
    assert not (tmp_path / "runs").exists()
    help_ = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0 and "evaluate" in help_.stdout


def test_evaluate_with_ais_and_local_optimisation_writes_the_gap_table(tiny_config, tmp_path, capsys):
    assert main(["fit", "--config", str(tiny_config), "--trainer.max_epochs", "1"]) == 0
    (run,) = _runs(tmp_path)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--iwae-k", "20", "--n-points", "6", "--ais-chains", "2", "--ais-steps", "10",
                 "--local-opt", "ffg", "af", "--local-opt-steps", "20"]) == 0
    printed = capsys.readouterr().out
    assert "| Amortization gap |" in printed and "L[q*_AF]" in printed
    gaps = json.loads((run / "eval" / "gaps-test.json").read_text())[0]
    assert gaps["log_px_source"] == "max(AIS, IWAE)" and set(gaps["local"]) == {"gaussian", "af"}
    assert gaps["approximation_gap"] + gaps["amortization_gap"] == pytest.approx(gaps["inference_gap"])
    assert (run / "eval" / "gaps-test.csv").is_file() and (run / "eval" / "gaps-test.md").is_file()
    assert main(["evaluate", str(run), "--local-opt", "fgg"]) == 2
    assert "unknown family ['fgg']" in capsys.readouterr().err


def test_failed_resume_leaves_the_run_intact(tiny_config, tmp_path, capsys):
    assert main(["fit", "--config", str(tiny_config), "--trainer.max_epochs", "1"]) == 0
    (run,) = _runs(tmp_path)
    config_before = (run / "config.yaml").read_text()
    ckpt_before = (run / "checkpoints" / "last.ckpt").read_bytes()
    args = ["fit", "--resume", str(run), "--model.init_args.posterior.init_args.latent_features", "5",
            "--model.init_args.decoder.init_args.in_features", "5"]
    assert main(args) == 2
    assert "does not match the checkpoint" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == config_before
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == ckpt_before
    assert vaekit.load(run).sample(1).shape == (1, 64)


def test_evaluate_with_ais_on_a_two_layer_model_and_local_opt_refused(tmp_path, monkeypatch, capsys, ladder_spec):
    """AIS from the CLI on a 2-layer hierarchical VAE: no --local-opt, no approximation/amortization split.

    Tolerances as in tests/inference/test_gaps.py (measured over 5 seeds: AIS - IWAE within
    0.03 nats, AIS - ELBO 0.20 to 0.40 nats, on 20 points)."""
    import math

    monkeypatch.chdir(tmp_path)
    config = tmp_path / "ladder.yaml"
    config.write_text(yaml.safe_dump(ladder_spec, sort_keys=False))
    assert main(["fit", "--config", str(config)]) == 0
    (run,) = _runs(tmp_path)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--iwae-k", "2000", "--n-points", "20", "--ais-chains", "8", "--ais-steps", "100",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "AIS(8 chains, 100 steps) log p(x)" in printed and "| Inference gap |" in printed
    assert "no approximation/amortization split: it needs L[q*]" in printed
    gaps = json.loads((run / "eval" / "gaps-test.json").read_text())[0]
    numbers = [gaps[k] for k in ("ais", "iwae", "elbo", "log_px", "inference_gap")]
    assert all(math.isfinite(v) for v in numbers)
    assert gaps["own"] is None and gaps["local"] == {} and gaps["log_px_source"] == "max(AIS, IWAE)"
    assert abs(gaps["ais"] - gaps["iwae"]) < 0.1 and gaps["ais"] > gaps["elbo"] + 0.1
    assert gaps["log_px"] >= max(gaps["ais"], gaps["iwae"])
    assert gaps["approximation_gap"] is None and gaps["amortization_gap"] is None
    assert gaps["inference_gap"] == pytest.approx(gaps["log_px"] - gaps["elbo"])
    iwae = json.loads((run / "eval" / "evaluate-test-k2000.json").read_text())
    assert iwae["iwae"] == pytest.approx(gaps["iwae"]) and iwae["elbo"] == pytest.approx(gaps["elbo"])

    before = {p.name: p.read_bytes() for p in [*(run / "eval").iterdir(), run / "metrics.csv"]}
    assert main(["evaluate", str(run), "--ais-chains", "2", "--local-opt", "ffg"]) == 2
    err = capsys.readouterr().err
    assert "--local-opt needs a model that declares amortized(x)" in err and "HierarchicalVAE" in err
    assert {p.name: p.read_bytes() for p in [*(run / "eval").iterdir(), run / "metrics.csv"]} == before
    from vaekit.runs import evaluate_run  # the same refusal from Python, also before anything is written

    with pytest.raises(TypeError, match=r"HierarchicalVAE does not declare amortized.*local_opt=\['ffg'\] needs it"):
        evaluate_run(run, iwae_k=10, local_opt=["ffg"])
    assert {p.name: p.read_bytes() for p in [*(run / "eval").iterdir(), run / "metrics.csv"]} == before
