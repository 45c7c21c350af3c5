"""Serve from an OpenAI-compatible inference engine (vLLM, SGLang, llama.cpp's server, Ollama)
behind tactful's ``Backend`` interface.

- Completions: the same prompt the in-process path builds (the same FIM template code,
  ``fim.py``), sent raw to ``/v1/completions`` (not chat), streamed (SSE). ``Generation.text``,
  ``tokens`` and ``token_logprobs`` grow as tokens arrive, so the completion deadline, type-along
  and the cascade work unchanged. The stop rules are the in-process ones (``stops.py``), applied to
  the text so far; when one fires, or the request is cancelled, the stream is closed, which makes
  vLLM and SGLang abort the request.
- Flags: the scoring pass from the prompt's log-probabilities (``echo`` with ``logprobs``), the
  regenerations sent concurrently (``generate_many``) so that the engine batches them.
- One event loop thread and one ``httpx.AsyncClient`` (connection pool, keep-alive) per backend;
  a cap on requests in flight; bounded timeouts everywhere; TLS verified.
- Faults: ``RoutingBackend`` puts a circuit breaker in front of the engine and falls back to the
  embedded model (or to nothing) while it is down, probing it in the background until it answers.

The API key is read from the environment variable the settings name; it is sent as a bearer token
and scrubbed from every message this module makes.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import ipaddress
import json
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from tactful.backend import fim, stops
from tactful.backend.types import Backend, GenerateRequest, Generation, LineScores, ModelError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How often a caller waiting on the engine looks at its cancel event (seconds).
POLL_S = 0.005
#: Alternatives asked for per scored token (entropy is estimated from them).
SCORE_TOP = 5
#: Attempts of a flag request (scoring, regeneration) on a transient fault; completions get one.
FLAG_TRIES = 3
FLAG_BACKOFF_S = 0.25
#: Most characters of an engine's error text repeated in a message.
_ERROR_CHARS = 240

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
_OPEN_AT_ONCE = frozenset({UNREACHABLE, TIMEOUT, AUTH, MODEL})
#: Transient failures worth a retry (flags only).
_TRANSIENT = frozenset({UNREACHABLE, TIMEOUT, SERVER, PROTOCOL})


class EngineError(ModelError):
    """An engine request failed; ``kind`` says how (one of the constants above)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


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


# --- parsing the engines' answers (plain functions, unit-tested) ------------------------------
@dataclass
class Chunk:
    """One streamed completion event: its text, its tokens and their log-probabilities (empty
    where the engine sends none), and the finish reason of the last one."""

    text: str
    tokens: list[str]
    logprobs: list[float]
    finish: str | None


def parse_chunk(event: Mapping[str, Any]) -> Chunk:
    """A ``/v1/completions`` stream event in any of the dialects: OpenAI's legacy
    ``logprobs: {tokens, token_logprobs}`` (vLLM, SGLang) or the ``logprobs: {content: [...]}``
    form (llama.cpp's server, Ollama). Raises EngineError for an error event or a malformed one."""
    if "error" in event:
        err = event["error"]
        msg = err.get("message") if isinstance(err, Mapping) else err
        raise EngineError(f"the engine failed mid-stream: {str(msg)[:_ERROR_CHARS]}", SERVER)
    choices = event.get("choices")
    if not isinstance(choices, list):
        raise EngineError("the engine sent a stream event without choices", PROTOCOL)
    if not choices:  # a usage-only event
        return Chunk("", [], [], None)
    choice = choices[0]
    if not isinstance(choice, Mapping):
        raise EngineError("the engine sent a malformed stream event", PROTOCOL)
    text = choice.get("text") or ""
    if not isinstance(text, str):
        raise EngineError("the engine sent a non-text completion", PROTOCOL)
    tokens: list[str] = []
    lps: list[float] = []
    lp = choice.get("logprobs")
    if isinstance(lp, Mapping):
        if isinstance(lp.get("content"), list):
            for item in lp["content"]:
                if isinstance(item, Mapping) and isinstance(item.get("logprob"), int | float):
                    tokens.append(str(item.get("token", "")))
                    lps.append(float(item["logprob"]))
        else:
            toks = lp.get("tokens") or []
            vals = lp.get("token_logprobs") or []
            for tok, val in zip(toks, vals, strict=False):
                if isinstance(val, int | float):
                    tokens.append(str(tok))
                    lps.append(float(val))
    finish = choice.get("finish_reason")
    return Chunk(text, tokens, lps, finish if isinstance(finish, str) else None)


