"""``tactful bench flag_engine``'s run with the real embedded model: each program flagged by the
flag job on both sides, and a side that cannot flag (the routing backend of an engine that is not
there, with no fallback) recorded as failed on every program while the other side goes on. The
run against a real engine is in docs/benchmarks.md."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from tactful.backend.engine import open_engine
from tactful.config import EngineSettings
from tactful.flags.job import flag_document
from tactful.flags.model import FlagModel
from tactful.tools.bench.flag_engine import _flag_both, agreement, side_summary

pytestmark = pytest.mark.model

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "flag"


@pytest.fixture(scope="module")
def backend() -> Any:
    from tactful import paths
    from tactful.backend.hf import TransformersBackend
    from tactful.flags.datasets import set_threads

    backend = TransformersBackend.load(None, cache_dir=paths.cache_dir())
    set_threads(1)
    return backend


def programs() -> list[tuple[str, str, int]]:
    bugs: dict[str, int] = json.loads((FIXTURES / "bugs.json").read_text())
    return [(n, (FIXTURES / n).read_text(), line - 1) for n, line in sorted(bugs.items())[:2]]


def test_both_sides_run_the_flag_job(backend: Any) -> None:
    model = FlagModel.load()
    progs = programs()
    counters = {"requests": 0, "failed": 0, "heal_missed": 0}
    log = io.StringIO()
    records = _flag_both(
        {"in_process": backend, "engine": backend}, progs, model, 0.15, lambda: counters, log
    )
    for side in ("in_process", "engine"):
        assert [r["id"] for r in records[side]] == [p[0] for p in progs]
    for (name, text, _bug), r in zip(progs, records["in_process"], strict=True):
        # The flags are the flag job's, as the CLI's flag_document gives them.
        res = flag_document(backend, text, "python", 0.15, model=model, key="bench")
        assert r["flags"] == sorted(f.line for f in res.flags), name
        assert r["lines"] == res.lines and r["seconds"] > 0 and "requests" not in r
    assert all(r["requests"] == 0 for r in records["engine"])
    # The same greedy model on both sides: the same flags.
    ag = agreement(records["in_process"], records["engine"])
    assert ag["identical_flag_sets"] == len(progs) and ag["mean_jaccard"] == 1.0
    assert log.getvalue().count("in_process ") == len(progs)


def test_an_engine_that_is_not_there_fails_each_program_and_the_run_goes_on(backend: Any) -> None:
    settings = EngineSettings(
        url="http://127.0.0.1:9/v1", connect_timeout_ms=200, timeout_ms=1000, on_unreachable="none"
    )
    gone = open_engine(settings, None, notify=lambda _m: None)
    try:
        assert gone.serving == "none"
        records = _flag_both(
            {"in_process": backend, "engine": gone},
            programs()[:1],
            FlagModel.load(),
            0.15,
            lambda: gone.engine.stats,
            io.StringIO(),
        )
    finally:
        gone.close()
    assert all("flags are off" in r["error"] for r in records["engine"])
    assert side_summary(records["engine"]) == {"programs": 0, "failed": 1}
    assert side_summary(records["in_process"])["programs"] == 1
    assert agreement(records["in_process"], records["engine"]) == {"programs": 0}
