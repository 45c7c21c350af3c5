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
