"""The ``vaekit`` command: ``fit``, ``evaluate``, ``sample``, ``demo``, ``analyze``, ``graph``, ``embed``, ``new``.

``vaekit fit`` is jsonargparse over the typed constructors (see :mod:`vaekit.config`);
``evaluate``, ``sample``, ``analyze`` and ``graph`` read a run directory. Subcommands other
than ``fit``/``evaluate``/``sample``/``demo`` live in :mod:`vaekit.commands` (one module each,
with ``main(argv)``) and are imported only when used.
"""

from __future__ import annotations

import argparse
import sys
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "fit_from_args"]

USAGE = """vaekit <command> [options]

commands:
  fit        train a model from a YAML config:   vaekit fit --config CONFIG.yaml [--trainer.max_epochs 5 ...]
             continue a run exactly:             vaekit fit --resume RUN_DIR
  evaluate   ELBO and IWAE log-likelihood:       vaekit evaluate RUN_DIR [--iwae-k 5000] [--split test]
  sample     draw samples to a PNG grid:         vaekit sample RUN_DIR -n 64 --out samples.png
  demo       train + evaluate a small VAE on MNIST (offline fallback: scikit-learn digits)
  analyze    analysis toolkit on a trained run:  vaekit analyze RUN_DIR   (writes RUN_DIR/eval/analysis/)
  graph      draw a model's block graph:         vaekit graph RUN_DIR --out graph.png
  embed      embed data like t-SNE/UMAP:         vaekit embed DATA --n-components 2 --out Z.npy
  new        write a template to start from:     vaekit new model NAME | vaekit new dataset NAME

Run 'vaekit <command> --help' for the options of a command.
"""


class CLIError(Exception):
    """An error to show the user as one clean line (exit status 2)."""


def fit_from_args(argv: Sequence[str]) -> Any:
    """Parse ``vaekit fit`` arguments, build everything, train. Returns the :class:`FitResult`."""
    import yaml

    from .config import ConfigError, build_fit_parser, check_config_keys, fit_namespace
    from .training import RunDir

    argv = list(argv)
    resume = None
    if "--resume" in argv:
        i = argv.index("--resume")
        if i + 1 >= len(argv):
            raise CLIError("--resume needs a run directory: vaekit fit --resume runs/NAME/TIMESTAMP")
        resume = argv[i + 1]
        del argv[i:i + 2]
        run_path = Path(resume)
        if run_path.is_file():  # a checkpoint inside a run: runs/NAME/TIME/checkpoints/step-N.ckpt
            run_path = run_path.parent.parent
        try:
            run = RunDir.open(run_path)
        except (FileNotFoundError, ValueError) as e:
            raise CLIError(f"--resume: {e}") from None
        saved = run.read_config()
        if not saved.get("model") or not saved.get("data"):
            raise CLIError(f"--resume: {run.config_file} lacks the model/data sections needed to rebuild the run")
        argv = ["--config", str(run.config_file), *argv]
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            path = Path(argv[i + 1])
            if not path.is_file():
                raise CLIError(f"--config: file {str(path)!r} does not exist")
            try:
                check_config_keys(yaml.safe_load(path.read_text()) or {})
            except ConfigError as e:
                raise CLIError(f"{path}: {e}") from None
            except yaml.YAMLError as e:
                raise CLIError(f"{path} is not valid YAML: {e}") from None
    _check_trainer_overrides(argv)
    parser = build_fit_parser()
    try:
        cfg = parser.parse_args(argv)
    except SystemExit:
        raise
    except Exception as e:  # jsonargparse.ArgumentError and friends
        raise CLIError(_clean(str(e)) + "\n(run 'vaekit fit --config CONFIG.yaml --print_config' to see every accepted key)") from None
    try:
        return fit_namespace(parser, cfg, resume=resume)
    except (ValueError, TypeError, FileNotFoundError):
        raise
    except Exception as e:  # jsonargparse wraps constructor errors
        raise CLIError(f"cannot build the objects of the config: {_clean(str(e))}") from None


def _check_trainer_overrides(argv: Sequence[str]) -> None:
    """``--trainer.KEY`` flags must name a Trainer argument (caught here with the accepted list)."""
    from .config import ConfigError, _check_args
    from .training import Trainer

    for arg in argv:
        if arg.startswith("--trainer."):
            key = arg[len("--trainer."):].split("=", 1)[0]
            try:
                _check_args(Trainer, {key: None}, "trainer")
            except ConfigError as e:
                raise CLIError(str(e)) from None


def _clean(msg: str) -> str:
    lines = [ln.rstrip() for ln in msg.strip().splitlines() if ln.strip()]
    keep = [ln for ln in lines if "Expected a <class 'NoneType'>" not in ln and not ln.strip().startswith("Given value")]
    return "\n".join(keep[:12])


