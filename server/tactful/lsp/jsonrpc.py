"""JSON-RPC 2.0 as plain functions: error codes, decoding a message body, telling requests from
the rest, and error payloads. No pygls: :mod:`tactful.lsp.hardened` and :mod:`tactful.lsp.tcp`
use these to answer what pygls would drop.
"""

from __future__ import annotations

import json
import re
from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_NOT_INITIALIZED = -32002

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class Refusal(Exception):
    """A message that gets a JSON-RPC error (``code``, ``message``) instead of being handled;
    ``msg_id`` is None when the message's id is unknown."""

    def __init__(self, msg_id: Any, code: int, message: str) -> None:
        super().__init__(message)
        self.msg_id = msg_id
        self.code = code
        self.message = message


def short_error(exc: BaseException, limit: int = 200) -> str:
    """A one-line description of an exception for a client (no traceback, bounded)."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def valid_id(value: Any) -> bool:
    """Whether ``value`` may be a request id (an integer, not a boolean, or a string)."""
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def request_id(obj: Any) -> Any:
    """The id of ``obj`` when it is a request (a method and a valid id), else None."""
    if isinstance(obj, dict) and "method" in obj and valid_id(obj.get("id")):
        return obj["id"]
    return None


def error_payload(msg_id: Any, code: int, message: str) -> dict[str, Any]:
    """A JSON-RPC error response."""
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}


def replace_surrogates(obj: Any) -> Any:
    """``obj`` with every lone surrogate in its strings (keys too) replaced by U+FFFD."""
    if isinstance(obj, str):
        # json.loads joins valid pairs: a surrogate left in a str is a lone one. One U+FFFD for
        # each keeps UTF-16 positions where they were.
        return _LONE_SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, dict):
        return {replace_surrogates(k): replace_surrogates(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [replace_surrogates(v) for v in obj]
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _guess_id(body: bytes) -> Any:
    """The request id of a body that is not UTF-8, read as well as it can be."""
    try:
        obj = json.loads(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None
    return request_id(obj)


def parse_body(body: bytes) -> Any:
    """The JSON value of a message body, lone surrogates replaced; :class:`Refusal` (-32700)
    when it is not UTF-8 JSON (NaN and Infinity are not JSON)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refusal(
            _guess_id(body),
            PARSE_ERROR,
            f"Parse error: the message is not UTF-8 ({exc.reason} at byte {exc.start})",
        ) from exc
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise Refusal(None, PARSE_ERROR, f"Parse error: {short_error(exc)}") from exc
    if _SURROGATE_ESCAPE.search(body):
        obj = replace_surrogates(obj)
    return obj


def envelope_problem(obj: dict[str, Any]) -> str | None:
    """What makes a message with a method not JSON-RPC 2.0 (None: nothing)."""
    if obj.get("jsonrpc") != "2.0":
        return 'Invalid request: "jsonrpc" must be "2.0"'
    if not isinstance(obj["method"], str):
        return "Invalid request: method must be a string"
    params = obj.get("params")
    if params is not None and not isinstance(params, dict | list):
        return "Invalid request: params must be an object or an array"
    return None


def well_formed_error(obj: dict[str, Any]) -> bool:
    """Whether a response carries no error, or an error with an integer code and a message."""
    if "error" not in obj:
        return True
    err = obj.get("error")
    return (
        isinstance(err, dict)
        and isinstance(err.get("code"), int)
        and isinstance(err.get("message"), str)
    )
