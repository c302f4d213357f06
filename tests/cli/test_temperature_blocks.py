"""``vaekit sample/analyze --temperature`` (one per latent layer) and ``vaekit analyze --block`` on a 2-layer run."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import vaekit
from vaekit.analysis.images import save_image_grid
from vaekit.cli import main

@pytest.fixture(scope="module")
def ladder_run(tmp_path_factory, ladder_spec):
    root = tmp_path_factory.mktemp("ladder")
    config = root / "ladder.yaml"
    config.write_text(yaml.safe_dump({**ladder_spec, "trainer": {**ladder_spec["trainer"], "root_dir": str(root / "runs")}}, sort_keys=False))
    assert main(["fit", "--config", str(config)]) == 0
    (run,) = [p.parent.parent for p in (root / "runs").rglob("checkpoints/last.ckpt")]
    return run


def test_sample_with_one_temperature_per_layer(ladder_run, tmp_path, capsys):
    def grid(setting, seed):
        path = tmp_path / f"t{'-'.join(setting)}-s{seed}.png"
        assert main(["sample", str(ladder_run), "-n", "4", "--seed", str(seed), "--temperature", *setting, "--out", str(path)]) == 0
        return path.read_bytes()

    zero = grid(["0", "0"], 0)
    assert zero[:4] == b"\x89PNG"
    assert grid(["0", "0"], 1) == zero  # every layer at its prior mean: the seed does not matter
    assert grid(["0", "1"], 0) != grid(["0", "1"], 1)  # z1 drawn: it does
    # the values go to the layers in the model's order (z2 first): the grid is model.sample(temperature=[0, 1]), not [1, 0]
    model = vaekit.load(ladder_run, checkpoint="best")
    assert model.latent_names == ("z2", "z1")

    def expected(temperature):
        torch.manual_seed(0)
        with torch.no_grad():
            x = model.sample(4, temperature=temperature)
        return save_image_grid(x, tmp_path / f"want-{temperature}.png", model.data_shape, title="4 samples").read_bytes()

    assert grid(["0", "1"], 0) == expected([0.0, 1.0]) != expected([1.0, 0.0])
    for argv, message in (
        (["--temperature", "1", "0.8", "0.6"], "temperature lists one value per latent layer of HierarchicalVAE (2: z2, z1, top first)"),
        (["--temperature", "hot"], "--temperature takes one number for every latent"),
        (["--temperature", "1", "-1"], "temperature must be a finite number >= 0, got -1"),
    ):
        bad = tmp_path / "bad.png"
        assert main(["sample", str(ladder_run), "-n", "2", "--out", str(bad), *argv]) == 2
        assert message in capsys.readouterr().err and not bad.exists()


def test_analyze_on_blocks_with_per_layer_temperatures(ladder_run, capsys):
    argv = ["analyze", str(ladder_run), "--only", "generation,probe,traversal", "--n-points", "60", "--n-units", "2",
            "--block", "h1", "--block", "z2,x_in", "--temperature", "1", "0", "--temperature", "linear:0:1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "blocks {'h1': 16, 'z2': 2, 'x_in': 64}" in printed
    res = json.loads((ladder_run / "eval" / "analysis" / "analysis.json").read_text())
    assert res["generation"]["temperatures"] == [[1.0, 0.0], [0.0, 1.0]]
    assert {"samples_t1-0.png", "samples_t0-1.png", "traversal_h1.png", "traversal_diff_h1.png", "traversal_z2.png"} <= set(res["files"])
    assert sorted(res["probe"]) == ["all", "h1", "x_in", "z2"] and res["traversal"]["h1"]["principal_directions"] == [0, 1]
    before = sorted(p.name for p in (ladder_run / "eval" / "analysis").iterdir())
    assert main(["analyze", str(ladder_run), "--block", "nope"]) == 2
    err = capsys.readouterr().err
    assert "blocks must be one of the model's latents ['z2', 'z1'] or blocks ['x_in', 'h1', 'h2', 'x_out'], got 'nope'" in err
    assert main(["analyze", str(ladder_run), "--temperature", "1", "1", "1"]) == 2
    assert "(2: z2, z1, top first), got 3 values" in capsys.readouterr().err
    assert sorted(p.name for p in (ladder_run / "eval" / "analysis").iterdir()) == before
