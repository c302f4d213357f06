"""Keep glibc's heap from growing without bound in long CPU estimations.

glibc serves a request at or above its *mmap threshold* with its own ``mmap`` and returns it to
the system on free; smaller requests come from the heap, which only shrinks from its top. By
default the threshold is *dynamic*: each freed mmap'ed block raises it to that block's size (up
to 32 MiB). After a few large temporaries are freed, the many same-sized temporaries of a long
estimation (IWAE over a test set: one (chunk, batch, features) tensor per chunk) come from the
heap instead, and the heap fragments. Measured by hand on the 2-core CPU (2026-12-05, IWAE k=5000
of the Cremer AF model over the test set, 1 thread): the process grew from 0.6 GB to 7.9 GB before
it was killed; with the threshold fixed at 1 MiB it stayed under 0.7 GB over 800 test images. Setting the threshold once (``mallopt(M_MMAP_THRESHOLD)``,
which also turns the dynamic adjustment off) is what glibc documents for this.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["pin_mmap_threshold"]

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def pin_mmap_threshold(nbytes: int = 1 << 20) -> bool:
    """Fix glibc's mmap threshold at ``nbytes`` (default 1 MiB) for this process.

    Returns True when it was set, False where there is no glibc (macOS, Windows, musl) or the
    call failed; nothing else changes. Call it early in a process that runs long estimations
    on the CPU (``vaekit evaluate`` and ``vaekit analyze`` do; it changes the allocator of the whole
    process, so a library call never makes it on its own).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, int(nbytes)))
