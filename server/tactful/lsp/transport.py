"""The wire: the read loop that replaces pygls' own, and ``tactful serve`` over stdio.

pygls' read loop trusts what it reads (see :mod:`tactful.lsp.framing`); here the bytes go
through a :class:`~tactful.lsp.framing.Framer` and each body to
:meth:`~tactful.lsp.hardened.HardenedProtocol.receive_body`, which answers every request.
:func:`pump` and :class:`BytesWriter` are shared with the TCP transport (:mod:`tactful.lsp.tcp`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tactful import memory
from tactful.lsp.framing import Framer
from tactful.lsp.hardened import HardenedProtocol, HardenedServer

log = logging.getLogger(__name__)


class BytesWriter:
    """The writer pygls sends through: one message at a time (handlers may write from threads)."""

    def __init__(self, write: Callable[[bytes], Any], close: Callable[[], Any]) -> None:
        self._write, self._close = write, close
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._write(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._close()


async def pump(
    read: Callable[[], Any], protocol: HardenedProtocol, framer: Framer, stop: threading.Event
) -> None:
    """Read until EOF or ``stop``: frame the bytes and give each body (or problem) to
    ``protocol``."""
    while not stop.is_set():
        data = await read()
        if not data:
            break
        for body, problem in framer.feed(data):
            if problem is not None:
                protocol.frame_problem(problem)
            elif body is not None:
                protocol.receive_body(body)
            if stop.is_set():
                break


def serve_stdio(server: HardenedServer, stdin: Any = None, stdout: Any = None) -> None:
    """Serve LSP on stdin/stdout until EOF or ``exit``."""
    inp = stdin or sys.stdin.buffer
    out = stdout or sys.stdout.buffer
    fd = inp.fileno()
    protocol = server.protocol
    assert isinstance(protocol, HardenedProtocol)

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    protocol.set_writer(BytesWriter(write, out.close))
    server._stop_event = stop = threading.Event()
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tactful-stdin")

    async def main() -> None:
        loop = server.loop = asyncio.get_running_loop()
        memory.bound_default_executor(loop)

        def read() -> Any:
            return loop.run_in_executor(reader, os.read, fd, 1 << 16)

        await pump(read, protocol, Framer(), stop)

    try:
        asyncio.run(main())
    except BrokenPipeError:
        log.error("the client is gone; shutting down")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        reader.shutdown(wait=False)
        server.shutdown()
