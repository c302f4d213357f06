"""Group-level latent variables: none / factor / bias / double on grouped benchmarks.

- High School and Beyond (math achievement regression, school latents) against a linear mixed
  model (statsmodels MixedLM, random school intercepts) on the same split: test RMSE, the
  correlation of the model's school effects with MixedLM's random effects, and the variance
  components in the outcome's units (between-school variance under the learned prior, variance
  of the posterior-mean school effects, residual variance) beside MixedLM's (tau^2, variance of
  the BLUPs, sigma^2).
- Synthetic MNIST writers with label skew (ImageCNN small, 3 seeds): test accuracy, log loss and per-writer
  percentiles.
- Shakespeare by role and play (CharLSTM, next character): test accuracy and percentiles.
- New groups (split by group): data-efficiency curve k = 1, 2, 5, 10, 20, prior mean vs
  optimised posterior (and the amortized encoder on writers).

    python benchmarks/groups.py --short      # about 5 min on one CPU thread
    python benchmarks/groups.py              # the full CPU run (about 1 h on one thread)
    python benchmarks/groups.py --only writers new_writers   # rerun sections, keep the others
    pip install -r benchmarks/requirements-groups.txt   # statsmodels for the MixedLM baseline

Writes benchmarks/results/groups_cpu.md and .json (with the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from vaekit.data.grouped_sets import HighSchoolBeyond, ShakespeareRoles
from vaekit.data.grouped_writers import MNISTWriters
from vaekit.inference.groups import data_efficiency_curve, fit_group_encoder
from vaekit.models.group import GroupPredictor
from vaekit.nn import eval_mode
from vaekit.nn.predictors import CharLSTM, ImageCNN, MLPPredictor
from vaekit.objectives import ELBO

MODES = ("none", "factor", "bias", "double")
#: Prior of the group vectors in every latent model here. The learned hierarchical prior fits the
#: spread of the group effects, so new-group inference from a few examples is shrunk by the
#: spread the training groups show (a fixed N(0, I) prior ignores it); the committed results
#: (results/groups_cpu.md) are all with the learned prior.
PRIOR = "learned"
#: The writers' group effect on the labels: each writer writes the digits in its own proportions
#: ~ Dirichlet(LABEL_SKEW * 1_10) (LEAF FEMNIST's label skew across clients), which a writer
#: latent added to the logits expresses exactly. No glyph swaps: a swap needs an image x writer
#: interaction that factor/bias cannot express (measured: flat new-writer curves).
LABEL_SKEW = 0.3
SWAPS = 0
#: Learning rate of the group posteriors (the latent table) relative to the network's. A group's
#: row gets a gradient only from the batches that hold its examples, and the learned prior
#: (updated every step) otherwise shrinks to the rows' initial spread before they move (measured
#: on writers: writer biases of spread 0.15 logits after 4 epochs at 1x, against 1.1 at 10x).
LATENT_LR_MULT = 10.0
SECTIONS = ("hsb", "writers", "shakespeare", "new_hsb", "new_writers")
RESULTS = Path(__file__).parent / "results"


def settings(short: bool) -> dict[str, dict]:
    """Sizes and training settings of each section (``short``: the quick run)."""
    writers = {"n_writers": 60 if short else 100, "digits_per_writer": 200 if short else 400, "label_skew": LABEL_SKEW,
               "glyph_swaps": SWAPS, "cnn": "small", "latent_features": 8, "epochs": 5 if short else 8, "batch_size": 64,
               "lr": 2e-3, "latent_lr_mult": LATENT_LR_MULT}
    seeds = {"seeds": [0] if short else [0, 1, 2]}
    return {
        "hsb": {"epochs": 25 if short else 80, "batch_size": 256, "lr": 3e-3, "latent_lr_mult": LATENT_LR_MULT},
        "writers": {**writers, **seeds, "split": "example"},
        "shakespeare": {"max_groups": 40 if short else SHAKESPEARE_GROUPS, "max_windows_per_group": 100 if short else SHAKESPEARE_WINDOWS,
                        "hidden": 64 if short else SHAKESPEARE_HIDDEN, "epochs": 10 if short else SHAKESPEARE_EPOCHS,
                        "batch_size": 64, "lr": 3e-3, "latent_lr_mult": LATENT_LR_MULT, "latent_features": 8, "seeds": [0],
                        "split": "example"},
        "new_hsb": {"epochs": 25 if short else 80, "steps": 60 if short else 150, "max_groups": 40, "test_fraction": 0.25},
        "new_writers": {**writers, "split": "group", "test_fraction": 0.25, "encoder_steps": 150 if short else 600,
                        "steps": 40 if short else 100, "max_groups": 15 if short else 25},
    }


#: The longest Shakespeare run that fits the CPU budget (single thread): roles, windows per role,
#: LSTM units and epochs.
SHAKESPEARE_GROUPS, SHAKESPEARE_WINDOWS, SHAKESPEARE_HIDDEN, SHAKESPEARE_EPOCHS = 400, 200, 128, 7


def machine() -> dict:
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                   if l.startswith("Model name"))
    except Exception:  # noqa: BLE001 - lscpu missing
        cpu = platform.processor()
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}


def sized(data, seed: int, predictor, **kwargs) -> GroupPredictor:
    """``GroupPredictor.from_data(data, predictor, **kwargs)`` drawn after ``torch.manual_seed(seed)``.

    The random order of the script that wrote the committed results (``groups_cpu.{md,json}``,
    ``groups_cpu_shakespeare_seed1.json``): groups.py before commit c83c57b, whose ``train``
    reseeded and then called ``model.bind_data(data)``. Each caller seeds and builds the
    predictor and passes it here (so it is built before the reseed), the group tables and the
    layers the latents add are drawn from ``seed``, and :func:`train` continues that same stream
    (it does not reseed). Checked against that script on tiny settings of every section: the same
    initial weights, batches and first losses (tests/benchmarks/test_groups_rng.py).
    """
    torch.manual_seed(seed)
    return GroupPredictor.from_data(data, predictor, **kwargs)


def train(model: GroupPredictor, data, epochs: int, batch_size: int, lr: float, warmup: int,
          latent_lr_mult: float = 1.0) -> float:
    """Minibatch Adam on the ELBO (the same objective as vaekit fit); returns seconds.

    The group posteriors (``model.latent``) learn at ``latent_lr_mult * lr`` (see LATENT_LR_MULT).
    The batch order and the ELBO's draws continue the random stream of :func:`sized` (no reseed).
    """
    table = [p for n, p in model.named_parameters() if n.startswith("latent.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("latent.")]
    opt = torch.optim.Adam([{"params": rest}] + ([{"params": table, "lr": lr * latent_lr_mult}] if table else []), lr=lr)
    obj, step, t0 = ELBO(warmup_steps=warmup), 0, time.time()
    n = data.train["y"].shape[0]
    for _ in range(epochs):
        for idx in torch.randperm(n).split(batch_size):
            loss, _ = obj(model, {k: v[idx] for k, v in data.train.items()}, step)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    return time.time() - t0


def evaluate(model: GroupPredictor, split: dict) -> dict:
    with eval_mode(model), torch.no_grad():
        return model.validation_report(split, 2048).metrics


def hsb(cfg: dict) -> dict:
    data = HighSchoolBeyond(split="example", standardize=True, standardize_y=True, seed=0)
    data.setup()
    out = {}
    for mode in MODES:
        torch.manual_seed(0)
        model = sized(data, 0, MLPPredictor(3, 1, hidden=[32, 32]), likelihood="gaussian_learned", latent_features=2,
                      injection=mode, prior="learned")
        secs = train(model, data, cfg["epochs"], cfg["batch_size"], cfg["lr"], 200, latent_lr_mult=cfg["latent_lr_mult"])
        res = {**evaluate(model, data.test), "seconds": secs}
        vc = model.variance_components(data)  # outcome units (math achievement points^2)
        nan = float("nan")
        res.update({"tau2": next(iter(vc.between.values()), nan), "effects_var": next(iter(vc.between_posterior.values()), nan),
                    "sigma2": vc.residual})
        if mode != "none":  # school effect: mean change of the prediction over training students (outcome units)
            res["effects"] = model.group_effects(data, max_x=500)[:, 0].tolist()
        out[mode] = res
    try:
        out["mixedlm"] = mixedlm(data)
        for mode in MODES[1:]:
            e, r = np.array(out[mode].pop("effects")), np.array(out["mixedlm"]["effects"])
            out[mode]["corr_with_mixedlm"] = float(np.corrcoef(e, r)[0, 1])
        out["mixedlm"].pop("effects")
    except ImportError:
        out["mixedlm"] = {"error": "statsmodels not installed (pip install -r benchmarks/requirements-groups.txt)"}
    return out


def mixedlm(data) -> dict:
    import statsmodels.api as sm

    x, y, g = (data.train[k].numpy() for k in ("x", "y", "groups"))
    fit = sm.MixedLM(y.astype(float), sm.add_constant(x.astype(float)), groups=g[:, 0]).fit()  # REML
    G = len(data.group_names[0])
    re = np.zeros(G)
    for k, v in fit.random_effects.items():
        re[int(k)] = float(np.asarray(v)[0])
    xt, yt, gt = (data.test[k].numpy() for k in ("x", "y", "groups"))
    pred = sm.add_constant(xt.astype(float), has_constant="add") @ np.asarray(fit.fe_params) + re[gt[:, 0]]
    s2 = float(data.target_std) ** 2  # y was standardized: variances back in the outcome's units
    return {"rmse": float(np.sqrt(np.mean((pred - yt) ** 2))), "effects": re.tolist(),
            "tau2": float(np.asarray(fit.cov_re)[0, 0]) * s2, "effects_var": float(np.var(re, ddof=1)) * s2,
            "sigma2": float(fit.scale) * s2}


def writers_data(cfg: dict) -> MNISTWriters:
    extra = {"test_fraction": cfg["test_fraction"]} if "test_fraction" in cfg else {}
    data = MNISTWriters(n_writers=cfg["n_writers"], digits_per_writer=cfg["digits_per_writer"], split=cfg["split"], seed=0,
                        download=False, glyph_swaps=cfg["glyph_swaps"], label_skew=cfg["label_skew"], **extra)
    data.setup()
    return data


def classification(name: str, data, make_net, cfg: dict) -> dict:
    """Each mode trained with each seed (model init and batch order; the data are fixed); metrics
    averaged over seeds, per-seed metrics in ``per_seed`` and the per-seed gain over ``none``."""
    out: dict[str, dict] = {}
    for mode in MODES:
        runs = []
        for seed in cfg["seeds"]:
            torch.manual_seed(seed)
            model = sized(data, seed, make_net(), latent_features=cfg["latent_features"], prior=PRIOR,
                          injection=mode if data.level_names[1:] == [] else [mode] * len(data.level_names))
            secs = train(model, data, cfg["epochs"], cfg["batch_size"], cfg["lr"], 300, latent_lr_mult=cfg["latent_lr_mult"])
            runs.append({**evaluate(model, data.test), "train_accuracy": evaluate(model, data.train)["accuracy"], "seconds": secs})
            print(f"  {name} {mode} seed {seed}: acc={runs[-1]['accuracy']:.4f} log loss={runs[-1]['log_loss']:.4f} ({secs:.0f}s)",
                  flush=True)
        out[mode] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        out[mode]["accuracy_sd"] = float(np.std([r["accuracy"] for r in runs], ddof=1)) if len(runs) > 1 else float("nan")
        out[mode]["per_seed"] = runs
        base = out["none"]["per_seed"]
        out[mode]["accuracy_gain"] = float(np.mean([r["accuracy"] - b["accuracy"] for r, b in zip(runs, base)]))
        out[mode]["log_loss_gain"] = float(np.mean([b["log_loss"] - r["log_loss"] for r, b in zip(runs, base)]))
    return out


def curve(model: GroupPredictor, split: dict, methods: tuple[str, ...], steps: int, max_groups: int) -> list[dict]:
    """The data-efficiency curve group by group, with each method's paired gain over the prior mean.

    Rows ``{method, k, metric, value, stderr, n_groups, gain, gain_stderr, wins}``: ``gain`` is the
    mean over groups of (method - prior) accuracy, or (prior - method) RMSE (> 0: better than
    the prior mean), ``wins`` the fraction of groups where it is > 0.
    """
    ids = split["groups"][:, 0]
    eligible = [j for j in torch.unique(ids).tolist() if int((ids == j).sum()) > max(KS)]
    pick = torch.randperm(len(eligible), generator=torch.Generator().manual_seed(0))[:max_groups].sort().values
    vals: dict[tuple[str, int], list[float]] = {}
    metric = ""
    for j in [eligible[int(t)] for t in pick]:
        mask = ids == j
        for r in data_efficiency_curve(model, {k: v[mask] for k, v in split.items()}, KS, methods, steps=steps, max_groups=None,
                                       shuffles=1, min_groups=1):  # one group at a time: the pairing is done here
            vals.setdefault((r["method"], r["k"]), []).append(r["value"])
            metric = r["metric"]
    sign = 1.0 if metric == "accuracy" else -1.0
    rows = []
    for (method, k), v in sorted(vals.items()):
        v, p = np.array(v), np.array(vals[("prior", k)])
        d = sign * (v - p)
        se = lambda a: float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")  # noqa: E731
        rows.append({"method": method, "k": k, "metric": metric, "value": float(v.mean()), "stderr": se(v), "n_groups": len(v),
                     "gain": float(d.mean()), "gain_stderr": se(d), "wins": float((d > 0).mean())})
    return rows


def new_hsb(cfg: dict) -> list[dict]:
    data = HighSchoolBeyond(split="group", standardize=True, standardize_y=True, test_fraction=cfg["test_fraction"], seed=0)
    data.setup()
    torch.manual_seed(0)
    model = sized(data, 0, MLPPredictor(3, 1, hidden=[32, 32]), likelihood="gaussian_learned", latent_features=2,
                  injection="factor", prior=PRIOR)
    train(model, data, cfg["epochs"], 256, 3e-3, 200)
    return curve(model, data.test, ("prior", "optimize"), cfg["steps"], cfg["max_groups"])


def new_writers(cfg: dict) -> list[dict]:
    wr = writers_data(cfg)
    torch.manual_seed(0)
    model = sized(wr, 0, ImageCNN(n_classes=10, size=cfg["cnn"]), latent_features=cfg["latent_features"], injection="factor",
                  new_group_encoder=True, prior=PRIOR)
    train(model, wr, cfg["epochs"], cfg["batch_size"], cfg["lr"], 300, latent_lr_mult=cfg["latent_lr_mult"])
    fit_group_encoder(model, wr.train, steps=cfg["encoder_steps"])
    return curve(model, wr.test, ("prior", "optimize", "amortized"), cfg["steps"], cfg["max_groups"])


KS = (1, 2, 5, 10, 20)


def run_section(name: str, cfg: dict) -> dict | list:
    if name == "hsb":
        return hsb(cfg)
    if name == "writers":
        return classification("writers", writers_data(cfg), lambda: ImageCNN(n_classes=10, size=cfg["cnn"]), cfg)
    if name == "shakespeare":
        data = ShakespeareRoles(max_groups=cfg["max_groups"], max_windows_per_group=cfg["max_windows_per_group"],
                                split=cfg["split"], seed=0)
        data.setup()
        return classification("shakespeare", data, lambda: CharLSTM(hidden=cfg["hidden"]), cfg)
    return new_hsb(cfg) if name == "new_hsb" else new_writers(cfg)


def table(rows: list[tuple], head: tuple) -> str:
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows])


def markdown(res: dict, notes: str) -> str:
    """The results page: one table per section (with its settings, time and load) and the notes."""
    m = res["machine"]
    md = ["# Group latents", "", f"Machine of the latest run: {m['cpu']}, {m['threads']} torch thread(s), torch {m['torch']}. "
          "Each section lists its machine, its settings (`--short` or the full run), its time and the 1-minute load average "
          "of the 2-core machine before and after it (other jobs shared the machine).", ""]

    def head(name: str, title: str) -> list[str]:
        run = res["runs"][name]
        cfg = ", ".join(f"{k}={v}" for k, v in run["settings"].items())
        where = f"{run['machine']['cpu']}, {run['machine']['threads']} thread(s); " if "machine" in run else ""
        return [f"## {title}", "", f"{where}{'--short' if run['short'] else 'full'} run; {cfg}; {run['seconds'] / 60:.1f} min, "
                f"load {run['load'][0]:.1f} -> {run['load'][1]:.1f}.", ""]

    if "hsb" in res:
        md += head("hsb", "High School and Beyond (standardized math achievement, split by example)")
        nan = float("nan")
        md += [table([(k, r.get("rmse", nan), r.get("group_rmse_p50", nan), r.get("corr_with_mixedlm", "-"), r.get("tau2", nan),
                       r.get("effects_var", nan), r.get("sigma2", nan)) for k, r in res["hsb"].items()],
                     ("model", "test RMSE", "school RMSE p50", "corr(school effects, MixedLM)", "between-school var (prior; MixedLM tau^2)",
                      "var(school effects) (MixedLM: var(BLUP))", "residual var (MixedLM sigma^2)")),
               "", "RMSE on the standardized scale; variances in the outcome's units (math achievement points^2), "
               "from `GroupPredictor.variance_components` and MixedLM's REML fit.", ""]
    for name in ("writers", "shakespeare"):
        if name in res:
            md += head(name, f"{name} (test, split by example)")
            base, nan = res[name]["none"], float("nan")
            md += [table([(k, r["accuracy"], r.get("accuracy_sd", nan), r.get("accuracy_gain", r["accuracy"] - base["accuracy"]),
                           r["log_loss"], r.get("log_loss_gain", base["log_loss"] - r["log_loss"]), r["group_accuracy_p10"],
                           r["group_accuracy_p50"], r["group_accuracy_p90"], r.get("train_accuracy", nan), r["seconds"])
                          for k, r in res[name].items()],
                         ("injection", "accuracy", "sd (seeds)", "gain vs none", "log loss", "log-loss gain", "group p10", "p50", "p90",
                          "train accuracy", "train s")), ""]
    for name in ("hsb", "writers"):
        rows = res.get("data_efficiency", {}).get(name)
        if rows:
            md += head(f"new_{name}", f"New groups: {name} (unseen groups, {rows[0]['metric']} on each group's other examples)")
            md += [table([(r["method"], r["k"], r["value"], r["stderr"], r.get("gain", float("nan")), r.get("gain_stderr", float("nan")),
                           r.get("wins", float("nan")), r["n_groups"]) for r in rows],
                         ("method", "k", rows[0]["metric"], "stderr", "gain vs prior", "stderr (paired)", "groups better", "groups")), ""]
    return "\n".join(md) + ("\n" + notes if notes else "")


NOTES_HEADING = "## Reading these numbers"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", action="store_true", help="small subsets and few epochs (about 5 min on one CPU thread)")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                    help="run these sections and merge them into the existing results (the others are kept)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--out", default=str(RESULTS / "groups_cpu"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    js, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    res = json.loads(js.read_text()) if js.exists() and set(args.only) != set(SECTIONS) else {}
    if "runs" not in res:  # an older file without per-section settings: start afresh
        res = {}
    res.setdefault("runs", {})
    res["machine"] = machine()
    notes = md_path.read_text().split(NOTES_HEADING, 1) if md_path.exists() else []
    notes = NOTES_HEADING + notes[1] if len(notes) == 2 else ""  # the hand-written notes are kept
    cfgs = settings(args.short)
    for name in args.only:
        print(f"{name} ...", flush=True)
        load0, t0 = os.getloadavg()[0], time.time()
        value = run_section(name, cfgs[name])
        if name.startswith("new_"):
            res.setdefault("data_efficiency", {})[name[4:]] = value
        else:
            res[name] = value
        res["runs"][name] = {"short": args.short, "settings": cfgs[name], "seconds": time.time() - t0,
                             "load": [load0, os.getloadavg()[0]], "machine": res["machine"]}
        js.write_text(json.dumps(res, indent=2))  # after each section
    text = markdown(res, notes)
    md_path.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
