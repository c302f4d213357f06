"""Training switches: freeze, learning-rate warm-up, the exponential and noam schedules, Adamax and RAdam."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from training_helpers import TinyVAE, make_data, same_weights, weights

from vaekit import InvalidArgumentError
from vaekit.training import LRSchedule, Trainer, load_checkpoint, read_metrics
from vaekit.training.ema import EMA
from vaekit.training.schedules import exponential_lr, frozen_parameters, noam_lr, warmup_factor
from vaekit.training.step import TrainStep, make_optimizer

# 60 examples, batch 16 -> 4 batches per epoch; 5 epochs = 20 steps
KW = dict(max_epochs=5, batch_size=16, lr=5e-3, ema_decay=0.9, log_every_steps=1, val_every_epochs=None,
          progress_bar=False, seed=3)


def _model() -> TinyVAE:
    torch.manual_seed(0)
    return TinyVAE()


def _data() -> Any:
    return make_data(n=60, n_val=0)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().view(torch.int32)  # float32 as its bits: -0.0 != 0.0, NaN payloads compared


def _lr_rows(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["value"] for r in read_metrics(Path(run_dir) / "metrics.csv") if r["name"] == "lr"}


# ------------------------------------------------------------------------------------------ freeze
def test_freeze_leaves_frozen_tensors_bit_identical_and_out_of_the_optimizer(tmp_path: Path) -> None:
    model = _model()
    with torch.no_grad():
        model.dec.bias[0] = -0.0  # a negative zero stays one (an EMA average of it would give +0.0)
    before = {k: _bits(v) for k, v in model.state_dict().items()}
    res = Trainer(**KW, weight_decay=0.1, freeze=["dec"], root_dir=str(tmp_path)).fit(model, _data())
    assert res.global_step == 20
    after = model.state_dict()
    for name in ("dec.weight", "dec.bias"):
        assert torch.equal(_bits(after[name]), before[name]), name
    for name in ("enc.weight", "enc.bias", "log_sigma"):
        assert not torch.equal(_bits(after[name]), before[name]), name  # the others trained
    assert all(p.requires_grad for p in model.parameters())  # restored after the fit
    for ckpt_name in ("last.ckpt",):
        ckpt = load_checkpoint(res.run_dir.checkpoints / ckpt_name)
        assert len(ckpt["optimizer"]["state"]) == 3  # enc.weight, enc.bias, log_sigma: no state for dec
        assert sum(len(g["params"]) for g in ckpt["optimizer"]["param_groups"]) == 3
        assert sorted(ckpt["ema"]["shadow"]) == ["enc.bias", "enc.weight", "log_sigma"]
        for name in ("dec.weight", "dec.bias"):
            assert torch.equal(_bits(ckpt["model"][name]), before[name])
    assert res.run_dir.read_config()["trainer"]["freeze"] == ["dec"]


def test_freeze_by_parameter_name_and_exact_resume(tmp_path: Path) -> None:
    """A frozen run stopped at step 6 and resumed continues bit-identically, the warm-up and the exponential
    schedule included (their rates at every step are the formula's)."""
    kw = dict(KW, freeze=["dec.weight", "log_sigma"], warmup_steps=8, lr_schedule="exponential", lr_gamma=0.9,
              min_lr=1e-3)
    ref_model = _model()
    frozen_before = {n: _bits(ref_model.state_dict()[n]) for n in ("dec.weight", "log_sigma")}
    ref = Trainer(**kw, root_dir=str(tmp_path / "ref")).fit(ref_model, _data())
    for n, bits in frozen_before.items():
        assert torch.equal(_bits(ref_model.state_dict()[n]), bits), n
    ref_lrs = _lr_rows(ref.run_dir.path)
    expected = {s: max(5e-3 * 0.9 ** (s - 1), 1e-3) * min(1.0, s / 8) for s in range(1, 21)}  # step s used index s-1
    assert ref_lrs == pytest.approx(expected, rel=1e-12)
    assert ref_lrs[1] == pytest.approx(5e-3 / 8, rel=1e-12) and ref_lrs[8] == pytest.approx(5e-3 * 0.9**7, rel=1e-12)
    assert ref_lrs[20] == pytest.approx(1e-3, rel=1e-12)  # floored
    model = _model()
    first = Trainer(**{**kw, "max_steps": 6}, root_dir=str(tmp_path / "run")).fit(model, _data())
    assert first.global_step == 6
    fresh = _model()
    res = Trainer(**kw, root_dir=str(tmp_path / "unused")).fit(fresh, _data(), resume=first.run_dir.path)
    assert res.global_step == 20
    assert same_weights(weights(fresh), weights(ref_model))
    assert _lr_rows(res.run_dir.path) == ref_lrs


def test_freeze_errors_name_the_prefix_before_anything_is_written(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    with pytest.raises(InvalidArgumentError, match=r"freeze: the prefix 'decoder' matches no parameter of TinyVAE; "
                                                   r"accepted: .*'log_sigma', 'enc.weight'"):
        Trainer(**KW, freeze=["dec", "decoder"], root_dir=str(root)).fit(_model(), _data())
    with pytest.raises(InvalidArgumentError, match=r"freeze=\['enc', 'dec', 'log_sigma'\] leaves TinyVAE no trainable"):
        Trainer(**KW, freeze=["enc", "dec", "log_sigma"], root_dir=str(root)).fit(_model(), _data())
    assert not root.exists()
    model = _model()
    assert all(p.requires_grad for p in model.parameters())
    for bad in ("dec", [""], [3], ["."]):
        with pytest.raises(InvalidArgumentError, match="freeze must be a list of parameter-name prefixes"):
            Trainer(freeze=bad)  # type: ignore[arg-type]
    # "enc" is a submodule's name: it does not match a parameter "encoder..." (matched at a dot, as lr_multipliers)
    seq = torch.nn.Sequential()
    seq.add_module("enc", torch.nn.Linear(1, 1))
    seq.add_module("encoder", torch.nn.Linear(1, 1))
    assert frozen_parameters(seq, ["enc"]) == ["enc.weight", "enc.bias"]
    assert frozen_parameters(seq, ["enc."]) == ["enc.weight", "enc.bias"]


# ------------------------------------------------------------------------------------------ schedules
def test_schedule_values_against_their_formulas() -> None:
    # exponential: lr * gamma**step, floored at min_lr
    s = LRSchedule("exponential", 2.0, gamma=0.5, min_lr=0.1)
    assert [s.lr(k, 0) for k in (0, 1, 2, 3, 4, 100)] == [2.0, 1.0, 0.5, 0.25, 0.125, 0.1]
    assert exponential_lr(1e-3, 1000, 0.999) == pytest.approx(1e-3 * 0.999**1000, rel=1e-12)
    # noam (normalized): lr * min(s / W, sqrt(W / s)), s = step + 1; peak lr at step W - 1
    n = LRSchedule("noam", 1e-3, warmup_steps=4)
    assert [n.lr(k, 0) for k in (0, 1, 2, 3)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3], rel=1e-12)
    assert n.lr(15, 0) == pytest.approx(5e-4, rel=1e-12) and n.lr(99, 0) == pytest.approx(2e-4, rel=1e-12)
    assert max(n.lr(k, 0) for k in range(1000)) == n.lr(3, 0) == 1e-3
    # Vaswani's form, d**-0.5 * min(s**-0.5, s * W**-1.5), times lr * sqrt(d * W)
    d, w = 512, 4000
    for k in (0, 1, 100, 3998, 3999, 4000, 10**5):
        vaswani = d**-0.5 * min((k + 1) ** -0.5, (k + 1) * w**-1.5)
        assert noam_lr(1.0, k, w) == pytest.approx(vaswani * math.sqrt(d * w), rel=1e-12)
    # the warm-up multiplies every other schedule by min(1, (step + 1) / W)
    assert [warmup_factor(k, 5) for k in (0, 1, 4, 5, 50)] == [0.2, 0.4, 1.0, 1.0, 1.0]
    c = LRSchedule("cosine", 1.0, total_steps=10, min_lr=0.1, warmup_steps=4)
    assert [c.lr(k, 0) for k in (0, 1, 3, 5)] == pytest.approx(
        [0.25 * 1.0, 0.5 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.1))), 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.3)),
         0.55], rel=1e-12)
    assert LRSchedule("constant", 3.0, warmup_steps=3).lr(1, 0) == pytest.approx(2.0, rel=1e-12)
    i = LRSchedule("iwae", 1.0, warmup_steps=2)
    assert (i.lr(0, 0), i.lr(5, 1)) == (0.5, 10 ** (-1 / 7))
    # the state holds the warm-up and the factor, and a resumed schedule continues the same curve
    state = s.state_dict()
    assert (state["gamma"], state["warmup_steps"]) == (0.5, 0)
    again = LRSchedule("exponential", 2.0, gamma=0.5, min_lr=0.1)
    again.load_state_dict(state)
    assert [again.lr(k, 0) for k in range(8)] == [s.lr(k, 0) for k in range(8)]
    with pytest.raises(ValueError, match="warmup_steps must be >= 1 for the noam schedule"):
        LRSchedule("noam", 1.0)
    with pytest.raises(ValueError, match=r"needs lr_gamma in \(0, 1\]"):
        LRSchedule("exponential", 1.0)


