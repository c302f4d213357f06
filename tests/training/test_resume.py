"""--resume continues exactly: bit-identical weights and metrics, no duplicated rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from training_helpers import ELBO, TinyVAE, make_data, same_weights, weights

from vaekit.training import Trainer, load_checkpoint, read_metrics

# 60 examples, batch 16 -> 4 batches per epoch (the last one of 12); 5 epochs = 20 steps.
KW = dict(max_epochs=5, batch_size=16, lr=5e-3, ema_decay=0.9, log_every_steps=3, val_every_steps=7,
          progress_bar=False, seed=3)


def _data():
    return make_data(n=60, n_val=10, noise=0.05)  # augment draws from the global RNG


def _model() -> TinyVAE:
    torch.manual_seed(0)
    return TinyVAE()


def _rows(run_dir: Path) -> list[tuple]:
    return [(r["step"], r["epoch"], r["split"], r["name"], r["value"]) for r in read_metrics(run_dir / "metrics.csv")
            if r["name"] != "samples_per_s"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list]:
    root = tmp_path_factory.mktemp("ref")
    model = _model()
    res = Trainer(**KW, root_dir=str(root)).fit(model, _data())
    assert res.global_step == 20 and res.stop_reason == "max_epochs"
    return weights(model), _rows(res.run_dir.path)


def test_stop_mid_epoch_and_resume_is_bit_identical(tmp_path: Path, reference: tuple[dict, list]) -> None:
    ref_weights, ref_rows = reference
    model = _model()
    first = Trainer(**{**KW, "max_steps": 6}, root_dir=str(tmp_path)).fit(model, _data())
    ckpt = load_checkpoint(first.run_dir.last_checkpoint)
    assert (first.stop_reason, ckpt["loop"]["global_step"], ckpt["loop"]["epoch"], ckpt["loop"]["batch_in_epoch"]) == (
        "max_steps", 6, 1, 2)
    assert not same_weights(weights(model), ref_weights)
    torch.manual_seed(12345)  # the caller's RNG state must not matter
    fresh = _model()
    fresh.enc.weight.data.add_(1.0)  # nor the weights the model starts with
    res = Trainer(**KW, root_dir=str(tmp_path / "ignored")).fit(fresh, _data(), resume=first.run_dir.path)
    assert res.run_dir.path == first.run_dir.path and res.global_step == 20
    assert same_weights(weights(fresh), ref_weights)
    rows = _rows(res.run_dir.path)
    assert rows == ref_rows  # same values, no duplicates
    assert len(rows) == len(set(rows))
    assert not (tmp_path / "ignored").exists()
    assert "Resuming from" in res.run_dir.log.read_text()


class _CrashAt:
    """ELBO that raises at one training step (a crash after the last checkpoint)."""

    def __init__(self, step: int) -> None:
        self.inner, self.step = ELBO(), step

    def __call__(self, model, batch, step):
        if model.training and step == self.step:
            raise RuntimeError("simulated crash")
        return self.inner(model, batch, step)


def test_crash_then_resume_from_last_step_checkpoint(tmp_path: Path, reference: tuple[dict, list]) -> None:
    ref_weights, ref_rows = reference
    model = _model()
    trainer = Trainer(**KW, checkpoint_every_steps=5, root_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.fit(model, _data(), _CrashAt(9))  # crashes in step 10
    (run,) = (tmp_path / "TinyVAE").iterdir()
    # checkpoints at steps 4, 5, 7, 8 (validations and every 5 steps); rows logged at step 9
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["loop"]["global_step"] == 8
    assert max(r[0] for r in _rows(run)) == 9  # rows after the checkpoint were written...
    fresh = _model()
    res = trainer.fit(fresh, _data(), resume=run)
    assert (res.global_step, res.run_dir.path) == (20, run)
    assert same_weights(weights(fresh), ref_weights)
    assert _rows(run) == ref_rows  # ...and replaced, not duplicated


def test_resume_from_an_explicit_step_checkpoint(tmp_path: Path, reference: tuple[dict, list]) -> None:
    ref_weights, _ = reference
    first = Trainer(**{**KW, "checkpoint_every_steps": 4}, root_dir=str(tmp_path)).fit(_model(), _data())
    fresh = _model()
    res = Trainer(**KW).fit(fresh, _data(), resume=first.run_dir.step_checkpoint(8))
    assert res.global_step == 20 and same_weights(weights(fresh), ref_weights)


def test_resume_to_train_longer_and_after_a_batch_size_change(tmp_path: Path) -> None:
    base = dict(batch_size=16, progress_bar=False, root_dir=str(tmp_path))
    first = Trainer(max_epochs=2, **base).fit(_model(), _data())  # 4 batches per epoch
    res = Trainer(max_epochs=4, **base).fit(_model(), _data(), resume=first.run_dir.path)
    assert (res.global_step, res.epoch, res.stop_reason) == (16, 4, "max_epochs")
    val_steps = [r[0] for r in _rows(first.run_dir.path) if r[2] == "val" and r[3] == "loss"]
    assert val_steps == [4, 8, 12, 16]
    mid = Trainer(max_steps=3, **base).fit(_model(), _data())  # stops at batch 3 of epoch 0
    res = Trainer(max_epochs=2, **{**base, "batch_size": 32}).fit(_model(), _data(), resume=mid.run_dir.path)
    # an epoch now has 2 batches: batch 3 does not exist, so epoch 1 starts at once
    assert (res.global_step, res.epoch) == (5, 2)
    assert "continuing with epoch 1" in mid.run_dir.log.read_text()
