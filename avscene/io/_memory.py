"""Hand freed heap memory back to the operating system between chunks of a long input.

glibc keeps freed blocks in its arenas for reuse, and the chunked pipelines
(``classify`` / ``localize`` in :mod:`avscene.tasks._pipeline`, ``separate`` in
:mod:`avscene.separation.methods`) free a few hundred MB per chunk in pieces
of varying sizes from several threads: without a trim the resident size creeps
up with every chunk (a 1-hour separation went from 1.0 to 1.7 GB; a 10-min 720p
classification gained ~30 MB a chunk). Trimmed after every chunk, it stays flat.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Return the heap pages freed so far to the OS (glibc ``malloc_trim(0)``; elsewhere a no-op).

    Costs about a millisecond; call it once per chunk, after the chunk's buffers are dropped.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
