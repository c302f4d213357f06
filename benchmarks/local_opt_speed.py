"""Speed and memory of per-datapoint local optimisation (q*_FFG and q*_AF) on the Cremer et al. MNIST VAE.

All ``--n-points`` test points are optimised in parallel (one optimiser step updates every
point's own parameters, ``torch.func.vmap`` over stacked copies); this times a fixed number
of steps (the convergence rule is switched off) and reports point-steps per second, over the
wall clock and over the process's CPU time (which a loaded machine changes much less), and
the resident memory during the call: at its start, its peak, at the first and the last
step (their difference is what the steps leave behind; it should stay near zero). Weights
are random: time and memory do not depend on training.

    python benchmarks/local_opt_speed.py                       # CPU: 100 points, 50 steps
    python benchmarks/local_opt_speed.py --threads 1 --steps 2000 --check-every 100 --rss-every 100
    python benchmarks/local_opt_speed.py --device cuda --n-points 1000 --steps 500

Appends rows to ``benchmarks/results/local_opt_speed.csv`` naming the device; ``--md PATH`` also
writes them as a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from vaekit.distributions import AuxiliaryFlow
from vaekit.inference import optimize_local_posterior
from vaekit.models import mlp_vae

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from iwae_speed import append_csv, device_name, load_images, upgrade_csv, write_markdown  # noqa: E402
from provenance import git_commit  # noqa: E402

FIELDS = ["date", "device", "device_name", "torch", "threads", "load_avg", "family", "n_points", "steps", "k",
          "seconds", "point_steps_per_s", "data", "commit", "check_every", "check_k", "eval_k", "cpu_s",
          "cpu_point_steps_per_s", "rss_start_mb", "rss_first_step_mb", "rss_last_step_mb", "rss_peak_mb"]


def resident_mb() -> float:
    """Resident memory of this process (MiB), from /proc/self/statm; NaN where there is none."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


class MemoryTrace:
    """A progress callable for ``optimize_local_posterior``: reads the resident memory after every update.

    The function reports the (sample, point) pairs done after every optimiser step and every
    ELBO estimate (initial, checks, final); :meth:`after` finds the reading at a count of
    pairs. ``every`` > 0 prints the memory every ``every`` updates.
    """

    def __init__(self, every: int = 0) -> None:
        self.every, self.readings = every, []

    def __call__(self, done: int, total: int) -> None:
        if done == 0:
            return
        self.readings.append((done, resident_mb()))
        if self.every and len(self.readings) % self.every == 0:
            print(f"  update {len(self.readings)}: resident {self.readings[-1][1]:.0f} MiB", flush=True)

    def after(self, done: int) -> float:
        """The first reading taken when ``done`` pairs were done."""
        return next(mb for d, mb in self.readings if d == done)

    @property
    def peak(self) -> float:
        return max(mb for _, mb in self.readings)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--n-points", type=int, default=None, help="default 100 on CPU, 1000 on CUDA")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--k", type=int, default=10, help="samples per point per step")
    p.add_argument("--check-every", type=int, default=None,
                   help="steps between the scored checks (default --steps: one check, at the end)")
    p.add_argument("--check-k", type=int, default=100, help="samples per point at a check")
    p.add_argument("--eval-k", type=int, default=None, help="samples per point of the first and last ELBO (default --k)")
    p.add_argument("--families", default="ffg,af", help="comma-separated, of ffg and af")
    p.add_argument("--rss-every", type=int, default=0, help="print the resident memory every this many updates")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=str(HERE / "results" / "local_opt_speed.csv"))
    p.add_argument("--md", type=Path, default=None, help="also write this run's rows to this markdown file")
    a = p.parse_args()
    upgrade_csv(Path(a.out), FIELDS, check_only=True)  # a CSV this script cannot extend: refused before measuring
    if a.threads:
        torch.set_num_threads(a.threads)
    n = a.n_points or (1000 if a.device.startswith("cuda") else 100)
    check_every, eval_k = a.check_every or a.steps, a.eval_k or a.k
    torch.manual_seed(0)
    model = mlp_vae([784]).to(a.device)
    x, source = load_images(None, n, seed=0)
    families = {"ffg": (None, "amortized"), "af": (AuxiliaryFlow(200, 50, n_flows=2, hidden=[100]), "scratch")}
    wanted = [f for f in a.families.split(",") if f]
    if not wanted or set(wanted) - set(families):
        p.error(f"--families must name some of {', '.join(families)}, got {a.families!r}")
    device, rows = torch.device(a.device), []
    for name in wanted:
        family, init = families[name]
        kwargs = dict(family=family, init=init, k=a.k, max_steps=a.steps, check_every=check_every, patience=10**9,
                      check_k=a.check_k, eval_k=eval_k, device=a.device, batch_size=n)
        optimize_local_posterior(model, x[: min(n, 8)], **{**kwargs, "max_steps": 2, "check_every": 2})  # warm-up
        trace = MemoryTrace(a.rss_every)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rss0, cpu0, t0 = resident_mb(), time.process_time(), time.perf_counter()
        optimize_local_posterior(model, x, progress=trace, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        sec, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        start = n * eval_k  # pairs of the initial estimate; a step adds n * k, a check n * check_k
        first = trace.after(start + n * a.k)
        last = trace.after(start + n * a.steps * a.k + (a.steps - 1) // check_every * n * a.check_k)
        rows.append({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": a.device,
                     "device_name": device_name(device), "torch": torch.__version__,
                     "threads": torch.get_num_threads(), "load_avg": f"{os.getloadavg()[0]:.2f}", "family": name,
                     "n_points": n, "steps": a.steps, "k": a.k, "seconds": f"{sec:.2f}",
                     "point_steps_per_s": f"{n * a.steps / sec:.0f}", "data": source, "commit": git_commit(),
                     "check_every": check_every, "check_k": a.check_k, "eval_k": eval_k, "cpu_s": f"{cpu:.2f}",
                     "cpu_point_steps_per_s": f"{n * a.steps / cpu:.0f}", "rss_start_mb": f"{rss0:.0f}",
                     "rss_first_step_mb": f"{first:.0f}", "rss_last_step_mb": f"{last:.0f}",
                     "rss_peak_mb": f"{trace.peak:.0f}"})
    out = Path(a.out)
    upgrade_csv(out, FIELDS)
    append_csv(out, FIELDS, rows)
    cols = [("family", "family"), ("points", "n_points"), ("steps", "steps"), ("k", "k"), ("seconds", "seconds"),
            ("point-steps/s", "point_steps_per_s"), ("CPU s", "cpu_s"), ("point-steps per CPU s", "cpu_point_steps_per_s"),
            ("MiB at start", "rss_start_mb"), ("MiB after step 1", "rss_first_step_mb"),
            ("MiB after the last step", "rss_last_step_mb"), ("peak MiB", "rss_peak_mb")]
    print("| " + " | ".join(h for h, _ in cols) + " | device |\n|" + "---|" * (len(cols) + 1))
    for r in rows:
        print("| " + " | ".join(str(r[key]) for _, key in cols) + f" | {r['device_name']} |")
    print(f"appended to {out}")
    write_markdown(a.md, "Local optimisation (q*_FFG, q*_AF): point-steps per second and resident memory", rows, cols,
                   ["all points optimised in parallel (vmap), a fixed number of steps after a warm-up call; random "
                    f"weights; a check scored with {a.check_k} samples every {check_every} steps",
                    "CPU s: the process's CPU time over all its threads; memory: resident set, read after every "
                    "update (the steps left nothing behind when 'after step 1' and 'after the last step' agree)"])


if __name__ == "__main__":
    main()
