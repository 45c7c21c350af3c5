"""pygls' protocol and server with checked input: every request answered, every problem told once.

:class:`HardenedProtocol` (pygls' ``LanguageServerProtocol``) takes the message bodies the
:class:`~tactful.lsp.framing.Framer` cut and answers every request: ``-32700`` for bodies that are
not UTF-8 JSON, ``-32600`` for what is not a JSON-RPC 2.0 request (and for requests after
``shutdown``), ``-32002`` for requests before ``initialize``, ``-32602`` for parameters that do
not fit the lsprotocol types (:mod:`tactful.lsp.validate`; nothing is coerced), ``-32603`` with
a short message for internal errors (the traceback goes to the server log only). Lone surrogates
in strings are replaced by U+FFFD before anything sees them. A message passes its gates in order
(envelope, lifecycle, kind, parameters) and is dispatched to pygls only when none refused it.

:class:`HardenedServer` shows at most one ``window/showMessage`` per kind of problem per session
(:mod:`tactful.lsp.notices`). The transports that feed them are :mod:`tactful.lsp.transport`
(stdio) and :mod:`tactful.lsp.tcp`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from tactful.lsp import validate
from tactful.lsp.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    SERVER_NOT_INITIALIZED,
    Refusal,
    envelope_problem,
    error_payload,
    parse_body,
    request_id,
    short_error,
    valid_id,
    well_formed_error,
)
from tactful.lsp.notices import notice

log = logging.getLogger(__name__)

#: The field of ``initializationOptions`` that carries the TCP token.
TOKEN_OPTION = "token"


class _Message(NamedTuple):
    """A message that passed the envelope check: a request when ``answer`` (it has an id)."""

    method: str
    msg_id: Any
    answer: bool
    params: Any


class HardenedProtocol(LanguageServerProtocol):
    """pygls' LSP protocol with checked input: see the module docstring."""

    #: Set by :func:`tactful.lsp.tcp.serve_tcp`: ``initialize`` must carry this token.
    required_token: str | None = None
    #: Called (with a reason) when a connection must be closed (failed authentication).
    on_reject: Callable[[str], None] | None = None

    def __init__(self, server: HardenedServer, converter: Any) -> None:
        super().__init__(server, converter)
        #: The server, typed (pygls keeps it as a plain ``LanguageServer``).
        self.owner = server
        self.initialize_seen = False
        self.counts = {"received": 0, "requests": 0, "errors": 0, "dropped": 0}

    # --- entry points from the transports ------------------------------------------------------
    def frame_problem(self, problem: str) -> None:
        """The framer dropped bytes: answer with a parse error (id null) and tell the user once."""
        self.counts["dropped"] += 1
        log.warning("protocol: %s", problem)
        self._send_error(None, PARSE_ERROR, f"Parse error: {problem}")
        notice(
            self.owner,
            "framing",
            f"the editor sent a malformed message ({problem}); details are in the server log.",
        )

    def receive_body(self, body: bytes) -> None:
        """One framed message body: parse, check and dispatch it; every request is answered."""
        self.counts["received"] += 1
        try:
            obj = parse_body(body)
        except Refusal as refusal:
            self._send_error(refusal.msg_id, refusal.code, refusal.message)
            return
        try:
            self.receive_object(obj)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # never let one message end the read loop
            log.exception("protocol: could not handle a message")
            msg_id = request_id(obj)
            if msg_id is not None:
                self._send_error(msg_id, INTERNAL_ERROR, f"Internal error: {short_error(exc)}")

    def receive_object(self, obj: Any) -> None:
        """A parsed message: through the gates in order, then to pygls."""
        msg = self._envelope(obj)
        if msg is None:
            return
        if msg.answer:
            self.counts["requests"] += 1
        if self._refused_lifecycle(msg) or self._refused_kind(msg) or self._refused_params(msg):
            return
        self._dispatch(obj, msg)

    # --- the gates: each answers (or drops) what it refuses and returns True -----------------
    def _envelope(self, obj: Any) -> _Message | None:
        """A JSON-RPC 2.0 request or notification, or None once anything else was answered
        (responses to the server's own requests go to pygls here)."""
        if isinstance(obj, list):
            self._send_error(None, INVALID_REQUEST, "Invalid request: batches are not supported")
            return None
        if not isinstance(obj, dict):
            self._send_error(None, INVALID_REQUEST, "Invalid request: not a JSON object")
            return None
        has_id = "id" in obj
        msg_id = obj.get("id")
        if has_id and not valid_id(msg_id):
            self._send_error(
                None, INVALID_REQUEST, "Invalid request: id must be an integer or a string"
            )
            return None
        if "method" not in obj:
            if has_id and ("result" in obj or "error" in obj) and obj.get("jsonrpc") == "2.0":
                self._receive_response(obj)
            elif has_id:
                self._send_error(msg_id, INVALID_REQUEST, "Invalid request: no method")
            else:
                self._drop("a message with neither a method nor an id")
            return None
        problem = envelope_problem(obj)
        if problem is not None:
            self._invalid(has_id, msg_id, problem)
            return None
        return _Message(obj["method"], msg_id, has_id, obj.get("params"))

    def _refused_lifecycle(self, msg: _Message) -> bool:
        """Nothing but ``initialize`` (and ``exit``) before ``initialize``, one ``initialize``
        with the right token, nothing but ``exit`` after ``shutdown``."""
        method, msg_id, answer = msg.method, msg.msg_id, msg.answer
        if not self.initialize_seen and method != types.INITIALIZE:
            if answer:
                self._send_error(
                    msg_id,
                    SERVER_NOT_INITIALIZED,
                    f"Server not initialized: {method} before initialize",
                )
                return True
            if method != types.EXIT:
                self._drop(f"{method} before initialize")
                return True
        if method == types.INITIALIZE:
            if not answer:
                self._drop("initialize sent as a notification")
                return True
            if self.initialize_seen:
                self._send_error(
                    msg_id, INVALID_REQUEST, "Invalid request: initialize was already received"
                )
                return True
            if not self._check_token(msg_id, msg.params):
                return True
        if self._shutdown and method != types.EXIT:
            if answer:
                self._send_error(
                    msg_id, INVALID_REQUEST, f"Invalid request: {method} after shutdown"
                )
            else:
                self._drop(f"{method} after shutdown")
            return True
        return False

    def _refused_kind(self, msg: _Message) -> bool:
        """A notification method sent with an id, or a request method without one."""
        kind = validate.message_kind(msg.method)
        if msg.answer and kind == "notification":
            self._send_error(
                msg.msg_id,
                INVALID_REQUEST,
                f"Invalid request: {msg.method} is a notification (no id)",
            )
            return True
        if not msg.answer and kind == "request":
            self._drop(f"the request {msg.method} without an id")
            return True
        return False

    def _refused_params(self, msg: _Message) -> bool:
        """Parameters that do not fit the method's types, an unknown command, or a change to a
        document that is not open."""
        method, msg_id, answer, params = msg
        problem = validate.check_message(method, params, request=answer)
        if problem is not None:
            log.warning("protocol: %s: %s", method, problem)
            if answer:
                self._send_error(msg_id, INVALID_PARAMS, f"Invalid params: {problem}")
            else:
                notice(
                    self.owner,
                    "params",
                    f"the editor sent a {method} the server could not use ({problem}); details are in the server log.",
                )
            return True
        if method == types.WORKSPACE_EXECUTE_COMMAND and answer:
            command = params.get("command") if isinstance(params, dict) else None
            if command not in self.fm.commands:
                self._send_error(msg_id, INVALID_PARAMS, f"Invalid params: no command {command!r}")
                return True
        if method in (types.TEXT_DOCUMENT_DID_CHANGE, types.TEXT_DOCUMENT_DID_CLOSE):
            uri = params["textDocument"]["uri"] if isinstance(params, dict) else None
            if self._workspace is None or uri not in self._workspace.text_documents:
                self._invalid(
                    answer, msg_id, f"Invalid params: {uri!r} is not open", INVALID_PARAMS
                )
                return True
        return False

    def _dispatch(self, obj: dict[str, Any], msg: _Message) -> None:
        """Structure the message as pygls does and hand it to pygls' handlers."""
        obj.setdefault("params", None)  # pygls' generic messages need the field
        try:
            message = self.structure_message(obj)
        except JsonRpcException as exc:
            self._invalid(
                msg.answer,
                msg.msg_id,
                f"Invalid params: {short_error(exc.__cause__ or exc)}",
                INVALID_PARAMS,
            )
            return
        if msg.method == types.INITIALIZE:
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
        if not well_formed_error(obj):
            obj = error_payload(obj["id"], INTERNAL_ERROR, "malformed error")
        try:
            message = self.structure_message(obj)
        except JsonRpcException as exc:
            log.warning("protocol: malformed response: %s", exc)
            message = self.structure_message(
                error_payload(obj["id"], INTERNAL_ERROR, "malformed response")
            )
        self.handle_message(message)

    def _send_error(self, msg_id: Any, code: int, message: str) -> None:
        self.counts["errors"] += 1
        self._send_data(error_payload(msg_id, code, message))

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


class HardenedServer(LanguageServer):
    """A pygls ``LanguageServer`` with :class:`HardenedProtocol` and quiet error reporting."""

    def __init__(self, name: str, version: str, **kw: Any) -> None:
        kw.setdefault("protocol_cls", HardenedProtocol)
        super().__init__(name, version, **kw)
        #: The kinds of problem the user was told about this session (``notices.notice``).
        self.notices_shown: set[str] = set()
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
