"""Saving and loading VAEEmbedder (no pickle), and logdir checkpoints that continue training and never delete."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from vaekit.embedding import VAEEmbedder
from vaekit.training.step import TrainStep


def tiny(**kw) -> VAEEmbedder:
    args = dict(hidden_layers=(8,), n_flows=2, n_prior_modes=3, max_epochs=2, batch_size=16, random_state=0, device="cpu")
    return VAEEmbedder(**{**args, **kw})


X = np.random.default_rng(0).normal(size=(80, 5)) * [1, 2, 3, 4, 5] + 7


@pytest.fixture(scope="module")
def fitted() -> VAEEmbedder:
    return tiny().fit(X)


def test_save_load_roundtrip_is_exact(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["embedder.json", "model.safetensors"]
    loaded = VAEEmbedder.load(path)
    assert loaded.get_params() == fitted.get_params()
    assert np.array_equal(loaded.transform(X), fitted.transform(X))
    Z = fitted.transform(X[:4])
    assert np.array_equal(loaded.inverse_transform(Z), fitted.inverse_transform(Z))
    assert np.array_equal(loaded.score_samples(X[:6], k=3), fitted.score_samples(X[:6], k=3))
    assert np.array_equal(loaded.sample(5, random_state=1), fitted.sample(5, random_state=1))
    assert loaded.n_iter_ == fitted.n_iter_ and loaded.stop_reason_ == fitted.stop_reason_
    assert [h["val_loss"] for h in loaded.history_] == [h["val_loss"] for h in fitted.history_]
    assert np.array_equal(loaded.mean_, fitted.mean_) and np.array_equal(loaded.scale_, fitted.scale_)


def test_feature_names_survive(tmp_path):
    pd = pytest.importorskip("pandas")
    est = tiny().fit(pd.DataFrame(X, columns=list("abcde")))
    loaded = VAEEmbedder.load(est.save(tmp_path / "m"))
    assert list(loaded.feature_names_in_) == list("abcde")


def test_refuses_non_empty_directory_unless_overwrite(fitted, tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    with pytest.raises(FileExistsError, match="non-empty directory; pass overwrite=True"):
        fitted.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    fitted.save(tmp_path, overwrite=True)
    assert other.read_text() == "mine"  # overwrite replaces the embedder's files only
    assert np.array_equal(VAEEmbedder.load(tmp_path).transform(X), fitted.transform(X))
    with pytest.raises(FileExistsError, match="is a file"):
        fitted.save(other)
    with pytest.raises(NotFittedError):
        tiny().save(tmp_path / "unfitted")
    assert not (tmp_path / "unfitted").exists()


def test_load_errors(fitted, tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no saved VAEEmbedder"):
        VAEEmbedder.load(tmp_path)
    path = fitted.save(tmp_path / "m")
    config = json.loads((path / "embedder.json").read_text())
    (path / "embedder.json").write_text(json.dumps({**config, "format": "something.else"}))
    with pytest.raises(ValueError, match="is not a vaekit VAEEmbedder"):
        VAEEmbedder.load(path)
    config["params"]["hidden_layers"] = [9]
    (path / "embedder.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not match the configuration"):
        VAEEmbedder.load(path)
    config["params"]["perplexity"] = 5.0  # a parameter of an older VAEEmbedder
    (path / "embedder.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"does not know: \['perplexity'\]"):
        VAEEmbedder.load(path)
    (path / "embedder.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        VAEEmbedder.load(path)


def test_logdir_checkpoints_and_continues(tmp_path):
    logdir = tmp_path / "run"
    first = tiny(logdir=logdir).fit(X)
    assert sorted(p.name for p in logdir.iterdir()) == ["embedder.json", "model.safetensors", "optimizer.pt", "tensorboard"]
    with pytest.raises(ValueError, match="already holds a VAEEmbedder checkpoint; pass warm_start=True"):
        tiny(logdir=logdir).fit(X)
    with pytest.raises(ValueError, match="other architecture parameters \\(n_flows: checkpoint 2 vs now 1\\)"):
        tiny(logdir=logdir, warm_start=True, n_flows=1).fit(X)
    resumed = tiny(logdir=logdir, warm_start=True).fit(X)  # a new process would do the same
    assert resumed.n_iter_ == 4 and [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    assert resumed.history_[:2] == first.history_
    assert VAEEmbedder.load(logdir).n_iter_ == 4


def test_logdir_never_touches_foreign_content(tmp_path):
    (tmp_path / "data.csv").write_text("precious")
    with pytest.raises(ValueError, match="exists and is not an empty directory"):
        tiny(logdir=tmp_path).fit(X)
    assert [p.name for p in tmp_path.iterdir()] == ["data.csv"] and (tmp_path / "data.csv").read_text() == "precious"


def test_ctrl_c_with_logdir_saves_a_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_step = TrainStep.__call__

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 11:  # 72 training rows / 8 anchors per batch = 9 steps per epoch: interrupted in epoch 2
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(TrainStep, "__call__", step)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        est = tiny(logdir=tmp_path / "run", max_epochs=5).fit(X)
    saved = VAEEmbedder.load(tmp_path / "run")
    assert saved.n_iter_ == est.n_iter_ == 1 and saved.stop_reason_ == "interrupted"
    assert np.array_equal(saved.transform(X), est.transform(X))
