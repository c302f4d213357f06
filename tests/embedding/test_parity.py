"""CompressionVAE parity: validation data (X_valid), TensorBoard curves in logdir, and the `vaekit embed`
architecture flags, --decode and --latent-grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vaekit.cli import main
from vaekit.embedding import VAEEmbedder
from vaekit.nn import eval_mode

rng = np.random.default_rng(0)
X = rng.normal(size=(200, 6)).astype(np.float32)
# validation rows from elsewhere (their loss is far above the training loss); many, so that the one-draw
# ELBO of each epoch's validation pass has a small Monte Carlo error (about 0.2% here)
V = (rng.normal(size=(2000, 6)) * 0.2 + 2).astype(np.float32)


def tiny(**kw) -> VAEEmbedder:
    args = dict(hidden_layers=(8,), n_flows=1, n_prior_modes=2, max_epochs=15, batch_size=32, random_state=0,
                device="cpu", neighbor_weight=0.0, n_iter_no_change=2)
    return VAEEmbedder(**{**args, **kw})


def neg_elbo(est: VAEEmbedder, rows: np.ndarray, draws: int = 20) -> float:
    """-ELBO per example of ``rows`` (standardised with est's statistics), averaged over posterior draws."""
    x = torch.from_numpy(((rows - est.mean_) / est.scale_).astype(np.float32))
    torch.manual_seed(0)
    with torch.no_grad(), eval_mode(est.model_):
        return float(np.mean([float(-est.model_.elbo_terms(x).elbo.mean()) for _ in range(draws)]))


@pytest.fixture(scope="module")
def with_validation() -> VAEEmbedder:
    return tiny(validation_data=V).fit(X)


def test_validation_data_is_the_monitored_loss_and_drives_early_stopping(with_validation):
    est = with_validation
    val = [h["val_loss"] for h in est.history_]
    best = int(np.argmin(val))
    # early stopping counted epochs without improvement of the loss on V, while the training loss still fell
    assert est.stop_reason_ == "no improvement of the monitored loss for 2 epochs" and est.n_iter_ == best + 1 + 2
    assert est.history_[-1]["train_loss"] < est.history_[best]["train_loss"]
    # the kept weights are the best epoch's, and its val_loss is the negative ELBO of V
    assert neg_elbo(est, V) == pytest.approx(val[best], rel=0.01)
    assert val[best] > 1.5 * est.history_[best]["train_loss"]  # V, not held-out rows of X


def test_every_row_of_x_trains_with_validation_data():
    # one epoch, no schedule: the same batches of all 200 rows as validation_fraction=0, so the same weights
    a = tiny(validation_data=V, validation_fraction=0.5, max_epochs=1).fit(X)
    b = tiny(validation_fraction=0.0, max_epochs=1).fit(X)
    assert np.array_equal(a.transform(X), b.transform(X))
    assert np.isnan(b.history_[0]["val_loss"]) and np.isfinite(a.history_[0]["val_loss"])


@pytest.mark.parametrize("bad, err, match", [
    (V[:, :4], ValueError, r"validation_data: X has 4 features, but VAEEmbedder is expecting 6"),
    (np.where(np.arange(6) == 2, np.nan, V), ValueError, r"^validation_data contains NaN .*example 0, feature 2"),
    ("/nonexistent/v.npy", FileNotFoundError, r"validation_data: X='/nonexistent/v.npy' does not exist"),
])
def test_bad_validation_data_is_refused_before_anything_is_kept(bad, err, match):
    est = tiny(validation_data=bad)
    with pytest.raises(err, match=match):
        est.fit(X)
    assert not hasattr(est, "n_features_in_") and not hasattr(est, "model_")


def test_save_drops_the_validation_data(with_validation, tmp_path):
    path = with_validation.save(tmp_path / "m")
    assert json.loads((path / "embedder.json").read_text())["params"]["validation_data"] is None
    loaded = VAEEmbedder.load(path)
    assert loaded.validation_data is None and np.array_equal(loaded.transform(V), with_validation.transform(V))


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_logdir_has_tensorboard_curves_that_follow_warm_starts(tmp_path):
    logdir = tmp_path / "run"
    first = tiny(logdir=logdir, max_epochs=2, early_stopping=False).fit(X)
    curves = _scalars(logdir / "tensorboard")
    assert set(curves) == {"train/loss", "val/loss", "train/lr", "train/grad_norm"}
    assert curves["val/loss"] == [(h["epoch"], pytest.approx(h["val_loss"], rel=1e-6)) for h in first.history_]
    assert curves["train/loss"] == [(h["epoch"], pytest.approx(h["train_loss"], rel=1e-6)) for h in first.history_]
    resumed = tiny(logdir=logdir, max_epochs=2, early_stopping=False, warm_start=True).fit(X)
    curves = _scalars(logdir / "tensorboard")
    assert [s for s, _ in curves["val/loss"]] == [1, 2, 3, 4]
    assert [v for _, v in curves["val/loss"]] == pytest.approx([h["val_loss"] for h in resumed.history_], rel=1e-6)
    no_tb = tmp_path / "quiet"
    tiny(logdir=no_tb, max_epochs=1, tensorboard=False).fit(X)
    assert not (no_tb / "tensorboard").exists()


# ------------------------------------------------------------------------------------------- the CLI
FAST = ["--max-epochs", "2", "--quiet", "--seed", "3", "--neighbor-weight", "0"]
IMAGES = np.clip(rng.normal(0.5, 0.2, size=(120, 16)), 0, 1).astype(np.float32)  # 4x4 "images"


def test_architecture_and_training_flags_reach_the_estimator(tmp_path):
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "v.npy", V)
    argv = ["embed", str(tmp_path / "x.npy"), "--out", str(tmp_path / "z.npy"), "--save", str(tmp_path / "m"),
            "--hidden-layers", "12", "10", "--n-flows", "2", "--n-prior-modes", "3", "--activation", "relu",
            "--dropout", "0.1", "--validation", str(tmp_path / "v.npy"), "--logdir", str(tmp_path / "log"),
            "--no-early-stopping", *FAST]
    assert main(argv) == 0
    est = VAEEmbedder.load(tmp_path / "m")
    assert (est.hidden_layers, est.n_flows, est.n_prior_modes, est.activation, est.dropout) == ((12, 10), 2, 3, "relu", 0.1)
    assert est.early_stopping is False and est.n_iter_ == 2 and est.logdir == str(tmp_path / "log")
    assert est.history_[0]["val_loss"] > 1.5 * est.history_[0]["train_loss"]  # validated on v.npy
    assert (tmp_path / "log" / "tensorboard").is_dir() and VAEEmbedder.load(tmp_path / "log").n_iter_ == 2
    same = tiny(hidden_layers=(12, 10), n_flows=2, n_prior_modes=3, activation="relu", dropout=0.1, max_epochs=2,
                random_state=3, early_stopping=False, validation_data=V, n_iter_no_change=6, batch_size=512).fit(X)
    assert np.array_equal(np.load(tmp_path / "z.npy"), same.transform(X))


