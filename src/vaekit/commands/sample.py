"""``vaekit sample RUN_DIR -n 64 --out samples.png``: draw samples from a trained run into a PNG grid."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._common import CLIError, add_trust_code, untrusted_as_cli

__all__ = ["main", "build_parser", "TEMPERATURE_HELP", "temperature_setting"]

#: What ``--temperature`` accepts, in ``vaekit sample`` and ``vaekit analyze``.
TEMPERATURE_HELP = ("one number for every latent, or (hierarchical models) one number per latent layer in the "
                    "model's order, top first (e.g. 1.0 0.8 0.6), or a schedule linear:START:END from the top "
                    "layer to the bottom one")


def temperature_setting(tokens: Sequence[str], flag: str = "--temperature") -> float | list[float] | str:
    """The words after ``--temperature`` as one setting: a number, a list of numbers or a schedule string.

    >>> temperature_setting(["0.5"]), temperature_setting(["1", "0.8"]), temperature_setting(["linear:1:0.5"])
    (0.5, [1.0, 0.8], 'linear:1:0.5')
    """
    tokens = list(tokens)
    if len(tokens) == 1 and tokens[0].startswith("linear:"):
        return tokens[0]
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise CLIError(f"{flag} takes {TEMPERATURE_HELP}; got {' '.join(tokens)!r}") from None
    return values[0] if len(values) == 1 else values


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vaekit sample``."""
    p = argparse.ArgumentParser(prog="vaekit sample", description="Draw samples from a trained run and save a PNG grid")
    p.add_argument("run_dir")
    p.add_argument("-n", type=int, default=64, help="number of samples")
    p.add_argument("--out", default=None, help="output .png (default RUN_DIR/eval/samples.png)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draw", action="store_true", help="draw x ~ p(x|z) instead of showing its mean")
    p.add_argument("--temperature", nargs="+", default=None, metavar="T", help=f"prior temperature: {TEMPERATURE_HELP} (default 1)")
    add_trust_code(p)
    return p


def main(argv: Sequence[str]) -> None:
    """Run ``vaekit sample`` with the arguments ``argv`` (after the subcommand)."""
    from ..runs import sample_run

    a = build_parser().parse_args(list(argv))
    temperature = None if a.temperature is None else temperature_setting(a.temperature)
    with untrusted_as_cli():
        path = sample_run(a.run_dir, a.n, a.out, checkpoint=a.checkpoint, seed=a.seed, mean=not a.draw,
                          trust_code=a.trust_code, temperature=temperature)
    print(f"written: {path}")
