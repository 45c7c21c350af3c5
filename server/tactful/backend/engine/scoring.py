"""Flags' scoring pass through an engine: the ``echo`` + ``logprobs`` request that asks for a
text's own log-probabilities, and the plain functions that turn its answer into tactful's
``LineScores`` (per line, like the in-process teacher-forced pass) or into one continuation's
log-probability.

Plain functions of the request and the JSON answer. Must not do I/O: the backend sends the
request (``backend.py``) and decides what an engine that cannot score means for flags.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import Any

from tactful.backend.engine.errors import PROTOCOL, UNSUPPORTED, EngineError
from tactful.backend.types import LineScores

#: Alternatives asked for per scored token (entropy is estimated from them).
SCORE_TOP = 5


def echo_request(model: str, text: str) -> dict[str, Any]:
    """The ``/v1/completions`` body that scores ``text``: echoed with its log-probabilities and
    ``SCORE_TOP`` alternatives per token, one token generated (engines want at least one)."""
    return {
        "model": model,
        "prompt": text,
        "max_tokens": 1,
        "temperature": 0,
        "echo": True,
        "logprobs": SCORE_TOP,
    }


def echo_scores(text: str, body: Mapping[str, Any]) -> LineScores:
    """``LineScores`` of ``text`` from a non-streamed ``echo`` + ``logprobs`` completion of it:
    per line, the log-probabilities of the tokens that start on it (the first token has none),
    an entropy estimate from the ``SCORE_TOP`` alternatives (their part of the sum, plus the rest
    of the probability mass as one outcome: a lower bound of the full distribution's entropy),
    each token's start, and whether it was the engine's own greedy choice there."""
    toks, vals, tops, raw_offsets = _echo_logprobs(body)
    n = len(toks)
    ranks = _prompt_ranks(body["choices"][0], vals)
    if not (len(vals) == n and len(tops) == n):
        raise EngineError("the engine's prompt log-probabilities are malformed", PROTOCOL)
    offsets = _token_offsets(toks, raw_offsets)
    first, last = _text_span(offsets, len(text))
    line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    lp_lines: list[list[float]] = [[] for _ in line_starts]
    ent_lines: list[list[float]] = [[] for _ in line_starts]
    starts: list[int] = []
    greedy: list[bool] = []
    for j in range(first, last):
        start = int(offsets[j])
        starts.append(start)
        val = vals[j]
        if j == first or not isinstance(val, int | float):
            greedy.append(False)
            continue
        top = tops[j]
        alts = [float(v) for v in top.values()] if isinstance(top, Mapping) else []
        greedy.append(_is_greedy(float(val), alts, ranks[j] if j < len(ranks) else None))
        line = _line_of(text, start, toks[j], line_starts)
        lp_lines[line].append(float(val))
        ent_lines[line].append(_entropy(alts))
    return LineScores(lp_lines, ent_lines, last - first, token_starts=starts, token_greedy=greedy)


def _echo_logprobs(
    body: Mapping[str, Any],
) -> tuple[list[str], list[float | None], list[Mapping[str, float] | None], list[int] | None]:
    """(tokens, log-probabilities, alternatives, text offsets) of the echoed prompt; raises
    EngineError (UNSUPPORTED) when the answer has none: the engine does not score prompts."""
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
    return toks, vals, tops, offsets


def _prompt_ranks(choice: Mapping[str, Any], vals: list[float | None]) -> list[int | None]:
    """Each prompt token's rank among the engine's choices, where vLLM sends them
    (``prompt_logprobs``): the token is greedy where its rank is 1. ``top_logprobs`` cannot tell,
    being keyed by token text, where distinct tokens can collide."""
    ranks: list[int | None] = []
    for j, entry in enumerate(choice.get("prompt_logprobs") or []):
        rank = None
        if isinstance(entry, Mapping) and j < len(vals):
            for alt in entry.values():
                if isinstance(alt, Mapping) and alt.get("logprob") == vals[j]:
                    rank = alt.get("rank")
                    break
        ranks.append(rank if isinstance(rank, int) else None)
    return ranks


def _token_offsets(toks: list[str], offsets: list[int] | None) -> list[int]:
    """Token starts: the engine's ``text_offset``, or the running length of the token texts."""
    if isinstance(offsets, list) and len(offsets) == len(toks):
        return offsets
    out, pos = [], 0
    for t in toks:
        out.append(pos)
        pos += len(t)
    return out


def _text_span(offsets: list[int], text_len: int) -> tuple[int, int]:
    """(first, last): the tokens of the text itself, without the leading ones before it (a BOS
    the engine added) and the generated one at its end."""
    n = len(offsets)
    first = 0
    while first < n and offsets[first] <= 0 and first + 1 < n and offsets[first + 1] <= 0:
        first += 1
    last = n
    while last > first and offsets[last - 1] >= text_len and text_len > 0:
        last -= 1
    return first, last


def _is_greedy(val: float, alts: list[float], rank: int | None) -> bool:
    """Whether a token was the engine's own choice: its rank where known, else whether no
    alternative was more likely."""
    if rank is not None:
        return rank == 1
    return not alts or val >= max(alts) - 1e-6


def _entropy(alts: list[float]) -> float:
    """The entropy estimate from the alternatives' log-probabilities, the rest of the mass
    counted as one outcome."""
    probs = [math.exp(v) for v in alts if v > -1e30]
    rest = max(0.0, 1.0 - sum(probs))
    return -sum(p * math.log(p) for p in probs if p > 0) - (
        rest * math.log(rest) if rest > 0 else 0.0
    )


def _line_of(text: str, start: int, tok: str, line_starts: list[int]) -> int:
    """The line a token belongs to: where its first non-newline character is (as in-process, a
    token that is a line end belongs to the line it ends)."""
    piece = text[start : start + len(tok)]
    anchor = start + (len(piece) - len(piece.lstrip("\n")) if piece.strip() else 0)
    return bisect.bisect_right(line_starts, min(anchor, max(0, len(text) - 1))) - 1


def continuation_logprob(body: Mapping[str, Any], start: int, end: int) -> float | None:
    """The summed log-probability of the echoed tokens that start in ``[start, end)`` of the
    prompt (a continuation after its prefix); -1e9 where it is not finite; None when the answer
    has no prompt log-probabilities."""
    try:
        lp = body["choices"][0]["logprobs"]
        total = 0.0
        pos = 0
        for tok, val in zip(lp["tokens"], lp["token_logprobs"], strict=False):
            if start <= pos < end and isinstance(val, int | float):
                total += float(val)
            pos += len(tok)
    except (KeyError, IndexError, TypeError):
        return None
    return total if math.isfinite(total) else -1e9
