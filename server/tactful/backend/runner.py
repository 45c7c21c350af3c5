"""One model, one worker thread, a priority queue: completions go before line flags.

The LSP event loop never runs model code; it awaits ``ModelRunner.run(fn, priority)``, which
executes ``fn(backend)`` on the worker thread. Work of lower priority (flags) is cut into short
units so that a completion request waits at most one unit; long units can poll
``urgent_waiting()`` and give way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from tactful.backend.types import Backend, ModelError

log = logging.getLogger(__name__)
T = TypeVar("T")

PRIORITY_COMPLETION = 0
PRIORITY_FLAG = 10

LOADING, READY, FAILED, IDLE = "loading", "ready", "failed", "idle"


class ModelRunner:
    """Owns the backend and the one thread that may call it."""

    def __init__(self) -> None:
        self.backend: Backend | None = None
        self.state = IDLE
        self.error: str | None = None
        self.model_name = ""
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._thread = threading.Thread(target=self._work, name="tactful-model", daemon=True)
        self._thread.start()

    # --- queue ---------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                _prio, _seq, job = heapq.heappop(self._queue)
            job()

    def submit(
        self, fn: Callable[[], T], priority: int = PRIORITY_COMPLETION
    ) -> concurrent.futures.Future[T]:
        """Run ``fn()`` on the model thread; the future holds its result or exception."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

        with self._cv:
            heapq.heappush(self._queue, (priority, next(self._seq), job))
            self._cv.notify()
        return fut

    def start(
        self, fn: Callable[[Backend], T], priority: int = PRIORITY_COMPLETION
    ) -> concurrent.futures.Future[T]:
        """Queue ``fn(backend)`` on the model thread. Raises ModelError when no model is ready."""
        backend = self.backend
        if backend is None or self.state != READY:
            raise ModelError(self.error or f"model is {self.state}")
        return self.submit(lambda: fn(backend), priority)

    async def run(self, fn: Callable[[Backend], T], priority: int = PRIORITY_COMPLETION) -> T:
        """Await ``fn(backend)`` on the model thread. Raises ModelError when no model is ready."""
        return await asyncio.wrap_future(self.start(fn, priority))

    def urgent_waiting(self, than: int = PRIORITY_FLAG) -> bool:
        """True when work more urgent than ``than`` is queued (flags then give way)."""
        with self._cv:
            return any(p < than for p, _s, _j in self._queue)

    def queued(self) -> int:
        with self._cv:
            return len(self._queue)

    # --- loading -------------------------------------------------------------------------------
    def load(self, loader: Callable[[], Backend], name: str) -> concurrent.futures.Future[Backend]:
        """Load a backend on the model thread (queued before anything else)."""
        self.state, self.error, self.model_name = LOADING, None, name

        def do() -> Backend:
            try:
                backend = loader()
            except Exception as exc:
                self.state = FAILED
                self.error = (
                    str(exc) if isinstance(exc, ModelError) else f"{type(exc).__name__}: {exc}"
                )
                log.error("model load failed: %s", self.error)
                raise
            self.backend, self.state = backend, READY
            self.model_name = getattr(backend, "name", name)
            return backend

        return self.submit(do, priority=-1)

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "model": self.model_name, "message": self.error or ""}
