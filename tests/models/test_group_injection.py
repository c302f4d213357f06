"""The HLVNN injection modes of GroupPredictor: ``weight`` (a hypernetwork of the output layer) and ``lower``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from vaekit.models.group import GroupPredictor
from vaekit.nn.predictors import CharLSTM, ImageCNN, MLPPredictor, Predictor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from training_helpers import fit_elbo  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("VAEKIT_DATA") or ROOT.parent / "shared" / "data")


def _model(pred: Predictor, mode: str, G: int = 3, d: int = 2, **kw) -> GroupPredictor:
    return GroupPredictor(pred, latent_features=d, injection=mode, group_names=[[f"g{i}" for i in range(G)]],
                          group_counts=[[4] * G], n_train=4 * G, **kw)


@pytest.mark.parametrize("net", ["mlp", "lstm_all"])
def test_weight_mode_is_a_per_group_output_layer(net):
    torch.manual_seed(0)
    if net == "mlp":
        pred, x, shape = MLPPredictor(3, 4, hidden=[5, 6]), torch.randn(5, 3), (5, 4)
    else:
        pred, x, shape = CharLSTM(vocab_size=7, embed_dim=3, hidden=6, seq_len=4, predict="all"), torch.randint(0, 7, (5, 4)), (5, 4, 7)
    model = _model(pred, "weight", d=2)
    z = torch.randn(5, 2)
    out = model.outputs(x, [z])
    assert out.shape == shape
    # by hand: example i uses the layer W + reshape(A z_i)[:, :-1], b + reshape(A z_i)[:, -1]
    h = pred.head_input(x)
    A = model.weight_maps["0"].weight  # (K * (f + 1), d)
    K, f = pred.out_features, pred.features
    for i in range(5):
        delta = (A @ z[i]).reshape(K, f + 1)
        want = F.linear(h[i], pred.out.weight + delta[:, :f], pred.out.bias + delta[:, f])
        torch.testing.assert_close(out[i], want, rtol=1e-5, atol=1e-5)
    assert pred.extra == 0 and pred.mid_extra == 0  # nothing concatenated
    assert A.shape == (K * (f + 1), 2)


def test_lower_mode_enters_after_the_trunk_only():
    torch.manual_seed(0)
    pred = MLPPredictor(3, 2, hidden=[5, 6])
    model = _model(pred, "lower", d=3)
    assert (pred.mid_extra, pred.extra) == (3, 0) and pred.upper[0].in_features == 5 + 3
    assert model.latent_dims == {"group/0": 3} and len(model.bias_maps) == 0 and len(model.weight_maps) == 0
    x, z = torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(model.outputs(x, [z]), pred.out(pred.upper(torch.cat([pred.lower(x), z], -1))))


@pytest.mark.parametrize("mode", ["lower", "weight"])
@pytest.mark.parametrize("net", ["cnn", "lstm", "mlp"])
def test_gradients_reach_the_group_latent_and_its_maps(mode, net):
    torch.manual_seed(0)
    groups = torch.tensor([[0], [1], [2], [0]])
    if net == "cnn":
        pred, x, y = ImageCNN(n_classes=3, image_size=8), torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    elif net == "lstm":
        pred, x, y = CharLSTM(vocab_size=5, embed_dim=3, hidden=4, seq_len=3), torch.randint(0, 5, (4, 3)), torch.tensor([0, 1, 2, 0])
    else:
        pred, x, y = MLPPredictor(2, 3, hidden=[4]), torch.randn(4, 2), torch.tensor([0, 1, 2, 0])
    model = _model(pred, mode)
    with torch.no_grad():
        model.latent.loc[0].normal_()  # away from ~0 so the hypernetwork gets a gradient too
    t = model.elbo_terms({"x": x, "y": y, "groups": groups})
    (-t.rec.sum()).backward()
    grad = model.latent.loc[0].grad
    assert grad is not None and bool((grad.abs().sum(-1) > 0).all())  # every group's row (all three are in the batch)
    if mode == "weight":
        blocks = model.weight_maps["0"].weight.grad.reshape(pred.out_features, pred.features + 1, 2)
        assert bool((blocks.abs().sum((1, 2)) > 0).all())  # every output unit's generated weights learn
    else:  # the body's input layer, widened by 2 columns for z: those columns learn
        first = {"cnn": lambda: pred.dense[0].weight, "lstm": lambda: pred.upper.weight_ih_l0, "mlp": lambda: pred.upper[0].weight}[net]()
        assert first.shape[1] == pred.mid_features + 2 and bool((first.grad[:, -2:].abs().sum(0) > 0).all())


def _slopes(seed: int = 0, G: int = 8, n: int = 30):
    """y = s_g x + 0.1 noise with per-group slopes s_g = 1 + N(0, 1); every third example held out."""
    g = torch.Generator().manual_seed(seed)
    slopes = 1.0 + torch.randn(G, generator=g)
    ids = torch.arange(G).repeat_interleave(n)
    x = torch.randn(G * n, 1, generator=g)
    y = slopes[ids] * x[:, 0] + 0.1 * torch.randn(G * n, generator=g)
    test = torch.arange(G * n) % 3 == 0
    split = lambda m: {"x": x[m], "y": y[m], "groups": ids[m].unsqueeze(1)}  # noqa: E731
    return split(~test), split(test), slopes


def _fit_slopes(mode: str, train, steps: int = 200):
    torch.manual_seed(0)
    model = GroupPredictor(MLPPredictor(1, 1, hidden=[16]), likelihood="gaussian_learned", latent_features=2, injection=mode,
                           group_names=[[str(i) for i in range(8)]], group_counts=[[20] * 8], n_train=160)
    return fit_elbo(model, train, torch.optim.Adam(model.parameters(), lr=0.03), steps).eval()


def test_weight_and_lower_learn_per_group_slopes_that_none_and_bias_cannot():
    train, test, slopes = _slopes()
    mse = {}
    for mode in ("none", "bias", "lower", "weight"):
        model = _fit_slopes(mode, train)
        mse[mode] = float(((model.predict(test["x"], test["groups"]) - test["y"]) ** 2).mean())
        if mode == "weight":  # the slope the model gives each group: d prediction / dx between x = -1 and 1
            ends = torch.tensor([[-1.0], [1.0]]).repeat(8, 1)
            pred = model.predict(ends, torch.arange(8).repeat_interleave(2).unsqueeze(1)).reshape(8, 2)
            torch.testing.assert_close((pred[:, 1] - pred[:, 0]) / 2, slopes, atol=0.15, rtol=0)
    # without a slope per group the error is the slopes' spread (var(s) E[x^2] ~ 1); with one, the noise (0.01)
    assert mse["none"] > 0.8 and mse["bias"] > 0.8
    assert mse["weight"] < 0.05 and mse["lower"] < 0.08, mse


def test_weight_on_a_linear_predictor_is_a_random_slopes_model():
    train, test, slopes = _slopes(seed=1)
    torch.manual_seed(0)
    model = GroupPredictor(MLPPredictor(1, 1, hidden=[]), likelihood="gaussian_learned", latent_features=1, injection="weight",
                           prior="learned", group_names=[[str(i) for i in range(8)]], group_counts=[[20] * 8], n_train=160)
    assert sum(p.numel() for p in model.predictor.parameters()) == 2  # y = w x + b, and w_g, b_g = (w, b) + a z_g
    fit_elbo(model, train, torch.optim.Adam(model.parameters(), lr=0.03), 200).eval()
    ends = torch.tensor([[0.0], [1.0]]).repeat(8, 1)
    pred = model.predict(ends, torch.arange(8).repeat_interleave(2).unsqueeze(1)).reshape(8, 2)
    torch.testing.assert_close(pred[:, 1] - pred[:, 0], slopes, atol=0.1, rtol=0)
    assert float(((model.predict(test["x"], test["groups"]) - test["y"]) ** 2).mean()) < 0.02  # the noise variance is 0.01


def test_weight_refuses_a_predictor_without_a_linear_output_layer():
    class Squashed(MLPPredictor):
        def head(self, h):
            return torch.tanh(self.out(h))

    with pytest.raises(ValueError, match="injection='weight'.*Squashed overrides head"):
        _model(Squashed(2, 1, hidden=[4]), "weight")
    assert _model(Squashed(2, 1, hidden=[4]), "lower").modes == ["lower"]  # the other modes still work with it


@pytest.mark.parametrize("mode", ["lower", "weight"])
def test_a_config_with_the_mode_trains_and_reloads(mode, tmp_path, monkeypatch):
    import vaekit
    from vaekit.cli import main

    if not (SHARED / "grouped_tabular" / "sleepstudy.npz").is_file():
        pytest.skip(f"shared datasets not found at {SHARED} (set VAEKIT_DATA)")
    monkeypatch.setenv("VAEKIT_DATA", str(SHARED))
    monkeypatch.chdir(tmp_path)
    cfg = {  # sleepstudy: reaction time against days of sleep deprivation, a slope per subject
        "model": {"class_path": "vaekit.models.group.GroupPredictor", "init_args": {
            "predictor": {"class_path": "vaekit.nn.predictors.MLPPredictor",
                          "init_args": {"in_features": 1, "out_features": 1, "hidden": [8]}},
            "likelihood": "gaussian_learned", "latent_features": 2, "injection": mode, "prior": "learned"}},
        "data": {"class_path": "vaekit.data.GroupedTable",
                 "init_args": {"name": "sleepstudy", "standardize": True, "standardize_y": True}},
        "objective": {"class_path": "vaekit.objectives.ELBO"},
        "trainer": {"max_epochs": 3, "batch_size": 32, "lr": 0.01, "progress_bar": False, "run_name": "inj",
                    "lr_multipliers": {"latent": 10.0}},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert main(["fit", "--config", str(path)]) == 0
    (run,) = list((tmp_path / "runs" / "inj").glob("*"))
    metrics = (run / "metrics.csv").read_text().splitlines()
    assert len(metrics) > 3
    model = vaekit.load(run, checkpoint="last")
    assert model.modes == [mode] and model.latent.n_groups == [18]
    from vaekit.runs import load_data

    data = load_data(run)
    data.setup()
    pred = model.predict(data.val["x"], data.val["groups"])
    assert pred.shape == data.val["y"].shape and bool(torch.isfinite(pred).all())
