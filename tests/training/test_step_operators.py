"""What an eager step of the Cremer et al. MNIST VAE runs below Python, and that the shorter paths compute what
the longer ones did: the buffered meter against its step-by-step form, the distributions built without
``broadcast_all`` against torch's constructors, ``DiagonalNormal.rsample`` against ``Normal.rsample``."""

from __future__ import annotations

import collections
import math
from typing import Any

import pytest
import torch
from torch.distributions import Bernoulli as TorchBernoulli
from torch.distributions import Independent, Normal

from vaekit.distributions import Bernoulli, DiagonalNormal, StandardNormal
from vaekit.models import mlp_vae
from vaekit.objectives import ELBO
from vaekit.training.batches import IndexBatches
from vaekit.training.step import StepMeter, TrainStep, adam


def _windows(meter: StepMeter, steps: list[tuple[float, float, float | None]], peek_at: set[int],
             buffered: bool) -> list[dict]:
    """Feed ``(metric, bad, norm)`` steps to ``meter`` (by record() or add()), peeking after the steps in
    ``peek_at`` and reading a window every 7 steps; returns every peek and read."""
    out = []
    for i, (value, bad, norm) in enumerate(steps):
        loss = torch.tensor(value)
        flag = torch.tensor(bad)
        grad_norm = None if norm is None else torch.tensor(norm)
        if buffered:
            meter.record([loss], grad_norm, flag, loss)
        else:
            meter.add(meter.row([loss], grad_norm), flag, loss)
        if i in peek_at:
            out.append(meter.peek())
        if i % 7 == 6:
            out.append(meter.read())
    out.append(meter.read())
    return out


@pytest.mark.parametrize("rows", [3, 64])
def test_the_buffered_meter_gives_the_windows_of_the_step_by_step_meter(monkeypatch: pytest.MonkeyPatch,
                                                                       rows: int) -> None:
    """Runs of skipped steps across folds and windows (a run carried into a window, one longer than the buffer),
    NaN losses of skipped steps, norms on some steps: the same counts, runs and last skipped loss, the same means
    to float32 rounding, whether the buffer folds every 3 rows or only at reads."""
    monkeypatch.setattr(StepMeter, "BUFFER_ROWS", rows)
    g = torch.Generator().manual_seed(0)
    bad = [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0,
           1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    steps = []
    for i, b in enumerate(bad):
        value = math.nan if b and i % 2 else float(torch.randn((), generator=g)) + (100.0 if b else 0.0)
        steps.append((value, b, 0.5 + i if i % 3 == 0 else None))
    peek_at = {1, 4, 8, 12, 20}
    got = _windows(StepMeter(["loss"], torch.device("cpu")), steps, peek_at, buffered=True)
    want = _windows(StepMeter(["loss"], torch.device("cpu")), steps, peek_at, buffered=False)
    assert len(got) == len(want) == 10
    for a, b in zip(got, want):
        assert {k: a[k] for k in ("steps", "skipped", "consecutive_skips", "max_consecutive_skips")} == \
            {k: b[k] for k in ("steps", "skipped", "consecutive_skips", "max_consecutive_skips")}
        assert (a["last_skip"] is None) == (b["last_skip"] is None)
        if a["last_skip"] is not None:
            assert a["last_skip"] == b["last_skip"] or (math.isnan(a["last_skip"]) and math.isnan(b["last_skip"]))
        assert a["metrics"].keys() == b["metrics"].keys()
        for k in a["metrics"]:
            assert a["metrics"][k] == pytest.approx(b["metrics"][k], rel=1e-6)
        assert (a["grad_norm"] is None) == (b["grad_norm"] is None)
        if a["grad_norm"] is not None:
            assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-6)
    # the longest run (5 steps) spans a fold of the 3-row buffer; a window of 7 steps started inside a run
    assert max(w["max_consecutive_skips"] for w in got) == 5


def test_a_checkpoint_of_the_buffered_meter_holds_its_pending_rows() -> None:
    """state_dict() folds the rows not yet added: a meter restored from it reads the same window."""
    meter = StepMeter(["loss", "rec"], torch.device("cpu"))
    for value, bad in [(1.0, 0.0), (2.0, 1.0), (4.0, 0.0), (8.0, 1.0)]:
        meter.record([torch.tensor(value), torch.tensor(-value)], None, torch.tensor(bad), torch.tensor(value))
    restored = StepMeter(["loss", "rec"], torch.device("cpu"))
    restored.load_state_dict(meter.state_dict())
    window = restored.read()
    assert window["metrics"] == {"loss": 2.5, "rec": -2.5}
    assert (window["steps"], window["skipped"], window["consecutive_skips"], window["last_skip"]) == (4, 2, 1, 8.0)
    assert meter.read() == window


