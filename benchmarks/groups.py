"""Group-level latent variables: none / factor / bias / double on grouped benchmarks.

- High School and Beyond (math achievement regression, school latents) against a linear mixed
  model (statsmodels MixedLM, random school intercepts) on the same split: test RMSE and the
  correlation of the model's school effects with MixedLM's random effects.
- Synthetic MNIST writers (ImageCNN small): test accuracy and per-writer percentiles.
- Shakespeare by role and play (CharLSTM, next character): test accuracy and percentiles.
- New groups (split by group): data-efficiency curve k = 1, 2, 5, 10, 20, prior mean vs
  optimised posterior (and the amortized encoder on writers).

    python benchmarks/groups.py --short      # <= 15 min on a laptop CPU
    pip install -r benchmarks/requirements-groups.txt   # statsmodels for the MixedLM baseline

Writes benchmarks/results/groups_cpu.md and .json (with the machine).
"""

from __future__ import annotations

import argparse
import json
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
#: spread of the group effects; with the fixed N(0, I) prior, new-group inference from a few
#: examples overreacts (measured on HSB: RMSE 0.936 at k=1 vs 0.916 for the prior mean, against
#: 0.912 with the learned prior).
PRIOR = "learned"
#: Digit pairs each synthetic writer writes with each other's glyphs: a group effect on the labels
#: (styles alone change only the pixels, which the CNN reads without the writer's latent).
SWAPS = 1
RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                   if l.startswith("Model name"))
    except Exception:  # noqa: BLE001 - lscpu missing
        cpu = platform.processor()
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}


def train(model: GroupPredictor, data, epochs: int, batch_size: int, lr: float, warmup: int, seed: int = 0) -> float:
    """Minibatch Adam on the ELBO (the same objective as vaekit fit); returns seconds."""
    torch.manual_seed(seed)
    model.bind_data(data)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
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


def hsb(short: bool) -> dict:
    data = HighSchoolBeyond(split="example", standardize=True, standardize_y=True, seed=0)
    data.setup()
    out = {}
    ref = data.train["x"][:500]
    for mode in MODES:
        torch.manual_seed(0)
        model = GroupPredictor(MLPPredictor(3, 1, hidden=[32, 32]), likelihood="gaussian_learned", latent_features=2,
                               injection=mode, prior="learned")
        secs = train(model, data, 25 if short else 80, 256, 3e-3, 200)
        res = {**evaluate(model, data.test), "seconds": secs}
        if mode != "none":  # school effect: mean change of the prediction over reference students
            with torch.no_grad():
                base = model.outputs(ref, [model.latent.prior_params(0)[0].expand(len(ref), -1)]).mean()
                res["effects"] = [float(model.outputs(ref, [model.latent.loc[0][g].expand(len(ref), -1)]).mean() - base)
                                  for g in range(len(data.group_names[0]))]
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
    fit = sm.MixedLM(y.astype(float), sm.add_constant(x.astype(float)), groups=g[:, 0]).fit()
    G = len(data.group_names[0])
    re = np.zeros(G)
    for k, v in fit.random_effects.items():
        re[int(k)] = float(np.asarray(v)[0])
    xt, yt, gt = (data.test[k].numpy() for k in ("x", "y", "groups"))
    pred = sm.add_constant(xt.astype(float), has_constant="add") @ np.asarray(fit.fe_params) + re[gt[:, 0]]
    return {"rmse": float(np.sqrt(np.mean((pred - yt) ** 2))), "effects": re.tolist()}


def classification(name: str, make_data, make_net, epochs: int, batch_size: int, lr: float, latent: int) -> dict:
    data = make_data("example")
    data.setup()
    out = {}
    for mode in MODES:
        torch.manual_seed(0)
        model = GroupPredictor(make_net(), latent_features=latent, prior=PRIOR,
                               injection=mode if data.level_names[1:] == [] else [mode] * len(data.level_names))
        secs = train(model, data, epochs, batch_size, lr, 300)
        out[mode] = {**evaluate(model, data.test), "seconds": secs}
        print(f"  {name} {mode}: acc={out[mode]['accuracy']:.4f} ({secs:.0f}s)", flush=True)
    return out


