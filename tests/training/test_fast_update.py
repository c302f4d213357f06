"""The fast paths of the training step: torch's fused Adam kernel called directly (eager), and the whole
update written out as one function for ``torch.compile`` (compiled). Both must be the optimizer's own
step: same parameters, same Adam state (so checkpoints and resume do not change), same skips."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from vaekit.training import step as step_module
from vaekit.training.batches import take
from vaekit.training.ema import EMA
from vaekit.training.step import TrainStep

CASES = [
    (torch.optim.Adam, {}),
    (torch.optim.Adam, {"weight_decay": 0.1, "amsgrad": True}),
    (torch.optim.AdamW, {"weight_decay": 0.1, "maximize": True}),
]


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in [(5, 3), (5,), (2, 5)]]


def _groups(params: list[torch.nn.Parameter]) -> list[dict[str, Any]]:
    return [{"params": params[:2]}, {"params": params[2:], "lr": 0.03}]  # two groups, two learning rates


@pytest.mark.parametrize("share_steps", [False, True])
@pytest.mark.parametrize("cls,kwargs", CASES)
def test_the_direct_fused_call_is_optimizer_step(cls: Any, kwargs: dict[str, Any], share_steps: bool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Bit for bit ``optimizer.step()``, with the step counters per parameter or as views of one tensor."""
    ref_params, fast_params = _params(), _params()
    ref = cls(_groups(ref_params), lr=0.01, fused=True, **kwargs)
    fast = cls(_groups(fast_params), lr=0.01, fused=True, **kwargs)
    direct = step_module._FusedAdam(fast, share_steps=share_steps)
    assert step_module._FusedAdam.supports(fast)
    calls: list[int] = []
    original = cls.step
    monkeypatch.setattr(cls, "step", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    g = torch.Generator().manual_seed(1)
    for flag in (0.0, 0.0, 1.0, 0.0):  # the third step is skipped
        grads = [torch.randn(p.shape, generator=g) for p in ref_params]
        for p, q, gr in zip(ref_params, fast_params, grads):
            p.grad, q.grad = gr.clone(), gr.clone()
        ref.found_inf = torch.tensor(flag)
        ref.step()
        direct.step(torch.tensor(flag))
    for p, q in zip(ref_params, fast_params):
        assert torch.equal(p, q)
        for key, value in ref.state[p].items():
            assert torch.equal(fast.state[q][key], value), key
    assert float(fast.state[fast_params[0]]["step"]) == 3.0  # the skipped step is not counted
    assert len(calls) == 4 + 1  # the reference's four, and the fast one's first (it creates the state)
    storages = {fast.state[q]["step"].untyped_storage().data_ptr() for q in fast_params}
    assert len(storages) == (1 if share_steps else len(fast_params))


def test_the_direct_call_defers_to_optimizer_step_while_hooks_are_registered() -> None:
    params = _params()
    opt = torch.optim.Adam(params, lr=0.01, fused=True)
    seen: list[int] = []
    opt.register_step_post_hook(lambda *_: seen.append(1))
    direct = step_module._FusedAdam(opt)
    for _ in range(3):
        for p in params:
            p.grad = torch.ones_like(p)
        direct.step(torch.tensor(0.0))
    assert seen == [1, 1, 1]


OPTIMIZERS = {  # the written-out update's two decays: AdamW's decoupled one, Adam's L2 (with maximize, betas, eps)
    "adamw": lambda groups: torch.optim.AdamW(groups, lr=0.01, weight_decay=0.05, fused=True),
    "adam-l2": lambda groups: torch.optim.Adam(groups, lr=0.01, weight_decay=0.05, betas=(0.8, 0.99), eps=1e-6,
                                               maximize=True, fused=True),
}


def _train(graph: bool, monkeypatch: pytest.MonkeyPatch, steps: int = 6, nan_at: int = 2,
           optimizer: str = "adamw") -> dict[str, Any]:
    """A few steps of a TrainStep with AdamW (weight decay, two groups), clipping, a skip threshold and an
    EMA; step ``nan_at`` has a NaN loss. ``graph``: the update through :func:`_update_graph` (run as it is)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    params = list(model.parameters())
    opt = OPTIMIZERS[optimizer]([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}])
    ema = EMA(model, 0.8)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(2))

    def forward(batch: Any, i: int) -> Any:
        loss = (model(batch) ** 2).mean() * (math.nan if i == nan_at else 1.0)
        return loss, {"loss": loss.detach(), "half": 0.5}

    step = TrainStep(forward, params, opt, grad_clip=0.05, skip_threshold=1e6, ema=ema, ema_module=model)
    if graph:  # the compiled path, with torch.compile left out (the function itself runs)
        monkeypatch.setattr(step_module.torch, "compile", lambda fn, **_: fn)
        step.compiled, step._mode = True, "default"
    for i in range(steps):
        step(x, i, norm=i % 2 == 0)
    return {"params": [p.detach().clone() for p in params], "state": [dict(opt.state[p]) for p in params],
            "shadow": list(ema.shadow.values()), "window": step.meter.read(), "graph_used": bool(step._update_fns)}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_the_written_out_update_follows_the_fused_kernel(optimizer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Adam's arithmetic written out (bias corrections in float64, lerp) against torch's fused kernel: the
    same weights, Adam state, EMA and meter to float32 rounding, through a skipped step."""
    eager = _train(False, monkeypatch, optimizer=optimizer)
    graph = _train(True, monkeypatch, optimizer=optimizer)
    assert graph["graph_used"] and not eager["graph_used"]
    for a, b in zip(eager["params"], graph["params"]):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
    for sa, sb in zip(eager["state"], graph["state"]):
        assert float(sa["step"]) == float(sb["step"]) == 5.0  # 6 steps, one skipped
        torch.testing.assert_close(sb["exp_avg"], sa["exp_avg"], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(sb["exp_avg_sq"], sa["exp_avg_sq"], rtol=1e-6, atol=1e-12)
    for a, b in zip(eager["shadow"], graph["shadow"]):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
    we, wg = eager["window"], graph["window"]
    assert (wg["steps"], wg["skipped"], wg["max_consecutive_skips"]) == (we["steps"], we["skipped"], 1) == (6, 1, 1)
    assert math.isnan(wg["last_skip"]) and math.isnan(we["last_skip"])
    assert wg["metrics"]["half"] == we["metrics"]["half"] == 0.5
    torch.testing.assert_close(wg["metrics"]["loss"], we["metrics"]["loss"], rtol=1e-6, atol=0.0)
    torch.testing.assert_close(wg["grad_norm"], we["grad_norm"], rtol=1e-5, atol=0.0)
    # the comparison can fail: one more step of the reference moves the weights by far more than the tolerance
    longer = _train(False, monkeypatch, steps=7, optimizer=optimizer)
    assert max(float((a - b).abs().max()) for a, b in zip(longer["params"], eager["params"])) > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("one_graph", [True, False])
def test_the_compiled_update_follows_the_fused_kernel(one_graph: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same with torch.compile (inductor) generating the update: the whole step as one graph
    (``_train_graph``, gradients by ``torch.autograd.grad``), or the forward/backward and the update as two
    (``_update_graph``; what a torch whose dynamo cannot trace ``autograd.grad`` gets)."""
    if one_graph and not step_module._TRACES_GRAD:
        pytest.skip("this torch's dynamo cannot trace torch.autograd.grad")
    eager = _train(False, monkeypatch)
    torch._dynamo.reset()
    monkeypatch.setattr(step_module, "_TRACES_GRAD", one_graph)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}], lr=0.01,
                            weight_decay=0.05, fused=True)
    for group in opt.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]))
    ema = EMA(model, 0.8)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(2))

    def forward(batch: Any, i: int) -> Any:
        loss = (model(batch) ** 2).mean() * (math.nan if i == 2 else 1.0)
        return loss, {"loss": loss.detach(), "half": 0.5}

    step = TrainStep(forward, params, opt, grad_clip=0.05, skip_threshold=1e6, ema=ema, ema_module=model,
                     compile=True)
    for i in range(6):
        step(x, i, norm=i % 2 == 0)
    assert (bool(step._train_fns), bool(step._update_fns)) == (one_graph, not one_graph)
    for a, p in zip(eager["params"], params):
        torch.testing.assert_close(p.detach(), a, rtol=1e-6, atol=1e-7)
    for a, b in zip(eager["shadow"], ema.shadow.values()):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
    assert [float(opt.state[p]["step"]) for p in params] == [5.0] * len(params)
    w, we = step.meter.read(), eager["window"]
    assert (w["steps"], w["skipped"], w["max_consecutive_skips"]) == (6, 1, 1)
    torch.testing.assert_close(w["metrics"]["loss"], we["metrics"]["loss"], rtol=1e-6, atol=0.0)
    torch.testing.assert_close(w["grad_norm"], we["grad_norm"], rtol=1e-5, atol=0.0)
    torch._dynamo.reset()


def test_batches_taken_by_index_select_are_the_indexed_rows() -> None:
    x = torch.arange(60.0).reshape(10, 6)[:, ::2]  # not contiguous
    idx = torch.tensor([7, 0, 3, 3])
    assert torch.equal(take(x, idx), x[idx])
    data = {"x": x, "y": torch.arange(10)}
    out = take(data, idx)
    assert torch.equal(out["x"], x[idx]) and torch.equal(out["y"], torch.tensor([7, 0, 3, 3]))
    mask = torch.arange(10) % 3 == 0  # a mask still selects as indexing does
    assert torch.equal(take(x, mask), x[mask])


def test_adamw_groups_without_the_decoupled_key_still_decay_adamw_s_way() -> None:
    """torch < 2.7: AdamW is its own class and its groups carry no ``decoupled_weight_decay`` key; the direct
    call must still take AdamW's kernel (plain L2 decay differs by ~4e-3 after five steps)."""
    ref_params, fast_params = _params(), _params()
    ref = torch.optim.AdamW(_groups(ref_params), lr=0.01, weight_decay=0.5, fused=True)
    fast = torch.optim.AdamW(_groups(fast_params), lr=0.01, weight_decay=0.5, fused=True)
    direct = step_module._FusedAdam(fast)
    g = torch.Generator().manual_seed(1)
    for i in range(5):
        grads = [torch.randn(p.shape, generator=g) for p in ref_params]
        for p, q, gr in zip(ref_params, fast_params, grads):
            p.grad, q.grad = gr.clone(), gr.clone()
        ref.step()
        direct.step(torch.tensor(0.0))  # the first goes through optimizer.step() (it creates the state) ...
        if i == 0:  # ... which needs the key in this torch; the direct kernel calls after it run without it
            for group in fast.param_groups:
                del group["decoupled_weight_decay"]
            assert all(direct.decoupled(group) for group in fast.param_groups)
    for p, q in zip(ref_params, fast_params):
        assert torch.equal(p, q)
    plain = torch.optim.Adam(_groups(_params()), lr=0.01, weight_decay=0.5)
    assert not step_module._FusedAdam(plain).decoupled(plain.param_groups[0])


def _two_layers(width: int, compile: bool) -> tuple[torch.nn.Linear, torch.nn.Linear, list[Any], Any]:
    """Seeded ``Linear(width, width)`` and ``Linear(width, 1)``, their parameters and a fused Adam over them (lr
    0.01, a tensor when ``compile``, as the trainer gives a compiled step)."""
    torch.manual_seed(0)
    a, b = torch.nn.Linear(width, width), torch.nn.Linear(width, 1)
    params = [*a.parameters(), *b.parameters()]
    opt = torch.optim.Adam(params, lr=0.01, fused=True)
    if compile:
        opt.param_groups[0]["lr"] = torch.tensor(0.01)
    return a, b, params, opt


def _comes_and_goes(compile: bool, built: list[Any] | None = None) -> tuple[list[torch.Tensor], list[float], Any]:
    """8 steps of a model whose second layer is used on even steps only (fused Adam); the final weights,
    each parameter's Adam step count, and the TrainStep."""
    a, b, params, opt = _two_layers(3, compile)
    x = torch.randn(8, 3)

    def forward(batch: Any, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = a(x).pow(2).mean() + (b(x).pow(2).mean() if step % 2 == 0 else 0.0)
        return loss, {"loss": loss.detach()}

    original = torch.compile
    step = TrainStep(forward, params, opt, compile=compile)
    try:
        if built is not None:
            torch.compile = lambda fn, *args, **kwargs: built.append(fn) or original(fn, *args, **kwargs)  # type: ignore[assignment]
        for i in range(8):
            step(None, i)
    finally:
        torch.compile = original  # type: ignore[assignment]
    return [p.detach().clone() for p in params], [float(opt.state[p]["step"]) for p in params], step


@pytest.mark.slow
@pytest.mark.parametrize("one_graph", [True, False])
def test_a_gradient_that_comes_and_goes_compiles_two_updates_not_one_per_step(
        one_graph: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A layer used on every other step only: it is updated (and its Adam step counted) only on the steps that
    give it a gradient, as in eager; the compiled step switches between two graphs (one per set of parameters
    with a gradient) instead of building a new one whenever the set changes."""
    if one_graph and not step_module._TRACES_GRAD:
        pytest.skip("this torch's dynamo cannot trace torch.autograd.grad")
    eager, eager_counts, _ = _comes_and_goes(False)
    assert eager_counts == [8.0, 8.0, 4.0, 4.0]
    torch._dynamo.reset()
    monkeypatch.setattr(step_module, "_TRACES_GRAD", one_graph)
    built: list[Any] = []
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    weights, counts, step = _comes_and_goes(True, built)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs
    assert counts == eager_counts
    for w, e in zip(weights, eager):  # (Adam with zero gradients instead would move b by its momentum)
        torch.testing.assert_close(w, e, rtol=1e-6, atol=1e-7)
    if one_graph:  # one compiled function for steps 1-7, traced for step 1 (dynamo specialises an int it sees
        # first), then once per parity (step becomes dynamic, the branch a guard), not once per step
        assert len(step._train_fns) == 1 and len(built) == 1 and not step._update_fns
        assert graphs == 3
    else:  # the forward (with its backward), and one update per set of parameters with a gradient
        assert len(step._update_fns) == 2 and len(built) == 3
    torch._dynamo.reset()


def test_eager_step_counters_are_one_tensor_and_survive_a_reload() -> None:
    """Eager, the step counters become views of one tensor (counted in one operation), hold the number of good
    steps, are saved by ``state_dict`` as plain values and are shared again after ``load_state_dict``."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    params = list(model.parameters())
    opt = torch.optim.Adam([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}], lr=0.01, fused=True)
    x = torch.randn(16, 4)

    def forward(batch: Any, i: int) -> Any:
        loss = (model(batch) ** 2).mean() * (math.nan if i == 3 else 1.0)
        return loss, {"loss": loss.detach()}

    step = TrainStep(forward, params, opt)
    for i in range(5):
        step(x, i)
    counters = [opt.state[p]["step"] for p in params]
    assert len({c.untyped_storage().data_ptr() for c in counters}) == 1  # one tensor
    assert [float(c) for c in counters] == [4.0] * 4  # 5 steps, step 3 skipped
    saved = opt.state_dict()
    other = torch.optim.Adam([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}], lr=0.01, fused=True)
    other.load_state_dict(saved)
    step = TrainStep(forward, params, other)
    for i in range(5, 7):
        step(x, i)
    counters = [other.state[p]["step"] for p in params]
    assert len({c.untyped_storage().data_ptr() for c in counters}) == 1
    assert [float(c) for c in counters] == [6.0] * 4
    assert [float(opt.state[p]["step"]) for p in params] == [4.0] * 4  # the saved optimizer is not touched


def _freeze_run(compile: bool, hook: bool = False) -> tuple[list[float], Any, list[int]]:
    """5 steps of a 2-layer model (fused Adam); the first layer is frozen (requires_grad_(False)) before step 3.
    ``hook``: a post-accumulate-grad hook on the last bias. Returns the Adam step counts, the TrainStep and the
    hook's calls."""
    a, b, params, opt = _two_layers(4, compile)
    calls: list[int] = []
    if hook:
        b.bias.register_post_accumulate_grad_hook(lambda p: calls.append(1))
    x = torch.randn(16, 4)

    def forward(batch: Any, step: int) -> Any:
        loss = b(a(x)).pow(2).mean()
        return loss, {"loss": loss.detach()}

    step = TrainStep(forward, params, opt, compile=compile)
    for i in range(5):
        if i == 3:
            a.requires_grad_(False)
        step(None, i)
    return [float(opt.state[p]["step"]) for p in params], step, calls


@pytest.mark.slow
def test_a_parameter_frozen_mid_run_is_left_alone_by_the_one_graph_step() -> None:
    """Freezing a layer between steps: it gets no gradient and no Adam step from then on, as in eager (the one
    graph differentiates only what requires a gradient, and retraces when that changes)."""
    if not step_module._TRACES_GRAD:
        pytest.skip("this torch's dynamo cannot trace torch.autograd.grad")
    eager_counts, _, _ = _freeze_run(False)
    assert eager_counts == [3.0, 3.0, 5.0, 5.0]
    torch._dynamo.reset()
    counts, step, _ = _freeze_run(True)
    assert step._fused is True and counts == eager_counts
    torch._dynamo.reset()


def test_a_post_accumulate_grad_hook_keeps_the_two_graph_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """A parameter with a post-accumulate-grad hook (what DDP-like code relies on) is trained through ``.grad``:
    the hook runs at every step, and the one-graph step (which has no ``.grad``) is not chosen."""
    monkeypatch.setattr(step_module.torch, "compile", lambda fn, **_: fn)  # (the decision only; no compilation)
    counts, step, calls = _freeze_run(True, hook=True)
    assert step._fused is False and len(calls) == 5 and counts == [3.0, 3.0, 5.0, 5.0]


@pytest.mark.parametrize("one_graph", [True, False])
def test_a_compiled_step_records_the_gradient_norm_only_when_asked(one_graph: bool,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled (the functions run as written), the norm computed for the skip check enters the meter only on
    the steps that ask for it (norm=True), the first (eager) step included, as in eager."""
    monkeypatch.setattr(step_module.torch, "compile", lambda fn, **_: fn)
    monkeypatch.setattr(step_module, "_TRACES_GRAD", one_graph)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, fused=True)
    opt.param_groups[0]["lr"] = torch.tensor(0.01)
    x = torch.randn(8, 4)

    def forward(batch: Any, i: int) -> Any:
        loss = model(x).pow(2).mean()
        return loss, {"loss": loss.detach()}

    step = TrainStep(forward, list(model.parameters()), opt, compile=True)
    for i in range(3):
        step(None, i)
    assert step.meter.read()["grad_norm"] is None
    step(None, 3, norm=True)
    assert step.meter.read()["grad_norm"] > 0


def test_a_one_graph_step_that_fails_to_compile_falls_back_to_two_graphs(monkeypatch: pytest.MonkeyPatch,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """When dynamo cannot compile the one-graph step, the step is taken by the forward/backward and update graphs
    (with a warning) and training goes on with the same numbers as eager."""
    monkeypatch.setattr(step_module.torch, "compile", lambda fn, **_: fn)
    monkeypatch.setattr(step_module, "_TRACES_GRAD", True)

    def unsupported(*_: Any) -> Any:
        def train(*args: Any) -> Any:
            raise torch._dynamo.exc.Unsupported("an operator dynamo cannot trace")
        return train

    monkeypatch.setattr(step_module, "_train_graph", unsupported)
    results = []
    for compile in (False, True):
        counts, step, _ = _freeze_run(compile)
        results.append((counts, [p.detach().clone() for p in step.params]))
    assert step._fused is False and "could not be compiled" in caplog.text
    assert results[0][0] == results[1][0] == [3.0, 3.0, 5.0, 5.0]
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
