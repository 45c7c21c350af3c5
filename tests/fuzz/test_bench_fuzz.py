"""``tactful bench fuzz`` at a small size: it runs, prints its figures, and the server holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TACTFUL = str(Path(sys.executable).parent / "tactful")


def test_bench_fuzz_small() -> None:
    proc = subprocess.run(
        [TACTFUL, "bench", "fuzz", "-n", "300", "--rounds", "2", "--seed", "3"],
        capture_output=True,
        timeout=300,
        env=dict(os.environ),
        check=False,
    )
    out = proc.stdout.decode()
    figures = json.loads(out[out.index("{") :])
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert figures["messages"] == 300
    assert figures["crashes"] == 0 and figures["unanswered"] == 0
    assert figures["answered"] == figures["requestsDue"] > 80
    assert figures["showMessages"] <= 12
    assert figures["rssMb"]["end"] > 0
