"""tactful.memory: the malloc arena cap, the trim and the bounded default executor."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest

from tactful import memory

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")


@linux_only
def test_limit_malloc_arenas_caps_arenas_in_a_fresh_process() -> None:
    # Eight threads that allocate at once: with the cap there is one thread arena besides the
    # main heap; glibc's default gives each thread its own.
    code = """
import sys, threading
from tactful import memory
if sys.argv[1] == "cap":
    assert memory.limit_malloc_arenas(2)
keep = []
gate = threading.Barrier(8)
def work():
    gate.wait()
    keep.append([bytearray(1000) for _ in range(2000)])
ts = [threading.Thread(target=work) for _ in range(8)]
for t in ts: t.start()
for t in ts: t.join()
# A thread arena's heap: 64 MB of anonymous memory at a 64 MB-aligned address (the part in use,
# then the reserved rest), not just any mapping that happens to start at such an address.
H = 64 << 20
spans = []
for line in open("/proc/self/maps"):
    if len(line.split()) == 5:
        a, b = (int(x, 16) for x in line.split()[0].split("-"))
        spans.append((a, b))
heaps = 0
for i, (a, b) in enumerate(spans):
    if a % H:
        continue
    end, j = b, i + 1
    while end < a + H and j < len(spans) and spans[j][0] == end:
        end, j = spans[j][1], j + 1
    heaps += end == a + H
print(heaps)
"""

    def heaps(mode: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", code, mode], capture_output=True, text=True, check=True
        )
        return int(out.stdout.split()[-1])

    capped, free = heaps("cap"), heaps("free")
    assert capped <= 1 < free, (capped, free)


@linux_only
def test_a_fixed_mmap_threshold_gives_big_blocks_back_after_a_bigger_one_was_freed() -> None:
    code = """
import sys
from tactful import memory
if sys.argv[1] == "cap":
    assert memory.limit_malloc_arenas()
def rss():
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1])
keep = []
big = bytearray(20 << 20)
del big  # glibc's default: the threshold is now 20 MB, the next 10 MB block is heap
before = rss()
block = bytearray(10 << 20)  # zero-filled: every page touched
keep.append(bytearray(100))  # a live block above it keeps the heap from shrinking
del block
print((rss() - before) // 1024)
"""

    def kept_mb(mode: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", code, mode], capture_output=True, text=True, check=True
        )
        return int(out.stdout.split()[-1])

    assert kept_mb("cap") <= 2 and kept_mb("free") >= 8


@linux_only
def test_trim_answers() -> None:
    blob = [bytearray(4096) for _ in range(5000)]
    del blob
    assert isinstance(memory.trim(), bool)


def test_bound_default_executor_runs_to_thread_on_at_most_n_named_workers() -> None:
    names: set[str] = set()
    lock = threading.Lock()

    def job() -> None:
        with lock:
            names.add(threading.current_thread().name)
        threading.Event().wait(0.02)

    async def main() -> None:
        memory.bound_default_executor(asyncio.get_running_loop(), workers=2)
        await asyncio.gather(*(asyncio.to_thread(job) for _ in range(12)))

    asyncio.run(main())
    assert 1 <= len(names) <= 2
    assert all(n.startswith("tactful-worker") for n in names)
