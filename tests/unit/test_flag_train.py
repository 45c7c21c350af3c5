"""Training plumbing of the line-flag classifiers without the model: line-text features are
recomputed from the recorded text, the simulated ranking counts flags as the benchmark does, and
cross-validation keeps every test task (and its mutations) out of training."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from tactful.flags import datasets as flag_datasets
from tactful.flags import features as ff
from tactful.flags import fitting as flag_fitting
from tactful.flags import simulate as flag_simulate
from tactful.flags.model import FlagModel


def test_text_features_of_typical_contest_lines() -> None:
    f = dict(zip(ff.TEXT_FEATURES, ff.text_features("    ans += a[i+1] - 1  # x[0]"), strict=True))
    assert len(ff.text_features("")) == len(ff.TEXT_FEATURES)
    assert f["tx_pm1"] == 2 and f["tx_index"] == 1 and f["tx_aug"] == 1 and f["tx_ints"] == 2
    g = dict(
        zip(ff.TEXT_FEATURES, ff.text_features('print("a[1] + 1" if n%2==0 else -1)'), strict=True)
    )
    # Inside string literals nothing counts but the literal itself.
    assert g["tx_strings"] == 1 and g["tx_index"] == 0 and g["tx_print"] == 1
    assert g["tx_divmod"] == 1 and g["tx_cmps"] == 1 and g["tx_pm1"] == 1
    h = dict(zip(ff.TEXT_FEATURES, ff.text_features("for i in range(n - 1, 10**9):"), strict=True))
    assert h["tx_range"] == 1 and h["tx_int_digits"] == 2 and h["tx_depth"] == 1


def test_cheap_rows_end_with_the_text_and_context_features() -> None:
    lines = ["n = int(input())", "print(n + 1)"]
    facts = ff.syntax_facts("\n".join(lines), lines, "python")
    rows = ff.cheap_features(
        lines, ff.line_kinds(lines, facts), facts, [[-1.0], [-2.0]], [[1.0], [1.0]]
    )
    n_pass = len(ff.PASS_FEATURES)
    context = ff.context_text_features(lines)
    assert [r[n_pass:-1] for r in rows] == [
        ff.text_features(ln) + cx for ln, cx in zip(lines, context, strict=True)
    ]
    # "n" is on both lines, "print" on one only.
    assert [c[ff.CONTEXT_TEXT_FEATURES.index("cx_once_names")] for c in context] == [2.0, 1.0]
    assert ff.CHEAP_FEATURES[-1] == "prior" and all(math.isnan(r[-1]) for r in rows)


def test_load_dataset_recomputes_text_features_from_the_recorded_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "a = 1\r\nfor i in range(a + 1):\r\n    print(i)\r\n"
    old_width = len(ff.PASS_FEATURES)
    sample = {
        "id": "abc001_a/Python/1",
        "bugs": [1],
        "lines": 3,
        "text": text,
        "rows": [
            {"i": i, "y": int(i == 1), "cheap": [0.5] * old_width, "regen": None, "p1": 0.0}
            for i in range(3)
        ],
    }
    (tmp_path / "x.jsonl").write_text(json.dumps(sample) + "\n")
    monkeypatch.setattr(flag_datasets, "CACHE", tmp_path)
    (got,) = flag_datasets.load_dataset("x")
    lines = ff.document_lines(text)
    assert lines[1] == "for i in range(a + 1):"
    context = ff.context_text_features(lines)
    for r in got["rows"]:
        assert len(r["cheap"]) == len(ff.CHEAP_FEATURES)
        assert r["cheap"][old_width:-1] == ff.text_features(lines[r["i"]]) + context[r["i"]]
        assert math.isnan(r["cheap"][-1])
    del sample["text"]
    (tmp_path / "y.jsonl").write_text(json.dumps(sample) + "\n")
    with pytest.raises(ValueError, match="no recorded text"):
        flag_datasets.load_dataset("y")


class _ByFeature:
    """A stand-in classifier: stage 1 and the final score are the first cheap feature."""

    def stage1(self, rows: list[list[float]]) -> list[float]:
        return [r[0] for r in rows]

    def final(self, rows: list[list[float]]) -> list[float]:
        return [r[0] for r in rows]


def _sample(
    sid: str, scores: list[float], bug: int, exact: frozenset[int] = frozenset()
) -> dict[str, Any]:
    rows = []
    for i, sc in enumerate(scores):
        regen = ff.regen_features("x = 1", "x = 1" if i in exact else "x = 2", [-1.0], [-1.0])
        rows.append(
            {
                "i": i,
                "y": int(i == bug),
                "cheap": [sc] + [0.0] * (len(ff.CHEAP_FEATURES) - 1),
                "regen": regen,
            }
        )
    return {"id": sid, "bugs": [bug], "lines": len(scores), "rows": rows}


def test_simulate_counts_only_flags_whose_regeneration_differs() -> None:
    scores = [0.1 * i for i in range(20)]  # line 19 scores highest; 20 lines: 3 flags
    hit = _sample("t1/Python/1", scores, bug=19)
    same = _sample("t2/Python/2", scores, bug=19, exact=frozenset({19}))
    m = flag_simulate.simulate([hit], _ByFeature())
    assert m["recall_at_budget"] == 1.0 and m["top1"] == 1.0
    assert m["random_recall"] == pytest.approx(3 / 20) and m["random_top1"] == pytest.approx(1 / 20)
    m = flag_simulate.simulate([same], _ByFeature())
    # The model would write the bug line as it is: never a flag, ranked after the flags.
    assert m["recall_at_budget"] == 0.0 and m["top1"] == 0.0 and m["top3"] == 0.0
    low = _sample("t3/Python/3", scores, bug=0)
    assert flag_simulate.simulate([low], _ByFeature())["recall_at_budget"] == 0.0


def test_cross_validation_keeps_test_tasks_out_of_training(monkeypatch: pytest.MonkeyPatch) -> None:
    dev = [
        _sample(f"task{t}/Python/{t}{k}", [0.1 * i for i in range(20)], bug=19)
        for t in range(6)
        for k in range(2)
    ]
    others = [
        _sample(f"task{t}/Python/{t}9:correct:off_by_one", [0.0] * 20, bug=3) for t in range(6)
    ]
    others.append(_sample("textwrap.py:10:deleted_line", [0.0] * 20, bug=3))
    seen: list[tuple[set[str], list[float]]] = []

    def fake_fit(
        samples: Any, rounds: Any, params: Any, weights: Any, drop: Any
    ) -> tuple[Any, Any]:
        seen.append(({s["id"] for s in samples}, list(weights)))
        return None, None

    tested: list[set[str]] = []
    real_simulate = flag_simulate.simulate

    def fake_simulate(samples: Any, model: Any) -> dict[str, float]:
        tested.append({s["id"] for s in samples})
        return real_simulate(samples, _ByFeature())

    monkeypatch.setattr(flag_fitting, "fit", fake_fit)
    monkeypatch.setattr(flag_fitting, "simulate", fake_simulate)
    # The prior: record which folds each booster left out, and which booster each sample got.
    monkeypatch.setattr(
        flag_fitting, "fit_prior", lambda corpus, folds, exclude: frozenset(exclude)
    )
    got_prior: list[dict[str, Any]] = []

    def fake_with_priors(samples: Any, prior_of: Any) -> Any:
        got_prior.append({s["id"]: prior_of(s) for s in samples})
        return list(samples)

    monkeypatch.setattr(flag_datasets, "with_priors", fake_with_priors)
    folds = {f"task{t}": t % 3 for t in range(6)}
    pooled = flag_fitting.cross_validate(
        dev,
        others,
        3,
        folds=folds,
        corpus=[],
        dev_weight=2.0,
        mut_weight=0.5,
        log=io.StringIO(),
    )
    assert len(got_prior) == 6  # test and train of each fold
    for f in range(3):
        for ids in got_prior[2 * f : 2 * f + 2]:
            for sid, excluded in ids.items():
                # Every prior a fold uses left out the test fold, and a dev sample's own fold.
                assert f in excluded
                g = folds.get(flag_datasets.task_of(sid))
                assert g is None or g in excluded
    assert len(seen) == 3 and pooled["n"] == len(dev) and pooled["recall_at_budget"] == 1.0
    assert set().union(*tested) == {s["id"] for s in dev}
    for (train, weights), test in zip(seen, tested, strict=True):
        test_tasks = {flag_datasets.task_of(i) for i in test}
        assert test_tasks and not {flag_datasets.task_of(i) for i in train} & test_tasks
        assert "textwrap.py:10:deleted_line" in train
        assert sorted(set(weights)) == [0.5, 2.0]
    assert math.isclose(sum(len(t) for t in tested), len(dev))


def test_fit_hides_a_regeneration_feature_from_the_final_stage_only() -> None:
    """``--drop`` takes regeneration features too (the first stage has none of them)."""
    samples = [
        _sample(f"t{k}/Python/{k}", [0.1 * i for i in range(20)], bug=19, exact=frozenset({3}))
        for k in range(4)
    ]
    stage1, final = flag_fitting.fit(samples, rounds=3, drop=["ed_char", "lp_min"])
    assert stage1.num_feature() == len(ff.CHEAP_FEATURES)
    assert final.num_feature() == len(ff.ALL_FEATURES)
    masked = flag_fitting.Masked(FlagModel(stage1, final), ["ed_char"])
    assert masked.cheap == [] and masked.all == [ff.ALL_FEATURES.index("ed_char")]
