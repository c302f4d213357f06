"""GroupPredictor: KL scaling, injection modes, predictors, metrics, errors, checkpoints."""

from __future__ import annotations

import csv
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from test_group_synth import grouped_regression, make_model

from vaekit.models.group import GroupLatent, GroupPredictor
from vaekit.models.group_metrics import f1_weighted
from vaekit.nn.predictors import CharLSTM, ImageCNN, MLPPredictor
from vaekit.objectives import ELBO


def hand_kl(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, scale) || N(0, 1)) per group, summed over dims (closed form, written out)."""
    return (0.5 * (scale**2 + loc**2 - 1) - scale.log()).sum(-1)


def test_elbo_terms_kl_is_total_group_kl_over_n_train():
    batch, _, _ = grouped_regression(n_groups=6, seed=4)
    model = make_model(batch, "factor", latent_features=3)
    model.latent.set_active(0, torch.tensor([True, True, True, True, True, False]))  # group 5 unseen: no KL
    with torch.no_grad():
        model.latent.loc[0].normal_()
        model.latent.raw_scale[0].uniform_(-2, 1)
    q = model.latent.posterior(0)
    expected = hand_kl(q.loc, q.scale).detach()[:5].sum() / batch["y"].shape[0]
    terms = model.elbo_terms({k: v[:10] for k, v in batch.items()})
    kl = terms.kl["group/0"]
    assert kl.shape == (10,)
    torch.testing.assert_close(kl, expected.expand(10).to(kl.dtype))
    assert float(expected.detach()) > 0.1  # a dropped KL (0) or a per-batch scale (x n/10) would fail above


def test_minibatch_losses_over_an_epoch_sum_to_the_full_negative_elbo():
    batch, _, _ = grouped_regression(n_groups=5, seed=5, min_size=4, max_size=9)
    model = make_model(batch, ["double"], latent_features=2)
    with torch.no_grad():  # posterior sd ~1e-6: the single draw is the mean, so the ELBO is deterministic
        model.latent.loc[0].normal_()
        model.latent.raw_scale[0].fill_(-30.0)
    n = batch["y"].shape[0]
    with torch.no_grad():
        q = model.latent.posterior(0)
        zs = model.latents(batch["groups"], "mean")
        full = -model.log_likelihood(model.outputs(batch["x"], zs), batch["y"]).sum() + hand_kl(q.loc, q.scale).sum()
        obj, total = ELBO(), 0.0
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
        for idx in perm.split(7):
            loss, _ = obj(model, {k: v[idx] for k, v in batch.items()}, 10)
            total += float(loss) * len(idx)
    assert float(hand_kl(q.loc, q.scale).sum()) > 50  # the KL is a large part of the total
    assert total == pytest.approx(float(full), rel=1e-5)


@pytest.mark.parametrize("mode", ["none", "factor", "bias", "double", "lower", "weight"])
@pytest.mark.parametrize("net", ["cnn", "lstm", "mlp"])
def test_each_injection_mode_trains_and_updates_the_group_table(mode, net):
    torch.manual_seed(0)
    n, G = 24, 4
    groups = torch.arange(n).remainder(G).unsqueeze(1)
    if net == "cnn":
        pred, x, y = ImageCNN(n_classes=5, image_size=8), torch.rand(n, 1, 8, 8), groups[:, 0] + 1
    elif net == "lstm":
        pred, x = CharLSTM(vocab_size=6, embed_dim=4, hidden=8, seq_len=5), torch.randint(0, 6, (n, 5))
        y = groups[:, 0]
    else:
        pred, x, y = MLPPredictor(3, 5, hidden=[8]), torch.randn(n, 3), groups[:, 0]
    model = GroupPredictor(pred, latent_features=2, injection=mode, group_names=[[str(i) for i in range(G)]],
                           group_counts=[[6] * G], n_train=n)
    batch = {"x": x, "y": y, "groups": groups}
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    first = None
    for step in range(25):
        loss, metrics = ELBO()(model, batch, step)
        opt.zero_grad()
        loss.backward()
        if step == 0 and mode != "none":
            assert float(model.latent.loc[0].grad.abs().sum()) > 0  # the group posteriors get gradients
        opt.step()
        first = float(loss) if first is None else first
    assert float(loss) < first and math.isfinite(float(loss))
    assert ("kl/group/0" in metrics) == (mode != "none")


def test_char_lstm_forward_backward_last_and_all_steps():
    torch.manual_seed(0)
    x = torch.randint(0, 10, (3, 7))
    for predict, shape in (("last", (3, 10)), ("all", (3, 7, 10))):
        net = CharLSTM(vocab_size=10, embed_dim=4, hidden=6, n_layers=2, seq_len=7, predict=predict)
        net.widen(2, 3)
        out = net(x, torch.randn(3, 2), torch.randn(3, 3))
        assert out.shape == shape
        out.sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    single = CharLSTM(vocab_size=10, embed_dim=4, hidden=6, n_layers=1, seq_len=7)
    assert single(x).shape == (3, 10) and single.mid_features == 4
    with pytest.raises(ValueError, match="token ids must lie in"):
        single(torch.full((3, 7), 10))
    with pytest.raises(ValueError, match=r"shape \(batch, 7\)"):
        single(torch.zeros(3, 6, dtype=torch.long))


def test_sequence_targets_with_the_lstm():
    torch.manual_seed(0)
    net = CharLSTM(vocab_size=6, embed_dim=4, hidden=8, seq_len=5, predict="all")
    model = GroupPredictor(net, latent_features=2, injection="double", group_names=[["a", "b"]], n_train=4)
    batch = {"x": torch.randint(0, 6, (4, 5)), "y": torch.randint(0, 6, (4, 5)), "groups": torch.tensor([[0], [1], [0], [1]])}
    t = model.elbo_terms(batch)
    assert t.rec.shape == (4,) and float(t.rec.mean()) < -5 * math.log(6) + 2  # summed over 5 steps
    report = model.validation_report(batch)
    assert 0 <= report.metrics["accuracy"] <= 1


def test_cnn_sizes():
    assert ImageCNN(size="large").features == 2048 and ImageCNN(size="large").mid_features == 64 * 49
    assert ImageCNN()(torch.zeros(2, 28, 28)).shape == (2, 62)
    with pytest.raises(ValueError, match="size must be"):
        ImageCNN(size="huge")
    with pytest.raises(ValueError, match="ImageCNN expects images"):
        ImageCNN()(torch.zeros(2, 1, 32, 32))


def test_f1_weighted_matches_scikit_learn_and_reports_rows():
    g = torch.Generator().manual_seed(0)
    y, p = torch.randint(0, 5, (200,), generator=g), torch.randint(0, 5, (200,), generator=g)
    assert f1_weighted(y, p, 5) == pytest.approx(f1_score(y.numpy(), p.numpy(), average="weighted"))
    model = GroupPredictor(MLPPredictor(3, 3, hidden=[4]), latent_features=1, group_names=[["a", "b", "c"]], n_train=9)
    val = {"x": torch.randn(9, 3, generator=g), "y": torch.randint(0, 3, (9,), generator=g),
           "groups": torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2]).unsqueeze(1)}
    rep = model.validation_report(val)
    pred = model.predict(val["x"], val["groups"])
    correct = (pred == val["y"]).double()
    assert rep.metrics["accuracy"] == pytest.approx(float(correct.mean()))
    accs = [float(correct[val["groups"][:, 0] == i].mean()) for i in range(3)]
    rows = {(r["group"], r["metric"]): r["value"] for r in rep.tables["groups"]}
    assert [rows[(n, "accuracy")] for n in "abc"] == pytest.approx(accs)
    assert rows[("b", "n")] == 4
    assert rep.metrics["group_accuracy_p50"] == pytest.approx(sorted(accs)[1])
    logits = model.predict_outputs(val["x"], val["groups"])
    assert rep.metrics["log_loss"] == pytest.approx(float(F.cross_entropy(logits, val["y"])), rel=1e-5)


def test_learned_and_variational_priors_have_their_own_terms():
    lat = GroupLatent([3], 2, prior="learned")
    with torch.no_grad():
        lat.prior_loc[0].fill_(1.0)
        lat.loc[0].fill_(1.0)
    assert float(lat.kl()[0]) == pytest.approx(float(hand_kl(torch.zeros(3, 2), F.softplus(lat.raw_scale[0]) / F.softplus(lat.prior_raw_scale[0])).sum()), rel=1e-4)
    torch.manual_seed(0)
    var = GroupLatent([3], 2, prior="variational")
    kls = torch.stack([var.kl()[0] for _ in range(200)])
    assert float(kls.std()) > 0  # Monte Carlo over the hyper-parameters
    hyper = sum(float(hand_kl(p.detach(), F.softplus(r.detach()))) for p, r in
                ((var.prior_loc[0], var.hyper_raw_scale_loc[0]), (var.prior_raw_scale[0], var.hyper_raw_scale_rho[0])))
    assert hyper > 0 and float(kls.mean()) > hyper


# ---------------------------------------------------------------------------------------- bad input
def _two_level_model() -> GroupPredictor:
    return GroupPredictor(MLPPredictor(2, 1, hidden=[4]), likelihood="gaussian", latent_features=1,
                          injection=["factor", "bias"], group_names=[["a", "b", "c"], ["p", "q"]],
                          group_counts=[[2, 1, 0], [3, 0]], n_train=3, level_names=["role", "play"], data_shape=[2])


def _batch(**kw):
    b = {"x": torch.zeros(3, 2), "y": torch.zeros(3), "groups": torch.tensor([[0, 0], [1, 0], [2, 1]])}
    b.update(kw)
    return b


@pytest.mark.parametrize("change, err, match", [
    ({"groups": torch.tensor([[0, 0], [-1, 0], [2, 1]])}, ValueError, r"level 'role'.*\[-1, 2\], accepted 0..2"),
    ({"groups": torch.tensor([[0, 0], [1, 0], [2, 2]])}, ValueError, r"level 'play'.*\[0, 2\], accepted 0..1"),
    ({"groups": torch.tensor([[0], [1], [2]])}, ValueError, "a group level is missing"),
    ({"groups": torch.zeros(3, 2)}, TypeError, "integer ids"),
    ({"y": torch.zeros(4)}, ValueError, "same non-zero number of examples"),
    ({"x": torch.zeros(2, 2)}, ValueError, "same non-zero number of examples"),
    ({"x": torch.zeros(3, 5)}, ValueError, r"expected \(n, 2\)"),
    ({"y": torch.zeros(3, dtype=torch.long)}, TypeError, "float tensor"),
    ({"y": torch.tensor([0.0, float("nan"), 1.0])}, ValueError, "NaN"),
])
def test_validate_data_errors(change, err, match):
    with pytest.raises(err, match=match):
        _two_level_model().validate_data(_batch(**change), "data.train")


def test_missing_key_unknown_raw_id_and_unseen_groups():
    model = _two_level_model()
    b = _batch()
    with pytest.raises(ValueError, match=r"lacks key\(s\) \['groups'\]"):
        model.validate_data({"x": b["x"], "y": b["y"]})
    assert model.encode_groups([["c", "a"], ["q", "p"]]).tolist() == [[2, 1], [0, 0]]
    with pytest.raises(ValueError, match="unknown group 'zz' at level 'role'"):
        model.encode_groups([["a", "zz"], ["p", "p"]])
    with pytest.raises(ValueError, match="must give 2 level"):
        model.encode_groups([["a"]])
    with pytest.raises(ValueError, match=r"\['c'\] of level 'role' were not seen in training"):
        model.predict(b["x"], b["groups"])
    assert model.predict(b["x"], b["groups"], new_groups="prior").shape == (3,)
    with pytest.raises(ValueError, match="predict_proba needs likelihood='categorical'"):
        model.predict_proba(b["x"], b["groups"])


def test_constructor_and_data_errors():
    with pytest.raises(ValueError, match="injection must be one of"):
        GroupPredictor(MLPPredictor(2, 1), injection="late")
    with pytest.raises(ValueError, match="injection lists 1 modes but the data has 2"):
        GroupPredictor(MLPPredictor(2, 1), injection=["factor"], group_names=[["a"], ["b"]])
    with pytest.raises(ValueError, match="latent_features lists 3 sizes"):
        GroupPredictor(MLPPredictor(2, 1), latent_features=[1, 2, 3], group_names=[["a"]])
    with pytest.raises(TypeError, match="Predictor"):
        GroupPredictor(torch.nn.Linear(2, 1))
    model = _two_level_model()
    data = SimpleNamespace(group_names=[["a", "b", "c"], ["p", "q"]], train_group_counts=[[2, 1, 0], [3, 0]],
                           train={"y": torch.zeros(5)}, level_names=["role", "play"], data_shape=(2,), task="regression")
    with pytest.raises(ValueError, match=r"its n_train=3 but the data give n_train=5"):
        model.check_data_module(data)  # what Trainer.fit calls first
    with pytest.raises(ValueError, match=r"n_train=3 does not fit the data, which gives n_train=5"):
        GroupPredictor.from_data(data, MLPPredictor(2, 1), likelihood="gaussian", injection=["factor", "bias"], n_train=3)
    sized = GroupPredictor.from_data(data, MLPPredictor(2, 1), likelihood="gaussian", injection=["factor", "bias"])
    assert (sized.group_names, sized.n_train, sized.level_names, sized.data_shape) == (data.group_names, 5, ["role", "play"], (2,))
    assert [c.tolist() for c in sized.counts] == data.train_group_counts
    data.task = "classification"
    with pytest.raises(ValueError, match="does not fit the data's task"):
        GroupPredictor.from_data(data, MLPPredictor(2, 1), likelihood="gaussian", injection=["factor", "bias"])
    with pytest.raises(TypeError, match="needs grouped data"):
        GroupPredictor.from_data(SimpleNamespace(train={"y": torch.zeros(5)}), MLPPredictor(2, 1))
    with pytest.raises(ValueError, match=r"group_names is required .* GroupPredictor.from_data\(data"):
        GroupPredictor(MLPPredictor(2, 1))


def test_refusal_names_the_differing_argument_with_both_values():
    data = SimpleNamespace(group_names=[["a", "b", "c"], ["p", "q"]], train_group_counts=[[1, 1, 1], [2, 1]],
                           train={"y": torch.zeros(3)}, level_names=["role", "play"], data_shape=(2,), task="regression")
    model = _two_level_model()  # n_train=3 fits; group_counts [[2, 1, 0], [3, 0]] does not
    with pytest.raises(ValueError) as err:
        model.check_data_module(data)
    msg = str(err.value)
    assert "its group_counts=[[2, 1, 0], [3, 0]] but the data give group_counts=[[1, 1, 1], [2, 1]]" in msg
    assert "n_train" not in msg


# ---------------------------------------------------------------------------------------- checkpoint
class _Data:
    """The contract's attributes on hand-made splits (what vaekit.data.grouped provides)."""

    def __init__(self, train, val):
        self.train, self.val, self.test = train, val, None
        self.group_names = [[f"s{i}" for i in range(int(train["groups"][:, 0].max()) + 1)]]
        self.train_group_counts = [torch.bincount(train["groups"][:, 0]).tolist()]
        self.level_names, self.data_shape, self.task, self.n_classes = ["school"], (2,), "regression", None

    def setup(self):
        pass


