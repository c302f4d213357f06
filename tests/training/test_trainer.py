"""The training loop end to end: results, run directory, logging, validation, bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset
from training_helpers import ReconMSE, StandInData, TinyVAE, make_data, same_weights, weights

from vaekit.objectives import IWAE
from vaekit.training import FitResult, RunDir, Trainer, evaluate_objective, load_checkpoint, load_weights, read_metrics


def _fit(tmp_path: Path, model: TinyVAE | None = None, data: StandInData | None = None, objective=None, *,
         run_dir=None, config=None, **kw) -> FitResult:
    kw = {"batch_size": 16, "lr": 1e-2, "progress_bar": False, "root_dir": str(tmp_path / "runs"), **kw}
    if model is None:
        torch.manual_seed(0)
        model = TinyVAE()
    data = data if data is not None else make_data()
    return Trainer(**kw).fit(model, data, objective, run_dir=run_dir, config=config)


def test_fit_trains_and_writes_the_run(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyVAE()
    data = make_data(n=64, n_val=16)
    with torch.no_grad():
        before = -model.elbo_terms(data.val).elbo.mean().item()
    res = _fit(tmp_path, model, data, max_epochs=20, log_every_steps=4)
    assert (res.global_step, res.epoch, res.skipped_steps, res.stop_reason) == (80, 20, 0, "max_epochs")
    run = res.run_dir
    assert run.path.parent == tmp_path / "runs" / "TinyVAE"
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoints", "config.yaml", "eval", "log.txt",
                                                          "metrics.csv", "tensorboard"]
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["best.ckpt", "best.safetensors", "last.ckpt",
                                                                 "last.safetensors", "manifest.json"]
    assert any(run.tensorboard.iterdir())
    rows = read_metrics(run.metrics)
    val = [r["value"] for r in rows if r["split"] == "val" and r["name"] == "loss"]
    assert len(val) == 20 and res.best_metric == min(val)
    assert val[-1] < before - 1.0  # it learned (negative ELBO dropped by more than a nat)
    steps = sorted({r["step"] for r in rows if r["split"] == "train"})
    assert steps == list(range(4, 81, 4))
    names = {r["name"] for r in rows if r["split"] == "train"}
    assert {"loss", "elbo", "rec", "kl/z", "grad_norm", "lr", "skipped_steps", "samples_per_s"} <= names
    ckpt = load_checkpoint(run.last_checkpoint)
    assert ckpt["loop"]["global_step"] == 80 and ckpt["loop"]["epoch"] == 20 and ckpt["loop"]["batch_in_epoch"] == 0
    assert ckpt["config"]["trainer"]["max_epochs"] == 20 and run.read_config()["model"]["class_path"].endswith("TinyVAE")
    assert same_weights(load_weights(run.last_weights), weights(model))
    best = load_checkpoint(run.best_checkpoint)
    assert best["loop"]["best_metric"] == pytest.approx(min(val))
    log = run.log.read_text()
    assert "Training TinyVAE" in log and "Stopped (max_epochs) at step 80" in log


def test_logging_handlers_are_removed_and_config_is_written(tmp_path: Path) -> None:
    logger = logging.getLogger("vaekit")
    handlers = list(logger.handlers)
    res = _fit(tmp_path, max_epochs=1, config={"model": {"class_path": "x.Y"}, "seed": 1})
    assert logger.handlers == handlers
    assert res.run_dir.read_config() == {"model": {"class_path": "x.Y"}, "seed": 1}
    assert load_checkpoint(res.run_dir.last_checkpoint)["config"] == {"model": {"class_path": "x.Y"}, "seed": 1}


def test_validation_every_steps_checkpoints_and_early_stopping(tmp_path: Path) -> None:
    res = _fit(tmp_path, max_epochs=3, val_every_epochs=None, val_every_steps=5, checkpoint_every_steps=4)
    rows = read_metrics(res.run_dir.metrics)
    assert sorted({r["step"] for r in rows if r["split"] == "val"}) == [5, 10]
    assert sorted(p.name for p in res.run_dir.checkpoints.glob("step-*.ckpt")) == ["step-12.ckpt", "step-4.ckpt",
                                                                                  "step-8.ckpt"]
    assert load_checkpoint(res.run_dir.step_checkpoint(8))["loop"]["global_step"] == 8


class _WorseEachTime:
    """Validation loss 1, 2, 3, ...: only the first validation is an improvement."""

    def __init__(self) -> None:
        self.evals = 0
        self.last_step = -1

    def __call__(self, model, batch, step):
        loss = (model.enc.weight ** 2).sum() * 0 + 1.0
        if not model.training and step > 0:  # step 0: the trainer's check of the objective, before training
            if step != self.last_step:
                self.evals, self.last_step = self.evals + 1, step
            loss = loss * self.evals
        return loss, {"loss": loss.detach()}


def test_early_stopping_stops_at_the_right_validation(tmp_path: Path) -> None:
    obj = _WorseEachTime()
    res = _fit(tmp_path, objective=obj, max_epochs=50, early_stopping_patience=3)
    # validation 1 is the best; validations 2, 3, 4 do not improve -> stop after the 4th (epoch 4, step 16)
    assert (res.stop_reason, res.epoch, res.global_step, res.best_metric) == ("early_stopping", 4, 16, 1.0)
    val = [r for r in read_metrics(res.run_dir.metrics) if r["split"] == "val"]
    assert [r["value"] for r in val] == [1.0, 2.0, 3.0, 4.0]
    assert load_checkpoint(res.run_dir.best_checkpoint)["loop"]["global_step"] == 4


def test_monitor_max_mode(tmp_path: Path) -> None:
    res = _fit(tmp_path, max_epochs=3, monitor="elbo", monitor_mode="max")
    elbos = [r["value"] for r in read_metrics(res.run_dir.metrics) if r["split"] == "val" and r["name"] == "elbo"]
    assert res.best_metric == max(elbos)


class _RowDataset(Dataset):
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def test_dataset_path_matches_in_memory_path_exactly(tmp_path: Path) -> None:
    data = make_data(n=50)
    torch.manual_seed(0)
    a = TinyVAE()
    _fit(tmp_path / "a", a, data, max_epochs=2)
    torch.manual_seed(0)
    b = TinyVAE()
    _fit(tmp_path / "b", b, StandInData(_RowDataset(data.train), data.val), max_epochs=2)
    assert same_weights(weights(a), weights(b))


def test_iwae_objective_and_bf16_mixed(tmp_path: Path) -> None:
    res = _fit(tmp_path, objective=IWAE(k=4), max_epochs=2, monitor="iwae4", monitor_mode="max")
    assert res.best_metric is not None and res.best_metric < 0
    torch.manual_seed(0)
    model = TinyVAE()
    res = _fit(tmp_path, model, max_epochs=2, precision="bf16-mixed")
    assert res.skipped_steps == 0 and all(torch.isfinite(v).all() for v in weights(model).values())


def test_existing_fresh_run_dir_is_used(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "mine", config={"a": 1})
    res = _fit(tmp_path, run_dir=run, max_epochs=1, config={"b": 2})
    assert res.run_dir.path == run.path and run.read_config() == {"b": 2}
    with pytest.raises(ValueError, match="already holds a run"):
        _fit(tmp_path, run_dir=run.path, max_epochs=1)
    res = _fit(tmp_path, run_dir=tmp_path / "new" / "dir", max_epochs=1)
    assert (tmp_path / "new" / "dir" / "checkpoints" / "last.ckpt").is_file()


def test_evaluate_objective_is_a_per_example_mean_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = TinyVAE()
    x = make_data(n_val=16).val
    with torch.no_grad():
        whole = ReconMSE()(model, x)[0].item()
    for bs in (1, 3, 16, 100):
        assert evaluate_objective(ReconMSE(), model, x, batch_size=bs)["loss"] == pytest.approx(whole, rel=1e-6)
    assert model.training  # mode restored


def test_get_params_round_trips_through_the_constructor() -> None:
    t = Trainer(max_epochs=7, adam_betas=(0.5, 0.9), devices=[0], lr_schedule="cosine")
    again = Trainer(**t.get_params())
    assert again.get_params() == t.get_params()
    assert repr(t) == "Trainer(max_epochs=7, adam_betas=[0.5, 0.9], lr_schedule='cosine', devices=[0])"


def test_lr_multipliers_scale_the_rate_of_a_submodule(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyVAE()
    start = weights(model)
    _fit(tmp_path, model, max_epochs=2, lr=1e-2, lr_schedule="cosine", lr_multipliers={"dec": 1e-4, "enc.bias": 3.0})
    moved = {k: float((v - start[k]).abs().max()) for k, v in weights(model).items()}
    # Adam's first steps move each weight by about the rate: 1e-6 for the decoder, 3e-2 for the encoder's bias
    assert moved["dec.weight"] < 1e-4 < 1e-3 < moved["enc.weight"] < moved["enc.bias"], moved


def test_root_dir_may_be_a_path_and_is_recorded_as_a_str(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trainer = Trainer(max_steps=2, batch_size=16, progress_bar=False, root_dir=tmp_path / "runs")
    assert trainer.get_params()["root_dir"] == str(tmp_path / "runs") and trainer.root_dir == str(tmp_path / "runs")
    res = trainer.fit(TinyVAE(), make_data(n=40, n_val=0))
    assert Path(res.run_dir.path).parent.parent == tmp_path / "runs"
    assert res.run_dir.read_config()["trainer"]["root_dir"] == str(tmp_path / "runs")
    with pytest.raises(TypeError, match="root_dir must be a non-empty str"):
        Trainer(root_dir=3)  # type: ignore[arg-type]
