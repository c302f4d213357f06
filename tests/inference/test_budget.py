"""The estimators' work budget, memory cap per call and progress reports (vaekit.inference.budget).

Nothing big runs here: refused calls must fail before any work, and calls that pass the
budget stop at a stub of the estimator's inner loop (``Reached``) unless they are tiny.
"""

from __future__ import annotations

import io
import json
import sys
import time

import numpy as np
import pytest
import torch

from vaekit.cli import main
from vaekit.inference import ais as ais_module
from vaekit.inference import bdmc, budget, iwae, local_opt
from vaekit.inference import ais_log_likelihood, inference_gaps, iwae_log_likelihood, optimize_local_posterior, reverse_ais
from vaekit.inference.budget import WORK_BUDGET, WorkBudgetError, pair_bytes
from vaekit.models import mlp_vae
from vaekit.runs import evaluate_run


class Reached(Exception):
    """Raised by a stubbed inner loop: the call got past every check."""


def _stop(*args, **kwargs):
    raise Reached


@pytest.fixture
def model():
    torch.manual_seed(0)
    return mlp_vae([2], 2, hidden=[16]).eval()


def binary(n: int, d: int = 2) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, d), 0.5))


def _forbid_model_calls(monkeypatch, model):
    for name in ("log_weights", "log_joint", "log_prior", "sample_prior", "decode"):
        monkeypatch.setattr(model, name, lambda *a, _n=name, **k: pytest.fail(f"{_n} was called: work started"))


# ------------------------------------------------------------------------------ the work budget
def test_iwae_k_1e9_is_refused_at_once_naming_k_and_force(model, monkeypatch):
    _forbid_model_calls(monkeypatch, model)
    t0 = time.perf_counter()
    with pytest.raises(WorkBudgetError) as info:
        iwae_log_likelihood(model, binary(16), k=10**9)
    assert time.perf_counter() - t0 < 1.0
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    for part in ("iwae_log_likelihood", "1.6e+10", "len(x) x k = 16 x 1,000,000,000", "1e+10", "force=True", "Lower len(x) or k"):
        assert part in msg, (part, msg)
    assert info.value.work.pairs == 16 * 10**9


