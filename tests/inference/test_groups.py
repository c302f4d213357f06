"""New-group inference (optimised and amortized), the data-efficiency curve, evaluate_group_run."""

from __future__ import annotations

import copy
import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from vaekit.inference.groups import (FewGroupsWarning, amortized_new_group, data_efficiency_curve, fit_group_encoder,
                                     infer_new_group)
from vaekit.models.group import GroupPredictor
from vaekit.nn.predictors import MLPPredictor
from vaekit.objectives import ELBO

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from training_helpers import fit_elbo  # noqa: E402

G, SEEN = 30, 22  # groups 22..29 are never seen in training


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(25, 41, (G,), generator=g)
    ids = torch.repeat_interleave(torch.arange(G), sizes)
    offsets = 1.5 * torch.randn(G, generator=g)
    x = torch.randn(len(ids), 2, generator=g)
    y = x @ torch.tensor([1.0, -0.5]) + offsets[ids] + 0.3 * torch.randn(len(ids), generator=g)
    batch = {"x": x, "y": y, "groups": ids.unsqueeze(1)}
    seen = ids < SEEN
    return {k: v[seen] for k, v in batch.items()}, {k: v[~seen] for k, v in batch.items()}, offsets


@pytest.fixture(scope="module")
def trained():
    train, new, offsets = _data()
    torch.manual_seed(0)
    counts = torch.bincount(train["groups"][:, 0], minlength=G).tolist()
    model = GroupPredictor(MLPPredictor(2, 1, hidden=[16]), likelihood="gaussian_learned", latent_features=1,
                           injection="bias", group_names=[[f"g{i}" for i in range(G)]], group_counts=[counts],
                           n_train=len(train["y"]), new_group_encoder=True)
    fit_elbo(model, train, torch.optim.Adam(model.parameters(), lr=0.03), 200)
    return model, train, new, offsets


def _effect(model, z):
    return float(model.bias_maps["0"](z.reshape(1, -1)).squeeze().detach())


def test_infer_new_group_recovers_its_offset_and_makes_it_predictable(trained):
    model, train, new, offsets = trained
    seen_effect = torch.tensor([_effect(model, model.latent.loc[0][j].detach()) for j in range(SEEN)])
    shift = float((seen_effect - offsets[:SEEN]).mean())  # the network's own intercept absorbs a constant
    j = SEEN + int((offsets[SEEN:] - offsets[:SEEN].mean()).abs().argmax())  # a group far from the average
    mask = new["groups"][:, 0] == j
    x, y, gr = new["x"][mask], new["y"][mask], new["groups"][mask]
    with pytest.raises(ValueError, match="not seen in training"):
        model.predict(x, gr)
    before = [p.detach().clone() for p in model.predictor.parameters()]
    q = infer_new_group(model, x[:10], y[:10], gr[:10], steps=150, assign_to=j)
    assert all(torch.equal(a, b) for a, b in zip(before, model.predictor.parameters()))  # network frozen
    assert abs(_effect(model, q.loc) - shift - float(offsets[j])) < 0.35
    q2 = infer_new_group(model, x[:2], y[:2], gr[:2], steps=150)
    assert float(q2.scale) > float(q.scale)  # fewer examples, wider posterior
    rmse = float((model.predict(x[10:], gr[10:]) - y[10:]).pow(2).mean().sqrt())
    prior = float((model.predict(x[10:], gr[10:] * 0 + (SEEN if j != SEEN else SEEN + 1), new_groups="prior") - y[10:]).pow(2).mean().sqrt())
    assert rmse < 0.5 < prior


def test_data_efficiency_curve_and_amortized_encoder(trained):
    model, train, new, _ = trained
    losses = fit_group_encoder(model, train, steps=80, lr=5e-3, sets_per_step=8)
    assert sum(losses[-20:]) / 20 < sum(losses[:20]) / 20
    q = amortized_new_group(model, new["x"][:5], new["y"][:5])
    assert q.loc.shape == (1,) and bool((q.scale > 0).all())
    with pytest.warns(FewGroupsWarning, match=r"uses 4 group\(s\).*only 8 group\(s\) of level 0 have more than max\(ks\)=20"):
        rows = data_efficiency_curve(model, new, ks=(1, 5, 20), methods=("prior", "optimize", "amortized"), steps=80, max_groups=4)
    val = {(r["method"], r["k"]): r["value"] for r in rows}
    assert {r["metric"] for r in rows} == {"rmse"} and {r["n_groups"] for r in rows} == {4}
    assert val[("prior", 1)] == val[("prior", 20)]
    assert val[("optimize", 20)] < val[("optimize", 1)] and val[("optimize", 5)] < 0.6 * val[("prior", 5)]
    assert val[("amortized", 20)] < 0.8 * val[("prior", 20)]


