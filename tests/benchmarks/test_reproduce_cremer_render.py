"""benchmarks/reproduce_cremer2018.py: the rendered table says which rows compare with the paper's,
with numbers computed from the rows (not written by hand), and ``--phase render`` rewrites only the .md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


@pytest.fixture
def script(load_benchmark):
    return load_benchmark("reproduce_cremer2018")


def row(quantity, vaekit, paper, n):
    return {"experiment": "cremer2018/mnist/ffg", "quantity": quantity, "paper": paper, "vaekit": vaekit,
            "stderr": 0.1, "n_points": n, "epochs": 3280, "paper_epochs": 3280, "device": "cpu", "wall_s": 1,
            "command": "python benchmarks/reproduce_cremer2018.py", "commit": "abc", "date": "d",
            "binarization": "static", "estimator": "e", "run": "r", "note": ""}


def test_reading_notes_compare_the_whole_test_set_with_the_paper(script):
    rows = [row("log_px", -81.5, -89.80, 100), row("iwae_all_test", -87.25, None, 10000)]
    text = "\n".join(script.reading_notes(rows))
    assert "subset mean is 5.75 nats above" in text
    assert "+2.55 nats from the paper's -89.80, so this model is at least that much better" in text
    worse = "\n".join(script.reading_notes([row("log_px", -81.5, -89.80, 100), row("iwae_all_test", -90.5, None, 10000)]))
    assert "-0.70 nats from the paper's -89.80." in worse and "better" not in worse
    no_paper = "\n".join(script.reading_notes([row("log_px", -81.5, None, 100), row("iwae_all_test", -87.0, None, 10000)]))
    assert "subset mean is 5.50 nats above" in no_paper and "from the paper's" not in no_paper
    assert script.reading_notes([row("log_px", -81.5, -89.8, 100)]) == []  # nothing to compare without the all-test row


def test_phase_render_rewrites_the_markdown_from_the_json(script, tmp_path):
    rows = [row("log_px", -81.5, -89.80, 100), row("iwae_all_test", -87.25, None, 10000)]
    (tmp_path / "reproductions.json").write_text(json.dumps(rows))
    assert script.main(["--phase", "render", "--out-dir", str(tmp_path)]) == 0
    md = (tmp_path / "reproductions.md").read_text()
    assert "| cremer2018/mnist/ffg | log_px | -89.80 | -81.50 |" in md and "## Reading the table" in md
    assert json.loads((tmp_path / "reproductions.json").read_text()) == rows


def test_the_iwae_cache_round_trips_and_is_keyed_by_what_changes_it(script, tmp_path):
    from vaekit.inference import IWAEResult

    result = IWAEResult(torch.tensor([-80.5, -90.25], dtype=torch.float64),
                        torch.tensor([-84.0, -95.0], dtype=torch.float64), k=5000, batch_size=2, chunk_size=100)
    path = script.iwae_cache_path(tmp_path / "cache", "af", Path("runs/20261205-114659"), 1640000, 5000, 10000, 0, "cpu")
    assert script.load_iwae(path) is None
    script.save_iwae(path, result, 1244.0)
    back, seconds = script.load_iwae(path)
    assert torch.equal(back.per_example, result.per_example) and torch.equal(back.elbo_per_example, result.elbo_per_example)
    assert (back.k, back.batch_size, back.chunk_size, seconds) == (5000, 2, 100, 1244.0)
    assert back.mean == result.mean
    keys = {script.iwae_cache_path(tmp_path, *args) for args in [
        ("af", Path("r"), 1, 5000, 10000, 0, "cpu"), ("ffg", Path("r"), 1, 5000, 10000, 0, "cpu"),
        ("af", Path("q"), 1, 5000, 10000, 0, "cpu"), ("af", Path("r"), 2, 5000, 10000, 0, "cpu"),
        ("af", Path("r"), 1, 1000, 10000, 0, "cpu"), ("af", Path("r"), 1, 5000, 500, 0, "cpu"),
        ("af", Path("r"), 1, 5000, 10000, 1, "cpu"), ("af", Path("r"), 1, 5000, 10000, 0, "cuda")]}
    assert len(keys) == 8  # model, run, training steps, k, the test images, the seed and the device each change it
    assert not list((tmp_path / "cache").glob("*.tmp"))
    path.write_bytes(path.read_bytes()[:100])  # a file cut short: read as absent (and recomputed), not a crash
    assert script.load_iwae(path) is None


def test_a_negative_seed_is_refused_before_any_work(script, capsys):
    with pytest.raises(SystemExit):
        script.main(["--phase", "evaluate", "--seed", "-2"])
    assert "--seed must be >= 0" in capsys.readouterr().err


def test_gaps_on_training_images_have_their_own_rows_and_reading(script):
    train = [dict(row(q, v, p, 100), experiment="cremer2018/mnist/ffg/train100")
             for q, v, p in [("log_px", -84.0, -89.80), ("approximation_gap", 1.5, 1.43), ("amortization_gap", 1.25, 1.34)]]
    test = [row("log_px", -81.5, -89.80, 100), row("iwae_all_test", -87.25, None, 10000),
            row("approximation_gap", 2.28, 1.43, 100), row("amortization_gap", 2.59, 1.34, 100)]
    text = "\n".join(script.reading_notes(test + train))
    assert ("`cremer2018/mnist/ffg/train100`: on the first training images, as the paper's gap scripts take them: "
            "log_px -84.00 (test points: -81.50), approximation_gap 1.50 (test points: 2.28), amortization_gap 1.25 "
            "(test points: 2.59).") in text
    assert "the `/train<n>` rows measure the first" in text and "neither is measured here yet" not in text
    assert "neither is measured here yet" in "\n".join(script.reading_notes(test))



def test_tanh_rows_are_read_against_their_elu_twin(script):
    elu = [row("log_px", -81.5, -89.80, 100), row("iwae_all_test", -87.25, None, 10000),
           row("approximation_gap", 2.28, 1.43, 100), row("amortization_gap", 2.59, 1.34, 100)]
    tanh = [dict(r, experiment="cremer2018/mnist/ffg_tanh", vaekit=v)
            for r, v in zip(elu, (-83.0, -89.5, 1.9, 1.2))]
    text = "\n".join(script.reading_notes(elu + tanh))
    assert ("`cremer2018/mnist/ffg_tanh` (tanh units) against `cremer2018/mnist/ffg` (ELU, otherwise the same config): "
            "iwae_all_test -89.50 against -87.25 (-2.25), log_px -83.00 against -81.50 (-1.50), approximation_gap 1.90 "
            "against 2.28 (-0.38), amortization_gap 1.20 against 2.59 (-1.39).") in text
    assert "the `_tanh` rows measure the second" in text and "the first is not measured here yet" in text
    # training-image rows of both: read against each other too, and both differences said measured
    train = [dict(r, experiment=f"{r['experiment']}/train100") for r in elu + tanh if r["quantity"] != "iwae_all_test"]
    both = "\n".join(script.reading_notes(elu + tanh + train))
    assert "`cremer2018/mnist/ffg_tanh/train100` (tanh units) against `cremer2018/mnist/ffg/train100`" in both
    assert "the `/train<n>` rows measure the first, the `_tanh` rows (the same model with tanh units) the second." in both
    assert not any("against `cremer2018/mnist/ffg`" in line for line in script.reading_notes(tanh))
    assert "neither is measured here yet" in "\n".join(script.reading_notes(tanh))  # no ELU twin: nothing measured
    short = [dict(r, epochs=1093) for r in tanh]  # a shortened tanh run is read with its difference said
    assert "Not like for like: epochs 1093 against 3280." in "\n".join(script.reading_notes(elu + short))
    odd = [dict(r, experiment=name) for name in ("cremer2018/_tanh", "cremer2018/mnist/_tanh") for r in tanh[:1]]
    assert "(tanh units)" not in "\n".join(script.reading_notes(elu + odd))  # short or empty names: no line, no crash

def test_evaluate_on_training_images_takes_the_first_ones_with_their_own_iwae(script, monkeypatch):
    """``gap_split="train"``: the gaps run on data.train[:n] (in order) with an IWAE of those images, the rows go to
    experiment .../train<n> without the test-set row; a bad split is refused before any work."""
    import vaekit.inference.gaps as gaps
    import vaekit.runs as runs
    from vaekit.models import mlp_vae

    torch.manual_seed(0)
    model = mlp_vae([12], latent_features=2, hidden=[6])

    class Data:
        train = torch.bernoulli(torch.full((9, 12), 0.4))
        test = torch.bernoulli(torch.full((7, 12), 0.4))

        def setup(self):
            pass

    seen = []
    real = gaps.inference_gaps

    def spy(model, x, **kw):
        seen.append((x.clone(), kw["iwae"]))
        return real(model, x, **kw)

    monkeypatch.setattr(runs, "load", lambda *a, **k: model)
    monkeypatch.setattr(runs, "load_data", lambda *a, **k: Data())
    monkeypatch.setattr(gaps, "inference_gaps", spy)
    monkeypatch.setattr(script, "training_record", lambda run: {"epochs": 3280, "steps": 1, "train_s": 0.0})
    s = {"n_points": 4, "iwae_k": 20, "ais_chains": 2, "ais_steps": 5, "local_opt_steps": 20, "local_opt_lr": 1e-3,
         "local_opt_tol": 1e-3, "test_points_iwae": None}
    with pytest.raises(ValueError, match="gap_split must be one of"):
        script.evaluate("ffg", Path("r"), s, "cpu", 0, None, "validation")
    assert not seen
    ev = script.evaluate("ffg", Path("r"), s, "cpu", 0, None, "train")
    (x, sub), = seen
    assert torch.equal(x, Data.train[:4]) and sub.per_example.shape == (4,) and sub.k == 20
    assert ev["n_points"] == 4 and ev["gap_split"] == "train" and ev["iwae_all"].per_example.shape == (7,)
    meta = {"device": "cpu", "command": "c", "commit": "abc", "date": "d"}
    rows = script.rows_for("ffg", Path("r"), ev, s, meta)
    assert {r["experiment"] for r in rows} == {"cremer2018/mnist/ffg/train4"}
    assert "iwae_all_test" not in {r["quantity"] for r in rows}
    assert all("first 4 training images" in r["note"] for r in rows)
    ev_test = script.evaluate("ffg", Path("r"), s, "cpu", 0, None, "test")
    assert not torch.equal(seen[-1][0], Data.train[:4]) and seen[-1][0].shape == (4, 12)
    assert {r["experiment"] for r in script.rows_for("ffg", Path("r"), ev_test, s, meta)} == {"cremer2018/mnist/ffg"}


TINY = {"n_points": 4, "iwae_k": 20, "ais_chains": 2, "ais_steps": 5, "local_opt_steps": 20, "local_opt_lr": 1e-3,
        "local_opt_tol": 1e-3, "test_points_iwae": None}


def _stand_in_run(script, monkeypatch):
    """A tiny untrained VAE and data standing in for a trained run (vaekit.runs.load/load_data, training_record);
    returns spies that count the calls of AIS and of local optimisation."""
    import functools

    import vaekit.inference.ais as ais_module
    import vaekit.inference.gaps as gaps
    import vaekit.runs as runs
    from vaekit.models import mlp_vae

    torch.manual_seed(0)
    model = mlp_vae([12], latent_features=2, hidden=[6])
    g = torch.Generator().manual_seed(1)

    class Data:
        train = torch.bernoulli(torch.full((9, 12), 0.4), generator=g)
        test = torch.bernoulli(torch.full((7, 12), 0.4), generator=g)

        def setup(self):
            pass

    calls = []
    real_ais, real_local = ais_module.ais_log_likelihood, gaps.optimize_local_posterior

    @functools.wraps(real_ais)
    def ais_spy(*args, **kwargs):
        calls.append("ais")
        return real_ais(*args, **kwargs)

    @functools.wraps(real_local)  # keeps the signature, which the budget check reads
    def local_spy(*args, **kwargs):
        calls.append(f"local:{type(kwargs['family']).__name__ if kwargs['family'] is not None else 'own'}")
        return real_local(*args, **kwargs)

    monkeypatch.setattr(runs, "load", lambda *a, **k: model)
    monkeypatch.setattr(runs, "load_data", lambda *a, **k: Data())
    monkeypatch.setattr(script, "training_record", lambda run: {"epochs": 3280, "steps": 1, "train_s": 0.0})
    monkeypatch.setattr(ais_module, "ais_log_likelihood", ais_spy)
    monkeypatch.setattr(gaps, "optimize_local_posterior", local_spy)
    return calls, local_spy


def _column(ev):
    """Every field of the evaluation's gap column (per-point standard errors included), less the call's wall time."""
    d = ev["column"].to_dict()
    d["settings"] = {k: v for k, v in d["settings"].items() if k != "seconds"}
    return d


META = {"device": "cpu", "command": "c", "commit": "abc", "date": "d"}


@pytest.mark.parametrize("split", ["test", "train"])
def test_evaluate_caches_each_gap_piece_and_a_rerun_reads_them_with_the_same_numbers(script, monkeypatch, tmp_path,
                                                                                     capsys, split):
    calls, _ = _stand_in_run(script, monkeypatch)
    cache = tmp_path / "cache"
    fresh = script.evaluate("ffg", Path("r"), TINY, "cpu", 0, None, split)  # no cache at all
    assert calls == ["ais", "local:AuxiliaryFlow", "local:own"]
    first = script.evaluate("ffg", Path("r"), TINY, "cpu", 0, cache, split)
    assert _column(first) == _column(fresh)  # caching changes no number
    pieces = sorted(p.name.split("-")[3:5] for p in cache.glob("ffg-r-step1-*.pt") if "-iwae-" not in p.name)
    assert pieces == [["ais", pieces[0][1]], ["local", "af"], ["local", "gaussian"]]
    assert not list(cache.glob("*.tmp"))
    calls.clear()
    capsys.readouterr()
    torch.manual_seed(99)  # whatever torch's generator holds, the rerun gives the same numbers
    second = script.evaluate("ffg", Path("r"), TINY, "cpu", 0, cache, split)
    assert calls == []  # nothing recomputed
    out = capsys.readouterr().out
    assert all(f"ffg: {p} from {cache}" in out for p in ("ais", "local:af", "local:gaussian"))
    assert "(ais, local:af, local:gaussian from the cache)" in out
    assert _column(second) == _column(first)
    assert second["gaps_s"] == first["gaps_s"] > 0  # the wall time sums the pieces' recorded seconds
    rows = lambda ev: script.rows_for("ffg", Path("r"), ev, TINY, META)  # noqa: E731
    assert rows(second) == rows(first)
    # the AF piece alone deleted: only it runs again, with the draws it had (seeded on its own, not after AIS)
    af, = cache.glob("ffg-r-step1-local-af-*.pt")
    af.unlink()
    third = script.evaluate("ffg", Path("r"), TINY, "cpu", 0, cache, split)
    assert calls == ["local:AuxiliaryFlow"]
    assert _column(third) == _column(first)


def test_a_run_killed_during_local_optimisation_resumes_with_ais_from_the_cache(script, monkeypatch, tmp_path, capsys):
    import functools

    import vaekit.inference.gaps as gaps

    calls, local_spy = _stand_in_run(script, monkeypatch)
    cache = tmp_path / "cache"
    fresh = script.evaluate("ffg", Path("r"), TINY, "cpu", 0, None, "test")

    @functools.wraps(local_spy)
    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(gaps, "optimize_local_posterior", killed)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        script.evaluate("ffg", Path("r"), TINY, "cpu", 0, cache, "test")
    assert calls == ["ais"]
    assert len(list(cache.glob("ffg-r-step1-ais-*.pt"))) == 1 and not list(cache.glob("*local*"))
    monkeypatch.setattr(gaps, "optimize_local_posterior", local_spy)
    calls.clear()
    capsys.readouterr()
    resumed = script.evaluate("ffg", Path("r"), TINY, "cpu", 0, cache, "test")
    assert calls == ["local:AuxiliaryFlow", "local:own"]  # AIS loaded, not recomputed
    out = capsys.readouterr().out
    assert f"ffg: ais from {cache}" in out and "(ais from the cache)" in out and "local:af computed in" in out
    assert _column(resumed) == _column(fresh)


def test_the_gap_piece_cache_round_trips_and_is_keyed_by_what_changes_it(script, tmp_path):
    from vaekit.inference import AISResult, LocalOptResult

    base = dict(label="af", run=Path("runs/20261205-114659"), steps=1640000,
                points={"split": "test", "n": 1000, "seed": 0, "of": 10000}, piece="ais",
                settings={"n_chains": 16, "n_steps": 1000}, seed=0, device="cpu")
    variants = [{"label": "ffg"}, {"run": Path("runs/20261206-000000")}, {"steps": 1640500},
                {"points": {**base["points"], "n": 200}}, {"points": {**base["points"], "seed": 1}},
                {"points": {**base["points"], "of": 500}}, {"points": {"split": "train", "n": 1000}},
                {"piece": "local:af"}, {"settings": {"n_chains": 100, "n_steps": 1000}},
                {"settings": {"n_chains": 16, "n_steps": 10000}}, {"seed": 1}, {"device": "cuda:0"}]
    key = lambda **kw: script.piece_key(**{**base, **kw})  # noqa: E731
    paths = {script.piece_cache_path(tmp_path, key(**v)) for v in [{}, *variants]}
    assert len(paths) == len(variants) + 1  # each setting changes the file
    assert script.piece_cache_path(tmp_path, key(device="cuda")) == script.piece_cache_path(tmp_path, key(device="cuda:1"))
    assert script.piece_cache_path(tmp_path, key()).name.startswith("af-20261205-114659-step1640000-ais-")

    lw = torch.tensor([[-80.0, -81.5], [-90.25, -89.0], [-70.0, -70.5]], dtype=torch.float64)
    ais = AISResult(lw, "forward", torch.tensor([0.6, 0.7, 0.8], dtype=torch.float64),
                    torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64), settings={"n_chains": 2, "device": "cpu", "step_size_bounds": (1e-4, 0.5)},
                    seconds=12.5, grad_evals=40, trace={"acceptance": torch.tensor([0.5]), "step_size": torch.tensor([0.1])})
    path = script.piece_cache_path(tmp_path / "cache", key())
    assert script.load_piece(path, key()) is None
    script.save_piece(path, key(), ais, 13.0)
    back, seconds = script.load_piece(path, key())
    assert seconds == 13.0 and isinstance(back, AISResult)
    for name in ("log_weights", "acceptance", "step_size", "per_example", "log_weight_var", "ess"):
        assert torch.equal(getattr(back, name), getattr(ais, name)), name
    assert (back.direction, back.settings, back.seconds, back.grad_evals, back.mean, back.stderr) == \
        (ais.direction, ais.settings, ais.seconds, ais.grad_evals, ais.mean, ais.stderr)
    assert all(torch.equal(back.trace[k], ais.trace[k]) for k in ais.trace)
    assert script.load_piece(path, key(seed=1)) is None  # a file that holds another key is not read as this one

    local = LocalOptResult(elbo=torch.tensor([-88.5, -91.0, -70.25], dtype=torch.float64),
                           initial_elbo=torch.tensor([-90.0, -92.0, -71.0], dtype=torch.float64),
                           steps=torch.tensor([40000, 40000, 1200]), converged=torch.tensor([False, False, True]),
                           family="AuxiliaryFlow")
    lpath = script.piece_cache_path(tmp_path / "cache", key(piece="local:af"))
    script.save_piece(lpath, key(piece="local:af"), local, 4000.0)
    lback, lseconds = script.load_piece(lpath, key(piece="local:af"))
    assert lseconds == 4000.0 and lback.family == "AuxiliaryFlow" and lback.mean == local.mean
    for name in ("elbo", "initial_elbo", "steps", "converged"):
        assert torch.equal(getattr(lback, name), getattr(local, name)), name
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_the_tanh_model_differs_from_the_ffg_model_only_in_its_activation(script):
    import yaml

    ffg, tanh = (yaml.safe_load(script.MODELS[m].read_text()) for m in ("ffg", "ffg_tanh"))
    for net in ("encoder", "decoder"):  # the FFG networks' activations set to tanh, nothing else of them touched
        args = ffg["model"]["init_args"][net]["init_args"]
        assert args["activation"] == "elu" and args.get("output_activation") in (None, "elu")
        args["activation"] = "tanh"
        if "output_activation" in args:
            args["output_activation"] = "tanh"
    assert tanh["trainer"].pop("run_name") == "cremer_mnist_tanh" and ffg["trainer"].pop("run_name") == "cremer_mnist"
    assert tanh == ffg
    assert script.PAPER["ffg_tanh"] == script.PAPER["ffg"]
    assert script.DEFAULT_MODELS == ("ffg", "af")  # the tanh model runs only when asked for


def test_igr_rows_are_read_against_gumbel_softmax_at_its_best(script):
    def igr(method, tau, v):
        return {**row("test_ll", v, None, 10000), "experiment": f"igr2020/binarized_mnist/{method}/tau={tau}"}

    rows = [igr("gs", 0.5, -129.5), igr("gs", 0.1, -131.0), igr("igr_i", 0.1, -109.9), igr("igr_sb", 0.1, -130.0)]
    text = "\n".join(script.reading_notes(rows))
    assert "## Reading the table" in text and "Binarization" not in text  # no Cremer rows, no Cremer notes
    assert "gs -129.50 at tau=0.5 (of 0.1, 0.5)" in text and "igr_i -109.90 at tau=0.1 (of 0.1)" in text
    assert "Against GS's best: igr_i above it, igr_sb not." in text
    assert script.reading_notes([igr("gs", 0.5, -129.5)]).count("") == 2  # heading only around the one line


def test_igr_notes_say_when_a_difference_is_within_noise_or_the_rows_differ_in_settings(script):
    def igr(method, tau, v, se=0.4, note="lr 0.001"):
        return {**row("test_ll", v, None, 10000), "experiment": f"igr2020/binarized_mnist/{method}/tau={tau}",
                "stderr": se, "note": note}

    text = "\n".join(script.reading_notes([igr("gs", 0.5, -129.5), igr("igr_sb", 0.1, -129.0)]))
    assert "igr_sb above it (igr_sb within two standard errors of it)." in text and "Not like for like" not in text
    text = "\n".join(script.reading_notes([igr("gs", 0.5, -129.5), igr("igr_i", 0.1, -109.9, note="lr 0.0001")]))
    assert "(igr_i within" not in text and "Not like for like: the rows differ in 3280 epochs; lr 0.0001; e / " in text