def test_distributions_built_without_broadcast_are_torchs() -> None:
    """The posterior's, the prior's and the likelihood's torch distributions: the same tensors, shapes, densities
    and draws as torch's constructors give; mismatched shapes still broadcast."""
    g = torch.Generator().manual_seed(1)
    loc, scale = torch.randn(4, 3, generator=g), torch.rand(4, 3, generator=g) + 0.1
    q = DiagonalNormal(loc, scale)
    ref = Independent(Normal(loc, scale), 1)
    assert q.loc is loc and q.scale is scale
    assert (q.batch_shape, q.event_shape) == (ref.batch_shape, ref.event_shape) == (torch.Size([4]), torch.Size([3]))
    z = torch.randn(2, 4, 3, generator=g)
    assert torch.equal(q.log_prob(z), ref.log_prob(z))
    for shape in [(), (5,)]:
        torch.manual_seed(3)
        mine = q.rsample(shape)
        torch.manual_seed(3)
        assert torch.equal(mine, ref.rsample(shape))  # Normal.rsample: empty().normal_() - the same numbers
    wide = DiagonalNormal(torch.zeros(3), torch.ones(4, 3))  # different shapes: torch's broadcasting
    assert wide.batch_shape == torch.Size([4]) and wide.loc.shape == (4, 3)
    p = StandardNormal(3)()
    assert torch.equal(p.log_prob(z), Independent(Normal(torch.zeros(3), torch.ones(3)), 1).log_prob(z))

    logits = torch.randn(4, 6, generator=g)
    x = torch.bernoulli(torch.full((4, 6), 0.4), generator=g)
    px = Bernoulli()(logits, 1)
    want = Independent(TorchBernoulli(logits=logits), 1)
    assert px.batch_shape == want.batch_shape and px.event_shape == want.event_shape
    assert torch.allclose(px.log_prob(x), want.log_prob(x), rtol=0, atol=1e-6)
    assert torch.equal(px.base_dist.probs, want.base_dist.probs) and torch.equal(px.mean, want.mean)



def test_a_diagonal_normal_with_another_factor_draws_from_it() -> None:
    """The one-operator draw is the Gaussian's: a subclass that sets another location-scale ``factor`` draws (and
    scores its draws) with that family."""
    from torch.distributions import Laplace

    class LaplaceFactor(DiagonalNormal):
        factor = Laplace

    g = torch.Generator().manual_seed(2)
    loc, scale = torch.randn(4, 3, generator=g), torch.rand(4, 3, generator=g) + 0.1
    q, ref = LaplaceFactor(loc, scale), Independent(Laplace(loc, scale), 1)
    for shape in [(), (5,)]:
        torch.manual_seed(3)
        mine = q.rsample(shape)
        torch.manual_seed(3)
        assert torch.equal(mine, ref.rsample(shape))
        torch.manual_seed(3)
        z, lp = q.rsample_and_log_prob(shape)
        assert torch.equal(z, mine) and torch.allclose(lp, ref.log_prob(z), rtol=1e-6, atol=1e-6)

#: the top-level operators of one fold of the meter's buffer (StepMeter._fold)
FOLD_OPS = 35


def _top_level_ops(fn, steps: int) -> collections.Counter:
    """ATen operators called from Python or the autograd engine (not inside another operator) per call."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    out: collections.Counter = collections.Counter()
    for e in prof.events():
        if e.name.startswith("aten::") and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")):
            out[("fold:" if _inside(e, "StepMeter._fold") else "") + e.name] += 1
    return out


def _inside(event: Any, name: str) -> bool:
    """Whether a profiler event runs inside a ``record_function(name)`` range."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == name:
            return True
        parent = parent.cpu_parent
    return False


