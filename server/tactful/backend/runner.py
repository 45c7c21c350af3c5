"""One model, one worker thread, a priority queue: completions go before line flags.

The concurrency rule of tactful (every module follows it; a new one must too):

* **The event loop** (pygls's asyncio loop) runs the LSP handlers and everything they decide:
  the completion engine's stages, type-along, the deadline, flag scheduling, the feedback hub's
  bookkeeping. It never runs model code and never blocks for long: it awaits futures.
* **The model worker** (this module's one ``tactful-model`` thread) is the only thread that
  touches the backend (torch): loading, ``generate``, scoring, flag units, dropping KV caches.
  Work reaches it through ``submit``/``start``/``run``, which return futures; completions go
  first (``PRIORITY_COMPLETION``), flags are cut into short units and give way (the
  ``interrupt`` event that ``submit`` sets when urgent work arrives, or ``urgent_waiting``).
  Work for one document gives way to work for another (fair scheduling, ``give_way``): once it
  has held the worker for ``SLICE_S``, a generation stops within one decoding step or one
  decoder layer of its prompt when another document's work of the same priority waits.
* **Other threads** run blocking work that does not touch the model: ``asyncio.to_thread`` for
  file and CPU work a handler awaits (reports, loading a classifier, opening a cache), and the
  feedback log's own threads (its survival timer, cascade retraining).

Hand-offs between them are futures (``concurrent.futures.Future``, awaited on the loop with
``asyncio.wrap_future``), ``threading.Event`` for cancelling (``GenerateRequest.cancel``), and
callbacks that wake the loop with ``loop.call_soon_threadsafe`` (``GenerateRequest.watch``, the
runner's ``until_settled``), and the ``interrupt`` event of ``submit`` for work that must give
way. A new hand-off must not poll (a loop that sleeps and looks again); one that still does says
why next to it. State shared across threads is guarded: the runner's ``state``/``error``/
``backend`` by its lock, a generation's progress by ``GenerateRequest``'s (``publish`` keeps a
copy that nobody changes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tactful.backend.types import Backend, ModelError

log = logging.getLogger(__name__)
T = TypeVar("T")

PRIORITY_COMPLETION = 0
PRIORITY_FLAG = 10

LOADING, READY, FAILED, IDLE = "loading", "ready", "failed", "idle"

#: Work for a document keeps the model worker at least this long (seconds) before it gives way
#: to another document's work that waits (``ModelRunner.give_way``): so that a short generation
#: (a keystroke whose prompt is in the KV cache: about 0.1-0.3 s) ends rather than being thrown
#: away at the first request elsewhere, while a long one (a cold prompt, a pathological line)
#: holds up another document by at most this plus one decoder layer or one decoding step.
#: Work cancelled meanwhile (a request the editor or a newer one gave up) has no slice.
SLICE_S = 0.15


@dataclass(order=True)
class Job:
    """Work queued on the model worker, in the order it runs: by priority, then first come."""

    priority: int
    seq: int
    run: Callable[[], None] = field(compare=False)
    future: concurrent.futures.Future[Any] = field(compare=False)
    #: The document it is for (a completion's URI); None: housekeeping, which neither gives
    #: way nor makes others give way.
    owner: str | None = field(default=None, compare=False)
    #: Set when the work is no longer wanted (a completion's ``GenerateRequest.cancel``).
    cancel: threading.Event | None = field(default=None, compare=False)
    interrupt: threading.Event | None = field(default=None, compare=False)
    #: When it started on the worker (``time.monotonic``); 0 while queued.
    started: float = field(default=0.0, compare=False)

    def wanted(self) -> bool:
        cancelled = self.cancel is not None and self.cancel.is_set()
        return not cancelled and not self.future.cancelled()


def contends(running: Job, waiting: Job) -> bool:
    """True when ``waiting`` (queued) makes ``running`` give way once its slice is spent: both
    are for documents, not the same one, and ``waiting`` is as urgent or more and still wanted.
    (Work for the same document never interleaves: it shares the document's KV cache, and a
    newer request for a document cancels the older one anyway.)"""
    return (
        running.owner is not None
        and waiting.owner is not None
        and waiting.owner != running.owner
        and waiting.priority <= running.priority
        and waiting.wanted()
    )


class ModelRunner:
    """Owns the backend and the one thread that may call it."""

    def __init__(self, slice_s: float = SLICE_S) -> None:
        self.slice_s = slice_s
        self._lock = threading.Lock()
        self._backend: Backend | None = None
        self._state = IDLE
        self._error: str | None = None
        #: Wake-ups of ``until_settled`` waiters, called when the state changes.
        self._on_change: list[Callable[[], None]] = []
        self.model_name = ""
        self._queue: list[Job] = []
        #: The work running now (guarded by ``_cv``).
        self._running: Job | None = None
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._thread = threading.Thread(target=self._work, name="tactful-model", daemon=True)
        self._thread.start()

    # --- state (written on the model worker and the loop, read anywhere) ----------------------
    @property
    def backend(self) -> Backend | None:
        return self._backend

    @backend.setter
    def backend(self, backend: Backend | None) -> None:
        with self._lock:
            self._backend = backend

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        self._set(state, self._error)

    @property
    def error(self) -> str | None:
        return self._error

    def _set(self, state: str, error: str | None, backend: Backend | None = None) -> None:
        """Change the state (and the backend with it, when given) at once; wake the waiters."""
        with self._lock:
            if backend is not None:
                self._backend = backend
            self._state, self._error = state, error
            wake, self._on_change = self._on_change, []
        for fn in wake:
            fn()

    def ready_backend(self) -> Backend | None:
        """The backend when it is ready, else None (one consistent read of both)."""
        with self._lock:
            return self._backend if self._state == READY else None

    async def until_settled(self) -> bool:
        """Wait (on the event loop, without polling) until the model is ready or has failed;
        True when it is ready."""
        loop = asyncio.get_running_loop()
        while True:
            changed: asyncio.Future[None] = loop.create_future()

            def wake(fut: asyncio.Future[None] = changed) -> None:  # any thread
                def settle() -> None:
                    if not fut.done():
                        fut.set_result(None)

                # RuntimeError: the loop is closed (the server is exiting), so nobody waits.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(settle)

            with self._lock:
                if self._state in (READY, FAILED):
                    return self._state == READY
                self._on_change.append(wake)
            try:
                await changed
            finally:
                with self._lock:
                    if wake in self._on_change:
                        self._on_change.remove(wake)

    # --- queue ---------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                job = heapq.heappop(self._queue)
            job.run()

    def submit(
        self,
        fn: Callable[[], T],
        priority: int = PRIORITY_COMPLETION,
        interrupt: threading.Event | None = None,
        *,
        owner: str | None = None,
        cancel: threading.Event | None = None,
    ) -> concurrent.futures.Future[T]:
        """Run ``fn()`` on the model thread; the future holds its result or exception.

        ``interrupt`` is set when more urgent work is queued while ``fn`` runs (or already is
        when it starts): long work of low priority watches it and gives way, with no polling.
        ``owner`` (the document the work is for) and ``cancel`` (set when it is no longer
        wanted) are what ``give_way`` weighs."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            with self._cv:
                job.started = time.monotonic()
                self._running = job
                if interrupt is not None and any(w.priority < priority for w in self._queue):
                    interrupt.set()
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)
            finally:
                with self._cv:
                    self._running = None

        job = Job(priority, next(self._seq), run, fut, owner, cancel, interrupt)
        with self._cv:
            heapq.heappush(self._queue, job)
            running = self._running
            urgent = running.interrupt if running and priority < running.priority else None
            if urgent is not None:
                urgent.set()
            self._cv.notify()
        return fut

    def start(
        self,
        fn: Callable[[Backend], T],
        priority: int = PRIORITY_COMPLETION,
        interrupt: threading.Event | None = None,
        *,
        owner: str | None = None,
        cancel: threading.Event | None = None,
    ) -> concurrent.futures.Future[T]:
        """Queue ``fn(backend)`` on the model thread. Raises ModelError when no model is ready."""
        backend = self.ready_backend()
        if backend is None:
            raise ModelError(self.error or f"model is {self.state}")
        return self.submit(lambda: fn(backend), priority, interrupt, owner=owner, cancel=cancel)

    def give_way(self) -> bool:
        """Asked by the running work, on the model worker (a generation's
        ``GenerateRequest.give_way``): True when it should stop now and leave the worker to
        another document's work that waits (``contends``), having held it for ``slice_s``
        (work that was cancelled meanwhile gives way at once: nobody waits for it). False on
        any other thread. Quick: a generation asks before each decoder layer."""
        if threading.current_thread() is not self._thread:
            return False
        with self._cv:
            job = self._running
            if job is None or job.owner is None:
                return False
            if job.wanted() and time.monotonic() - job.started < self.slice_s:
                return False
            return any(contends(job, waiting) for waiting in self._queue)

    async def run(
        self,
        fn: Callable[[Backend], T],
        priority: int = PRIORITY_COMPLETION,
        interrupt: threading.Event | None = None,
    ) -> T:
        """Await ``fn(backend)`` on the model thread. Raises ModelError when no model is ready."""
        return await asyncio.wrap_future(self.start(fn, priority, interrupt))

    def urgent_waiting(self, than: int = PRIORITY_FLAG) -> bool:
        """True when work more urgent than ``than`` is queued (flags then give way)."""
        with self._cv:
            return any(w.priority < than for w in self._queue)

    def queued(self) -> int:
        with self._cv:
            return len(self._queue)

    # --- loading -------------------------------------------------------------------------------
    def load(self, loader: Callable[[], Backend], name: str) -> concurrent.futures.Future[Backend]:
        """Load a backend on the model thread (queued before anything else)."""
        self.model_name = name
        self._set(LOADING, None)

        def do() -> Backend:
            try:
                backend = loader()
            # Whatever a load raises becomes the FAILED state (and then the future's exception).
            except Exception as exc:
                error = str(exc) if isinstance(exc, ModelError) else f"{type(exc).__name__}: {exc}"
                self._set(FAILED, error)
                log.error("model load failed: %s", error)
                raise
            self.model_name = getattr(backend, "name", name)
            self._set(READY, None, backend)
            return backend

        return self.submit(do, priority=-1)

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "model": self.model_name, "message": self.error or ""}
