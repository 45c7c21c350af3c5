"""Faults of the feedback log (tactful.feedback.store): another application's database, a full
disk (SQLite's real SQLITE_FULL path through max_page_count), a damaged file, lone surrogates."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from tests.unit.test_feedback import filled_log

from tactful.feedback.store import FeedbackError, FeedbackLog, read_events


def test_another_applications_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "app.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE contacts (name TEXT)")
    conn.execute("INSERT INTO contacts VALUES ('ada')")
    conn.commit()
    conn.close()
    os.chmod(db, 0o644)
    before = db.read_bytes()
    with pytest.raises(FeedbackError, match="another application's SQLite database"):
        FeedbackLog(db)
    assert db.read_bytes() == before
    assert stat.S_IMODE(db.stat().st_mode) == 0o644
    assert not Path(str(db) + "-wal").exists()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["contacts"]
    conn.close()


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("x" * 5000)
    os.chmod(f, 0o644)
    with pytest.raises(FeedbackError, match="not a tactful feedback log"):
        FeedbackLog(f)
    assert f.read_text() == "x" * 5000 and stat.S_IMODE(f.stat().st_mode) == 0o644


def test_lone_surrogates_do_not_poison_later_events(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "f.sqlite3")
    assert log.record("requested", "a", {"text": "x\ud800"}, uri="file:///\ud800.py")
    assert log.record("shown", "a\udfff", {}, uri="file:///ok.py", language="py\ud800")
    assert log.record("accepted", "a", {"accepted_length": 3})
    log.close()
    kinds = [e.kind for e in read_events(tmp_path / "f.sqlite3")]
    assert kinds == ["requested", "shown", "accepted"]


def test_full_disk_reaches_the_user_once_and_loses_nothing(tmp_path: Path) -> None:
    faults: list[tuple[str, str]] = []
    log = FeedbackLog(tmp_path / "f.sqlite3", on_fault=lambda k, m: faults.append((k, m)))
    for i in range(20):
        assert log.record("requested", f"s{i}", {"text": "x" * 100})
    pages = log._conn.execute("PRAGMA page_count").fetchone()[0]
    log._conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL from here on
    results = [log.record("shown", f"t{i}", {"text": "y" * 2000}) for i in range(30)]
    assert not all(results)
    assert [k for k, _m in faults] == ["full"]
    assert "full" in faults[0][1] and "Free some disk space" in faults[0][1]
    log._conn.execute("PRAGMA max_page_count = 1073741823")  # space again
    assert log.record("accepted", "t0", {"accepted_length": 1})
    assert faults[-1] == ("full", "")  # recovered: the status clears
    log.close()
    kinds = [e.kind for e in read_events(tmp_path / "f.sqlite3")]
    assert kinds.count("requested") == 20 and kinds.count("shown") == 30
    assert kinds[-1] == "accepted"


def test_a_damaged_log_is_moved_aside_and_events_go_on(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite3"
    filled_log(path)
    raw = bytearray(path.read_bytes())
    page = 4096
    for p in range(2, len(raw) // page - 1):  # garble every page but the first and the last
        raw[p * page : p * page + 200] = os.urandom(200)
    path.write_bytes(bytes(raw))
    faults: list[tuple[str, str]] = []
    # Found at open or at the first write: either way moved aside, told once, nothing lost.
    log = FeedbackLog(path, on_fault=lambda k, m: faults.append((k, m)))
    ok = [log.record("shown", f"t{i}", {"text": "y"}) for i in range(5)]
    assert all(ok)
    assert [k for k, _m in faults] == ["corrupt"]
    assert "moved to" in faults[0][1] and ".recover" in faults[0][1]
    assert log.moved_aside and log.moved_aside[0].exists()
    log.close()
    assert [e.kind for e in read_events(path)] == ["shown"] * 5
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
