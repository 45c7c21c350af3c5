"""Scoring helpers of ``tactful bench infill`` (no model, no server)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tactful.tools.bench import infill


def test_normalise_and_exact_ignore_whitespace_only() -> None:
    assert infill.normalise("\t\tx  =  f( a )\r") == "x = f( a )"
    assert infill.exact("    if a  in b:\r", "if a in b:")
    assert not infill.exact("if a in b", "if a in b:")
    assert not infill.exact("x = f(a)", "x = f(b)")


@pytest.mark.parametrize(
    "line",
    [
        "x = f(a, ",
        "x = [1, 2",
        'print(f"{x',
        "s = 'abc",
        "total = a +",
        "y = obj.",
        "return x and",
        "if n",
        "    for i in range(n)",
        "x = a,",
        "z = not",
        'doc = """start',
    ],
)
def test_unfinished_lines(line: str) -> None:
    assert infill.unfinished(line)


@pytest.mark.parametrize(
    "line",
    [
        "x = f(a, b)",
        "if a in b:",
        "    for i in G(n,0,-1):F[i]=max(F[i],h[i])",
        "    return None",
        "continue",
        'print("NO", end=" ")',
        "    b)  # closes a bracket opened on an earlier line",
        "x = {'a': 1}",
        "s = 'a(b'  # brackets inside strings do not count",
        "else:",
        "y = x[1:]",
        "",
    ],
)
def test_finished_lines(line: str) -> None:
    assert not infill.unfinished(line)


def test_why_unfinished_names_the_reason() -> None:
    assert infill.why_unfinished("x = f(a") == "bracket"
    assert infill.why_unfinished("x = 'a") == "string"
    assert infill.why_unfinished("x = a +") == "operator"
    assert infill.why_unfinished("x = a if") == "keyword"
    assert infill.why_unfinished("if a") == "colon"
    assert infill.why_unfinished("if a:  # done") is None


def test_cut_is_relative_to_the_reference() -> None:
    # The reference itself goes on to the next line: ending there is not a cut.
    assert not infill.is_cut("foo(a,", "foo(a,")
    assert infill.is_cut("x = f(a", "x = f(a, b)")
    assert not infill.is_cut("x = f(c)", "x = f(a, b)")


def test_syntax_match_compares_calls_as_asts() -> None:
    assert infill.syntax_match("np.sum(grad,axis=0)", "np.sum(grad, axis=0)")
    assert infill.syntax_match("np.sum(grad, axis = 0)\n", "np.sum(grad, axis=0)")
    assert not infill.syntax_match("np.sum(grad)", "np.sum(grad, axis=0)")
    assert not infill.syntax_match("np.sum(grad, axis=", "np.sum(grad, axis=0)")


def test_positions_lines_and_edits() -> None:
    text = "a = 1\nb = é + \n"
    off = text.index("+") + 2
    assert infill.utf16_position(text, off) == (1, 8)
    assert infill.line_at(text, off) == "b = é + "
    prefix, suffix = "x = (\n    if ", "\n    pass\n"
    doc = infill.apply_inline(prefix, suffix, "a > b:")
    assert infill.line_at(doc, len(prefix)) == "    if a > b:"
    assert infill.hole_text(prefix, suffix, doc) == "a > b:"
    # An item whose range starts 3 characters before the cursor replaces them.
    doc2 = infill.apply_inline(prefix, suffix, "while a:", replace_before=3)
    assert infill.line_at(doc2, len(prefix) - 3) == "    while a:"
    assert infill.hole_text(prefix, suffix, doc2) is None


def test_same_output_token_wise() -> None:
    assert infill.same_output("0 3 2 2\n", ["0  3 2 2"])
    assert infill.same_output("YES\n", ["NO", "YES"])
    assert not infill.same_output("0 3 2\n", ["0 3 2 2"])


def test_passes_tests_runs_the_program_isolated() -> None:
    prog = "n = int(input())\nprint(n * 2)\n"
    assert infill.passes_tests(prog, [{"input": "3\n", "output": ["6"]}])
    assert not infill.passes_tests(prog, [{"input": "3\n", "output": ["7"]}])
    assert not infill.passes_tests("raise SystemExit(1)\n", [{"input": "", "output": [""]}])
    assert not infill.passes_tests(prog, [])  # no tests: nothing passes by default
    slow = "while True:\n    pass\n"
    assert not infill.passes_tests(slow, [{"input": "", "output": [""]}], timeout_s=0.5)


def test_summary_and_gap() -> None:
    def ans(mode: str, load: str, ms: float, exact: bool, cut: bool) -> infill.Answer:
        return infill.Answer(
            task="t", kind="block", mode=mode, load=load, latency_ms=ms, text="x",
            completed_line="x", reference_line="x", exact=exact, cut=cut, passed=exact,
        )  # fmt: skip

    answers = [
        ans("automatic", "idle", 100, True, False),
        ans("automatic", "idle", 300, False, True),
        ans("invoked", "idle", 200, True, False),
        ans("automatic", "busy", 400, False, True),
        ans("automatic", "busy", 600, False, True),
        ans("invoked", "busy", 400, True, False),
    ]
    s = infill.summarize(answers)
    assert s["automatic/idle"] == {
        "n": 2, "answered": 2, "exact": 1, "pass": 1, "cut": 1, "cut_unbalanced": 0,
        "one_word": 2, "chars_p50": 1, "p50_ms": 200.0, "p95_ms": 300.0,
    }  # fmt: skip
    g = infill.gaps(s)
    assert g["automatic"] == {"exact_lost": 1, "pass_lost": 1, "cut_added": 1, "p50_ratio": 2.5}
    assert g["invoked"]["p50_ratio"] == 2.0


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")


def test_load_tasks_keeps_held_out_one_line_python_holes(tmp_path: Path) -> None:
    def row(i: int, kind: str, gt: str, lang: str = "python") -> dict[str, object]:
        return {
            "task_id": f"{kind}_{i}",
            "lang": lang,
            "prompt": f"Description: problem {i}",
            "eval_prompt": "x = 1\nif {{completion}}\n    pass\n",
            "ground_truth": gt,
            "unit_tests": [],
        }

    for kind in infill.FILES:
        rows = [row(i, kind, "a:") for i in range(20)]
        rows += [row(100, kind, "a\nb"), row(101, kind, "a:", lang="java")]
        _write(tmp_path / f"{kind}_completion.jsonl.gz", rows)
    tasks = infill.load_tasks(tmp_path, 1000, seed=1)
    held = [i for i in range(20) if infill.held_out(f" problem {i}")]
    assert 0 < len(held) < 20  # both halves are non-empty
    assert sorted(t.task_id for t in tasks if t.kind == "api") == sorted(f"api_{i}" for i in held)
    assert all(t.prefix.endswith("if ") and t.suffix.startswith("\n") for t in tasks)
    # a small sample draws from every file
    assert {t.kind for t in infill.load_tasks(tmp_path, 3, seed=1)} == set(infill.FILES)
