"""How ``tactful bench flag`` counts its figures from flagging runs: hits of the ranking and of
the flags at the budget, the random expectation for the same lines, what the editor shows at a
threshold, and naive FLAG on the first programs. No model: the runs are made up here (the real
runs are in tests/model/test_bench_flag.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tactful.flags import features as ff
from tactful.flags.model import FlagModel
from tactful.tools.bench import flag as bench_flag

#: Per program text: (bug line, {line: final score}, seconds); ten considered lines, one flag.
RUNS = {"a": (3, {3: 0.9, 5: 0.5}, 1.0), "b": (5, {3: 0.9, 5: 0.5}, 1.0)}


def _fake_run(
    backend: Any, text: str, model: Any, budget: float, naive: bool, memo: Any = None
) -> tuple[Any, Any, float]:
    _bug, scores, secs = RUNS[text]
    ranked = sorted(scores, key=lambda i: -scores[i])
    regen = [0.0] * len(ff.REGEN_FEATURES)
    info = {}
    for i in range(10):  # naive FLAG ranks by the edit distance: line 3 first
        row = list(regen)
        row[ff.REGEN_FEATURES.index("ed_char")] = 1.0 if i == 3 else 0.1
        info[i] = SimpleNamespace(index=i, regen=row)
    job = SimpleNamespace(considered=list(range(10)), max_flags=1, info=info)
    res = SimpleNamespace(
        flags=[SimpleNamespace(line=ranked[0], score=scores[ranked[0]])],
        scores=[scores.get(i, 0.1) for i in range(10)],
        lines=10,
    )
    return job, res, 4.0 * secs if naive else secs


def test_evaluate_counts_hits_random_expectation_thresholds_and_naive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bench_flag, "_run", _fake_run)
    programs = [(name, name, bug) for name, (bug, _s, _t) in RUNS.items()]
    out = bench_flag.evaluate(
        None, programs, FlagModel(), 0.15, naive_n=1, log=None, min_score=0.95
    )
    # "a": the bug is the flag; "b": the bug is second in the ranking, not flagged.
    assert out["tactful"] == {
        "programs": 2,
        "recall_at_budget": 0.5,
        "top1": 0.5,
        "top3": 1.0,
        "seconds_per_100_lines": 10.0,
        "mean_flagged_share": 0.1,
    }
    # Ten considered lines, one flag: 1/10, 3/10 and 1/10 by chance; no time of its own.
    assert out["random"] == {
        "programs": 2,
        "recall_at_budget": 0.1,
        "top1": 0.1,
        "top3": 0.3,
        "seconds_per_100_lines": None,
        "mean_flagged_share": 0.1,
    }
    # No flag scores 0.95; both flags clear the default minProbability (no calibration).
    assert out["tactful_min_score"] == {"min_score": 0.95, "recall": 0.0, "mean_flagged_share": 0.0}
    at_p = out["tactful_min_probability"]
    assert at_p["recall"] == 0.5 and at_p["mean_flagged_share"] == 0.1
    same = out["same_programs_as_naive"]
    assert same["tactful"]["programs"] == same["naive_flag"]["programs"] == 1
    assert same["naive_flag"]["top1"] == 1.0 and same["speedup_vs_naive"] == 4.0


def test_evaluate_without_programs_reports_no_threshold_figures() -> None:
    out = bench_flag.evaluate(None, [], FlagModel(), 0.15, naive_n=0, log=None, min_score=0.05)
    assert out["tactful"]["programs"] == 0 and out["tactful"]["seconds_per_100_lines"] is None
    assert "tactful_min_score" not in out and "same_programs_as_naive" not in out
