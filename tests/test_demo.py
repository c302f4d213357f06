"""`vaekit demo`: says what it will do, falls back to the bundled digits offline, leaves a complete run."""

from __future__ import annotations

import json

import pytest

import vaekit.data
from vaekit.data import DatasetNotFoundError
from vaekit.demo import demo_config, run_demo


def test_demo_offline_fallback(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))

    def no_network(name, root=None, *, download=True):
        raise DatasetNotFoundError(f"{name}: download failed (no network)")

    monkeypatch.setattr(vaekit.data, "locate", no_network)
    run = run_demo(runs_dir=str(tmp_path / "runs"), epochs=3, iwae_k=20, n_eval=50)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("vaekit demo: training a small VAE")
    assert any("Falling back to scikit-learn's bundled 8x8 digits" in line for line in out)
    assert any(line.startswith("run directory: ") and str(run) in line for line in out)
    ev = json.loads((run / "eval" / "evaluate-test-k20.json").read_text())
    assert ev["n"] == 50 and ev["elbo"] <= ev["iwae"] < 0
    for png in ("samples.png", "reconstructions.png"):
        assert (run / "eval" / png).read_bytes()[:4] == b"\x89PNG"


def test_demo_config_is_a_valid_fit_config():
    from vaekit.config import check_config_keys

    for dataset in ("mnist", "digits"):
        check_config_keys(demo_config(dataset))
    with pytest.raises(ValueError, match="dataset must be 'mnist' or 'digits'"):
        demo_config("cifar")
