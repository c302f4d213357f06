"""``vaekit demo``: train and evaluate a small VAE on MNIST (offline: scikit-learn's digits).

The command reads its options and runs :func:`vaekit.demo.run_demo`, which goes through
the paths of ``vaekit fit``, ``evaluate`` and ``sample``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vaekit demo``."""
    p = argparse.ArgumentParser(prog="vaekit demo", description="Train and evaluate a small VAE on MNIST (about a minute on 2 CPU cores)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: sized to about a minute)")
    p.add_argument("--iwae-k", type=int, default=None)
    p.add_argument("--offline-digits", action="store_true", help="skip MNIST and use scikit-learn's bundled digits")
    return p


def main(argv: Sequence[str]) -> None:
    """Run ``vaekit demo`` with the arguments ``argv`` (after the subcommand)."""
    from ..demo import run_demo

    a = build_parser().parse_args(list(argv))
    run_demo(runs_dir=a.runs_dir, epochs=a.epochs, iwae_k=a.iwae_k, force_digits=a.offline_digits)
