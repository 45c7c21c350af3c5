"""The wire: LSP base-protocol framing and JSON-RPC checks in front of pygls.

pygls 2.1.1 reads headers line by line and trusts them: a ``Content-Length`` of 10^12 makes it
try to read that much (MemoryError / OverflowError ends the process), a header without its CRLF
swallows the next messages, and a message that does not parse, or does not fit its declared type,
is logged and never answered. This module replaces pygls' read loop (not pygls itself):

* :class:`Framer` cuts a byte stream into message bodies. A body is at most ``max_message``
  bytes; a bigger one is skipped as it arrives (never buffered). It resynchronises on the next
  ``Content-Length: N<CRLF>`` line, which cannot occur inside a JSON body (JSON strings cannot
  hold a raw CR or LF), so a bad header or a short body never swallows the next message, and no
  recovery waits for more bytes than the next header.
* :class:`HardenedProtocol` (pygls' ``LanguageServerProtocol``) answers every request:
  ``-32700`` for bodies that are not UTF-8 JSON, ``-32600`` for what is not a JSON-RPC 2.0 request
  (and for requests after ``shutdown``), ``-32002`` for requests before ``initialize``, ``-32602``
  for parameters that do not fit the lsprotocol types (:mod:`tactful.lsp.validate`; nothing is
  coerced), ``-32603`` with a short message for internal errors (the traceback goes to the server
  log only). Lone surrogates in strings are replaced by U+FFFD before anything sees them.
* :class:`HardenedServer` shows at most one ``window/showMessage`` per kind of problem per
  session, and runs the stdio and TCP transports (TCP: one editor at a time, the others refused
  with an error; a token from ``initializationOptions.token`` is required, see :func:`serve_tcp`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from tactful.lsp import validate

log = logging.getLogger(__name__)

#: The largest message body accepted (bytes). A document bigger than this cannot be opened.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
#: A header block longer than this (without its blank line) is not a header.
MAX_HEADER_BYTES = 8192
#: The field of ``initializationOptions`` that carries the TCP token.
TOKEN_OPTION = "token"
TOKEN_FILENAME = "serve-token"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_NOT_INITIALIZED = -32002

_START = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)
#: A complete Content-Length line: what resynchronises the stream (impossible inside JSON).
_HEADER_LINE = re.compile(rb"content-length[ \t]*:[ \t]*\d+[ \t]*\r\n", re.IGNORECASE)
_CL_LINE = re.compile(rb"content-length[ \t]*:[ \t]*(\d{1,40})[ \t]*", re.IGNORECASE)
_OTHER_HEADER = re.compile(rb"[!-9;-~]+[ \t]*:[^\r\n]*")
_HEADERISH = re.compile(rb"(?:[!-9;-~]+[ \t]*:[^\r\n]*\r\n|\s)*")


class Framer:
    """Incremental framing of the LSP base protocol. ``feed(bytes)`` returns a list of
    ``(body, None)`` for messages and ``(None, problem)`` for what was dropped."""

    def __init__(self, max_message: int = MAX_MESSAGE_BYTES) -> None:
        self.max_message = max_message
        self.buf = bytearray()
        self.need: int | None = None  # body length once a header is read
        self._scanned = 0  # body bytes already searched for a header line
        self._quiet = False  # inside a skipped body or a reported run of garbage

    def feed(self, data: bytes) -> list[tuple[bytes | None, str | None]]:
        self.buf += data
        out: list[tuple[bytes | None, str | None]] = []
        while True:
            if self.need is not None:
                if not self._body(out):
                    break
                continue
            if not self._header(out):
                break
        return out

    def _problem(self, out: list[tuple[bytes | None, str | None]], text: str) -> None:
        if not self._quiet:
            out.append((None, text))
        self._quiet = True

    def _body(self, out: list[tuple[bytes | None, str | None]]) -> bool:
        need = self.need
        assert need is not None
        start = max(0, self._scanned - 64)
        m = _HEADER_LINE.search(self.buf, start, min(len(self.buf), need + 64))
        if m is not None and m.start() < need:
            # A header where the body should be: the body was shorter than announced.
            del self.buf[: m.start()]
            self.need = None
            self._quiet = False
            self._problem(
                out,
                f"a message body was shorter than its Content-Length ({need}); it was dropped",
            )
            self._quiet = False
            return True
        if len(self.buf) < need:
            self._scanned = len(self.buf)
            return False
        body = bytes(self.buf[:need])
        del self.buf[:need]
        self.need = None
        self._scanned = 0
        out.append((body, None))
        return True

    def _header(self, out: list[tuple[bytes | None, str | None]]) -> bool:
        m = _START.search(self.buf)
        if m is None:
            keep = 32  # a header start split across reads
            if len(self.buf) > MAX_HEADER_BYTES:
                dropped = bytes(self.buf[:-keep])
                del self.buf[:-keep]
                if not _HEADERISH.fullmatch(dropped):
                    self._problem(out, "bytes outside any message were dropped")
            return False
        if m.start() > 0:
            dropped = bytes(self.buf[: m.start()])
            del self.buf[: m.start()]
            if not _HEADERISH.fullmatch(dropped):
                self._problem(out, "bytes outside any message were dropped")
        self._quiet = False  # a header start ends any skipped body or reported garbage
        end = self.buf.find(b"\r\n\r\n")
        nxt = _START.search(self.buf, 1)
        if end < 0 or (nxt is not None and nxt.start() < end):
            if nxt is not None:
                del self.buf[: nxt.start()]
                self._problem(out, "a malformed message header was dropped")
                self._quiet = False
                return True
            if len(self.buf) > MAX_HEADER_BYTES:
                del self.buf[:1]
                self._problem(out, "a message header without its blank line was dropped")
                return True
            return False
        header = bytes(self.buf[:end])
        del self.buf[: end + 4]
        lines = header.split(b"\r\n")
        cl = _CL_LINE.fullmatch(lines[0])
        if cl is None or not all(_OTHER_HEADER.fullmatch(line) for line in lines[1:]):
            self._quiet = False
            self._problem(out, "a malformed message header was dropped")
            return True
        n = int(cl.group(1))
        self._quiet = False
        if n == 0:
            self._problem(out, "an empty message (Content-Length: 0) was dropped")
            self._quiet = False
            return True
        if n > self.max_message:
            self._problem(
                out,
                f"a message of {n} bytes is over the limit of {self.max_message} bytes; it was skipped",
            )
            # _quiet stays set: the skipped body is dropped without more reports.
            return True
        self.need = n
        self._scanned = 0
        return True


def _replace_surrogates(obj: Any) -> Any:
    """``obj`` with every lone surrogate in its strings (keys too) replaced by U+FFFD."""
    if isinstance(obj, str):
        # json.loads joins valid pairs: a surrogate left in a str is a lone one. One U+FFFD for
        # each keeps UTF-16 positions where they were.
        return _LONE_SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_surrogates(v) for v in obj]
    return obj


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _valid_id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def short_error(exc: BaseException, limit: int = 200) -> str:
    """A one-line description of an exception for a client (no traceback, bounded)."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


