"""Re-flagging after an edit redoes only the windows whose text changed (real embedded model),
also after a restart, from the persistent flag cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tactful.backend.types import LineScores
from tactful.cache import JsonCache
from tactful.flags import memo as flag_memo
from tactful.flags import plan as flag_plan
from tactful.flags.job import FlagJob
from tactful.flags.memo import WindowMemo
from tactful.flags.model import FlagModel
from tactful.flags.plan import RegenOptions

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
    from tactful.flags.datasets import set_threads

    backend = TransformersBackend.load(None, cache_dir=paths.cache_dir())
    set_threads(1)
    return backend


def _run(
    backend: Any, text: str, memo: WindowMemo | None, budget: float = 0.2
) -> tuple[FlagJob, list[Any]]:
    # One line at a time: a line's regeneration is then the same whichever lines it is done
    # with (in a batch it can differ at a bfloat16 tie, and an edit changes the batches).
    job = FlagJob(
        text,
        "python",
        model=FlagModel.load(),
        key="memo",
        memo=memo,
        budget=budget,
        options=RegenOptions(batch=1),
    )
    for unit in job.steps():
        unit(backend)
    res = job.result()
    return job, [(f.line, round(f.score, 6), f.suggestion) for f in res.flags]


@pytest.mark.model
def test_an_edit_rescores_only_its_window(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small windows, so that one fixture program spans three of them.
    monkeypatch.setattr(flag_plan, "WINDOW_CHARS", 600)
    monkeypatch.setattr(flag_plan, "CONTEXT_LINES", 4)
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
    memo = WindowMemo(windows=2)
    for k in range(3):
        memo.put(("m", str(k)), flag_memo.WindowRecord(LineScores([], [], 0)))
    assert len(memo) == 2 and memo.get(("m", "0")) is None and memo.get(("m", "2")) is not None


@pytest.mark.model
def test_fim_regenerations_need_no_rescoring(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fill-in-the-middle backend regenerates from the text, not from the window's KV cache:
    # a line the memo lacks is regenerated without scoring its window again.
    monkeypatch.setattr(flag_plan, "WINDOW_CHARS", 600)
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


@pytest.mark.model
def test_the_store_serves_a_restarted_server(
    backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flag_plan, "WINDOW_CHARS", 600)
    text = (FIXTURES / "inventory.py.txt").read_text() + (FIXTURES / "stats.py.txt").read_text()
    counting = Counting(backend)
    first, flags = _run(counting, text, WindowMemo(store=JsonCache(tmp_path, 8)))
    assert len(first.windows) >= 2 and counting.scored and counting.generated

    # A new memo over the same folder (a restarted server): no model work, the same flags.
    counting = Counting(backend)
    memo = WindowMemo(store=JsonCache(tmp_path, 8))
    again, flags_again = _run(counting, text, memo)
    assert counting.scored == [] and counting.generated == 0
    assert again.reused["windows"] == len(first.windows) == memo.loaded
    assert flags_again == flags

    # A larger budget regenerates more lines; the records on disk gain them.
    counting = Counting(backend)
    _wider, flags_wider = _run(counting, text, memo, budget=0.35)
    assert counting.generated > 0
    counting = Counting(backend)
    _third, flags_third = _run(counting, text, WindowMemo(store=JsonCache(tmp_path, 8)), 0.35)
    assert counting.scored == [] and counting.generated == 0
    assert flags_third == flags_wider
    _fresh, flags_fresh = _run(backend, text, None, budget=0.35)
    assert flags_wider == flags_fresh


def _record() -> flag_memo.WindowRecord:
    scores = LineScores(
        [[-0.125, -3.0517578125e-05], [], [-7.25]],
        [[1.5, 0.0009765625], [], [2.0]],
        3,
        token_starts=[0, 4, 9],
        token_greedy=[False, True, False],
    )
    return flag_memo.WindowRecord(scores, {0: ("x = 1", [0.1, 1.0 / 3.0, -2.5], 1), 2: ("", [], 0)})


def test_a_record_survives_json_exactly(tmp_path: Path) -> None:
    import json

    rec = _record()
    assert flag_memo.WindowRecord.from_json(json.loads(json.dumps(rec.to_json()))) == rec
    key = ("model:torch.bfloat16:fast", "x = 1\ny = 2")
    WindowMemo(store=JsonCache(tmp_path, 1)).put(key, rec)
    memo = WindowMemo(store=JsonCache(tmp_path, 1))
    assert memo.get(key) == rec and memo.loaded == 1 and len(memo) == 1
    # Another model, dtype or text is another record.
    assert memo.get(("model:torch.float32:fast", key[1])) is None
    assert memo.get((key[0], key[1] + " ")) is None
    # Clearing the memory (a model change) keeps what is on disk.
    memo.clear()
    assert len(memo) == 0 and memo.get(key) == rec


def test_an_unreadable_record_is_a_miss(tmp_path: Path) -> None:
    store = JsonCache(tmp_path, 1)
    memo = WindowMemo(store=store)
    key = ("m", "text")
    for bad in ({"lp": [[0.1]], "ent": []}, {"lp": "x"}, {}, {"regens": 3}):
        store.put(WindowMemo._disk_key(key), bad)
        assert memo.get(key) is None
    memo.put(key, _record())
    assert WindowMemo(store=store).get(key) == _record()
