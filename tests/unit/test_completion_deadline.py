"""The completion deadline (``completion.deadlineMs``), engine-level: the answer at the deadline
is the whole words written so far, the generation goes on, typing along does not cancel it, and
its end extends the suggestion on screen. The backend here writes scripted tokens at a set pace,
because the real model's timing cannot be controlled; tests/lsp/test_latency_features.py runs
the same path on the real model."""

from __future__ import annotations

import asyncio
import time

import pytest

from tactful.backend.runner import READY, ModelRunner
from tactful.backend.types import GenerateRequest, Generation
from tactful.completion.context import build_context
from tactful.completion.deadline import partial_text, stop_point
from tactful.completion.engine import CompletionEngine
from tactful.config import Settings, apply_settings

PREFIX = "def total(values):\n    "
TOKENS = ["result", " =", " sum", "(values", ")", "\n"]


class PacedBackend:
    """Writes ``TOKENS`` one every ``step`` seconds, as the real backend reports progress."""

    name = "paced"
    fim = False

    def __init__(self, step: float) -> None:
        self.step = step
        self.finished = 0
        self.cancelled = 0
        self.calls = 0

    def generate(self, req: GenerateRequest) -> Generation:
        self.calls += 1
        gen = Generation(text="")
        req.partial = gen
        for tok in TOKENS:
            if req.cancel.wait(self.step):
                self.cancelled += 1
                gen.cancelled = True
                return gen
            gen.token_logprobs.append(-0.1)
            gen.tokens.append(tok)
            gen.text += tok
            req.publish(gen)
            if "\n" in gen.text:
                break
        gen.text = gen.text.split("\n")[0]
        self.finished += 1
        return gen

    def drop_cache(self, key: str) -> None:
        pass


def engine(step: float, deadline_ms: int) -> tuple[CompletionEngine, PacedBackend]:
    runner = ModelRunner()
    backend = PacedBackend(step)
    runner.backend, runner.state = backend, READY  # type: ignore[assignment]
    settings, errors, _ = apply_settings(
        Settings(), {"completion": {"deadlineMs": deadline_ms, "cache": False}}
    )
    assert not errors
    return CompletionEngine(runner, lambda: settings), backend


async def ask(
    eng: CompletionEngine,
    text: str,
    uri: str = "file:///t.py",
    channel: str = "inline",
    trigger: str = "automatic",
) -> str | None:
    sugg = await eng.complete(
        trigger=trigger,
        uri=uri,
        text=text,
        offset=len(text),
        language_id="python",
        line=text.count("\n"),
        character=len(text.split("\n")[-1]),
        channel=channel,
    )
    return None if sugg is None else sugg.text


def test_partial_text_keeps_whole_words_only() -> None:
    ctx = build_context(PREFIX, len(PREFIX), "python", context_tokens=500, multiline_enabled=False)
    assert partial_text("result = su", ctx) == "result"  # not "result =": no trailing operator
    assert partial_text("result", ctx) is None  # the first word may still grow
    assert partial_text("", ctx) is None
    assert partial_text("result = sum(val", ctx) == "result = sum"  # brackets balanced
    assert partial_text("result = sum(values)", ctx) == "result = sum(values)"


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("x = f'{a} and {", "x"),  # never inside an unclosed f-string
        ("return total +", "return total"),
        ("items.append(", "items.append"),
        ("self.", "self"),
        ("for x in ", "for x"),  # not after a keyword that needs more
        ("if ", ""),
        ("x = [1, 2", "x"),
        ('print("hi', "print"),
        ("a, b)", "a, b)"),  # closes a bracket the prefix opened
        ("x = 1\ny = ", "x = 1"),  # a complete line before a cut in the next one
        ("a = 1\nb = 2\nc", "a = 1\nb = 2"),
        ("return f'{x}'", "return f'{x}'"),
        ("x = 1  # the total", "x = 1"),  # the comment may still grow
    ],
)
def test_a_part_is_cut_where_a_person_would_stop(written: str, shown: str) -> None:
    assert written[: stop_point(written)] == shown


def test_deadline_answers_in_part_and_type_along_gets_the_rest() -> None:
    async def scenario() -> None:
        eng, backend = engine(step=0.05, deadline_ms=60)
        t0 = time.perf_counter()
        first = await ask(eng, PREFIX)
        waited = time.perf_counter() - t0
        assert first in ("result", "result = sum"), first  # whole words, balanced
        assert waited < 0.05 * len(TOKENS), "answered before the generation ended"
        assert eng.stats.partial == 1
        # Typing along the part on screen is answered at once and leaves the model writing.
        typed = PREFIX + "res"
        assert await ask(eng, typed) == first[3:]
        for _ in range(100):
            if eng.stats.extended:
                break
            await asyncio.sleep(0.02)
        assert eng.stats.extended == 1 and backend.cancelled == 0 and backend.finished == 1
        assert await ask(eng, PREFIX + "resu") == "lt = sum(values)"
        assert backend.calls == 1 and eng.stats.type_along == 2

    asyncio.run(scenario())


def test_a_request_that_does_not_type_along_cancels_the_writing() -> None:
    async def scenario() -> None:
        eng, backend = engine(step=0.05, deadline_ms=60)
        first = await ask(eng, PREFIX)
        assert first is not None and eng.stats.partial == 1
        await ask(eng, PREFIX + "x")  # diverges from the suggestion: a new model call
        assert backend.cancelled >= 1
        assert eng.stats.extended == 0

    asyncio.run(scenario())


