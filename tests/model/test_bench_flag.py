"""``tactful bench flag`` on files given with their bug lines (real embedded model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tactful.tools.bench import flag as bench_flag

pytestmark = pytest.mark.model

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "flag"


def test_files_with_bug_lines_against_naive_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bugs: dict[str, int] = json.loads((FIXTURES / "bugs.json").read_text())
    specs = [f"{FIXTURES / name}:{line}" for name, line in sorted(bugs.items())[:2]]
    out = tmp_path / "bench.json"
    args = ["-n", "0", "--naive", "1", "--no-long", "--out", str(out), "--files", *specs]
    assert bench_flag.main(args) == 0
    result = json.loads(out.read_text())
    assert result["tactful"]["programs"] == 2
    assert result["tactful"]["seconds_per_100_lines"] > 0
    same = result["same_programs_as_naive"]
    assert same["naive_flag"]["programs"] == 1 and same["tactful"]["programs"] == 1
    assert same["speedup_vs_naive"] > 0
    assert 0 < result["random"]["recall_at_budget"] < 1
    assert "recall@budget: tactful" in capsys.readouterr().out
    for bad, says in (
        ("nobugline.py", "PATH:LINE"),
        (f"{tmp_path / 'missing.py'}:3", "cannot read"),
        (f"{specs[0].rpartition(':')[0]}:9999", "has no line 9999"),
    ):
        with pytest.raises(SystemExit, match=says):
            bench_flag.main(["-n", "0", "--naive", "0", "--no-long", "--files", bad])
