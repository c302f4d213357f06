"""inference_gaps with pieces computed earlier (``precomputed``), a callback per computed piece (``on_result``) and a
seed per piece (``seed``): what a caller needs to keep each estimate as it finishes and resume a killed evaluation."""

from __future__ import annotations

import functools

import pytest
import torch

import vaekit
from vaekit.inference import gaps
from vaekit.inference.budget import WorkBudgetError
from vaekit.inference.gaps import inference_gaps
from vaekit.models import mlp_vae

LOCAL = {"max_steps": 20, "check_every": 10, "eval_k": 20}
AIS = {"n_chains": 2, "n_steps": 5}


def _model_and_points(n=4):
    torch.manual_seed(0)
    model = mlp_vae([12], 2, hidden=[6])
    return model, torch.bernoulli(torch.full((n, 12), 0.4), generator=torch.Generator().manual_seed(1))


def _no_work(monkeypatch):
    import vaekit.inference.ais as ais_module

    def no_work(*args, **kwargs):
        raise AssertionError("an estimator ran before the refusal")

    for module, name in [(gaps, "iwae_log_likelihood"), (ais_module, "ais_log_likelihood")]:
        monkeypatch.setattr(module, name, no_work)
    monkeypatch.setattr(gaps, "optimize_local_posterior", functools.wraps(gaps.optimize_local_posterior)(no_work))


def _pieces(model, x, **kw):
    """The column and every piece that on_result saw, as {piece: (result, seconds)}."""
    seen = {}
    col = inference_gaps(model, x, iwae_k=20, ais=AIS, local_opt=["ffg", "af"], local_opt_kwargs=LOCAL,
                         on_result=lambda piece, result, s: seen.__setitem__(piece, (result, s)), **kw)
    return col, seen


def _fields(col):
    d = col.to_dict()
    d["settings"] = {k: v for k, v in d["settings"].items() if k != "seconds"}  # wall time of the call
    return d


def test_precomputed_pieces_are_reused_and_the_seed_makes_the_rest_independent_of_them(monkeypatch):
    model, x = _model_and_points()
    col, seen = _pieces(model, x, seed=7)
    assert list(seen) == ["iwae", "ais", "local:gaussian", "local:af"] and all(s > 0 for _, s in seen.values())
    assert col.ais == seen["ais"][0].mean and col.local["af"] == seen["local:af"][0].mean
    torch.manual_seed(123)  # another state of torch's generator: the seeded pieces do not see it
    again, seen_again = _pieces(model, x, seed=7)
    assert _fields(again) == _fields(col)
    # AIS and the FFG piece passed in: neither runs again, and the AF piece, computed, draws what it drew before
    import vaekit.inference.ais as ais_module

    calls = []
    real = ais_module.ais_log_likelihood
    monkeypatch.setattr(ais_module, "ais_log_likelihood", lambda *a, **k: calls.append("ais") or real(*a, **k))
    torch.manual_seed(321)
    part, seen_part = _pieces(model, x, seed=7, precomputed={"ais": seen["ais"][0],
                                                              "local:gaussian": seen["local:gaussian"][0]})
    assert calls == [] and list(seen_part) == ["iwae", "local:af"]
    assert _fields(part) == _fields(col)
    assert torch.equal(seen_part["local:af"][0].elbo, seen["local:af"][0].elbo)
    # without the seed the AF piece follows torch's generator, so it differs between states (what the seed fixes)
    torch.manual_seed(5)
    a, _ = _pieces(model, x)
    torch.manual_seed(6)
    b, _ = _pieces(model, x)
    assert a.local["af"] != b.local["af"]


