"""Bad input: a clear error naming the argument, before anything is written."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from training_helpers import StandInData, TinyVAE, make_data

from vaekit.training import RunDir, Trainer


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
    ({"batch_size": -5}, "batch_size must be an int >= 1, got -5"),
    ({"max_epochs": 0}, "max_epochs must be an int >= 1, got 0"),
    ({"max_steps": 0}, "max_steps must be an int >= 1, got 0"),
    ({"optimizer": "sgd"}, r"optimizer must be one of \['adam', 'adamw', 'adamax', 'radam'\], got 'sgd'"),
    ({"lr_schedule": "linear"}, r"lr_schedule must be one of \['constant', 'cosine', 'plateau', 'iwae', 'exponential', 'noam'\], got 'linear'"),
    ({"precision": "16"}, r"precision must be one of \['32-true', '64-true', 'bf16-mixed', 'bf16-true'\], got '16'"),
    ({"lr": 0.0}, "lr must be a finite number > 0.0, got 0.0"),
    ({"lr": math.nan}, "lr must be a finite number > 0.0, got nan"),
    ({"adam_betas": (0.9,)}, "adam_betas must be two floats"),
    ({"plateau_factor": 1.5}, r"plateau_factor must be a float in \(0, 1\), got 1.5"),
    ({"ema_decay": 1.0}, r"ema_decay must be None or a float in \[0, 1\), got 1.0"),
    ({"grad_clip": -1.0}, "grad_clip must be a finite number > 0.0, got -1.0"),
    ({"val_every_steps": 0}, "val_every_steps must be an int >= 1, got 0"),
    ({"monitor_mode": "up"}, r"monitor_mode must be one of \['min', 'max'\], got 'up'"),
    ({"max_consecutive_skips": True}, "max_consecutive_skips must be an int >= 1, got True"),
    ({"lr_multipliers": {"dec": 0.0}}, r"lr_multipliers\['dec'\] must be a finite number > 0.0, got 0.0"),
    ({"lr_multipliers": ["dec"]}, "lr_multipliers must be a dict of parameter-name prefixes to factors"),
    ({"compile": "bogus"}, r"compile must be True, False or one of \["),
    ({"adam_betas": (1.0, 0.9)}, r"adam_betas must be two floats in \[0, 1\), got \(1.0, 0.9\)"),
    ({"monitor": 3}, "monitor must be the name of a metric of the objective"),
    ({"run_name": "a/b"}, "run_name must be one folder name"),
    ({"root_dir": 5}, "root_dir must be a non-empty str, got 5"),
    ({"devices": 0}, r"devices must be a number of devices >= 1 \(or -1: all of them\), got 0"),
    ({"drop_last": "false"}, "drop_last must be True or False, got 'false'"),
    ({"progress_bar": "no"}, "progress_bar must be True or False, got 'no'"),
])
def test_constructor_rejects(kwargs: dict, message: str) -> None:
    from vaekit import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match=message) as caught:  # (both a ValueError and a TypeError)
        Trainer(**kwargs)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, TypeError)


def _trainer(tmp_path: Path, **kw) -> Trainer:
    return Trainer(**{"batch_size": 8, "max_epochs": 1, "progress_bar": False, "root_dir": str(tmp_path / "runs"), **kw})


def _nothing_written(tmp_path: Path) -> bool:
    return not (tmp_path / "runs").exists()


def test_empty_train_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the training split is empty"):
        _trainer(tmp_path).fit(TinyVAE(), StandInData(torch.zeros(0, 6)))
    with pytest.raises(ValueError, match="the training split is empty"):
        _trainer(tmp_path).fit(TinyVAE(), StandInData(None))
    assert _nothing_written(tmp_path)


def test_nan_and_inf_in_data(tmp_path: Path) -> None:
    data = make_data()
    data.train[3, 2] = math.nan
    data.train[5, 0] = math.inf
    with pytest.raises(ValueError, match=r"data.train contains 2 NaN/inf value\(s\)"):
        _trainer(tmp_path).fit(TinyVAE(), data)
    data = make_data()
    data.val[0, 0] = math.nan
    with pytest.raises(ValueError, match=r"data.val contains 1 NaN/inf value\(s\)"):
        _trainer(tmp_path).fit(TinyVAE(), data)
    assert _nothing_written(tmp_path)


def test_data_shape_must_match_the_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data.train has shape \(\d+, 5\) but this model expects \(batch, 6\)"):
        _trainer(tmp_path).fit(TinyVAE(d_x=6), make_data(d_x=5))
    with pytest.raises(TypeError, match="data.train must be a floating-point tensor"):
        _trainer(tmp_path).fit(TinyVAE(), StandInData(torch.zeros(10, 6, dtype=torch.long)))
    assert _nothing_written(tmp_path)


def test_wrong_argument_types(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        _trainer(tmp_path).fit("vae", make_data())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data must be a vaekit.data.DataModule"):
        _trainer(tmp_path).fit(TinyVAE(), torch.zeros(4, 6))
    with pytest.raises(ValueError, match="pass either run_dir"):
        _trainer(tmp_path).fit(TinyVAE(), make_data(), run_dir=tmp_path / "a", resume=tmp_path / "b")
    assert _nothing_written(tmp_path)


def test_options_that_need_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"early_stopping_patience needs validation: data.val is None"):
        _trainer(tmp_path, early_stopping_patience=2).fit(TinyVAE(), make_data(n_val=0))
    with pytest.raises(ValueError, match=r"lr_schedule='plateau' needs validation: .*val_every_epochs=None"):
        _trainer(tmp_path, lr_schedule="plateau", val_every_epochs=None).fit(TinyVAE(), make_data())
    with pytest.raises(ValueError, match=r"monitor='nll' is not a metric of ELBO; it returns \['elbo', 'kl/z', 'loss', 'rec'\]"):
        _trainer(tmp_path, monitor="nll").fit(TinyVAE(), make_data())
    assert _nothing_written(tmp_path)


def test_resume_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"resume='.*nowhere' does not exist"):
        _trainer(tmp_path).fit(TinyVAE(), make_data(), resume=tmp_path / "nowhere")
    (tmp_path / "not_a_run").mkdir()
    with pytest.raises(ValueError, match=r"not a vaekit run directory: missing config.yaml, checkpoints/, metrics.csv"):
        _trainer(tmp_path).fit(TinyVAE(), make_data(), resume=tmp_path / "not_a_run")
    run = RunDir.create(tmp_path / "other", "m")
    with pytest.raises(FileNotFoundError, match="has no checkpoints/last.ckpt to resume from"):
        _trainer(tmp_path).fit(TinyVAE(), make_data(), resume=run.path)
    run.last_checkpoint.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=r"checkpoint '.*last.ckpt' is truncated or corrupt"):
        _trainer(tmp_path).fit(TinyVAE(), make_data(), resume=run.path)
    stray = tmp_path / "stray.ckpt"
    stray.write_bytes(b"x")
    with pytest.raises(ValueError, match="not a vaekit run directory"):
        _trainer(tmp_path).fit(TinyVAE(), make_data(), resume=stray)
    assert _nothing_written(tmp_path)
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["last.ckpt"]


def test_run_dir_that_holds_something_else(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is neither empty nor a new run directory"):
        _trainer(tmp_path).fit(TinyVAE(), make_data(), run_dir=tmp_path / "busy")
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]


def test_more_processes_than_examples_and_no_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fewer than the 8 needed for 1 process"):
        _trainer(tmp_path, drop_last=True).fit(TinyVAE(), make_data(n=5))
    frozen = TinyVAE().requires_grad_(False)
    with pytest.raises(ValueError, match="TinyVAE has no trainable parameters"):
        _trainer(tmp_path).fit(frozen, make_data())
    assert _nothing_written(tmp_path)


def test_torchrun_without_ddp_settings_is_refused(tmp_path, monkeypatch):
    """A process launched as one of several (WORLD_SIZE > 1) must not silently train alone."""
    import pytest
    import torch

    from vaekit.data import ArrayData
    from vaekit.models import mlp_vae
    from vaekit.training import Trainer

    monkeypatch.setenv("WORLD_SIZE", "2")
    data = ArrayData(torch.bernoulli(torch.full((16, 6), 0.5)), val_fraction=0.25)
    with pytest.raises(ValueError, match="WORLD_SIZE=2.*every process would train alone"):
        Trainer(max_epochs=1, progress_bar=False, root_dir=str(tmp_path)).fit(mlp_vae([6], 2, [4]), data)
    assert not any(tmp_path.iterdir())


def test_non_binary_examples_anywhere_in_the_data_are_rejected(tmp_path):
    """The likelihood's support check sees every example, not just the first batch."""
    import pytest
    import torch

    from vaekit.data import ArrayData
    from vaekit.models import mlp_vae
    from vaekit.training import Trainer

    x = torch.bernoulli(torch.full((400, 6), 0.5))
    x[300:] = 0.5
    data = ArrayData(x, val_fraction=0.0)
    with pytest.raises(ValueError, match="data.train is not binary"):
        Trainer(max_epochs=1, batch_size=10, progress_bar=False, root_dir=str(tmp_path)).fit(mlp_vae([6], 2, [4]), data)
    assert not any(tmp_path.iterdir())


def test_lr_multiplier_prefix_that_matches_nothing_is_ignored_with_a_warning(tmp_path: Path) -> None:
    import warnings

    from vaekit.training.schedules import lr_groups

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = _trainer(tmp_path, lr_multipliers={"decoder": 2.0, "dec": 0.5}).fit(TinyVAE(), make_data())
    said = [str(w.message) for w in caught if "lr_multipliers" in str(w.message)]
    assert len(said) == 1 and re.search(r"prefix\(es\) \['decoder'\] match no trainable parameter of TinyVAE and are "
                                        r"ignored; .*\['dec', 'enc', 'log_sigma'\]", said[0]), said
    assert res.stop_reason == "max_epochs"
    with pytest.warns(UserWarning, match=r"\['decoder'\] match no trainable parameter"):
        groups = lr_groups(TinyVAE(), {"decoder": 2.0, "dec": 0.5})  # 'dec' still applies; 'decoder' changes nothing
    assert sorted((g["lr_mult"], len(g["params"])) for g in groups) == [(0.5, 2), (1.0, 3)]
