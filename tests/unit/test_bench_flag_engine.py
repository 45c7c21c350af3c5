"""``tactful bench flag_engine``'s figures from per-program records (the flagging itself needs
the model, tests/model/test_bench_flag_engine_run.py, and a real engine: docs/benchmarks.md)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tactful.backend.engine import open_engine
from tactful.config import EngineSettings
from tactful.tools.bench.flag_engine import agreement, count_http, print_table, side_summary


def rec(
    flags: list[int],
    hit: bool,
    *,
    seconds: float = 2.0,
    lines: int = 20,
    considered: int = 10,
    requests: int | None = None,
    failed: int = 0,
) -> dict[str, Any]:
    r: dict[str, Any] = {
        "flags": flags,
        "hit": hit,
        "top3": float(hit),
        "random_recall": 0.2,
        "random_top3": 0.3,
        "seconds": seconds,
        "lines": lines,
        "considered": considered,
        "regenerated": 4,
        "shortcuts": 1,
    }
    if requests is not None:
        r["requests"] = requests
        r["failed_requests"] = failed
        r["heal_retries"] = 1
        r["http_requests"] = requests + 2
    return r


def test_summary_compares_with_random_and_reports_seconds_per_100_lines() -> None:
    recs = [
        rec([1, 2], True, seconds=2.0, lines=20, requests=5),
        rec([3], False, seconds=6.0, lines=20, requests=7, failed=1),
        rec([4], True, seconds=1.0, lines=10, requests=4),
        rec([5], False, seconds=3.0, lines=10, requests=4),
        {"error": "ModelError: flags are off"},
    ]
    s = side_summary(recs)
    assert s["programs"] == 4 and s["failed"] == 1 and s["lines"] == 60
    assert s["recall_at_budget"] == 0.5 and s["random_recall"] == 0.2
    assert s["recall_ratio"] == 2.5 and s["top3_ratio"] == round(0.5 / 0.3, 2)
    # Per program: 10, 30, 10, 30 s per 100 lines; pooled 12 s over 60 lines.
    assert s["seconds_per_100_lines"] == 20.0
    assert s["seconds_per_100_lines_p50"] == 20.0 and s["seconds_per_100_lines_p95"] == 30.0
    assert s["requests"] == 20 and s["failed_requests"] == 1 and s["heal_retries"] == 4
    assert s["http_requests"] == 28
    assert s["requests_per_program"] == 5.0 and s["requests_per_100_lines"] == round(2000 / 60, 2)
    assert s["regenerated"] == 16 and s["regenerated_by_the_model"] == 12


def test_summary_without_counters_or_programs() -> None:
    assert "requests" not in side_summary([rec([1], True)])
    assert side_summary([{"error": "x"}, {"error": "y"}]) == {"programs": 0, "failed": 2}


def test_agreement_counts_identical_sets_jaccard_and_chance() -> None:
    a = [
        rec([1, 2], True, considered=10),
        rec([3, 4], False, considered=10),
        rec([], False, considered=5),
        rec([7], True),
    ]
    b = [
        rec([1, 2], True, considered=10),
        rec([4, 5], True, considered=10),
        rec([], False, considered=5),
        {"error": "EngineError: no answer within 10 s"},
    ]
    ag = agreement(a, b)
    assert ag["programs"] == 3  # the failed program is left out on both sides
    assert ag["identical_flag_sets"] == 2
    # Jaccard: 1 (same), 1/3 ({4} of {3, 4, 5}), 1 (both empty).
    assert ag["mean_jaccard"] == round((1 + 1 / 3 + 1) / 3, 4)
    # Overlap 2 * (2 + 1) / (4 + 4); chance 2 * (2 * 2 / 10 + 2 * 2 / 10) / 8.
    assert ag["pooled_overlap"] == 0.75 and ag["chance_overlap"] == 0.2
    assert ag["same_bug_outcome"] == 2


def test_agreement_of_nothing() -> None:
    assert agreement([{"error": "x"}], [rec([1], True)]) == {"programs": 0}
    ag = agreement([rec([], False)], [rec([], True)])
    assert ag["identical_flag_sets"] == 1 and ag["pooled_overlap"] is None
    assert ag["same_bug_outcome"] == 0
    with pytest.raises(ValueError):
        agreement([rec([1], True)], [])  # the runs must cover the same programs


def test_table_shows_both_sides_and_a_failed_side(capsys: pytest.CaptureFixture[str]) -> None:
    ok = side_summary([rec([1], True, requests=3)])
    report = {
        "in_process": side_summary([rec([1], True)]),
        "engine": ok,
        "agreement": agreement([rec([1], True)], [rec([1], True)]),
    }
    print_table(report)
    out = capsys.readouterr().out
    assert "recall at budget" in out and "5.0x" in out and "3 (0)" in out
    assert "HTTP requests" in out and " 5\n" in out
    assert "identical flag sets 1" in out
    report["engine"] = side_summary([{"error": "x"}])
    print_table(report)
    out = capsys.readouterr().out
    assert "0 (1)" in out  # a side that failed on every program: its count, then dashes
    assert "1.000 (5.0x)" in out and "-" in out.split("recall at budget")[1].split("\n")[0]


def test_every_http_request_of_the_engine_is_counted_by_path() -> None:
    served = {"object": "list", "data": [{"id": "smollm2"}]}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json=served)
        return httpx.Response(404, json={"error": "not here"})

    settings = EngineSettings(url="http://127.0.0.1:8000/v1", on_unreachable="none")
    engine = open_engine(settings, None, transport=httpx.MockTransport(answer))
    try:
        assert engine.serving == "engine"
        counts = count_http(engine)  # from now on: connecting (models, tokenize) is not counted
        assert engine.engine.health()
        assert engine.engine.health()
        with pytest.raises(Exception, match="tokenize"):
            engine.engine.count_tokens("x = 1")
    finally:
        engine.close()
    assert counts["models"] == 2
    assert counts["tokenize"] >= 1 and set(counts) == {"models", "tokenize"}
