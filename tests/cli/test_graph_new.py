"""``vaekit new`` templates train; ``vaekit graph`` draws a run's block graph; the one-file Python model route."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import vaekit
from vaekit.cli import main
from vaekit.config import build_model_parser, check_config_keys
from vaekit.models import mlp_vae
from vaekit.models.hierarchical.graph import draw_graph, graph_layout
from vaekit.models.hierarchical.model import HierarchicalVAE
from vaekit.models.hierarchical.source import from_python

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
ONE_STEP = ["--trainer.max_steps", "1", "--trainer.max_epochs", "1", "--trainer.progress_bar", "false"]


def _run(root: Path) -> Path:
    (run,) = [p for p in (root / "runs").glob("*/*") if p.is_dir()]
    return run


def test_new_model_template_trains_loads_and_draws(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["new", "model", "mymodel"]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"mymodel.py", "mymodel.yaml"}
    assert "vaekit fit --config mymodel.yaml" in capsys.readouterr().out
    assert main(["fit", "--config", "mymodel.yaml", *ONE_STEP]) == 0
    run = _run(tmp_path)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["init_args"]["source"] == "mymodel.py:model"
    with pytest.raises(vaekit.UntrustedConfigError, match="mymodel.py:model"):  # a model file runs only when trusted
        vaekit.load(run, checkpoint="last")
    with pytest.warns(vaekit.trust.TrustWarning, match="mymodel.py:model"):
        model = vaekit.load(run, checkpoint="last", trust_code=True)
    assert isinstance(model, HierarchicalVAE) and model.latent_dims == {"z2": 8, "z1": 16}
    assert "d2" in model.blocks and type(model.blocks["d2"]).__name__ == "Residual"  # the template's custom block
    assert torch.isfinite(model.log_weights(torch.bernoulli(torch.full((3, 64), 0.5)), 4)).all()

    assert main(["evaluate", str(run), "--iwae-k", "20", "--n-points", "10", "--checkpoint", "last", "--trust-code"]) == 0
    out = yaml.safe_load((run / "eval" / "evaluate-test-k20.json").read_text())
    assert out["elbo"] <= out["iwae"] < 0

    assert main(["graph", str(run), "--out", "g.png", "--trust-code"]) == 0
    assert (tmp_path / "g.png").read_bytes()[:8] == PNG
    assert main(["graph", str(run), "--trust-code"]) == 0
    assert (run / "eval" / "graph.png").read_bytes()[:8] == PNG


def test_new_dataset_template_trains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["new", "dataset", "MyData", "--dir", "data"]) == 0
    monkeypatch.syspath_prepend(str(tmp_path / "data"))
    assert main(["fit", "--config", "data/MyData.yaml", *ONE_STEP]) == 0
    data = vaekit.runs.load_data(_run(tmp_path), allow=["MyData.MyData"])  # the user's own class
    data.setup()
    assert type(data).__name__ == "MyData" and data.train.shape == (800, 16) and set(data.train.unique().tolist()) == {0.0, 1.0}


def test_new_refuses_to_overwrite_and_bad_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text("mine")
    assert main(["new", "model", "m"]) == 2
    assert "refusing to overwrite m.yaml" in capsys.readouterr().err
    assert (tmp_path / "m.yaml").read_text() == "mine" and not (tmp_path / "m.py").exists()
    assert main(["new", "model", "my-model"]) == 2
    assert "NAME must be a Python identifier (it becomes a module name), got 'my-model'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["new", "layer", "x"])


def test_graph_refuses_models_without_blocks(tiny_config, tmp_path, capsys):
    assert main(["fit", "--config", str(tiny_config), *ONE_STEP]) == 0
    run = _run(tmp_path)
    assert main(["graph", str(run), "--out", "g.png"]) == 2
    assert "holds a VAE, which has no block graph" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()
    with pytest.raises(TypeError, match="the block graph exists only for a HierarchicalVAE, got VAE"):
        draw_graph(mlp_vae([4], 2, hidden=[3]), tmp_path / "v.png")


def test_graph_layout_columns_and_condition_edges():
    model = from_python(f"{ROOT}/examples/models/ladder.py:model", {"data_shape": [6], "hidden": [4, 3], "latent": [3, 2],
                                                                    "gate": True})
    nodes, edges = graph_layout(model)
    assert [n for n, v in nodes.items() if v[0] == 0.0] == ["x", "x_in", "h1", "h2"]
    assert [n for n, v in nodes.items() if v[2] == "generative"] == ["z2", "z1"]
    assert nodes["x_out"][2] == "output" and nodes["z1_gated"][2] == "generator"
    assert sorted(e for e in edges if e[2] == "condition") == [("h1", "z1", "condition"), ("h2", "z2", "condition")]


def test_python_file_model_from_its_yaml():
    raw = yaml.safe_load((ROOT / "examples" / "models" / "ladder.yaml").read_text())
    raw["model"]["init_args"]["source"] = f"{ROOT}/{raw['model']['init_args']['source']}"
    check_config_keys(raw)
    parser = build_model_parser()
    model = parser.instantiate(parser.parse_object({"model": raw["model"]})).model
    assert model.latent_dims == {"z2": 50, "z1": 100} and "z1_gated" in model.blocks
    assert model.sample(2).shape == (2, 784)


@pytest.mark.parametrize("source,kwargs,message", [
    ("no_colon.py", None, "source must be 'path/to/file.py:function'"),
    ("nowhere/missing.py:model", None, "does not exist"),
    ("vaekit.no_such_module:model", None, "cannot import module 'vaekit.no_such_module'"),
    ("vaekit.models.hierarchical.presets:nothing", None, "has no function 'nothing'"),
    ("vaekit.models:mlp_vae", {"data_shape": [4]}, "must return a HierarchicalVAE or a pair (blocks, {'data_shape': ...}), got VAE"),
    ("vaekit.models.hierarchical.presets:ladder_vae", [1], "kwargs must be a mapping"),
])
def test_from_python_errors(source, kwargs, message):
    with pytest.raises((ValueError, TypeError)) as err:
        from_python(source, kwargs)
    assert message in str(err.value)
