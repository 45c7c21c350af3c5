"""Process-wide memory bounds for the server: fewer malloc arenas and a bounded worker pool.

Measured with ``tactful bench fuzz`` (docs/benchmarks.md, issue 28): the Python heap stays flat
under a long barrage, but the process grew in steps of about 18 MB. Each step was glibc giving a
thread that had never allocated before a malloc arena of its own (up to 8 per core), which then
keeps the pages it once touched: the threads were asyncio's default executor (up to six on two
cores, started one by one as concurrent ``asyncio.to_thread`` calls piled up: git look-ups,
replay reports, flag jobs) and the OpenMP threads LightGBM starts for each new calling thread.
Two arenas and four workers bound both; the cost is some lock contention inside malloc between
threads that mostly wait on the GIL anyway. One more step of about 17 MB stayed, once a run at
a random time: glibc's *dynamic* mmap threshold. Blocks of 128 KB and more start out as mmaps
of their own (given back when freed), but each free of one raises the threshold to its size (up
to 32 MB), after which such blocks come from the heap and their pages stay. A fixed threshold of
1 MB keeps big blocks (a long document's text, a JSON message, a model's buffers) in mmaps.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import sys
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("tactful")

#: glibc's ``mallopt`` parameters (malloc.h): the most arenas, the mmap threshold.
_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3
#: Malloc arenas the server process may use (glibc's default is 8 per core).
MALLOC_ARENAS = 2
#: Blocks at least this big get an mmap of their own (glibc's default starts at 128 KB and
#: moves up to 32 MB as big blocks are freed; setting it fixes it).
MMAP_THRESHOLD = 1 << 20
#: Threads of the event loop's default executor (``asyncio.to_thread``); Python's default is
#: ``min(32, cores + 4)``.
WORKER_THREADS = 4


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS, mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Cap glibc's malloc arenas for threads started from now on and fix its mmap threshold;
    False where there is no glibc (musl, macOS, Windows) or it refused. Call before the server
    starts its threads."""
    libc = _libc()
    if libc is None:
        return False
    try:
        ok = bool(libc.mallopt(_M_ARENA_MAX, int(arenas)))
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and ok
    except (AttributeError, OSError):  # pragma: no cover - a libc without mallopt
        return False
    if not ok:
        log.debug("mallopt(M_ARENA_MAX %d, M_MMAP_THRESHOLD %d) refused", arenas, mmap_threshold)
    return ok


def trim() -> bool:
    """Give freed heap pages back to the system (glibc ``malloc_trim``); False elsewhere."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    try:
        return bool(libc.malloc_trim(0))
    except OSError:  # pragma: no cover
        return False


def bound_default_executor(
    loop: asyncio.AbstractEventLoop, workers: int = WORKER_THREADS
) -> ThreadPoolExecutor:
    """Give ``loop`` a default executor (what ``asyncio.to_thread`` uses) of at most ``workers``
    threads, named ``tactful-worker``."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tactful-worker")
    loop.set_default_executor(pool)
    return pool
