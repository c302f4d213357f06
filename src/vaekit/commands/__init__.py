"""``vaekit`` subcommands, one module each: ``fit``, ``evaluate``, ``sample``, ``demo``, ``analyze``, ``graph``, ``embed``, ``new``, ``migrate``.

Each module has ``main(argv: Sequence[str])`` (``argv``: the arguments after the command
name), which returns ``None`` when done or an exit status, and imports what it needs only
when it runs. :mod:`vaekit.cli` builds the top-level usage and dispatches to the module of
the command given (:data:`NAMES`), importing only that one.

A command reports a user error by raising :class:`CLIError` (or ``ValueError``/
``TypeError``/``FileNotFoundError``): the CLI prints one clean line and exits with status 2.
What the commands share (the error, the exit statuses, ``--trust-code`` and the class of a
run's model, :func:`run_model_class`) is in a leaf module that imports no command and not
:mod:`vaekit.cli`. A new command is a module here with ``main(argv)``, its name added to
:data:`NAMES` and a line of the usage in :mod:`vaekit.cli`.
"""

from ._common import (EXIT_ERROR, EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, TRUST_HELP, CLIError, add_trust_code,
                      run_model_class, untrusted_as_cli, untrusted_as_cli_error)

#: The commands, in the order of the usage text: each is the module ``vaekit.commands.<name>``.
NAMES = ("fit", "evaluate", "sample", "demo", "analyze", "graph", "embed", "new", "migrate")

__all__ = ["CLIError", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_RUN_FAILED", "TRUST_HELP", "untrusted_as_cli_error",
           "untrusted_as_cli", "add_trust_code", "run_model_class", "NAMES"]
