from __future__ import annotations

import copy

import pytest
import yaml


TINY = {
    "model": {"class_path": "vaekit.models.VAE", "init_args": {
        "encoder": {"class_path": "vaekit.nn.MLP", "init_args": {"in_features": 64, "out_features": 32, "output_activation": "elu"}},
        "posterior": {"class_path": "vaekit.distributions.DiagonalGaussian", "init_args": {"context_features": 32, "latent_features": 4}},
        "decoder": {"class_path": "vaekit.nn.MLP", "init_args": {"in_features": 4, "out_features": 64, "hidden": [32]}},
        "likelihood": {"class_path": "vaekit.distributions.Bernoulli"},
        "data_shape": [64],
    }},
    "data": {"class_path": "vaekit.data.Digits", "init_args": {"binarize": "dynamic", "flatten": True, "test_fraction": 0.2}},
    "objective": {"class_path": "vaekit.objectives.ELBO", "init_args": {"warmup_steps": 10}},
    "trainer": {"max_epochs": 2, "batch_size": 64, "progress_bar": False, "seed": 3, "run_name": "tiny"},
}

# A 2-layer ladder VAE on Digits, one epoch (the hierarchical CLI tests).
LADDER = {
    "model": {"class_path": "vaekit.models.hierarchical.ladder_vae",
              "init_args": {"data_shape": [64], "hidden": [16, 8], "latent": [4, 2]}},
    "data": {"class_path": "vaekit.data.Digits", "init_args": {"binarize": "dynamic", "flatten": True, "test_fraction": 0.2}},
    "objective": {"class_path": "vaekit.objectives.ELBO"},
    "trainer": {"max_epochs": 1, "batch_size": 64, "progress_bar": False, "seed": 0, "run_name": "ladder"},
}


@pytest.fixture(scope="session")
def ladder_spec():
    """The 2-layer ladder VAE config as a dict (a fresh copy per session; build new dicts from it)."""
    return copy.deepcopy(LADDER)


@pytest.fixture
def tiny_config(tmp_path, monkeypatch):
    """A 2-epoch Digits VAE config written to tmp_path/tiny.yaml; cwd is tmp_path."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY, sort_keys=False))
    return path


@pytest.fixture
def migration_inputs(tmp_path):
    """``write(stem, checkpoint, config)``: ``checkpoint`` saved to ``tmp_path/<stem>.pth`` and the ``config`` dict to
    ``tmp_path/<stem>.yaml``; returns the two paths (what ``vaekit migrate SRC --config C`` reads)."""
    import torch

    def write(stem, checkpoint, config):
        path, config_path = tmp_path / f"{stem}.pth", tmp_path / f"{stem}.yaml"
        torch.save(checkpoint, path)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path, config_path

    return write


@pytest.fixture
def refused_migration(tmp_path, capsys):
    """``check(model, path, config, preset, change, message)``: ``vaekit migrate`` of ``model``'s state dict, changed in
    place by ``change``, is refused (status 2) with ``message`` in its error and writes nothing."""
    import torch

    from vaekit.cli import main

    def check(model, path, config, preset, change, message):
        sd = model.state_dict()
        change(sd)
        torch.save(sd, path)
        out = tmp_path / "run"
        assert main(["migrate", str(path), "--preset", preset, "--config", str(config), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "migration refused (strict=True), nothing was loaded" in err and message in err
        assert not out.exists()

    return check
