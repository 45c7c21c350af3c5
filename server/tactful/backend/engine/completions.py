"""Completions through an engine: the prompt the in-process path would build (the same FIM
template code, ``fim.py``; the trailing whitespace healed away as in-process), sent raw to
``/v1/completions`` and streamed into a ``Generation`` that grows as tokens arrive, so that the
completion deadline, type-along and the cascade work unchanged. The stop rules are the
in-process ones (``stops.py``), applied to the text so far; when one fires, or the request is
cancelled, the stream is closed, which makes vLLM and SGLang abort the request.

Runs on the engine's event loop (``loop.py``). Must not wait on threads or decide what happens
when the engine fails: errors go up as ``EngineError`` to the backend and its router.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from tactful.backend import fim, stops
from tactful.backend.engine.client import EngineClient
from tactful.backend.engine.dialects import parse_chunk
from tactful.backend.engine.errors import REQUEST, EngineError
from tactful.backend.types import GenerateRequest, Generation


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


def build_prompt(req: GenerateRequest, tpl: fim.FimTemplate | None) -> str:
    """The prompt as the in-process backend builds it, before token healing: the repository
    context (``req.preamble``), then FIM when a template and a suffix are there, else the
    prefix."""
    if req.use_fim and tpl is not None and req.suffix:
        return req.preamble + tpl.render(req.prefix, req.suffix)
    return req.preamble + req.prefix


def healed_prompt(req: GenerateRequest, tpl: fim.FimTemplate | None) -> tuple[str, str]:
    """(prompt, heal): the prompt with its end healed as in-process (``split_heal``), and the
    text the engine has to write first (dropped from the suggestion)."""
    if req.use_fim and tpl is not None and req.suffix:
        return build_prompt(req, tpl), ""
    base, heal = split_heal(req.prefix)
    return req.preamble + base, heal


def stop_strings(req: GenerateRequest, tpl: fim.FimTemplate | None) -> list[str]:
    """The request's stop strings, then the template's own (its end-of-middle tokens)."""
    out = [s for s in req.stop if s]
    if tpl is not None:
        out += [s for s in tpl.stop_tokens if s not in out]
    return out


def completion_request(
    model: str, req: GenerateRequest, tpl: fim.FimTemplate | None
) -> tuple[dict[str, Any], str]:
    """(body, heal): the streamed, greedy ``/v1/completions`` request for ``req`` (with room
    for the healed-away text) and that text."""
    prompt, heal = healed_prompt(req, tpl)
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "max_tokens": req.max_new_tokens + (4 if heal else 0),
        "temperature": 0,
        "stream": True,
    }
    stop = stop_strings(req, tpl)
    if stop:
        body["stop"] = stop
    return body, heal


class HealMissed(Exception):
    """The engine's answer to a healed prompt does not start with the healed-away text."""


async def read_completion(
    events: AsyncIterator[dict[str, Any]], req: GenerateRequest, gen: Generation, heal: str
) -> None:
    """Read a completion's stream events into ``gen``, publishing the text so far on ``req``,
    until a stop rule fires or the engine finishes (the caller then closes the stream). The
    text starts after ``heal``; HealMissed when the engine did not write it first."""
    raw = ""
    healed = not heal
    async for event in events:
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
                raise HealMissed()  # the caller's leaving its block closes the stream
        text = raw[len(heal) :]
        gen.text = text
        req.publish(gen)  # the completion deadline may show the words written so far
        if text and stops.should_stop(text, req):
            gen.stopped = True  # the caller closes the stream: the engine aborts
            break
        if chunk.finish is not None:
            gen.stopped = chunk.finish == "stop"
            break
    if not healed:
        raise HealMissed()
    gen.text = stops.cut(raw[len(heal) :], req)


def _reset(gen: Generation) -> None:
    gen.text, gen.tokens, gen.token_logprobs = "", [], []


class Completions:
    """One engine's completion requests: the cap on requests in flight, the counters, and what
    was learnt about the engine on the way (whether it gives token log-probabilities; a note
    for a person when it does not)."""

    def __init__(self, client: EngineClient, notes: list[str]) -> None:
        self.client = client
        self.notes = notes
        self.logprobs = True
        #: When the last completion stream was closed (perf_counter), for the benchmark.
        self.last_stream_closed = 0.0

    async def run(self, req: GenerateRequest, gen: Generation, tpl: fim.FimTemplate | None) -> None:
        """Stream ``req``'s completion into ``gen`` within the engine timeout; EngineError on
        any failure."""
        _reset(gen)
        gen.prompt_tokens = 0
        try:
            await asyncio.wait_for(self._stream(req, gen, tpl), self.client.timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.client.stats["failed"] += 1
            raise self.client.from_exception(exc) from exc

    async def _stream(
        self, req: GenerateRequest, gen: Generation, tpl: fim.FimTemplate | None
    ) -> None:
        """The request under the cap on requests in flight, counted."""
        body, heal = completion_request(self.client.model, req, tpl)
        stats = self.client.stats
        async with self.client.sem:
            if req.cancel.is_set():
                gen.cancelled = True
                return
            stats["requests"] += 1
            stats["in_flight"] += 1
            stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
            try:
                await self._healed(body, req, gen, heal, tpl)
            finally:
                stats["in_flight"] -= 1

    async def _healed(
        self,
        body: dict[str, Any],
        req: GenerateRequest,
        gen: Generation,
        heal: str,
        tpl: fim.FimTemplate | None,
    ) -> None:
        """Send the healed prompt; where the model would not write the healed-away text again,
        ask once more with the prompt as it is (what an engine without healing would do)."""
        stats = self.client.stats
        try:
            await self._send(body, req, gen, heal)
            if heal:
                stats["healed"] += 1
        except HealMissed:
            stats["heal_missed"] += 1
            stats["requests"] += 1
            _reset(gen)
            body.update(prompt=build_prompt(req, tpl), max_tokens=req.max_new_tokens)
            await self._send(body, req, gen, "")

    async def _send(
        self, body: dict[str, Any], req: GenerateRequest, gen: Generation, heal: str
    ) -> None:
        """Send with token log-probabilities while the engine takes them; without, from the
        first refusal on (the cascade's stage 2 then lacks the log-probability features)."""
        if self.logprobs:
            body["logprobs"] = 1
            try:
                await self._read(body, req, gen, heal)
                return
            except EngineError as exc:
                if exc.kind != REQUEST or "logprob" not in str(exc).lower():
                    raise
            self.logprobs = False
            self.notes.append(
                f"{self.client.host} gives no token log-probabilities for completions"
            )
            _reset(gen)
        body.pop("logprobs", None)
        await self._read(body, req, gen, heal)

    async def _read(
        self, body: dict[str, Any], req: GenerateRequest, gen: Generation, heal: str
    ) -> None:
        try:
            async with self.client.stream(body) as events:
                await read_completion(events, req, gen, heal)
        finally:
            self.last_stream_closed = time.perf_counter()
