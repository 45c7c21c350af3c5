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

import httpx

from tactful.backend import fim, stops
from tactful.backend.engine import heal as heal_word
from tactful.backend.engine.client import EngineClient
from tactful.backend.engine.dialects import parse_chunk
from tactful.backend.engine.errors import PROTOCOL, REQUEST, UNSUPPORTED, EngineError
from tactful.backend.types import GenerateRequest, Generation


def split_heal(prefix: str) -> tuple[str, str]:
    """Token healing without the tokenizer, for trailing whitespace only: (prompt, heal). As
    in-process, the whitespace at the prompt's end (a new line's indentation) is taken off; the
    engine writes it again with the tokens it would choose there (its tokenizer joins
    indentation to the next word), and tactful drops it from the suggestion. A trailing partial
    word is healed by ``heal.py`` instead (it needs the engine's tokenizer)."""
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
    events: AsyncIterator[dict[str, Any]],
    req: GenerateRequest,
    gen: Generation,
    heal: str,
    lead: str = "",
) -> None:
    """Read a completion's stream events into ``gen``, publishing the text so far on ``req``,
    until a stop rule fires or the engine finishes (the caller then closes the stream). The
    text starts after ``heal``; HealMissed when the engine did not write it first. ``lead``:
    text already written before this stream (a healed partial word's rest)."""
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
        text = lead + raw[len(heal) :]
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
    gen.text = stops.cut(lead + raw[len(heal) :], req)


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
        #: Whether partial words are healed (False once the engine showed it cannot tokenize).
        self.word_healing = True
        #: Whether healed tokens can be chosen from one-token requests' top alternatives (False
        #: once the engine refused or garbled one).
        self.step_healing = True
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
                healed = None if heal else await self._heal_word(req, tpl)
                if healed is None:
                    await self._healed(body, req, gen, heal, tpl)
                else:
                    await self._continue(body, req, gen, healed)
            finally:
                stats["in_flight"] -= 1

    async def _heal_word(
        self, req: GenerateRequest, tpl: fim.FimTemplate | None
    ) -> heal_word.Healed | None:
        """A trailing partial word healed as in-process (``heal.py``); None where it does not
        apply, the engine cannot tokenize, or none of its top alternatives fits."""
        if self.word_healing is False or not heal_word.word_end(req.prefix):
            return None
        if req.use_fim and tpl is not None and req.suffix:
            return None
        try:
            last = await self.client.last_token(heal_word.tail(req.prefix))
        except httpx.HTTPError as exc:
            raise self.client.from_exception(exc) from exc
        if last is None:
            self.word_healing = False  # no tokenize endpoint: partial words go unhealed
            return None
        heal = heal_word.heal_of(req.prefix, last)
        if not heal:
            return None
        got = await self._constrained(req.preamble + req.prefix[: -len(heal)], heal)
        self.client.stats["healed" if got else "heal_missed"] += 1
        return got

    async def _constrained(self, prompt: str, heal: str) -> heal_word.Healed | None:
        """``heal`` written again after ``prompt`` token by token, each the likeliest of the
        engine's top alternatives that fits (the in-process constraint); None where none fits or
        the engine refuses the one-token requests (then never asked again)."""
        if not self.step_healing:
            return None

        async def ask(body: dict[str, Any]) -> dict[str, Any]:
            self.client.stats["requests"] += 1
            return await self.client.post_json(body, "token healing")

        try:
            return await heal_word.heal_word(prompt, heal, self.client.model, ask)
        except EngineError as exc:
            if exc.kind not in (REQUEST, PROTOCOL, UNSUPPORTED):
                raise
            self.step_healing = False  # e.g. an engine that caps logprobs below heal.TOP
            self.notes.append(f"{self.client.host} cannot choose healed tokens: {exc}")
            return None

    async def _continue(
        self,
        body: dict[str, Any],
        req: GenerateRequest,
        gen: Generation,
        healed: heal_word.Healed,
    ) -> None:
        """Stream the rest after a healed partial word: the healed prompt plus what the engine
        wrote over it, with the tokens left of the in-process limit."""
        gen.tokens.extend(healed.tokens)
        gen.token_logprobs.extend(healed.logprobs)
        lead = healed.lead
        if lead and stops.should_stop(lead, req):
            gen.text, gen.stopped = stops.cut(lead, req), True
            return
        body.update(
            prompt=healed.prompt + healed.written,
            max_tokens=req.max_new_tokens + 4 - len(healed.tokens),
        )
        await self._send(body, req, gen, "", lead)

    async def _healed(
        self,
        body: dict[str, Any],
        req: GenerateRequest,
        gen: Generation,
        heal: str,
        tpl: fim.FimTemplate | None,
    ) -> None:
        """Send the healed prompt. Where the model's own choice does not write the healed-away
        text again, its tokens are chosen as in-process (the likeliest that fit, ``heal.py``);
        where none fits, ask once more with the prompt as it is (what an engine without healing
        would do)."""
        stats = self.client.stats
        try:
            await self._send(body, req, gen, heal)
            if heal:
                stats["healed"] += 1
            return
        except HealMissed:
            _reset(gen)
        healed = await self._constrained(body["prompt"], heal)
        if healed is not None:
            stats["healed"] += 1
            stats["requests"] += 1  # the stream after the chosen tokens
            await self._continue(body, req, gen, healed)
            return
        stats["heal_missed"] += 1
        stats["requests"] += 1
        body.update(prompt=build_prompt(req, tpl), max_tokens=req.max_new_tokens)
        await self._send(body, req, gen, "")

    async def _send(
        self,
        body: dict[str, Any],
        req: GenerateRequest,
        gen: Generation,
        heal: str,
        lead: str = "",
    ) -> None:
        """Send with token log-probabilities while the engine takes them; without, from the
        first refusal on (the cascade's stage 2 then lacks the log-probability features)."""

        async def read() -> None:
            try:
                async with self.client.stream(body) as events:
                    await read_completion(events, req, gen, heal, lead)
            finally:
                self.last_stream_closed = time.perf_counter()

        if self.logprobs:
            body["logprobs"] = 1
            n_tokens, n_logprobs = len(gen.tokens), len(gen.token_logprobs)
            try:
                await read()
                return
            except EngineError as exc:
                if exc.kind != REQUEST or "logprob" not in str(exc).lower():
                    raise
            self.logprobs = False
            self.notes.append(
                f"{self.client.host} gives no token log-probabilities for completions"
            )
            gen.text = ""  # what the refused request added goes; a healed word's tokens stay
            del gen.tokens[n_tokens:], gen.token_logprobs[n_logprobs:]
        body.pop("logprobs", None)
        await read()
