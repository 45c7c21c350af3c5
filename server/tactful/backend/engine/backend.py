"""``EngineBackend``: one inference engine's model behind tactful's ``Backend`` interface.

It connects (which model, which FIM template the model's tokenizer really has), then serves
completions (``completions.py``, streamed) and flags (the scoring pass from the prompt's
log-probabilities, ``scoring.py``; the regenerations sent concurrently so that the engine
batches them, each retried on transient faults). Callers on tactful's threads block here while
the requests run on the engine's event loop (``loop.py``); a set cancel event closes the
stream.

Owns the settings-side checks (the API key's variable, plain http to another host: said once
through ``notes``). Must not fall back or keep a breaker: a failure is raised as
``EngineError``, and ``routing.py`` decides what serves instead.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from tactful.backend import fim
from tactful.backend.engine.client import (
    TOKENIZE_FORMS,
    EngineClient,
    is_loopback,
    retrying,
)
from tactful.backend.engine.completions import Completions
from tactful.backend.engine.errors import (
    AUTH,
    MODEL,
    REQUEST,
    TIMEOUT,
    UNSUPPORTED,
    EngineError,
)
from tactful.backend.engine.loop import AnyEvent
from tactful.backend.engine.scoring import continuation_logprob, echo_request, echo_scores
from tactful.backend.stops import cut
from tactful.backend.types import GenerateRequest, Generation, LineScores


def read_api_key(
    env_name: str | None, environ: Mapping[str, str]
) -> tuple[str | None, EngineError | None]:
    """(key, problem): the API key from the environment variable ``engine.apiKeyEnv`` names,
    or the problem with the setting (raised at connect, so that the fallback still serves)."""
    if not env_name:
        return None, None
    key = environ.get(env_name, "").strip()
    if key:
        return key, None
    return None, EngineError(
        f"engine.apiKeyEnv names the environment variable {env_name}, which is "
        "not set (or empty) in the language server's environment",
        AUTH,
    )


def transport_notes(base: str) -> list[str]:
    """What a person should know about the URL itself: plain http to another host."""
    parts = urlsplit(base)
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        return [
            f"the engine at {parts.netloc} is reached over plain http: code and completions "
            "cross the network unencrypted; use https (or an SSH tunnel) off this machine"
        ]
    return []


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
        self.host = urlsplit(self.base).netloc
        #: Things a person should know once (plain http to another host, no FIM, no scoring).
        self.notes: list[str] = transport_notes(self.base)
        key, self._setup_error = read_api_key(
            api_key_env, os.environ if environ is None else environ
        )
        self.requested_model = model
        self.template_setting = template
        self.timeout_s = timeout_s
        self.max_concurrent = max_concurrent
        self.client = EngineClient(
            self.base,
            key=key,
            connect_timeout_s=connect_timeout_s,
            timeout_s=timeout_s,
            max_concurrent=max_concurrent,
            transport=transport,
        )
        self.client.model = model or ""
        self.stats = self.client.stats
        self.completions = Completions(self.client, self.notes)
        self.name = f"{self.model or '?'} @ {self.host}"
        self.fim_template: fim.FimTemplate | None = None
        self.fim = False
        #: None: not tried yet; False: the engine cannot score prompts (flags fall back).
        self.can_score: bool | None = None

    @property
    def model(self) -> str:
        """The served model the requests name ("" before ``connect`` without a setting)."""
        return self.client.model

    @property
    def last_stream_closed(self) -> float:
        """When the last completion stream was closed (perf_counter), for the benchmark."""
        return self.completions.last_stream_closed

    # --- connecting ----------------------------------------------------------------------------
    def connect(self) -> None:
        """Ask for the served models; pick the model and its prompt template. Raises EngineError
        with a message for a person."""
        if self._setup_error is not None:
            raise self._setup_error
        models = self.client.loop.run(self.client.models())
        if not models:
            raise self.client.error("the engine serves no model (/v1/models is empty)", MODEL)
        if self.requested_model and self.requested_model not in models:
            raise self.client.error(
                f"model {self.requested_model!r} is not served there; it serves: "
                + ", ".join(repr(m) for m in models[:8]),
                MODEL,
            )
        self.client.model = self.requested_model or models[0]
        self.name = f"{self.model} @ {self.host}"
        self.fim_template = self._template()
        self.fim = self.fim_template is not None

    def _template(self) -> fim.FimTemplate | None:
        """The FIM template the setting names (or the model's name implies); None, with a note,
        when the model's tokenizer lacks its tokens."""
        if self.template_setting == "auto":
            tpl = fim.template_for_model(self.model)
        else:
            tpl = fim.FAMILIES.get(self.template_setting)
        if tpl is not None and self.client.loop.run(self._single_tokens(tpl)) is False:
            self.notes.append(
                f"{self.model} does not know the {tpl.family} fill-in-the-middle tokens: "
                "completions use the text before the cursor only (set engine.template)"
            )
            return None
        return tpl

    async def _single_tokens(self, tpl: fim.FimTemplate) -> bool | None:
        """Whether the model's tokenizer has the template's FIM tokens (each one token), asked
        through the engine's tokenize endpoint (vLLM and SGLang, else llama.cpp's form). None:
        the engine cannot tell."""
        probes = [t.strip() for t in tpl.tokens() if t.strip()]
        for form in TOKENIZE_FORMS:
            counts: list[int] = []
            for tok in probes:
                try:
                    n = await self.client.token_count(tok, form)
                except httpx.HTTPError:
                    return None
                if n is None:
                    break
                counts.append(n)
            # A form the engine does not read tokenizes nothing (llama.cpp ignores "prompt").
            if len(counts) == len(probes) and all(counts):
                return all(c == 1 for c in counts)
        return None

    def health(self) -> bool:
        """True when the engine answers /v1/models and still serves the model."""
        try:
            return self.client.loop.run(self._serves_model())
        except Exception:
            return False

    def probe_async(self, done: Callable[[bool], None]) -> None:
        """Run ``health`` on the engine's loop and call ``done(ok)`` there (never blocks)."""

        async def go() -> None:
            try:
                ok = await self._serves_model()
            except Exception:
                ok = False
            done(ok)

        self.client.loop.submit(go())

    def silence(self) -> EngineError | None:
        """A timeout when the engine has owed an answer for longer than ``timeout_s`` with no
        sign of life, though its requests ended before their own timeouts (cancelled by the
        next keystroke); else None."""
        silent = self.client.liveness.silent_s()
        if silent < self.timeout_s:
            return None
        return self.client.error(
            f"no answer within {self.timeout_s:g} s (to requests that were then cancelled, one "
            "after the other)",
            TIMEOUT,
        )

    async def _serves_model(self) -> bool:
        return self.model in await asyncio.wait_for(self.client.models(), self.timeout_s)

    # --- completions ---------------------------------------------------------------------------
    def generate(self, req: GenerateRequest) -> Generation:
        gen = Generation(text="")
        req.partial = gen
        if req.cancel.is_set():
            gen.cancelled = True
            return gen
        t0 = time.perf_counter()
        fut = self.client.loop.submit(self.completions.run(req, gen, self.fim_template))
        if not self.client.loop.wait(fut, req.cancel):
            gen.cancelled = True
            self.stats["cancelled"] += 1
            gen.text = cut(gen.text, req)
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
        tpl = self.fim_template

        async def one(r: GenerateRequest, g: Generation) -> None:
            await retrying(lambda: self.completions.run(r, g, tpl))

        async def all_of() -> None:
            await asyncio.gather(*(one(r, g) for r, g in zip(reqs, gens, strict=True)))

        fut = self.client.loop.submit(all_of())
        if not self.client.loop.wait(fut, AnyEvent([r.cancel for r in reqs])):
            for g in gens:
                g.cancelled = True
            return gens
        fut.result()
        return gens

    # --- scoring (flags) -----------------------------------------------------------------------
    async def _echo(self, text: str) -> dict[str, Any]:
        """The engine's answer to the scoring request for ``text``; a refused request means the
        engine cannot score prompts (UNSUPPORTED)."""
        try:
            return await self.client.complete_json(echo_request(self.model, text), "scoring")
        except EngineError as exc:
            if exc.kind == REQUEST:
                raise EngineError(str(exc), UNSUPPORTED) from exc
            raise

    def score_into_slot(
        self, text: str, cache_key: str, cancel: threading.Event | None = None
    ) -> LineScores:
        """Teacher-forced scores of ``text`` from the engine's prompt log-probabilities. The
        engine keeps no slot for tactful; its own prefix cache (vLLM, SGLang) makes the
        regenerations of the text's lines cheap."""
        if self.can_score is False:
            raise self.client.error("cannot score prompts", UNSUPPORTED)
        try:
            data = self.client.loop.run(retrying(lambda: self._echo(text)), cancel)
            scores = echo_scores(text, data)
        except EngineError as exc:
            if exc.kind == UNSUPPORTED:
                self.can_score = False
                raise EngineError(
                    self.client.scrub(
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
        data = self.client.loop.run(retrying(lambda: self._echo(text)))
        total = continuation_logprob(data, len(prefix), len(text))
        if total is None:
            raise self.client.error("cannot score prompts", UNSUPPORTED)
        return total

    def count_tokens(self, text: str) -> int:
        """The text's length in the model's tokens, from the engine's tokenize endpoint."""
        if not text:
            return 0

        async def ask() -> int:
            for form in TOKENIZE_FORMS:
                try:
                    n = await self.client.token_count(text, form)
                except Exception as exc:
                    raise self.client.from_exception(exc) from exc
                if n:  # a form the engine does not read tokenizes nothing
                    return n
            raise self.client.error("the engine has no tokenize endpoint", UNSUPPORTED)

        return self.client.loop.run(ask())

    def drop_cache(self, cache_key: str) -> None:
        """Nothing to drop: the engine manages its own prefix cache."""

    def close(self) -> None:
        self.client.close()