def test_iwae_up_to_the_budget_runs_and_force_lifts_it(model, monkeypatch):
    monkeypatch.setattr(iwae, "_estimate", _stop)
    x = binary(16)
    assert WORK_BUDGET == 10**10  # the documented budget
    with pytest.raises(Reached):  # exactly the budget: allowed
        iwae_log_likelihood(model, x, k=WORK_BUDGET // 16)
    with pytest.raises(WorkBudgetError):
        iwae_log_likelihood(model, x, k=WORK_BUDGET // 16 + 1)
    with pytest.raises(Reached):
        iwae_log_likelihood(model, x, k=10**9, force=True)


def test_a_lowered_budget_is_enforced_end_to_end(model, monkeypatch):
    monkeypatch.setattr(budget, "WORK_BUDGET", 100)
    x = binary(16)
    with pytest.raises(WorkBudgetError, match="more than the work budget of 1e\\+02"):
        iwae_log_likelihood(model, x, k=10)
    res = iwae_log_likelihood(model, x, k=10, force=True)
    assert res.n == 16 and res.k == 10


def test_ais_budget_counts_gradient_evaluations(model, monkeypatch):
    monkeypatch.setattr(ais_module, "_run", _stop)
    protocol = dict(n_chains=100, n_steps=10000, leapfrog_steps=10)  # Cremer et al. (2018) on 1000 points
    with pytest.raises(Reached):
        ais_log_likelihood(model, binary(1000), **protocol)
    with pytest.raises(WorkBudgetError) as info:
        ais_log_likelihood(model, binary(1001), **protocol)
    msg = str(info.value)
    assert "len(x) x n_chains x (1 + (n_steps - 1) x leapfrog_steps) = 1,001 x 100 x (1 + (10,000 - 1) x 10)" in msg
    assert "force=True" in msg and info.value.work.pairs == 1001 * 100 * (1 + 9999 * 10)
    with pytest.raises(Reached):
        ais_log_likelihood(model, binary(1001), force=True, **protocol)


def test_reverse_ais_and_bdmc_are_refused_before_any_work(model, monkeypatch):
    _forbid_model_calls(monkeypatch, model)
    x = binary(20)
    with pytest.raises(WorkBudgetError, match="reverse_ais would evaluate"):
        reverse_ais(model, x, {"z": torch.zeros(20, 2)}, n_chains=10**4, n_steps=10**4)
    with pytest.raises(WorkBudgetError, match=r"bdmc would evaluate .* 2 x n_examples x n_chains"):
        bdmc(model, 10, n_chains=10**4, n_steps=10**4)


def test_local_opt_budget(model, monkeypatch):
    monkeypatch.setattr(local_opt, "_optimize_batch", _stop)
    x = binary(16)
    with pytest.raises(WorkBudgetError) as info:
        optimize_local_posterior(model, x, max_steps=10**9)
    msg = str(info.value)
    assert "optimize_local_posterior would evaluate" in msg and "max_steps" in msg and "force=True" in msg
    assert "check_every or" not in msg and "check_every," not in msg  # lowering check_every adds work
    with pytest.raises(Reached):
        optimize_local_posterior(model, x, max_steps=10**9, force=True)
    with pytest.raises(Reached):
        optimize_local_posterior(model, x)  # the defaults are far below the budget


def test_gap_column_checks_every_budget_before_the_first_estimate(model, monkeypatch):
    _forbid_model_calls(monkeypatch, model)
    x = binary(16)
    with pytest.raises(WorkBudgetError, match="ais_log_likelihood"):
        inference_gaps(model, x, iwae_k=10, ais={"n_chains": 10**4, "n_steps": 10**4}, local_opt=["ffg"])
    with pytest.raises(WorkBudgetError, match="optimize_local_posterior"):
        inference_gaps(model, x, iwae_k=10, local_opt=["ffg"], local_opt_kwargs={"max_steps": 10**9})
    with pytest.raises(TypeError, match="n_chain"):  # a misspelt AIS setting, before any work too
        inference_gaps(model, x, iwae_k=10, ais={"n_chain": 4}, local_opt=[])


# ------------------------------------------------------------------------------ memory per call
@pytest.fixture
def one_gib(monkeypatch):
    """Half of the device memory is 1 GiB, whatever this machine has."""
    monkeypatch.setattr(budget, "memory_limit", lambda device: 2**30)
    monkeypatch.setattr(local_opt, "memory_limit", lambda device: 2**30, raising=False)
    return 2**30


def test_chunk_size_1e9_is_refused_with_the_largest_accepted_value(model, monkeypatch, one_gib):
    _forbid_model_calls(monkeypatch, model)
    x = binary(1)
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as info:  # 1e9 pairs: under the work budget, far over memory
        iwae_log_likelihood(model, x, k=10**9, chunk_size=10**9)
    assert time.perf_counter() - t0 < 1.0
    msg = str(info.value)
    limit = one_gib // pair_bytes(model, (2,))
    assert "half of the cpu memory (1.0 GiB)" in msg
    assert msg.startswith("chunk_size=1,000,000,000: ") and f"the largest accepted chunk_size is {limit:,}" in msg
    with pytest.raises(ValueError, match=f"^chunk_size={limit:,}, batch_size=64: .* the largest accepted chunk_size "
                                         f"is {limit // 64:,} with batch_size=64"):
        iwae_log_likelihood(model, binary(64), k=limit, batch_size=64, chunk_size=limit)
    with pytest.raises(ValueError, match="the largest accepted max_elements is"):
        iwae_log_likelihood(model, x, k=10, max_elements=10**15)


def test_automatic_sizes_are_capped_to_memory(model, monkeypatch):
    per_pair = pair_bytes(model, (2,))
    monkeypatch.setattr(budget, "memory_limit", lambda device: 50 * per_pair)
    seen = []
    inner = model.log_weights
    monkeypatch.setattr(model, "log_weights", lambda x, k=1: seen.append(k * x.shape[0]) or inner(x, k))
    res = iwae_log_likelihood(model, binary(8), k=1000)
    assert max(seen) <= 50 and res.batch_size * res.chunk_size <= 50
    with pytest.raises(ValueError, match="the largest accepted chunk_size is 50"):
        iwae_log_likelihood(model, binary(8), k=1000, chunk_size=51)


def test_ais_chains_and_batches_that_cannot_fit(model, monkeypatch, one_gib):
    _forbid_model_calls(monkeypatch, model)
    with pytest.raises(ValueError, match=r"^n_chains=1,000,000,000: .*largest accepted n_chains is [\d,]+$"):
        ais_log_likelihood(model, binary(2), n_chains=10**9, n_steps=1, force=True)
    limit = one_gib // pair_bytes(model, (2,))
    chains = limit // 4
    with pytest.raises(ValueError, match=r"^batch_size=8, n_chains=.*largest accepted batch_size is 4 with n_chains"):
        ais_log_likelihood(model, binary(8), n_chains=chains, n_steps=1, batch_size=8, force=True)


def test_local_opt_k_and_batches_that_cannot_fit(model, monkeypatch, one_gib):
    _forbid_model_calls(monkeypatch, model)
    with pytest.raises(ValueError, match=r"^k=10,000,000,000: .*largest accepted k is [\d,]+$"):
        optimize_local_posterior(model, binary(4), k=10**10, max_steps=1, force=True)
    with pytest.raises(ValueError, match=r"^batch_size=4, k=1,000,000: .*largest accepted batch_size is 3 with k"):
        optimize_local_posterior(model, binary(4), k=10**6, max_steps=1, batch_size=4, force=True)


# ------------------------------------------------------------------------------ bad arguments (bad ints: test_iwae/test_ais/test_local_opt)
def _call(which, model, **kwargs):
    x = binary(4)
    if which == "iwae":
        return iwae_log_likelihood(model, x, **{"k": 4, **kwargs})
    if which == "ais":
        return ais_log_likelihood(model, x, **{"n_chains": 2, "n_steps": 2, **kwargs})
    return optimize_local_posterior(model, x, **{"max_steps": 2, **kwargs})


@pytest.mark.parametrize("which", ["iwae", "ais", "local"])
def test_bad_force_and_progress_are_named(model, monkeypatch, which):
    _forbid_model_calls(monkeypatch, model)
    with pytest.raises(TypeError, match="force must be True or False, got 'yes'"):
        _call(which, model, force="yes")
    with pytest.raises(TypeError, match=r"progress must be True, False or a callable progress\(done, total\), got 1"):
        _call(which, model, progress=1)


# ------------------------------------------------------------------------------ progress
def _recorder():
    calls = []
    return calls, lambda done, total: calls.append((done, total))


def _assert_counts_up(calls, total):
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert all(t == total for _, t in calls) and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_iwae_progress_callback_counts_pairs(model):
    calls, cb = _recorder()
    iwae_log_likelihood(model, binary(10), k=30, batch_size=4, chunk_size=8, progress=cb)
    _assert_counts_up(calls, 10 * 30)
    assert len(calls) == 1 + 3 * 4  # one call per (batch, chunk)


def test_ais_progress_callback_total_is_its_gradient_evaluations(model):
    calls, cb = _recorder()
    res = ais_log_likelihood(model, binary(5), n_chains=3, n_steps=6, leapfrog_steps=2, batch_size=2, progress=cb)
    _assert_counts_up(calls, res.grad_evals)
    assert res.grad_evals == 5 * 3 * (1 + 5 * 2)


def test_local_opt_progress_reaches_its_total_when_it_converges_early(model):
    calls, cb = _recorder()
    res = optimize_local_posterior(model, binary(6), k=2, max_steps=400, check_every=2, patience=1, tol=1e9,
                                   eval_k=5, check_k=3, progress=cb)
    assert bool(res.converged.all()) and int(res.steps[0]) < 400
    _assert_counts_up(calls, 6 * (400 * 2 + 200 * 3 + 2 * 5))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_tqdm_bar_with_the_time_left(model, monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    iwae_log_likelihood(model, binary(16), k=10, progress=True)
    out = sys.stderr.getvalue()
    assert "IWAE k=10 on 16 examples" in out and "160/160" in out and "\r" in out
    assert "<00:00" in out  # tqdm's elapsed<remaining


def test_other_streams_get_a_few_plain_lines_with_an_eta(model, monkeypatch, capsys):
    monkeypatch.setattr(budget._Lines, "MIN_SECONDS", 0.0)
    iwae_log_likelihood(model, binary(40), k=100, batch_size=1, chunk_size=100, progress=True)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and lines[0] == "IWAE k=100 on 40 examples: 4,000 pairs"
    assert 3 <= len(lines) <= 12  # one per 10 % at most, not one per batch (40 updates)
    assert "ETA " in lines[1] and lines[-1].startswith("IWAE k=100 on 40 examples: 100% (4,000/4,000 pairs)")
    assert lines[-1].endswith("done")


# ------------------------------------------------------------------------------ evaluate_run and the CLI
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 1-epoch VAE on 8-d binary data from an .npz file (120 train, 30 test examples)."""
    from vaekit.data import ArrayFile
    from vaekit.training import Trainer

    root = tmp_path_factory.mktemp("budget")
    g = np.random.default_rng(0)
    np.savez(root / "bits.npz", x=(g.random((120, 8)) < 0.3).astype("float32"),
             tx=(g.random((30, 8)) < 0.3).astype("float32"))
    torch.manual_seed(0)
    data = ArrayFile(str(root / "bits.npz"), test_key="tx", val_fraction=0.2)
    res = Trainer(max_epochs=1, batch_size=32, progress_bar=False, root_dir=str(root / "runs"),
                  run_name="tiny").fit(mlp_vae([8], 2, [8]), data)
    return res.run_dir.path


def _eval_files(run):
    return sorted(p.name for p in (run / "eval").iterdir())


def test_evaluate_run_refuses_before_writing_anything(tiny_run):
    before, metrics = _eval_files(tiny_run), (tiny_run / "metrics.csv").read_bytes()
    with pytest.raises(WorkBudgetError, match="ais_log_likelihood"):
        evaluate_run(tiny_run, iwae_k=10, ais_chains=10**4, ais_steps=10**4)
    with pytest.raises(WorkBudgetError, match="iwae_log_likelihood"):
        evaluate_run(tiny_run, iwae_k=10**9)
    assert _eval_files(tiny_run) == before and (tiny_run / "metrics.csv").read_bytes() == metrics


@pytest.mark.parametrize("name, value", [("iwae_k", 1.5), ("iwae_k", "3"), ("ais_chains", 1.5), ("ais_steps", "3"),
                                         ("n_points", 2.5), ("local_opt_steps", "10")])
def test_evaluate_run_names_bad_ints(tiny_run, name, value):
    with pytest.raises((TypeError, ValueError), match=f"^{name} must be an int >= 1, got {value!r}"):
        evaluate_run(tiny_run, **{name: value})


def test_evaluate_run_passes_progress_to_every_estimate(tiny_run):
    calls, cb = _recorder()
    evaluate_run(tiny_run, iwae_k=5, n_points=4, ais_chains=2, ais_steps=3, local_opt=["ffg"], local_opt_steps=4,
                 progress=cb)
    totals = [t for d, t in calls if d == 0]
    assert totals == [4 * 5, 4 * 2 * (1 + 2 * 10), 4 * (4 * 10 + 0 * 100 + 2 * 1000)]


def test_cli_refuses_a_huge_iwae_k_with_one_line_and_exit_2(tiny_run, capsys):
    before = _eval_files(tiny_run)
    t0 = time.perf_counter()
    assert main(["evaluate", str(tiny_run), "--iwae-k", "1000000000000"]) == 2
    assert time.perf_counter() - t0 < 30
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("vaekit evaluate: error: iwae_log_likelihood would evaluate 3e+13")
    assert "--n-points x --iwae-k = 30 x 1,000,000,000,000" in err
    assert "Lower --n-points or --iwae-k, or pass --force to run it anyway" in err
    assert _eval_files(tiny_run) == before


def test_cli_force_lifts_the_budget(tiny_run, monkeypatch, capsys):
    monkeypatch.setattr(budget, "WORK_BUDGET", 100)
    assert main(["evaluate", str(tiny_run), "--iwae-k", "20", "--n-points", "10", "--ais-steps", "3",
                 "--no-progress"]) == 2
    assert "--n-points x --iwae-k = 10 x 20" in capsys.readouterr().err
    assert main(["evaluate", str(tiny_run), "--iwae-k", "4", "--n-points", "10", "--ais-chains", "2",
                 "--ais-steps", "3", "--no-progress"]) == 2
    assert "Lower --n-points, --ais-chains or --ais-steps, or pass --force" in capsys.readouterr().err
    assert main(["evaluate", str(tiny_run), "--iwae-k", "20", "--n-points", "10", "--ais-steps", "3", "--force",
                 "--no-progress"]) == 0
    assert json.loads((tiny_run / "eval" / "evaluate-test-k20.json").read_text())["n"] == 10


def test_cli_shows_progress_unless_told_not_to(tiny_run, capfd):
    assert main(["evaluate", str(tiny_run), "--iwae-k", "20", "--n-points", "10", "--ais-chains", "2",
                 "--ais-steps", "3"]) == 0
    out, err = capfd.readouterr()
    assert "IWAE k=20 on 10 examples: 200 pairs" in err and "IWAE k=20 on 10 examples: 100% (200/200 pairs)" in err
    assert "AIS (forward) 2 chains x 3 steps on 10 examples: 100% (420/420 pairs)" in err
    assert "\r" not in err and "log p(x)" in out
    assert main(["evaluate", str(tiny_run), "--iwae-k", "20", "--n-points", "10", "--no-progress"]) == 0
    assert "pairs" not in capfd.readouterr().err
