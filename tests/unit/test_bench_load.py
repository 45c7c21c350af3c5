"""The load benchmark's plain parts: argument parsing, vLLM's metrics text, aggregation of a
round's figures, the engine / in-process ratios and the typing each editor gets. No model, no
engine, no server."""

from __future__ import annotations

import argparse
import sysconfig
from pathlib import Path

import pytest

from tactful.tools.bench import available
from tactful.tools.bench.latency import RunResult
from tactful.tools.bench.load import (
    Round,
    aggregate,
    compare,
    editor_typing,
    engine_root,
    is_loopback_url,
    parse_args,
    parse_editors,
    parse_metric,
    ratio,
)

METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="SmolLM2-135M-Instruct"} 3.0
vllm:num_requests_running{engine="1",model_name="SmolLM2-135M-Instruct"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="SmolLM2-135M-Instruct"} 2.0
vllm:num_requests_running_extra{engine="0"} 99.0
"""


def test_dispatched_by_name() -> None:
    assert "load" in available()
    assert "common" not in available()  # shared by the benchmarks, not one


def test_parse_editors() -> None:
    assert parse_editors("1,4,16") == [1, 4, 16]
    assert parse_editors(" 4 , 1 ,") == [4, 1]
    for bad in ("", "0", "-1", "1,x", "65", "4,4"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_editors(bad)


def test_parse_args_defaults_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_args([])
    assert args.editors == [1, 4] and args.keys == 30 and args.url is None
    assert parse_args(["--editors", "1,4,16", "--url", "http://127.0.0.1:8000/v1"]).editors == [
        1,
        4,
        16,
    ]
    for bad in (
        ["--url", "http://10.0.0.5:8000/v1"],
        ["--keys", "0"],
        ["--cap-s", "0"],
        ["--no-engine", "--no-in-process"],
        ["--editors", "0"],
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)
    assert "loopback" in capsys.readouterr().err


def test_loopback_and_root() -> None:
    assert is_loopback_url("http://127.0.0.1:8000/v1")
    assert is_loopback_url("http://localhost:1/v1")
    assert is_loopback_url("http://[::1]:8000/v1")
    assert not is_loopback_url("http://example.com/v1")
    assert not is_loopback_url("ftp://127.0.0.1/v1")
    assert engine_root("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000"


def test_parse_metric_sums_labels_and_ignores_lookalikes() -> None:
    assert parse_metric(METRICS, "vllm:num_requests_running") == 4.0
    assert parse_metric(METRICS, "vllm:num_requests_waiting") == 2.0
    assert parse_metric(METRICS, "vllm:gpu_cache_usage_perc") is None
    assert parse_metric("", "vllm:num_requests_running") is None
    assert parse_metric("vllm:num_requests_running 7\n", "vllm:num_requests_running") == 7.0


def _res(lat: list[float], shown: int, cancelled: int, backend: dict[str, int]) -> RunResult:
    r = RunResult("x", latencies_ms=lat, with_suggestion=shown, cancelled=cancelled)
    r.requests = len(lat) + cancelled
    r.status = {
        "backend": backend,
        "stats": {"model_calls": 2, "type_along": 1, "cache_hits": 0},
        "modelLatency": {"n": 2, "p50Ms": lat[0] * 10, "p95Ms": lat[-1] * 10},
    }
    return r


def test_aggregate_pools_all_editors() -> None:
    rnd = Round(
        "engine",
        2,
        results=[
            _res([10, 20, 30], 2, 1, {"engine_max_in_flight": 1, "engine_requests": 4}),
            _res([40, 50], 1, 0, {"engine_max_in_flight": 1, "engine_requests": 2}),
        ],
        wall_s=2.0,
        samples=[(0.0, 0.0), (2.0, 1.0), (1.0, None)],
    )
    a = aggregate(rnd)
    assert a["keys"] == 6 and a["answered"] == 5 and a["with_suggestion"] == 3
    assert a["cancelled_or_superseded"] == 1
    assert a["p50_ms"] == 30 and a["p95_ms"] == 50  # nearest rank: values that occurred
    assert a["completions_per_s"] == 1.5 and a["answers_per_s"] == 2.5
    assert a["engine_running_max"] == 2.0 and a["engine_running_mean"] == 1.0
    assert a["engine_waiting_max"] == 1.0 and a["metric_samples"] == 3
    assert a["max_in_flight_per_server"] == 1
    assert a["engine_requests"] == 6 and a["engine_failed"] == 0
    assert a["server_model_p50_ms_median"] == 250 and a["server_model_p95_ms_max"] == 500
    assert a["model_calls"] == 4 and a["type_along"] == 2 and a["cache_hits"] == 0


def test_aggregate_of_an_empty_round() -> None:
    a = aggregate(Round("in-process", 4, error="RuntimeError: boom"))
    assert a["p50_ms"] is None and a["p95_ms"] is None
    assert a["completions_per_s"] is None and a["engine_running_max"] is None
    assert a["engine_requests"] is None and a["error"] == "RuntimeError: boom"


def test_ratio_and_compare() -> None:
    assert ratio(3, 2) == 1.5
    assert ratio(9.4, 3303.5) == 0.00285  # small ratios keep their digits
    assert ratio(None, 2) is None and ratio(1, None) is None and ratio(1, 0) is None
    eng = {"p50_ms": 200.0, "p95_ms": 900.0, "completions_per_s": 3.0}
    loc = {"p50_ms": 400.0, "p95_ms": 600.0, "completions_per_s": 1.5}
    assert compare(eng, loc) == {"p50": 0.5, "p95": 1.5, "completions_per_s": 2.0}


def test_editor_typing_is_distinct_bounded_and_seeded() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [stdlib / "textwrap.py", stdlib / "shlex.py"]
    got = editor_typing(files, 4, 30, seed=1)
    assert len(got) == 4
    assert all(1 <= len(t.typed) <= 30 for t in got)
    assert len({(t.path, t.before) for t in got}) == 4  # each editor its own stretch
    for t in got:  # the document is the real file, cut where the typing starts
        assert (t.before + t.typed) in Path(t.path).read_text(encoding="utf-8")
    assert editor_typing(files, 4, 30, seed=1) == got
