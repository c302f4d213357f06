"""analyze_model / analyze_run and ``vaekit analyze``: files, analysis.json, extras, errors before writing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from analysis_helpers import cluster_data

from vaekit.analysis import report
from vaekit.analysis.report import analyze_model
from vaekit.runs import analyze_run
from vaekit.cli import main
from vaekit.models import mlp_vae

FAST = dict(n_images=8, n_units=2, n_noise=256, mei_steps=10)


@pytest.fixture(autouse=True)
def no_registered_extras(monkeypatch):
    """Analyses registered by other parts of the library do not change what these tests expect."""
    monkeypatch.setattr(report, "EXTRA_ANALYSES", [])


def test_everything_on_an_image_model(vae, clusters, tmp_path):
    x, y = clusters
    res = analyze_model(vae, x[:120], y[:120], tmp_path / "out", **FAST)
    out = tmp_path / "out"
    want = {"reconstructions.png", "reconstruction.csv", "samples_t0.png", "samples_t0.5.png", "samples_t0.75.png", "samples_t1.png",
            "kl_per_dim.png", "traversal_z.png", "traversal_diff_z.png", "receptive_z.png", "mei_z.png", "analysis.json"}
    assert set(res["files"]) == want and all((out / f).stat().st_size > 100 for f in want)
    saved = json.loads((out / "analysis.json").read_text())
    assert saved["n"] == 120 and saved["latents"] == {"z": 4} and saved["skipped"] == {}
    assert 1 <= saved["active_units"]["z"] <= 4
    assert abs(sum(saved["kl"]["z"]["kl_per_dim"]) - saved["kl"]["z"]["kl"]) < 1e-4
    assert saved["probe"]["z"]["linear_accuracy"] > saved["probe"]["z"]["chance"] + 0.5
    assert saved["recon"]["ssim_window"] == 7 and 0 < saved["recon"]["ssim"] <= 1
    rows = (out / "reconstruction.csv").read_text().splitlines()
    assert rows[0] == "index,label,nelbo,mse,ssim" and len(rows) == 121 and rows[2].startswith("1,1,")
    assert abs(np.mean([float(r.split(",")[3]) for r in rows[1:]]) - saved["recon"]["mse"]) < 1e-5
    assert len(saved["traversal"]["z"]["units"]) == 2 and len(saved["receptive"]["z"]["field_norm"]) == 2
    mei = saved["mei"]["z"]
    assert all(a > r for a, r in zip(mei["activation"], mei["random_activation"]))


def test_two_latents_a_subset_and_extra_analyses(two, clusters, tmp_path, monkeypatch):
    def latent_count(model, x, labels, out_dir):
        (out_dir / "count.txt").write_text(str(len(model.latent_names)))
        return {"n_latents": len(model.latent_names), "files": ["count.txt"]}

    def never(model, x, labels, out_dir):
        return None

    monkeypatch.setattr(report, "EXTRA_ANALYSES", [latent_count, never])
    x, y = clusters
    res = analyze_model(two, x[:60], None, tmp_path, which="kl,traversal,probe,extra", **FAST)
    assert set(res["files"]) == {"kl_per_dim.png", "traversal_a.png", "traversal_b.png", "traversal_diff_a.png",
                                 "traversal_diff_b.png", "count.txt", "analysis.json"}
    assert res["extra"] == {"latent_count": {"n_latents": 2, "files": ["count.txt"]}}
    assert res["skipped"] == {"probe": "no labels", "never": "does not apply to this model"}
    assert set(res["kl"]) == {"a", "b"} and "recon" not in res
    res = analyze_model(two, x[:60], None, tmp_path / "k", which=["kl"], **FAST)
    assert "extra" not in res  # extras run only when asked for (or when which is None)


def test_tabular_data_get_numbers_but_no_images(tmp_path):
    x, y = cluster_data(80, d=5)
    torch.manual_seed(0)
    res = analyze_model(mlp_vae([5], 2, [8]), x, y, tmp_path, **FAST)
    assert res["images"] is False and set(res["files"]) == {"reconstruction.csv", "kl_per_dim.png", "analysis.json"}
    assert res["skipped"] == {"generation": "data are not images", "traversal": "data are not images"}
    assert "ssim" not in res["recon"] and len(res["receptive"]["z"]["field_norm"]) == 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(which="recon,bogus"), "unknown analysis 'bogus'; accepted: recon, generation"),
    (dict(labels=torch.zeros(7, dtype=torch.long)), "labels has 7 entries but x has 10 examples"),
    (dict(n_images=0), "n_images must be an int >= 1, got 0"),
    (dict(temperatures=[-0.5]), r"temperatures\[0\] must be a finite number >= 0"),
])
def test_bad_arguments_fail_before_anything_is_written(vae, clusters, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        analyze_model(vae, clusters[0][:10], out_dir=tmp_path / "never", **kwargs)
    assert not (tmp_path / "never").exists()
    with pytest.raises(ValueError, match="at least 2 examples"):
        analyze_model(vae, clusters[0][:1], out_dir=tmp_path / "never")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-epoch run of a VAE on 8x8 cluster images from an .npz file (labels included), trained in Python."""
    from vaekit.data import ArrayFile
    from vaekit.training import Trainer

    root = tmp_path_factory.mktemp("run")
    x, y = cluster_data(240)
    tx, ty = cluster_data(90, seed=0)
    np.savez(root / "clusters.npz", x=x.numpy(), y=y.numpy(), tx=tx.numpy(), ty=ty.numpy())
    data = ArrayFile(str(root / "clusters.npz"), labels_key="y", test_key="tx", test_labels_key="ty", val_fraction=0.2)
    torch.manual_seed(0)
    res = Trainer(max_epochs=2, batch_size=32, lr=3e-3, progress_bar=False, root_dir=str(root / "runs"),
                  run_name="tiny").fit(mlp_vae([64], 3, [16]), data)
    return res.run_dir.path


