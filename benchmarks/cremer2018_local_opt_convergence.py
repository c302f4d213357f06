"""Does local optimisation of q per datapoint converge? L[q*] of a trained Cremer model under growing budgets.

The approximation gap of the gap table is log p̂(x) - L[q*]: a local optimisation stopped too
early gives a low L[q*], so a gap too large and an amortization gap too small. This script
takes a trained run of ``reproduce_cremer2018.py`` and the first ``--n-points`` of the test
points its evaluation used (the same seed; ``--subset`` must be that evaluation's
``--n-points``, 100 for the committed rows, and the whole test split must have been used,
as without ``--short``), and optimises each point's posterior
(the model's own family from the amortized start, or a family named with ``--family``)
under each setting of ``--settings`` (``lr:max_steps:tol``; tol 0 runs every step). It
prints a table and writes it with the machine and command to ``--out`` (markdown + JSON).

    python benchmarks/cremer2018_local_opt_convergence.py --run RUN_DIR --n-points 20 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from iwae_speed import device_name  # noqa: E402
from provenance import git_commit  # noqa: E402

DEFAULT_SETTINGS = ("1e-3:10000:1e-3", "1e-3:40000:0", "3e-3:40000:0")


def parse_setting(text: str) -> dict[str, float]:
    try:
        lr, steps, tol = text.split(":")
        return {"lr": float(lr), "max_steps": int(steps), "tol": float(tol)}
    except ValueError:
        raise SystemExit(f"--settings: {text!r} is not lr:max_steps:tol (e.g. 1e-3:10000:1e-3)") from None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a trained run directory of reproduce_cremer2018.py")
    p.add_argument("--n-points", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="the evaluation seed of reproduce_cremer2018.py (its subset)")
    p.add_argument("--subset", type=int, default=100, help="size of the evaluation's subset the points are taken from")
    p.add_argument("--family", default=None, help="a make_posterior name, from scratch (default: the model's own, amortized start)")
    p.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), help="lr:max_steps:tol, one optimisation each")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=str(HERE / "results" / "cremer2018_local_opt_convergence_cpu"))
    a = p.parse_args(argv)
    settings = [parse_setting(s) for s in a.settings]
    if a.threads:
        torch.set_num_threads(a.threads)

    from vaekit.distributions import make_posterior
    from vaekit.inference import optimize_local_posterior
    from vaekit.runs import load, load_data

    run = Path(a.run)
    model = load(run, checkpoint="last")
    data = load_data(run)
    data.setup()
    x = data.test
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(a.seed))[: a.subset].sort().values
    x = x[idx[: a.n_points]]
    _, own = model.amortized(x[:1])
    rows = []
    for s in settings:
        torch.manual_seed(a.seed)
        family = None
        init = "amortized"
        if a.family is not None:
            family, init = make_posterior(a.family, own.context_features, own.latent_features), "scratch"
        t0 = time.perf_counter()
        res = optimize_local_posterior(model, x, family=family, init=init, lr=s["lr"], max_steps=s["max_steps"],
                                       tol=s["tol"], patience=10 if s["tol"] > 0 else 10**9)
        rows.append({**s, "elbo_q_star": res.mean, "stderr": res.stderr, "initial": float(res.initial_elbo.mean()),
                     "steps": int(res.steps.max()), "seconds": round(time.perf_counter() - t0, 1)})
        r = rows[-1]
        print(f"lr {r['lr']:g} max_steps {r['max_steps']} tol {r['tol']:g}: L[q*] {r['elbo_q_star']:.3f} ± {r['stderr']:.3f} "
              f"(start {r['initial']:.3f}; {r['steps']} steps, {r['seconds']} s)", flush=True)
    command = "python benchmarks/cremer2018_local_opt_convergence.py " + " ".join(sys.argv[1:] if argv is None else argv)
    meta = {"run": run.name, "model": type(model).__name__, "family": a.family or f"{type(own).__name__} (amortized start)",
            "n_points": a.n_points, "subset_seed": a.seed,
            "device": f"{device_name(torch.device('cpu'))} ({torch.get_num_threads()} torch threads)",
            "commit": git_commit(12, "unknown"), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [f"# Local optimisation budgets on `{run.name}` ({meta['model']}, family {meta['family']})", "",
             f"{a.n_points} test points (the first of the evaluation's seed-{a.seed} subset); mean L[q*] ± standard error "
             f"over points, nats. {meta['device']}; commit `{meta['commit']}`; {meta['date']}.", "",
             f"`{command}`", "", "| lr | max steps | tol | L[q*] | ± | start | steps run | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['lr']:g} | {r['max_steps']} | {r['tol']:g} | {r['elbo_q_star']:.3f} | {r['stderr']:.3f} | "
              f"{r['initial']:.3f} | {r['steps']} | {r['seconds']} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"written: {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
