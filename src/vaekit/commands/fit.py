"""``vaekit fit``: train from a YAML config, or continue a run exactly (``--resume RUN_DIR``).

The parser is jsonargparse over the typed constructors (:func:`vaekit.config.build_fit_parser`):
``--config``, ``--model.*``, ``--data.*``, ``--objective.*``, ``--trainer.*`` and
``--print_config``. A run directory's ``config.yaml`` (``--resume``) is data: it is checked
against vaekit's registry of constructible types before anything it names is imported,
unless ``--trust-code`` is given.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import EXIT_RUN_FAILED, CLIError, untrusted_as_cli_error

__all__ = ["main", "fit_from_args"]


def main(argv: Sequence[str]) -> int | None:
    """Run ``vaekit fit``; a run that failed (``too_many_skips``, ``non_finite_weights``, ``diverged``) is status 3."""
    result = fit_from_args(argv)
    if getattr(result, "failed", False):
        print(f"vaekit fit: error: the run failed ({result.stop_reason}): {result.message}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return None


def fit_from_args(argv: Sequence[str]) -> Any:
    """Parse ``vaekit fit`` arguments, build everything, train. Returns the :class:`~vaekit.training.FitResult`.

    Bad arguments, and errors while building the objects of the config, raise :class:`CLIError`
    (the constructor's error chained); an error of the run (bad data, an error while training)
    propagates as it is. A failed run is returned, not raised: :func:`main` exits with status 3.
    """
    from ..config import ConfigError, build_fit_parser, error_lines, fit_namespace
    from ..trust import UntrustedConfigError, building_from_run

    argv = list(argv)
    trust_code = "--trust-code" in argv  # a run directory's config is checked against the registry unless given
    argv = [arg for arg in argv if arg != "--trust-code"]
    if trust_code and "--resume" not in argv:
        raise CLIError("--trust-code applies to --resume RUN_DIR only: a config given with --config is your own "
                       "and may name any importable class")
    resume, run, saved = _resume_arguments(argv, trust_code)  # removes --resume RUN_DIR from argv
    _check_config_files(argv)
    _check_trainer_overrides(argv)
    parser = build_fit_parser()
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
        raise CLIError(error_lines(e) + "\n(run 'vaekit fit --config CONFIG.yaml --print_config' to see every accepted key)") from None
    from ..training.state import TrainingStoppedWarning

    try:
        with warnings.catch_warnings():  # main() reports a failed run itself, with exit status 3
            warnings.simplefilter("ignore", TrainingStoppedWarning)
            return fit_namespace(parser, cfg, resume=resume, run_config=None if run is None else run.config_file,
                                 trust_code=trust_code)
    except UntrustedConfigError as e:
        raise untrusted_as_cli_error(e) from e
    except ConfigError as e:  # only the objects of the config could not be built; errors of the run propagate
        raise CLIError(error_lines(e)) from e


def _resume_arguments(argv: list[str], trust_code: bool) -> tuple[str | None, Any, dict[str, Any] | None]:
    """``--resume RUN_DIR`` (removed from ``argv``): the path given, the open run and its checked config."""
    from ..config import ConfigError
    from ..training import RunDir
    from ..trust import UntrustedConfigError, check_config_trust

    if "--resume" not in argv:
        return None, None, None
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
    return resume, run, saved


def _check_config_files(argv: Sequence[str]) -> None:
    """Each ``--config FILE``: it exists, is a YAML mapping, and names only keys the constructors take."""
    from ..config import ConfigError, check_config_keys
    from ..training.rundir import read_yaml_mapping

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


def _check_trainer_overrides(argv: Sequence[str]) -> None:
    """``--trainer.KEY`` flags must name a Trainer argument (caught here with the accepted list)."""
    from ..config import ConfigError, check_init_args
    from ..training import Trainer

    for arg in argv:
        if arg.startswith("--trainer."):
            key = arg[len("--trainer."):].split("=", 1)[0]
            try:
                check_init_args(Trainer, {key: None}, "trainer")
            except ConfigError as e:
                raise CLIError(str(e)) from None