def test_vaekit_analyze_writes_eval_analysis(tiny_run, capsys):
    assert yaml.safe_load((tiny_run / "config.yaml").read_text())["data"]["class_path"].endswith("ArrayFile")
    assert main(["analyze", str(tiny_run), "--n-points", "60", "--only", "recon,kl,probe,traversal", "--n-units", "2"]) == 0
    out = tiny_run / "eval" / "analysis"
    assert sorted(p.name for p in out.iterdir()) == ["analysis.json", "kl_per_dim.png", "reconstruction.csv", "reconstructions.png",
                                                     "traversal_diff_z.png", "traversal_z.png"]
    saved = json.loads((out / "analysis.json").read_text())
    assert saved["n"] == 60 and saved["probe"]["z"]["n_test"] == 18 and saved["active_units"]["z"] <= 3
    printed = capsys.readouterr().out
    assert "analysed 60 test examples of VAE" in printed and f"written: {out}/analysis.json" in printed
    assert "probe z: linear" in printed


def test_analyze_run_reads_the_labels_of_the_split(tiny_run, tmp_path):
    res = analyze_run(tiny_run, split="train", n_points=50, which=["probe"], checkpoint="last")
    assert res["n"] == 50 and res["probe"]["z"]["n_classes"] == 3


@pytest.mark.parametrize("argv, match", [
    (["--only", "recon,nope"], "--only: unknown analysis 'nope'"),
    (["--n-points", "0"], "n_points must be an int >= 2, got 0"),
])
def test_vaekit_analyze_errors_name_the_option_and_write_nothing(tiny_run, capsys, argv, match):
    import shutil

    shutil.rmtree(tiny_run / "eval" / "analysis", ignore_errors=True)
    assert main(["analyze", str(tiny_run), *argv]) == 2
    assert match in capsys.readouterr().err
    assert not (tiny_run / "eval" / "analysis").exists()


def test_relaxed_discrete_latents_are_analysed_in_the_models_own_latent_shape(clusters, tmp_path):
    """A joint VAE's discrete posterior has batch shape (batch, N) and event (K,): its means are
    reshaped as sample_prior gives that latent, (batch, N*K), before decoding."""
    from vaekit.models.joint import joint_vae

    torch.manual_seed(0)
    model = joint_vae([64], continuous_features=2, n_variables=2, n_categories=3).eval()
    x = clusters[0][:30]
    res = analyze_model(model, x, None, tmp_path, which="recon,kl,traversal", **FAST)
    assert res["latents"] == {"z": 2, "c": 6} and res["kl"]["c"]["active_units"] <= 6
    assert (tmp_path / "traversal_c.png").is_file() and res["recon"]["mse"] < 0.5
