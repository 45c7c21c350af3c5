"""Token healing of a partial word through an inference engine, as the in-process backend heals
it (``prompt.build_prompt``): the prompt ends before the last token of the prefix when that token
ends a word ("ret" -> the model may write "return"), and the first tokens the engine writes must
fit the healed-away text. An OpenAI-compatible engine cannot be asked to constrain a token, so the
constraint is applied one token at a time from its top alternatives: a one-token request with
``logprobs`` (the engine's prefix cache makes it cheap), the best alternative that fits, and then
the streamed rest from the prompt plus that token. The healed text is what the engine's own
tokenizer cuts off (``/tokenize`` and ``/detokenize``: vLLM, SGLang and llama.cpp's server); an
engine without them gets the partial word unhealed, as before.

Plain functions over the engine's JSON; the requests are sent by ``completions.py``."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Top alternatives asked for per healing step (vLLM's default ``--max-logprobs``).
TOP = 20
#: Healing steps at most (a healed token is usually written again in one).
MAX_STEPS = 4
#: How much of the prompt's end is tokenized to find its last token.
TAIL_CHARS = 256


def word_end(prefix: str) -> bool:
    """Whether the prefix ends inside a word (a letter, digit or underscore), where healing the
    last token can change the answer."""
    return bool(prefix) and (prefix[-1].isalnum() or prefix[-1] == "_")


def tail(base: str) -> str:
    """The end of ``base`` that is tokenized to find its last token: from the start of its last
    line (a token never spans one), at most ``TAIL_CHARS`` characters, cut at a space."""
    start = base.rfind("\n") + 1
    if len(base) - start > TAIL_CHARS:
        cut = base.rfind(" ", len(base) - TAIL_CHARS)
        start = cut if cut > start else len(base) - TAIL_CHARS
    return base[start:]


def fits(token: str, heal_left: str) -> bool:
    """Whether a token may be written where ``heal_left`` was healed away: it starts with it, or
    it is a (non-empty) start of it (as ``healing.HealIndex.allowed`` decides in-process)."""
    return bool(token) and (token.startswith(heal_left) or heal_left.startswith(token))


def top_alternatives(body: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The first position's top alternatives (token text, log-probability) of a non-streamed
    ``/v1/completions`` answer, in either dialect: OpenAI's legacy ``top_logprobs: [{text: lp}]``
    (vLLM, SGLang) or ``content: [{top_logprobs: [{token, logprob}]}]`` (llama.cpp, Ollama).
    Empty when the answer has none."""
    try:
        lp = body["choices"][0]["logprobs"]
    except (KeyError, IndexError, TypeError):
        return []
    out: list[tuple[str, float]] = []
    if not isinstance(lp, Mapping):
        return out
    if isinstance(lp.get("content"), list) and lp["content"]:
        first = lp["content"][0]
        items = first.get("top_logprobs") if isinstance(first, Mapping) else None
        for item in items or []:
            if isinstance(item, Mapping) and isinstance(item.get("logprob"), int | float):
                out.append((str(item.get("token", "")), float(item["logprob"])))
    else:
        tops = lp.get("top_logprobs")
        if isinstance(tops, list) and tops and isinstance(tops[0], Mapping):
            for tok, val in tops[0].items():
                if isinstance(val, int | float):
                    out.append((str(tok), float(val)))
    return [(t, v) for t, v in out if math.isfinite(v)]


def pick(alternatives: list[tuple[str, float]], heal_left: str) -> tuple[str, float] | None:
    """The most likely alternative that fits ``heal_left``, or None (the healing failed: the
    engine's best fitting token is not among those it reported)."""
    best: tuple[str, float] | None = None
    for tok, val in alternatives:
        if "\ufffd" in tok or tok.startswith("bytes:"):
            continue  # a broken-byte token, which in-process healing never allows either
        if fits(tok, heal_left) and (best is None or val > best[1]):
            best = (tok, val)
    return best


def heal_of(prefix: str, last: str) -> str:
    """The text healed away from ``prefix`` given its last token ``last``, by the in-process rule
    (``prompt.build_prompt``): a last token that ends a word and is not the whole prefix; else
    nothing."""
    if (
        last
        and last.strip()
        and (last[-1].isalnum() or last[-1] == "_")
        and len(last) < len(prefix)
        and prefix.endswith(last)
    ):
        return last
    return ""


@dataclass
class Healed:
    """The healed prompt and what the engine wrote over the healed-away text: ``written`` starts
    with ``heal``; its rest (``lead``) begins the suggestion."""

    prompt: str
    heal: str
    written: str
    tokens: list[str]
    logprobs: list[float]

    @property
    def lead(self) -> str:
        return self.written[len(self.heal) :]


def step_request(model: str, prompt: str) -> dict[str, Any]:
    """One greedy token with its top alternatives."""
    return {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0, "logprobs": TOP}


async def heal_word(
    prompt: str,
    heal: str,
    model: str,
    ask: Callable[[dict[str, Any]], Awaitable[Mapping[str, Any]]],
) -> Healed | None:
    """Write the healed-away ``heal`` again after ``prompt``, a token at a time, each the most
    likely of the engine's top alternatives that fits what is left of it (``ask`` sends one
    ``step_request``). None when no reported alternative fits (the caller then asks with the
    prompt unhealed)."""
    written, tokens, lps = "", [], []
    left = heal
    for _ in range(MAX_STEPS):
        choice = pick(top_alternatives(await ask(step_request(model, prompt + written))), left)
        if choice is None:
            return None
        tok, lp = choice
        written += tok
        tokens.append(tok)
        lps.append(lp)
        if tok.startswith(left):
            return Healed(prompt, heal, written, tokens, lps)
        left = left[len(tok) :]
    return None
