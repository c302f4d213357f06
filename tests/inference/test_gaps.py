"""The gap decomposition on a linear-Gaussian VAE, where every term has a closed form."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from linear_vae import exact_numbers, linear_vae, simulate

from vaekit.inference.gaps import GapColumn, gap_table, inference_gaps, write_gap_report
from vaekit.models import mlp_vae

FAST = {"k": 16, "lr": 2e-2, "max_steps": 2000, "check_every": 50, "patience": 6, "eval_k": 2000}


def test_gaps_match_closed_forms_and_add_up(tmp_path):
    model, W, b = linear_vae()
    x = simulate(W, b, 16, seed=4)
    log_px, ffg_gap = exact_numbers(W, b, x)
    col = inference_gaps(model, x, iwae_k=1000, ais={"n_chains": 16, "n_steps": 500}, local_opt=["ffg"],
                         local_opt_kwargs=FAST, label="q_FFG")
    assert col.own == "gaussian" and col.log_px_source == "max(AIS, IWAE)"
    # the untrained q makes IWAE_1000 loose (0.06-0.34 nats below log p(x) over 4 seeds, 0.15 here) ...
    assert col.iwae < float(log_px.mean()) - 0.04
    # ... AIS is not (within 0.01 over the same seeds), and log p̂ = max(AIS, IWAE) per example is about as close
    assert col.ais == pytest.approx(float(log_px.mean()), abs=0.03) and col.ais > col.iwae + 0.04
    assert col.log_px == pytest.approx(float(log_px.mean()), abs=0.05)
    assert col.approximation_gap == pytest.approx(ffg_gap, abs=0.08)
    assert col.amortization_gap > 1.0  # the encoder is untrained
    assert col.approximation_gap + col.amortization_gap == pytest.approx(col.inference_gap)
    paths = write_gap_report([col], tmp_path)
    table = paths["md"].read_text()
    assert "| Approximation gap |" in table and "q_FFG" in table
    assert json.loads(paths["json"].read_text())[0]["approximation_gap"] == pytest.approx(col.approximation_gap)
    rows = list(csv.DictReader(open(paths["csv"])))
    assert {r["row"] for r in rows} >= {"log p̂(x)", "L[q*_FFG]", "L[q]", "Approximation gap", "Amortization gap"}


def test_ais_enters_as_the_per_example_maximum(monkeypatch):
    import functools

    import vaekit.inference.ais as ais_module
    from vaekit.inference import gaps, iwae_log_likelihood

    real, seen = ais_module.ais_log_likelihood, []

    @functools.wraps(real)  # keeps the signature, which the budget check reads
    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(ais_module, "ais_log_likelihood", spy)
    monkeypatch.setattr(gaps, "ais_log_likelihood", spy, raising=False)  # where gaps imports it at module level
    model, W, b = linear_vae(seed=1)
    x = simulate(W, b, 6, seed=2)
    log_px, _ = exact_numbers(W, b, x)
    torch.manual_seed(0)
    iw = iwae_log_likelihood(model, x, k=20)  # a loose IWAE: AIS wins on some examples, IWAE on others
    col = inference_gaps(model, x, iwae=iw, local_opt=[], ais={"n_chains": 8, "n_steps": 200})
    assert len(seen) == 1
    a, i = seen[0].per_example.double(), iw.per_example.double()
    assert bool((a > i).any()) and bool((i > a).any()), (a, i)
    best = torch.maximum(a, i)
    assert col.log_px_source == "max(AIS, IWAE)"
    assert (col.ais, col.iwae) == (pytest.approx(float(a.mean())), pytest.approx(float(i.mean())))
    assert col.log_px == pytest.approx(float(best.mean()), abs=1e-12)  # the mean of per-example maxima ...
    assert col.log_px > max(col.ais, col.iwae) + 0.02  # ... not the larger mean (0.04 apart here)
    assert col.stderr["log_px"] == pytest.approx(float(best.std() / best.numel() ** 0.5))
    assert col.log_px == pytest.approx(float(log_px.mean()), abs=0.15)
    assert col.approximation_gap is None  # no local optimisation asked for


def test_other_family_is_optimised_from_scratch():
    torch.manual_seed(0)
    model = mlp_vae([12], 2, hidden=[8])
    x = torch.bernoulli(torch.full((4, 12), 0.3))
    col = inference_gaps(model, x, iwae_k=50, local_opt=["ffg", "af"],
                         local_opt_kwargs={"max_steps": 30, "check_every": 10, "eval_k": 50})
    assert set(col.local) == {"gaussian", "af"}
    assert "L[q*_AF]" in gap_table([col])


def test_bad_family_name_fails_before_any_work():
    model = mlp_vae([12], 2, hidden=[8])
    with pytest.raises(ValueError, match="unknown local-optimisation family 'fgg'; accepted: ffg, gaussian"):
        inference_gaps(model, torch.zeros(2, 12), local_opt=["fgg"])
    with pytest.raises(ValueError, match="columns is empty"):
        write_gap_report([], "unused")


def test_models_without_a_posterior_family_are_refused_up_front():
    from linear_gaussian import LinearGaussian, orthogonal_columns

    model = LinearGaussian(orthogonal_columns(5, 2, [1.0, 2.0]).float(), torch.zeros(5), 0.5)
    with pytest.raises(TypeError, match="single-latent model with an encoder and a posterior family"):
        inference_gaps(model, torch.zeros(2, 5), local_opt=["ffg"])


def test_standard_errors_are_over_points_and_paired_for_the_gaps(monkeypatch):
    """The gaps' errors come from per-point differences: log p and L[q*] that move together give a tiny one."""
    import math

    from vaekit.inference import IWAEResult, gaps
    from vaekit.inference.local_opt import LocalOptResult

    model = mlp_vae([6], 2, hidden=[4])
    x = torch.bernoulli(torch.full((4, 6), 0.5))
    log_px = torch.tensor([-10.0, -20.0, -30.0, -40.0], dtype=torch.float64)
    elbo = log_px - torch.tensor([3.0, 3.5, 2.5, 3.0], dtype=torch.float64)
    star = log_px - torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)  # approximation gap exactly 1 everywhere
    iw = IWAEResult(log_px, elbo, k=10, batch_size=4, chunk_size=10)
    fake = LocalOptResult(elbo=star, initial_elbo=elbo, steps=torch.zeros(4, dtype=torch.long),
                          converged=torch.ones(4, dtype=torch.bool), family="DiagonalGaussian")
    monkeypatch.setattr(gaps, "optimize_local_posterior", lambda *a, **k: fake)
    col = inference_gaps(model, x, iwae=iw, local_opt=["ffg"])
    se = lambda v: float(v.std() / math.sqrt(v.numel()))  # noqa: E731
    assert col.stderr["log_px"] == pytest.approx(se(log_px)) and col.stderr["elbo"] == pytest.approx(se(elbo))
    assert col.stderr["local:gaussian"] == pytest.approx(se(star))
    assert col.approximation_gap == pytest.approx(1.0) and col.stderr["approximation_gap"] == pytest.approx(0.0)
    assert col.stderr["amortization_gap"] == pytest.approx(se(star - elbo)) and col.stderr["amortization_gap"] > 0
    assert col.to_dict()["stderr"]["log_px"] == pytest.approx(se(log_px))