@pytest.mark.parametrize("precomputed, match", [
    ({"ais": "three"}, r"precomputed\['ais'\] must be of type AISResult, got str"),
    ({"local:af": None}, r"precomputed\['local:af'\] must be of type LocalOptResult, got NoneType"),
    ({"ais+": None}, r"precomputed\['ais\+'\] is not an estimate of this call; accepted: 'ais', 'local:gaussian', "
                     r"'local:af'"),
])
def test_precomputed_pieces_of_the_wrong_kind_are_refused_before_any_work(monkeypatch, precomputed, match):
    model, x = _model_and_points()
    _no_work(monkeypatch)
    state = torch.get_rng_state()
    with pytest.raises(vaekit.InvalidArgumentError, match=match):
        inference_gaps(model, x, iwae_k=20, ais=AIS, local_opt=["ffg", "af"], local_opt_kwargs=LOCAL,
                       precomputed=precomputed, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # torch's generator untouched by a refusal


def test_precomputed_pieces_for_other_points_or_estimates_are_refused_before_any_work(monkeypatch):
    model, x = _model_and_points(4)
    _, seen = _pieces(model, x[:3])  # pieces of 3 points
    _no_work(monkeypatch)
    for piece in ("ais", "local:gaussian", "local:af"):
        with pytest.raises(vaekit.InvalidArgumentError,
                           match=rf"precomputed\['{piece}'\] holds \(3,\) per-point values but x has 4 points"):
            inference_gaps(model, x, iwae_k=20, ais=AIS, local_opt=["ffg", "af"], local_opt_kwargs=LOCAL,
                           precomputed={piece: seen[piece][0]})
    with pytest.raises(vaekit.InvalidArgumentError, match=r"precomputed\['ais'\] is not an estimate of this call; "
                                                          r"accepted: 'local:gaussian'$"):
        inference_gaps(model, x[:3], iwae_k=20, local_opt=["ffg"], precomputed={"ais": seen["ais"][0]})
    with pytest.raises(vaekit.InvalidArgumentError, match=r"accepted: none \(no ais, no local_opt\)"):
        inference_gaps(model, x[:3], iwae_k=20, local_opt=(), precomputed={"local:af": seen["local:af"][0]})
    with pytest.raises(vaekit.InvalidArgumentError, match="on_result must be a callable"):
        inference_gaps(model, x, iwae_k=20, local_opt=(), on_result="print")
    with pytest.raises(vaekit.InvalidArgumentError, match="seed must be an int >= 0, got -1"):
        inference_gaps(model, x, iwae_k=20, local_opt=(), seed=-1)
    with pytest.raises(vaekit.InvalidArgumentError, match=r"seed must be an int in \[0, 2\*\*63 - 4\]"):
        inference_gaps(model, x, iwae_k=20, local_opt=["ffg", "af"], seed=2**63 - 3)
    with pytest.raises(vaekit.InvalidArgumentError, match=r"precomputed\['iwae'\]: pass a precomputed IWAE as iwae="):
        inference_gaps(model, x[:3], iwae_k=20, local_opt=["ffg"], precomputed={"iwae": seen["iwae"][0]})
    # a piece of another estimate: AIS of other chains or steps, a local optimisation of another family
    with pytest.raises(vaekit.InvalidArgumentError,
                       match=r"precomputed\['ais'\] ran 2 chains x 5 steps but ais asks for 3 x 5"):
        inference_gaps(model, x[:3], iwae_k=20, ais={**AIS, "n_chains": 3}, local_opt=(),
                       precomputed={"ais": seen["ais"][0]})
    with pytest.raises(vaekit.InvalidArgumentError, match=r"precomputed\['local:gaussian'\] optimised a "):
        inference_gaps(model, x[:3], iwae_k=20, local_opt=["ffg"], precomputed={"local:gaussian": seen["local:af"][0]})


def test_only_the_work_that_will_run_is_held_to_the_budget(monkeypatch):
    model, x = _model_and_points(3)
    col, seen = _pieces(model, x)
    huge_ais = {"n_chains": 10**6, "n_steps": 10**6}
    huge_local = {**LOCAL, "max_steps": 10**9}
    with pytest.raises(WorkBudgetError):
        inference_gaps(model, x, iwae=seen["iwae"][0], ais=huge_ais, local_opt=["ffg"], local_opt_kwargs=LOCAL)
    with pytest.raises(WorkBudgetError):
        inference_gaps(model, x, iwae=seen["iwae"][0], ais=AIS, local_opt=["ffg"], local_opt_kwargs=huge_local)
    _no_work(monkeypatch)  # everything passed in: nothing runs, nothing is over the budget
    again = inference_gaps(model, x, iwae=seen["iwae"][0], ais=AIS, local_opt=["ffg", "af"],
                           local_opt_kwargs=huge_local,
                           precomputed={p: seen[p][0] for p in ("ais", "local:gaussian", "local:af")})
    assert (again.log_px, again.ais, again.local, again.stderr) == (col.log_px, col.ais, col.local, col.stderr)
