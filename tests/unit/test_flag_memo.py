"""Re-flagging after an edit redoes only the windows whose text changed (real embedded model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tactful import flag
from tactful.flag import FlagJob, FlagModel, WindowMemo

pytestmark = pytest.mark.model

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "flag"


class Counting:
    """The backend, counting the scoring passes and the lines generated."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.scored: list[str] = []
        self.generated = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def score_into_slot(self, text: str, *args: Any) -> Any:
        self.scored.append(text)
        return self.backend.score_into_slot(text, *args)

    def generate(self, req: Any) -> Any:
        self.generated += 1
        return self.backend.generate(req)

    def generate_many(self, reqs: Any) -> Any:
        self.generated += len(reqs)
        return self.backend.generate_many(reqs)


@pytest.fixture(scope="module")
def backend() -> Any:
    from tactful import paths
    from tactful.backend.hf import TransformersBackend
    from tactful.flag_train import set_threads

    backend = TransformersBackend.load(None, cache_dir=paths.cache_dir())
    set_threads(1)
    return backend


def _run(
    backend: Any, text: str, memo: WindowMemo | None, budget: float = 0.2
) -> tuple[FlagJob, list[Any]]:
    # One line at a time: a line's regeneration is then the same whichever lines it is done
    # with (in a batch it can differ at a bfloat16 tie, and an edit changes the batches).
    job = FlagJob(
        text, "python", model=FlagModel.load(), key="memo", memo=memo, budget=budget, batch=1
    )
    for unit in job.steps():
        unit(backend)
    res = job.result()
    return job, [(f.line, round(f.score, 6), f.suggestion) for f in res.flags]


def test_an_edit_rescores_only_its_window(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small windows, so that one fixture program spans three of them.
    monkeypatch.setattr(flag, "WINDOW_CHARS", 600)
    monkeypatch.setattr(flag, "CONTEXT_LINES", 4)
    text = "\n".join(
        (FIXTURES / name).read_text().rstrip("\n")
        for name in ("inventory.py.txt", "stats.py.txt", "primes.py.txt")
    )
    memo = WindowMemo()
    counting = Counting(backend)
    first, flags = _run(counting, text, memo)
    assert len(first.windows) >= 3 and flags
    assert len(counting.scored) == len(first.windows) and counting.generated > 0
    assert len(memo) == len(first.windows)

    # The same text again: no model work, the same flags.
    counting = Counting(backend)
    again, flags_again = _run(counting, text, memo)
    assert counting.scored == [] and counting.generated == 0
    assert again.reused["windows"] == len(first.windows)
    assert flags_again == flags

    # One line of the last window edited: only that window is scored again, and the flags
    # are those of a run without the memo.
    lines = text.split("\n")
    last = first.windows[-1]
    target = next(i for i in range(last.start, last.end) if "return" in lines[i])
    lines[target] = lines[target].replace("return", "return 1 +", 1)
    edited = "\n".join(lines)
    counting = Counting(backend)
    job, flags_edited = _run(counting, edited, memo)
    assert len(counting.scored) == 1
    assert counting.scored[0] == "\n".join(lines[last.ctx_start : last.end])
    assert job.reused["windows"] == len(first.windows) - 1
    _fresh, flags_fresh = _run(backend, edited, None)
    assert flags_edited == flags_fresh

    # A larger budget picks lines the memo has not regenerated: their windows are scored again
    # (the regenerations continue the window's KV cache), the others are not.
    counting = Counting(backend)
    wider, flags_wider = _run(counting, edited, memo, budget=0.35)
    assert wider.reused["regenerations"] > 0 and counting.generated > 0
    assert 0 < len(counting.scored) <= len(first.windows)
    _fresh, flags_fresh = _run(backend, edited, None, budget=0.35)
    assert flags_wider == flags_fresh


def test_memo_is_bounded() -> None:
    from tactful.backend.types import LineScores

    memo = WindowMemo(windows=2)
    for k in range(3):
        memo.put(("m", str(k)), flag._WindowRecord(LineScores([], [], 0)))
    assert len(memo) == 2 and memo.get(("m", "0")) is None and memo.get(("m", "2")) is not None


def test_fim_regenerations_need_no_rescoring(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fill-in-the-middle backend regenerates from the text, not from the window's KV cache:
    # a line the memo lacks is regenerated without scoring its window again.
    monkeypatch.setattr(flag, "WINDOW_CHARS", 600)
    text = (FIXTURES / "inventory.py.txt").read_text() + (FIXTURES / "stats.py.txt").read_text()
    memo = WindowMemo()
    fim = Counting(backend)
    fim.fim = True
    _run(fim, text, memo)
    assert fim.scored
    fim.scored, fim.generated = [], 0
    job, _flags = _run(fim, text, memo, budget=0.35)
    assert fim.scored == [] and fim.generated > 0
    assert job.reused["windows"] == len(job.windows)
