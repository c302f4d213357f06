"""The ``vaekit`` command: the top-level usage and the dispatch to one module per command.

Each command (``fit``, ``evaluate``, ``sample``, ``demo``, ``analyze``, ``graph``, ``embed``,
``new``, ``migrate``) lives in :mod:`vaekit.commands` as ``vaekit.commands.<name>`` with ``main(argv)``,
imported only when it runs; what they share (:class:`~vaekit.commands.CLIError`, the exit
statuses, ``--trust-code``) is in a leaf module there, so nothing under
:mod:`vaekit.commands` imports this module. :func:`main` turns what a command raises into
one line on stderr and an exit status (docs/cli.md).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from ._malloc import pin_mmap_threshold
from .commands import (EXIT_ERROR, EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, NAMES, TRUST_HELP, CLIError,
                       untrusted_as_cli_error)
from .commands.fit import fit_from_args

# CLIError, the exit statuses, TRUST_HELP and untrusted_as_cli_error (defined in vaekit.commands) stay importable here
__all__ = ["main", "fit_from_args", "COMMANDS", "USAGE", "CLIError", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE",
           "EXIT_RUN_FAILED", "TRUST_HELP", "untrusted_as_cli_error"]

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
  migrate    a foreign checkpoint as a run:      vaekit migrate SRC.pt --preset NAME --config C.yaml --out RUN_DIR

Run 'vaekit <command> --help' for the options of a command; 'vaekit --version' prints the version.
"""


def _command(name: str) -> Callable[[Sequence[str]], Any]:
    """The ``main(argv)`` of ``vaekit.commands.<name>``, imported when the command runs."""

    def run(argv: Sequence[str]) -> Any:
        return importlib.import_module(f"vaekit.commands.{name}").main(argv)

    return run


#: ``{command name: main(argv)}`` of every command, in the order of :data:`USAGE`.
COMMANDS: dict[str, Callable[[Sequence[str]], Any]] = {name: _command(name) for name in NAMES}


#: The commands that run long estimations (IWAE, AIS, local optimisation over a test set): they fix glibc's mmap
#: threshold first (:mod:`vaekit._malloc`); training keeps the allocator's default (it was ~5% faster with it).
ESTIMATING_COMMANDS = ("evaluate", "analyze")


def cmd_name_estimates(name: str) -> bool:
    """Whether the command ``name`` runs long estimations (see :data:`ESTIMATING_COMMANDS`)."""
    return name in ESTIMATING_COMMANDS


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
        return EXIT_OK if argv else EXIT_USAGE
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"vaekit {__version__}")
        return EXIT_OK
    if cmd_name_estimates(argv[0]):  # long CPU estimations otherwise fragment glibc's heap (see vaekit._malloc)
        pin_mmap_threshold()
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"vaekit: unknown command {cmd!r}; accepted: {', '.join(COMMANDS)}\n\n{USAGE}", file=sys.stderr)
        return EXIT_USAGE
    debug = bool(os.environ.get("VAEKIT_DEBUG"))
    try:
        status = COMMANDS[cmd](rest)  # None when done, or the exit status the command chose (fit: 3 for a failed run)
    except CLIError as e:
        if debug and e.__cause__ is not None:
            traceback.print_exception(type(e.__cause__), e.__cause__, e.__cause__.__traceback__)
        print(f"vaekit {cmd}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:
        return _report_error(cmd, e, debug)
    return EXIT_OK if status is None else int(status)


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
