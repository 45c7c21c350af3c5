"""The realfix dataset samples (project code: buggy and fixed versions), the per-window picks of
the simulated flagger, and the leave-group-out evaluation across realfix projects and ConDefects
task folds (no model run)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from tactful.flags import features as ff
from tactful.flags import lpo, realfix
from tactful.flags import simulate as flag_simulate
from tactful.flags.calibration import Calibration
from tactful.flags.plan import MAX_REGEN, plan_windows
from tactful.tools.bench import flag_realfix as rf

GOOD = "def f(x):\n    return x + 1\n" * 12
BUGGY = GOOD.replace("x + 1\n", "x - 1\n", 1)


def _row(repo: str, n: int, buggy: str = BUGGY, fixed: str = GOOD, line: int = 2) -> dict[str, Any]:
    lines = buggy.split("\n")
    return {
        "id": f"{repo}@{n:010d}:a.py",
        "repo": repo,
        "n_lines": len(buggy.splitlines()),
        "buggy_line": line,
        "buggy_line_text": lines[line - 1],
        "fixed_line_text": fixed.split("\n")[line - 1],
        "buggy_code": buggy,
        "fixed_code": fixed,
    }


def test_usable_rows_compile_and_are_not_version_bumps() -> None:
    assert realfix.usable(_row("a/b", 1), 100)
    assert not realfix.usable(_row("a/b", 1), 10)  # too long
    py2 = _row("a/b", 2, buggy="print 'x'\n" * 3, fixed="print('x')\n" + "print 'x'\n" * 2)
    assert not realfix.usable(py2, 100)
    bump = _row("a/b", 3, buggy='__version__ = "1"\n', fixed='__version__ = "2"\n', line=1)
    assert not realfix.usable(bump, 100)
    assert not realfix.usable(_row("a/b", 4, buggy=GOOD), 100)  # no change at all


def test_rows_are_taken_in_turn_from_each_project_up_to_a_cap() -> None:
    rows = [_row("z/big", k) for k in range(5)] + [_row("a/small", k) for k in range(2)]
    got = realfix.sample_rows(100, 3, rows)
    assert [r["repo"] for r in got] == ["a/small", "z/big"] * 2 + ["z/big"]
    assert [r["id"] for r in got if r["repo"] == "z/big"] == sorted(
        r["id"] for r in rows[:3]
    )  # the first by id
    assert len(realfix.sample_rows(100, 1, rows)) == 2


def test_samples_pair_each_buggy_file_with_its_fixed_version() -> None:
    r = _row("o/p", 7)
    (bid, btext, bbugs), (fid, ftext, fbugs) = realfix.samples([r])
    assert (btext, bbugs) == (BUGGY, [1]) and (ftext, fbugs) == (GOOD, [])
    assert fid == bid + realfix.FIXED and realfix.is_fixed(fid) and not realfix.is_fixed(bid)
    assert realfix.repo_of(fid) == realfix.repo_of(bid) == "o/p"
    also = realfix.also_fixed_line([r])
    assert also(fid, ftext) == [1] and also(bid, btext) == []
    # Whitespace changed elsewhere moved the fixed line: it is found by its text.
    moved = dict(r, fixed_code="\n" + GOOD)
    assert realfix.fixed_line(moved) == 2


def test_sample_rows_of_the_shared_data() -> None:
    if not realfix.REALFIX.exists():
        pytest.skip("shared/data/realfix is not here")
    rows = realfix.sample_rows(300, 2)
    repos = [r["repo"] for r in rows]
    assert len(set(repos)) >= 10 and max(repos.count(x) for x in repos) == 2
    assert len(set(repos[: len(set(repos))])) == len(set(repos))  # one of each project first
    assert all(r["n_lines"] <= 300 for r in rows)
    assert rf.load_rows(5, 300) == rows[:5]


def _sample(sid: str, n: int, bug: int | None, text: str | None = None) -> dict[str, Any]:
    """``n`` considered lines whose first cheap feature (score, by :class:`_ByFeature`) rises
    with the line, every line regenerated differently."""
    rows = []
    for i in range(n):
        regen = ff.regen_features("x = 1", "x = 2", [-1.0], [-1.0])
        cheap = [i / n] + [0.0] * (len(ff.CHEAP_FEATURES) - 1)
        rows.append({"i": i, "y": int(i == bug), "cheap": cheap, "regen": regen})
    out = {"id": sid, "bugs": [] if bug is None else [bug], "lines": n, "rows": rows}
    if text is not None:
        out["text"] = text
    return out


class _ByFeature:
    def stage1(self, rows: list[list[float]]) -> list[float]:
        return [r[0] for r in rows]

    def final(self, rows: list[list[float]]) -> list[float]:
        return [r[0] for r in rows]


def test_each_window_regenerates_its_share_of_lines() -> None:
    text = "\n".join(f"value_{i:04d} = compute(value_{i:04d}, 1234567890)" for i in range(300))
    windows = plan_windows(ff.document_lines(text))
    assert len(windows) >= 3
    s = _sample("a/b@1:x.py", 300, None, text)
    p1 = [r["cheap"][0] for r in s["rows"]]
    picks = flag_simulate.window_picks(s, p1, 30)
    assert len(picks) == 30
    for w in windows[:-1]:  # each window's own top lines, not the file's top 30
        mine = [j for j in picks if w.start <= j < w.end]
        assert mine and min(mine) >= w.end - len(mine)
    no_text = {k: v for k, v in s.items() if k != "text"}
    assert sorted(flag_simulate.window_picks(no_text, p1, 30)) == list(range(270, 300))


def test_regenerations_are_capped_as_in_the_flagger() -> None:
    s = _sample("a/b@1:x.py", 1000, 999)
    r = flag_simulate.ranking(s, _ByFeature(), 0.15, 2)
    assert r["picked"] == MAX_REGEN and r["max_flags"] == 150
    assert len(r["flags"]) == MAX_REGEN and r["flags"][0][0] == 999


def _samples() -> list[dict[str, Any]]:
    out = []
    for repo in ("a/one", "b/two", "c/three"):
        for k in range(2):
            sid = f"{repo}@{k:010d}:m.py"
            out += [_sample(sid, 40, 39), _sample(sid + realfix.FIXED, 40, None)]
    out += [_sample(f"task{t}/Python/{t}", 20, 19) for t in range(4)]
    return out


FOLDS = {f"task{t}": t % 2 for t in range(4)}


def test_groups_are_projects_and_task_folds() -> None:
    assert lpo.group_of("psf/requests@0123456789:a.py#fixed", FOLDS) == "realfix:psf/requests"
    assert lpo.group_of("task3/Python/3", FOLDS) == "condefects:1"
    train, weights = lpo.training_set(
        _samples(), "realfix:a/one", FOLDS, lpo.Recipe(realfix_weight=3)
    )
    ids = {s["id"] for s in train}
    assert not any(i.startswith("a/one") for i in ids) and not any(realfix.is_fixed(i) for i in ids)
    assert sorted(set(weights)) == [1.0, 3.0] and len(train) == 4 + 4
    train, _ = lpo.training_set(_samples(), "condefects:0", FOLDS, lpo.Recipe(fixed_negatives=True))
    assert sum(realfix.is_fixed(s["id"]) for s in train) == 6
    assert {s["id"] for s in train if "Python" in s["id"]} == {"task1/Python/1", "task3/Python/3"}


def test_leave_group_out_never_tests_on_a_training_group(monkeypatch: pytest.MonkeyPatch) -> None:
    fits: list[set[str]] = []

    def fake_fit(samples: Any, rounds: Any, params: Any, weights: Any) -> tuple[Any, Any]:
        fits.append({lpo.group_of(s["id"], FOLDS) for s in samples})
        return None, None

    monkeypatch.setattr(lpo, "fit", fake_fit)
    monkeypatch.setattr("tactful.flags.model.FlagModel", lambda *a, **k: _ByFeature())
    res = lpo.evaluate(_samples(), FOLDS, lpo.Recipe(), log=io.StringIO())
    groups = sorted(res["groups"])
    assert groups == [
        "condefects:0",
        "condefects:1",
        "realfix:a/one",
        "realfix:b/two",
        "realfix:c/three",
    ]
    for g, seen in zip(groups, fits, strict=True):
        assert g not in seen and len(seen) == len(groups) - 1
    # Every bug ranks first: a realfix project's records hold both versions of each file.
    assert all(m["recall_at_budget"] == 1.0 for m in res["groups"].values())
    assert len(res["records"]) == 6
    rec = res["records"][0]
    assert rec["buggy"]["flags"][0][0] == rec["bug"] == 39
    assert len(rec["fixed"]["flags"]) == 6 and rec["fixed"]["missing"] == 0
    summary = lpo.report(res, 100.0, 2)
    assert summary["realfix_macro_projects_with_2_bugs"]["n"] == 3
    assert summary["condefects_pooled"]["n"] == 4
    assert set(summary["by_length"]) == {"condefects 0-39 lines", "realfix 40-199 lines"}
    assert summary["leave_project_out"]["pooled"]["files"] == 6
    # The rate guard replayed on the same records, each project at its threshold chosen on the
    # other projects.
    guarded = summary["rate_guard"]["per_project"]
    held_out = summary["leave_project_out"]["per_project"]
    assert {p: m["score_threshold"] for p, m in guarded.items()} == {
        p: m["score_threshold"] for p, m in held_out.items()
    }
    assert sum(m["files"] for m in guarded.values()) == 6
    doc = lpo.calibration_doc(summary, res["records"])
    assert doc["fitted_on"]["bug_lines"] == 6 and doc["fitted_on"]["lines"] == 36
    cal = Calibration.from_json(doc)
    assert cal.probability(0.99) > cal.probability(0.5)
    assert doc["fitted_on"]["min_probability"] == summary["min_probability_all"]


def test_correct_contest_programs_are_negatives_and_measured_at_the_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The correct versions of ConDefects programs (``#fixed``) belong to their task's fold,
    train only as negatives (``fixed_negatives``), are never scored as bugs, and give the flags
    per 100 lines of short correct code at the threshold chosen on realfix."""
    fixed = [_sample(f"task{t}/Python/{t}" + realfix.FIXED, 20, None) for t in range(4)]
    samples = _samples() + fixed
    assert lpo.group_of("task2/Python/2" + realfix.FIXED, FOLDS) == "condefects:0"
    train, weights = lpo.training_set(samples, "realfix:a/one", FOLDS, lpo.Recipe())
    assert not any(realfix.is_fixed(s["id"]) for s in train)
    train, weights = lpo.training_set(
        samples, "realfix:a/one", FOLDS, lpo.Recipe(fixed_negatives=True, dev_weight=2.0)
    )
    contest_fixed = [
        w for s, w in zip(train, weights, strict=True) if "Python" in s["id"] and "#" in s["id"]
    ]
    assert contest_fixed == [2.0] * 4
    monkeypatch.setattr(lpo, "fit", lambda *a, **k: (None, None))
    monkeypatch.setattr("tactful.flags.model.FlagModel", lambda *a, **k: _ByFeature())
    res = lpo.evaluate(samples, FOLDS, lpo.Recipe(fixed_negatives=True), log=io.StringIO())
    assert len(res["condefects_records"]) == 4 and len(res["records"]) == 6
    assert {r["repo"] for r in res["condefects_records"]} == {"condefects:0", "condefects:1"}
    summary = lpo.report(res, 100.0, 2)
    assert summary["condefects_pooled"]["n"] == 4  # the bugs only
    short = summary["condefects_at_threshold"]
    assert short["files"] == 4 and short["buggy_recall"] == 1.0
    # Every regenerated line differs: the budget (3 of 20 lines) is filled on the correct code.
    assert short["at_budget"]["fixed_flags_per_100_lines"] == pytest.approx(15.0)
    without = dict(res, condefects_records=[])
    assert lpo.report(without, 100.0, 2)["condefects_at_threshold"] is None
    assert lpo.report(without, 100.0, 2)["short_files"] is None


