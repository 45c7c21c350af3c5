"""The flag rate guard (``tactful.flags.guard``): plain data, no model."""

from __future__ import annotations

import pytest

from tactful.flags import guard, lpo
from tactful.flags.guard import RateGuard, Recorded, cut, min_lines


def test_it_acts_only_with_enough_lines_to_tell() -> None:
    assert min_lines(2.0) == 300 and min_lines(5.0) == 120 and min_lines(0.0) == 0
    ten = [0.9 - 0.01 * i for i in range(10)]
    # 10 flags in 299 lines: 3.3 per 100 lines, but too few lines to tell.
    assert cut([(299, ten)], 2.0) == 0.0
    # In 300 lines 6 fit: a flag needs to beat the 7th best score.
    need = cut([(300, ten)], 2.0)
    assert ten[6] < need <= ten[5]
    assert sum(s >= need for s in ten) == 6
    # Within the promise, or off: nothing to do.
    assert cut([(300, ten[:6])], 2.0) == 0.0
    assert cut([(10_000, ten)], 0.0) == 0.0


def test_the_lines_and_flags_of_all_files_count() -> None:
    a, b = [0.5, 0.4, 0.3], [0.45, 0.35, 0.25, 0.2]
    # 7 flags in 300 lines: 6 fit; ties with the first that does not fit do not fit either.
    need = cut([(150, a), (150, b)], 2.0)
    assert [s for s in a + b if s >= need] == [0.5, 0.4, 0.3, 0.45, 0.35, 0.25]
    assert cut([(150, [0.5] * 4), (150, [0.5] * 3)], 2.0) > 0.5


def test_the_guard_keeps_the_last_run_of_each_file() -> None:
    g = RateGuard()
    assert g.record("a", 200, [0.9, 0.8], 2.0) is None  # 200 lines: too few to tell
    # 8 flags in 400 lines fit the promise: the cut stays at 0 (no change to report).
    assert g.record("b", 200, [0.7, 0.6, 0.5, 0.4, 0.3, 0.2], 2.0) is None
    st = g.state(2.0)
    assert (st.files, st.lines, st.flags, st.per_100_lines, st.min_score) == (2, 400, 8, 2.0, 0.0)
    # b flagged again with one flag more (its last run replaces the one before): 9 in 400.
    changed = g.record("b", 200, [0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1], 2.0)
    assert changed is not None and changed.flags == 9 and 0.1 < changed.min_score <= 0.2
    assert "only flags scoring at least" in guard.describe(changed, 2.0)
    assert changed.to_json()["per_100_lines"] == 2.25
    back = g.record("b", 200, [0.7], 2.0)  # back within the promise
    assert back is not None and back.min_score == 0.0
    assert "all are shown" in guard.describe(back, 2.0)
    g.clear()
    assert g.state(2.0).files == 0


def test_the_guard_forgets_the_oldest_files_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "MAX_FILES", 3)
    g = RateGuard()
    for k in "abcd":
        g.record(k, 100, [0.5] * 10, 2.0)
    st = g.state(2.0)
    assert st.files == 3 and st.lines == 300 and st.flags == 30 and st.min_score > 0.5


def test_simulate_replays_a_project_file_by_file() -> None:
    # A project whose correct files get 4 flags per 100 lines, and whose bugs score best.
    files = [
        Recorded(
            "p",
            100,
            tuple((i, 0.1 + 0.01 * i) for i in range(4)),
            ((50, 0.9), *((i, 0.1 + 0.01 * i) for i in range(4))),
            50,
        )
        for _ in range(10)
    ]
    out = guard.simulate(files, 2.0, orders=3)["p"]
    assert out["files"] == 10 and out["per_100_lines"] == 4.0
    # From the third file on (300 lines) the guard halves the flags; the bug still shows.
    assert 2.0 <= out["per_100_lines_guarded"] < 2.8
    assert out["recall"] == out["recall_guarded"] == 1.0
    # Off: nothing changes.
    off = guard.simulate(files, 0.0, orders=1)["p"]
    assert off["per_100_lines_guarded"] == off["per_100_lines"]


def test_lpo_replays_the_guard_at_each_projects_threshold() -> None:
    """The realfix records as ``lpo`` writes them: short files need the floor too."""
    rec = {
        "repo": "o/p",
        "bug": 3,
        "fixed": {"lines": 30, "flags": [[1, 0.1], [2, 0.5]]},
        "buggy": {"lines": 30, "flags": [[3, 0.2], [2, 0.5]]},
    }
    out = lpo.rate_guard([rec], {"o/p": 0.02}, 0.16, 2.0, 1)
    p = out["per_project"]["o/p"]
    # The fixed file's 0.1 flag is under the short-file floor: 1 flag in 30 lines.
    assert p["per_100_lines"] == pytest.approx(100 / 30, abs=1e-3)
    assert p["recall"] == 1.0 and p["score_threshold"] == 0.02
    assert out["macro_projects_with_1_files"]["recall"] == 1.0


def test_the_state_is_computed_once_per_change_and_rate() -> None:
    g = RateGuard()
    scores = [0.9 - 0.05 * i for i in range(13)]
    g.record("a", 600, scores, 2.0)  # 13 flags in 600 lines: 12 fit at 2, 6 at 1
    first = g.state(2.0)
    assert g.state(2.0) is first  # asked again (every diagnostic): not recomputed
    assert g.state(1.0) is not first and g.state(1.0).min_score > first.min_score > 0
    g.record("b", 600, [], 2.0)
    assert g.state(2.0).lines == 1200 and g.min_score(2.0) == 0.0  # recomputed after a record

    class Scored:
        def __init__(self, score: float) -> None:
            self.score = score

    kept = g.passing([Scored(0.9), Scored(0.3)], 1.0)  # anything with a score
    assert [k.score for k in kept] == [0.9]
    g.clear()
    assert g.state(2.0).files == 0


def test_the_guard_is_off_when_the_budget_is_filled() -> None:
    assert guard.target(2.0, 0.021) == 2.0
    assert guard.target(2.0, 0.0) == 0.0 and guard.target(0.0, 0.021) == 0.0
