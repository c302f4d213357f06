"""Speed of AIS with HMC on the decoder of Cremer et al. (2018).

Model: ``vaekit.models.mlp_vae([784])`` (784-200-200-(50) ELU, Bernoulli), random weights:
the time per gradient evaluation does not depend on training (the acceptance rate and the
log p(x) printed beside it do, so they are no quality measure here). Data: the binarized
MNIST test set (``vaekit.data.BinarizedMNIST``), or random binary images when it is not
found (said in the output and the CSV).

Two numbers:

- ``raw_grad_evals_per_s``: one HMC gradient evaluation (``log p(z)`` and ``log p(x, z)``
  and their gradients w.r.t. z, :func:`vaekit.inference._hmc.evaluate`) for all
  ``chains x n_points`` chains at once, timed ``--repeat`` times (best), counted per chain.
- ``seconds`` of ``vaekit.inference.ais_log_likelihood`` on ``--n-points`` images with
  ``--chains`` chains, ``--steps`` annealing steps and ``--leapfrog`` leapfrog steps, and
  its ``grad_evals_per_s`` (gradient evaluations per chain, ``1 + (steps - 1) x leapfrog``,
  over the wall time, which includes everything AIS does besides the gradients).

``projected_s_paper`` extrapolates the AIS rate to the issue's target, 100 chains x 10,000
steps x 1,000 test points (10 leapfrog steps): about 1e10 gradient evaluations. It assumes
the rate stays the same at that batch size, which holds on a saturated CPU but
underestimates a GPU, whose rate grows with the batch.

Appends one row to ``benchmarks/results/ais_speed.csv`` naming the device; ``--md PATH`` also
writes it as a markdown table.

Usage::

    python benchmarks/ais_speed.py --n-points 100 --chains 16 --steps 100 --threads 1   # CPU, ~1 minute
    python benchmarks/ais_speed.py --device cuda --n-points 1000 --chains 100 --steps 10000
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from iwae_speed import append_csv, device_name, git_commit, load_images, timed, write_markdown  # noqa: E402

from vaekit.inference import ais_log_likelihood  # noqa: E402
from vaekit.inference._hmc import LatentPacker, evaluate  # noqa: E402
from vaekit.models import mlp_vae  # noqa: E402

FIELDS = ["date", "commit", "device", "device_name", "torch", "threads", "load_avg", "data", "n_points", "chains",
          "steps", "leapfrog", "schedule", "batch_size", "raw_batch", "raw_grad_evals_per_s", "seconds", "grad_evals",
          "grad_evals_per_s", "acceptance", "mean_log_px", "projected_s_paper"]
PAPER_GRAD_EVALS = 1000 * 100 * (1 + 9999 * 10)


def raw_rate(model: torch.nn.Module, x: torch.Tensor, chains: int, repeat: int, device: torch.device) -> float:
    """Best rate of one batched gradient evaluation over ``repeat`` runs, per chain per second."""
    z0 = model.sample_prior(chains * len(x))
    packer = LatentPacker(z0, 1)
    z = packer.pack(z0, 1).to(device).reshape(chains, len(x), packer.dim)
    evaluate(model, x, packer, z)  # warm-up
    best = min(timed(lambda: evaluate(model, x, packer, z), device)[1] for _ in range(repeat))
    return chains * len(x) / best


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n-points", type=int, default=100)
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--leapfrog", type=int, default=10)
    parser.add_argument("--schedule", choices=["linear", "sigmoidal"], default="sigmoidal")
    parser.add_argument("--batch-size", type=int, default=None, help="default: chosen by the estimator")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs of the raw gradient evaluation")
    parser.add_argument("--data-root", default=os.environ.get("VAEKIT_DATA") or str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's); on a CPU shared with other jobs 1 can be fastest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ais_speed.csv")
    parser.add_argument("--md", type=Path, default=None, help="also write this run's row to this markdown file")
    args = parser.parse_args(argv)
    for name in ("n_points", "chains", "steps", "leapfrog", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    device = torch.device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)

    load = os.getloadavg()[0]
    torch.manual_seed(args.seed)
    model = mlp_vae([784]).to(device).eval()
    x, source = load_images(args.data_root, args.n_points, args.seed)
    name = device_name(device)
    print(f"AIS on {args.n_points} images ({source}), {args.chains} chains x {args.steps} steps x {args.leapfrog} "
          f"leapfrog, on {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {load:.2f}")

    raw_batch = min(args.n_points, args.batch_size or args.n_points)
    raw = raw_rate(model, x[:raw_batch].to(device), args.chains, args.repeat, device)
    print(f"  raw: {raw:,.0f} gradient evaluations / s ({args.chains} x {raw_batch} chains per call)")
    res, seconds = timed(lambda: ais_log_likelihood(
        model, x, n_chains=args.chains, n_steps=args.steps, leapfrog_steps=args.leapfrog, schedule=args.schedule,
        batch_size=args.batch_size, device=device), device)
    rate = res.grad_evals / seconds
    print(f"  AIS: {seconds:.2f} s, {res.grad_evals:,} gradient evaluations, {rate:,.0f} / s "
          f"(batch {res.settings['batch_size']}); acceptance {float(res.acceptance.mean()):.3f}, "
          f"mean log p(x) {res.mean:.2f}")
    print(f"  projected for 100 chains x 10,000 steps x 1,000 points: {PAPER_GRAD_EVALS / rate / 60:,.1f} min")

    row = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": git_commit(),
           "device": str(device), "device_name": name, "torch": torch.__version__,
           "threads": torch.get_num_threads(), "load_avg": f"{load:.2f}", "data": source,
           "n_points": args.n_points, "chains": args.chains, "steps": args.steps, "leapfrog": args.leapfrog,
           "schedule": args.schedule, "batch_size": res.settings["batch_size"], "raw_batch": args.chains * raw_batch,
           "raw_grad_evals_per_s": f"{raw:.0f}", "seconds": f"{seconds:.3f}", "grad_evals": res.grad_evals,
           "grad_evals_per_s": f"{rate:.0f}", "acceptance": f"{float(res.acceptance.mean()):.4f}",
           "mean_log_px": f"{res.mean:.4f}", "projected_s_paper": f"{PAPER_GRAD_EVALS / rate:.0f}"}
    append_csv(args.out, FIELDS, [row])
    print(f"device: {device} ({name}); appended to {args.out}")
    write_markdown(args.md, "AIS with HMC: gradient evaluations per second", [row], [
        ("points", "n_points"), ("chains", "chains"), ("steps", "steps"), ("leapfrog", "leapfrog"),
        ("schedule", "schedule"), ("batch", "batch_size"), ("raw batch", "raw_batch"),
        ("raw grad evals/s", "raw_grad_evals_per_s"), ("AIS s", "seconds"), ("grad evals", "grad_evals"),
        ("AIS grad evals/s", "grad_evals_per_s"), ("acceptance", "acceptance"), ("mean log p(x)", "mean_log_px"),
        ("projected s, paper setting", "projected_s_paper")],
        ["random weights: acceptance and log p(x) are no quality measure; projected_s_paper is a projection "
         "(100 chains x 10,000 steps x 1,000 points at this run's rate), not a measurement"], argv)
    return row


if __name__ == "__main__":
    main()
