"""The bridge between tactful's threads and the engine's asyncio I/O: one event loop on its own
daemon thread per engine backend, on which every HTTP request runs; callers on other threads
(the model worker, flag jobs) block on its futures while watching their cancel events.

Owns the thread and the rule for waiting. Must not know about HTTP or the engine's answers.
Waiting looks at the cancel event every ``POLL_S``: a ``threading.Event`` cannot wake a
``concurrent.futures`` wait, and 5 ms is well under one token's time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

#: How often a caller waiting on the engine looks at its cancel event (seconds).
POLL_S = 0.005


class Cancel(Protocol):
    """What a waiting caller watches: a ``threading.Event`` or ``AnyEvent``."""

    def is_set(self) -> bool: ...


class AnyEvent:
    """Set when any of several events is set (a batch of regenerations gives way together)."""

    def __init__(self, events: Sequence[threading.Event]) -> None:
        self.events = list(events)

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


class LoopThread:
    """An asyncio event loop on its own daemon thread; callers block on its futures while
    watching their cancel events."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="tactful-engine", daemon=True
        )
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def wait(self, fut: concurrent.futures.Future[T], cancel: Cancel | None) -> bool:
        """Wait for ``fut``; True when it finished, False when ``cancel`` was set first (the
        future is then cancelled: its coroutine gets CancelledError and closes its stream)."""
        while True:
            done, _ = concurrent.futures.wait([fut], timeout=POLL_S)
            if done:
                return True
            if cancel is not None and cancel.is_set():
                fut.cancel()
                return False

    def run(self, coro: Coroutine[Any, Any, T], cancel: Cancel | None = None) -> T:
        """Run ``coro`` on the loop and return its result; InterruptedError when ``cancel`` is
        set first."""
        fut = self.submit(coro)
        if not self.wait(fut, cancel):
            raise InterruptedError("cancelled")
        return fut.result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
