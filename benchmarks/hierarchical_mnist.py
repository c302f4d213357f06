"""Hierarchical VAEs on binarized MNIST: the IWAE-paper two-layer model and a small VDVAE stack.

Trains :func:`vaekit.models.hierarchical.ladder_vae` (784-100-100-(100), (100)-50-50-(50),
tanh, Bernoulli) and :func:`vaekit.models.hierarchical.small_vdvae` with the ELBO (k=1),
Adam, batch 100, then estimates the test log-likelihood with IWAE. Reference points:
Burda et al. (2016) report -85.33 nats for the two-layer VAE (k=1 training, 3280 epochs,
IWAE k=5000 on the whole test set); the issue's goal for a small VDVAE is under 82 nats.

    python benchmarks/hierarchical_mnist.py --short         # CPU, minutes: a few epochs, small k, test subset
    python benchmarks/hierarchical_mnist.py --device cuda   # longer training, k=5000 on the full test set

Needs the offline data (``VAEKIT_DATA=/work/shared/data``). Writes
``benchmarks/results/hierarchical_mnist_<cpu|gpu>.md`` (or ``--out``): the machine, the settings and what was
measured (test ELBO and IWAE, distance to the targets, training time, what stopped training, KL per latent layer).
"""

from __future__ import annotations

import argparse
import math
import platform
import subprocess
import time
from pathlib import Path

import torch

from vaekit.data import BinarizedMNIST
from vaekit.inference import iwae_log_likelihood
from vaekit.models.hierarchical import ladder_vae, small_vdvae
from vaekit.objectives import ELBO

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"ladder (IWAE paper, 2 layers)": -85.33, "small VDVAE": -82.0}


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def train(model: torch.nn.Module, x: torch.Tensor, epochs: int, seconds: float, lr: float, device: torch.device) -> dict:
    """ELBO training with Adam, batch 100; stops after ``epochs`` or ``seconds``, whichever first."""
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-4)
    objective, step, t0, done = ELBO(), 0, time.perf_counter(), 0
    for epoch in range(epochs):
        perm = torch.randperm(len(x), device=device)
        for i in range(0, len(x) - 99, 100):
            loss, _ = objective(model, x[perm[i:i + 100]], step)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        done = epoch + 1
        if time.perf_counter() - t0 > seconds:
            break
    stopped = "epochs" if done == epochs else "time budget"
    return {"epochs": done, "steps": step, "train_seconds": time.perf_counter() - t0, "stopped_by": stopped}


@torch.no_grad()
def kl_per_layer(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> dict[str, float]:
    """Mean KL(q || p) per named latent on ``x`` (nats per example; one posterior draw per example)."""
    sums: dict[str, float] = {}
    for i in range(0, len(x), 500):
        for name, kl in model.elbo_terms(x[i:i + 500].to(device)).kl.items():
            sums[name] = sums.get(name, 0.0) + float(kl.sum())
    return {name: total / len(x) for name, total in sums.items()}


def report(rows: list[dict], *, short: bool, machine_name: str, threads: int, epochs: int, seconds: float, k: int,
           n_test: int) -> str:
    """The results page: the settings and what was measured, nothing else."""
    lines = [f"# Hierarchical VAEs on binarized MNIST ({'short CPU run' if short else 'full run'})", "",
             f"Machine: {machine_name}; torch {torch.__version__}; {threads} CPU thread(s); data: "
             "binarized_mnist_seed0 (a fixed stochastic binarization, not Larochelle's draw).",
             f"Training: ELBO (k=1), Adam lr 1e-3 eps 1e-4, batch 100, on train+valid (60k), at most {epochs} epochs "
             f"or {seconds:g} s per model. Test: IWAE k={k} on {n_test} test points.", "",
             "| model | params | epochs | stopped by | train s | test ELBO | test IWAE log p(x) | ± stderr | target "
             "| IWAE - target |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params']:,} | {r['epochs']} | {r['stopped_by']} | {r['train_seconds']:.0f} "
                     f"| {r['elbo']:.2f} | {r['iwae']:.2f} | {r['stderr']:.2f} | {r['target']:.2f} "
                     f"| {r['iwae'] - r['target']:+.2f} |")
    lines += ["", f"KL(q || p) per latent layer on the same {n_test} test points (nats per example, one draw):", ""]
    for r in rows:
        layers = ", ".join(f"{name} {value:.2f}" for name, value in r["kl"].items())
        lines.append(f"- {r['model']}: {layers}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--short", action="store_true", help="CPU pipeline check: time-boxed training, k=1000, 1000 test points")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seconds", type=float, default=None, help="training time budget per model")
    p.add_argument("--k", type=int, default=None)
    p.add_argument("--n-points", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1: fastest on a shared 2-core machine)")
    p.add_argument("--out", default=None, help="results file (default: benchmarks/results/hierarchical_mnist_<cpu|gpu>.md)")
    a = p.parse_args()
    epochs = a.epochs or (100 if a.short else 3280)
    seconds = a.seconds or (240.0 if a.short else math.inf)
    k = a.k or (1000 if a.short else 5000)
    n_points = a.n_points or (1000 if a.short else None)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    data = BinarizedMNIST(flatten=True)
    data.setup()
    x_train = torch.cat([data.train, data.val]).to(device)  # the IWAE paper trains on all 60k (train + valid)
    x_test = data.test[:n_points] if n_points else data.test
    rows = []
    for name, make in (("ladder (IWAE paper, 2 layers)", lambda: ladder_vae([784])),
                       ("small VDVAE", lambda: small_vdvae([784], width=128, latent_features=16, n_layers=4))):
        torch.manual_seed(0)
        model = make()
        n_params = sum(p.numel() for p in model.parameters())
        info = train(model, x_train, epochs, seconds, 1e-3, device)
        model.eval()
        torch.manual_seed(1)
        t0 = time.perf_counter()
        with torch.no_grad():
            res = iwae_log_likelihood(model, x_test, k=k, device=device)
        rows.append({"model": name, "params": n_params, **info, "elbo": float(res.elbo), "iwae": res.mean,
                     "stderr": res.stderr, "eval_seconds": time.perf_counter() - t0, "target": TARGETS[name],
                     "kl": kl_per_layer(model, x_test, device)})
        print(rows[-1], flush=True)
    kind = "gpu" if device.type == "cuda" else "cpu"
    dev = torch.cuda.get_device_name(device) if kind == "gpu" else machine()
    text = report(rows, short=a.short, machine_name=dev, threads=a.threads, epochs=epochs, seconds=seconds, k=k,
                  n_test=len(x_test))
    out = Path(a.out) if a.out else RESULTS / f"hierarchical_mnist_{kind}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written: {out}")


if __name__ == "__main__":
    main()