def _short_records(scores_by_fold: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Records of 20-line programs: the bug (line 19) scores 0.9; the correct version's three
    flags score as given."""
    out = []
    for fold, scores in scores_by_fold.items():
        fixed = {
            "lines": 20,
            "considered": list(range(20)),
            "flags": [[i, s] for i, s in enumerate(scores)],
        }
        buggy = {"lines": 20, "considered": list(range(20)), "flags": [[19, 0.9], [0, 0.05]]}
        out.append({"id": fold, "repo": fold, "bug": 19, "fixed": fixed, "buggy": buggy})
    return out


def test_the_short_file_floor_is_chosen_on_the_other_folds() -> None:
    # Fold a's correct program has flags at 0.3, 0.2, 0.1; fold b's at 0.05 only.
    records = _short_records({"condefects:0": [0.3, 0.2, 0.1], "condefects:1": [0.05]})
    got = lpo.short_floor(records, 5.0)  # at most 1 flag in 20 lines
    assert got is not None and got["short_lines"] == lpo.SHORT_LINES
    assert got["min_score"] == 0.11  # pooled: 2 flags in 40 lines (0.3 and 0.2)
    per = got["leave_fold_out"]["per_fold"]
    assert per["condefects:0"]["threshold"] == 0.0  # chosen on fold b alone: b has 1 flag
    assert per["condefects:0"]["fixed_flags_per_100_lines"] == 15.0
    assert per["condefects:1"]["threshold"] == 0.21
    assert per["condefects:1"]["fixed_flags_per_100_lines"] == 0.0
    assert got["leave_fold_out"]["pooled"]["files"] == 2
    assert got["leave_fold_out"]["pooled"]["buggy_recall"] == 1.0
    assert lpo.short_floor([], 2.0) is None


def test_the_calibration_carries_the_short_file_floor() -> None:
    cal = Calibration.from_json(
        {"method": "platt", "a": 1.0, "b": 0.0, "short_lines": 40, "short_min_score": 0.2}
    )
    assert cal.score_floor(39) == 0.2 and cal.score_floor(40) == 0.0
    assert Calibration.from_json({"method": "platt", "a": 1.0, "b": 0.0}).score_floor(5) == 0.0
    with pytest.raises(ValueError):
        Calibration.from_json({"method": "platt", "a": 1, "b": 0, "short_min_score": 2.0})


def test_macro_weights_each_group_once() -> None:
    per = {
        "realfix:a": {"n": 10, "recall_at_budget": 1.0},
        "realfix:b": {"n": 100, "recall_at_budget": 0.0},
        "realfix:c": {"n": 2, "recall_at_budget": 0.0},
        "condefects:0": {"n": 50, "recall_at_budget": 1.0},
    }
    assert lpo.macro(per, "realfix:", 10) == {"n": 2, "recall_at_budget": 0.5}
    assert lpo.macro(per, "realfix:")["recall_at_budget"] == pytest.approx(1 / 3)
    assert lpo.macro(per, "nothing") == {"n": 0}


def test_the_report_reads_records_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"records": [{"id": "a@1", "repo": "a", "bug": 1}]}')
    assert rf.read_records(path)[0]["repo"] == "a"


def test_recorded_context_features_are_those_of_each_window() -> None:
    """The flagger compares a line with the other lines of its own scoring window: names of the
    last line that only the first window also has are names found on no other line."""
    from tactful.flags.datasets import window_context_features

    twin = "total = compute(alpha, beta_value, 1234567890, gamma)"
    lines = [twin] + [f"value_{i:04d} = other(value_{i:04d}, 987654321)" for i in range(300)]
    lines.append(twin)
    windows = plan_windows(lines)
    assert len(windows) >= 3 and windows[-1].start < len(lines) - 1
    got = window_context_features(lines)
    assert len(got) == len(lines)
    last = windows[-1]
    assert got[last.start :] == ff.context_text_features(lines[last.start : last.end])
    whole = ff.context_text_features(lines)
    once = ff.CONTEXT_TEXT_FEATURES.index("cx_once_names")
    assert got[-1][once] > whole[-1][once]


def test_the_prior_never_sees_a_held_out_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    from tactful.flags import datasets as flag_datasets

    monkeypatch.setattr(lpo, "fit", lambda *a: (None, None))
    monkeypatch.setattr("tactful.flags.model.FlagModel", lambda *a, **k: _ByFeature())
    fitted: list[frozenset[int]] = []

    def fake_fit_prior(corpus: Any, folds: Any, exclude: set[int]) -> frozenset[int]:
        fitted.append(frozenset(exclude))
        return frozenset(exclude)

    monkeypatch.setattr(lpo, "fit_prior", fake_fit_prior)
    used: list[tuple[set[str], set[frozenset[int]]]] = []

    def fake_with_priors(samples: Any, prior_of: Any) -> Any:
        used.append(
            ({lpo.group_of(s["id"], FOLDS) for s in samples}, {prior_of(s) for s in samples})
        )
        return list(samples)

    monkeypatch.setattr(flag_datasets, "with_priors", fake_with_priors)
    lpo.evaluate(_samples(), FOLDS, lpo.Recipe(), corpus=[], k=2, log=io.StringIO())
    assert len(fitted) == len(set(fitted))  # each prior fitted once, shared by the groups
    for groups, priors in used:
        for g in groups:
            if g.startswith("condefects:") and len(groups) == 1:  # the test set of a fold
                assert all(int(g[-1]) in p for p in priors)
    held_folds = [p for gs, ps in used if gs == {"condefects:0"} for p in ps]
    assert held_folds == [frozenset({0})]


def test_training_on_realfix_takes_the_buggy_versions_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from argparse import Namespace

    from tactful.flags import train

    samples = _samples()[:4]  # one project: 2 files, both versions
    monkeypatch.setattr(train, "_recorded", lambda name: list(samples) if name == "realfix" else [])
    args = Namespace(with_realfix=True, fixed_negatives=False, realfix_weight=2.0)
    rfx, weights = train._realfix_training(args, None)
    assert [s["id"] for s in rfx] == [s["id"] for s in samples if not realfix.is_fixed(s["id"])]
    assert weights == [2.0] * len(rfx)
    assert train._realfix_part(rfx) == " + 2 real one-line bugs of 1 Python projects (realfix)"
    args.fixed_negatives = True
    rfx, _ = train._realfix_training(args, None)
    assert len(rfx) == len(samples) and "as negatives" in train._realfix_part(rfx)
    args.with_realfix = False
    assert train._realfix_training(args, None) == ([], [])


def test_a_kept_first_stage_is_used_for_every_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lpo, "fit", lambda *a: ("trained stage 1", "trained final"))
    made: list[tuple[Any, Any]] = []

    def fake_model(stage1: Any, final: Any, meta: Any) -> _ByFeature:
        made.append((stage1, final))
        return _ByFeature()

    monkeypatch.setattr("tactful.flags.model.FlagModel", fake_model)
    lpo.evaluate(_samples(), FOLDS, lpo.Recipe(stage1="kept"), log=io.StringIO())
    assert made and set(made) == {("kept", "trained final")}
    made.clear()
    lpo.evaluate(_samples(), FOLDS, lpo.Recipe(), log=io.StringIO())
    assert set(made) == {("trained stage 1", "trained final")}


def test_the_correct_versions_of_contest_programs_differ_at_the_fixed_line() -> None:
    from tactful.flags import datasets

    if not datasets.CONDEFECTS.exists():
        pytest.skip("shared/data/condefects is not here")
    faulty = datasets.condefects_samples("dev", 40)
    fixed = datasets.condefects_fixed_samples("dev", 40)
    where = datasets.condefects_fixed_lines("dev", 40)
    assert [s[0] + realfix.FIXED for s in faulty] == [s[0] for s in fixed]
    assert all(bugs == [] for _sid, _text, bugs in fixed)
    same_place = 0
    for (_b, btext, bbugs), (fid, ftext, _f) in zip(faulty, fixed, strict=True):
        assert where[fid] == bbugs[0] and btext != ftext
        b, f = btext.split("\n"), ftext.split("\n")
        same_place += len(b) == len(f) and [i for i in range(len(b)) if b[i] != f[i]] == bbugs
    assert same_place >= 36  # a one-line fix in place (a few also changed whitespace elsewhere)
