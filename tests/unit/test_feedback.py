"""The feedback log store: durability, concurrency, schema, privacy, export and the CUPS importer."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tactful.feedback import cli as feedback_cli
from tactful.feedback import importers
from tactful.feedback import store as feedback
from tactful.feedback.store import FeedbackError, FeedbackLog

REPO = Path(__file__).resolve().parents[2]
CUPS = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "cups_copilot"
    / "cups_events.jsonl.gz"
)

WRITER = textwrap.dedent(
    """
    import sys
    from tactful.feedback.store import FeedbackLog
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = FeedbackLog(path, session=tag)
    i = 0
    while n < 0 or i < n:
        log.record("requested", f"{tag}-{i}", {"i": i, "features": {"doc_len": i}})
        i += 1
        print(i, flush=True)  # printed only once record() has returned
    """
)


def test_record_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = FeedbackLog(path, session="s1", user="u1")
    assert log.record(
        "requested", "a", {"features": {"doc_len": 3.0}}, uri="file:///x.py", language="python"
    )
    assert log.record("shown", "a", {"text": "print(x)"})
    assert log.record("accepted", "a", {"accepted_length": 8, "full": True, "via": "command"})
    log.close()
    events = list(feedback.read_events(path))
    assert [e.kind for e in events] == ["requested", "shown", "accepted"]
    assert events[0].data["features"]["doc_len"] == 3.0 and events[0].uri == "file:///x.py"
    assert {e.session for e in events} == {"s1"} and {e.user for e in events} == {"u1"}
    with pytest.raises(ValueError):
        FeedbackLog(path).record("bogus")


def test_schema_version_wal_and_owner_only_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "log.sqlite3"
    log = FeedbackLog(path)
    log.record("requested", "a", {})
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == feedback.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    for p in (path, Path(str(path) + "-wal"), Path(str(path) + "-shm")):
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, f"{p} is readable by others"
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    log.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    FeedbackLog(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {feedback.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(FeedbackError, match="newer"):
        FeedbackLog(path)
    with pytest.raises(FeedbackError, match="newer"):
        list(feedback.read_events(path))


def test_not_a_log_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, not a database\n" * 100)
    with pytest.raises(FeedbackError):
        list(feedback.read_events(bad))
    with pytest.raises(FeedbackError, match="no feedback log"):
        list(feedback.read_events(tmp_path / "missing.sqlite3"))


def filled_log(path: Path) -> None:
    """A real log of 300 events at ``path``, checkpointed into the main file and closed."""
    log = FeedbackLog(path)
    for i in range(300):
        log.record("requested", f"s{i}", {"text": "x" * 200})
    log._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    log.close()


def _damaged_log(path: Path, where: slice) -> bytes:
    """``filled_log``, then ``where`` of its bytes overwritten with random ones; returns the
    damaged file's bytes."""
    filled_log(path)
    raw = bytearray(path.read_bytes())
    raw[where] = os.urandom(len(raw[where]))
    path.write_bytes(bytes(raw))
    os.chmod(path, 0o644)  # as an older tactful may have left it
    return bytes(raw)