def test_fit_load_round_trip_keeps_tables_mappings_and_writes_group_csv(tmp_path):
    import vaekit
    from vaekit.training import Trainer

    batch, _, _ = grouped_regression(n_groups=8, seed=6, max_size=12)
    data = _Data(batch, {k: v[::3] for k, v in batch.items()})
    torch.manual_seed(0)
    model = GroupPredictor.from_data(data, MLPPredictor(2, 1, hidden=[8]), likelihood="gaussian_learned", latent_features=2)
    res = Trainer(max_epochs=2, batch_size=16, lr=0.01, progress_bar=False).fit(model, data, ELBO(), run_dir=tmp_path / "run")
    loaded = vaekit.load(res.run_dir, checkpoint="last")
    assert loaded.group_names == data.group_names and loaded.level_names == ["school"] and loaded.n_train == batch["y"].shape[0]
    torch.testing.assert_close(loaded.latent.loc[0], model.latent.loc[0])
    torch.testing.assert_close(loaded.latent.raw_scale[0], model.latent.raw_scale[0])
    assert loaded.encode_groups([["s3"]]).tolist() == [[3]]
    model.eval()
    torch.testing.assert_close(loaded.predict(batch["x"], batch["groups"]), model.predict(batch["x"], batch["groups"]))
    with open(res.run_dir.path / "eval" / "groups.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"epoch", "step", "level", "group", "metric", "value"} <= set(rows[0])
    assert len({r["epoch"] for r in rows}) == 2 and len(rows) == 2 * 8 * 3  # 2 validations x 8 schools x 3 metrics
    assert {r["metric"] for r in rows} == {"n", "rmse", "mae"}


def test_a_run_directory_written_by_earlier_versions_loads_and_evaluates(tmp_path, monkeypatch, capsys):
    """Runs of vaekit <= 4a54f73 (the model sized after construction by bind_data, its recorded
    arguments rewritten) have this config.yaml model section and these state-dict keys: they load and evaluate."""
    import numpy as np
    import yaml

    import vaekit
    from vaekit.cli import main
    from vaekit.data.grouped import GroupedArrays
    from vaekit.training import Trainer, load_weights

    rng = np.random.default_rng(0)
    data = GroupedArrays(rng.normal(size=(40, 2)), np.repeat(np.array(["a", "b", "c", "d"]), 10), rng.normal(size=40),
                         task="regression", test_fraction=0.25, val_fraction=0.0)
    torch.manual_seed(0)
    model = GroupPredictor.from_data(data, MLPPredictor(2, 1, hidden=[4]), likelihood="gaussian_learned", latent_features=2,
                                     prior="learned", new_group_encoder=True)
    run = Trainer(max_epochs=1, batch_size=16, progress_bar=False).fit(model, data, run_dir=tmp_path / "run").run_dir
    old_model_section = {  # exactly what the earlier trainer wrote (the arguments bind_data derived merged in)
        "class_path": "vaekit.models.group.GroupPredictor",
        "init_args": {"data_shape": [2], "group_counts": [[7, 7, 7, 7]], "group_names": [["a", "b", "c", "d"]],
                      "init_scale": 0.1, "injection": "factor", "kl_scale": "dataset", "latent_features": 2,
                      "level_names": ["level0"], "likelihood": "gaussian_learned", "n_train": 28, "new_group_encoder": True,
                      "predictor": {"class_path": "vaekit.nn.predictors.MLPPredictor",
                                    "init_args": {"activation": "relu", "hidden": [4], "in_features": 2, "out_features": 1}},
                      "prior": "learned"}}
    config = yaml.safe_load(run.config_file.read_text())
    assert config["model"] == old_model_section  # from_data records the same arguments
    config["model"] = old_model_section
    run.config_file.write_text(yaml.safe_dump(config))
    assert sorted(load_weights(run.last_weights)) == [  # the earlier state-dict keys
        "group_encoder.phi.0.bias", "group_encoder.phi.0.weight", "group_encoder.phi.2.bias", "group_encoder.phi.2.weight",
        "group_encoder.rho.0.bias", "group_encoder.rho.0.weight", "group_encoder.rho.2.bias", "group_encoder.rho.2.weight",
        "latent.active_0", "latent.loc.0", "latent.prior_loc.0", "latent.prior_raw_scale.0", "latent.raw_scale.0",
        "log_sigma", "predictor.out.bias", "predictor.out.weight", "predictor.upper.0.bias", "predictor.upper.0.weight"]
    loaded = vaekit.load(run, checkpoint="last")
    data.setup()
    test = data.test
    model.eval()
    torch.testing.assert_close(loaded.predict(test["x"], test["groups"]), model.predict(test["x"], test["groups"]))
    assert loaded.group_names == [["a", "b", "c", "d"]] and loaded.n_train == 28
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["evaluate", str(run.path), "--ks", "1", "--max-groups", "2", "--shuffles", "1", "--steps", "3",
                 "--checkpoint", "last"]) == 0
    assert "test: rmse" in capsys.readouterr().out