def test_an_invoked_request_waits_for_the_whole_suggestion() -> None:
    """Asked for explicitly (Alt+\\ in VS Code), the ghost text is never cut at the deadline."""

    async def scenario() -> None:
        eng, backend = engine(step=0.05, deadline_ms=60)
        assert await ask(eng, PREFIX, trigger="invoked") == "result = sum(values)"
        assert eng.stats.partial == 0 and backend.finished == 1
        # The same engine cuts an automatic request at its deadline.
        part = await ask(eng, PREFIX, uri="file:///other.py", trigger="automatic")
        assert part in ("result", "result = sum") and eng.stats.partial == 1

    asyncio.run(scenario())


def test_without_deadline_the_whole_suggestion_is_awaited() -> None:
    async def scenario() -> None:
        eng, backend = engine(step=0.02, deadline_ms=0)
        assert await ask(eng, PREFIX) == "result = sum(values)"
        assert eng.stats.partial == 0 and backend.finished == 1

    asyncio.run(scenario())


def test_a_generation_that_ends_before_the_deadline_is_shown_whole() -> None:
    async def scenario() -> None:
        eng, _backend = engine(step=0.005, deadline_ms=2000)
        assert await ask(eng, PREFIX) == "result = sum(values)"
        assert eng.stats.partial == 0

    asyncio.run(scenario())


def test_a_broken_character_is_not_shown() -> None:
    ctx = build_context(PREFIX, len(PREFIX), "python", context_tokens=500, multiline_enabled=False)
    # The last character's bytes are still being written: tok.decode gives U+FFFD.
    assert partial_text("result = 'caf\ufffd", ctx) == "result"
    assert partial_text("x = 1  # \ufffd", ctx) == "x = 1"


def test_typing_all_of_the_part_waits_for_the_rest_instead_of_a_new_call() -> None:
    """Tab on the part on screen (or typing it all) while the model still writes: the answer is
    the rest of the line from that same generation, not a new model call."""

    async def scenario() -> None:
        eng, backend = engine(step=0.05, deadline_ms=60)
        first = await ask(eng, PREFIX)
        assert first is not None and eng.stats.partial == 1
        rest = await ask(eng, PREFIX + first)
        assert rest is not None and (first + rest) == "result = sum(values)"
        assert backend.calls == 1 and backend.cancelled == 0

    asyncio.run(scenario())


def test_another_document_stops_the_writing_and_closing_does_too() -> None:
    async def scenario() -> None:
        eng, backend = engine(step=0.05, deadline_ms=60)
        assert await ask(eng, PREFIX) is not None and eng.stats.partial == 1
        assert await ask(eng, PREFIX, uri="file:///other.py") is not None
        assert backend.cancelled == 1, "the part's generation held up another document"
        # The second document's own part is still being written: closing it stops that too.
        eng.forget("file:///other.py")
        for _ in range(100):
            if backend.cancelled == 2:
                break
            await asyncio.sleep(0.02)
        assert backend.cancelled == 2 and eng.stats.extended == 0

    asyncio.run(scenario())


def test_list_completions_wait_for_the_whole_suggestion() -> None:
    """A list item is picked whole from a menu: no deadline there."""

    async def scenario() -> None:
        eng, _backend = engine(step=0.05, deadline_ms=60)
        assert await ask(eng, PREFIX, channel="list") == "result = sum(values)"
        assert eng.stats.partial == 0

    asyncio.run(scenario())


class FirstSlowBackend(PacedBackend):
    """The first generation writes nothing for a long while (a long prompt's prefill); the
    later ones are quick."""

    def generate(self, req: GenerateRequest) -> Generation:
        self.step = 5.0 if self.calls == 0 else 0.01
        return super().generate(req)


async def test_a_request_in_another_document_frees_the_model_thread() -> None:
    """A request still waiting for its first words (a long line's prefill) gives way to a request
    in another document: it is answered with nothing and its generation stops (issue 28)."""
    runner = ModelRunner()
    backend = FirstSlowBackend(5.0)
    runner.backend, runner.state = backend, READY  # type: ignore[assignment]
    settings, _errors, _ = apply_settings(
        Settings(), {"completion": {"deadlineMs": 100, "cache": False}}
    )
    eng = CompletionEngine(runner, lambda: settings)
    slow = asyncio.create_task(ask(eng, "x = [" + "1, " * 3000, uri="file:///long.py"))
    await asyncio.sleep(0.3)  # its generation has started and written nothing
    other = await asyncio.wait_for(ask(eng, PREFIX, uri="file:///other.py"), 30)
    assert await asyncio.wait_for(slow, 30) is None
    assert backend.cancelled == 1
    assert other == "result = sum(values)"


class CappedBackend(PacedBackend):
    """Writes a line that the token cap ends inside a call (no stop rule fired)."""

    def generate(self, req: GenerateRequest) -> Generation:
        self.calls += 1
        gen = Generation(text="total = compute(values, scale")
        gen.tokens = ["total", " =", " compute", "(values", ",", " scale"]
        gen.token_logprobs = [-0.1] * len(gen.tokens)
        req.publish(gen)
        self.finished += 1
        return gen  # stopped stays False: the cap, not the model, ended it


def test_a_suggestion_the_token_cap_cut_ends_where_a_person_would_stop() -> None:
    async def scenario() -> None:
        eng, _paced = engine(step=0.0, deadline_ms=0)
        capped = CappedBackend(0.0)
        eng.runner.backend = capped  # type: ignore[assignment]
        for trigger in ("invoked", "automatic"):
            text = await ask(eng, PREFIX, uri=f"file:///{trigger}.py", trigger=trigger)
            assert text == "total = compute", text  # never "total = compute(values, scale"

    asyncio.run(scenario())
