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
    torch.testing.assert_close(z, SAVED[f"{name}/z"], rtol=0, atol=1e-5)
    torch.testing.assert_close(log_q, SAVED[f"{name}/log_q"], rtol=0, atol=1e-5)


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