def efficiency(short: bool) -> dict:
    res = {}
    data = HighSchoolBeyond(split="group", standardize=True, standardize_y=True, test_fraction=0.25, seed=0)
    data.setup()
    torch.manual_seed(0)
    model = GroupPredictor(MLPPredictor(3, 1, hidden=[32, 32]), likelihood="gaussian_learned", latent_features=2, injection="factor",
                           prior=PRIOR)
    train(model, data, 25 if short else 80, 256, 3e-3, 200)
    res["hsb"] = data_efficiency_curve(model, data.test, (1, 2, 5, 10, 20), ("prior", "optimize"), steps=60 if short else 150,
                                       max_groups=40)
    wr = MNISTWriters(n_writers=60 if short else 200, digits_per_writer=60, split="group", test_fraction=0.25, seed=0, download=False,
                      glyph_swaps=SWAPS)
    wr.setup()
    model = GroupPredictor(ImageCNN(n_classes=10), latent_features=8, injection="factor", new_group_encoder=True, prior=PRIOR)
    train(model, wr, 12 if short else 25, 64, 2e-3, 300)
    fit_group_encoder(model, wr.train, steps=150 if short else 600)
    res["writers"] = data_efficiency_curve(model, wr.test, (1, 2, 5, 10, 20), ("prior", "optimize", "amortized"),
                                           steps=40 if short else 100, max_groups=15 if short else 50)
    return res


def table(rows: list[tuple], head: tuple) -> str:
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", action="store_true", help="small subsets and few epochs (<= 15 min on a CPU)")
    ap.add_argument("--out", default=str(RESULTS / "groups_cpu"))
    args = ap.parse_args()
    t0 = time.time()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + "_partial.json")  # written after each section, removed at the end
    print("HSB ...", flush=True)
    res = {"machine": machine(), "short": args.short, "hsb": hsb(args.short)}
    partial.write_text(json.dumps(res, indent=2))
    print("writers ...", flush=True)
    res["writers"] = classification(
        "writers", lambda s: MNISTWriters(n_writers=60 if args.short else 200, digits_per_writer=60 if args.short else 100,
                                          split=s, seed=0, download=False, glyph_swaps=SWAPS),
        lambda: ImageCNN(n_classes=10), 12 if args.short else 25, 64, 2e-3, 8)
    partial.write_text(json.dumps(res, indent=2))
    print("shakespeare ...", flush=True)
    res["shakespeare"] = classification(
        "shakespeare", lambda s: ShakespeareRoles(max_groups=40 if args.short else 400, max_windows_per_group=100 if args.short else 200,
                                                  split=s, seed=0),
        lambda: CharLSTM(hidden=64 if args.short else 256), 10 if args.short else 20, 64, 3e-3, 8)
    partial.write_text(json.dumps(res, indent=2))
    print("new groups ...", flush=True)
    res["data_efficiency"] = efficiency(args.short)
    res["seconds"] = time.time() - t0
    partial.unlink(missing_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    md = [f"# Group latents ({'--short' if args.short else 'full'})", "",
          f"Machine: {res['machine']['cpu']}, {res['machine']['threads']} torch threads, torch {res['machine']['torch']}; "
          f"total {res['seconds'] / 60:.1f} min.", "", "## High School and Beyond (standardized math achievement, split by example)", "",
          table([(m, r.get("rmse", float("nan")), r.get("group_rmse_p50", float("nan")), r.get("corr_with_mixedlm", "-"))
                 for m, r in res["hsb"].items()], ("model", "test RMSE", "school RMSE p50", "corr(school effects, MixedLM)"))]
    for name in ("writers", "shakespeare"):
        md += ["", f"## {name} (test, split by example)", "",
               table([(m, r["accuracy"], r["group_accuracy_p10"], r["group_accuracy_p50"], r["group_accuracy_p90"], r["seconds"])
                      for m, r in res[name].items()], ("injection", "accuracy", "group p10", "p50", "p90", "train s"))]
    for name, rows in res["data_efficiency"].items():
        md += ["", f"## New groups: {name} (unseen groups, {rows[0]['metric']} on each group's other examples)", "",
               table([(r["method"], r["k"], r["value"], r["stderr"], r["n_groups"]) for r in rows], ("method", "k", rows[0]["metric"], "stderr", "groups"))]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
