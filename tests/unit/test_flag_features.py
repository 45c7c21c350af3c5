"""Line-flag plumbing without the model: features, line kinds, mutations, skips, windows, budget."""

from __future__ import annotations

import math
import random

import pytest

from tactful.flags import features as ff
from tactful.flags.job import FlagJob
from tactful.flags.model import FlagModel
from tactful.flags.mutate import MUTATION_KINDS, mutate
from tactful.flags.plan import MAX_LINE_CHARS, skip_reason

PY = '''import os
from sys import argv

# a comment
def f(a, b):
    """Doc
    string line
    """
    x = a + b  # trailing
    if x > 3:
        return x
    }
'''


def test_levenshtein_and_normalised_distances() -> None:
    assert ff.levenshtein("kitten", "sitting") == 3
    assert ff.levenshtein("", "abc") == 3
    assert ff.norm_edit("abc", "abc") == 0.0
    assert ff.norm_edit("abc", "xyz") == 1.0
    assert ff.norm_edit("", "") == 0.0
    assert ff.code_tokens("if x <= y[i]:") == ["if", "x", "<", "=", "y", "[", "i", "]", ":"]
    assert ff.norm_edit(ff.code_tokens("a = b + 1"), ff.code_tokens("a = b - 1")) == pytest.approx(
        1 / 5
    )
    assert ff.ws_normal(" a =  b ") == ff.ws_normal("a=b")


def test_line_kinds_with_tree_sitter() -> None:
    lines = PY.split("\n")
    facts = ff.syntax_facts(PY, lines, "python")
    assert facts.parsed
    kinds = ff.line_kinds(lines, facts)
    assert kinds[0] == "import" and kinds[1] == "import"
    assert kinds[2] == "blank" and kinds[3] == "comment"
    assert kinds[4] == "header"
    assert kinds[5] == kinds[6] == kinds[7] == "string"
    assert kinds[8] == "code" and kinds[9] == "control" and kinds[10] == "jump"
    assert facts.error[11], "the stray brace is a parse error"


def test_line_kinds_for_an_unknown_language_use_rules() -> None:
    lines = ["-- a comment", "local x = 1", "}", "", "return x"]
    facts = ff.syntax_facts("\n".join(lines), lines, "lua")
    assert not facts.parsed
    assert ff.line_kinds(lines, facts) == ["comment", "code", "brace", "blank", "jump"]


def test_comment_distance() -> None:
    kinds = ["code", "comment", "code", "code", "code"]
    lines = ["a", "# c", "b", "c", "d"]
    assert ff.comment_distance(kinds, lines) == [1, 0, 1, 2, 3]
    assert ff.comment_distance(["code"], ["x"], cap=20) == [20]


def test_feature_rows_have_the_declared_width() -> None:
    lines = ["x = 1", "y = x + 1", ""]
    facts = ff.syntax_facts("\n".join(lines), lines, "python")
    rows = ff.cheap_features(
        lines,
        ff.line_kinds(lines, facts),
        facts,
        [[-1.0, -2.0], [-0.5], []],
        [[1.0, 2.0], [0.5], []],
    )
    assert all(len(r) == len(ff.CHEAP_FEATURES) for r in rows)
    i = ff.CHEAP_FEATURES.index
    assert rows[0][i("lp_min")] == -2.0 and rows[0][i("lp_mean")] == -1.5
    assert rows[0][i("next_lp_mean")] == -0.5
    assert math.isnan(rows[2][i("lp_min")])
    regen = ff.regen_features("if a < b:", "if a <= b:", [-1.0, -1.0], [-0.5, -0.5, -0.1])
    assert len(regen) == len(ff.REGEN_FEATURES)
    assert regen[ff.REGEN_FEATURES.index("exact_ws")] == 0.0
    assert regen[ff.REGEN_FEATURES.index("gen_minus_orig")] == pytest.approx(0.9)
    assert len(ff.missing_regen()) == len(ff.REGEN_FEATURES)


def test_context_features_find_lone_names_constants_and_look_alike_lines() -> None:
    lines = [
        "a = int(input())",
        "b = int(input())",
        "s = a + b  # sum of a and b",
        "t = a - bb + 7",
        'print(s, t, "x y")',
    ]
    rows = ff.context_text_features(lines)
    i = ff.CONTEXT_TEXT_FEATURES.index
    # "bb" and "7" are on no other line; comments and strings do not count.
    assert rows[3][i("cx_once_names")] == 1.0 and rows[3][i("cx_once_ints")] == 1.0
    assert rows[2][i("cx_once_names")] == 0.0 and rows[4][i("cx_once_names")] == 1.0  # print
    # Line 1 differs from line 0 in one of its eight tokens.
    assert rows[1][i("cx_twin_sim")] == pytest.approx(1 - 1 / 8)
    assert rows[1][i("cx_twin_diff")] == 1.0
    assert rows[4][i("cx_twin_sim")] < rows[1][i("cx_twin_sim")]


