"""glibc's heap kept for bulk messages (issue 15: a stream's 1 MiB chunks).

Every chunk of a stream passes through several fresh buffers of about a megabyte on each side (the socket's read,
proton's transport and delivery buffers, the message's encoding, the bytes handed to the caller). glibc serves
those from the top of its heap and gives the top back to the kernel as soon as more than its trim threshold is
free there (128 KiB to a few MiB with its dynamic thresholds), so the next chunk's buffers are faulted in again,
page by page: measured on a 256 MiB volume download, 220-275 minor page faults per MiB on each side and half of
the console's system time. Raising the trim threshold to TRIM_THRESHOLD (and fixing the mmap threshold above a
whole message, which raising the trim threshold would otherwise leave dynamic) keeps those pages: 7-16 faults per
MiB, the console's CPU per MiB down by a quarter. What it costs is that up to TRIM_THRESHOLD of freed memory
stays with the process instead of going back to the kernel at once.

Done once per process, when the first transport starts. Left alone when the environment sets glibc's own
tunables (an operator's choice: ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TOP_PAD_``,
``GLIBC_TUNABLES``) or the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import threading
from typing import Mapping, Optional

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_bulk_buffers"]

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""mallopt's parameter numbers (glibc's malloc.h)."""

TRIM_THRESHOLD = 32 * 1024 * 1024
"""Free bytes at the heap's top that glibc keeps before giving them back: a stream window's worth (8 x 1 MiB) on
each of the buffers a chunk passes through, with room."""
MMAP_THRESHOLD = 8 * 1024 * 1024 + 64 * 1024
"""Allocations this large or larger get their own mapping: larger than the transport's largest message (8 MiB)."""

OPERATOR_TUNABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")

_lock = threading.Lock()
_outcome: Optional[bool] = None


def keep_bulk_buffers(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Raise glibc's trim threshold once per process; whether virtq's thresholds are in force."""
    global _outcome
    with _lock:
        if _outcome is None:
            _outcome = _apply(os.environ if environ is None else environ)
        return _outcome


def _apply(environ: Mapping[str, str]) -> bool:
    chosen = [name for name in OPERATOR_TUNABLES if name in environ]
    if chosen:
        log.debug("glibc's heap left as the environment sets it (%s)", ", ".join(chosen))
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = int(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) == 1 and int(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) == 1
    if not done:
        log.warning("glibc refused virtq's heap thresholds (mallopt): bulk transfers fault their pages in anew")
    return done
