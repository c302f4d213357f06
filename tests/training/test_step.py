"""The one training step: masked updates decided on the device, no host synchronisation, compiled == eager."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from training_helpers import HostReads

from vaekit._checks import InvalidArgumentError
from vaekit.data import ArrayData
from vaekit.models import mlp_vae
from vaekit.training import Trainer, read_metrics
from vaekit.training.ema import EMA
from vaekit.training.step import StepMeter, TrainStep

def _x(n: int = 256, d: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, d), 0.3), generator=g)


def _data() -> ArrayData:
    return ArrayData(_x(), val_fraction=0.0)


def _model(d: int = 12) -> torch.nn.Module:
    torch.manual_seed(0)
    return mlp_vae([d], latent_features=3, hidden=[16])


class _CountingStep:
    """Wraps TrainStep.__call__ to count the host reads of every step."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.per_step: list[list[str]] = []
        original = TrainStep.__call__

        def counted(step: TrainStep, *args: Any, **kwargs: Any) -> Any:
            with HostReads() as mode:
                out = original(step, *args, **kwargs)
            self.per_step.append(mode.reads)
            return out

        monkeypatch.setattr(TrainStep, "__call__", counted)


@pytest.mark.parametrize("options", [{}, {"grad_clip": 1.0}, {"skip_threshold": 1e3, "ema_decay": 0.9},
                                     {"lr_schedule": "cosine", "grad_clip": 0.5, "ema_decay": 0.5}])
def test_a_training_step_never_reads_the_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                options: dict[str, Any]) -> None:
    counter = _CountingStep(monkeypatch)
    res = Trainer(max_steps=24, batch_size=32, log_every_steps=8, val_every_epochs=None, progress_bar=False,
                  root_dir=str(tmp_path), **options).fit(_model(), _data())
    assert res.global_step == 24 and len(counter.per_step) == 24
    assert all(reads == [] for reads in counter.per_step), counter.per_step
    # and the policy layer reads the meter once per logged row, not once per step
    rows = [r for r in read_metrics(res.run_dir.metrics) if r["split"] == "train" and r["name"] == "loss"]
    assert [r["step"] for r in rows] == [8, 16, 24]