def _evaluate(argv: Sequence[str]) -> None:
    from .runs import evaluate_run

    p = argparse.ArgumentParser(prog="vaekit evaluate", description="ELBO and IWAE log-likelihood of a trained run; writes eval/*.json")
    p.add_argument("run_dir")
    p.add_argument("--iwae-k", type=int, default=5000, help="importance samples per example (default 5000)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--n-points", type=int, default=None, help="evaluate only the first N examples")
    p.add_argument("--batch-size", type=int, default=None, help="examples per batch (default: automatic)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ais-chains", type=int, default=None, help="run AIS with this many chains per example")
    p.add_argument("--ais-steps", type=int, default=None, help="AIS annealing steps T (T+1 distributions; default 1000 with AIS)")
    p.add_argument("--local-opt", nargs="+", default=[], metavar="FAMILY",
                   help="optimise these posterior families per datapoint (e.g. ffg af) and write the gap table")
    p.add_argument("--local-opt-steps", type=int, default=10000, help="maximum local-optimisation steps per batch")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 5, 10, 20], metavar="K",
                   help="group-latent runs: labelled examples per new group for the data-efficiency curve")
    p.add_argument("--max-groups", type=int, default=50,
                   help="group-latent runs: groups (drawn at random) that the data-efficiency curve treats as new")
    a = p.parse_args(argv)
    if _is_group_run(a.run_dir):
        return _evaluate_groups(a)
    out = evaluate_run(a.run_dir, iwae_k=a.iwae_k, split=a.split, n_points=a.n_points, batch_size=a.batch_size,
                       checkpoint=a.checkpoint, device=a.device, seed=a.seed, ais_chains=a.ais_chains,
                       ais_steps=a.ais_steps, local_opt=a.local_opt, local_opt_steps=a.local_opt_steps)
    print(f"{a.split}: n={out['n']}  ELBO {out['elbo']:.3f} ± {out['elbo_stderr']:.3f}  "
          f"IWAE(k={out['k']}) log p(x) {out['iwae']:.3f} ± {out['iwae_stderr']:.3f} nats  ({out['seconds']:.1f} s on {out['device']})")
    print(f"written: {out['path']}")
    if "gaps" in out:
        from .inference.gaps import GapColumn, gap_table

        fields = {k: out["gaps"][k] for k in GapColumn.__dataclass_fields__}
        print(gap_table([GapColumn(**fields)]))
        print(f"written: {out['gaps_path']} (and .json, .csv)")


def _is_group_run(run_dir: str) -> bool:
    """Whether a run holds a group-latent model (evaluated by metrics per group, not log p(x))."""
    from .models.group import GroupPredictor
    from .runs import load

    try:
        return isinstance(load(run_dir, checkpoint="last"), GroupPredictor)
    except (FileNotFoundError, ValueError, TypeError):
        return False  # evaluate_run reports the problem


def _evaluate_groups(a: argparse.Namespace) -> None:
    from .runs import evaluate_group_run

    if any(ks < 1 for ks in a.ks):
        raise CLIError(f"--ks must be positive integers, got {a.ks}")
    if a.max_groups < 1:
        raise CLIError(f"--max-groups must be a positive integer, got {a.max_groups}")
    out = evaluate_group_run(a.run_dir, split=a.split, ks=a.ks, checkpoint=a.checkpoint, device=a.device or "cpu",
                             seed=a.seed, max_groups=a.max_groups)
    print(f"{a.split}: " + "  ".join(f"{k} {v:.4f}" for k, v in out["metrics"].items()))
    for r in out["data_efficiency"]:
        if r["metric"] in ("accuracy", "rmse"):
            print(f"  new groups, {r['method']:>9}, k={r['k']:>3}: {r['metric']} {r['value']:.4f}")
    print(f"written: {Path(a.run_dir) / 'eval'}/group_metrics.json, groups_eval.csv, data_efficiency.csv/.png")


def _sample(argv: Sequence[str]) -> None:
    from .runs import sample_run

    p = argparse.ArgumentParser(prog="vaekit sample", description="Draw samples from a trained run and save a PNG grid")
    p.add_argument("run_dir")
    p.add_argument("-n", type=int, default=64, help="number of samples")
    p.add_argument("--out", default=None, help="output .png (default RUN_DIR/eval/samples.png)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draw", action="store_true", help="draw x ~ p(x|z) instead of showing its mean")
    a = p.parse_args(argv)
    path = sample_run(a.run_dir, a.n, a.out, checkpoint=a.checkpoint, seed=a.seed, mean=not a.draw)
    print(f"written: {path}")


def _demo(argv: Sequence[str]) -> None:
    from .demo import run_demo

    p = argparse.ArgumentParser(prog="vaekit demo", description="Train and evaluate a small VAE on MNIST (about a minute on 2 CPU cores)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: sized to about a minute)")
    p.add_argument("--iwae-k", type=int, default=None)
    p.add_argument("--offline-digits", action="store_true", help="skip MNIST and use scikit-learn's bundled digits")
    a = p.parse_args(argv)
    run_demo(runs_dir=a.runs_dir, epochs=a.epochs, iwae_k=a.iwae_k, force_digits=a.offline_digits)


def _command_module(name: str) -> Callable[[Sequence[str]], Any]:
    """A subcommand that lives in ``vaekit.commands.<name>`` (its ``main(argv)``), imported on use."""

    def run(argv: Sequence[str]) -> Any:
        import importlib

        return importlib.import_module(f"vaekit.commands.{name}").main(argv)

    return run


COMMANDS: dict[str, Callable[[Sequence[str]], Any]] = {
    "fit": fit_from_args, "evaluate": _evaluate, "sample": _sample, "demo": _demo,
    **{name: _command_module(name) for name in ("analyze", "graph", "embed", "new")},
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vaekit`` console command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"vaekit {__version__}")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"vaekit: unknown command {cmd!r}; accepted: {', '.join(COMMANDS)}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        COMMANDS[cmd](rest)
    except CLIError as e:
        print(f"vaekit {cmd}: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError) as e:
        if os.environ.get("VAEKIT_DEBUG"):
            raise
        print(f"vaekit {cmd}: error: {e}  (set VAEKIT_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
