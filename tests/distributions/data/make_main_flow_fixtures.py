"""Writes the fixtures of tests/distributions/test_flow_legacy_weights.py with vaekit as it was on main 4a54f73.

Run from a checkout of that commit (before flows were lists of steps):

    git archive 4a54f73 src | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src python tests/distributions/data/make_main_flow_fixtures.py tests/distributions/data

It writes ``flows_main_4a54f73.safetensors`` (for every family: the state dict, and the
draws and log-densities of ``torch.manual_seed(5); rsample_and_log_prob(family(ctx), (3,))``)
and the run directory ``run_main_4a54f73_planar/`` (a VAE with a planar-flow posterior
trained one epoch by ``vaekit.Trainer`` on scikit-learn's digits, without its resume
checkpoints and TensorBoard files), with ``expected_log_weights.safetensors``: the
log-weights ``torch.manual_seed(3); log_weights(x, 4)`` of the loaded model on fixed ``x``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import vaekit
from vaekit.distributions import (IAF, AuxiliaryFlow, NeuralSplineFlow, PlanarFlow, RadialFlow, RealNVPFlow,
                                  SylvesterFlow, rsample_and_log_prob)

C, D, B = 5, 3, 4
FAMILIES = {
    "planar": lambda: PlanarFlow(C, D, n_flows=3),
    "radial": lambda: RadialFlow(C, D, n_flows=3),
    "sylvester_orthogonal_m2": lambda: SylvesterFlow(C, 4, "orthogonal", n_flows=2, n_orthogonal=2),
    "sylvester_householder": lambda: SylvesterFlow(C, D, "householder", n_flows=2, n_householder=3),
    "sylvester_triangular": lambda: SylvesterFlow(C, D, "triangular", n_flows=3),
    "realnvp": lambda: RealNVPFlow(C, D, n_flows=3, hidden=[8]),
    "af": lambda: AuxiliaryFlow(C, D, n_flows=2, hidden=[8], aux_features=2),
    "iaf": lambda: IAF(C, D, n_flows=2, hidden=[8]),
    "nsf": lambda: NeuralSplineFlow(C, D, n_flows=2, hidden=[8], bins=4),
}


def main(out: Path) -> None:
    tensors = {}
    ctx = torch.randn(B, C, generator=torch.Generator().manual_seed(1))
    tensors["context"] = ctx
    for name, make in FAMILIES.items():
        torch.manual_seed(0)
        family = make()
        with torch.no_grad():
            torch.manual_seed(5)
            z, log_q = rsample_and_log_prob(family(ctx), (3,))
        tensors.update({f"{name}/state/{k}": v.contiguous() for k, v in family.state_dict().items()})
        tensors[f"{name}/z"], tensors[f"{name}/log_q"] = z.contiguous(), log_q.contiguous()
    save_file(tensors, str(out / "flows_main_4a54f73.safetensors"))

    from vaekit.data import Digits
    from vaekit.distributions import Bernoulli
    from vaekit.models import VAE
    from vaekit.nn import MLP

    torch.manual_seed(0)
    model = VAE(MLP(64, 16, [32], "elu", output_activation="elu"), PlanarFlow(16, 2, n_flows=2),
                MLP(2, 64, [32], "elu"), Bernoulli(), [64])
    data = Digits(binarize="threshold", flatten=True, test_fraction=0.2)
    runs = out / "_runs"
    result = vaekit.Trainer(max_epochs=1, progress_bar=False, root_dir=str(runs), accelerator="cpu", devices=1).fit(model, data)
    target = out / "run_main_4a54f73_planar"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(result.run_dir, target, ignore=shutil.ignore_patterns("*.ckpt", "tensorboard"))
    shutil.rmtree(runs)
    loaded = vaekit.load(target)
    x = torch.bernoulli(torch.full((5, 64), 0.3), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.manual_seed(3)
        lw = loaded.log_weights(x, 4)
    save_file({"x": x, "log_weights": lw.contiguous()}, str(target / "expected_log_weights.safetensors"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