@pytest.mark.parametrize(
    "where",
    [slice(100, 3000), slice(0, 100)],
    ids=["schema page malformed", "header gone: not a database"],
)
def test_a_log_damaged_at_open_is_moved_aside_and_a_new_one_started(
    tmp_path: Path, where: slice
) -> None:
    path = tmp_path / "feedback.sqlite3"
    damaged = _damaged_log(path, where)
    with pytest.raises(FeedbackError):  # SQLite really finds it damaged
        list(feedback.read_events(path))
    log = FeedbackLog(path)
    faults: list[tuple[str, str]] = []
    log.watch(lambda k, m: faults.append((k, m)))  # the hub watches after opening
    assert len(faults) == 1 and faults[0][0] == "corrupt"
    (aside,) = log.moved_aside
    assert aside.name.startswith("feedback.sqlite3.corrupt-") and aside.parent == tmp_path
    assert str(aside) in faults[0][1] and ".recover" in faults[0][1]
    assert aside.read_bytes() == damaged, "the damaged file is kept as it was"
    assert stat.S_IMODE(aside.stat().st_mode) == 0o600
    assert all(log.record("shown", f"t{i}", {"text": "y"}) for i in range(5))
    log.close()
    assert faults == faults[:1], "told once"
    assert [e.kind for e in feedback.read_events(path)] == ["shown"] * 5
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The new log opens as any healthy one: nothing moved again, the events are still there.
    again = FeedbackLog(path)
    again.record("accepted", "t0", {"accepted_length": 1})
    again.close()
    assert not again.moved_aside
    assert [e.kind for e in feedback.read_events(path)] == ["shown"] * 5 + ["accepted"]
    kept = {p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name}
    assert aside.name in kept and kept <= {aside.name + s for s in ("", "-wal", "-shm")}