class HardenedProtocol(LanguageServerProtocol):
    """pygls' LSP protocol with checked input: see the module docstring."""

    #: Set by :func:`serve_tcp`: ``initialize`` must carry this token.
    required_token: str | None = None
    #: Called (with a reason) when a connection must be closed (failed authentication).
    on_reject: Callable[[str], None] | None = None

    def __init__(self, server: Any, converter: Any) -> None:
        super().__init__(server, converter)
        self.initialize_seen = False
        self.counts = {"received": 0, "requests": 0, "errors": 0, "dropped": 0}

    # --- entry points from the transports ------------------------------------------------------
    def frame_problem(self, problem: str) -> None:
        """The framer dropped bytes: answer with a parse error (id null) and tell the user once."""
        self.counts["dropped"] += 1
        log.warning("protocol: %s", problem)
        self._send_error(None, PARSE_ERROR, f"Parse error: {problem}")
        notice(
            self._server,
            "framing",
            f"the editor sent a malformed message ({problem}); details are in the server log.",
        )

    def receive_body(self, body: bytes) -> None:
        """One framed message body: parse, check and dispatch it; every request is answered."""
        self.counts["received"] += 1
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            msg_id = self._guess_id(body)
            self._send_error(
                msg_id,
                PARSE_ERROR,
                f"Parse error: the message is not UTF-8 ({exc.reason} at byte {exc.start})",
            )
            return
        try:
            obj = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            self._send_error(None, PARSE_ERROR, f"Parse error: {short_error(exc)}")
            return
        if _SURROGATE_ESCAPE.search(body):
            obj = _replace_surrogates(obj)
        try:
            self.receive_object(obj)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # never let one message end the read loop
            log.exception("protocol: could not handle a message")
            msg_id = obj.get("id") if isinstance(obj, dict) else None
            if isinstance(obj, dict) and "method" in obj and _valid_id(msg_id):
                self._send_error(msg_id, INTERNAL_ERROR, f"Internal error: {short_error(exc)}")

    def _guess_id(self, body: bytes) -> Any:
        try:
            obj = json.loads(body.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            return None
        if isinstance(obj, dict) and "method" in obj and _valid_id(obj.get("id")):
            return obj["id"]
        return None

    def receive_object(self, obj: Any) -> None:
        if isinstance(obj, list):
            self._send_error(None, INVALID_REQUEST, "Invalid request: batches are not supported")
            return
        if not isinstance(obj, dict):
            self._send_error(None, INVALID_REQUEST, "Invalid request: not a JSON object")
            return
        has_id = "id" in obj
        msg_id = obj.get("id")
        if has_id and not _valid_id(msg_id):
            self._send_error(
                None, INVALID_REQUEST, "Invalid request: id must be an integer or a string"
            )
            return
        if "method" not in obj:
            if has_id and ("result" in obj or "error" in obj) and obj.get("jsonrpc") == "2.0":
                self._receive_response(obj)
            elif has_id:
                self._send_error(msg_id, INVALID_REQUEST, "Invalid request: no method")
            else:
                self._drop("a message with neither a method nor an id")
            return
        method = obj["method"]
        answer = has_id
        if obj.get("jsonrpc") != "2.0":
            return self._invalid(answer, msg_id, 'Invalid request: "jsonrpc" must be "2.0"')
        if not isinstance(method, str):
            return self._invalid(answer, msg_id, "Invalid request: method must be a string")
        params = obj.get("params")
        if params is not None and not isinstance(params, dict | list):
            return self._invalid(
                answer, msg_id, "Invalid request: params must be an object or an array"
            )
        if answer:
            self.counts["requests"] += 1
        # --- lifecycle ---
        if not self.initialize_seen and method != types.INITIALIZE:
            if answer:
                self._send_error(
                    msg_id,
                    SERVER_NOT_INITIALIZED,
                    f"Server not initialized: {method} before initialize",
                )
            elif method != types.EXIT:
                self._drop(f"{method} before initialize")
                return
            if answer:
                return
        if method == types.INITIALIZE:
            if not answer:
                return self._drop("initialize sent as a notification")
            if self.initialize_seen:
                self._send_error(
                    msg_id, INVALID_REQUEST, "Invalid request: initialize was already received"
                )
                return
            if not self._check_token(msg_id, params):
                return
        if self._shutdown and method != types.EXIT:
            if answer:
                self._send_error(
                    msg_id, INVALID_REQUEST, f"Invalid request: {method} after shutdown"
                )
            else:
                self._drop(f"{method} after shutdown")
            return
        kind = validate.message_kind(method)
        if answer and kind == "notification":
            self._send_error(
                msg_id, INVALID_REQUEST, f"Invalid request: {method} is a notification (no id)"
            )
            return
        if not answer and kind == "request":
            return self._drop(f"the request {method} without an id")
        # --- parameters ---
        problem = validate.check_message(method, params, request=answer)
        if problem is not None:
            log.warning("protocol: %s: %s", method, problem)
            if answer:
                self._send_error(msg_id, INVALID_PARAMS, f"Invalid params: {problem}")
            else:
                notice(
                    self._server,
                    "params",
                    f"the editor sent a {method} the server could not use ({problem}); details are in the server log.",
                )
            return
        if method == types.WORKSPACE_EXECUTE_COMMAND and answer:
            command = params.get("command") if isinstance(params, dict) else None
            if command not in self.fm.commands:
                self._send_error(msg_id, INVALID_PARAMS, f"Invalid params: no command {command!r}")
                return
        if method in (types.TEXT_DOCUMENT_DID_CHANGE, types.TEXT_DOCUMENT_DID_CLOSE):
            uri = params["textDocument"]["uri"] if isinstance(params, dict) else None
            if self._workspace is None or uri not in self._workspace.text_documents:
                return self._invalid(
                    answer, msg_id, f"Invalid params: {uri!r} is not open", INVALID_PARAMS
                )
        obj.setdefault("params", None)  # pygls' generic messages need the field
        try:
            message = self.structure_message(obj)
        except JsonRpcException as exc:
            return self._invalid(
                answer,
                msg_id,
                f"Invalid params: {short_error(exc.__cause__ or exc)}",
                INVALID_PARAMS,
            )
        if method == types.INITIALIZE:
            self.initialize_seen = True
        self.handle_message(message)

    # --- pieces --------------------------------------------------------------------------------
    def _invalid(self, answer: bool, msg_id: Any, text: str, code: int = INVALID_REQUEST) -> None:
        if answer:
            self._send_error(msg_id, code, text)
        else:
            self._drop(text)

    def _drop(self, why: str) -> None:
        self.counts["dropped"] += 1
        log.warning("protocol: dropped %s", why)

    def _check_token(self, msg_id: Any, params: Any) -> bool:
        opts = params.get("initializationOptions") if isinstance(params, dict) else None
        given = opts.pop(TOKEN_OPTION, None) if isinstance(opts, dict) else None
        want = self.required_token
        if want is None:
            return True
        if isinstance(given, str) and hmac.compare_digest(given.encode(), want.encode()):
            return True
        self._send_error(
            msg_id,
            INVALID_REQUEST,
            "Authentication failed: this tactful server wants the token from its token file in "
            "initializationOptions.token",
        )
        if self.on_reject is not None:
            self.on_reject("authentication failed")
        return False

    def _receive_response(self, obj: dict[str, Any]) -> None:
        if obj["id"] not in self._request_futures:
            return self._drop(f"a response to an unknown request {obj['id']!r}")
        err = obj.get("error")
        if "error" in obj and not (
            isinstance(err, dict)
            and isinstance(err.get("code"), int)
            and isinstance(err.get("message"), str)
        ):
            obj = {
                "jsonrpc": "2.0",
                "id": obj["id"],
                "error": {"code": INTERNAL_ERROR, "message": "malformed error"},
            }
        try:
            message = self.structure_message(obj)
        except JsonRpcException as exc:
            log.warning("protocol: malformed response: %s", exc)
            message = self.structure_message(
                {
                    "jsonrpc": "2.0",
                    "id": obj["id"],
                    "error": {"code": INTERNAL_ERROR, "message": "malformed response"},
                }
            )
        self.handle_message(message)

    def _send_error(self, msg_id: Any, code: int, message: str) -> None:
        self.counts["errors"] += 1
        self._send_data(
            {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}
        )

    # --- pygls overrides -----------------------------------------------------------------------
    def _execute_handler(
        self,
        msg_id: Any,
        handler: Any,
        callback: Any,
        args: Any = None,
        kwargs: Any = None,
    ) -> None:
        """pygls keeps the future of every async or threaded handler run for a notification
        (and for each step of a generator handler) in ``_request_futures`` under a random id and
        never drops it: with its result or exception and traceback, that grew the process by a
        gigabyte over 20,000 fuzzed messages. Drop each one when it is done."""
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        fut = self._request_futures.get(msg_id)
        if fut is not None:

            def forget(done: Any, key: Any = msg_id) -> None:
                if self._request_futures.get(key) is done:
                    del self._request_futures[key]

            fut.add_done_callback(forget)

    def _send_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        """Errors go out without tracebacks and with a short message."""
        if error is not None:
            data = getattr(error, "data", None)
            if isinstance(data, dict) and "traceback" in data:
                log.error("request %r failed:\n%s", msg_id, "".join(data["traceback"]))
                error = types.ResponseError(
                    code=error.code, message=f"Internal error: {error.message}"[:200]
                )
        super()._send_response(msg_id, result, error)

    def _send_data(self, data: Any) -> None:
        try:
            super()._send_data(data)
        except (BrokenPipeError, ConnectionError):
            log.warning("protocol: the client is gone; could not send")


# --- one message per kind of problem -----------------------------------------------------------
ERROR = types.MessageType.Error


def call_in_loop(server: Any, fn: Callable[[], Any]) -> None:
    """Run ``fn`` on the server's event loop (now when already there): writers are not
    thread-safe."""
    loop: asyncio.AbstractEventLoop | None = getattr(server, "loop", None)
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if loop is not None and loop.is_running() and here is not loop:
        loop.call_soon_threadsafe(fn)
        return
    try:
        fn()
    except Exception:
        log.debug("call_in_loop: %r failed", fn, exc_info=True)


def notice(
    server: Any, kind: str, message: str, level: types.MessageType = types.MessageType.Warning
) -> bool:
    """Show ``message`` to the user unless a message of this kind was shown this session."""
    shown: set[str] | None = getattr(server, "_notices_shown", None)
    if shown is None:
        shown = set()
        with contextlib.suppress(AttributeError):
            server._notices_shown = shown
    if kind in shown:
        return False
    shown.add(kind)
    params = types.ShowMessageParams(type=level, message=f"tactful: {message}")
    call_in_loop(server, lambda: server.window_show_message(params))
    return True


class HardenedServer(LanguageServer):
    """A pygls ``LanguageServer`` with :class:`HardenedProtocol` and quiet error reporting."""

    def __init__(self, name: str, version: str, **kw: Any) -> None:
        kw.setdefault("protocol_cls", HardenedProtocol)
        super().__init__(name, version, **kw)
        self._notices_shown: set[str] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        #: Problems that last (kind -> message for a person), sent with the status.
        self.problems: dict[str, str] = {}

    def report_server_error(self, error: Exception, source: Any) -> None:
        """pygls shows every error in a popup; here the log gets it and the user hears once."""
        if getattr(source, "__name__", "") == "FeatureRequestError":
            log.info("request failed: %s", error)
            return  # the request's response carries it
        log.error("server error (%s): %s", getattr(source, "__name__", source), error)
        notice(
            self,
            "internal",
            "an internal error happened; the server keeps running (details are in the server log).",
            types.MessageType.Error,
        )


# --- transports --------------------------------------------------------------------------------
class _BytesWriter:
    def __init__(self, write: Callable[[bytes], Any], close: Callable[[], Any]) -> None:
        self._write, self._close = write, close
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._write(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._close()


async def _pump(
    read: Callable[[], Any], protocol: HardenedProtocol, framer: Framer, stop: threading.Event
) -> None:
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

    protocol.set_writer(_BytesWriter(write, out.close))
    server._stop_event = stop = threading.Event()
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tactful-stdin")

    async def main() -> None:
        loop = server.loop = asyncio.get_running_loop()

        def read() -> Any:
            return loop.run_in_executor(reader, os.read, fd, 1 << 16)

        await _pump(read, protocol, Framer(), stop)

    try:
        asyncio.run(main())
    except BrokenPipeError:
        log.error("the client is gone; shutting down")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        reader.shutdown(wait=False)
        server.shutdown()


def token_path(data_dir: str | None = None) -> Path:
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


def serve_tcp(server: HardenedServer, host: str, port: int, token: str | None) -> None:
    """Serve one editor at a time on ``host:port``.

    A second connection while one is active gets an error response (or a message) and is
    closed; it does not disturb the active one. With ``token``, ``initialize`` must carry it in
    ``initializationOptions.token`` or the connection is closed. The server ends when the
    connection that initialized it closes; connections that never initialized (refused, failed
    authentication, probes) do not end it."""
    protocol = server.protocol
    assert isinstance(protocol, HardenedProtocol)
    protocol.required_token = token
    server._stop_event = stop = threading.Event()
    active: list[asyncio.StreamWriter] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = Framer()
        msg_id: Any = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                while msg_id is None:
                    data = await reader.read(1 << 16)
                    if not data:
                        break
                    for body, _p in framer.feed(data):
                        if body is not None:
                            with contextlib.suppress(
                                ValueError, RecursionError, UnicodeDecodeError
                            ):
                                obj = json.loads(body)
                                if (
                                    isinstance(obj, dict)
                                    and _valid_id(obj.get("id"))
                                    and "method" in obj
                                ):
                                    msg_id = obj["id"]
                                    break
        text = "tactful is serving another editor on this port; start another `tactful serve` for this one"
        if msg_id is not None:
            payload: dict[str, Any] = {
                "jsonrpc": "2.0",
                "id": msg_id,
                "error": {"code": INVALID_REQUEST, "message": text},
            }
        else:
            payload = {
                "jsonrpc": "2.0",
                "method": "window/showMessage",
                "params": {"type": 1, "message": f"tactful: {text}"},
            }
        body = json.dumps(payload).encode()
        with contextlib.suppress(Exception):
            writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if active:
            log.warning("refusing a second connection from %s", writer.get_extra_info("peername"))
            await refuse(reader, writer)
            return
        active.append(writer)
        closed = threading.Event()

        def reject(reason: str) -> None:
            log.warning("closing a connection: %s", reason)
            closed.set()

        protocol.on_reject = reject
        protocol.set_writer(_BytesWriter(writer.write, writer.close))

        async def read() -> bytes:
            if closed.is_set():
                return b""
            try:
                return await reader.read(1 << 16)
            except ConnectionError:
                return b""

        try:
            await _pump(read, protocol, Framer(), stop)
        finally:
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()
            active.remove(writer)
            if protocol.initialize_seen or stop.is_set():
                stop.set()
                if srv is not None:
                    srv.close()
            else:
                protocol._shutdown = False

    srv: asyncio.Server | None = None

    async def main() -> None:
        nonlocal srv
        server.loop = asyncio.get_running_loop()
        srv = await asyncio.start_server(connection, host, port)
        server._server = srv
        log.info("serving on %s", ", ".join(str(s.getsockname()) for s in srv.sockets))
        with contextlib.suppress(asyncio.CancelledError):
            async with srv:
                await srv.serve_forever()

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()
