"""``tactful bench latency`` end to end: a short typing session against the real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.model


def test_bench_latency_types_a_file_and_reports(tmp_path: Path) -> None:
    body = "\n".join(f"x{i} = {i}" for i in range(60))
    src = tmp_path / "sample.py"
    src.write_text(
        body + "\n\n\nclass Box:\n    def __init__(self, items):\n"
        "        self.items = list(items)\n        self.size = len(self.items)\n"
        "        self.empty = not self.items\n",
        encoding="utf-8",
    )
    tactful = str(Path(sys.executable).parent / "tactful")
    out = subprocess.run(
        [tactful, "bench", "latency", str(src), "--lines", "1", "--no-baseline", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    report = json.loads(out.stdout)
    (run,) = report["runs"]
    assert run["requests"] > 10  # one request per typed key
    assert run["answered"] + run["cancelled_or_superseded"] == run["requests"]
    assert run["p50_ms"] is not None and run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"]
    assert run["model_calls"] >= 1 and run["peak_rss_mb"] > 100
    assert run["prefilled_tokens"] > 0
