"""SIGKILL at random points: every event whose ``record`` returned is in the log afterwards, and
the log opens and takes new events (the server writes each event in its own transaction)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tactful.feedback.store import FeedbackLog, read_events

WRITER = """
import sys
from tactful.feedback.store import FeedbackLog
log = FeedbackLog(sys.argv[1])
i = 0
while True:
    assert log.record("shown", f"s{i}", {"text": "x" * (i % 500), "prefix": "\\ud800" if i % 7 == 0 else "p"},
                      uri=f"file:///\\ud800{i}.py")
    print(i, flush=True)  # written: it must survive the kill
    i += 1
"""


def test_events_survive_sigkill_at_random_points(tmp_path: Path) -> None:
    rng = random.Random(28)
    path = tmp_path / "f.sqlite3"
    total = 0  # events confirmed so far (printed after record returned)
    for round_ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert proc.stdout is not None
        # Kill at a random point after the writer is writing (its start-up, slow on a loaded
        # machine, is not the point of the test).
        first = proc.stdout.readline().decode()
        time.sleep(rng.random() * 1.5)
        proc.send_signal(signal.SIGKILL)
        out = (first + proc.stdout.read().decode()).split()
        proc.wait()
        assert out, f"round {round_}: the writer wrote nothing"
        total += int(out[-1]) + 1
        n = len(list(read_events(path)))
        assert n >= total, f"round {round_}: {total - n} confirmed events lost"
        total = n  # an event written between the last print and the kill counts too
    log = FeedbackLog(path)  # opens after the kills and takes new events
    assert log.record("accepted", "s0", {"accepted_length": 1})
    log.close()
    assert list(read_events(path))[-1].kind == "accepted"
