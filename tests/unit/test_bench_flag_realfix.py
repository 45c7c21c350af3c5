"""The realfix figures (``tactful bench flag --realfix``) from flag records: the threshold curve,
the random expectation for the same number of flags, the leave-project-out choice and the
records round trip (``--realfix-records``). No model: the records are made up here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tactful.flags.calibration import Calibration
from tactful.tools.bench import flag as bench_flag
from tactful.tools.bench import flag_realfix as rf


def _rec(repo: str, bug: int, buggy: list[list[float]], fixed: list[list[float]]) -> dict[str, Any]:
    def run(flags: list[list[float]]) -> dict[str, Any]:
        return {
            "lines": 100,
            "considered": list(range(50)),
            "flags": flags,
            "fixes_offered": len(flags),
            "fixes_compile": len(flags),
            "no_fix": {},
            "seconds": 1.0,
            "windows_reused": 0,
        }

    return {
        "id": f"{repo}@{bug}",
        "repo": repo,
        "bug": bug,
        "buggy": run(buggy),
        "fixed": run(fixed),
    }


# Bugs score high, other lines low; correct files have low-scoring flags only.
RECORDS = [
    _rec(f"r{k % 3}", 7, [[7, 0.8], [3, 0.2], [4, 0.1]], [[3, 0.2], [4, 0.1]]) for k in range(6)
] + [_rec("r0", 9, [[1, 0.3], [9, 0.05]], [[1, 0.3]])]


def test_threshold_curve_and_random_expectation() -> None:
    p0 = rf.point(RECORDS, None, 0.0)
    assert p0.files == 7 and p0.fixed_flags == 13 and p0.flags_per_100 == pytest.approx(13 / 7)
    assert p0.hits == 7  # every bug is among the flags at the budget
    assert p0.random == pytest.approx(6 * 3 / 50 + 2 / 50)
    p = rf.point(RECORDS, None, 0.5)
    assert p.fixed_flags == 0 and p.hits == 6 and p.random == pytest.approx(6 / 50)
    # A calibration only moves the threshold's meaning, never the order.
    cal = Calibration(1.0, -1.0)
    assert rf.point(RECORDS, cal, cal.probability(0.5)).hits == p.hits


def test_the_threshold_is_chosen_on_other_projects() -> None:
    # The lowest threshold of the grid with at most 1 flag per 100 lines of correct code.
    assert rf.choose_threshold(RECORDS, 1.0) == 0.15
    assert rf.point(RECORDS, None, 0.1).flags_per_100 > 1.0
    lpo = rf.leave_project_out(RECORDS, 1.0, min_files=3)
    assert set(lpo["per_project"]) == {"r0", "r1", "r2"}
    others = [r for r in RECORDS if r["repo"] != "r0"]
    r0 = lpo["per_project"]["r0"]
    assert r0["score_threshold"] == rf.choose_threshold(others, 1.0)
    cal = rf.calibrate(others)
    assert r0["min_probability"] == round(cal.probability(r0["score_threshold"]), 4)
    assert r0["files"] == 3
    assert lpo["macro_all_projects"]["projects"] == 3
    assert lpo["macro_projects_with_3_files"]["projects"] == 1
    assert lpo["pooled"]["files"] == 7


def test_records_round_trip_without_the_model(tmp_path: Path) -> None:
    saved = tmp_path / "records.json"
    saved.write_text(json.dumps({"records": RECORDS}))
    out = tmp_path / "figures.json"
    cal = tmp_path / "calibration.json"
    args = ["--realfix-records", str(saved), "--out", str(out), "--write-calibration", str(cal)]
    assert bench_flag.main(args) == 0
    figures = json.loads(out.read_text())
    assert figures["files"] == 7 and figures["quick_fixes"]["compile_share"] == 1.0
    assert len(figures["curve"]) == len(rf.THRESHOLDS)
    assert figures["curve"][0]["min_probability"] == 0.0
    got = Calibration.from_json(json.loads(cal.read_text()))
    assert got.probability(0.8) > got.probability(0.2)
    # A journal (one record per line) gives the same figures.
    journal = tmp_path / "journal.jsonl"
    journal.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    assert rf.read_records(journal) == RECORDS
    assert rf.read_records(out) == RECORDS
