"""``vaekit graph RUN_DIR [--out graph.png]``: draw the block graph of a trained hierarchical VAE."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ._common import CLIError, add_trust_code, untrusted_as_cli

__all__ = ["main"]


def main(argv: Sequence[str]) -> None:
    """Parse the arguments, rebuild the run's model and write its block graph.

    Raises
    ------
    vaekit.commands.CLIError
        When the run's model is not built from blocks, or its config names code outside
        vaekit's registry without ``--trust-code`` (nothing is written).
    """
    from ..models.hierarchical.graph import draw_graph
    from ..models.hierarchical.model import HierarchicalVAE
    from ..runs import load

    p = argparse.ArgumentParser(prog="vaekit graph", description="Draw the block graph of a hierarchical VAE run as an image")
    p.add_argument("run_dir")
    p.add_argument("--out", default=None, help="output image, .png/.svg/.pdf (default RUN_DIR/eval/graph.png)")
    p.add_argument("--checkpoint", default="last", choices=["best", "last"])
    add_trust_code(p)
    a = p.parse_args(list(argv))
    with untrusted_as_cli():
        model = load(a.run_dir, checkpoint=a.checkpoint, trust_code=a.trust_code)
    if not isinstance(model, HierarchicalVAE):
        raise CLIError(f"{a.run_dir} holds a {type(model).__name__}, which has no block graph; "
                       "vaekit graph draws models built from blocks (vaekit.models.hierarchical.HierarchicalVAE)")
    out = Path(a.out) if a.out else Path(a.run_dir) / "eval" / "graph.png"
    draw_graph(model, out, title=Path(a.run_dir).parent.name)
    print(f"written: {out}")