def test_encoder_targets_posterior_table_and_elbo(trained):
    model, train, _, _ = trained
    model = copy.deepcopy(model)  # the module's model keeps its own encoder
    with pytest.raises(ValueError, match="target must be 'posterior' or 'elbo'"):
        fit_group_encoder(model, train, steps=1, target="magic")
    bad = {**train, "x": train["x"].clone()}
    bad["x"][3, 0] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"train\['x'\] contains NaN/inf values"):  # refused, not trained on
        fit_group_encoder(model, bad, steps=5)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    fit_group_encoder(model, train, steps=120, lr=5e-3, sets_per_step=8, k_max=20, target="posterior")
    ids = train["groups"][:, 0]
    locs = torch.stack([amortized_new_group(model, train["x"][ids == j][:20], train["y"][ids == j][:20]).loc[0]
                        for j in range(SEEN)])
    table = model.latent.loc[0][:SEEN, 0].detach()
    assert torch.corrcoef(torch.stack([locs, table]))[0, 1] > 0.9  # 20 examples: close to the learnt posteriors
    losses = fit_group_encoder(model, train, steps=60, lr=5e-3, sets_per_step=8, target="elbo")
    assert sum(losses[-15:]) < sum(losses[:15])


def test_new_group_errors(trained):
    model, _, new, _ = trained
    with pytest.raises(ValueError, match="methods must be"):
        data_efficiency_curve(model, new, methods=("magic",))
    with pytest.raises(ValueError, match="no group of level 0 has more than max"):
        data_efficiency_curve(model, new, ks=(100,))
    with pytest.raises(ValueError, match="same non-zero number of examples"):
        infer_new_group(model, new["x"][:3], new["y"][:2])
    with pytest.raises(ValueError, match="level 1 has no group latent"):
        infer_new_group(model, new["x"][:3], new["y"][:3], level=1)
    plain = GroupPredictor(MLPPredictor(2, 1, hidden=[4]), likelihood="gaussian", latent_features=1,
                           group_names=[["a"]], n_train=3)
    with pytest.raises(ValueError, match="no amortized group encoder"):
        amortized_new_group(plain, new["x"][:3], new["y"][:3])
    with pytest.raises(TypeError, match="must be a group-latent model"):
        infer_new_group(torch.nn.Linear(2, 1), new["x"][:3], new["y"][:3])


def test_evaluate_group_run_writes_metrics_tables_and_curve(tmp_path, monkeypatch):
    import vaekit.runs
    from vaekit.training import Trainer

    train, new, _ = _data(seed=1)

    class Data:  # the contract's attributes on hand-made splits
        def __init__(self):
            self.train, self.val, self.test = train, None, new
            self.group_names = [[f"g{i}" for i in range(G)]]
            self.train_group_counts = [torch.bincount(train["groups"][:, 0], minlength=G).tolist()]
            self.level_names, self.data_shape, self.task = ["user"], (2,), "regression"

        def setup(self):
            pass

    torch.manual_seed(0)
    model = GroupPredictor.from_data(Data(), MLPPredictor(2, 1, hidden=[8]), likelihood="gaussian", latent_features=1,
                                     injection="bias")
    res = Trainer(max_epochs=3, batch_size=64, lr=0.02, progress_bar=False).fit(model, Data(), ELBO(), run_dir=tmp_path / "r")
    monkeypatch.setattr(vaekit.runs, "load_data", lambda run, **trust: Data())
    from vaekit.runs import evaluate_group_run

    with pytest.warns(FewGroupsWarning):
        out = evaluate_group_run(res.run_dir.path, ks=(1, 5), max_groups=3, steps=30, shuffles=2, checkpoint="last")
    ev = res.run_dir.path / "eval"
    saved = json.loads((ev / "group_metrics.json").read_text())
    assert saved["metrics"]["rmse"] == pytest.approx(out["metrics"]["rmse"]) and out["metrics"]["rmse"] > 0
    with open(ev / "groups_eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["group"] for r in rows} == {f"g{i}" for i in range(SEEN, G)} and {r["split"] for r in rows} == {"test"}
    with open(ev / "data_efficiency.csv") as f:
        curve = list(csv.DictReader(f))
    assert {(r["method"], r["k"], r["n_groups"], r["shuffles"]) for r in curve} == {
        (m, k, "3", "2") for m in ("prior", "optimize") for k in ("1", "5")}
    assert saved["warnings"] and "uses 3 group(s)" in saved["warnings"][0]
    assert (ev / "data_efficiency.png").stat().st_size > 1000
