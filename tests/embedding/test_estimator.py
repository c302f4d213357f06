"""VAEEmbedder: determinism, batch invariance, training behaviour, Ctrl-C, warm start, bad parameters."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

import vaekit.embedding
from vaekit.embedding import VAEEmbedder
from vaekit.embedding import _fitting
from vaekit.training.schedules import cosine_lr
from vaekit.training.step import TrainStep


def tiny(**kw) -> VAEEmbedder:
    args = dict(hidden_layers=(8,), n_flows=1, n_prior_modes=2, max_epochs=3, batch_size=32, random_state=0, device="cpu")
    return VAEEmbedder(**{**args, **kw})


def manifold(n: int = 160, d: int = 6, seed: int = 0) -> np.ndarray:
    """Points near a 2-D curved sheet in d dimensions (something a 2-D embedding can capture)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(-2, 2, size=(n, 2))
    feats = np.concatenate([t, np.sin(t), t[:, :1] * t[:, 1:]], axis=1)
    return (feats @ rng.normal(size=(feats.shape[1], d)) + 0.05 * rng.normal(size=(n, d)) + 3.0).astype(np.float64)


X = manifold()


@pytest.fixture(scope="module")
def fitted() -> VAEEmbedder:
    return tiny().fit(X)


def test_same_seed_same_embedding_other_seed_differs(fitted):
    again = tiny().fit(X)
    assert np.array_equal(fitted.transform(X), again.transform(X))
    assert not np.allclose(fitted.transform(X), tiny(random_state=1).fit(X).transform(X), atol=1e-3)


def test_torch_global_rng_left_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny().fit(X[:40])
    assert torch.equal(torch.rand(3), expected)


def test_transform_identical_however_batched(fitted):
    Z = fitted.transform(X)
    pieces = np.concatenate([fitted.transform(X[i:i + 7]) for i in range(0, len(X), 7)])
    single = np.concatenate([fitted.transform(X[i:i + 1]) for i in range(5)])
    order = np.random.default_rng(1).permutation(len(X))
    assert Z.dtype == np.float32 and Z.shape == (len(X), 2)
    assert np.array_equal(pieces, Z)
    assert np.array_equal(single, Z[:5])
    assert np.array_equal(fitted.transform(X[order]), Z[order])


def encoder_only(est):
    """A shallow copy of fitted ``est`` whose transform is the encoder's embedding alone (no local optimisation)."""
    out = copy.copy(est)
    out.transform_steps = 0
    return out


def test_transform_is_the_base_mean_pushed_through_the_flow(fitted):
    model = fitted.model_
    fitted = encoder_only(fitted)
    x = torch.as_tensor((X[:4] - fitted.mean_) / fitted.scale_, dtype=torch.float32)
    with torch.no_grad():
        q = model.encode(x)["z"]
        base_mean = q.base.loc
        expected = base_mean
        context, family = model.amortized(x)
        for step in family.transforms:  # the IAF steps, one after the other, with each example's context
            expected = step(context)(expected)
    assert np.allclose(fitted.transform(X[:4]), expected.numpy(), atol=1e-5)
    assert not np.allclose(fitted.transform(X[:4]), base_mean.numpy(), atol=1e-3)  # the flow does move the mean


def test_gaussian_posterior_transform_is_its_mean():
    est = tiny(posterior="gaussian", prior="standard").fit(X)
    x = torch.as_tensor((X[:5] - est.mean_) / est.scale_, dtype=torch.float32)
    with torch.no_grad():
        loc = est.model_.encode(x)["z"].loc.numpy()
    assert np.allclose(encoder_only(est).transform(X[:5]), loc, atol=1e-6)


def test_reconstruction_error_decreases_with_training():
    def error(epochs: int) -> float:
        est = tiny(max_epochs=epochs, hidden_layers=(16,), batch_size=16, early_stopping=False).fit(X)
        return float(np.mean((est.inverse_transform(est.transform(X)) - X) ** 2))

    short, long = error(1), error(25)
    assert long < 0.6 * short, (short, long)


