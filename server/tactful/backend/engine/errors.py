"""How an engine request fails: ``EngineError`` and its kinds, and the plain functions that
name a failure for a person from an httpx exception or an HTTP error answer.

Owns the wording and the kind of every failure. Must not do I/O, hold state, or see the API
key (the HTTP client scrubs it from the messages it builds from these).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx

from tactful.backend.types import ModelError

# Kinds of failure (EngineError.kind).
UNREACHABLE, TIMEOUT, AUTH, MODEL, SERVER, PROTOCOL, REQUEST, UNSUPPORTED = (
    "unreachable",
    "timeout",
    "auth",
    "model",
    "server",
    "protocol",
    "request",
    "unsupported",
)
#: Failures after which the engine is not asked again until a health probe succeeds.
OPEN_AT_ONCE = frozenset({UNREACHABLE, TIMEOUT, AUTH, MODEL})
#: Transient failures worth a retry (flags only).
TRANSIENT = frozenset({UNREACHABLE, TIMEOUT, SERVER, PROTOCOL})
#: Most characters of an engine's error text repeated in a message.
ERROR_CHARS = 240


class EngineError(ModelError):
    """An engine request failed; ``kind`` says how (one of the constants above)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def describe_exception(exc: BaseException, timeout_s: float) -> tuple[str, str]:
    """(message, kind) for an exception raised while talking to the engine."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        return f"cannot connect ({type(exc).__name__}: {exc})", UNREACHABLE
    if isinstance(exc, httpx.TimeoutException | asyncio.TimeoutError | TimeoutError):
        return f"no answer within {timeout_s:g} s", TIMEOUT
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return f"the connection broke mid-answer ({exc})", PROTOCOL
    return f"{type(exc).__name__}: {exc}", PROTOCOL


def error_detail(body: Any) -> str:
    """The engine's own words from an error answer's body (OpenAI's ``error.message``,
    ``message`` or FastAPI's ``detail``), on one line and cut to ``ERROR_CHARS``."""
    msg = body
    if isinstance(body, Mapping):
        err = body.get("error", body.get("message", body.get("detail", body)))
        msg = err.get("message", err) if isinstance(err, Mapping) else err
    return " ".join(str(msg).split())[:ERROR_CHARS]


def describe_status(code: int, body: Any, what: str, model: str, has_key: bool) -> tuple[str, str]:
    """(message, kind) for an HTTP error answer with status ``code`` and (JSON or text) ``body``
    to ``what`` (e.g. "the completion request"), asked of ``model``."""
    detail = error_detail(body)
    if code in (401, 403):
        hint = (
            "the engine refused the API key"
            if has_key
            else "the engine wants an API key: set engine.apiKeyEnv to the name of an "
            "environment variable that holds it"
        )
        return f"{hint} (HTTP {code})", AUTH
    low = detail.lower()
    if code in (400, 404) and "model" in low and ("not" in low or "does not exist" in low):
        return f"model {model!r} is not served there (HTTP {code}: {detail})", MODEL
    if code >= 500:
        return f"{what} failed with HTTP {code}: {detail}", SERVER
    return f"{what} was refused with HTTP {code}: {detail}", REQUEST
