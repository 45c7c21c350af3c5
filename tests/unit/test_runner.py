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


# --- fair scheduling: work for one document gives way to another's ---------------------------


def _asks_once_queued(runner: ModelRunner, running: threading.Event, queued: threading.Event):  # type: ignore[no-untyped-def]
    """Work that, once the other work is queued, asks ``give_way`` (on the model worker)."""

    def work() -> bool:
        running.set()
        assert queued.wait(5)
        return runner.give_way()

    return work


@pytest.mark.parametrize(
    ("owner", "priority", "cancelled", "slice_s", "expected"),
    [
        ("b.py", 0, False, 0.0, True),  # another document, as urgent: give way
        ("b.py", -1, False, 0.0, True),  # another document, more urgent
        ("a.py", 0, False, 0.0, False),  # the same document: never interleaved
        (None, 0, False, 0.0, False),  # housekeeping (dropping a cache) does not preempt
        ("b.py", 10, False, 0.0, False),  # less urgent (a flag unit) waits
        ("b.py", 0, True, 0.0, False),  # cancelled while queued: nobody waits for it
        ("b.py", 0, False, 60.0, False),  # the running work has not had its slice yet
    ],
)
def test_give_way_weighs_owner_priority_cancel_and_slice(
    owner: str | None, priority: int, cancelled: bool, slice_s: float, expected: bool
) -> None:
    runner = ModelRunner(slice_s=slice_s)
    running, queued = threading.Event(), threading.Event()
    first = runner.submit(_asks_once_queued(runner, running, queued), 0, owner="a.py")
    assert running.wait(5)
    cancel = threading.Event()
    if cancelled:
        cancel.set()
    second = runner.submit(lambda: "second", priority, owner=owner, cancel=cancel)
    queued.set()
    assert first.result(5) is expected
    assert second.result(5) == "second"  # queued work runs either way


def test_cancelled_work_gives_way_before_its_slice_is_spent() -> None:
    runner = ModelRunner(slice_s=60.0)
    running, queued = threading.Event(), threading.Event()
    cancel = threading.Event()

    def work() -> tuple[bool, bool]:
        running.set()
        assert queued.wait(5)
        wanted = runner.give_way()
        cancel.set()  # the editor gave the request up (or a newer one came)
        return wanted, runner.give_way()

    first = runner.submit(work, 0, owner="a.py", cancel=cancel)
    assert running.wait(5)
    runner.submit(lambda: None, 0, owner="b.py")
    queued.set()
    assert first.result(5) == (False, True)


def test_give_way_is_false_off_the_worker_and_between_jobs() -> None:
    runner = ModelRunner(slice_s=0.0)
    assert runner.give_way() is False  # not on the model worker
    assert runner.submit(runner.give_way, 0, owner="a.py").result(5) is False  # nobody waits


def test_a_generation_that_gives_way_lets_the_other_document_run_next() -> None:
    """Work that loops until ``give_way`` says so (as a generation does between its steps) ends
    when another document's request is queued, and that request runs next, before work queued
    after it for the first document."""
    runner = ModelRunner(slice_s=0.0)
    order: list[str] = []
    running = threading.Event()

    def long_generation() -> int:
        running.set()
        steps = 0
        while not runner.give_way():
            steps += 1
            assert steps < 10_000_000, "never gave way"
        order.append("a")
        return steps

    a = runner.submit(long_generation, 0, owner="a.py")
    assert running.wait(5)
    b = runner.submit(lambda: order.append("b"), 0, owner="b.py")
    a2 = runner.submit(lambda: order.append("a2"), 0, owner="a.py")
    a.result(5)
    b.result(5)
    a2.result(5)
    assert order == ["a", "b", "a2"]


def test_contends_is_symmetric_in_owners_only() -> None:
    import concurrent.futures

    from tactful.backend.runner import Job, contends

    def job(owner: str | None, priority: int = 0) -> Job:
        return Job(priority, 0, lambda: None, concurrent.futures.Future(), owner)

    assert contends(job("a"), job("b")) and contends(job("b"), job("a"))
    assert not contends(job("a"), job("a"))
    assert not contends(job(None), job("b")) and not contends(job("a"), job(None))
    assert contends(job("a", 10), job("b", 0)) and not contends(job("a", 0), job("b", 10))
    gone = job("b")
    gone.future.cancel()
    assert not contends(job("a"), gone)