def test_inverse_transform_and_sample_in_original_units(fitted):
    assert fitted.inverse_transform(fitted.transform(X)).shape == X.shape
    s = fitted.sample(300, random_state=0)
    assert s.shape == (300, X.shape[1]) and np.isfinite(s).all()
    # decoded around the data, not around 0: each feature's sample mean within 0.6 of its standard deviation of
    # the data mean (measured after these 3 epochs, random_state 0-5: at most 0.47 sd off; samples centred at 0
    # are 1.0-4.5 sd off in every feature, and samples in standardised units are too)
    assert (np.abs(s.mean(0) - X.mean(0)) < 0.6 * X.std(0)).all(), (s.mean(0) - X.mean(0)) / X.std(0)
    assert np.array_equal(s, fitted.sample(300, random_state=0))
    with pytest.raises(ValueError, match="n_components=2"):
        fitted.inverse_transform(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="n_samples must be an int >= 1, got 0"):
        fitted.sample(0)


def test_scores_iwae_above_elbo_and_in_data_units():
    est = tiny(max_epochs=5).fit(X)
    elbo, iwae = est.score_samples(X), est.score_samples(X, k=64)
    assert elbo.shape == (len(X),) and iwae.mean() > elbo.mean()
    assert est.score(X) == pytest.approx(elbo.mean())
    # scaling the data by 4 (exact in floating point) leaves the standardised data and the model unchanged:
    # only the log-Jacobian of the normalisation moves the scores, by -d log 4
    scaled = tiny(max_epochs=5).fit(4 * X)
    assert np.array_equal(scaled.transform(4 * X), est.transform(X))
    assert np.allclose(scaled.score_samples(4 * X), elbo - X.shape[1] * math.log(4), atol=1e-4)


def test_history_plateau_and_early_stopping():
    # tol=1 demands a 100% improvement: after epoch 1 nothing counts, the rate halves every
    # n_iter_no_change // 2 = 2 epochs and training stops after 4 bad epochs (the plain VAE: the schedule and early
    # stopping follow the validation ELBO only without the neighbour term)
    est = tiny(tol=1.0, n_iter_no_change=4, max_epochs=50, neighbor_weight=0.0).fit(X)
    assert est.n_iter_ == 5 and len(est.history_) == 5
    assert [h["lr"] for h in est.history_] == pytest.approx([2e-3, 2e-3, 2e-3, 1e-3, 1e-3])
    assert "no improvement" in est.stop_reason_
    assert set(est.history_[0]) == {"epoch", "train_loss", "val_loss", "lr", "skipped_steps", "grad_norm"}
    constant = tiny(tol=1.0, n_iter_no_change=4, lr_schedule="constant", early_stopping=False, max_epochs=6).fit(X)
    assert constant.n_iter_ == 6 and {h["lr"] for h in constant.history_} == {2e-3}
    # with the neighbour term (the default) the same settings run every epoch at a constant rate and keep the last
    # weights; the validation ELBO is still recorded
    mapped = tiny(tol=1.0, n_iter_no_change=4, max_epochs=9).fit(X)
    assert mapped.n_iter_ == 9 and mapped.stop_reason_ == "max_epochs reached"
    assert {h["lr"] for h in mapped.history_} == {2e-3}
    assert all(math.isfinite(h["val_loss"]) for h in mapped.history_)
    # tol=1: only epoch 1 improved, so keeping the "best" weights would give both fits epoch 1's map
    eight = tiny(tol=1.0, n_iter_no_change=4, max_epochs=8).fit(X)
    assert not np.allclose(eight.transform(X), mapped.transform(X), atol=1e-4)
    # explicit values are honoured with the term ("auto", the default, is what turns them off)
    stopped = tiny(tol=1.0, n_iter_no_change=4, max_epochs=50, early_stopping=True, lr_schedule="plateau").fit(X)
    assert stopped.n_iter_ == 5 and "no improvement" in stopped.stop_reason_
    assert [h["lr"] for h in stopped.history_] == pytest.approx([2e-3, 2e-3, 2e-3, 1e-3, 1e-3])
    # and it keeps the best (epoch 1's) weights: the same as a 1-epoch fit
    assert np.allclose(stopped.transform(X), tiny(max_epochs=1).fit(X).transform(X), atol=1e-6)
    halved = tiny(tol=1.0, n_iter_no_change=4, max_epochs=5, lr_schedule="plateau").fit(X)
    assert halved.n_iter_ == 5 and [h["lr"] for h in halved.history_] == pytest.approx([2e-3] * 3 + [1e-3] * 2)


