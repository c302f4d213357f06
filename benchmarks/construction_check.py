"""Time the shape check that every HierarchicalVAE runs when it is built (models/hierarchical/_validation.py).

It builds the published CIFAR-10 VDVAE layout (39M parameters) once, then times ``check_shapes`` on it
(a deep copy of the model on the meta device and one posterior pass over two zero examples), and says
whether the meta pass sufficed or the check fell back to a copy with real tensors. Writes
``benchmarks/results/construction_check_cpu.md``.

    PYTHONPATH=src python benchmarks/construction_check.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from vaekit.models.hierarchical import vdvae
from vaekit.models.hierarchical import _validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = vdvae([3, 32, 32], "vdvae_cifar10")
    build = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    fell_back = []
    real = _validation._dry_pass

    def spy(m, n, device):
        fell_back.append(device is None)
        return real(m, n, device)

    _validation._dry_pass = spy
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        _validation.check_shapes(model)
        times.append(time.perf_counter() - t0)
    _validation._dry_pass = real
    lines = [
        "# The construction-time shape check (benchmarks/construction_check.py)",
        "",
        f"CPU: {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}.",
        "",
        "| model | parameters | build (incl. the check) s | check_shapes s (median of %d) | min s | fell back to real tensors |" % args.repeats,
        "|---|---|---|---|---|---|",
        f"| vdvae([3, 32, 32], 'vdvae_cifar10') | {params:,} | {build:.2f} | {statistics.median(times):.2f} | "
        f"{min(times):.2f} | {any(fell_back)} |",
    ]
    out = Path(__file__).parent / "results" / "construction_check_cpu.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
