"""Weights saved before flows were lists of step modules (main 4a54f73) load and give the same numbers.

The fixtures in ``data/`` were written by ``data/make_main_flow_fixtures.py`` with the code of
that commit: per family a state dict with the draws and log-densities it gave, and a whole
run directory of a VAE with a planar-flow posterior.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vaekit
from vaekit.distributions import rsample_and_log_prob
from vaekit.distributions.flows import upgrade_state_dict

DATA = Path(__file__).parent / "data"


def _families():
    """The families of the script that wrote the fixtures, so that both build the same ones."""
    spec = importlib.util.spec_from_file_location("make_main_flow_fixtures", DATA / "make_main_flow_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FAMILIES


FAMILIES = _families()
SAVED = load_file(str(DATA / "flows_main_4a54f73.safetensors"))


def _old_state(name: str) -> dict[str, torch.Tensor]:
    prefix = f"{name}/state/"
    return {k[len(prefix):]: v for k, v in SAVED.items() if k.startswith(prefix)}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_old_state_dict_loads_and_draws_the_same(name):
    torch.manual_seed(1)
    family = FAMILIES[name]()
    old = _old_state(name)
    family.load_state_dict(old)  # strict: every old key converted, none missing
    new = family.state_dict()
    assert sum(v.numel() for v in new.values()) == sum(v.numel() for v in old.values())
    with torch.no_grad():
        torch.manual_seed(5)
        z, log_q = rsample_and_log_prob(family(SAVED["context"]), (3,))
    # 1e-5 absolute and relative: the record's CPU and another round differently (2e-6 relative seen on an AMD EPYC)
    torch.testing.assert_close(z, SAVED[f"{name}/z"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_q, SAVED[f"{name}/log_q"], rtol=1e-5, atol=1e-5)


def test_which_families_changed_their_keys():
    changed = {name for name in FAMILIES if set(_old_state(name)) != set(FAMILIES[name]().state_dict())}
    # the stacked per-step layers became one layer per step module; RealNVP's steps are now its transforms
    assert changed == {"planar", "radial", "sylvester_orthogonal_m2", "sylvester_householder", "sylvester_triangular",
                       "realnvp"}
    planar = FAMILIES["planar"]()
    assert sorted(upgrade_state_dict(planar, _old_state("planar"))) == sorted(planar.state_dict())


def test_run_directory_written_by_main_loads_with_the_same_log_weights():
    model = vaekit.load(DATA / "run_main_4a54f73_planar")
    expected = load_file(str(DATA / "run_main_4a54f73_planar" / "expected_log_weights.safetensors"))
    with torch.no_grad():
        torch.manual_seed(3)
        lw = model.log_weights(expected["x"], 4)
    torch.testing.assert_close(lw, expected["log_weights"], rtol=0, atol=1e-4)


def test_resuming_a_run_with_stacked_flow_weights_names_the_cause(tmp_path):
    """A checkpoint whose flow keys are the old stacked ones is refused on resume with the real cause
    (its optimizer state follows the old parameters), before anything in the run is written."""
    from vaekit.training.checkpoint import load_checkpoint, save_checkpoint

    from vaekit.distributions import Bernoulli, PlanarFlow
    from vaekit.models import VAE
    from vaekit.nn import MLP

    def planar_vae():
        return VAE(MLP(6, 8, [8], output_activation="elu"), PlanarFlow(8, 2, n_flows=3), MLP(2, 6, [8]), Bernoulli(),
                   data_shape=[6])

    torch.manual_seed(0)
    model = planar_vae()
    from vaekit.data import ArrayData

    x = ArrayData(torch.bernoulli(torch.full((40, 6), 0.4)))
    trainer = vaekit.Trainer(max_epochs=1, batch_size=20, root_dir=str(tmp_path), progress_bar=False)
    run = Path(trainer.fit(model, x).run_dir)
    ckpt = run / "checkpoints" / "last.ckpt"
    state = load_checkpoint(ckpt)
    old = {k: v for k, v in state["model"].items() if ".transforms." not in k}
    for kind in ("weight", "bias"):  # the stacked layer of the code before flows were lists of steps
        old[f"posterior.amortize.{kind}"] = torch.cat(
            [state["model"][f"posterior.transforms.{t}.amortize.{kind}"] for t in range(3)])
    save_checkpoint(ckpt, {**state, "model": old}, manifest=True)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"stacked the parameters.*posterior\.amortize\.bias.*cannot be resumed"):
        vaekit.Trainer(max_epochs=2, batch_size=20, root_dir=str(tmp_path), progress_bar=False).fit(
            planar_vae(), x, resume=run)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
