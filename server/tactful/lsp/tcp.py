"""``tactful serve --tcp``: one editor at a time, authenticated by a token.

The token lives in an owner-only file (:func:`ensure_token`); ``initialize`` must carry it in
``initializationOptions.token`` (checked by :class:`~tactful.lsp.hardened.HardenedProtocol`) or
the connection is closed. A second connection while one is active gets an error response (or a
message) and is closed; it does not disturb the active one. The server ends when the connection
that initialized it closes; connections that never initialized (refused, failed authentication,
probes) do not end it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Any

from tactful import memory
from tactful.lsp.framing import Framer
from tactful.lsp.hardened import HardenedProtocol, HardenedServer
from tactful.lsp.jsonrpc import INVALID_REQUEST, error_payload, request_id
from tactful.lsp.transport import BytesWriter, pump

log = logging.getLogger(__name__)

TOKEN_FILENAME = "serve-token"
#: What a refused editor is told.
BUSY = "tactful is serving another editor on this port; start another `tactful serve` for this one"


def token_path(data_dir: str | None = None) -> Path:
    """The default token file: ``serve-token`` in the data folder."""
    from tactful import paths

    return paths.data_dir(data_dir) / TOKEN_FILENAME


def ensure_token(path: Path) -> str:
    """The token in ``path``; a new one (owner-only file) when there is none."""
    with contextlib.suppress(OSError):
        st = path.stat()
        if st.st_uid == os.getuid() and not st.st_mode & 0o077:
            tok = path.read_text(encoding="utf-8").strip()
            if len(tok) >= 16:
                return tok
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tok = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (tok + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return tok


async def _first_request_id(reader: asyncio.StreamReader) -> Any:
    """The id of the first request a refused editor sends within 2 s (None: none came)."""
    framer = Framer()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2.0):
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    return None
                for body, _p in framer.feed(data):
                    if body is None:
                        continue
                    with contextlib.suppress(ValueError, RecursionError, UnicodeDecodeError):
                        msg_id = request_id(json.loads(body))
                        if msg_id is not None:
                            return msg_id
    return None


def busy_payload(msg_id: Any) -> dict[str, Any]:
    """The answer to a refused editor: an error for its first request, else a message."""
    if msg_id is not None:
        return error_payload(msg_id, INVALID_REQUEST, BUSY)
    return {
        "jsonrpc": "2.0",
        "method": "window/showMessage",
        "params": {"type": 1, "message": f"tactful: {BUSY}"},
    }


async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Tell a second editor that this server is taken, and close its connection."""
    body = json.dumps(busy_payload(await _first_request_id(reader))).encode()
    with contextlib.suppress(Exception):
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
    writer.close()


class _OneEditor:
    """The TCP connections of one server: the first is served, the others refused while it
    lasts."""

    def __init__(self, server: HardenedServer, protocol: HardenedProtocol) -> None:
        self.server = server
        self.protocol = protocol
        self.stop = threading.Event()
        self.active: asyncio.StreamWriter | None = None
        self.listener: asyncio.Server | None = None

    async def listen(self, host: str, port: int) -> None:
        """Accept connections until the editor that initialized the server leaves."""
        self.server.loop = asyncio.get_running_loop()
        memory.bound_default_executor(self.server.loop)
        self.listener = srv = await asyncio.start_server(self.connection, host, port)
        self.server._server = srv
        log.info("serving on %s", ", ".join(str(s.getsockname()) for s in srv.sockets))
        with contextlib.suppress(asyncio.CancelledError):
            async with srv:
                await srv.serve_forever()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active is not None:
            log.warning("refusing a second connection from %s", writer.get_extra_info("peername"))
            await refuse(reader, writer)
            return
        self.active = writer
        closed = threading.Event()

        def reject(reason: str) -> None:
            log.warning("closing a connection: %s", reason)
            closed.set()

        self.protocol.on_reject = reject
        self.protocol.set_writer(BytesWriter(writer.write, writer.close))

        async def read() -> bytes:
            if closed.is_set():
                return b""
            try:
                return await reader.read(1 << 16)
            except ConnectionError:
                return b""

        try:
            await pump(read, self.protocol, Framer(), self.stop)
        finally:
            await self._ended(writer)

    async def _ended(self, writer: asyncio.StreamWriter) -> None:
        """The served connection closed: the server ends when it was initialized (or is
        stopping); otherwise the next editor may connect."""
        with contextlib.suppress(Exception):
            await writer.drain()
        writer.close()
        self.active = None
        if self.protocol.initialize_seen or self.stop.is_set():
            self.stop.set()
            if self.listener is not None:
                self.listener.close()
        else:
            self.protocol._shutdown = False


def serve_tcp(server: HardenedServer, host: str, port: int, token: str | None) -> None:
    """Serve one editor at a time on ``host:port`` (see the module docstring); with ``token``,
    ``initialize`` must carry it in ``initializationOptions.token``."""
    protocol = server.protocol
    assert isinstance(protocol, HardenedProtocol)
    protocol.required_token = token
    editors = _OneEditor(server, protocol)
    server._stop_event = editors.stop
    try:
        asyncio.run(editors.listen(host, port))
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()
