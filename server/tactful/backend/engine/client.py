"""HTTP to one engine: the ``httpx.AsyncClient`` (one connection pool, keep-alive, TLS verified,
bounded timeouts) on the engine's event loop thread, the cap on requests in flight, the API key,
the request counters, and the engine's endpoints as tactful uses them: ``/v1/models``,
``/tokenize``, ``/v1/completions`` streamed (server-sent events) or as one JSON answer.

Owns turning every transport failure and HTTP error answer into an ``EngineError`` whose message
names the engine and never the key. Must not build prompts or read completions: that is
``completions.py`` and ``scoring.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from tactful.backend.engine.dialects import sse_events
from tactful.backend.engine.errors import (
    PROTOCOL,
    TRANSIENT,
    EngineError,
    describe_exception,
    describe_status,
)
from tactful.backend.engine.loop import LoopThread

T = TypeVar("T")

#: Attempts of a flag request (scoring, regeneration) on a transient fault; completions get one.
FLAG_TRIES = 3
FLAG_BACKOFF_S = 0.25
#: The request forms of the tokenize endpoint: vLLM's and SGLang's, then llama.cpp's server's.
TOKENIZE_FORMS = ("prompt", "content")


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def engine_root(base: str) -> str:
    """The server's root URL from its OpenAI base URL (``http://h:8000/v1`` -> ``http://h:8000``)."""
    base = base.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