def test_a_model_given_only_group_names_trains_on_data_with_those_groups(tmp_path):
    """group_counts and n_train are optional: Trainer.fit takes them from the data (which groups
    are fitted and enter the KL; the KL's scale 1/n_train), without rewriting the recorded arguments."""
    import yaml

    from vaekit._recording import recorded_args
    from vaekit.training import Trainer

    batch, _, _ = grouped_regression(n_groups=5, seed=6, max_size=12)
    train = {k: v[batch["groups"][:, 0] != 4] for k, v in batch.items()}  # group s4 is not in the training split
    data = _Data(train, {k: v[::3] for k, v in train.items()})
    data.group_names = [[f"s{i}" for i in range(5)]]
    data.train_group_counts = [torch.bincount(train["groups"][:, 0], minlength=5).tolist()]
    n = train["y"].shape[0]
    torch.manual_seed(0)
    model = GroupPredictor(MLPPredictor(2, 1, hidden=[8]), likelihood="gaussian_learned", latent_features=2,
                           group_names=data.group_names)
    assert model.latent.active(0).tolist() == [True] * 5 and model.n_train is None  # as built: nothing known yet
    run = Trainer(max_epochs=1, batch_size=16, progress_bar=False).fit(model, data, run_dir=tmp_path / "run").run_dir
    assert model.latent.active(0).tolist() == [True, True, True, True, False] and model.n_train == n
    assert [c.tolist() for c in model.counts] == data.train_group_counts
    q = model.latent.posterior(0)
    expected = hand_kl(q.loc, q.scale).detach()[:4].sum() / n  # the unseen group s4 has no KL
    torch.testing.assert_close(model.elbo_terms(train).kl["group/0"], expected.expand(n))
    given = recorded_args(model)
    assert given["group_counts"] is None and given["n_train"] is None  # recorded as received
    section = yaml.safe_load(run.config_file.read_text())["model"]["init_args"]
    assert section["group_counts"] is None and section["n_train"] is None
    with pytest.raises(ValueError, match=r"its group_names=\[\['s0', 's1', 's2', 's3', 's4'\]\] but the data give"):
        model.check_data_module(SimpleNamespace(**{**vars(data), "group_names": [["s0", "s1", "s2", "s3"]],
                                                   "train_group_counts": [data.train_group_counts[0][:4]]}))
