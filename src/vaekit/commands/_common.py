"""What every ``vaekit`` command shares: the error type, the exit statuses, ``--trust-code``, the class of a run's model.

A leaf of :mod:`vaekit.commands`: it imports no command module and not :mod:`vaekit.cli`
(which dispatches to the commands), so the commands never point back up.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import typing
from collections.abc import Iterator, Mapping

__all__ = ["CLIError", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_RUN_FAILED", "TRUST_HELP", "untrusted_as_cli_error",
           "untrusted_as_cli", "add_trust_code", "run_model_class"]


class CLIError(Exception):
    """An error to show the user as one clean line (exit status 2)."""


# Exit statuses of the ``vaekit`` command (see docs/cli.md).
EXIT_OK = 0
"""Exit status: done."""
EXIT_ERROR = 1
"""Exit status: an error while working (type and message on stderr)."""
EXIT_USAGE = 2
"""Exit status: bad input or config, refused before anything was written."""
EXIT_RUN_FAILED = 3
"""Exit status: ``vaekit fit`` ran but the run failed (too many skipped steps, non-finite weights, divergence)."""

#: Help of ``--trust-code`` (``evaluate``, ``sample``, ``analyze``, ``graph``, ``fit --resume``).
TRUST_HELP = ("build classes and from_python sources from outside vaekit's registry of constructible types that "
              "the run's config.yaml names; this runs their code, so only for runs from someone you trust "
              "(see 'Trust model' in docs/training.md)")


def untrusted_as_cli_error(error: Exception) -> CLIError:
    """A refused run-directory config (:class:`vaekit.trust.UntrustedConfigError`) as one CLI line naming ``--trust-code``."""
    describe = getattr(error, "describe", None)
    return CLIError(describe(flag="--trust-code") if describe is not None else str(error))


@contextlib.contextmanager
def untrusted_as_cli() -> Iterator[None]:
    """Inside the block, a refused run-directory config becomes a :class:`CLIError` naming ``--trust-code``."""
    from ..trust import UntrustedConfigError

    try:
        yield
    except UntrustedConfigError as e:
        raise untrusted_as_cli_error(e) from e


def add_trust_code(parser: argparse.ArgumentParser) -> None:
    """The ``--trust-code`` flag of a command that reads a run directory."""
    parser.add_argument("--trust-code", action="store_true", help=TRUST_HELP)


def run_model_class(run_dir: str | os.PathLike[str], *, trust_code: bool = False) -> type | None:
    """The class of the model a run directory holds, read from its ``config.yaml`` without building the model.

    The ``model`` section's ``class_path`` is resolved as building it would resolve it
    (:func:`vaekit.trust.resolve_class_path`: vaekit's registry of constructible types, and
    with ``trust_code`` anything importable); a factory (``ladder_vae``, ``from_python``)
    stands for the class its return annotation names. No weights are read, no model is built.

    Returns
    -------
    type or None
        ``None`` when the config names no class that can be known this way (no ``model``
        section, a name that does not import, a factory without a return annotation or with
        one that does not resolve); for a factory, the class its annotation names may be a base
        class of the model it returns. A caller that must know then builds the model
        (``vaekit evaluate`` does), and loading the run reports what is wrong.

    Raises
    ------
    CLIError
        When the class path lies outside the registry and ``trust_code`` is false (the
        message names ``--trust-code``); nothing was imported.
    FileNotFoundError, ValueError
        When ``run_dir`` is not a run directory or its ``config.yaml`` cannot be read.
    """
    from ..training import RunDir
    from ..trust import resolve_class_path

    run = RunDir.open(run_dir)
    spec = run.read_config().get("model")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("class_path"), str):
        return None
    with untrusted_as_cli():
        obj = resolve_class_path(spec, "model", file=run.config_file, trust_code=trust_code)
    if isinstance(obj, type):
        return obj
    if callable(obj):
        try:
            ret = typing.get_type_hints(obj).get("return")
        except Exception:  # an annotation that does not resolve: the class is not known
            return None
        return ret if isinstance(ret, type) else None
    return None