def test_decode_and_latent_grid(tmp_path, capsys):
    np.save(tmp_path / "x.npy", IMAGES)
    assert main(["embed", str(tmp_path / "x.npy"), "--out", str(tmp_path / "z.npy"), "--save", str(tmp_path / "m"),
                 "--latent-grid", str(tmp_path / "fit_grid.png"), "--grid-size", "3", *FAST]) == 0
    est = VAEEmbedder.load(tmp_path / "m")
    Z = np.load(tmp_path / "z.npy")
    assert main(["embed", "--model", str(tmp_path / "m"), "--decode", str(tmp_path / "z.npy"),
                 "--out", str(tmp_path / "back.npy")]) == 0
    back = np.load(tmp_path / "back.npy")
    assert back.shape == IMAGES.shape and np.array_equal(back, est.inverse_transform(Z))
    assert main(["embed", "--model", str(tmp_path / "m"), "--latent-grid", str(tmp_path / "grid.png"),
                 "--image-shape", "4", "4", "--grid-size", "5", "--grid-range", "-2", "2"]) == 0
    for name in ("fit_grid.png", "grid.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    import matplotlib.image

    grid = matplotlib.image.imread(tmp_path / "grid.png")
    assert grid.ndim == 3 and min(grid.shape[:2]) > 50 and float(grid[..., :3].std()) > 0.01  # a drawn mosaic
    # what the image shows: plot.latent_grid's mosaic of the decoded 5 x 5 grid over [-2, 2]^2
    from vaekit.plot import latent_grid

    mosaic = latent_grid(est, xy_range=(-2, 2), grid_size=5, shape=(4, 4)).images[-1].get_array()
    top_left = est.inverse_transform(np.array([[-2.0, 2.0]])).reshape(4, 4)
    assert np.allclose(mosaic[:4, :4], top_left, atol=1e-6)
    assert "written:" in capsys.readouterr().out


@pytest.mark.parametrize("args, match", [
    (["--decode", "{tmp}/z.npy", "--out", "{tmp}/o.npy"], "--decode needs --model"),
    (["--model", "{tmp}/m", "{tmp}/x.npy", "--decode", "{tmp}/z.npy", "--out", "{tmp}/o.npy"], "instead of DATA"),
    (["--model", "{tmp}/m", "--decode", "{tmp}/z.npy"], "--decode needs --out"),
    (["--model", "{tmp}/m", "--decode", "{tmp}/none.npy", "--out", "{tmp}/o.npy"], "does not exist"),
    (["--model", "{tmp}/m", "--decode", "{tmp}/z3.npy", "--out", "{tmp}/o.npy"], "has shape (5, 3); the embedder decodes arrays of shape (n, 2)"),
    (["--model", "{tmp}/m", "{tmp}/x.npy", "--out", "{tmp}/o.npy", "--hidden-layers", "4", "--n-flows", "2"],
     "--hidden-layers, --n-flows set(s) how a new embedder is fitted"),
    (["--model", "{tmp}/m", "--latent-grid", "{tmp}/g.png", "--image-shape", "3", "5"], "holds 15 values but the data have 16"),
    (["{tmp}/x.npy", "--out", "{tmp}/o.npy", "--latent-grid", "{tmp}/g.png", "--n-components", "3"], "needs --n-components 2"),
    (["{tmp}/x.npy", "--out", "{tmp}/o.npy", "--n-flows", "0"], "n_flows"),
    (["{tmp}/x.npy", "--out", "{tmp}/o.npy", "--validation", "{tmp}/v5.npy"], "validation_data: X has 5 features"),
    (["{tmp}/x.npy", "--out", "{tmp}/o.npy", "--grid-range", "1", "0", "--latent-grid", "{tmp}/g.png"], "LOW < HIGH"),
    (["--model", "{tmp}/m"], "DATA is missing"),
])
def test_cli_errors_write_nothing(tmp_path, capsys, args, match):
    np.save(tmp_path / "x.npy", IMAGES)
    np.save(tmp_path / "v5.npy", IMAGES[:, :5])
    np.save(tmp_path / "z.npy", np.zeros((5, 2)))
    np.save(tmp_path / "z3.npy", np.zeros((5, 3)))
    tiny(max_epochs=1).fit(IMAGES).save(tmp_path / "m")
    before = sorted(p.name for p in tmp_path.iterdir())
    fit = [] if "--model" in args else ["--max-epochs", "1"]  # a fitting setting, refused with --model
    assert main(["embed", *[a.format(tmp=tmp_path) for a in args], "--quiet", *fit]) == 2
    assert match in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
