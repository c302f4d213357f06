"""The grouped datasets read from a ``path`` argument (private): the path is recorded absolute."""

from __future__ import annotations

import os
from typing import Any

from vaekit.data.grouped import GroupedData

__all__ = ["PathGroupedData", "absolute_path"]


def absolute_path(path: Any, what: str = "a str") -> str:
    """``path`` (a str or ``os.PathLike``) with ``~`` expanded, made absolute: the form a run's
    config.yaml records. Anything else raises ``TypeError("path must be <what>; got ...")``.

    Examples
    --------
    >>> absolute_path("~/data") == os.path.join(os.path.expanduser("~"), "data")
    True
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be {what}; got {path!r} of type {type(path).__name__}")
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


class PathGroupedData(GroupedData):
    """A grouped dataset read from its ``path`` argument (a file or a folder)."""

    @classmethod
    def canonical_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        """``path`` is recorded absolute (config.yaml says where the file or folder is, from anywhere)."""
        return {**args, "path": absolute_path(args["path"])}
