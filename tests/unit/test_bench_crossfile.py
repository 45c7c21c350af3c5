"""``tactful bench crossfile``: the task metric and the blanked document (no model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tactful.tools.bench.crossfile import blank, sample, score

TASK = {
    "id": "r/p.py:3",
    "path": "p.py",
    "line": 3,
    "indent": "    ",
    "target": "assert _is_prepared(request)",
    "cross_names": ["_is_prepared"],
}
TEXT = "def f(request):\n    x = 1\n    assert _is_prepared(request)\n    return x\n"


def test_score_exact_and_cross_name_hit() -> None:
    assert score(TASK, "assert _is_prepared(request)\nmore") == {"exact": True, "cross_hit": True}
    assert score(TASK, "assert _is_prepared(req)") == {"exact": False, "cross_hit": True}
    assert score(TASK, "assert is_prepared(request)") == {"exact": False, "cross_hit": False}
    assert score(TASK, "") == {"exact": False, "cross_hit": False}


def test_blank_keeps_only_the_indentation() -> None:
    doc, cursor = blank(TASK, TEXT)
    assert doc.split("\n")[2] == "    " and "_is_prepared" not in doc
    assert doc[:cursor].endswith("x = 1\n    ") and doc[cursor:].startswith("\n    return x")
    with pytest.raises(ValueError):
        blank(TASK, TEXT.replace("request)", "req)"))


def test_sample_is_deterministic() -> None:
    tasks = [{"id": f"r/{i}", "repo": "r"} for i in range(50)]
    assert sample(tasks, 10, 1) == sample(tasks, 10, 1)
    assert sample(tasks, 10, 1) != sample(tasks, 10, 2)
    assert len(sample(tasks, 100, 1)) == 50


def test_walk_stops_in_a_huge_folder(tmp_path: Path) -> None:
    from tactful.workspace import files as wf

    for i in range(300):
        (tmp_path / f"data{i}.bin").write_bytes(b"")
    (tmp_path / "z.py").write_text("x = 1\n")
    rep = wf.ScanReport()
    assert list(wf.walk([str(tmp_path)], max_files=10, report=rep, max_entries=100)) == []
    assert rep.capped


DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "crossfile"


@pytest.mark.skipif(not (DATA / "tasks_dev.jsonl.gz").is_file(), reason="no crossfile data")
def test_recall_counts_the_definitions_the_context_holds(tmp_path: Path) -> None:
    # The LOADER's example tasks: each name is only imported above the line; its definition is
    # in another file, which the context must hold (and cannot within a 1-token budget).
    from tactful.tools.bench.crossfile import read_jsonl_gz, recall

    ids = {
        "psf+requests/src/requests/cookies.py:46",
        "psf+black/src/black/debug.py:54",
        "pytest-dev+pytest/src/_pytest/unittest.py:442",
    }
    tasks = [t for t in read_jsonl_gz(DATA / "tasks_dev.jsonl.gz") if t["id"] in ids]
    assert len(tasks) == 3
    got = recall(DATA, tasks, 4096, tmp_path / "a")
    assert got["all"] == {"n": 3, "candidates": 3, "chosen": 3}
    assert 0 < got["chars_to_cursor_p50"] < 4096 * 3 + 6000
    none = recall(DATA, tasks, 1, tmp_path / "b")
    assert none["all"] == {"n": 3, "candidates": 3, "chosen": 0}
