"""benchmarks/compiled_step_guards.py: the three variants train alike; only the guards differ."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def script(load_benchmark):
    return load_benchmark("compiled_step_guards")


def test_variants_take_the_same_steps_and_only_no_guards_drops_the_guards(script, tmp_path):
    import vaekit.training.step as step_module

    original = step_module._compile_options
    args = script.parse_args(["--rounds", "2", "--block", "3", "--n-train", "400", "--threads", "1",
                              "--data-root", str(tmp_path / "no-data"), "--out", str(tmp_path / "g.md")])
    rows, steppers = script.measure(args)
    assert step_module._compile_options is original  # the unguarded compile options did not leak
    assert [r["variant"] for r in rows] == list(script.VARIANTS) and rows[0]["paired"] == "1.000"
    # the same seed, batches and step indices: identical weights whatever the guards
    ref = steppers["default"].params
    for v in ("marked", "no-guards"):
        assert all(torch.equal(a, b) for a, b in zip(ref, steppers[v].params)), v
    assert any(not torch.equal(a, b) for a, b in zip(ref, script.build(
        "default", torch.zeros(400, 784), 100, 0, 2).params))  # (the weights did move in training)
    marked = steppers["marked"].params[0]
    assert all(getattr(marked, n) == set() for n in script.MARKINGS)
    assert not hasattr(steppers["default"].params[0], script.MARKINGS[0])

    def guarded(stepper):
        fn = next(iter(stepper._train_fns.values()))
        entries = torch._dynamo.eval_frame._debug_get_cache_entry_list(fn._torchdynamo_orig_callable.__code__)
        return len(entries) == 1 and "TENSOR_MATCH" in str(entries[0].guard_manager)

    assert guarded(steppers["default"]) and not guarded(steppers["no-guards"])


def test_bad_arguments_are_refused_naming_the_flag(script, capsys):
    for argv, message in ((["--rounds", "0"], "--rounds must be at least 1, got 0"),
                          (["--warmup-steps", "1"], "--warmup-steps must be at least 2, got 1"),
                          (["--n-train", "50"], "--n-train (50) must be at least --batch-size (100)"),
                          (["--threads", "0"], "--threads must be at least 1, got 0")):
        with pytest.raises(SystemExit):
            script.parse_args(argv)
        assert message in capsys.readouterr().err
