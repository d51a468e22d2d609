"""Keep freed tensor memory in the process between model calls (glibc only).

A separation runs the same model call over and over on same-sized chunks. With glibc's default
settings every tensor above 32 MiB is a fresh ``mmap``: the kernel hands out zeroed pages one
fault at a time, and ``free`` gives them straight back, so each call pays again for first
touching its memory. On a full-size HT Demucs segment (2 CPU threads) that is about 15 % of
the run time. :func:`keep_freed_memory` raises the ``mmap`` and trim thresholds with
``mallopt`` so that large blocks come from the heap and are reused by the next chunk. Peak
memory still does not grow with the track length: the chunks are the same size.

No library wraps ``mallopt``, hence ``ctypes``. Set ``UNBAKE_KEEP_FREED_MEMORY=0`` to keep the
C library's defaults (e.g. in a long-lived process that should give memory back when idle).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

# from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 30        # blocks below 1 GiB come from the heap
_TRIM_THRESHOLD = (1 << 31) - 1  # keep up to 2 GiB of free heap top instead of returning it

_lock = threading.Lock()
_state: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings once per process; return whether they are in effect. A no-op (False)
    off Linux/glibc or when ``UNBAKE_KEEP_FREED_MEMORY=0``."""
    global _state
    with _lock:
        if _state is not None:
            return _state
        _state = False
        if os.environ.get("UNBAKE_KEEP_FREED_MEMORY", "1").strip().lower() in ("0", "false", "no", "off"):
            return False
        if not sys.platform.startswith("linux"):
            return False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # musl and other C libraries have no mallopt
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        ok = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
        if ok:
            log.debug("malloc: mmap threshold %d, trim threshold %d", _MMAP_THRESHOLD, _TRIM_THRESHOLD)
        _state = ok
        return ok
