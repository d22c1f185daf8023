"""Giving memory back to the system after a large request body.

A refused body can outlive its request: an exception's traceback (a JSON error
keeps the decoded text, its frames the bytes) forms reference cycles that only
the cycle collector frees, and glibc then keeps the freed pages for later use.
Sixteen 30 MB bodies left a bridge a gigabyte larger for good. So after a large
body the cycles are collected and ``malloc_trim`` returns the free pages (glibc
only; elsewhere that step does nothing).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import cache
from typing import Any

TRIM_AFTER_BYTES = 4 * 1024 * 1024
"""A request whose body was larger than this gives the freed memory back when it ends."""


@cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def give_back_memory() -> None:
    """Frees what cycles hold, then returns free heap pages to the system; run in a thread."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
