"""The ``vaekit`` command: ``fit``, ``evaluate``, ``sample``, ``demo``, ``analyze``, ``graph``, ``embed``, ``new``.

``vaekit fit`` is jsonargparse over the typed constructors (see :mod:`vaekit.config`);
``evaluate``, ``sample``, ``analyze`` and ``graph`` read a run directory. Subcommands other
than ``fit``/``evaluate``/``sample``/``demo`` live in :mod:`vaekit.commands` (one module each,
with ``main(argv)``) and are imported only when used.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "fit_from_args"]

USAGE = """vaekit <command> [options]

commands:
  fit        train a model from a YAML config:   vaekit fit --config CONFIG.yaml [--trainer.max_epochs 5 ...]
             continue a run exactly:             vaekit fit --resume RUN_DIR
  evaluate   ELBO and IWAE log-likelihood:       vaekit evaluate RUN_DIR [--iwae-k 5000] [--split test]
  (evaluate, sample, analyze, graph and fit --resume build only vaekit's own classes from a
   run directory's config.yaml; add --trust-code for a run whose code you trust)
  sample     draw samples to a PNG grid:         vaekit sample RUN_DIR -n 64 --out samples.png
  demo       train + evaluate a small VAE on MNIST (offline fallback: scikit-learn digits)
  analyze    analysis toolkit on a trained run:  vaekit analyze RUN_DIR   (writes RUN_DIR/eval/analysis/)
  graph      draw a model's block graph:         vaekit graph RUN_DIR --out graph.png
  embed      embed data like t-SNE/UMAP:         vaekit embed DATA --n-components 2 --out Z.npy
  new        write a template to start from:     vaekit new model NAME | dataset NAME | table NAME

Run 'vaekit <command> --help' for the options of a command.
"""


class CLIError(Exception):
    """An error to show the user as one clean line (exit status 2)."""


#: Exit statuses of the ``vaekit`` command (see docs/cli.md).
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_RUN_FAILED = 0, 1, 2, 3


def fit_from_args(argv: Sequence[str]) -> Any:
    """Parse ``vaekit fit`` arguments, build everything, train. Returns the :class:`FitResult`.

    Bad arguments, and errors while building the objects of the config, raise :class:`CLIError`
    (the constructor's error chained); an error of the run (bad data, an error while training)
    propagates as it is. A failed run is returned, not raised: :func:`main` exits with status 3.
    """
    from .config import ConfigError, build_fit_parser, check_config_keys, fit_namespace
    from .training import RunDir
    from .training.rundir import read_yaml_mapping

    argv = list(argv)
    resume = run = None
    trust_code = "--trust-code" in argv  # a run directory's config is checked against the registry unless given
    argv = [arg for arg in argv if arg != "--trust-code"]
    if trust_code and "--resume" not in argv:
        raise CLIError("--trust-code applies to --resume RUN_DIR only: a config given with --config is your own "
                       "and may name any importable class")
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
        from .trust import UntrustedConfigError, check_config_trust

        try:  # a run directory is data: nothing it names is imported before this check
            check_config_trust(saved, file=run.config_file, trust_code=trust_code)
        except UntrustedConfigError as e:
            raise untrusted_as_cli_error(e) from e
        except ConfigError as e:
            raise CLIError(f"--resume: {e}") from e
        unknown = sorted(str(k) for k in saved if k not in ("model", "data", "objective", "trainer"))
        if unknown:  # (check_config_keys would import the classes to check their keys: not for a run directory)
            raise CLIError(f"--resume: {run.config_file}: unknown section{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(map(repr, unknown))}; accepted: model, data, objective, trainer")
        if any(arg == "--config" or arg.startswith("--config=") for arg in argv):
            raise CLIError("--resume continues a run from its own config.yaml, so --config cannot be given with it; "
                           "change a setting with --KEY VALUE (e.g. --trainer.max_epochs 5)")
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            path = Path(argv[i + 1])
            if not path.is_file():
                raise CLIError(f"--config: file {str(path)!r} does not exist")
            try:
                config = read_yaml_mapping(path)  # names the file (and line) of bytes, YAML or a non-mapping
            except ValueError as e:
                raise CLIError(f"--config: {e}") from None
            try:
                check_config_keys(config)
            except ConfigError as e:
                raise CLIError(f"{path}: {e}") from None
    _check_trainer_overrides(argv)
    parser = build_fit_parser()
    from .trust import UntrustedConfigError, building_from_run

    try:
        if run is None:
            cfg = parser.parse_args(argv)
        else:  # the checked mapping itself, with no file behind it: no path in it is read relative to the run
            with building_from_run(run.config_file, trust_code=trust_code):
                cfg = parser.parse_args(argv, namespace=parser.parse_object(saved))
    except SystemExit:
        raise
    except UntrustedConfigError as e:
        raise untrusted_as_cli_error(e) from e
    except Exception as e:  # jsonargparse.ArgumentError and friends
        raise CLIError(_clean(str(e)) + "\n(run 'vaekit fit --config CONFIG.yaml --print_config' to see every accepted key)") from None
    from .training.state import TrainingStoppedWarning

    try:
        with warnings.catch_warnings():  # main() reports a failed run itself, with exit status 3
            warnings.simplefilter("ignore", TrainingStoppedWarning)
            return fit_namespace(parser, cfg, resume=resume, run_config=None if run is None else run.config_file,
                                 trust_code=trust_code)
    except UntrustedConfigError as e:
        raise untrusted_as_cli_error(e) from e
    except ConfigError as e:  # only the objects of the config could not be built; errors of the run propagate
        raise CLIError(_clean(str(e))) from e


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


#: Help of ``--trust-code`` (``evaluate``, ``sample``, ``analyze``, ``graph``, ``fit --resume``).
TRUST_HELP = ("build classes and from_python sources from outside vaekit's registry of constructible types that "
              "the run's config.yaml names; this runs their code, so only for runs from someone you trust "
              "(see 'Trust model' in docs/training.md)")


def untrusted_as_cli_error(error: Exception) -> CLIError:
    """A refused run-directory config (:class:`vaekit.trust.UntrustedConfigError`) as one CLI line naming ``--trust-code``."""
    describe = getattr(error, "describe", None)
    return CLIError(describe(flag="--trust-code") if describe is not None else str(error))


def _evaluate(argv: Sequence[str]) -> None:
    from .runs import evaluate_run
    from .trust import UntrustedConfigError

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
    p.add_argument("--methods", nargs="+", default=None, choices=["prior", "optimize", "amortized"], metavar="METHOD",
                   help="group-latent runs: new-group inference to score: prior, optimize, amortized "
                        "(default: prior optimize, + amortized when the model has a set encoder)")
    p.add_argument("--steps", type=int, default=100, help="group-latent runs: Adam steps of 'optimize' per new group (default 100)")
    p.add_argument("--shuffles", type=int, default=5,
                   help="group-latent runs: shuffles of each group's examples that the curve averages (default 5)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress report (default: a bar with the time left on a terminal, a few lines otherwise)")
    p.add_argument("--force", action="store_true",
                   help="run estimates beyond the work budget of 1e10 (sample, example) pairs (see docs/estimators.md)")
    p.add_argument("--trust-code", action="store_true", help=TRUST_HELP)
    a = p.parse_args(argv)
    if _is_group_run(a.run_dir, trust_code=a.trust_code):
        return _evaluate_groups(a)
    from .inference.budget import WorkBudgetError

    try:
        out = evaluate_run(a.run_dir, iwae_k=a.iwae_k, split=a.split, n_points=a.n_points, batch_size=a.batch_size,
                           checkpoint=a.checkpoint, device=a.device, seed=a.seed, ais_chains=a.ais_chains,
                           ais_steps=a.ais_steps, local_opt=a.local_opt, local_opt_steps=a.local_opt_steps,
                           progress=not a.no_progress, force=a.force, trust_code=a.trust_code)
    except UntrustedConfigError as e:
        raise untrusted_as_cli_error(e) from e
    except WorkBudgetError as e:  # in the words of the command line
        flags = {"iwae_log_likelihood": {"k": "--iwae-k"}, "ais_log_likelihood": {"n_chains": "--ais-chains",
                 "n_steps": "--ais-steps"}, "optimize_local_posterior": {"max_steps": "--local-opt-steps"}}
        names = {"n": "--n-points", **flags.get(e.work.estimator, {})}
        raise CLIError(e.describe(names, force="--force", adjustable=list(names))) from None
    print(f"{a.split}: n={out['n']}  ELBO {out['elbo']:.3f} ± {out['elbo_stderr']:.3f}  "
          f"IWAE(k={out['k']}) log p(x) {out['iwae']:.3f} ± {out['iwae_stderr']:.3f} nats  ({out['seconds']:.1f} s on {out['device']})")
    print(f"written: {out['path']}")
    if "gaps" in out:
        from .inference.gaps import GapColumn, gap_table

        fields = {k: out["gaps"][k] for k in GapColumn.__dataclass_fields__}
        print(gap_table([GapColumn(**fields)]))
        print(f"written: {out['gaps_path']} (and .json, .csv)")


def _is_group_run(run_dir: str, trust_code: bool = False) -> bool:
    """Whether a run holds a group-latent model (evaluated by metrics per group, not log p(x))."""
    from .models.group import GroupPredictor
    from .runs import load

    try:
        return isinstance(load(run_dir, checkpoint="last", trust_code=trust_code), GroupPredictor)
    except (FileNotFoundError, ValueError, TypeError):
        return False  # evaluate_run reports the problem


def _evaluate_groups(a: argparse.Namespace) -> None:
    from .runs import evaluate_group_run

    if any(ks < 1 for ks in a.ks):
        raise CLIError(f"--ks must be positive integers, got {a.ks}")
    for flag, v, low in (("--max-groups", a.max_groups, 1), ("--steps", a.steps, 0), ("--shuffles", a.shuffles, 1)):
        if v < low:
            raise CLIError(f"{flag} must be an integer >= {low}, got {v}")
    import warnings

    from .inference.groups import FewGroupsWarning

    with warnings.catch_warnings():  # printed below from the result
        warnings.simplefilter("ignore", FewGroupsWarning)
        out = evaluate_group_run(a.run_dir, split=a.split, ks=a.ks, checkpoint=a.checkpoint, device=a.device or "cpu",
                                 seed=a.seed, max_groups=a.max_groups, methods=a.methods, steps=a.steps,
                                 shuffles=a.shuffles, trust_code=a.trust_code)
    print(f"{a.split}: " + "  ".join(f"{k} {v:.4f}" for k, v in out["metrics"].items()))
    curve = out["data_efficiency"]
    if curve:
        print(f"new groups ({curve[0]['n_groups']} groups x {curve[0]['shuffles']} shuffles of their examples; "
              f"± standard error over groups; gain = paired improvement over the prior mean):")
    for r in curve:
        gain = f"  gain {r['gain']:+.4f} ± {r['gain_stderr']:.4f}" if "gain" in r and r["method"] != "prior" else ""
        print(f"  new groups, {r['method']:>9}, k={r['k']:>3}: {r['metric']} {r['value']:.4f} ± {r['stderr']:.4f}"
              f"  (n={r['n_groups']} groups){gain}")
    for note in out.get("warnings", []):
        print(f"WARNING: {note}")
    if "variance_components" in out:  # Gaussian likelihoods: on the outcome's scale
        from .models.group_stats import VarianceComponents

        print(VarianceComponents(**out["variance_components"]))
        print(f"written: {Path(a.run_dir) / 'eval'}/variance_components.json")
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
    p.add_argument("--trust-code", action="store_true", help=TRUST_HELP)
    a = p.parse_args(argv)
    from .trust import UntrustedConfigError

    try:
        path = sample_run(a.run_dir, a.n, a.out, checkpoint=a.checkpoint, seed=a.seed, mean=not a.draw,
                          trust_code=a.trust_code)
    except UntrustedConfigError as e:
        raise untrusted_as_cli_error(e) from e
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
    """Entry point of the ``vaekit`` console command; returns the exit status.

    0: done; 1: an error while working (type and message on stderr; for an error while
    training, the traceback in the run's ``log.txt``); 2: bad input or config, refused before
    anything was written; 3: ``vaekit fit`` ran but failed (``too_many_skips``,
    ``non_finite_weights``, ``diverged``). ``VAEKIT_DEBUG=1`` also prints the traceback.
    """
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
    debug = bool(os.environ.get("VAEKIT_DEBUG"))
    try:
        result = COMMANDS[cmd](rest)
    except CLIError as e:
        if debug and e.__cause__ is not None:
            traceback.print_exception(type(e.__cause__), e.__cause__, e.__cause__.__traceback__)
        print(f"vaekit {cmd}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:
        return _report_error(cmd, e, debug)
    if cmd == "fit" and getattr(result, "failed", False):
        print(f"vaekit fit: error: the run failed ({result.stop_reason}): {result.message}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return EXIT_OK


def _report_error(cmd: str, error: Exception, debug: bool) -> int:
    """One line on stderr (the traceback too with ``VAEKIT_DEBUG``) and the exit status of an error.

    An error raised while a run was training carries the ``log.txt`` that holds its traceback
    (``vaekit_log_file``, set by the training loop): it keeps its type and message, status 1.
    Otherwise a ``ValueError``/``TypeError``/``FileNotFoundError`` is bad input, refused before
    anything was written (status 2); any other error is status 1.
    """
    log_file = getattr(error, "vaekit_log_file", None)
    if debug:
        traceback.print_exception(type(error), error, error.__traceback__)
    if log_file is None and isinstance(error, (ValueError, TypeError, FileNotFoundError)):
        hint = "" if debug else "  (set VAEKIT_DEBUG=1 for the traceback)"
        print(f"vaekit {cmd}: error: {error}{hint}", file=sys.stderr)
        return EXIT_USAGE
    if log_file is not None:
        hint = f"traceback in {log_file}" + ("" if debug else "; set VAEKIT_DEBUG=1 to print it")
    else:
        hint = "" if debug else "set VAEKIT_DEBUG=1 for the traceback"
    print(f"vaekit {cmd}: error: {type(error).__name__}: {error}" + (f"  ({hint})" if hint else ""), file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