def test_the_host_reads_per_step_are_what_the_counter_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counter itself can fail: a step that reads its loss (as the old engine did) is seen."""
    counter = _CountingStep(monkeypatch)
    model = _model()
    opt = torch.optim.Adam(model.parameters(), fused=True)
    from vaekit.objectives import ELBO

    obj = ELBO()

    def reading(x: Any, step: int) -> Any:
        loss, metrics = obj(model, x, step)
        math.isfinite(float(loss.detach()))  # a host read
        return loss, metrics

    TrainStep(reading, list(model.parameters()), opt)(_x()[:8], 0)
    assert counter.per_step == [["__float__"]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_training_step_does_not_synchronise_on_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = TrainStep.__call__

    def strict(step: TrainStep, *args: Any, **kwargs: Any) -> Any:
        torch.cuda.set_sync_debug_mode("error")
        try:
            return original(step, *args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(TrainStep, "__call__", strict)
    res = Trainer(max_steps=20, batch_size=32, log_every_steps=10, val_every_epochs=None, progress_bar=False,
                  accelerator="cuda", devices=1, root_dir=str(tmp_path)).fit(_model(), _data())
    assert res.global_step == 20


def _adam_step(loss_value: float, *, fused: bool = True, ema: bool = False) -> tuple[torch.nn.Linear, Any, Any]:
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1)
    opt = (torch.optim.Adam(lin.parameters(), lr=0.1, fused=True) if fused
           else torch.optim.SGD(lin.parameters(), lr=0.1))
    average = EMA(lin, 0.5) if ema else None
    x = torch.ones(4, 3)

    def forward(batch: Any, step: int) -> Any:
        loss = lin(batch).sum() * loss_value
        return loss, {"loss": loss.detach()}

    step = TrainStep(forward, list(lin.parameters()), opt, ema=average, ema_module=lin if ema else None)
    step(x, 0)
    return lin, opt, step


@pytest.mark.parametrize("fused", [True, False])
def test_a_non_finite_step_changes_nothing(fused: bool) -> None:
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in torch.nn.Linear(3, 1).state_dict().items()}
    lin, opt, step = _adam_step(math.nan, fused=fused, ema=True)
    assert all(torch.equal(before[k], v) for k, v in lin.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in step.ema.shadow.items())  # type: ignore[union-attr]
    if fused:  # Adam's step count is not advanced by a masked step
        assert all(float(s["step"]) == 0 for s in opt.state.values())
    window = step.meter.read()  # type: ignore[union-attr]
    assert (window["skipped"], window["metrics"], window["max_consecutive_skips"]) == (1, {}, 1)
    assert math.isnan(window["last_skip"])
    lin, opt, step = _adam_step(1.0, fused=fused, ema=True)
    assert not torch.equal(before["weight"], lin.weight.detach())
    assert step.meter.read()["skipped"] == 0  # type: ignore[union-attr]


def test_an_infinite_gradient_with_a_finite_loss_is_skipped() -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([p], lr=0.1, fused=True)

    def forward(batch: Any, step: int) -> Any:
        loss = torch.where(p > 1, p.log(), p).sum()  # finite, but log's gradient at 0 is 0 / 0 = nan
        return loss, {}

    step = TrainStep(forward, [p], opt)
    step(None, 0)
    assert torch.equal(p.detach(), torch.zeros(2))
    assert step.meter.read()["skipped"] == 1  # type: ignore[union-attr]


def test_the_meter_keeps_the_run_of_skips_across_windows() -> None:
    m = StepMeter(["loss"], torch.device("cpu"))
    bad, good = torch.tensor(1.0), torch.tensor(0.0)
    for flag in (good, bad, bad):
        m.add(m.row([torch.tensor(1.0)]), flag)
    first = m.read()
    m.add(m.row([3.0]), bad)
    second = m.read()
    m.add(m.row([torch.tensor(5.0)]), good)
    third = m.read()
    assert (first["consecutive_skips"], first["max_consecutive_skips"], first["metrics"]) == (2, 2, {"loss": 1.0})
    assert (second["consecutive_skips"], second["max_consecutive_skips"], second["metrics"]) == (3, 3, {})
    assert (third["consecutive_skips"], third["max_consecutive_skips"], third["metrics"]) == (0, 3, {"loss": 5.0})
    state = m.state_dict()
    other = StepMeter(["loss"], torch.device("cpu"))
    other.load_state_dict(state)
    assert other.peek() == m.peek()


def _fit(root: Path, compile: bool | str, max_steps: int, resume: Path | None = None) -> Any:
    trainer = Trainer(max_steps=max_steps, batch_size=32, log_every_steps=1, val_every_epochs=None, lr=3e-3,
                      ema_decay=0.9, grad_clip=50.0, lr_schedule="cosine", progress_bar=False, root_dir=str(root),
                      compile=compile, checkpoint_every_steps=25, seed=3)
    model = _model()
    res = trainer.fit(model, _data(), resume=resume)
    losses = [r["value"] for r in read_metrics(res.run_dir.metrics) if r["split"] == "train" and r["name"] == "loss"]
    return res, model, torch.tensor(losses)


def test_the_compiled_step_follows_the_eager_trajectory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """50 steps from the same seed, eager and ``compile=True`` (random draws from torch's generator in both):
    every step's loss and the final weights agree to float32 rounding; resuming a compiled run from a
    checkpoint at step 25 continues the same trajectory. The compiled steps after the first are the one-graph
    step where this torch can trace ``autograd.grad``."""
    import torch._inductor.config as inductor

    from vaekit.training import step as step_module

    fused: list[bool] = []
    original = step_module.TrainStep._fused_step
    monkeypatch.setattr(step_module.TrainStep, "_fused_step",  # (counts the steps the one graph took)
                        lambda self, *a, **k: (lambda out: fused.append(out is not None) or out)(
                            original(self, *a, **k)))
    torch._dynamo.reset()
    with inductor.patch(fallback_random=True):
        _, eager_model, eager = _fit(tmp_path / "eager", False, 50)
        res, compiled_model, compiled = _fit(tmp_path / "compiled", True, 50)
        assert sum(fused) == (49 if step_module._TRACES_GRAD else 0)
        assert len(eager) == len(compiled) == 50
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
        for (name, a), b in zip(eager_model.state_dict().items(), compiled_model.state_dict().values()):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
        # an unrelated change would be seen: one more step moves the weights by far more than the tolerance
        _, longer, _ = _fit(tmp_path / "longer", False, 51)
        assert max(float((a - b).abs().max()) for a, b in zip(longer.state_dict().values(),
                                                               eager_model.state_dict().values())) > 1e-4
        # resume the compiled run from its step-25 checkpoint: the same 25 last steps, bit for bit (the first
        # step after the resume is compiled too, as the uninterrupted run's 26th was: an eager one differed by
        # float32 rounding)
        ckpt = res.run_dir.checkpoints / "step-25.ckpt"
        fused.clear()
        resumed_res, resumed_model, resumed = _fit(tmp_path / "unused", True, 50, resume=ckpt)
        assert resumed_res.global_step == 50 and sum(fused) == (25 if step_module._TRACES_GRAD else 0)
        assert torch.equal(resumed[-25:], compiled[-25:])
        for a, b in zip(compiled_model.state_dict().values(), resumed_model.state_dict().values()):
            assert torch.equal(b, a)
    torch._dynamo.reset()


@pytest.mark.parametrize("options", [{"ema": True, "grad_clip": 1.0, "skip_threshold": 1e3}, {"ema": True}])
def test_no_operator_reads_a_scalar_back_in_a_step(options: dict[str, Any]) -> None:
    """Below Python: no ATen call copies a scalar to the host (``_local_scalar_dense``: ``.item()``, or a 0-dim
    tensor passed where an operator takes a number, as foreach lerp does with its weight)."""
    model = _model()
    opt = torch.optim.Adam(model.parameters(), fused=True)
    from vaekit.objectives import ELBO

    obj = ELBO()
    ema = EMA(model, 0.9) if options.pop("ema") else None
    step = TrainStep(lambda x, i: obj(model, x, i), list(model.parameters()), opt, ema=ema,
                     ema_module=model if ema else None, **options)
    x = _x()[:32]
    step(x, 0)
    with torch.profiler.profile() as prof:
        for i in range(1, 4):
            step(x, i)
    assert _scalar_reads(prof) == []
    with torch.profiler.profile() as seen:  # the check can fail: a read is seen
        float(step(x, 4))
    assert _scalar_reads(seen) == ["aten::_local_scalar_dense"]


def _scalar_reads(prof: Any) -> list[str]:
    """``_local_scalar_dense`` calls, except those inside fused Adam's CPU kernel (which reads its step counters
    from host memory: there is no device to wait for; the CUDA kernel reads them on the device)."""
    out = []
    for e in prof.events():
        if e.name == "aten::_local_scalar_dense":
            parent, inside = e.cpu_parent, False
            while parent is not None:
                inside = inside or parent.name == "aten::_fused_adam_"
                parent = parent.cpu_parent
            if not inside:
                out.append(e.name)
    return out


def test_a_run_that_ends_between_reads_still_honours_the_skip_bound(tmp_path: Path) -> None:
    from training_helpers import NaNAt, TinyVAE, make_data

    torch.manual_seed(0)
    with pytest.warns(RuntimeWarning, match="too_many_skips"):
        res = Trainer(max_steps=10, batch_size=16, log_every_steps=50, val_every_epochs=None, max_consecutive_skips=3,
                      progress_bar=False, root_dir=str(tmp_path)).fit(TinyVAE(), make_data(n=64), NaNAt(forever_from=2))
    assert (res.stop_reason, res.global_step, res.skipped_steps) == ("too_many_skips", 10, 8)


def test_64_bit_training_runs_in_float64(tmp_path: Path) -> None:
    seen: list[torch.dtype] = []
    from vaekit.objectives import ELBO

    class Float64Check(ELBO):
        def __call__(self, model: Any, batch: Any, step: int = 0) -> Any:
            seen.append(torch.randn(1).dtype)  # the default dtype inside the objective
            return super().__call__(model, batch, step)

    res = Trainer(max_steps=3, batch_size=32, precision="64-true", val_every_epochs=None, log_every_steps=1,
                  progress_bar=False, root_dir=str(tmp_path)).fit(_model(), _data(), Float64Check())
    assert res.global_step == 3 and set(seen) == {torch.float64}


def test_the_meter_window_of_another_objective_starts_again() -> None:
    m = StepMeter(["a", "loss"], torch.device("cpu"))
    m.add(m.row([1.0, 2.0]), torch.tensor(1.0))
    other = StepMeter(["b", "loss"], torch.device("cpu"))
    other.load_state_dict(m.state_dict())  # same count, other names: the sums are not reassigned
    w = other.read()
    assert (w["steps"], w["metrics"], w["consecutive_skips"]) == (0, {}, 1)


def test_lazy_terms_survive_a_wrapper_that_rebuilds_collections() -> None:
    """Fabric's output conversion (DDP, bf16/64-bit precision) rebuilds every Mapping from its values."""
    from lightning_utilities.core.apply_func import apply_to_collection

    from vaekit.models.base import LazyTerms

    calls: list[int] = []
    lazy = LazyTerms({"z": lambda: calls.append(1) or torch.tensor(2.0)})
    rebuilt = apply_to_collection(lazy, torch.Tensor, lambda t: t * 2)
    assert isinstance(rebuilt, LazyTerms) and float(rebuilt["z"]) == 4.0 and calls == [1]


