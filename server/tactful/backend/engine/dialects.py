"""The engines' streamed ``/v1/completions`` answers, read the same way whatever the engine:
server-sent events up to ``data: [DONE]``, and each event's text, tokens, log-probabilities and
finish reason in either log-probability dialect (OpenAI's legacy form, sent by vLLM and SGLang,
or the ``content`` list of llama.cpp's server and Ollama).

Plain functions of the bytes and JSON received. Must not do I/O or hold state: the HTTP client
(``client.py``) feeds them and the completion stream (``completions.py``) uses what they return.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tactful.backend.engine.errors import ERROR_CHARS, PROTOCOL, SERVER, EngineError


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
        raise EngineError(f"the engine failed mid-stream: {str(msg)[:ERROR_CHARS]}", SERVER)
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
    tokens, lps = chunk_logprobs(choice.get("logprobs"))
    finish = choice.get("finish_reason")
    return Chunk(text, tokens, lps, finish if isinstance(finish, str) else None)


def chunk_logprobs(lp: Any) -> tuple[list[str], list[float]]:
    """(tokens, log-probabilities) of one event's ``logprobs`` field in either dialect; tokens
    without a numeric log-probability are left out, and so is a field of another shape."""
    tokens: list[str] = []
    lps: list[float] = []
    if not isinstance(lp, Mapping):
        return tokens, lps
    if isinstance(lp.get("content"), list):
        for item in lp["content"]:
            if isinstance(item, Mapping) and isinstance(item.get("logprob"), int | float):
                tokens.append(str(item.get("token", "")))
                lps.append(float(item["logprob"]))
        return tokens, lps
    toks = lp.get("tokens") or []
    vals = lp.get("token_logprobs") or []
    for tok, val in zip(toks, vals, strict=False):
        if isinstance(val, int | float):
            tokens.append(str(tok))
            lps.append(float(val))
    return tokens, lps


async def sse_events(
    lines: AsyncIterator[str], heard: Callable[[], None] | None = None
) -> AsyncIterator[dict[str, Any]]:
    """The JSON events of a server-sent-event stream, up to ``data: [DONE]``; ``heard`` is
    called on each event (a sign of life)."""
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
            if heard is not None:
                heard()
            if payload.strip() == "[DONE]":
                done = True
                break
            yield sse_json(payload)
    if data:
        raise EngineError("the engine's stream was cut in the middle of an event", PROTOCOL)
    if not done:
        raise EngineError("the engine's stream ended before its answer did", PROTOCOL)


def sse_json(payload: str) -> dict[str, Any]:
    """One event's data as a JSON object; EngineError (PROTOCOL) for anything else."""
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise EngineError(
            f"the engine sent malformed JSON in its stream: {payload[:80]!r}", PROTOCOL
        ) from exc
    if not isinstance(event, dict):
        raise EngineError("the engine sent a stream event that is not an object", PROTOCOL)
    return event
