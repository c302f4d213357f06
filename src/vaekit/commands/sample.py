"""``vaekit sample RUN_DIR -n 64 --out samples.png``: draw samples from a trained run into a PNG grid."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._common import add_trust_code, untrusted_as_cli

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vaekit sample``."""
    p = argparse.ArgumentParser(prog="vaekit sample", description="Draw samples from a trained run and save a PNG grid")
    p.add_argument("run_dir")
    p.add_argument("-n", type=int, default=64, help="number of samples")
    p.add_argument("--out", default=None, help="output .png (default RUN_DIR/eval/samples.png)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draw", action="store_true", help="draw x ~ p(x|z) instead of showing its mean")
    add_trust_code(p)
    return p


def main(argv: Sequence[str]) -> None:
    """Run ``vaekit sample`` with the arguments ``argv`` (after the subcommand)."""
    from ..runs import sample_run

    a = build_parser().parse_args(list(argv))
    with untrusted_as_cli():
        path = sample_run(a.run_dir, a.n, a.out, checkpoint=a.checkpoint, seed=a.seed, mean=not a.draw,
                          trust_code=a.trust_code)
    print(f"written: {path}")
