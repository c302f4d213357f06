"""Honest exits: an error while training is not a config error, failed runs exit non-zero, the divergence guard.

``vaekit fit`` exits 0 when the run ended as planned, 1 on an error (its type and message on
stderr, its traceback in the run's ``log.txt``), 2 on bad input or config, and 3 when the
run failed (``too_many_skips``, ``non_finite_weights``, ``diverged``).
"""

from __future__ import annotations

import errno
import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from training_helpers import ELBO, NaNAt, TinyVAE, make_data

from vaekit.cli import main
from vaekit.config import ConfigError, fit_config
from vaekit.objectives import Objective
from vaekit.objectives import elbo as elbo_module
from vaekit.training import Trainer, load_checkpoint
from vaekit.training.state import FAILED_STOP_REASONS, STOP_REASONS, TrainingStoppedWarning

# a 2-latent MLP VAE on scikit-learn's digits (offline): 20 steps per epoch, no validation
TINY = {
    "model": {"class_path": "vaekit.models.VAE", "init_args": {
        "encoder": {"class_path": "vaekit.nn.MLP",
                    "init_args": {"in_features": 64, "out_features": 16, "output_activation": "elu"}},
        "posterior": {"class_path": "vaekit.distributions.DiagonalGaussian",
                      "init_args": {"context_features": 16, "latent_features": 2}},
        "decoder": {"class_path": "vaekit.nn.MLP", "init_args": {"in_features": 2, "out_features": 64, "hidden": [16]}},
        "likelihood": {"class_path": "vaekit.distributions.Bernoulli"},
        "data_shape": [64],
    }},
    "data": {"class_path": "vaekit.data.Digits", "init_args": {"binarize": "dynamic", "flatten": True,
                                                               "test_fraction": 0.2}},
    "trainer": {"max_steps": 20, "batch_size": 64, "log_every_steps": 5, "val_every_epochs": None,
                "progress_bar": False, "run_name": "tiny", "root_dir": "runs"},
}


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny config in tmp_path/tiny.yaml; cwd is tmp_path (runs go to tmp_path/runs/tiny/)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAEKIT_DEBUG", raising=False)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY, sort_keys=False))
    return path


def _runs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "runs" / "tiny"
    return sorted(root.iterdir()) if root.exists() else []


def _elbo_that(monkeypatch: pytest.MonkeyPatch, change: Callable) -> None:
    """Wrap ``ELBO.__call__`` (what the loop calls every step): ``change(model, step, loss, metrics)``
    runs on training steps only (not on the set-up probe nor in validation)."""
    real = elbo_module.ELBO.__call__

    def call(self, model, batch, step=0):
        loss, metrics = real(self, model, batch, step)
        return change(model, step, loss, metrics) if model.training else (loss, metrics)

    monkeypatch.setattr(elbo_module.ELBO, "__call__", call)


def _raise_at(step: int, error: Exception) -> Callable:
    def change(model, s, loss, metrics):
        if s >= step:
            raise error
        return loss, metrics

    return change


