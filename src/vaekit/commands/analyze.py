"""``vaekit analyze RUN_DIR``: the analysis toolkit on a trained run, written to ``RUN_DIR/eval/analysis/``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._common import CLIError, add_trust_code, untrusted_as_cli
from .sample import TEMPERATURE_HELP, temperature_setting

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vaekit analyze``."""
    from ..analysis.report import ANALYSES

    p = argparse.ArgumentParser(
        prog="vaekit analyze",
        description="Reconstructions, samples at temperatures, KL per latent and dimension, active units, probes, "
                    "latent traversals, white-noise receptive fields and most exciting inputs of a trained run; "
                    "writes PNGs and analysis.json to RUN_DIR/eval/analysis/")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="examples to analyse (default test)")
    p.add_argument("--n-points", type=int, default=1000, help="analyse the first N examples of the split (default 1000)")
    p.add_argument("--only", default=None, metavar="NAMES",
                   help=f"comma-separated subset of: {','.join(ANALYSES)},extra (default: all)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-images", type=int, default=32, help="examples per image grid")
    p.add_argument("--n-units", type=int, default=8, help="most active units per latent to traverse / give a receptive field and an MEI")
    p.add_argument("--mlp-probe", action="store_true", help="also train MLP probes (slower)")
    p.add_argument("--block", action="append", default=None, metavar="NAME",
                   help="probe, traverse and give receptive fields and MEIs to this latent or, for a hierarchical "
                        "model, any block's output (repeat the flag or give NAME,NAME; default: every latent)")
    p.add_argument("--temperature", nargs="+", action="append", default=None, metavar="T",
                   help=f"one sample grid at this temperature setting: {TEMPERATURE_HELP}; repeat the flag for "
                        "several grids (default: 0, 0.5, 0.75 and 1)")
    add_trust_code(p)
    return p


def main(argv: Sequence[str]) -> None:
    """Run ``vaekit analyze`` with the arguments ``argv`` (after the subcommand)."""
    from ..analysis.report import check_which
    from ..runs import analyze_run

    a = build_parser().parse_args(list(argv))
    try:
        which = check_which(a.only) if a.only is not None else None
    except ValueError as e:
        raise CLIError(f"--only: {e}") from None
    options = {} if a.temperature is None else {"temperatures": [temperature_setting(t) for t in a.temperature]}
    if a.block is not None:
        options["blocks"] = [b.strip() for arg in a.block for b in arg.split(",")]
    with untrusted_as_cli():
        res = analyze_run(a.run_dir, split=a.split, n_points=a.n_points, checkpoint=a.checkpoint, which=which,
                          device=a.device, seed=a.seed, n_images=a.n_images, n_units=a.n_units, probe_mlp=a.mlp_probe,
                          trust_code=a.trust_code, **options)
    blocks = f", blocks {res['blocks']}" if "blocks" in res else ""
    print(f"analysed {res['n']} {a.split} examples of {res['model']} (latents {res['latents']}{blocks})")
    if "recon" in res:
        r = res["recon"]
        ssim = f"  SSIM {r['ssim']:.3f}" if "ssim" in r else ""
        print(f"  reconstruction: -ELBO {r['nelbo']:.3f} nats  MSE {r['mse']:.4g}{ssim}")
    for name, s in res.get("kl", {}).items():
        print(f"  {name}: KL {s['kl']:.3f} nats, {s['active_units']}/{s['dims']} active units")
    for name, p in res.get("probe", {}).items():
        mlp = f", MLP {p['mlp_accuracy']:.3f}" if p["mlp_accuracy"] is not None else ""
        print(f"  probe {name}: linear {p['linear_accuracy']:.3f}{mlp} (chance {p['chance']:.3f})")
    for name, why in res["skipped"].items():
        print(f"  skipped {name}: {why}")
    for f in res["files"]:
        print(f"written: {res['out_dir']}/{f}")