def echo_scores(text: str, body: Mapping[str, Any]) -> LineScores:
    """``LineScores`` of ``text`` from a non-streamed ``echo`` + ``logprobs`` completion of it:
    per line, the log-probabilities of the tokens that start on it (the first token has none),
    an entropy estimate from the ``SCORE_TOP`` alternatives (their part of the sum, plus the rest
    of the probability mass as one outcome: a lower bound of the full distribution's entropy),
    each token's start, and whether it was the engine's own greedy choice there."""
    try:
        lp = body["choices"][0]["logprobs"]
        toks: list[str] = list(lp["tokens"])
        vals: list[float | None] = list(lp["token_logprobs"])
        tops: list[Mapping[str, float] | None] = list(lp.get("top_logprobs") or [None] * len(toks))
        offsets: list[int] | None = lp.get("text_offset")
    except (KeyError, IndexError, TypeError) as exc:
        raise EngineError(
            "the engine does not return prompt log-probabilities (echo with logprobs)", UNSUPPORTED
        ) from exc
    n = len(toks)
    # vLLM also sends the ranks (``prompt_logprobs``): the token is greedy where its rank is 1
    # (``top_logprobs`` is keyed by token text, where distinct tokens can collide).
    ranks: list[int | None] = []
    for j, entry in enumerate(body["choices"][0].get("prompt_logprobs") or []):
        rank = None
        if isinstance(entry, Mapping) and j < len(vals):
            for alt in entry.values():
                if isinstance(alt, Mapping) and alt.get("logprob") == vals[j]:
                    rank = alt.get("rank")
                    break
        ranks.append(rank if isinstance(rank, int) else None)
    if not (len(vals) == n and len(tops) == n):
        raise EngineError("the engine's prompt log-probabilities are malformed", PROTOCOL)
    # Token starts: the engine's text_offset, or the running length of the token texts.
    if not isinstance(offsets, list) or len(offsets) != n:
        offsets, pos = [], 0
        for t in toks:
            offsets.append(pos)
            pos += len(t)
    # Leading tokens before the text (a BOS the engine added) and the generated one at its end.
    first = 0
    while first < n and offsets[first] <= 0 and first + 1 < n and offsets[first + 1] <= 0:
        first += 1
    last = n
    while last > first and offsets[last - 1] >= len(text) and len(text) > 0:
        last -= 1
    line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    lp_lines: list[list[float]] = [[] for _ in line_starts]
    ent_lines: list[list[float]] = [[] for _ in line_starts]
    starts: list[int] = []
    greedy: list[bool] = []
    for j in range(first, last):
        start = int(offsets[j])
        starts.append(start)
        val = vals[j]
        top = tops[j]
        if j == first or not isinstance(val, int | float):
            greedy.append(False)
            continue
        alts = [float(v) for v in top.values()] if isinstance(top, Mapping) else []
        rank = ranks[j] if j < len(ranks) else None
        if rank is not None:
            greedy.append(rank == 1)
        else:
            greedy.append(not alts or float(val) >= max(alts) - 1e-6)
        probs = [math.exp(v) for v in alts if v > -1e30]
        rest = max(0.0, 1.0 - sum(probs))
        ent = -sum(p * math.log(p) for p in probs if p > 0) - (
            rest * math.log(rest) if rest > 0 else 0.0
        )
        piece = text[start : start + len(toks[j])]
        anchor = start + (len(piece) - len(piece.lstrip("\n")) if piece.strip() else 0)
        line = bisect.bisect_right(line_starts, min(anchor, max(0, len(text) - 1))) - 1
        lp_lines[line].append(float(val))
        ent_lines[line].append(ent)
    return LineScores(lp_lines, ent_lines, last - first, token_starts=starts, token_greedy=greedy)


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """The JSON events of a server-sent-event stream, up to ``data: [DONE]``."""
    data: list[str] = []
    done = False
    async for line in lines:
        if line.startswith(":"):
            continue
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
            continue
        if line.strip() == "" and data:
            payload = "\n".join(data)
            data = []
            if payload.strip() == "[DONE]":
                done = True
                break
            try:
                event = json.loads(payload)
            except ValueError as exc:
                raise EngineError(
                    f"the engine sent malformed JSON in its stream: {payload[:80]!r}", PROTOCOL
                ) from exc
            if not isinstance(event, dict):
                raise EngineError("the engine sent a stream event that is not an object", PROTOCOL)
            yield event
    if data:
        raise EngineError("the engine's stream was cut in the middle of an event", PROTOCOL)
    if not done:
        raise EngineError("the engine's stream ended before its answer did", PROTOCOL)


def split_heal(prefix: str) -> tuple[str, str]:
    """Token healing without the tokenizer, for trailing whitespace only: (prompt, heal). As
    in-process, the whitespace at the prompt's end (a new line's indentation) is taken off; the
    engine writes it again with the tokens it would choose there (its tokenizer joins
    indentation to the next word), and tactful drops it from the suggestion. A trailing partial
    word is left as it is: the in-process backend constrains the first token to fit it, which an
    engine cannot be asked to do, and unconstrained the model mostly writes another word
    (measured by ``tactful bench engine``)."""
    base = prefix.rstrip(" \t\n\r")
    if not base:
        return prefix, ""
    return base, prefix[len(base) :]


class _Cancel(Protocol):
    def is_set(self) -> bool: ...