def test_the_meter_folds_its_buffer_without_reading_a_scalar(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eager steps over more than BUFFER_ROWS rows: the fold (here every 2 steps) picks the last skipped loss on
    the device; a Python index with a 0-dim tensor would read it back once per fold."""
    from vaekit.objectives import ELBO

    monkeypatch.setattr(StepMeter, "BUFFER_ROWS", 2)
    model = _model()
    obj = ELBO()
    step = TrainStep(lambda x, i: obj(model, x, i), list(model.parameters()),
                     torch.optim.Adam(model.parameters(), fused=True))
    x = _x()[:32]
    step(x, 0)
    with torch.profiler.profile() as prof:
        for i in range(1, 6):
            step(x, i)
    assert sum(e.name == "StepMeter._fold" for e in prof.events()) == 3  # after steps 1, 3 and 5
    assert _scalar_reads(prof) == []
    assert step.meter is not None and step.meter.read()["steps"] == 6


def test_the_meter_folds_where_the_straight_run_does_after_a_resume(tmp_path: Path) -> None:
    """A run stopped 30 steps into a 50-step window and resumed logs the same float32 means, bit for bit, as the
    straight run: the checkpoint keeps the buffered rows instead of folding them early."""
    from training_helpers import TinyVAE, make_data, same_weights, weights

    def fit(steps: int, name: str, resume: Any = None) -> Any:
        torch.manual_seed(0)
        model = TinyVAE()
        res = Trainer(max_steps=steps, batch_size=4, lr=5e-3, log_every_steps=50, progress_bar=False, seed=3,
                      root_dir=str(tmp_path / name)).fit(model, make_data(n=400, n_val=10, noise=0.05),
                                                         resume=resume)
        rows = [(r["step"], r["name"], r["value"]) for r in read_metrics(res.run_dir.metrics)
                if r["name"] != "samples_per_s"]
        return rows, weights(model), res.run_dir.path

    straight, w_straight, _ = fit(100, "a")
    _, _, stopped = fit(30, "b")
    resumed, w_resumed, _ = fit(100, "c", resume=stopped)
    assert same_weights(w_straight, w_resumed)
    assert [r for r in straight if r[0] == 50 and r[1] == "kl/z"]  # the window that the stop fell into
    assert resumed == straight


def test_the_cpp_wrapper_is_on_by_default_on_a_cpu_in_the_default_mode_with_a_tested_torch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from vaekit.training.step import CPP_WRAPPER_ENV, _compile_options

    monkeypatch.setattr(torch, "__version__", "2.13.0+cpu")
    for default in (None, "", "1", " 1 "):
        if default is None:
            monkeypatch.delenv(CPP_WRAPPER_ENV, raising=False)
        else:
            monkeypatch.setenv(CPP_WRAPPER_ENV, default)
        assert _compile_options("default", "cpu", True) == {"options": {"cpp_wrapper": True}}, default
    assert _compile_options("default", "cpu", True, size_asserts=False) == {
        "options": {"cpp_wrapper": True, "size_asserts": False}}
    # only the forward and its backward (cpp=True) get it, only on a CPU, only in the default mode
    assert _compile_options("default", "cpu", False, size_asserts=False) == {"options": {"size_asserts": False}}
    assert _compile_options("default", "cpu", False) == {}
    assert _compile_options("default", "cuda", True) == {}
    for mode in ("reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
        assert _compile_options(mode, "cpu", True) == {"mode": mode}
    monkeypatch.setenv(CPP_WRAPPER_ENV, "0")  # turned off
    assert _compile_options("default", "cpu", True) == {}
    assert _compile_options("default", "cpu", True, size_asserts=False) == {"options": {"size_asserts": False}}
    monkeypatch.setenv(CPP_WRAPPER_ENV, "1")
    for older in ("2.12.1", "2.4.0", "1.13.1"):
        monkeypatch.setattr(torch, "__version__", older)
        assert _compile_options("default", "cpu", True) == {}, older
    monkeypatch.setattr(torch, "__version__", "2.14.0")
    assert _compile_options("default", "cpu", True) == {"options": {"cpp_wrapper": True}}


@pytest.mark.parametrize("value", ["yes", "true", "2", "off"])
def test_a_bad_cpp_wrapper_setting_is_refused_before_a_compiled_fit_writes_anything(
        value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from vaekit.training.step import CPP_WRAPPER_ENV

    monkeypatch.setenv(CPP_WRAPPER_ENV, value)
    with pytest.raises(InvalidArgumentError, match=rf"{CPP_WRAPPER_ENV} must be 0 .* or 1 .*, got '{value}'"):
        Trainer(compile=True, root_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []
    Trainer(compile=False, root_dir=str(tmp_path))  # not read by an eager trainer


def test_a_meter_state_saved_before_the_buffer_loads_with_an_empty_one() -> None:
    """A checkpoint of the previous main has no ``pending`` rows (it folded them before saving): its window loads
    as it was, and the rows buffered before a save come back with a resume."""
    m = StepMeter(["loss"], torch.device("cpu"))
    for value, bad in [(1.0, 0.0), (3.0, 0.0), (9.0, 1.0)]:
        m.record([torch.tensor(value)], None, torch.tensor(bad), torch.tensor(value))
    state = m.state_dict()
    assert state["pending"].shape == (3, 5) and float(state["sums"].sum()) == 0.0  # saved, not folded
    old = StepMeter(["loss"], torch.device("cpu"))
    old.load_state_dict({"sums": torch.tensor([4.0, 0.0, 0.0, 2.0]), "skips": torch.tensor([1.0, 1.0, 9.0]),
                         "steps": torch.tensor(3), "names": ["loss"]})
    restored = StepMeter(["loss"], torch.device("cpu"))
    restored.load_state_dict(state)
    want = {"metrics": {"loss": 2.0}, "grad_norm": None, "steps": 3, "skipped": 1, "consecutive_skips": 1,
            "max_consecutive_skips": 1, "last_skip": 9.0}
    assert old.peek() == want and old._pending == 0
    assert restored.peek() == want and restored._pending == 3  # peek() leaves the buffer as it was
    assert old.read() == restored.read() == m.read() == want
