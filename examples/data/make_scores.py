"""Write scores.csv: simulated test scores of 25 students in each of 30 schools (a random-intercept model).

    y = 1.0 + 0.5 * x1 - 0.3 * x2 + u_school + e,   u_school ~ N(0, 0.3^2),   e ~ N(0, 0.75^2)

so the between-school variance is 0.09 and the residual (within-school) variance 0.5625, the
same order as High School and Beyond's. Columns: ``school`` (text ids S01..S30), ``student``
(1..25 within the school), ``x1``, ``x2`` (standard normal covariates) and ``y``. The school
effects actually drawn are written to ``scores_effects.csv``. Deterministic in ``--seed``.

    python examples/data/make_scores.py            # rewrites examples/data/scores.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def simulate(n_schools: int = 30, n_students: int = 25, tau: float = 0.3, sigma: float = 0.75, seed: int = 0):
    """Rows (school, student, x1, x2, y) and the school effects, as lists."""
    rng = np.random.default_rng(seed)
    effects = rng.normal(0.0, tau, n_schools)
    rows = []
    for s in range(n_schools):
        x = rng.normal(size=(n_students, 2))
        y = 1.0 + 0.5 * x[:, 0] - 0.3 * x[:, 1] + effects[s] + rng.normal(0.0, sigma, n_students)
        rows += [(f"S{s + 1:02d}", i + 1, x[i, 0], x[i, 1], y[i]) for i in range(n_students)]
    return rows, effects


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(HERE / "scores.csv"))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rows, effects = simulate(seed=a.seed)
    out = Path(a.out)
    with open(out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["school", "student", "x1", "x2", "y"])
        w.writerows((s, i, f"{x1:.4f}", f"{x2:.4f}", f"{y:.4f}") for s, i, x1, x2, y in rows)
    with open(out.with_name(out.stem + "_effects.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["school", "effect"])
        w.writerows((f"S{s + 1:02d}", f"{e:.4f}") for s, e in enumerate(effects))
    print(f"written: {out} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
