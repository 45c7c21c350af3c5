"""Quick fixes that parse, flag selection (changed lines first, thresholds), calibration and the
changed/accepted lines of an editing session: plain functions, no model."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from tactful.flags import features as ff
from tactful.flags.calibration import Calibration, fit_platt
from tactful.flags.fixes import FixChecker, replacement_line, short_title, top_level_chunk
from tactful.flags.focus import accepted_lines, changed_lines, git_head_text
from tactful.flags.job import FlagJob, LineState
from tactful.flags.model import FlagModel
from tactful.flags.plan import Focus

CODE = """def area(w, h):
    if w < 0:
        raise ValueError("w")
    return w * h


def main():
\tprint(area(2, 3))
"""


def test_a_fix_keeps_the_indentation_and_parses() -> None:
    lines = CODE.split("\n")
    c = FixChecker(lines, "python")
    assert c.fix(3, "return w + h") == "    return w + h"
    # A tab-indented line keeps its tab (mixed tabs and spaces in one file).
    assert c.fix(7, "  print(area(3, 2))") == "\tprint(area(3, 2))"
    assert replacement_line("\t  x = 1", " y = 2 ") == "\t  y = 2"


@pytest.mark.parametrize(
    ("line", "suggestion", "why"),
    [
        (3, "return w *", "parse"),  # a line ending in an operator: a SyntaxError
        (1, "if w < 0", "parse"),  # a block header without its colon
        (2, "raise ValueError(", "parse"),
        (3, "return  w * h", "itself"),  # the line itself (whitespace aside)
        # A block header replaced by a statement: tree-sitter finds no error, Python does.
        (1, '"""Raise for a negative width."""', "compile"),
        (3, "   ", "empty"),
        # Code replaced by a comment (the model often writes one there): the code is deleted.
        (7, "# print the area", "comment"),
        (3, "# return the area", "comment"),
    ],
)
def test_no_fix_that_breaks_the_file_or_changes_nothing(
    line: int, suggestion: str, why: str
) -> None:
    c = FixChecker(CODE.split("\n"), "python")
    assert c.fix(line, suggestion) is None
    assert why in (c.why_not(line, suggestion) or "")


def test_a_file_that_does_not_parse_gets_fixes_that_add_no_error() -> None:
    lines = ["def f(:", "    return 1 +", "x = 1"]
    c = FixChecker(lines, "python")
    assert c.fix(2, "x = 2") == "x = 2"  # no new error
    assert c.fix(2, "x = (") is None
    # Fixing the broken line is fine too.
    assert c.fix(1, "return 1") == "    return 1"


def test_the_top_level_statement_around_a_line() -> None:
    lines = [
        "import os",
        "if os.name:",
        "    x = f(",
        ")",
        "else:",
        "    # none",
        "    x = 2",
        "",
        "def g():",
        "    return x",
    ]
    assert top_level_chunk(lines, 6) == (1, 8)  # else and the closing bracket go on the if
    assert top_level_chunk(lines, 9) == (8, 10)
    assert top_level_chunk(lines, 0) == (0, 1)


def test_python_2_files_get_no_fix_that_adds_an_error() -> None:
    lines = ["def main():", '    print "hello"', "    except_ = 1", "    return 0"]
    c = FixChecker(lines, "python")
    assert c.fix(3, "return 1") == "    return 1"
    assert c.fix(3, "return 1 +") is None


def test_languages_without_a_grammar_keep_their_brackets() -> None:
    c = FixChecker(["(a b)", "c"], "lisp-ish")
    assert c.fix(0, "(a c)") == "(a c)"
    assert c.fix(0, "(a c") is None
    assert c.fix(1, "// c") is None and "comment" in (c.why_not(1, "// c") or "")
    # A trailing comment is no deletion.
    assert FixChecker(CODE.split("\n"), "python").fix(3, "return w * h  # area") is not None


def test_titles_are_short_and_on_one_line() -> None:
    assert short_title("return   x") == "return x"
    long = "value = compute(" + ", ".join(f"arg{i}" for i in range(30)) + ")"
    t = short_title(long)
    assert len(t) <= 48 and t.endswith("…") and t.startswith("value = compute(arg0")


class _Scores(FlagModel):
    """The heuristic classifier with given final scores (by line) and a calibration."""

    def __init__(self, scores: dict[int, float], calibration: Calibration | None = None) -> None:
        super().__init__(calibration=calibration)
        self.by_line = scores

    def final(self, rows: Sequence[Sequence[float]]) -> list[float]:
        return [self.by_line[int(r[-1])] for r in rows]


def _job(text: str, scores: dict[int, float], suggestions: dict[int, str], **kw: object) -> FlagJob:
    """A job whose lines were 'regenerated' with the given suggestions (the line index is
    smuggled in as the last regeneration feature, for ``_Scores.final``)."""
    job = FlagJob(text, "python", model=_Scores(scores, kw.pop("calibration", None)), **kw)  # type: ignore[arg-type]
    width = len(ff.CHEAP_FEATURES)
    for i, s in suggestions.items():
        job.info[i] = LineState(i, [0.0] * width, regen=[0.0, float(i)], suggestion=s)
    return job


TEN = "\n".join(f"x{i} = {i}" for i in range(10)) + "\n"


def test_selection_budget_thresholds_and_changed_lines_first() -> None:
    sugg = {i: f"x{i} = {i + 1}" for i in range(10)}
    scores = {i: 0.1 * i for i in range(10)}
    res = _job(TEN, scores, sugg, budget=0.2).result()
    assert [f.line for f in res.flags] == [9, 8]  # the budget: 2 of 10 lines, best first
    res = _job(TEN, scores, sugg, budget=0.2, min_score=0.85).result()
    assert [f.line for f in res.flags] == [9] and res.held_back == 1
    # Changed lines go first: they take the budget ahead of better-scored untouched lines.
    res = _job(TEN, scores, sugg, budget=0.2, focus=Focus.of({2})).result()
    assert [f.line for f in res.flags] == [2, 9] and res.flags[0].changed
    # Every flag has a quick fix that parses here.
    assert all(f.fix == sugg[f.line] for f in res.flags)


def test_min_probability_uses_the_calibration() -> None:
    sugg = {i: f"x{i} = {i + 1}" for i in range(10)}
    scores = {i: 0.1 * i for i in range(10)}
    cal = Calibration(a=1.0, b=-3.0)  # probabilities far below the scores
    res = _job(TEN, scores, sugg, budget=0.3, calibration=cal, min_probability=0.2).result()
    assert [round(f.probability, 3) for f in res.flags] == [round(cal.probability(0.9), 3)]
    assert res.held_back == 2


def test_a_flag_whose_fix_would_break_the_file_has_none() -> None:
    res = _job(TEN, {3: 0.9}, {3: "x3 = (3 +"}, budget=0.2).result()
    assert len(res.flags) == 1 and res.flags[0].fix is None
    assert res.no_fix == {"the file would not parse": 1}
    assert res.to_json()["flags"][0]["fix"] is None


def test_excluded_and_unchanged_lines_under_scope_changed() -> None:
    job = FlagJob(TEN, "python", model=FlagModel(), focus=Focus.of({1, 2, 3}, {2}, True))
    assert job.considered == [1, 3]


def test_platt_calibration_is_monotone_and_round_trips() -> None:
    scores = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9] * 5
    labels = [0, 0, 0, 0, 1, 0, 1, 1] * 5
    cal = fit_platt(scores, labels)
    ps = [cal.probability(s) for s in sorted(scores)]
    assert ps == sorted(ps) and 0.0 < ps[0] < ps[-1] < 1.0
    again = Calibration.from_json(json.loads(json.dumps(cal.to_json())))
    assert again.probability(0.4) == pytest.approx(cal.probability(0.4))
    with pytest.raises(ValueError):
        fit_platt([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError):
        Calibration.from_json({"method": "platt", "a": -1.0, "b": 0.0})


def test_changed_and_accepted_lines() -> None:
    before = ["a = 1", "b = 2", "c = 3"]
    after = ["a = 1", "b = 20", "new = b + 1", "c = 3"]
    assert changed_lines(before, after) == {1, 2}
    assert changed_lines(before, before) == set()
    assert changed_lines(before, ["a = 1", "x", "b = 2", "c = 3"]) == {1}
    assert changed_lines(before, ["a = 1", "c = 3"]) == set()  # a deletion changes no line
    # 50,000 equal lines (a generated file): the common head and tail need no diff (a plain
    # diff of these lists takes quadratic time).
    big = ["x = 1"] * 50_000
    assert changed_lines(big, big) == set()
    assert changed_lines(big, [*big[:25_000], "y = 2", *big[25_000:]]) == {25_000}
    assert changed_lines(big, ["y"] * 3000 + big) == set(range(3000))
    lines = ["    total = compute_total(items)", "    return total", "x = 1"]
    # The suggestion completed a typed prefix ("    total = "), and added a second line.
    got = accepted_lines(lines, ["compute_total(items)\n    return total"])
    assert got == {0, 1}
    assert accepted_lines(["y = f(x)"], [")"]) == set()  # too short to tell


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_git_baseline_is_the_file_at_head(tmp_path: Path) -> None:
    f = tmp_path / "pkg" / "a.py"
    f.parent.mkdir()
    f.write_text("x = 1\n")
    assert git_head_text(f) is None  # not a repository

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "0")
    assert git_head_text(f) is None  # untracked
    git("add", "pkg/a.py")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "1")
    f.write_text("x = 2\n")
    assert git_head_text(f) == "x = 1\n"
