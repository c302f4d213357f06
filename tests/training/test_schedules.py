"""Learning-rate schedules: values, checkpointing, and what the trainer actually applies."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from training_helpers import ReconMSE, TinyVAE, make_data

from vaekit.training import LRSchedule, Trainer, cosine_lr, iwae_lr, iwae_stage, read_metrics

# (first epoch of stage i) for i = 0..7: (3**i - 1) / 2
STAGE_STARTS = [0, 1, 4, 13, 40, 121, 364, 1093]


def test_iwae_schedule_values() -> None:
    for i, start in enumerate(STAGE_STARTS):
        assert iwae_stage(start) == i
        assert iwae_lr(1e-3, start) == pytest.approx(1e-3 * 10 ** (-i / 7), rel=1e-12)
        if i > 0:
            assert iwae_stage(start - 1) == i - 1
    assert sum(3**i for i in range(8)) == 3280
    assert iwae_stage(3279) == 7 and iwae_stage(100_000) == 7
    assert iwae_lr(1e-3, 1093) == pytest.approx(1e-4, rel=1e-12)
    assert [iwae_lr(1.0, e) for e in (0, 1, 3, 4)] == pytest.approx([1.0, 10 ** (-1 / 7), 10 ** (-1 / 7), 10 ** (-2 / 7)])
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        iwae_stage(-1)


def test_cosine_endpoints_and_midpoint() -> None:
    assert cosine_lr(2e-3, 0, 1000) == 2e-3
    assert cosine_lr(2e-3, 1000, 1000, min_lr=1e-5) == pytest.approx(1e-5, rel=1e-12)
    assert cosine_lr(2e-3, 5000, 1000, min_lr=1e-5) == pytest.approx(1e-5, rel=1e-12)
    assert cosine_lr(1.0, 250, 1000) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    s = LRSchedule("cosine", 1.0, total_steps=10, min_lr=0.1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=123.0)
    assert s.apply(opt, 5, 0) == pytest.approx(0.55) and opt.param_groups[0]["lr"] == pytest.approx(0.55)
    with pytest.raises(ValueError, match="total_steps >= 1"):
        LRSchedule("cosine", 1.0)


def test_plateau_reduces_after_patience_and_floors_at_min_lr() -> None:
    s = LRSchedule("plateau", 1.0, patience=2, factor=0.1, min_lr=0.005)
    lrs = []
    for v in [5.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0]:
        s.observe(v)
        lrs.append(s.lr(0, 0))
    assert lrs == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01, 0.005])
    # state_dict / load_state_dict continue identically
    a = LRSchedule("plateau", 1.0, patience=3, factor=0.5)
    for v in [3.0, 3.0, 3.0]:
        a.observe(v)
    b = LRSchedule("plateau", 1.0, patience=3, factor=0.5)
    b.load_state_dict(a.state_dict())
    assert (a.observe(3.0), b.observe(3.0)) == (True, True)
    assert a.lr(0, 0) == b.lr(0, 0) == 0.5
    with pytest.raises(ValueError, match="checkpoint holds an lr_schedule 'plateau'"):
        LRSchedule("constant", 1.0).load_state_dict(a.state_dict())


def test_constant_ignores_validation_and_bad_names_fail() -> None:
    s = LRSchedule("constant", 0.3)
    assert not s.observe(1.0) and s.lr(10**6, 10**4) == 0.3
    with pytest.raises(ValueError, match=r"lr_schedule must be one of \['constant', 'cosine', 'plateau', 'iwae', 'exponential', 'noam'\]"):
        LRSchedule("step", 1.0)  # type: ignore[arg-type]


def _lr_rows(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["value"] for r in read_metrics(Path(run_dir) / "metrics.csv") if r["name"] == "lr"}


def test_trainer_applies_iwae_schedule_per_epoch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = make_data(n=32, n_val=0)
    res = Trainer(max_epochs=5, batch_size=16, lr=1e-2, lr_schedule="iwae", log_every_steps=1, val_every_epochs=None,
                  progress_bar=False, root_dir=str(tmp_path)).fit(TinyVAE(), data)
    lrs = _lr_rows(res.run_dir.path)
    # 2 steps per epoch; the lr logged at step s was used for step s (taken in epoch (s-1)//2)
    expected = {s: iwae_lr(1e-2, (s - 1) // 2) for s in range(1, 11)}
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert lrs[2] == 1e-2 and lrs[3] == pytest.approx(1e-2 * 10 ** (-1 / 7)) and lrs[9] == pytest.approx(1e-2 * 10 ** (-2 / 7))


def test_trainer_cosine_spans_the_whole_run(tmp_path: Path) -> None:
    torch.manual_seed(0)
    res = Trainer(max_epochs=2, batch_size=8, lr=1e-2, lr_schedule="cosine", min_lr=1e-4, log_every_steps=1,
                  progress_bar=False, root_dir=str(tmp_path)).fit(TinyVAE(), make_data(n=32))
    lrs = _lr_rows(res.run_dir.path)
    assert len(lrs) == 8
    assert lrs[1] == 1e-2  # step index 0
    assert lrs[8] == pytest.approx(cosine_lr(1e-2, 7, 8, 1e-4))
    assert all(lrs[s] > lrs[s + 1] for s in range(1, 8))


def test_trainer_plateau_reduces_on_flat_validation(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyVAE()
    # lr=1e-12: validation loss does not move (every validation is a plateau after the first)
    res = Trainer(max_epochs=6, batch_size=32, lr=1e-12, lr_schedule="plateau", plateau_patience=2, plateau_factor=0.5,
                  log_every_steps=1, progress_bar=False, root_dir=str(tmp_path)).fit(model, make_data(n=32), ReconMSE())
    lrs = _lr_rows(res.run_dir.path)
    # validations after steps 1..6; no improvement from the 2nd on: reductions after validations 3 and 5
    assert [lrs[s] / 1e-12 for s in range(1, 7)] == pytest.approx([1, 1, 1, 0.5, 0.5, 0.25])
