"""Issue 15's "done when": from a CSV of grouped observations, ``vaekit fit`` and ``vaekit evaluate`` alone give
the variance components, group effects and test RMSE of statsmodels' MixedLM (a linear mixed model with
random intercepts) fitted to the same data.

The run is ``examples/configs/groups_table.yaml`` with its predictor made linear (``hidden: []``) and one
latent per school injected as a bias: the linear mixed model itself, with the config's learned prior
N(mu0, sigma0^2) (type-II maximum likelihood of the intercepts' spread), Gaussian likelihood with a learned
scale, latent table at 10x the learning rate and standardized ``y`` (so the comparison also checks that
the variance components are mapped back to the outcome's scale).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm

import vaekit
from vaekit.cli import main
from vaekit.runs import load_data

ROOT = Path(__file__).resolve().parents[2]


def simulate_csv(path: Path, n_groups: int, per_group: int, seed: int = 0, tau2: float = 0.5, sigma2: float = 1.0) -> Path:
    """y = 3 + 2 x + b_g + e, b_g ~ N(0, tau2), e ~ N(0, sigma2), in the units of a test score (x 10 + 50)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=g.size)
    y = 3.0 + 2.0 * x + rng.normal(0, np.sqrt(tau2), n_groups)[g] + rng.normal(0, np.sqrt(sigma2), g.size)
    path.write_text("school,x,score\n" + "".join(f"s{a},{float(b)!r},{float(c)!r}\n" for a, b, c in zip(g, x, 50 + 10 * y)))
    return path


def mixedlm(data) -> dict:
    """MixedLM (REML, statsmodels' default) on the training split in the outcome's units; BLUP predictions on test."""
    x, g = data.train["x"].double().numpy(), data.train["groups"][:, 0].numpy()
    y = data.unstandardize_y(data.train["y"]).double().numpy()
    fit = sm.MixedLM(y, sm.add_constant(x), groups=g).fit()
    blup = np.array([float(np.asarray(fit.random_effects[j])[0]) for j in range(len(data.group_names[0]))])
    xt, gt = data.test["x"].double().numpy(), data.test["groups"][:, 0].numpy()
    pred = sm.add_constant(xt, has_constant="add") @ np.asarray(fit.fe_params) + blup[gt]
    yt = data.unstandardize_y(data.test["y"]).double().numpy()
    return {"tau2": float(np.asarray(fit.cov_re)[0, 0]), "sigma2": float(fit.scale), "effects": blup,
            "rmse": float(np.sqrt(np.mean((pred - yt) ** 2)))}


def fit_and_evaluate(tmp_path: Path, csv: Path, *overrides: str) -> Path:
    """``vaekit fit`` of groups_table.yaml on ``csv`` as a linear mixed model, then ``vaekit evaluate RUN``."""
    assert main(["fit", "--config", str(ROOT / "examples" / "configs" / "groups_table.yaml"), "--data.path", str(csv),
                 "--data.target", "score", "--data.features", "[x]", "--data.groups", "[school]", "--data.val_fraction", "0.0",
                 "--model.init_args.predictor.init_args.in_features", "1", "--model.init_args.data_shape", "[1]",
                 "--model.init_args.predictor.init_args.hidden", "[]", "--model.init_args.injection", "bias",
                 "--model.init_args.latent_features", "1", "--objective.init_args.warmup_steps", "0",
                 "--trainer.root_dir", str(tmp_path / "runs"), "--trainer.progress_bar", "false", *overrides]) == 0
    (run,) = (tmp_path / "runs" / "groups_table").glob("*")
    assert main(["evaluate", str(run), "--checkpoint", "last", "--ks", "1", "--max-groups", "1"]) == 0
    return run


def check_against_mixedlm(run: Path, rel: float, corr: float) -> dict:
    """The run's eval/variance_components.json, group effects and test RMSE against MixedLM's; returns the components."""
    vc = json.loads((run / "eval" / "variance_components.json").read_text())
    model, data = vaekit.load(run, checkpoint="last"), load_data(run)
    data.setup()
    ref = mixedlm(data)
    assert vc["units"] == "outcome" and vc["residual_source"] == "learned"
    assert vc["between"]["school"] == pytest.approx(ref["tau2"], rel=rel), (vc, ref["tau2"], ref["sigma2"])
    assert vc["residual"] == pytest.approx(ref["sigma2"], rel=rel), (vc, ref["tau2"], ref["sigma2"])
    effects = model.group_effects(data)[:, 0].numpy()  # outcome units, like MixedLM's BLUPs
    assert np.corrcoef(effects, ref["effects"])[0, 1] > corr
    assert vc["between_posterior"]["school"] == pytest.approx(np.var(ref["effects"], ddof=1), rel=rel)
    pred = data.unstandardize_y(model.predict(data.test["x"], data.test["groups"]))
    rmse = float(((pred - data.unstandardize_y(data.test["y"])) ** 2).mean().sqrt())
    assert rmse == pytest.approx(ref["rmse"], rel=0.01)
    return vc


@pytest.mark.filterwarnings("ignore:the data-efficiency curve")  # evaluate's curve on 1 group: not what this test reads
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow),
                                  pytest.param(3, marks=pytest.mark.slow), pytest.param(4, marks=pytest.mark.slow)])
def test_variance_components_effects_and_rmse_match_mixedlm(tmp_path, capsys, seed):
    """The issue's setting: 40 schools x 25 students, tau^2 = 0.5, sigma^2 = 1 (x 100 in the outcome's units).

    Seed 0 runs in the default suite (about 5-10 s on 2 cores); seeds 1-4 are ``slow``. Measured over the
    five seeds: tau^2 within 3% of MixedLM's REML estimate, sigma^2 within 2%, effects correlation
    > 0.9996, test RMSE within 0.2%; 160 steps instead of 320 leave tau^2 7-12% low, so the 10% bound
    fails an under-trained or biased model.
    """
    csv = simulate_csv(tmp_path / "scores.csv", 40, 25, seed=seed)
    run = fit_and_evaluate(tmp_path, csv, "--trainer.max_epochs", "40", "--trainer.batch_size", "100", "--trainer.lr", "0.1",
                           "--trainer.lr_schedule", "cosine")
    printed = capsys.readouterr().out
    vc = check_against_mixedlm(run, rel=0.10, corr=0.99)
    assert f"between school: {vc['between']['school']:.4g} (prior)" in printed and f"residual: {vc['residual']:.4g} (learned)" in printed
