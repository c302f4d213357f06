"""Non-finite losses and gradient spikes: skipped, counted, and never written to a checkpoint."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import torch
from training_helpers import ELBO, NaNAt, ReconMSE, TinyVAE, make_data, weights

from vaekit.training import Trainer, TrainingStoppedWarning, load_checkpoint, load_weights, read_metrics


def _trainer(tmp_path: Path, **kw) -> Trainer:
    return Trainer(**{"batch_size": 16, "lr": 1e-2, "progress_bar": False, "root_dir": str(tmp_path), **kw})


def _model() -> TinyVAE:
    torch.manual_seed(0)
    return TinyVAE()


def _finite(state: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values())


def test_nan_steps_are_skipped_and_counted(tmp_path: Path) -> None:
    model = _model()
    obj = NaNAt(steps=(3, 6, 7))  # step indices (0-based): rows are logged at steps 2, 4, ...
    res = _trainer(tmp_path, max_epochs=3, log_every_steps=2).fit(model, make_data(n=64), obj)
    assert (res.skipped_steps, res.global_step, res.stop_reason) == (3, 12, "max_epochs")
    assert _finite(weights(model))
    rows = read_metrics(res.run_dir.metrics)
    skipped = {r["step"]: r["value"] for r in rows if r["name"] == "skipped_steps"}
    assert skipped == {2: 0, 4: 1, 6: 1, 8: 3, 10: 3, 12: 3}
    losses = {r["step"]: r["value"] for r in rows if r["split"] == "train" and r["name"] == "loss"}
    assert all(math.isfinite(v) for v in losses.values())
    assert 4 in losses and 8 not in losses  # both steps of the row at 8 were skipped: no loss to average
    assert load_checkpoint(res.run_dir.last_checkpoint)["loop"]["skipped_steps"] == 3
    assert res.run_dir.log.read_text().count("steps skipped (non-finite loss or gradient; the last one's loss: nan)") == 2  # rows 4, 8


def test_skipped_steps_do_not_change_the_weights(tmp_path: Path) -> None:
    model = _model()
    before = weights(model)
    res = _trainer(tmp_path, max_epochs=1, max_consecutive_skips=100).fit(model, make_data(n=64), NaNAt(forever_from=0))
    assert res.skipped_steps == 4
    after = weights(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_gradient_norm_threshold(tmp_path: Path) -> None:
    res = _trainer(tmp_path, max_epochs=1, skip_threshold=1e6).fit(_model(), make_data(n=64))
    assert res.skipped_steps == 0
    with pytest.warns(TrainingStoppedWarning, match="too_many_skips"):  # a row each step: the bound is exact
        res = _trainer(tmp_path, max_epochs=1, skip_threshold=1e-6, max_consecutive_skips=3,
                       log_every_steps=1).fit(_model(), make_data(n=64))
    assert (res.skipped_steps, res.stop_reason, res.global_step) == (3, "too_many_skips", 3)


def test_the_skip_bound_is_checked_at_the_next_synchronisation_point(tmp_path: Path) -> None:
    """The step never reads the device: a run of skips that reaches the bound stops training at the next logged
    row (here step 6; nothing is validated in between), with the weights untouched by the skipped steps."""
    model = _model()
    before = weights(model)
    with pytest.warns(TrainingStoppedWarning, match="too_many_skips"):
        res = _trainer(tmp_path, max_epochs=5, skip_threshold=1e-6, max_consecutive_skips=2, log_every_steps=6,
                       val_every_epochs=None).fit(model, make_data(n=64))
    assert (res.skipped_steps, res.stop_reason, res.global_step) == (6, "too_many_skips", 6)
    assert all(torch.equal(before[k], weights(model)[k]) for k in before)
    assert "6 steps in a row were skipped" in res.run_dir.log.read_text()


def _adam_first_update(model: TinyVAE, x: torch.Tensor, clip: float | None, lr: float, eps: float) -> tuple[dict[str, torch.Tensor], float, float]:
    """Adam's first update of a full-batch ReconMSE step, from the gradient clipped by its global 2-norm.

    The first Adam step (bias-corrected moments m = c g, v = (c g)^2) moves each weight by
    -lr * c g / (|c g| + eps), where c = min(1, clip / (|g|_2 + 1e-6)) and |g|_2 is the norm of all
    gradients together (``torch.nn.utils.clip_grad_norm_``'s convention).
    """
    model.zero_grad(set_to_none=True)
    ReconMSE()(model, x)[0].backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads.values()]))
    c = 1.0 if clip is None else min(1.0, clip / (norm.item() + 1e-6))
    return {k: -lr * c * g / (c * g.abs() + eps) for k, g in grads.items()}, norm.item(), c


def test_grad_clip_bounds_the_update(tmp_path: Path) -> None:
    # one full-batch step of a deterministic objective: the gradient is known, and so is Adam's first update.
    # A large eps makes the update (nearly) linear in the clipped gradient, so it measures the clip factor:
    # clipping by another norm (per parameter, max-abs, squared) or not at all moves the weights by another amount
    data = make_data(n=64, n_val=0)
    lr, eps, clip = 1.0, 1.0, 0.05
    start_model = _model()
    start = weights(start_model)
    unclipped, norm, _ = _adam_first_update(start_model, data.train, None, lr, eps)
    clipped, _, c = _adam_first_update(start_model, data.train, clip, lr, eps)
    assert c < 0.1, f"the clip must bite for this test to measure it (|g| = {norm:.3g})"
    for grad_clip, expected in ((None, unclipped), (clip, clipped), (10 * norm, unclipped)):
        model = _model()
        _trainer(tmp_path, max_steps=1, batch_size=64, lr=lr, adam_eps=eps, grad_clip=grad_clip,
                 divergence_factor=None).fit(model, data, ReconMSE())
        moved = {k: weights(model)[k] - start[k] for k in start}
        assert set(k for k in moved if moved[k].abs().max() > 0) == set(expected)
        for k, want in expected.items():
            torch.testing.assert_close(moved[k], want, rtol=1e-4, atol=1e-7, msg=f"{k} (grad_clip={grad_clip})")
    step = torch.linalg.vector_norm(torch.cat([v.flatten() for v in clipped.values()]))
    assert clip * 0.9 < step.item() <= clip  # the clipped update is about clip long (eps = 1 >> |c g_i|)


def test_nan_forever_stops_and_keeps_the_last_good_checkpoints(tmp_path: Path) -> None:
    model = _model()
    # 4 steps per epoch, validation (and checkpoints) after step 4; NaN from step index 5 on
    with pytest.warns(TrainingStoppedWarning, match="too_many_skips"):
        res = _trainer(tmp_path, max_epochs=10, max_consecutive_skips=3).fit(model, make_data(n=64), NaNAt(forever_from=5))
    assert (res.stop_reason, res.global_step, res.skipped_steps) == ("too_many_skips", 8, 3)
    for name in ("last.ckpt", "best.ckpt"):
        ckpt = load_checkpoint(res.run_dir.checkpoints / name)
        assert ckpt["loop"]["global_step"] == 4 and _finite(ckpt["model"])
    for name in ("last.safetensors", "best.safetensors"):
        assert _finite(load_weights(res.run_dir.checkpoints / name))
    log = res.run_dir.log.read_text()
    assert "3 steps in a row were skipped" in log and "no checkpoint was overwritten: the last good one" in log
    assert "Stopped (too_many_skips) at step 8" in log


def test_a_run_stopped_before_its_first_checkpoint_says_there_is_none_to_resume(tmp_path: Path) -> None:
    with pytest.warns(TrainingStoppedWarning, match="too_many_skips"):
        res = _trainer(tmp_path, max_epochs=10, max_consecutive_skips=3).fit(_model(), make_data(n=64),
                                                                             NaNAt(forever_from=1))
    assert res.stop_reason == "too_many_skips" and not res.run_dir.last_checkpoint.exists()
    log = res.run_dir.log.read_text()
    assert "no checkpoint had been written yet" in log and "the last good one" not in log


class _PoisonAt:
    """Finite losses, but at one step a weight is set to inf behind the optimizer's back."""

    def __init__(self, step: int) -> None:
        self.inner, self.step = ELBO(), step

    def __call__(self, model, batch, step):
        if model.training and step == self.step:
            with torch.no_grad():
                model.dec.bias[0] = math.inf
        loss, metrics = self.inner(model, batch, step)
        return torch.nan_to_num(loss, nan=1.0, posinf=1.0), metrics


def test_non_finite_weights_are_never_checkpointed(tmp_path: Path) -> None:
    with pytest.warns(TrainingStoppedWarning, match="non_finite_weights"):
        res = _trainer(tmp_path, max_epochs=5, max_consecutive_skips=100).fit(_model(), make_data(n=64), _PoisonAt(5))
    assert (res.stop_reason, res.global_step) == ("non_finite_weights", 8)
    ckpt = load_checkpoint(res.run_dir.last_checkpoint)
    assert ckpt["loop"]["global_step"] == 4 and _finite(ckpt["model"])
    assert "the weights are no longer finite; nothing was written" in res.run_dir.log.read_text()


def test_failed_checkpoint_write_during_training_keeps_the_previous_one(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = torch.save
    calls = {"n": 0}

    def flaky(obj: object, f: object) -> None:
        calls["n"] += 1
        if calls["n"] <= 2:  # epoch 1: last.ckpt and best.ckpt
            return real_save(obj, f)
        buf = io.BytesIO()
        real_save(obj, buf)
        with open(f, "wb") as fh:  # type: ignore[arg-type]
            fh.write(buf.getvalue()[:100])
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", flaky)
    with pytest.raises(OSError, match="No space left"):
        _trainer(tmp_path, max_epochs=3).fit(_model(), make_data(n=64))
    monkeypatch.undo()
    (run,) = (tmp_path / "TinyVAE").iterdir()
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["loop"]["global_step"] == 4 and _finite(ckpt["model"])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "best.safetensors", "last.ckpt",
                                                                      "last.safetensors", "manifest.json"]