def test_trainer_noam_curve_and_its_resume(tmp_path: Path) -> None:
    kw = dict(KW, lr=2e-3, lr_schedule="noam", warmup_steps=6, checkpoint_every_steps=5)
    res = Trainer(**kw, root_dir=str(tmp_path)).fit(_model(), _data())
    lrs = _lr_rows(res.run_dir.path)
    assert lrs == pytest.approx({s: 2e-3 * min(s / 6, math.sqrt(6 / s)) for s in range(1, 21)}, rel=1e-12)
    assert lrs[6] == 2e-3 and lrs[1] == pytest.approx(2e-3 / 6, rel=1e-12) and lrs[20] < lrs[10] < lrs[6]
    # resumed from step 5 (inside the warm-up): the same rates after it
    resumed = Trainer(**kw, root_dir=str(tmp_path / "unused")).fit(_model(), _data(),
                                                                    resume=res.run_dir.checkpoints / "step-5.ckpt")
    assert resumed.global_step == 20 and _lr_rows(resumed.run_dir.path) == lrs


def test_new_arguments_are_checked() -> None:
    cases = [
        (dict(warmup_steps=-1), r"warmup_steps must be an int >= 0, got -1"),
        (dict(warmup_steps=2.5), r"warmup_steps must be an int >= 0, got 2.5"),
        (dict(lr_schedule="noam"), r"warmup_steps must be an int >= 1 with lr_schedule='noam'"),
        (dict(lr_schedule="exponential"), r"lr_gamma must be a float in \(0, 1\] with lr_schedule='exponential'"),
        (dict(lr_schedule="exponential", lr_gamma=1.5), r"lr_gamma must be a float in \(0, 1\].*got 1.5"),
        (dict(lr_schedule="exponential", lr_gamma=0.0), r"lr_gamma must be a finite number > 0.0, got 0.0"),
        (dict(lr_schedule="cosine", lr_gamma=0.9), r"lr_gamma is read only by lr_schedule='exponential'"),
        (dict(lr_schedule="step"), r"lr_schedule must be one of .*'exponential', 'noam'"),
        (dict(optimizer="sgd"), r"optimizer must be one of .*'adamax', 'radam'"),
        (dict(lr_schedule="exponential", lr_gamma=0.9, lr=1e-3, min_lr=1e-2),
         r"min_lr=0.01 is above lr=0.001: the floor of the 'exponential' schedule must be <= lr"),
        (dict(lr_schedule="cosine", lr=1e-3, min_lr=2e-3), r"min_lr=0.002 is above lr=0.001"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InvalidArgumentError, match=message):
            Trainer(**kwargs)  # type: ignore[arg-type]
    assert Trainer(lr_schedule="exponential", lr_gamma=1).lr_gamma == 1.0
    assert Trainer(lr=1e-3, min_lr=1e-2).min_lr == 1e-2  # a constant rate has no floor to check


# ------------------------------------------------------------------------------------------ optimizers
_TORCH = {"adamax": torch.optim.Adamax, "radam": torch.optim.RAdam}


def _linear_step(name: str, loss_value: float) -> tuple[torch.nn.Linear, torch.optim.Optimizer, TrainStep]:
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    opt = make_optimizer(name, lin.parameters(), lr=0.1, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.1)
    x = torch.linspace(-1.0, 2.0, 12).reshape(4, 3)

    def forward(batch: Any, step: int) -> Any:
        loss = (lin(batch) ** 2).sum() * loss_value
        return loss, {"loss": loss.detach()}

    step = TrainStep(forward, list(lin.parameters()), opt, ema=EMA(lin, 0.5), ema_module=lin)
    for k in range(2):
        step(x, k)
    return lin, opt, step


@pytest.mark.parametrize("name", ["adamax", "radam"])
def test_adamax_and_radam_steps_equal_torchs_own(name: str) -> None:
    lin, opt, step = _linear_step(name, 1.0)
    assert type(opt) is _TORCH[name] and not step.masked  # no fused kernel: the host check
    torch.manual_seed(0)
    ref = torch.nn.Linear(3, 2)
    ref_opt = _TORCH[name](ref.parameters(), lr=0.1, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.1)
    x = torch.linspace(-1.0, 2.0, 12).reshape(4, 3)
    for _ in range(2):
        ref_opt.zero_grad()
        (ref(x) ** 2).sum().backward()
        ref_opt.step()
    for a, b in zip(lin.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    torch.manual_seed(0)
    start = torch.nn.Linear(3, 2)
    assert not torch.equal(start.weight, lin.weight)  # it moved


@pytest.mark.parametrize("name", ["adamax", "radam"])
def test_a_non_finite_step_with_adamax_or_radam_changes_nothing(name: str) -> None:
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in torch.nn.Linear(3, 2).state_dict().items()}
    lin, opt, step = _linear_step(name, math.nan)
    assert all(torch.equal(before[k], v) for k, v in lin.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in step.ema.shadow.items())  # type: ignore[union-attr]
    assert opt.state == {}  # never stepped: no moments, no step count
    window = step.meter.read()  # type: ignore[union-attr]
    assert (window["steps"], window["skipped"], window["max_consecutive_skips"]) == (2, 2, 2)


@pytest.mark.parametrize("name", ["adamax", "radam"])
def test_the_trainer_builds_adamax_and_radam_with_its_arguments(name: str, tmp_path: Path) -> None:
    res = Trainer(**{**KW, "max_steps": 3}, optimizer=name, adam_eps=1e-4, adam_betas=(0.5, 0.75), weight_decay=0.01,
                  root_dir=str(tmp_path)).fit(_model(), _data())
    (group,) = load_checkpoint(res.run_dir.last_checkpoint)["optimizer"]["param_groups"]
    assert (tuple(group["betas"]), group["eps"], group["weight_decay"]) == ((0.5, 0.75), 1e-4, 0.01)
    assert set(group) >= set(_TORCH[name]([torch.nn.Parameter(torch.zeros(1))]).param_groups[0]) - {"params"}
    state = next(iter(load_checkpoint(res.run_dir.last_checkpoint)["optimizer"]["state"].values()))
    assert set(state) == {"adamax": {"step", "exp_avg", "exp_inf"}, "radam": {"step", "exp_avg", "exp_avg_sq"}}[name]
    assert "fused" not in group and "decoupled_weight_decay" in group if name == "radam" else "fused" not in group
    assert res.skipped_steps == 0


# ------------------------------------------------------------------------------------------ from YAML
def _config(root: Path, **trainer: Any) -> dict[str, Any]:
    return {"model": {"class_path": "vaekit.models.mlp_vae",
                      "init_args": {"data_shape": [64], "latent_features": 2, "hidden": [8]}},
            "data": {"class_path": "vaekit.data.Digits", "init_args": {"binarize": "threshold", "flatten": True}},
            "trainer": {"max_steps": 4, "batch_size": 64, "log_every_steps": 1, "progress_bar": False,
                        "lr": 1e-2, "root_dir": str(root), **trainer}}


@pytest.mark.parametrize("trainer", [
    {"lr_schedule": "noam", "warmup_steps": 3, "optimizer": "radam"},
    {"lr_schedule": "exponential", "lr_gamma": 0.5, "optimizer": "adamax"},
    {"lr_schedule": "cosine", "warmup_steps": 2, "freeze": ["decoder"]},
], ids=["noam-radam", "exponential-adamax", "freeze-warmup"])
def test_every_new_schedule_and_optimizer_trains_from_a_yaml_config(tmp_path: Path, trainer: dict[str, Any]) -> None:
    import yaml

    from vaekit.config import fit_config

    text = yaml.safe_dump(_config(tmp_path / "runs", **trainer))  # through YAML, as a config file is read
    res = fit_config(yaml.safe_load(text))
    assert res.global_step == 4 and not res.failed
    recorded = res.run_dir.read_config()["trainer"]
    assert {k: recorded[k] for k in trainer} == trainer
    ckpt = load_checkpoint(res.run_dir.last_checkpoint)
    opt_name = trainer.get("optimizer", "adam")
    assert ckpt["scheduler"]["kind"] == trainer["lr_schedule"]
    lrs = _lr_rows(res.run_dir.path)
    if trainer["lr_schedule"] == "noam":
        assert lrs == pytest.approx({s: 1e-2 * min(s / 3, math.sqrt(3 / s)) for s in range(1, 5)}, rel=1e-12)
    if trainer["lr_schedule"] == "exponential":
        assert lrs == pytest.approx({s: 1e-2 * 0.5 ** (s - 1) for s in range(1, 5)}, rel=1e-12)
    n_opt = sum(len(g["params"]) for g in ckpt["optimizer"]["param_groups"])
    assert n_opt == (4 if "freeze" in trainer else 8)  # mlp_vae has 8 tensors, 4 of them in the decoder
    state = next(iter(ckpt["optimizer"]["state"].values()))
    assert ("exp_inf" in state) == (opt_name == "adamax")  # Adamax keeps an infinity norm, Adam and RAdam do not
    assert ("fused" in ckpt["optimizer"]["param_groups"][0]) == (opt_name == "adam")  # only Adam has a fused kernel
    if "freeze" in trainer:  # vaekit fit --resume reads the same freeze from config.yaml
        first = {k: v.clone() for k, v in ckpt["model"].items()}
        again = fit_config(yaml.safe_load(yaml.safe_dump(_config(tmp_path / "runs", **{**trainer, "max_steps": 8}))),
                           resume=str(res.run_dir.path))
        assert again.global_step == 8
        last = load_checkpoint(again.run_dir.last_checkpoint)["model"]
        assert all(torch.equal(last[k], first[k]) == k.startswith("decoder.") for k in first), sorted(first)


@pytest.mark.parametrize("first, second, key", [
    ({"freeze": ["enc.weight"]}, {"freeze": ["dec.weight"]}, "freeze"),
    ({}, {"optimizer": "radam"}, "optimizer"),
    ({}, {"optimizer": "adamax"}, "optimizer"),
    ({}, {"warmup_steps": 100}, "warmup_steps"),
    ({"lr_multipliers": {"enc": 2.0}}, {"lr_multipliers": {"enc": 3.0}}, "lr_multipliers"),
], ids=["freeze", "radam", "adamax", "warmup", "lr_multipliers"])
def test_resume_refuses_another_optimizer_freeze_or_schedule_before_anything_is_written(
        tmp_path: Path, first: dict[str, Any], second: dict[str, Any], key: str) -> None:
    """Optimizer state is matched to parameters by position: another frozen set or optimizer would put one
    tensor's moments on another (torch's fused kernel then writes out of bounds). Refused, naming the argument."""
    res = Trainer(**{**KW, "max_steps": 4}, **first, root_dir=str(tmp_path)).fit(_model(), _data())
    files = {p: p.read_bytes() for p in Path(res.run_dir.path).rglob("*") if p.is_file()}
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InvalidArgumentError, match=rf"^{key}=.* differs from the checkpoint's {key}="):
        Trainer(**{**KW, "max_steps": 8}, **second, root_dir=str(tmp_path)).fit(model, _data(), resume=res.run_dir.path)
    assert {p: p.read_bytes() for p in Path(res.run_dir.path).rglob("*") if p.is_file()} == files
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the model is not touched either
    again = Trainer(**{**KW, "max_steps": 8}, **first, root_dir=str(tmp_path)).fit(_model(), _data(),
                                                                                  resume=res.run_dir.path)
    assert again.global_step == 8 and not again.failed  # the run's own settings still resume it
