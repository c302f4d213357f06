"""More seeds of one classification section of ``benchmarks/groups.py``, in a results file of their own.

Runs the section (``shakespeare`` or ``writers``) with the settings ``groups.py`` uses (the full
ones, or ``--short``), but with the seeds and modes given here, and writes
``benchmarks/results/groups_cpu_<section>_seed<seeds>[_short].json``: the settings, the modes, the
machine, the wall time in minutes and, per mode, what ``groups.classification`` returns (metrics
averaged over the seeds, each seed's metrics, the gain over ``none`` seed by seed). ``groups.py``'s
own results (``groups_cpu.{md,json}``) are left alone.

    python benchmarks/groups_seeds.py --section shakespeare --seeds 1 --modes none factor bias --threads 2

is the run that wrote ``groups_cpu_shakespeare_seed1.json`` (13 min on 2 threads of an idle machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import groups  # noqa: E402  (the benchmark next to this file)

SECTIONS = ("shakespeare", "writers")


def results_name(section: str, seeds: list[int], short: bool) -> str:
    """The default results stem.

    >>> results_name("shakespeare", [1], False), results_name("writers", [3, 4], True)
    ('groups_cpu_shakespeare_seed1', 'groups_cpu_writers_seed3-4_short')
    """
    return f"groups_cpu_{section}_seed{'-'.join(str(s) for s in seeds)}{'_short' if short else ''}"


def run(section: str, seeds: list[int], modes: list[str], short: bool) -> dict:
    """The section's classification results for ``modes`` (``none`` first: the gains are over it)."""
    cfg = {**groups.settings(short)[section], "seeds": list(seeds)}
    saved = groups.MODES
    groups.MODES = tuple(modes)  # groups.classification trains every mode of groups.MODES
    try:
        t0 = time.time()
        results = groups.run_section(section, cfg)
        minutes = (time.time() - t0) / 60
    finally:
        groups.MODES = saved
    return {"settings": cfg, "modes": list(modes), "machine": groups.machine(), "minutes": minutes, "results": results}


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--section", choices=SECTIONS, default="shakespeare")
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--modes", nargs="+", choices=groups.MODES, default=list(groups.MODES),
                    help="modes to train (none is always trained first: the gains are measured against it)")
    ap.add_argument("--short", action="store_true", help="groups.py's --short settings")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--out", default=None, help="results file stem (default: benchmarks/results/" +
                    results_name("<section>", [0], False).replace("seed0", "seed<seeds>") + "[_short])")
    args = ap.parse_args(argv)
    modes = ["none"] + [m for m in args.modes if m != "none"]
    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else groups.RESULTS / results_name(args.section, args.seeds, args.short)
    path = out.parent / (out.name + ".json")
    res = run(args.section, args.seeds, modes, args.short)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2))
    print(f"written: {path}")
    return path


if __name__ == "__main__":
    main()