def _twins_by_scan(lines: list[str]) -> list[tuple[float, float]]:
    """The nearest look-alike of every line by trying every line in reach, nearest first."""
    toks = [ff.code_tokens(ff._code_part(ln)) for ln in lines]
    out = []
    for k, t in enumerate(toks):
        best, diff = 0.0, 0.0
        if len(t) >= 3:
            for j in range(max(0, k - ff.TWIN_REACH), min(len(toks), k + ff.TWIN_REACH + 1)):
                u = toks[j]
                if j == k or len(u) < 3 or abs(len(u) - len(t)) > len(t):
                    continue
                d = ff.levenshtein(t, u, cap=80)
                sim = 1.0 - d / max(len(t), len(u))
                if sim > best + 1e-9:
                    best, diff = sim, float(d)
        out.append((best, diff))
    return out


def test_look_alike_search_equals_a_full_scan() -> None:
    rng = random.Random(3)
    words = ["a", "b", "i", "n", "+", "-", "(", ")", "[", "]", "1", "2", "=", "<", "x.y"]
    for _ in range(20):
        lines = [" ".join(rng.choices(words, k=rng.randint(0, 12))) for _ in range(60)]
        rows = ff.context_text_features(lines)
        i = ff.CONTEXT_TEXT_FEATURES.index
        got = [x for r in rows for x in (r[i("cx_twin_sim")], r[i("cx_twin_diff")])]
        assert got == pytest.approx([x for pair in _twins_by_scan(lines) for x in pair])


SNIPPET_TEXT = """def window(seq, n):
    out = []
    total = 0
    for i in range(len(seq)):
        total += seq[i]
        if i >= n:
            total -= seq[i - n]
        if i >= n - 1:
            out.append(total / n)
    log(total, n)
    return out
"""
SNIPPET = SNIPPET_TEXT.split("\n")


@pytest.mark.parametrize("kind", MUTATION_KINDS)
def test_each_mutation_changes_exactly_one_line(kind: str) -> None:
    rng = random.Random(7)
    got = mutate(SNIPPET, rng, kind)
    assert got is not None, kind
    new, m = got
    assert m.kind == kind
    if kind == "deleted_line":
        assert len(new) == len(SNIPPET) - 1
        assert SNIPPET[m.line] == m.before and new[m.line] == SNIPPET[m.line + 1]
    else:
        diff = [i for i, (a, b) in enumerate(zip(SNIPPET, new, strict=True)) if a != b]
        assert diff == [m.line]
        assert ff.ws_normal(new[m.line]) != ff.ws_normal(SNIPPET[m.line])


def test_mutations_are_reproducible() -> None:
    a = mutate(SNIPPET, random.Random(3))
    b = mutate(SNIPPET, random.Random(3))
    assert a is not None and a == b


def test_skip_reasons() -> None:
    assert skip_reason("x = 1\n", 5000) is None
    assert "binary" in (skip_reason("a\x00b", 5000) or "")
    assert "binary" in (skip_reason("\x01\x02\x03\x04" * 100, 5000) or "")
    assert "maxLines" in (skip_reason("x\n" * 6000, 5000) or "")
    assert "minified" in (skip_reason("var a=1;" * 1000, 5000) or "")
    assert "empty" in (skip_reason("\n\n  \n", 5000) or "")


def test_windows_cover_every_line_once_and_the_budget_is_a_floor() -> None:
    text = "\n".join(f"x{i} = {i} + {'y' * (i % 50)}" for i in range(1000)) + "\n"
    job = FlagJob(text, "python", budget=0.15, model=FlagModel())
    assert job.skipped is None
    owned = [i for w in job.windows for i in range(w.start, w.end)]
    assert owned == list(range(1000))
    assert all(w.ctx_start <= w.start for w in job.windows)
    assert len(job.windows) > 1
    assert job.max_flags == 150
    assert job.n_regen <= 64
    small = FlagJob("a = 1\nb = 2\n", "python", budget=0.15, model=FlagModel())
    assert small.max_flags == 0 and small.n_regen == 0 and list(small.steps()) == []


def test_long_lines_are_cut_for_the_model_and_never_considered() -> None:
    long = "x = '" + "a" * (MAX_LINE_CHARS + 50) + "'"
    text = "\n".join(["a = 1", long] + [f"b{i} = a + {i}" for i in range(40)])
    job = FlagJob(text, "python", model=FlagModel())
    assert 1 not in job.considered and 0 in job.considered
    assert len(job.model_lines[1]) < MAX_LINE_CHARS


def test_shipped_classifier_loads_and_scores() -> None:
    model = FlagModel.load()
    rows = [[0.0] * len(ff.CHEAP_FEATURES)]
    p = model.stage1(rows)
    assert len(p) == 1 and 0.0 <= p[0] <= 1.0
    q = model.final([rows[0] + ff.regen_features("a = 1", "a = 2", [-1.0], [-0.5])])
    assert 0.0 <= q[0] <= 1.0
    assert model.name != "heuristic", "models/flag/ should hold the trained classifier"
