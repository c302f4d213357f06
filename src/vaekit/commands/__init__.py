"""``vaekit`` subcommands, one module each with ``main(argv: Sequence[str]) -> None``.

:mod:`vaekit.cli` imports a module only when its command runs. A command reports a user
error by raising :class:`vaekit.cli.CLIError` (or ``ValueError``/``TypeError``/
``FileNotFoundError``): the CLI prints one clean line and exits with status 2.
"""