def test_cosine_schedule_moves_the_rate_at_every_step(monkeypatch):
    # lr_schedule="cosine": half a cosine from learning_rate at the fit's first step to 0 after its last, the rate set
    # before every step (not once per epoch); a warm start runs a cosine of its own; no early stop on the low rate
    rates = []
    real_call = TrainStep.__call__

    def call(self, *args, **kwargs):
        rates.append(self.optimizer.param_groups[0]["lr"])
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(TrainStep, "__call__", call)
    est = tiny(max_epochs=4, lr_schedule="cosine", learning_rate=3e-3, layout_steps=0).fit(X)  # no fine-tuning steps
    total = len(rates)
    per_epoch = math.ceil(round(len(X) * 0.9) / 16)  # 144 training rows, 16 anchors per step
    assert total == 4 * per_epoch and est.stop_reason_ == "max_epochs reached"
    assert rates == pytest.approx([cosine_lr(3e-3, s, total) for s in range(total)], rel=1e-12)
    assert len(set(rates)) == total and rates[-1] < 3e-3 * 2e-3  # a new rate every step, near 0 at the end
    assert [h["lr"] for h in est.history_] == pytest.approx([rates[e * per_epoch] for e in range(4)], rel=1e-12)
    rates.clear()
    est.set_params(warm_start=True, max_epochs=2).fit(X)
    assert rates == pytest.approx([cosine_lr(3e-3, s, len(rates)) for s in range(len(rates))], rel=1e-12)
    assert est.n_iter_ == 6
    # without the term, with early stopping: the plateau's "rate below 1e-3 x learning_rate" does not apply to it
    plain = tiny(neighbor_weight=0.0, max_epochs=40, lr_schedule="cosine", tol=0.0, n_iter_no_change=100).fit(X)
    assert plain.n_iter_ == 40 and plain.stop_reason_ == "max_epochs reached"


