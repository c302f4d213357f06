"""Outputs of every public HierarchicalVAE method on a few seeded models, for the golden-output test.

``record(model, x)`` calls each method of the model protocol (and the sampling extras) with
fixed seeds and returns a flat ``{name: tensor}``. ``tests/models/data/hierarchical_golden.safetensors``
holds, per model, its state dict, its input ``x`` and what ``record`` returned when the file
was written (vaekit main 4a54f73, before the per-mode refactor of the model):
``test_hierarchical_golden.py`` loads the state and compares. Run this module to rewrite
the file (only when a change of the numbers is intended and explained).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from vaekit.distributions import Bernoulli, Gaussian
from vaekit.models.hierarchical import (Block, DualInputBlock, GenBlock, HierarchicalVAE, InputBlock, OutputBlock,
                                        SimpleBlock, SimpleGenBlock, TopGenBlock, TopSimpleBlock, ladder_vae, small_vdvae)
from vaekit.nn import MLP

GOLDEN = Path(__file__).parent / "data" / "hierarchical_golden.safetensors"


class Shift(Block):
    """A custom deterministic block: a learnable gain times the input, plus an offset."""

    def __init__(self, name: str, inputs: str, offset: float = 0.0) -> None:
        super().__init__(name, inputs)
        self.offset = float(offset)
        self.gain = torch.nn.Parameter(torch.tensor(1.5))

    def forward(self, h: Tensor) -> Tensor:
        return self.gain * h + self.offset


def custom_graph() -> HierarchicalVAE:
    """Every block type but ResidualGenBlock, a custom block, two top blocks and a Gaussian likelihood."""
    return HierarchicalVAE([
        InputBlock("x_in"),
        SimpleBlock("h1", "x_in", MLP(10, 8, activation="tanh")),
        Shift("h1s", "h1", offset=0.5),
        TopGenBlock("z2", "h1s", MLP(8, 2 * 3), 3, prior_trainable=True),
        TopSimpleBlock("t", [4], trainable=False, value=0.1),
        DualInputBlock("g", ["z2", "t"], MLP(7, 5)),
        GenBlock("z1", "g", "h1", MLP(5, 8), MLP(8 + 5, 8), 4, concat_posterior=True),
        SimpleGenBlock("z0", "z1", MLP(4, 4), 2),
        OutputBlock("x_out", "z0", MLP(2, 20), Gaussian("predicted")),
    ], [10])


MODELS = {
    "ladder": lambda: ladder_vae([1, 3, 4], hidden=(8, 6), latent=(4, 2)),
    "ladder_mc": lambda: HierarchicalVAE(list(ladder_vae([12], hidden=(8, 6), latent=(4, 2)).blocks.values()), [12], kl="mc"),
    "vdvae": lambda: small_vdvae([12], width=8, latent_features=2, n_layers=3, encoder_hidden=[10]),
    "custom": custom_graph,
}


def make_x(model: HierarchicalVAE, n: int = 5) -> Tensor:
    x = torch.rand(n, *model.data_shape)
    return torch.bernoulli(x) if isinstance(model.output_block.likelihood, Bernoulli) else x


def _normal(out: dict[str, Tensor], key: str, d) -> None:
    out[f"{key}.loc"], out[f"{key}.scale"] = d.mean, d.stddev


def record(model: HierarchicalVAE, x: Tensor) -> dict[str, Tensor]:
    """Every public method's output with a fixed seed before each call."""
    out: dict[str, Tensor] = {}
    names = model.latent_names
    n_layers = len(names)

    def seed(s: int) -> None:
        torch.manual_seed(1000 + s)

    seed(1)
    terms = model.elbo_terms(x)
    out["elbo_terms.rec"] = terms.rec
    for k in names:
        out[f"elbo_terms.kl.{k}"], out[f"elbo_terms.log_q.{k}"], out[f"elbo_terms.log_p.{k}"] = (
            terms.kl[k], terms.log_q[k], terms.log_p[k])
    seed(2)
    out["log_weights.k1"] = model.log_weights(x)
    seed(3)
    out["log_weights.k4"] = model.log_weights(x, k=4)
    seed(4)
    computed, dists = model(x)
    for k, v in computed.items():
        out[f"forward.computed.{k}"] = v
    for k, (p, q) in dists.items():
        _normal(out, f"forward.prior.{k}", p)
        _normal(out, f"forward.posterior.{k}", q)
    seed(5)
    for k, q in model.encode(x).items():
        _normal(out, f"encode.{k}", q)
    seed(6)
    for k, q in model.encode(x, sample=True).items():
        _normal(out, f"encode_sample.{k}", q)
    seed(7)
    zq = {k: q.sample((2,)) for k, q in model.encode(x).items()}  # (2, batch, d): leading sample dims
    for k, v in zq.items():
        out[f"zq.{k}"] = v
    seed(8)
    px = model.decode(zq)
    out["decode.mean"], out["decode.log_prob"] = px.mean, px.log_prob(x)
    seed(9)
    out["log_prior"] = model.log_prior(zq)
    seed(10)
    out["log_joint"] = model.log_joint(x, zq)
    temperatures = {"t1": 1.0, "t05": 0.5, "t0": 0.0, "list": [0.3 + 0.2 * i for i in range(n_layers)],
                    "callable": lambda layer: 0.9 ** layer, "mixed0": [0.0 if i % 2 else 0.8 for i in range(n_layers)]}
    for i, (tag, t) in enumerate(temperatures.items()):
        seed(20 + i)
        for k, v in model.sample_prior(4, temperature=t).items():
            out[f"sample_prior.{tag}.{k}"] = v
        seed(40 + i)
        out[f"sample.{tag}"] = model.sample(4, temperature=t)
        seed(60 + i)
        out[f"sample_draw.{tag}"] = model.sample(4, mean=False, temperature=t)
    seed(80)
    z = model.sample_prior(3)
    seed(81)
    out["decode_prior.mean"] = model.decode(z).mean
    for j in range(n_layers + 1):
        for tag, t in (("t1", 1.0), ("t0", 0.0), ("list", temperatures["list"])):
            seed(100 + 10 * j)
            out[f"sample_mixed.{j}.{tag}"] = model.sample_mixed(x, j, temperature=t)
            seed(101 + 10 * j)
            out[f"sample_mixed_draw.{j}.{tag}"] = model.sample_mixed(x, j, temperature=t, mean=False)
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


def build(name: str) -> tuple[HierarchicalVAE, Tensor]:
    """The model ``name`` with seeded, perturbed weights and its seeded input."""
    torch.manual_seed(0)
    model = MODELS[name]()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model, make_x(model)


def write(path: Path = GOLDEN) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, Tensor] = {}
    for name in MODELS:
        model, x = build(name)
        tensors[f"{name}/x"] = x
        tensors.update({f"{name}/state/{k}": v.contiguous().clone() for k, v in model.state_dict().items()})
        tensors.update({f"{name}/out/{k}": v for k, v in record(model, x).items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


if __name__ == "__main__":
    write()
    print(f"wrote {GOLDEN}")
