"""Where a benchmark's numbers came from, for the rows and tables the benchmarks write (no torch import)."""

from __future__ import annotations

import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def git_commit(length: int | None = None, missing: str = "") -> str:
    """The checked-out commit of this repository, abbreviated (git's default length, or ``length``
    hex digits); ``missing`` when git cannot say (no git, not a checkout)."""
    short = "--short" if length is None else f"--short={length}"
    try:
        return subprocess.run(["git", "rev-parse", short, "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return missing
