"""Speed of per-datapoint local optimisation (q*_FFG and q*_AF) on the Cremer et al. MNIST VAE.

All ``--n-points`` test points are optimised in parallel (one optimiser step updates every
point's own parameters, ``torch.func.vmap`` over stacked copies); this times a fixed number
of steps (the convergence rule is switched off) and reports point-steps per second. Weights
are random: the time does not depend on training.

    python benchmarks/local_opt_speed.py                       # CPU: 100 points, 50 steps
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
from iwae_speed import append_csv, write_markdown  # noqa: E402

FIELDS = ["date", "device", "device_name", "torch", "threads", "load_avg", "family", "n_points", "steps", "k",
          "seconds", "point_steps_per_s", "data"]


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    for line in open("/proc/cpuinfo").read().splitlines() if os.path.exists("/proc/cpuinfo") else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "cpu"


def _data(n: int) -> tuple[torch.Tensor, str]:
    try:
        from vaekit.data import BinarizedMNIST

        data = BinarizedMNIST(flatten=True, download=False)
        data.setup()
        return data.test[:n], "binarized MNIST test"
    except (OSError, ValueError) as e:
        print(f"binarized MNIST not found ({str(e).splitlines()[0]}); timing on random binary images")
        return torch.bernoulli(torch.full((n, 784), 0.13)), "random binary"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--n-points", type=int, default=None, help="default 100 on CPU, 1000 on CUDA")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--k", type=int, default=10, help="samples per point per step")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=str(HERE / "results" / "local_opt_speed.csv"))
    p.add_argument("--md", type=Path, default=None, help="also write this run's rows to this markdown file")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    n = a.n_points or (1000 if a.device.startswith("cuda") else 100)
    torch.manual_seed(0)
    model = mlp_vae([784]).to(a.device)
    x, source = _data(n)
    families = {"ffg": (None, "amortized"), "af": (AuxiliaryFlow(200, 50, n_flows=2, hidden=[100]), "scratch")}
    rows = []
    for name, (family, init) in families.items():
        kwargs = dict(family=family, init=init, k=a.k, max_steps=a.steps, check_every=a.steps, patience=10**9,
                      eval_k=a.k, device=a.device, batch_size=n)
        optimize_local_posterior(model, x[: min(n, 8)], **{**kwargs, "max_steps": 2, "check_every": 2})  # warm-up
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        optimize_local_posterior(model, x, **kwargs)
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        sec = time.perf_counter() - t0
        rows.append({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": a.device,
                     "device_name": _device_name(a.device), "torch": torch.__version__,
                     "threads": torch.get_num_threads(), "load_avg": f"{os.getloadavg()[0]:.2f}", "family": name,
                     "n_points": n, "steps": a.steps, "k": a.k, "seconds": f"{sec:.2f}",
                     "point_steps_per_s": f"{n * a.steps / sec:.0f}", "data": source})
    out = Path(a.out)
    append_csv(out, FIELDS, rows)
    print(f"| family | points | steps | k | seconds | point-steps/s | device |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['family']} | {r['n_points']} | {r['steps']} | {r['k']} | {r['seconds']} | {r['point_steps_per_s']} "
              f"| {r['device_name']} |")
    print(f"appended to {out}")
    write_markdown(a.md, "Local optimisation (q*_FFG, q*_AF): point-steps per second", rows, [
        ("family", "family"), ("points", "n_points"), ("steps", "steps"), ("k", "k"), ("seconds", "seconds"),
        ("point-steps/s", "point_steps_per_s")],
        ["all points optimised in parallel (vmap), a fixed number of steps after a warm-up call; random weights"])


if __name__ == "__main__":
    main()