class _Loop:
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

    def wait(self, fut: concurrent.futures.Future[T], cancel: _Cancel | None) -> bool:
        """Wait for ``fut``; True when it finished, False when ``cancel`` was set first (the
        future is then cancelled: its coroutine gets CancelledError and closes its stream)."""
        while True:
            done, _ = concurrent.futures.wait([fut], timeout=POLL_S)
            if done:
                return True
            if cancel is not None and cancel.is_set():
                fut.cancel()
                return False

    def run(self, coro: Coroutine[Any, Any, T], cancel: threading.Event | None = None) -> T:
        fut = self.submit(coro)
        if not self.wait(fut, cancel):
            raise InterruptedError("cancelled")
        return fut.result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


class EngineBackend:
    """One inference engine's model behind tactful's ``Backend`` interface (see the module's
    docstring). ``connect()`` must succeed before it serves."""

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        api_key_env: str | None = None,
        template: str = "auto",
        connect_timeout_s: float = 2.0,
        timeout_s: float = 10.0,
        max_concurrent: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.base = url.rstrip("/")
        parts = urlsplit(self.base)
        self.host = parts.netloc
        #: Things a person should know once (plain http to another host, no FIM, no scoring).
        self.notes: list[str] = []
        if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
            self.notes.append(
                f"the engine at {self.host} is reached over plain http: code and completions "
                "cross the network unencrypted; use https (or an SSH tunnel) off this machine"
            )
        env = os.environ if environ is None else environ
        self._key: str | None = None
        #: A problem of the settings, raised by ``connect`` (so that the fallback still serves).
        self._setup_error: EngineError | None = None
        if api_key_env:
            key = env.get(api_key_env, "")
            if not key.strip():
                self._setup_error = EngineError(
                    f"engine.apiKeyEnv names the environment variable {api_key_env}, which is "
                    "not set (or empty) in the language server's environment",
                    AUTH,
                )
            else:
                self._key = key.strip()
        self.requested_model = model
        self.template_setting = template
        self.timeout_s = timeout_s
        self.max_concurrent = max_concurrent
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self._loop = _Loop()

        async def make() -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
            client = httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
                limits=httpx.Limits(
                    max_connections=max_concurrent + 1,  # + the health probe
                    max_keepalive_connections=max_concurrent + 1,
                ),
                transport=transport,
                verify=True,
                follow_redirects=False,
            )
            return client, asyncio.Semaphore(max_concurrent)

        self._client, self._sem = self._loop.run(make())
        self.model = model or ""
        self.name = f"{self.model or '?'} @ {self.host}"
        self.fim_template: fim.FimTemplate | None = None
        self.fim = False
        #: None: not tried yet; False: the engine cannot score prompts (flags fall back).
        self.can_score: bool | None = None
        self._logprobs = True
        self.last_stream_closed = 0.0
        self.stats = {
            "requests": 0,
            "cancelled": 0,
            "failed": 0,
            "in_flight": 0,
            "max_in_flight": 0,
            "healed": 0,
            "heal_missed": 0,
        }

    # --- errors --------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "[key]") if self._key else text

    def _error(self, message: str, kind: str) -> EngineError:
        return EngineError(self._scrub(f"engine {self.host}: {message}"), kind)

    def _from_httpx(self, exc: Exception) -> EngineError:
        if isinstance(exc, EngineError):
            return EngineError(self._scrub(str(exc)), exc.kind)
        if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
            return self._error(f"cannot connect ({type(exc).__name__}: {exc})", UNREACHABLE)
        if isinstance(exc, httpx.TimeoutException | asyncio.TimeoutError | TimeoutError):
            return self._error(f"no answer within {self.timeout_s:g} s", TIMEOUT)
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            return self._error(f"the connection broke mid-answer ({exc})", PROTOCOL)
        if isinstance(exc, httpx.HTTPError):
            return self._error(f"{type(exc).__name__}: {exc}", PROTOCOL)
        return self._error(f"{type(exc).__name__}: {exc}", PROTOCOL)

    def _status_error(self, resp: httpx.Response, what: str) -> EngineError:
        try:
            body: Any = resp.json()
        except ValueError:
            body = resp.text
        msg = body
        if isinstance(body, Mapping):
            err = body.get("error", body.get("message", body.get("detail", body)))
            msg = err.get("message", err) if isinstance(err, Mapping) else err
        detail = " ".join(str(msg).split())[:_ERROR_CHARS]
        code = resp.status_code
        if code in (401, 403):
            hint = (
                "the engine refused the API key"
                if self._key
                else "the engine wants an API key: set engine.apiKeyEnv to the name of an "
                "environment variable that holds it"
            )
            return self._error(f"{hint} (HTTP {code})", AUTH)
        low = detail.lower()
        if (
            (code == 404 or code == 400)
            and "model" in low
            and ("not" in low or "does not exist" in low)
        ):
            return self._error(
                f"model {self.model!r} is not served there (HTTP {code}: {detail})", MODEL
            )
        if code >= 500:
            return self._error(f"{what} failed with HTTP {code}: {detail}", SERVER)
        return self._error(f"{what} was refused with HTTP {code}: {detail}", REQUEST)

    # --- connecting ----------------------------------------------------------------------------
    def connect(self) -> None:
        """Ask for the served models; pick the model and its prompt template. Raises EngineError
        with a message for a person."""
        if self._setup_error is not None:
            raise self._setup_error
        models = self._loop.run(self._models())
        if not models:
            raise self._error("the engine serves no model (/v1/models is empty)", MODEL)
        if self.requested_model and self.requested_model not in models:
            raise self._error(
                f"model {self.requested_model!r} is not served there; it serves: "
                + ", ".join(repr(m) for m in models[:8]),
                MODEL,
            )
        self.model = self.requested_model or models[0]
        self.name = f"{self.model} @ {self.host}"
        if self.template_setting == "auto":
            tpl = fim.template_for_model(self.model)
        else:
            tpl = fim.FAMILIES.get(self.template_setting)
        if tpl is not None:
            known = self._loop.run(self._single_tokens(tpl))
            if known is False:
                self.notes.append(
                    f"{self.model} does not know the {tpl.family} fill-in-the-middle tokens: "
                    "completions use the text before the cursor only (set engine.template)"
                )
                tpl = None
        self.fim_template = tpl
        self.fim = tpl is not None

    async def _models(self) -> list[str]:
        try:
            resp = await self._client.get(self.base + "/models")
        except Exception as exc:
            raise self._from_httpx(exc) from exc
        if resp.status_code != 200:
            raise self._status_error(resp, "listing the models")
        try:
            data = resp.json()["data"]
            return [str(m["id"]) for m in data if isinstance(m, Mapping) and "id" in m]
        except (ValueError, KeyError, TypeError) as exc:
            raise self._error(
                "/v1/models did not answer in the OpenAI form; is this the /v1 URL of an "
                "OpenAI-compatible engine?",
                PROTOCOL,
            ) from exc

    async def _single_tokens(self, tpl: fim.FimTemplate) -> bool | None:
        """Whether the model's tokenizer has the template's FIM tokens (each one token), asked
        through the engine's tokenize endpoint (vLLM and SGLang, else llama.cpp's form). None:
        the engine cannot tell."""
        root = engine_root(self.base)
        probes = [t.strip() for t in tpl.tokens() if t.strip()]
        for url, key in ((root + "/tokenize", "prompt"), (root + "/tokenize", "content")):
            counts: list[int] = []
            for tok in probes:
                try:
                    resp = await self._client.post(
                        url, json={"model": self.model, key: tok, "add_special_tokens": False}
                    )
                except httpx.HTTPError:
                    return None
                if resp.status_code != 200:
                    break
                try:
                    counts.append(len(resp.json()["tokens"]))
                except (ValueError, KeyError, TypeError):
                    break
            # A form the engine does not read tokenizes nothing (llama.cpp ignores "prompt").
            if len(counts) == len(probes) and all(counts):
                return all(c == 1 for c in counts)
        return None

    def health(self) -> bool:
        """True when the engine answers /v1/models and still serves the model."""
        try:
            return self.model in self._loop.run(asyncio.wait_for(self._models(), self.timeout_s))
        except Exception:
            return False

    def probe_async(self, done: Callable[[bool], None]) -> None:
        """Run ``health`` on the engine's loop and call ``done(ok)`` there (never blocks)."""

        async def go() -> None:
            try:
                ok = self.model in await asyncio.wait_for(self._models(), self.timeout_s)
            except Exception:
                ok = False
            done(ok)

        self._loop.submit(go())

    # --- completions ---------------------------------------------------------------------------
    def prompt(self, req: GenerateRequest) -> str:
        """The prompt as the in-process backend builds it, before token healing: the repository
        context (``req.preamble``), then FIM when a template and a suffix are there, else the
        prefix."""
        if req.use_fim and self.fim_template is not None and req.suffix:
            return req.preamble + self.fim_template.render(req.prefix, req.suffix)
        return req.preamble + req.prefix

    def healed_prompt(self, req: GenerateRequest) -> tuple[str, str]:
        """(prompt, heal): the prompt with its end healed as in-process (``split_heal``), and
        the text the engine has to write first (dropped from the suggestion)."""
        if req.use_fim and self.fim_template is not None and req.suffix:
            return self.prompt(req), ""
        base, heal = split_heal(req.prefix)
        return req.preamble + base, heal

    def _stop_strings(self, req: GenerateRequest) -> list[str]:
        out = [s for s in req.stop if s]
        if self.fim_template is not None:
            out += [s for s in self.fim_template.stop_tokens if s not in out]
        return out

    def generate(self, req: GenerateRequest) -> Generation:
        gen = Generation(text="")
        req.partial = gen
        if req.cancel.is_set():
            gen.cancelled = True
            return gen
        t0 = time.perf_counter()
        fut = self._loop.submit(self._generate(req, gen))
        if not self._loop.wait(fut, req.cancel):
            gen.cancelled = True
            self.stats["cancelled"] += 1
            gen.text = stops.cut(gen.text, req)
            gen.seconds = time.perf_counter() - t0
            return gen
        fut.result()  # raises EngineError
        gen.seconds = time.perf_counter() - t0
        return gen

    def generate_many(self, reqs: Sequence[GenerateRequest]) -> list[Generation]:
        """Several generations sent at once (the engine batches them), each with up to
        ``FLAG_TRIES`` attempts on transient faults (these are flags' regenerations)."""
        gens = [Generation(text="") for _ in reqs]
        for req, gen in zip(reqs, gens, strict=True):
            req.partial = gen

        def attempt(r: GenerateRequest, g: Generation) -> Callable[[], Coroutine[Any, Any, None]]:
            return lambda: self._generate(r, g)

        async def all_of() -> None:
            await asyncio.gather(
                *(self._retrying(attempt(r, g)) for r, g in zip(reqs, gens, strict=True))
            )

        cancel = _AnyEvent([r.cancel for r in reqs])
        fut = self._loop.submit(all_of())
        if not self._loop.wait(fut, cancel):
            for g in gens:
                g.cancelled = True
            return gens
        fut.result()
        return gens

    async def _retrying(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        for attempt in range(FLAG_TRIES):
            try:
                return await make()
            except EngineError as exc:
                if exc.kind not in _TRANSIENT or attempt == FLAG_TRIES - 1:
                    raise
                await asyncio.sleep(FLAG_BACKOFF_S * 2**attempt)
        raise AssertionError("unreachable")

    async def _generate(self, req: GenerateRequest, gen: Generation) -> None:
        gen.text, gen.tokens, gen.token_logprobs = "", [], []
        gen.prompt_tokens = 0
        try:
            await asyncio.wait_for(self._stream(req, gen), self.timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats["failed"] += 1
            raise self._from_httpx(exc) from exc

    async def _stream(self, req: GenerateRequest, gen: Generation) -> None:
        prompt, heal = self.healed_prompt(req)
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": req.max_new_tokens + (4 if heal else 0),
            "temperature": 0,
            "stream": True,
        }
        stop = self._stop_strings(req)
        if stop:
            body["stop"] = stop
        async with self._sem:
            if req.cancel.is_set():
                gen.cancelled = True
                return
            self.stats["requests"] += 1
            self.stats["in_flight"] += 1
            self.stats["max_in_flight"] = max(self.stats["max_in_flight"], self.stats["in_flight"])
            try:
                try:
                    await self._send(body, req, gen, heal)
                    if heal:
                        self.stats["healed"] += 1
                except _HealMissed:
                    # The model would not write the healed-away text again: ask once more
                    # with the prompt as it is (what an engine without healing would do).
                    self.stats["heal_missed"] += 1
                    self.stats["requests"] += 1
                    gen.text, gen.tokens, gen.token_logprobs = "", [], []
                    body.update(prompt=self.prompt(req), max_tokens=req.max_new_tokens)
                    await self._send(body, req, gen, "")
            finally:
                self.stats["in_flight"] -= 1

    async def _send(
        self, body: dict[str, Any], req: GenerateRequest, gen: Generation, heal: str
    ) -> None:
        if self._logprobs:
            body["logprobs"] = 1
            try:
                await self._read_stream(body, req, gen, heal)
                return
            except EngineError as exc:
                if exc.kind != REQUEST or "logprob" not in str(exc).lower():
                    raise
            # This engine refuses logprobs on completions: go on without them (the cascade's
            # stage 2 then lacks the log-probability features).
            self._logprobs = False
            self.notes.append(f"{self.host} gives no token log-probabilities for completions")
            gen.text, gen.tokens, gen.token_logprobs = "", [], []
        body.pop("logprobs", None)
        await self._read_stream(body, req, gen, heal)

    async def _read_stream(
        self, body: dict[str, Any], req: GenerateRequest, gen: Generation, heal: str = ""
    ) -> None:
        try:
            await self._read_events(body, req, gen, heal)
        finally:
            #: When the last completion stream was closed (perf_counter), for the benchmark.
            self.last_stream_closed = time.perf_counter()

    async def _read_events(
        self, body: dict[str, Any], req: GenerateRequest, gen: Generation, heal: str
    ) -> None:
        raw = ""
        healed = not heal
        async with self._client.stream("POST", self.base + "/completions", json=body) as resp:
            if resp.status_code != 200:
                await resp.aread()
                raise self._status_error(resp, "the completion request")
            async for event in sse_events(resp.aiter_lines()):
                chunk = parse_chunk(event)
                raw += chunk.text
                gen.tokens.extend(chunk.tokens or ([chunk.text] if chunk.text else []))
                gen.token_logprobs.extend(chunk.logprobs)
                if not healed:
                    if raw.startswith(heal):
                        healed = True
                    elif heal.startswith(raw) and chunk.finish is None:
                        continue
                    else:
                        raise _HealMissed()  # leaving the block closes the stream
                text = raw[len(heal) :]
                gen.text = text
                req.publish(gen)  # the completion deadline may show the words written so far
                if text and stops.should_stop(text, req):
                    gen.stopped = True  # leaving the block closes the stream: the engine aborts
                    break
                if chunk.finish is not None:
                    gen.stopped = chunk.finish == "stop"
                    break
        if not healed:
            raise _HealMissed()
        gen.text = stops.cut(raw[len(heal) :], req)

    # --- scoring (flags) -----------------------------------------------------------------------
    async def _echo(self, text: str) -> dict[str, Any]:
        body = {
            "model": self.model,
            "prompt": text,
            "max_tokens": 1,
            "temperature": 0,
            "echo": True,
            "logprobs": SCORE_TOP,
        }
        async with self._sem:
            self.stats["requests"] += 1
            try:
                resp = await asyncio.wait_for(
                    self._client.post(self.base + "/completions", json=body), self.timeout_s
                )
            except Exception as exc:
                raise self._from_httpx(exc) from exc
        if resp.status_code != 200:
            err = self._status_error(resp, "the scoring request")
            if err.kind == REQUEST:
                raise EngineError(str(err), UNSUPPORTED)
            raise err
        try:
            data = resp.json()
        except ValueError as exc:
            raise self._error("the scoring answer is not JSON", PROTOCOL) from exc
        if not isinstance(data, dict):
            raise self._error("the scoring answer is not a JSON object", PROTOCOL)
        return data

    def score_into_slot(
        self, text: str, cache_key: str, cancel: threading.Event | None = None
    ) -> LineScores:
        """Teacher-forced scores of ``text`` from the engine's prompt log-probabilities. The
        engine keeps no slot for tactful; its own prefix cache (vLLM, SGLang) makes the
        regenerations of the text's lines cheap."""
        if self.can_score is False:
            raise self._error("cannot score prompts", UNSUPPORTED)
        try:
            data = self._loop.run(self._retrying(lambda: self._echo(text)), cancel)
            scores = echo_scores(text, data)
        except EngineError as exc:
            if exc.kind == UNSUPPORTED:
                self.can_score = False
                raise EngineError(
                    self._scrub(
                        f"engine {self.host} cannot score prompts (echo with logprobs): {exc}"
                    ),
                    UNSUPPORTED,
                ) from exc
            raise
        self.can_score = True
        return scores

    def score(self, text: str, cancel: threading.Event | None = None) -> LineScores:
        return self.score_into_slot(text, "", cancel)

    def log_prob(self, prefix: str, continuation: str, suffix: str = "") -> float:
        if suffix and self.fim_template is not None:
            prefix = self.fim_template.render(prefix, suffix)
        text = prefix + continuation
        data = self._loop.run(self._retrying(lambda: self._echo(text)))
        try:
            lp = data["choices"][0]["logprobs"]
            total = 0.0
            pos = 0
            for tok, val in zip(lp["tokens"], lp["token_logprobs"], strict=False):
                if pos >= len(prefix) and pos < len(text) and isinstance(val, int | float):
                    total += float(val)
                pos += len(tok)
        except (KeyError, IndexError, TypeError) as exc:
            raise self._error("cannot score prompts", UNSUPPORTED) from exc
        return total if math.isfinite(total) else -1e9

    def count_tokens(self, text: str) -> int:
        async def ask() -> int:
            root = engine_root(self.base)
            for key in ("prompt", "content"):
                try:
                    resp = await self._client.post(
                        root + "/tokenize",
                        json={"model": self.model, key: text, "add_special_tokens": False},
                    )
                except Exception as exc:
                    raise self._from_httpx(exc) from exc
                if resp.status_code == 200:
                    try:
                        return len(resp.json()["tokens"])
                    except (ValueError, KeyError, TypeError):
                        break
            raise self._error("the engine has no tokenize endpoint", UNSUPPORTED)

        return self._loop.run(ask())

    def drop_cache(self, cache_key: str) -> None:
        """Nothing to drop: the engine manages its own prefix cache."""

    def close(self) -> None:
        async def shut() -> None:
            await self._client.aclose()
            await asyncio.get_running_loop().shutdown_asyncgens()

        try:
            self._loop.run(shut())
        finally:
            self._loop.close()


class _HealMissed(Exception):
    """The engine's answer to a healed prompt does not start with the healed-away text."""


class _AnyEvent:
    """Set when any of several events is set (a batch of regenerations gives way together)."""

    def __init__(self, events: Sequence[threading.Event]) -> None:
        self.events = list(events)

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


class Breaker:
    """Closed: the engine serves. Open: it does not, until a health probe succeeds; probes are
    spaced ``cooldown`` seconds, doubling up to ``max_cooldown`` while they fail. Unreachable,
    timed-out, refused (401) and wrong-model answers open it at once, other failures after
    ``threshold`` in a row."""

    def __init__(
        self,
        *,
        threshold: int = 3,
        cooldown: float = 1.0,
        max_cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.clock = clock
        self.open = False
        self.failures = 0
        self.cooldown = cooldown
        self.next_probe = 0.0
        self.probing = False
        self._lock = threading.Lock()

    def failure(self, kind: str) -> bool:
        """Count a failure; True when it opened the breaker."""
        with self._lock:
            self.failures += 1
            if not self.open and (kind in _OPEN_AT_ONCE or self.failures >= self.threshold):
                self.open = True
                self.cooldown = self.base_cooldown
                self.next_probe = self.clock() + self.cooldown
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self.failures = 0

    def probe_due(self) -> bool:
        """True (once) when it is open and a probe should run now."""
        with self._lock:
            if not self.open or self.probing or self.clock() < self.next_probe:
                return False
            self.probing = True
            return True

    def probed(self, ok: bool) -> bool:
        """Record a probe's result; True when it closed the breaker."""
        with self._lock:
            self.probing = False
            if ok:
                self.open, self.failures, self.cooldown = False, 0, self.base_cooldown
                return True
            self.cooldown = min(self.max_cooldown, self.cooldown * 2)
            self.next_probe = self.clock() + self.cooldown
            return False


class RoutingBackend:
    """The engine behind a circuit breaker, with a fallback: the embedded model (``fallback``)
    or nothing (None: completions are empty and flags are off while the engine is away).

    Each distinct problem is told once through ``notify`` (the server shows it and logs it),
    not once per keystroke; recovery is told once too."""

    def __init__(
        self,
        engine: EngineBackend,
        fallback: Backend | None,
        *,
        notify: Callable[[str], None] | None = None,
        breaker: Breaker | None = None,
        connected: bool = True,
    ) -> None:
        self.engine = engine
        self.fallback = fallback
        self.breaker = breaker or Breaker()
        self._notify = notify or (lambda m: log.warning("%s", m))
        self._told: set[str] = set()
        self._told_kinds: set[str] = set()
        self._notes_told = 0
        self.last_error = ""
        #: Which backend holds each document's scored slot (flags regenerate where they scored).
        self._slot_owner: dict[str, Any] = {}
        self._connected = connected
        self._flags_told = False
        self.tell_notes()

    # --- what serves -----------------------------------------------------------------------------
    @property
    def serving(self) -> str:
        """``engine``, ``fallback`` or ``none``."""
        if not self.breaker.open and self._connected:
            return "engine"
        return "fallback" if self.fallback is not None else "none"

    @property
    def name(self) -> str:
        if self.serving == "fallback" and self.fallback is not None:
            return self.fallback.name
        return self.engine.name

    @property
    def fim(self) -> bool:
        if self.serving == "fallback" and self.fallback is not None:
            return self.fallback.fim
        return self.engine.fim

    @property
    def stats(self) -> dict[str, Any]:
        """The engine's request counters, and the fallback's own where it has served."""
        out: dict[str, Any] = {f"engine_{k}": v for k, v in self.engine.stats.items()}
        out.update(getattr(self.fallback, "stats", {}) or {})
        return out

    def engine_status(self) -> dict[str, Any]:
        """What serves, for the status item, ``:TactfulStatus`` and ``tactful model info``."""
        return {
            "url": self.engine.base,
            "model": self.engine.model,
            "healthy": self.serving == "engine",
            "serving": self.serving,
            "fallback": getattr(self.fallback, "name", None),
            "template": self.engine.fim_template.family
            if self.engine.fim_template
            else "prefix-only",
            "canScore": self.engine.can_score,
            "error": self.last_error,
        }

    def tell(self, message: str) -> None:
        if message not in self._told:
            self._told.add(message)
            self._notify(message)

    def tell_notes(self) -> None:
        for note in self.engine.notes[self._notes_told :]:
            self.tell(note)
        self._notes_told = len(self.engine.notes)

    def _failed(self, exc: EngineError, *, open_now: bool = False) -> None:
        self.last_error = str(exc)
        if exc.kind == REQUEST and not open_now:
            # This request was refused (too long a prompt for the engine's context, say), not
            # the engine broken: the fallback answers it, and the breaker does not count it.
            if REQUEST not in self._told_kinds:
                self._told_kinds.add(REQUEST)
                self.tell(f"{exc} — answered by the fallback; said once")
            return
        opened = self.breaker.failure(UNREACHABLE if open_now else exc.kind)
        if opened:
            then = {
                "fallback": "serving from the embedded model until it answers again",
                "none": "no suggestions until it answers again",
            }["fallback" if self.fallback is not None else "none"]
            self.tell(f"{exc} — {then}")
        else:
            log.warning("%s", exc)

    def _engine_ok(self) -> bool:
        """Whether to ask the engine now; starts a background probe when one is due."""
        if self.breaker.probe_due():

            def done(ok: bool) -> None:
                if not self._connected and ok:
                    try:
                        self.engine.connect()
                        self._connected = True
                    except EngineError as exc:
                        self.last_error = str(exc)
                        ok = False
                if self.breaker.probed(ok and self._connected):
                    self._told.clear()
                    self.last_error = ""
                    self._notify(
                        f"engine {self.engine.host} answers again; serving {self.engine.model} from it"
                    )

            if self._connected:
                self.engine.probe_async(done)
            else:
                threading.Thread(target=lambda: done(True), daemon=True).start()
        return self.serving == "engine"

    # --- Backend ---------------------------------------------------------------------------------
    def generate(self, req: GenerateRequest) -> Generation:
        if req.keep_slot and req.cache_key is not None:
            owner = self._slot_owner.get(req.cache_key)
            if owner is not None and owner is not self.engine:
                return owner.generate(req)
        if self._engine_ok():
            try:
                gen = self.engine.generate(req)
            except EngineError as exc:
                self._failed(exc)
            else:
                self.breaker.success()
                self.tell_notes()
                return gen
            if req.cancel.is_set():
                return Generation(text="", cancelled=True)
        if self.fallback is not None:
            return self.fallback.generate(req)
        gen = Generation(text="", stopped=True)
        req.partial = gen
        return gen

    def generate_many(self, reqs: Sequence[GenerateRequest]) -> list[Generation]:
        key = reqs[0].cache_key if reqs else None
        owner = self._slot_owner.get(key) if key is not None else None
        target: Any = self.fallback
        if owner is not None and owner is not self.engine:
            target = owner  # scored by the fallback: its slot holds the text
        elif self._engine_ok():
            try:
                return self.engine.generate_many(reqs)
            except EngineError as exc:
                self._failed(exc)
        if target is None:
            raise ModelError("flags are off while the engine is away")
        many = getattr(target, "generate_many", None)
        return many(reqs) if many is not None else [target.generate(r) for r in reqs]

    def _scorer(self) -> Any:
        if self.engine.can_score is not False and self._engine_ok():
            return self.engine
        if self.engine.can_score is False and not self._flags_told:
            self._flags_told = True
            self.tell(
                f"engine {self.engine.host} cannot score prompts: flags "
                + ("use the embedded model" if self.fallback is not None else "are off")
            )
        if self.fallback is None:
            raise ModelError(
                "flags are off: the engine cannot score prompts or is away, and engine.onUnreachable is 'none'"
            )
        return self.fallback

    def score_into_slot(
        self, text: str, cache_key: str, cancel: threading.Event | None = None
    ) -> LineScores:
        target = self._scorer()
        if target is self.engine:
            try:
                scores = self.engine.score_into_slot(text, cache_key, cancel)
                self._slot_owner[cache_key] = self.engine
                return scores
            except EngineError as exc:
                if exc.kind != UNSUPPORTED:
                    self._failed(exc)
                target = self._scorer()
        scores = target.score_into_slot(text, cache_key, cancel)
        self._slot_owner[cache_key] = target
        return scores

    def score(self, text: str, cancel: threading.Event | None = None) -> LineScores:
        target = self._scorer()
        if target is self.engine:
            try:
                return self.engine.score(text, cancel)
            except EngineError as exc:
                if exc.kind != UNSUPPORTED:
                    self._failed(exc)
                target = self._scorer()
        return target.score(text, cancel)

    def count_tokens(self, text: str) -> int:
        if self.fallback is not None:
            return self.fallback.count_tokens(text)
        return self.engine.count_tokens(text)

    def log_prob(self, prefix: str, continuation: str, suffix: str = "") -> float:
        target = self._scorer()
        if target is self.engine:
            try:
                return self.engine.log_prob(prefix, continuation, suffix)
            except EngineError as exc:
                self._failed(exc)
                target = self._scorer()
        return target.log_prob(prefix, continuation, suffix)

    def drop_cache(self, cache_key: str) -> None:
        self._slot_owner.pop(cache_key, None)
        if self.fallback is not None:
            self.fallback.drop_cache(cache_key)

    def close(self) -> None:
        self.engine.close()


def load_routing(
    settings: Any,
    load_fallback: Callable[[], Backend],
    *,
    notify: Callable[[str], None] | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> RoutingBackend:
    """The backend the server serves from when ``engine.url`` is set: the engine, and the
    embedded model loaded up front as its fallback (``engine.onUnreachable: fallback``), so
    that the server answers at once when the engine goes away."""
    report = progress or (lambda _m, _p: None)
    fallback = load_fallback() if settings.on_unreachable == "fallback" else None
    report(f"Connecting to the engine at {urlsplit(settings.url).netloc}", 95)
    routing = open_engine(settings, fallback, notify=notify)
    report(f"{routing.name} ready", 100)
    return routing


def open_engine(
    settings: Any,
    fallback: Backend | None,
    *,
    notify: Callable[[str], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    environ: Mapping[str, str] | None = None,
) -> RoutingBackend:
    """The routing backend for an ``EngineSettings``. A missing API key variable raises
    EngineError (nothing can work until the setting is fixed); an engine that is down or serves
    another model at start does not: the fallback serves and the breaker probes until it answers."""
    engine = EngineBackend(
        settings.url,
        model=settings.model,
        api_key_env=settings.api_key_env,
        template=settings.template,
        connect_timeout_s=settings.connect_timeout_ms / 1000,
        timeout_s=settings.timeout_ms / 1000,
        max_concurrent=settings.max_concurrent,
        transport=transport,
        environ=environ,
    )
    fb = fallback if settings.on_unreachable == "fallback" else None
    try:
        engine.connect()
    except EngineError as exc:
        routing = RoutingBackend(engine, fb, notify=notify, connected=False)
        routing._failed(exc, open_now=True)
        return routing
    return RoutingBackend(engine, fb, notify=notify)