def _tiny_ladder(tmp_path, monkeypatch):
    """A 2-layer ladder VAE (z1: 4, z2: 2) trained one epoch on the 8x8 digits, and 20 test points."""
    import vaekit
    from vaekit.data import Digits
    from vaekit.models.hierarchical import ladder_vae

    monkeypatch.chdir(tmp_path)  # the trainer's run directory
    torch.manual_seed(0)
    data = Digits(binarize="dynamic", flatten=True, test_fraction=0.2)
    model = ladder_vae([64], hidden=[16, 8], latent=[4, 2])
    vaekit.Trainer(max_epochs=1, batch_size=64, progress_bar=False, seed=0).fit(model, data)
    return model, data.test[:20]


def test_a_hierarchical_model_gets_ais_and_the_inference_gap_without_local_opt(tmp_path, monkeypatch):
    """AIS anneals through log_joint/log_prior/sample_prior, which a hierarchical VAE has; local optimisation
    (amortized) it has not, so local_opt=() gives the column without the approximation/amortization split.

    Measured on seeds 0-4 of this model (8 chains, 100 steps against IWAE with k=2000 on 20 points):
    AIS - IWAE between -0.006 and +0.026 nats, AIS - ELBO between 0.20 and 0.40 nats."""
    model, x = _tiny_ladder(tmp_path, monkeypatch)
    torch.manual_seed(1)
    col = inference_gaps(model, x, local_opt=(), iwae_k=2000, ais={"n_chains": 8, "n_steps": 100})
    assert col.own is None and col.label == "HierarchicalVAE" and col.local == {}
    assert col.log_px_source == "max(AIS, IWAE)"
    assert abs(col.ais - col.iwae) < 0.1             # two estimates of the same log p(x), AIS without q
    assert col.ais > col.elbo + 0.1 and col.iwae > col.elbo
    assert col.log_px >= max(col.ais, col.iwae)       # the mean of per-point maxima
    assert col.approximation_gap is None and col.amortization_gap is None
    assert col.inference_gap == pytest.approx(col.log_px - col.elbo)
    assert col.stderr["inference_gap"] > 0 and col.stderr["ais"] > 0
    table = gap_table([col])
    assert "| Inference gap |" in table and "| Approximation gap | — |" in table
    assert "HierarchicalVAE: no approximation/amortization split: it needs L[q*]" in table
    assert "HierarchicalVAE declares no amortized(x)" in table


def test_local_opt_on_a_hierarchical_model_is_refused_before_any_work(tmp_path, monkeypatch):
    from vaekit.inference import gaps
    from vaekit.models.hierarchical import ladder_vae

    def no_work(*args, **kwargs):
        raise AssertionError("an estimator ran before the refusal")

    monkeypatch.setattr(gaps, "iwae_log_likelihood", no_work)
    model = ladder_vae([64], hidden=[16, 8], latent=[4, 2])
    with pytest.raises(TypeError, match=r"HierarchicalVAE does not declare amortized.*local_opt=\['ffg'\] needs it; "
                                        r"pass local_opt=\(\)"):
        inference_gaps(model, torch.zeros(3, 64), local_opt=["ffg"], ais={"n_chains": 2, "n_steps": 5})
