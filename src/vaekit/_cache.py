"""The user cache folder (downloads, fitted IGR priors): one definition for every layer."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """The user cache: ``$VAEKIT_CACHE`` if set (and non-empty), else ``pooch.os_cache("vaekit")``.

    >>> import os
    >>> os.environ["VAEKIT_CACHE"] = "/tmp/vk"; str(cache_dir()); del os.environ["VAEKIT_CACHE"]
    '/tmp/vk'
    """
    env = os.environ.get("VAEKIT_CACHE", "")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("vaekit"))
