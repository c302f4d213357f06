"""What dynamo's guards cost the compiled training step (the Cremer MNIST VAE of train_throughput.py).

Every call of a ``torch.compile``d function first evaluates its guards: checks that the inputs
(every parameter, optimizer state tensor, learning rate and batch: their dtype, shape, strides
and, from torch 2.13, five ``hasattr`` checks each for dimension markings) and every Python
object the trace read (the model's modules, their attributes, globals) are as they were when
it was traced. vaekit's compiled step (``TrainStep(compile=True)``, one graph per step) keeps
them all, since they are what makes a compiled step safe when a user changes the model between
steps. This script measures their share of the step, in one process, on the same data:

``default``
    ``TrainStep(compile=True)`` as ``Trainer(compile=True)`` builds it.
``marked``
    The same, with the five dimension-marking attributes set (to empty sets, meaning "no
    marking") on every parameter, optimizer state tensor and learning rate before the step is
    traced, so that the guard finds them instead of raising and clearing an AttributeError
    each time.
``no-guards``
    The same graph traced with ``guard_filter_fn=torch.compiler.skip_all_guards_unsafe``: no
    guard at all. Unsafe (a changed model or batch shape would run the stale graph); it shows
    what the guards cost, it is not an option vaekit offers.

Each variant gets its own model and optimizer (same seed) and is warmed up; then ``--rounds``
rounds each time every variant through one block of ``--block`` steps, in a shuffled order.
Reported: the median step time over blocks and the median over rounds of the paired ratio
(default's block time over the variant's), the steadier number on a shared machine. Prints a
table; ``--out`` writes it as markdown.

Usage::

    python benchmarks/compiled_step_guards.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import iwae_speed  # sibling scripts (benchmarks/ is on sys.path when a script in it runs)
import train_throughput
from provenance import git_commit

HERE = Path(__file__).resolve().parent
VARIANTS = ("default", "marked", "no-guards")
#: the attributes torch 2.13's dimension-marking guard looks up on every tensor input
MARKINGS = ("_dynamo_dynamic_indices", "_dynamo_weak_dynamic_indices", "_dynamo_unbacked_indices",
            "_dynamo_strict_unbacked_indices", "_dynamo_static_indices")


def build(variant: str, x: torch.Tensor, batch_size: int, seed: int, warmup: int) -> Any:
    """A compiled ``TrainStep`` for ``variant``, trained ``warmup`` steps (the first eager, then traced)."""
    import vaekit.training.step as step_module
    from vaekit.models import mlp_vae
    from vaekit.objectives import ELBO

    torch.manual_seed(seed)
    model, objective = mlp_vae([x.shape[1]]), ELBO()
    optimizer = torch.optim.Adam(model.parameters(), lr=torch.tensor(1e-3), eps=1e-4, fused=True)
    stepper = step_module.TrainStep(lambda batch, s: objective(model, batch, s), list(model.parameters()),
                                    optimizer, compile=True)
    stepper(x[:batch_size], 0)  # eager: creates the optimizer's state
    if variant == "marked":
        tensors = [*model.parameters(), *(g["lr"] for g in optimizer.param_groups),
                   *(t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor))]
        for t in tensors:
            for name in MARKINGS:
                setattr(t, name, set())
    original = step_module._compile_options
    if variant == "no-guards":
        def unguarded(*args: Any, **kwargs: Any) -> dict[str, Any]:
            how = original(*args, **kwargs)
            return {**how, "options": {**how.get("options", {}),
                                       "guard_filter_fn": torch.compiler.skip_all_guards_unsafe}}

        step_module._compile_options = unguarded
    try:
        for i in range(1, warmup):
            stepper(batch_of(x, i, batch_size), i)
    finally:
        step_module._compile_options = original
    if not stepper._fused:
        raise RuntimeError(f"{variant}: the one-graph compiled step was not used (this torch cannot trace it)")
    return stepper


def batch_of(x: torch.Tensor, i: int, batch_size: int) -> torch.Tensor:
    n = len(x) // batch_size
    return x[(i % n) * batch_size:((i % n) + 1) * batch_size]


def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The table's rows, and the variants' trained ``TrainStep``s (the same steps on the same batches)."""
    x, source = train_throughput.load_train(args.data_root, args.n_train, args.seed)
    steppers, rng_states = {}, {}
    for v in VARIANTS:  # each variant draws its own copy of the random stream (the same numbers for all)
        steppers[v] = build(v, x, args.batch_size, args.seed, args.warmup_steps)
        rng_states[v] = torch.get_rng_state()
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    order = list(VARIANTS)
    rng = random.Random(args.seed)
    step = args.warmup_steps
    for _ in range(args.rounds):
        rng.shuffle(order)
        for v in order:
            torch.set_rng_state(rng_states[v])
            t0 = time.perf_counter()
            for i in range(args.block):
                steppers[v](batch_of(x, step + i, args.batch_size), step + i)
            times[v].append((time.perf_counter() - t0) / args.block)
            rng_states[v] = torch.get_rng_state()
        step += args.block
    common = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": git_commit(),
              "device": "cpu", "device_name": train_throughput.device_name(torch.device("cpu")),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "load_avg": f"{os.getloadavg()[0]:.2f}", "data": source}
    rows = []
    for v in VARIANTS:
        ratios = [d / t for d, t in zip(times["default"], times[v])]
        rows.append({**common, "variant": v, "us_per_step": f"{statistics.median(times[v]) * 1e6:.0f}",
                     "paired": f"{statistics.median(ratios):.3f}",
                     "paired_range": f"{min(ratios):.2f}-{max(ratios):.2f}"})
    return rows, steppers


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--rounds", type=int, default=30, help="rounds of one block per variant (default 30)")
    p.add_argument("--block", type=int, default=50, help="steps per block (default 50)")
    p.add_argument("--warmup-steps", type=int, default=5, help="steps before timing (the first eager, default 5)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=os.environ.get("VAEKIT_DATA") or str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--out", type=Path, default=None, help="write the table as markdown here")
    args = p.parse_args(argv)
    for name in ("rounds", "block", "warmup_steps", "batch_size", "n_train"):
        if getattr(args, name) < (2 if name == "warmup_steps" else 1):
            p.error(f"--{name.replace('_', '-')} must be at least {2 if name == 'warmup_steps' else 1}, "
                    f"got {getattr(args, name)}")
    if args.n_train < args.batch_size:
        p.error(f"--n-train ({args.n_train}) must be at least --batch-size ({args.batch_size})")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be at least 1, got {args.threads}")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows, _ = measure(args)
    cols = [("variant", "variant"), ("us/step (median block)", "us_per_step"),
            ("default / variant, median of rounds", "paired"), ("range over rounds", "paired_range")]
    notes = [f"{args.rounds} rounds of one {args.block}-step block per variant, shuffled order; batch "
             f"{args.batch_size}; `TrainStep(compile=True)` of `mlp_vae([784])` with the ELBO, fused Adam "
             f"(see the docstring for the variants)"]
    print(" | ".join(h for h, _ in cols))
    for r in rows:
        print(" | ".join(str(r[k]) for _, k in cols))
    iwae_speed.write_markdown(args.out, "Dynamo's guards in the compiled step", rows, cols, notes, argv)
    return rows


if __name__ == "__main__":
    main()