def test_a_second_damaged_log_does_not_overwrite_the_first_one_kept(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite3"
    kept = []
    for _ in range(2):
        damaged = _damaged_log(path, slice(100, 3000))
        log = FeedbackLog(path)
        kept.append((log.moved_aside[0], damaged))
        log.close()
        path.unlink()
    assert kept[0][0] != kept[1][0]
    assert all(p.read_bytes() == raw for p, raw in kept)


def test_a_log_another_process_already_replaced_is_not_moved(tmp_path: Path) -> None:
    from tactful.feedback import logfile

    path = tmp_path / "feedback.sqlite3"
    _damaged_log(path, slice(100, 3000))
    found = logfile.file_id(path)  # what this process found damaged
    path.rename(tmp_path / "moved-by-the-other")  # meanwhile another process moved it aside ...
    FeedbackLog(path).close()  # ... and started a new log
    assert logfile.move_aside(path, found) is None
    assert [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name] == []
    assert list(feedback.read_events(path)) == [], "the new log is where it was"


def test_a_damaged_file_without_tactful_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite3"
    _damaged_log(path, slice(0, 4096))  # the whole first page: nothing says it is a log
    before = path.read_bytes()
    with pytest.raises(FeedbackError, match="not a tactful feedback log"):
        FeedbackLog(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["feedback.sqlite3"]


def test_hash_mode_keeps_no_code_text(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    secret = "api_key = 'hunter2-very-secret'"
    log = FeedbackLog(path, store_text="hash")
    log.record("shown", "a", {"text": secret})
    log.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("log.sqlite3"))
    assert b"hunter2" not in raw
    (ev,) = list(feedback.read_events(path))
    assert ev.data == {"text_sha256": feedback.text_hash(secret)}


def test_hash_mode_hashes_the_logged_context_too(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = FeedbackLog(path, store_text="hash")
    log.record(
        "requested", "a", {"prefix": "token = 'hunter2'\n", "suffix": "# hunter3", "line": 1}
    )
    log.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("log.sqlite3"))
    assert b"hunter2" not in raw and b"hunter3" not in raw
    (ev,) = list(feedback.read_events(path))
    assert set(ev.data) == {"prefix_sha256", "suffix_sha256", "line"}


def test_export_jsonl_and_stats(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = FeedbackLog(path)
    for sid, outcome in (("a", "accepted"), ("b", "rejected"), ("c", "rejected")):
        log.record("requested", sid, {"features": {"doc_len": 1.0}})
        log.record("shown", sid, {"text": "x"})
        log.record(
            outcome, sid, {"reason": "timeout"} if outcome == "rejected" else {"accepted_length": 1}
        )
    log.close()
    buf = io.StringIO()
    assert feedback.export_jsonl(path, buf) == 9
    rows = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert (
        rows[0]["kind"] == "requested"
        and rows[0]["suggestionId"] == "a"
        and rows[0]["data"]["features"] == {"doc_len": 1.0}
    )
    st = feedback.stats(path)
    assert st["decisions"] == 3 and st["accepted"] == 1 and st["rejectReasons"] == {"timeout": 2}
    out = tmp_path / "out.jsonl"
    assert feedback_cli.main(["export", "--log", str(path), "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 9
    assert feedback_cli.main(["stats", "--log", str(tmp_path / "nope.sqlite3")]) == 1


def test_accept_wins_over_inferred_rejection(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = FeedbackLog(path)
    log.record("requested", "a", {"features": {"doc_len": 1.0}})
    log.record("shown", "a", {"text": "x"})
    log.record("rejected", "a", {"reason": "timeout"})
    log.record("accepted", "a", {"accepted_length": 1})
    log.close()
    (d,) = feedback.load_decisions(path)
    assert d.accepted and d.features == {"doc_len": 1.0}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "server")
    return env


def test_events_survive_sigkill(tmp_path: Path) -> None:
    """Every event whose record() returned is in the log after the writer is SIGKILLed."""
    path = tmp_path / "log.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "w", "-1"],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert proc.stdout is not None
    confirmed = 0
    deadline = time.time() + 60
    while confirmed < 200 and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        confirmed = int(line)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for line in proc.stdout.read().splitlines():  # confirmations already in the pipe
        if line.strip():
            confirmed = int(line)
    assert confirmed >= 200
    n = sum(1 for _ in feedback.read_events(path))
    # The writer may have written one more event after its last print.
    assert confirmed <= n <= confirmed + 1


def test_two_processes_write_one_log(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), tag, "300"],
            stdout=subprocess.DEVNULL,
            env=_env(),
        )
        for tag in ("p1", "p2")
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    events = list(feedback.read_events(path))
    assert len(events) == 600
    ids = [e.suggestion_id for e in events]
    assert len(set(ids)) == 600
    for tag in ("p1", "p2"):
        mine = [e.data["i"] for e in events if e.session == tag]
        assert mine == list(range(300)), "each writer's events are all there, in order"


def _cups_rows() -> list[dict]:
    base = {
        "user_id": 3,
        "session_index": 3,
        "task": "t",
        "labeled_state": "x",
        "hidden_state": "UserTyping",
        "edit_percentage": [0, 0, 0, 0, 0],
    }
    prompt = "#!/usr/bin/env python3\n# Path: code.py\nimport numpy as np\ndef f(x):\n    return "
    m_shown = {
        "documentLength": 60.0,
        "promptEndPos": 60.0,
        "meanLogProb": -0.5,
        "numTokens": 3.0,
        "timeSinceIssuedMs": 200.0,
        "compCharLen": 5.0,
    }
    m_decided = {**m_shown, "meanLogProb": -0.01, "numTokens": 40.0, "compCharLen": 99.0}
    return [
        {
            **base,
            "event_index": 0,
            "time_generated": "2022-08-08T16:00:00.000Z",
            "state_name": "Shown",
            "suggestion": "x + 1",
            "prompt": prompt,
            "measurements": m_shown,
        },
        {
            **base,
            "event_index": 1,
            "time_generated": "2022-08-08T16:00:00.500Z",
            "state_name": "Replay",
            "suggestion": "x + 1",
            "prompt": prompt,
            "measurements": m_shown,
        },
        {
            **base,
            "event_index": 2,
            "time_generated": "2022-08-08T16:00:02.000Z",
            "state_name": "Accepted",
            "suggestion": "x + 1",
            "prompt": prompt,
            "measurements": m_decided,
            "edit_percentage": [0.0, 0.1, 0.2, 0.5, 1.0],
        },
        {
            **base,
            "event_index": 3,
            "time_generated": "2022-08-08T16:00:10.000Z",
            "state_name": "Shown",
            "suggestion": "print(x)",
            "prompt": prompt + "x + 1\n",
            "measurements": {**m_shown, "documentLength": 70.0, "promptEndPos": 66.0},
        },
        {
            **base,
            "event_index": 4,
            "time_generated": "2022-08-08T16:00:11.000Z",
            "state_name": "Rejected",
            "suggestion": "print(x)",
            "prompt": prompt,
            "measurements": m_decided,
        },
    ]


def test_import_cups_uses_the_shown_rows_features(tmp_path: Path) -> None:
    src = tmp_path / "cups.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as fh:
        for r in _cups_rows():
            fh.write(json.dumps(r) + "\n")
    out = tmp_path / "cups.sqlite3"
    assert feedback_cli.main(["import-cups", str(src), "--out", str(out)]) == 0
    rows = feedback.load_decisions(out)
    assert [r.accepted for r in rows] == [True, False]
    first, second = rows
    assert first.user == "cups-3" and first.session == "cups-3"
    f = first.features
    assert f["mean_logprob"] == -0.5 and f["sugg_tokens"] == 3.0 and f["sugg_chars"] == 5.0, (
        "features of the Shown row, not the decision row"
    )
    assert f["doc_len"] == 60.0 and f["offset_frac"] == 1.0 and f["ws_after_cursor"] == 1.0
    assert f["since_shown"] is None and f["session_accept_rate"] is None
    assert first.survival == {"0": 1.0, "1": 0.9, "2": 0.8, "3": 0.5, "4": 0.0}
    s = second.features
    assert s["ws_after_cursor"] is None, "cursor before the end of the document, suffix unknown"
    assert s["session_accept_rate"] == 1.0 and s["prev_outcome"] == 1.0
    assert s["since_accepted"] == pytest.approx(10.0 - 2.0 - 0.2)
    # The importer never overwrites an existing log.
    assert feedback_cli.main(["import-cups", str(src), "--out", str(out)]) == 1


def test_import_cups_rejects_other_files(tmp_path: Path) -> None:
    src = tmp_path / "x.jsonl"
    src.write_text('{"hello": 1}\n')
    with pytest.raises(FeedbackError, match="not a CUPS event"):
        importers.import_cups(src, tmp_path / "o.sqlite3")


@pytest.mark.skipif(not CUPS.is_file(), reason="CUPS data not present")
def test_import_real_cups(tmp_path: Path) -> None:
    counts = importers.import_cups(CUPS, tmp_path / "cups.sqlite3")
    assert counts["accepted"] == 224 and counts["rejected"] == 429
    rows = feedback.load_decisions(tmp_path / "cups.sqlite3")
    assert len(rows) == 653 and len({r.user for r in rows}) == 14
    st = feedback.stats(tmp_path / "cups.sqlite3")
    assert st["decisions"] == 653 and set(st["survival"]) == {"0", "1", "2", "3", "4"}
    assert all(0.0 <= v <= 1.0 for v in st["survival"].values())


def test_glances_are_not_decisions(tmp_path: Path) -> None:
    """A suggestion replaced by typing within 0.75 s was hardly seen: not a training decision."""
    path = tmp_path / "log.sqlite3"
    log = FeedbackLog(path)
    for sid, reason, after in (
        ("a", "new_request", 0.2),
        ("b", "new_request", 2.0),
        ("c", "explicit", 0.1),
        ("d", "diverged", 0.5),
    ):
        log.record("requested", sid, {"features": {"doc_len": 1.0}}, t=100.0)
        log.record("shown", sid, {"text": "x"}, t=100.0)
        log.record("rejected", sid, {"reason": reason}, t=100.0 + after)
    log.close()
    assert [d.suggestion_id for d in feedback.load_decisions(path)] == ["b", "c"]
    assert len(feedback.load_decisions(path, min_visible_s=0.0)) == 4


def test_odd_values_never_lose_an_event(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "log.sqlite3"
    log = FeedbackLog(path)
    assert log.record(
        "generated",
        "a",
        {"features": {"x": float("nan"), "y": float("inf"), "z": np.float32(0.5)}, "p": tmp_path},
    )
    log.close()
    (ev,) = list(feedback.read_events(path))
    assert ev.data["features"] == {"x": None, "y": None, "z": 0.5} and ev.data["p"] == str(tmp_path)