def test_an_eager_step_of_the_cremer_vae_runs_no_operator_a_hand_written_loop_does_not() -> None:
    """The operators that the model, the ELBO, the batches and the meter used to add to every step
    (broadcast_all's, flatten and reshape that change nothing, a no-op .to() of the batch index, the draw in two
    operators, the meter's masked sums) are gone: 138 top-level operators a step (152 before), and the meter's
    fold of its 64 buffered rows adds 35 once per 64 steps (profiled over 64 steps: one fold)."""
    torch.manual_seed(0)
    model = mlp_vae([784])
    objective = ELBO()
    opt = adam(model.parameters(), lr=1e-3, eps=1e-4)
    step = TrainStep(lambda x, s: objective(model, x, s), list(model.parameters()), opt)
    data = torch.bernoulli(torch.full(((StepMeter.BUFFER_ROWS + 2) * 100, 784), 0.2))  # one epoch
    batches = IndexBatches(data, 100, seed=0)
    it = iter(batches.epoch(0))
    for i in range(2):  # Adam's state exists
        step(next(it), i)
    n = StepMeter.BUFFER_ROWS
    ops = _top_level_ops(lambda: step(next(it), 2), n)
    fold = {k: v for k, v in ops.items() if k.startswith("fold:")}
    per_step = {k: v / n for k, v in ops.items() if k not in fold}
    assert 0 < sum(fold.values()) <= FOLD_OPS, sorted(fold.items())  # one fold, its operators counted
    assert "fold:aten::_local_scalar_dense" not in fold and "fold:aten::item" not in fold
    for name in ("aten::broadcast_tensors", "aten::flatten", "aten::reshape", "aten::to", "aten::empty",
                 "aten::normal_", "aten::where", "aten::maximum", "aten::addcmul", "aten::gt"):
        assert name not in per_step, f"{name} runs {per_step.get(name)} times a step"
    assert per_step["aten::_fused_adam_"] == 1 and per_step["aten::randn"] == 1
    assert sum(per_step.values()) <= 138, sorted(per_step.items())


def test_a_tensor_learning_rate_is_written_only_when_it_moves() -> None:
    """A compiled step's rate lives in a tensor: apply() writes it when the schedule moves it or the tensor is a
    new one (a restored optimizer), and runs no operator when it stays (the constant schedule, every step)."""
    from vaekit.training.schedules import LRSchedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    opt.param_groups[0]["lr"] = torch.tensor(0.1)
    constant = LRSchedule("constant", 0.5)
    assert sum(_top_level_ops(lambda: constant.apply(opt, 0, 0), 1).values()) == 1  # the first write
    assert float(opt.param_groups[0]["lr"]) == 0.5
    assert sum(_top_level_ops(lambda: constant.apply(opt, 1, 0), 5).values()) == 0
    opt.param_groups[0]["lr"] = torch.tensor(0.1)  # a new tensor (e.g. after load_state_dict): written again
    constant.apply(opt, 2, 0)
    assert float(opt.param_groups[0]["lr"]) == 0.5
    opt.param_groups[0]["lr_mult"] = 0.1
    constant.apply(opt, 3, 0)
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(0.05)
    cosine = LRSchedule("cosine", 1.0, total_steps=10)
    rates = []
    for step in range(4):
        cosine.apply(opt, step, 0)
        rates.append(float(opt.param_groups[0]["lr"]))
    assert rates == pytest.approx([0.1 * cosine.lr(s, 0) for s in range(4)]) and len(set(rates)) == 4


def test_read_adds_the_buffered_rows_on_the_host_as_the_device_fold_does() -> None:
    """read() folds the buffer on the host from one transfer: the same counts, run, longest run and last skipped
    loss as the device fold, means to float32 rounding, the meter's state after it as after the device fold, and
    ten operators (views and the transfer's included; the device fold and read took 41)."""
    steps = [(1.5, 0.0, 2.0), (7.0, 1.0, None), (math.nan, 1.0, None), (2.5, 0.0, None), (9.0, 1.0, 4.0),
             (3.0, 0.0, 1.0)]

    def fed() -> StepMeter:
        meter = StepMeter(["loss"], torch.device("cpu"))
        meter.run.fill_(2.0), meter.longest.fill_(3.0)  # a run of 2 skipped steps carried in
        for value, bad, norm in steps:
            meter.record([torch.tensor(value)], None if norm is None else torch.tensor(norm), torch.tensor(bad),
                         torch.tensor(value))
        return meter

    host, device = fed(), fed()
    device._fold()
    want = device.peek()
    with torch.profiler.profile() as prof:
        got = host.read()
    ops = [e.name for e in prof.events()
           if e.name.startswith("aten::") and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]
    assert len(ops) <= 12, ops
    assert got["metrics"]["loss"] == pytest.approx((1.5 + 2.5 + 3.0) / 3, rel=1e-7)
    assert got["metrics"] == pytest.approx(want["metrics"], rel=1e-6)
    assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-6) == pytest.approx(1.5)
    for key in ("steps", "skipped", "consecutive_skips", "max_consecutive_skips", "last_skip"):
        assert got[key] == want[key], key
    assert (got["skipped"], got["consecutive_skips"], got["max_consecutive_skips"], got["last_skip"]) == (3, 0, 3, 9.0)
    # after the read: the next window starts from the run, as after the device fold
    assert (float(host.run), float(host.longest), float(host.last), float(host.sums.abs().sum())) == (0.0, 0.0, 9.0, 0.0)
    assert host._pending == 0 and host.steps == 0
