"""The model runner's state hand-offs and a generation's published progress (no model)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tactful.backend.runner import FAILED, READY, ModelRunner
from tactful.backend.types import GenerateRequest, Generation, ModelError


class _Named:
    name = "stub"
    fim = False


def test_until_settled_wakes_when_the_load_ends() -> None:
    runner = ModelRunner()
    release = threading.Event()

    def loader() -> _Named:
        release.wait(5)
        return _Named()

    async def go() -> tuple[bool, str]:
        runner.load(loader, "stub")  # type: ignore[arg-type]
        waiting = asyncio.ensure_future(runner.until_settled())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # still loading
        release.set()
        return await asyncio.wait_for(waiting, 5), runner.state

    ok, state = asyncio.run(go())
    assert ok and state == READY
    assert runner.ready_backend() is not None


def test_until_settled_reports_a_failed_load() -> None:
    runner = ModelRunner()

    def loader() -> _Named:
        raise ModelError("no such model")

    async def go() -> bool:
        runner.load(loader, "missing")  # type: ignore[arg-type]
        return await asyncio.wait_for(runner.until_settled(), 5)

    assert asyncio.run(go()) is False
    assert runner.state == FAILED and runner.error == "no such model"
    assert runner.ready_backend() is None
    with pytest.raises(ModelError, match="no such model"):
        runner.start(lambda b: b.name)


def test_published_progress_is_a_copy_and_wakes_watchers() -> None:
    req = GenerateRequest(prefix="x = ")
    seen: list[str] = []
    stop = req.watch(lambda: seen.append(req.partial.text if req.partial else ""))
    gen = Generation(text="")
    req.publish(gen)
    gen.text, gen.tokens = "foo", ["foo"]
    assert req.partial is not None and req.partial.text == "" and req.partial.tokens == []
    req.publish(gen)
    assert req.partial.text == "foo" and req.partial.tokens == ["foo"]
    gen.tokens.append("bar")
    assert req.partial.tokens == ["foo"]  # the published copy does not change
    stop()
    req.publish(gen)
    assert seen == ["", "foo"]


def test_interrupt_is_set_when_urgent_work_arrives() -> None:
    """Long work of low priority is told to give way by an event, not by polling the queue."""
    from tactful.backend.runner import PRIORITY_COMPLETION, PRIORITY_FLAG

    runner = ModelRunner()
    interrupt = threading.Event()
    running = threading.Event()

    def long_unit() -> bool:
        running.set()
        return interrupt.wait(5)  # gives way when told

    flag = runner.submit(long_unit, PRIORITY_FLAG, interrupt)
    assert running.wait(5)
    assert not interrupt.is_set()
    runner.submit(lambda: None, PRIORITY_FLAG + 1)  # less urgent: no interrupt
    assert not interrupt.is_set()
    done = runner.submit(lambda: "completion", PRIORITY_COMPLETION)
    assert flag.result(5) is True
    assert done.result(5) == "completion"