async def retrying(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``make()`` awaited up to ``FLAG_TRIES`` times while it fails transiently, with backoff
    (flags' requests; a late completion is useless, so completions are never retried)."""
    for attempt in range(FLAG_TRIES):
        try:
            return await make()
        except EngineError as exc:
            if exc.kind not in TRANSIENT or attempt == FLAG_TRIES - 1:
                raise
            await asyncio.sleep(FLAG_BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


class Liveness:
    """Since when the engine has owed tactful an answer without a sign of life. A request sent
    starts the clock (unless it runs already); an answer stops it: a stream's events (not its
    status line: an engine's HTTP server may answer while its model is stuck), an error status,
    a JSON answer. A request that reaches its timeout is a failure of
    its own; this clock also catches the engine that falls silent while every request is
    cancelled before its timeout, as a typing user's are.

    Touched on the engine's loop thread; ``silent_s`` may be read from any thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.owed_since: float | None = None

    def asked(self) -> None:
        if self.owed_since is None:
            self.owed_since = self.clock()

    def heard(self) -> None:
        self.owed_since = None

    def silent_s(self) -> float:
        owed = self.owed_since
        return 0.0 if owed is None else self.clock() - owed


class EngineClient:
    """The HTTP side of one engine (see the module's docstring). ``model`` is the served model
    the requests name (set when the backend connects); ``stats`` counts what was sent."""

    def __init__(
        self,
        base: str,
        *,
        key: str | None,
        connect_timeout_s: float,
        timeout_s: float,
        max_concurrent: int,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base = base.rstrip("/")
        self.host = urlsplit(self.base).netloc
        self.timeout_s = timeout_s
        self.model = ""
        self._key = key
        self.liveness = Liveness()
        self.loop = LoopThread()
        self.stats = {
            "requests": 0,
            "cancelled": 0,
            "failed": 0,
            "in_flight": 0,
            "max_in_flight": 0,
            "healed": 0,
            "heal_missed": 0,
        }
        timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self.http, self.sem = self.loop.run(self._open(timeout, max_concurrent, transport))

    async def _open(
        self,
        timeout: httpx.Timeout,
        max_concurrent: int,
        transport: httpx.AsyncBaseTransport | None,
    ) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """The pool and the semaphore, made on the loop they serve."""
        client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {self._key}"} if self._key else {},
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max_concurrent + 1,  # + the health probe
                max_keepalive_connections=max_concurrent + 1,
            ),
            transport=transport,
            verify=True,
            follow_redirects=False,
        )
        return client, asyncio.Semaphore(max_concurrent)

    # --- errors --------------------------------------------------------------------------------
    def scrub(self, text: str) -> str:
        return text.replace(self._key, "[key]") if self._key else text

    def error(self, message: str, kind: str) -> EngineError:
        return EngineError(self.scrub(f"engine {self.host}: {message}"), kind)

    def from_exception(self, exc: BaseException) -> EngineError:
        if isinstance(exc, EngineError):
            return EngineError(self.scrub(str(exc)), exc.kind)
        return self.error(*describe_exception(exc, self.timeout_s))

    def from_status(self, resp: httpx.Response, what: str) -> EngineError:
        try:
            body: Any = resp.json()
        except ValueError:
            body = resp.text
        message, kind = describe_status(resp.status_code, body, what, self.model, bool(self._key))
        return self.error(message, kind)

    # --- endpoints -----------------------------------------------------------------------------
    async def models(self) -> list[str]:
        """The served models' names (``/v1/models``)."""
        self.liveness.asked()
        try:
            resp = await self.http.get(self.base + "/models")
        except Exception as exc:
            raise self.from_exception(exc) from exc
        self.liveness.heard()
        if resp.status_code != 200:
            raise self.from_status(resp, "listing the models")
        try:
            data = resp.json()["data"]
            return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
        except (ValueError, KeyError, TypeError) as exc:
            raise self.error(
                "/v1/models did not answer in the OpenAI form; is this the /v1 URL of an "
                "OpenAI-compatible engine?",
                PROTOCOL,
            ) from exc

    async def token_count(self, text: str, form: str) -> int | None:
        """How many tokens ``text`` is (no special tokens), asked of the tokenize endpoint in
        ``form`` (one of ``TOKENIZE_FORMS``); None where the engine does not answer that form.
        httpx's exceptions are left to the caller."""
        self.liveness.asked()
        resp = await self.http.post(
            engine_root(self.base) + "/tokenize",
            json={"model": self.model, form: text, "add_special_tokens": False},
        )
        self.liveness.heard()
        if resp.status_code != 200:
            return None
        try:
            return len(resp.json()["tokens"])
        except (ValueError, KeyError, TypeError):
            return None

    @contextlib.asynccontextmanager
    async def stream(self, body: dict[str, Any]) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """A streamed ``/v1/completions`` request: its events; leaving the block closes the
        stream (vLLM and SGLang then abort the request)."""
        self.liveness.asked()
        async with self.http.stream("POST", self.base + "/completions", json=body) as resp:
            if resp.status_code != 200:
                self.liveness.heard()  # an answer, if not the one asked for
                await resp.aread()
                raise self.from_status(resp, "the completion request")
            yield sse_events(resp.aiter_lines(), self.liveness.heard)

    async def complete_json(self, body: dict[str, Any], what: str) -> dict[str, Any]:
        """A non-streamed ``/v1/completions`` request for ``what`` (e.g. "scoring"), under the
        cap on requests in flight and the timeout: its JSON answer."""
        async with self.sem:
            self.stats["requests"] += 1
            return await self.post_json(body, what)

    async def post_json(self, body: dict[str, Any], what: str) -> dict[str, Any]:
        """``complete_json`` for a caller that already holds a place under the cap."""
        try:
            resp = await asyncio.wait_for(
                self.http.post(self.base + "/completions", json=body), self.timeout_s
            )
        except Exception as exc:
            raise self.from_exception(exc) from exc
        if resp.status_code != 200:
            raise self.from_status(resp, f"the {what} request")
        try:
            data = resp.json()
        except ValueError as exc:
            raise self.error(f"the {what} answer is not JSON", PROTOCOL) from exc
        if not isinstance(data, dict):
            raise self.error(f"the {what} answer is not a JSON object", PROTOCOL)
        return data

    async def last_token(self, text: str) -> str | None:
        """The text of the last token of ``text`` as the engine's tokenizer cuts it: its
        ``/tokenize`` (vLLM and SGLang's form, or llama.cpp's with pieces), then ``/detokenize``
        of that one id where the answer has no pieces. None where the engine answers neither
        form (Ollama); "" for an empty text. httpx's exceptions are left to the caller."""
        root = engine_root(self.base)
        for form in TOKENIZE_FORMS:
            resp = await self.http.post(
                root + "/tokenize",
                json={
                    "model": self.model,
                    form: text,
                    "add_special_tokens": False,
                    "with_pieces": True,
                },
            )
            if resp.status_code != 200:
                continue
            try:
                toks = resp.json()["tokens"]
            except (ValueError, KeyError, TypeError):
                continue
            if not isinstance(toks, list) or (text and not toks):
                continue  # a form the engine does not read tokenizes nothing
            if not toks:
                return ""
            last = toks[-1]
            if isinstance(last, dict):  # llama.cpp: {"id", "piece"}
                piece = last.get("piece")
                return piece if isinstance(piece, str) else None
            return await self._detokenize(root, last)
        return None

    async def _detokenize(self, root: str, token_id: Any) -> str | None:
        resp = await self.http.post(
            root + "/detokenize", json={"model": self.model, "tokens": [token_id]}
        )
        if resp.status_code != 200:
            return None
        try:
            data = resp.json()
        except ValueError:
            return None
        got = data.get("prompt", data.get("content")) if isinstance(data, dict) else None
        return got if isinstance(got, str) else None

    def close(self) -> None:
        """Close the pool, then stop the loop."""

        async def shut() -> None:
            await self.http.aclose()
            await asyncio.get_running_loop().shutdown_asyncgens()

        try:
            self.loop.run(shut())
        finally:
            self.loop.close()