# ------------------------------------------------------------------ errors while training
def test_an_error_while_training_keeps_its_type_message_and_traceback(config, tmp_path, monkeypatch, capsys):
    _elbo_that(monkeypatch, _raise_at(3, ZeroDivisionError("boom")))
    assert main(["fit", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    (run,) = _runs(tmp_path)
    log_file = Path("runs", "tiny", run.name, "log.txt")  # as the run directory was given: relative to cwd
    assert f"vaekit fit: error: ZeroDivisionError: boom  (traceback in {log_file}; set VAEKIT_DEBUG=1 to print it)\n" \
        in err
    assert "cannot build" not in err and "Traceback" not in err
    log = (run / "log.txt").read_text()
    assert "ERROR Training failed at step 3 (epoch 0): ZeroDivisionError: boom" in log
    assert "Traceback (most recent call last)" in log and "raise error" in log

    monkeypatch.setenv("VAEKIT_DEBUG", "1")
    assert main(["fit", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "raise error" in err
    assert "ZeroDivisionError: boom  (traceback in " in err and "cannot build" not in err


def test_a_value_error_while_training_is_not_reported_as_bad_input(config, tmp_path, monkeypatch, capsys):
    # e.g. torch.distributions refusing a NaN parameter mid-run: an error of the run (1), not of the input (2)
    _elbo_that(monkeypatch, _raise_at(4, ValueError("Expected parameter loc to satisfy the constraint Real()")))
    assert main(["fit", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "vaekit fit: error: ValueError: Expected parameter loc to satisfy the constraint Real()  (traceback in" in err
    (run,) = _runs(tmp_path)
    assert "ValueError: Expected parameter loc" in (run / "log.txt").read_text()


def test_a_full_disk_while_writing_a_checkpoint_names_the_cause(config, tmp_path, monkeypatch, capsys):
    def full(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    assert main(["fit", "--config", str(config), "--trainer.checkpoint_every_steps", "5"]) == 1
    err = capsys.readouterr().err
    written = re.search(r"vaekit fit: error: (\w+): No space left on device[^\n]*\(traceback in ", err)
    assert written and written.group(1) in ("OSError", "FileWriteError"), err  # the checkpoint writer may name the file
    assert "cannot build" not in err
    (run,) = _runs(tmp_path)
    assert "No space left on device" in (run / "log.txt").read_text()


@pytest.mark.parametrize("args,message", [
    (["--trainer.batch_size", "0"], "cannot build the objects of the config: batch_size must be an int >= 1, got 0"),
    (["--trainer.divergence_factor", "-1"],
     "cannot build the objects of the config: divergence_factor must be a finite number > 0.0, got -1.0"),
])
def test_a_constructor_refusing_its_arguments_is_a_config_error(config, tmp_path, monkeypatch, capsys, args, message):
    assert main(["fit", "--config", str(config), *args]) == 2
    err = capsys.readouterr().err
    assert f"vaekit fit: error: {message}\n" in err and "Traceback" not in err
    assert _runs(tmp_path) == []
    monkeypatch.setenv("VAEKIT_DEBUG", "1")
    assert main(["fit", "--config", str(config), *args]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    cfg = yaml.safe_load(config.read_text())
    cfg["trainer"]["batch_size"] = 0
    with pytest.raises(ConfigError, match="cannot build the objects of the config: batch_size") as info:
        fit_config(cfg)
    assert isinstance(info.value.__cause__, ValueError)


# ------------------------------------------------------------------ failed runs exit 3
def test_a_nan_run_stops_for_too_many_skips_and_exits_3(config, tmp_path, monkeypatch, capsys):
    _elbo_that(monkeypatch, lambda model, step, loss, metrics: (loss * math.nan, metrics) if step >= 7 else (loss, metrics))
    assert main(["fit", "--config", str(config), "--trainer.max_consecutive_skips", "3"]) == 3
    err = capsys.readouterr().err
    assert "vaekit fit: error: the run failed (too_many_skips): Training stopped: 3 steps in a row were skipped" in err
    (run,) = _runs(tmp_path)
    assert "Stopped (too_many_skips) at step 10" in (run / "log.txt").read_text()


def test_non_finite_weights_exit_3(config, tmp_path, monkeypatch, capsys):
    def poison(model, step, loss, metrics):
        if step == 6:
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = math.inf
        return torch.nan_to_num(loss, nan=1.0, posinf=1.0), metrics

    _elbo_that(monkeypatch, poison)
    assert main(["fit", "--config", str(config), "--trainer.checkpoint_every_steps", "5"]) == 3
    err = capsys.readouterr().err
    assert "vaekit fit: error: the run failed (non_finite_weights): step 10: the weights are no longer finite" in err
    (run,) = _runs(tmp_path)
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["loop"]["global_step"] == 5


def test_a_huge_learning_rate_diverges_and_exits_3(config, tmp_path, capsys):
    assert main(["fit", "--config", str(config), "--trainer.lr", "1e3"]) == 3
    err = capsys.readouterr().err
    assert "vaekit fit: error: the run failed (diverged): Training diverged: the logged training loss was above the " \
           "divergence bound for 3 windows of 5 steps in a row (last " in err
    (run,) = _runs(tmp_path)
    log = (run / "log.txt").read_text()
    assert "Stopped (diverged) at step 15" in log and log.count("is above the divergence bound") == 3


def test_a_normal_run_exits_0_and_never_reports_divergence(config, tmp_path, capsys):
    assert main(["fit", "--config", str(config), "--trainer.max_steps", "40"]) == 0
    err = capsys.readouterr().err
    (run,) = _runs(tmp_path)
    log = (run / "log.txt").read_text()
    assert "Stopped (max_steps) at step 40" in log
    assert "diverg" not in log and "diverg" not in err and "error" not in err
    assert len(load_checkpoint(run / "checkpoints" / "last.ckpt")["loop"]["logged_losses"]) == 1 + 40 // 5


# ------------------------------------------------------------------ from Python: a warning and the FitResult
def _trainer(tmp_path: Path, **kw) -> Trainer:
    return Trainer(**{"batch_size": 16, "lr": 5e-3, "progress_bar": False, "root_dir": str(tmp_path),
                      "val_every_epochs": None, "log_every_steps": 2, **kw})


def _model() -> TinyVAE:
    torch.manual_seed(0)
    return TinyVAE()


def test_fit_warns_when_the_run_failed_and_returns_the_result(tmp_path):
    with pytest.warns(TrainingStoppedWarning, match=r"stop_reason='too_many_skips'.*3 steps in a row were skipped"):
        res = _trainer(tmp_path, max_epochs=10, max_consecutive_skips=3).fit(_model(), make_data(n=64),
                                                                             NaNAt(forever_from=5))
    assert (res.stop_reason, res.failed, res.global_step) == ("too_many_skips", True, 8)
    assert res.message.startswith("Training stopped: 3 steps in a row were skipped")
    assert issubclass(TrainingStoppedWarning, RuntimeWarning)
    assert set(FAILED_STOP_REASONS) <= set(STOP_REASONS) and "diverged" in FAILED_STOP_REASONS
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingStoppedWarning)
        res = _trainer(tmp_path, max_steps=8).fit(_model(), make_data(n=64))
    assert (res.stop_reason, res.failed, res.message) == ("max_steps", False, "")


class Scripted(Objective):
    """The ELBO's gradients, but the loss value ``value(step)`` (a loss curve chosen by the test)."""

    def __init__(self, value: Callable[[int], float]) -> None:
        self.inner, self.value = ELBO(), value

    def __call__(self, model, batch, step=0):
        loss, metrics = self.inner(model, batch, step)
        out = loss - loss.detach() + self.value(step)
        return out, {**metrics, "loss": out.detach()}


@pytest.mark.parametrize("curve", [
    lambda s: 1e6 * 0.7 ** s + 1.0,        # falls fast from a high start (an ELBO's first steps)
    lambda s: -100.0 - 10.0 * s,           # negative and falling (a Gaussian likelihood)
    lambda s: 0.5 - 0.5 * s,               # near zero, then below it
    lambda s: 10.0 + min(s, 20) * 1.0,     # rises threefold (a KL warm-up), then flat
    lambda s: 1e-3 * (-1) ** s,            # tiny and oscillating around zero
], ids=["falling", "negative", "crossing_zero", "warmup_rise", "around_zero"])
def test_the_guard_never_fires_on_normal_loss_curves(tmp_path, curve):
    res = _trainer(tmp_path, max_steps=40).fit(_model(), make_data(n=64), Scripted(curve))
    assert (res.stop_reason, res.failed) == ("max_steps", False)
    assert "divergence bound" not in res.run_dir.log.read_text()


def _jump(s: int) -> float:
    return 10.0 - 0.1 * s if s < 13 else 1e8  # from step 13 on; windows of 2 steps end at 14, 16, 18: stop at 18


def test_the_guard_stops_a_diverging_loss_and_survives_resume(tmp_path):
    with pytest.warns(TrainingStoppedWarning, match="diverged"):
        res = _trainer(tmp_path / "a", max_steps=40).fit(_model(), make_data(n=64), Scripted(_jump))
    assert (res.stop_reason, res.global_step, res.failed) == ("diverged", 18, True)
    assert "for 3 windows of 2 steps in a row (last 1e+08 at step 18; running median 9.55" in res.message
    assert res.run_dir.log.read_text().count("is above the divergence bound") == 3

    cut = _trainer(tmp_path / "b", max_steps=16).fit(_model(), make_data(n=64), Scripted(_jump))
    loop = load_checkpoint(cut.run_dir.last_checkpoint)["loop"]
    assert (cut.stop_reason, loop["global_step"], loop["diverging_windows"]) == ("max_steps", 16, 2)
    assert loop["logged_losses"] == sorted(loop["logged_losses"]) and len(loop["logged_losses"]) == 1 + 6
    with pytest.warns(TrainingStoppedWarning, match="diverged"):
        resumed = _trainer(tmp_path / "b", max_steps=40).fit(_model(), make_data(n=64), Scripted(_jump),
                                                             resume=cut.run_dir.path)
    assert (resumed.stop_reason, resumed.global_step) == ("diverged", 18)  # 22 if the guard forgot on resume

    off = _trainer(tmp_path / "c", max_steps=40, divergence_factor=None).fit(_model(), make_data(n=64), Scripted(_jump))
    assert off.stop_reason == "max_steps"
    with pytest.warns(TrainingStoppedWarning, match="diverged"):
        patient = _trainer(tmp_path / "d", max_steps=40, divergence_patience=5).fit(_model(), make_data(n=64),
                                                                                     Scripted(_jump))
    assert (patient.stop_reason, patient.global_step) == ("diverged", 22)


@pytest.mark.parametrize("kw,message", [
    ({"divergence_factor": -1}, "divergence_factor must be a finite number > 0.0, got -1"),
    ({"divergence_factor": 0}, "divergence_factor must be a finite number > 0.0, got 0"),
    ({"divergence_factor": math.nan}, "divergence_factor must be a finite number > 0.0, got nan"),
    ({"divergence_factor": "big"}, "divergence_factor must be a finite number > 0.0, got 'big'"),
    ({"divergence_patience": 0}, "divergence_patience must be an int >= 1, got 0"),
    ({"divergence_patience": 2.5}, "divergence_patience must be an int >= 1, got 2.5"),
])
def test_bad_guard_arguments_are_refused_by_name(kw, message):
    with pytest.raises(ValueError, match=message):
        Trainer(**kw)
    assert Trainer(divergence_factor=None).divergence_factor is None


@pytest.mark.parametrize("content, what", [(b"[1, 2]\n", "must hold a mapping"), (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8 text"),
                                           (b"model: [\n", "not valid YAML")], ids=["list", "bytes", "syntax"])
def test_a_damaged_config_file_is_named_with_exit_2(tmp_path, capsys, content, what):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    assert main(["fit", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and what in err and "Traceback" not in err


def test_a_failed_demo_run_is_an_error_not_a_result(tmp_path, monkeypatch, capsys):
    import vaekit.config
    from vaekit.training.state import FitResult

    failed = FitResult(run_dir=tmp_path, global_step=3, epoch=0, best_metric=None, skipped_steps=3,
                       stop_reason="too_many_skips", message="3 steps in a row were skipped")
    monkeypatch.setattr(vaekit.config, "fit_config", lambda cfg: failed)
    assert main(["demo", "--runs-dir", str(tmp_path), "--offline-digits", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "the demo run failed (too_many_skips): 3 steps in a row were skipped" in err