def counting_steps(monkeypatch, interrupt_at: int | None = None) -> dict[str, int]:
    """Count the calls of the training core's step (raising KeyboardInterrupt at call ``interrupt_at``)."""
    calls = {"n": 0}
    real_call = TrainStep.__call__

    def call(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == interrupt_at:
            raise KeyboardInterrupt
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(TrainStep, "__call__", call)
    return calls


@pytest.mark.parametrize("neighbor_weight, per_epoch, layout_steps", [(0.0, 5, "auto"), (0.4, 9, 0), (0.4, 9, "auto")])
def test_fit_trains_through_the_training_core(monkeypatch, neighbor_weight, per_epoch, layout_steps):
    # 144 training rows: batches of 32 rows, or of 16 anchors and their partners with the neighbour term; with the term
    # a moved layout (the default) adds the fine-tuning's steps, through the same core
    from vaekit.embedding._fitting import FINETUNE_STEPS

    calls = counting_steps(monkeypatch)
    est = tiny(max_epochs=3, early_stopping=False, neighbor_weight=neighbor_weight, layout_steps=layout_steps).fit(X)
    moved = neighbor_weight > 0 and layout_steps != 0
    assert est.n_iter_ == 3 and calls["n"] == 3 * per_epoch + (FINETUNE_STEPS if moved else 0)
    assert (neighbor_weight == 0) or est._layout.moved == moved


def test_no_training_loop_of_its_own():
    """Every gradient step of the embedder is vaekit.training.step.TrainStep's."""
    sources = sorted(Path(vaekit.embedding.__file__).parent.rglob("*.py"))
    assert len(sources) >= 8
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for banned in (".backward(", "optimizer.step(", "opt.step(", "autograd.grad"):
            assert banned not in text, f"{path.name} contains {banned!r}"


def test_ctrl_c_stops_cleanly_and_leaves_a_usable_embedder(monkeypatch):
    calls = counting_steps(monkeypatch, interrupt_at=20)  # 9 steps per epoch (144 training rows / 16 anchors): epoch 3
    with pytest.warns(RuntimeWarning, match="interrupted.*keeps the weights of the last epoch"):  # the term's fit
        est = tiny(max_epochs=10, early_stopping=False).fit(X)
    assert calls["n"] == 20 and est.n_iter_ == 2 and est.stop_reason_ == "interrupted"
    Z = est.transform(X)
    assert Z.shape == (len(X), 2) and np.isfinite(Z).all()
    monkeypatch.undo()
    est.set_params(warm_start=True, max_epochs=1).fit(X)
    assert est.n_iter_ == 3


def test_an_interrupted_fit_does_not_move_its_layout(monkeypatch):
    # layout_steps would delay the return after Ctrl-C: the interrupted fit keeps the encoder's layout
    counting_steps(monkeypatch, interrupt_at=20)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        est = tiny(max_epochs=10, layout_steps=50).fit(X)
    assert est.stop_reason_ == "interrupted"
    assert np.array_equal(est.embedding_, est.set_params(transform_steps=0).transform(X))


def test_a_fit_interrupted_while_fine_tuning_towards_its_layout_keeps_the_encoders_layout(monkeypatch):
    # 3 epochs of 9 steps, then the fine-tuning towards the moved layout: Ctrl-C at its 5th step
    counting_steps(monkeypatch, interrupt_at=3 * 9 + 5)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        est = tiny(max_epochs=3, early_stopping=False).fit(X)
    assert est.stop_reason_ == "interrupted" and not est._layout.moved and est.model_.training is False
    assert np.array_equal(est.embedding_, est.set_params(transform_steps=0).transform(X))


def poison_elbo(monkeypatch, neighbor_weight: float, bad) -> dict[str, int]:
    """Make the ELBO of the training forward calls for which ``bad(call number)`` holds NaN."""
    from vaekit.models.vae import VAE

    calls = {"n": 0}

    def poison(elbo):
        calls["n"] += 1
        return elbo * float("nan") if bad(calls["n"]) else elbo

    if neighbor_weight == 0:  # the plain step takes VAE.elbo_terms (so does the validation loss)
        real = VAE.elbo_terms

        def poisoned(self, x):
            terms = real(self, x)
            if self.training:
                terms.rec = poison(terms.rec)
            return terms

        monkeypatch.setattr(VAE, "elbo_terms", poisoned)
    else:  # the neighbour step takes the anchors' ELBO with the embeddings
        real_anchor = _fitting.anchor_elbo_and_embedding

        def poisoned_anchor(model, x, n_anchors):
            elbo, z = real_anchor(model, x, n_anchors)
            return poison(elbo), z

        monkeypatch.setattr(_fitting, "anchor_elbo_and_embedding", poisoned_anchor)
    return calls


@pytest.mark.parametrize("neighbor_weight", [0.0, 0.4])
def test_non_finite_steps_are_skipped(monkeypatch, neighbor_weight):
    calls = poison_elbo(monkeypatch, neighbor_weight, lambda n: n in (1, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # epochs with good steps: no "stopped learning" warning
        est = tiny(max_epochs=2, early_stopping=False, neighbor_weight=neighbor_weight).fit(X)
    assert calls["n"] > 3 and [h["skipped_steps"] for h in est.history_] == [2, 0]
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["grad_norm"]) for h in est.history_)
    assert all(torch.isfinite(p).all() for p in est.model_.parameters())


def test_an_epoch_that_never_trains_raises(monkeypatch):
    # 144 steps of one row in an epoch, every one non-finite: the first 100 of the epoch are skipped
    poison_elbo(monkeypatch, 0.0, lambda n: True)
    with pytest.raises(FloatingPointError, match=r"^144 training steps in a row \(epochs without one good step\) gave "
                                                 "a non-finite loss or gradient; lower learning_rate or check the "
                                                 "data's scale$"):
        tiny(batch_size=1, neighbor_weight=0.0).fit(X)


def test_short_epochs_that_never_train_raise_or_warn(monkeypatch):
    # 5 steps an epoch, all skipped: the 100th skipped step in a row (epoch 20) ends the fit, as one long epoch would
    poison_elbo(monkeypatch, 0.0, lambda n: True)
    with pytest.raises(FloatingPointError, match=r"^100 training steps in a row"):
        tiny(max_epochs=24, early_stopping=False, neighbor_weight=0.0).fit(X)
    # a fit that ends sooner is not silent about it: a warning, and the history says which epochs never trained
    with pytest.warns(RuntimeWarning, match="the last 15 training steps were all skipped"):
        est = tiny(max_epochs=3, early_stopping=False, neighbor_weight=0.0).fit(X)
    assert [h["skipped_steps"] for h in est.history_] == [5] * 3
    assert all(math.isnan(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in est.history_)


def test_warm_start_continues_instead_of_restarting():
    est = tiny(max_epochs=3, early_stopping=False).fit(X)
    model, first = est.model_, est.transform(X)
    est.set_params(warm_start=True, max_epochs=2).fit(X)
    assert est.model_ is model and est.n_iter_ == 5 and [h["epoch"] for h in est.history_] == [1, 2, 3, 4, 5]
    assert not np.array_equal(est.transform(X), first)
    est.set_params(warm_start=False).fit(X)
    assert est.model_ is not model and est.n_iter_ == 2
    with pytest.raises(ValueError, match="X has 5 features, but VAEEmbedder is expecting 6"):
        est.set_params(warm_start=True).fit(X[:, :5])


def test_feature_names_and_pandas_output(fitted):
    assert fitted.get_feature_names_out().tolist() == ["vae0", "vae1"]
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = tiny().set_output(transform="pandas").fit(df)
    out = est.transform(df)
    assert list(out.columns) == ["vae0", "vae1"] and list(est.feature_names_in_) == list(df.columns)
    assert np.array_equal(out.to_numpy(), fitted.transform(X))


def test_tensor_input_matches_numpy(fitted):
    assert np.array_equal(fitted.transform(torch.as_tensor(X)), fitted.transform(X))


@pytest.mark.parametrize("params, match", [
    (dict(hidden_layers=()), "hidden_layers must be None or a non-empty sequence of positive ints, got ()"),
    (dict(hidden_layers=(8, 0)), r"hidden_layers must be None .* got \(8, 0\)"),
    (dict(likelihood="bernoulli"), "set feature_normalization=False"),
    (dict(device="tpu"), "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    (dict(batch_size=0), "'batch_size' parameter of VAEEmbedder must be an int in the range \\[1, inf\\). Got 0"),
    (dict(posterior="maf"), "'posterior' parameter of VAEEmbedder must be a str among"),
    (dict(validation_fraction=1.0), "'validation_fraction' parameter"),
    (dict(validation_fraction=0.99), "leaves no training examples"),
])
def test_bad_parameters_raise_before_fitting(params, match):
    est = tiny(**params)
    with pytest.raises(ValueError, match=match):
        est.fit(X[:40])
    assert not hasattr(est, "model_")


def test_bernoulli_needs_unit_interval_data():
    est = tiny(likelihood="bernoulli", feature_normalization=False)
    with pytest.raises(ValueError, match=r"needs data in \[0, 1\]"):
        est.fit(X)
    Z = est.fit((X > 3).astype(np.float32)).transform(X[:3] > 3)
    assert Z.shape == (3, 2)


def test_unfitted_and_one_sample():
    with pytest.raises(NotFittedError):
        tiny().transform(X)
    with pytest.raises(ValueError, match="n_samples = 1"):
        tiny().fit(X[:1])
