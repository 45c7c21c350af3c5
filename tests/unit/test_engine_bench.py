"""``tactful bench engine``'s figures from measured rows (the measuring needs a real engine:
tests/engine/ and docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from tactful.tools.bench.engine import build_report, print_report, prompts


def row(kind: str, same: bool, local_ms: float, engine_ms: float) -> dict[str, object]:
    return {
        "kind": kind,
        "end": "x = (",
        "local": "a",
        "engine": "a" if same else "b",
        "same": same,
        "local_ms": local_ms,
        "engine_ms": engine_ms,
    }


def test_report_counts_parity_per_kind_and_compares_medians(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [
        row("punct", True, 10, 30),
        row("punct", False, 20, 40),
        row("indent", True, 30, 50),
        row("heal", False, 40, 60),
    ]
    cancels = [
        {"tokens_before_cancel": 5, "stream_closed_after_ms": 2.0, "engine_idle_after_ms": None},
        {"tokens_before_cancel": 6, "stream_closed_after_ms": 4.0, "engine_idle_after_ms": None},
    ]
    r = build_report("m @ h", "local", rows, cancels)
    assert r["parity"]["all"] == {"prompts": 4, "same": 2, "parity": 0.5}
    assert r["parity"]["punct"]["same"] == 1 and r["parity"]["heal"]["parity"] == 0.0
    assert r["latency_ms"]["in_process_p50"] == 25 and r["latency_ms"]["engine_p50"] == 45
    assert r["latency_ms"]["ratio_engine_over_in_process_p50"] == 1.8
    assert r["cancel"]["stream_closed_after_ms_p50"] == 3.0
    assert r["cancel"]["stream_closed_after_ms_max"] == 4.0
    assert r["cancel"]["engine_idle_after_ms_p50"] is None
    assert [d["kind"] for d in r["differing"]] == ["punct", "heal"]
    print_report(r)
    out = capsys.readouterr().out
    assert "parity all  : 2/4 = 0.5" in out and "ratio 1.8" in out and "differs [heal]" in out


def test_prompts_are_split_across_the_three_kinds() -> None:
    cases = prompts(12)
    kinds = [k for k, _ in cases]
    assert len(cases) == 12 and {"punct", "indent", "heal"} == set(kinds)
    assert all(p.endswith(("(", "[", ".", "=")) for k, p in cases if k == "punct")
    assert all(p.endswith((" ", "\t")) for k, p in cases if k == "indent")


def test_fallback_report_spreads_and_who_answered() -> None:
    import argparse

    from tactful.tools.bench.fallback import build_report, who

    assert (
        who(None) == "none"
        and who(" engine_answer(a, b)") == "engine"
        and who(" a + b") == "fallback"
    )
    trials = [
        {
            "mode": "kill",
            "death_to_answer_ms": ms,
            "request_ms": ms + 300,
            "answered_by": by,
            "next_ms": 200.0,
            "next_answered_by": "fallback",
            "recovered_s": 1.5,
            "keys": 0,
            "told_fallback_s": None,
        }
        for ms, by in ((100.0, "fallback"), (300.0, "fallback"), (200.0, "none"))
    ]
    args = argparse.Namespace(timeout_ms=2000, token_ms=100.0, key_ms=150.0)
    r = build_report(trials, ["down", "up"], args, 12.3)
    k = r["modes"]["kill"]
    assert "hang" not in r["modes"] and k["trials"] == 3
    assert k["death_to_answer_ms"]["p50"] == 200 and k["death_to_answer_ms"]["max"] == 300
    assert k["answered_by"] == {"fallback": 2, "engine": 0, "none": 1}
    assert k["next_answered_by_fallback"] == 3 and r["messages"] == 2


def test_the_stand_in_engine_serves_and_dies_mid_stream() -> None:
    """``tactful bench fallback``'s engine: the engine backend reads its stream, and killing it
    mid-stream breaks the stream, as a real engine's death does."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import threading
    import time

    from tactful.backend.engine import PROTOCOL, EngineBackend, EngineError
    from tactful.backend.types import GenerateRequest
    from tactful.tools.bench._fake_engine import MARK

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tactful.tools.bench._fake_engine", str(port), "100"],
        stdout=subprocess.PIPE,
    )
    b = None
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        b = EngineBackend(f"http://127.0.0.1:{port}/v1", timeout_s=10)
        b.connect()
        assert b.model == "fake-engine" and not b.fim
        gen = b.generate(GenerateRequest(prefix="def add(a, b):\n    return"))
        assert gen.text == f" {MARK}(a, b)" and gen.stopped
        assert proc.stdout.readline().strip() == b"stream"
        failed: list[EngineError] = []

        def ask(engine: EngineBackend = b) -> None:
            try:
                engine.generate(GenerateRequest(prefix="x"))
            except EngineError as exc:
                failed.append(exc)

        t = threading.Thread(target=ask)
        t.start()
        assert proc.stdout.readline().strip() == b"stream"  # it is writing the answer
        time.sleep(0.15)
        os.kill(proc.pid, signal.SIGKILL)
        t.join(10)
        assert [e.kind for e in failed] == [PROTOCOL]
    finally:
        if b is not None:
            b.close()
        proc.kill()
        proc.wait()
