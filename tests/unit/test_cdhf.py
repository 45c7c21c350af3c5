"""The CDHF cascade: threshold fitting, training on a small log, the model folder, run-time
decisions, the shipped default model, and the show-time features it is built on."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tactful.cascade import features as F
from tactful.cascade import model as cdhf
from tactful.cascade import train as cdhf_train
from tactful.cascade.hooks import Decision
from tactful.feedback.store import FeedbackLog


def test_entropy() -> None:
    assert cdhf.entropy(0.5) == pytest.approx(1.0)
    assert cdhf.entropy(0.99) < 0.1
    assert np.allclose(cdhf.entropy(np.array([0.1, 0.9])), cdhf.entropy(0.1))


def test_fit_thresholds_keeps_accuracy_when_hiding() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    y = (rng.random(n) < 0.6).astype(float)  # 1 = rejected
    p2 = np.clip(0.6 + 0.35 * (2 * y - 1) * rng.random(n), 0.01, 0.99)
    p1 = np.clip(0.6 + 0.1 * (2 * y - 1) + rng.normal(0, 0.15, n), 0.01, 0.99)  # weaker, noisy
    for target in (0.9, 0.95, 0.99):
        th = cdhf_train.fit_thresholds(p1, p2, y, target=target, lam=0.1)
        m = cdhf_train.cascade_metrics(p1, p2, y, th)
        assert m["hidden"] > 0.05
        assert m["accuracy_when_hiding"] >= target
    # A high price on model calls makes stage 1 decide more requests alone.
    cheap = cdhf_train.cascade_metrics(p1, p2, y, cdhf_train.fit_thresholds(p1, p2, y, lam=0.01))
    dear = cdhf_train.cascade_metrics(p1, p2, y, cdhf_train.fit_thresholds(p1, p2, y, lam=0.9))
    assert dear["decided_by_stage1"] > cheap["decided_by_stage1"]
    assert cheap["hidden"] >= dear["hidden"]
    # A fixed stage-1 share (the paper's R).
    th = cdhf_train.fit_thresholds(p1, p2, y, stage1_share=0.25)
    assert cdhf_train.cascade_metrics(p1, p2, y, th)["decided_by_stage1"] == pytest.approx(
        0.25, abs=0.01
    )
    # Nothing can reach the target: hide nothing rather than break the promise.
    th = cdhf_train.fit_thresholds(
        np.full(50, 0.5), np.full(50, 0.5), np.array([0.0, 1.0] * 25), target=0.95
    )
    assert (
        cdhf_train.cascade_metrics(
            np.full(50, 0.5), np.full(50, 0.5), np.array([0.0, 1.0] * 25), th
        )["hidden"]
        == 0
    )


def test_bootstrap_ci_resamples_whole_users() -> None:
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(10), 30)
    y = (rng.random(300) < 0.6).astype(float)
    hide = (y == 1) & (rng.random(300) < 0.3)
    hide[:3] = True  # a few accepted ones hidden too
    ci = cdhf_train.bootstrap_ci(hide, y, groups, reps=500)
    assert ci == cdhf_train.bootstrap_ci(hide, y, groups, reps=500), "deterministic"
    pooled = {
        "hidden": hide.mean(),
        "accuracy_when_hiding": y[hide].mean(),
        "rejected_hidden": (hide & (y == 1)).sum() / y.sum(),
    }
    for key, value in pooled.items():
        lo, hi = ci[key]  # type: ignore[misc]
        assert lo <= value <= hi, key
        assert hi - lo > 0.0
    # One user makes every error: resampling users widens accuracy's interval more than
    # resampling decisions would, and it can reach 100 % (that user left out).
    hide2 = y == 1
    y2 = y.copy()
    bad = groups == 0
    hide2[bad] = True
    ci2 = cdhf_train.bootstrap_ci(hide2, y2, groups, reps=500)
    assert ci2["accuracy_when_hiding"][1] == pytest.approx(1.0)  # type: ignore[index]
    # Nothing hidden: no accuracy interval, hidden share exactly 0.
    ci3 = cdhf_train.bootstrap_ci(np.zeros(300, bool), y, groups, reps=100)
    assert ci3["accuracy_when_hiding"] is None and ci3["hidden"] == [0.0, 0.0]


#: The features of a request that says only which feature version computed them.
CURRENT = {"features_version": F.FEATURES_VERSION}


def suggestion_features(rnd: random.Random, short: bool) -> dict[str, float]:
    """A generated suggestion's features: 1 to 6 characters long when ``short``, else 20 to 80,
    and its mean log-probability."""
    return {
        "sugg_chars": float(rnd.randint(1, 6) if short else rnd.randint(20, 80)),
        "mean_logprob": rnd.uniform(-2, 0),
    }


def record_decision(
    log: FeedbackLog,
    sid: str,
    requested: dict[str, Any],
    generated: dict[str, Any],
    *,
    rejected: bool,
    reason: str,
    t: float,
    decided_after: float,
    **extra: Any,
) -> None:
    """One shown suggestion as the server logs it: requested and generated (with these features)
    and shown at ``t``, then rejected (for ``reason``) or accepted (one character)
    ``decided_after`` seconds later. ``extra``: the event's user and session."""
    log.record("requested", sid, {"features": requested}, t=t, **extra)
    log.record("generated", sid, {"features": generated}, t=t, **extra)
    log.record("shown", sid, {"text": "x"}, t=t, **extra)
    log.record(
        "rejected" if rejected else "accepted",
        sid,
        {"reason": reason} if rejected else {"accepted_length": 1},
        t=t + decided_after,
        **extra,
    )


def _synthetic_log(path: Path, users: int = 4, per_user: int = 40, seed: int = 1) -> None:
    """Short suggestions shown right after another one get rejected; long ones accepted."""
    rnd = random.Random(seed)
    log = FeedbackLog(path)
    t = 1000.0
    for u in range(users):
        for i in range(per_user):
            sid = f"u{u}-{i}"
            short = rnd.random() < 0.5
            rejected = rnd.random() < (0.9 if short else 0.2)
            feats1 = {
                **F.context_features("x = foo(", ")\n", "python"),
                "features_version": F.FEATURES_VERSION,
                "since_shown": rnd.uniform(0, 2) if short else rnd.uniform(5, 30),
                "session_decisions": float(i),
            }
            record_decision(
                log,
                sid,
                feats1,
                suggestion_features(rnd, short),
                rejected=rejected,
                reason="timeout",
                t=t,
                decided_after=1,
                user=f"user{u}",
                session=f"s{u}",
            )
            t += 10
    log.close()


def test_train_on_a_small_log(tmp_path: Path) -> None:
    log = tmp_path / "small.sqlite3"
    _synthetic_log(log)
    out = tmp_path / "model"
    res = cdhf_train.train(log, out, curve=False, telemetry=True)
    for name in ("stage1.txt", "stage2.txt", "cascade.json", "MODEL_CARD.md"):
        assert (out / name).is_file()
    meta = json.loads((out / "cascade.json").read_text())
    assert meta["metrics"]["held_out_by"] == "user" and meta["metrics"]["decisions"] == 160
    assert res.metrics["stage2_auc"] > 0.75, res.metrics["stage2_auc"]
    assert res.metrics["stage1_auc"] > 0.7, "since_shown is a stage-1 feature"
    card = (out / "MODEL_CARD.md").read_text()
    assert f"Features version {F.FEATURES_VERSION} " in card
    assert "stage 2 AUC" in card
    assert card.splitlines()[2].startswith("What a new user should expect"), card
    # The held-out hiding figures come with intervals that resample users.
    ci = meta["metrics"]["held_out"]["ci95"]
    assert set(ci) == {"hidden", "accuracy_when_hiding", "rejected_hidden"}
    assert ci["hidden"][0] <= res.metrics["held_out"]["pooled"]["hidden"] <= ci["hidden"][1]
    assert "95% intervals resampling held-out groups" in card
    assert "telemetry features (opt-in) did not transfer" in card
    # Model files are LightGBM text, not pickles.
    assert (out / "stage2.txt").read_text().startswith("tree")
    c = cdhf.Cascade.load(out)
    short = {"since_shown": 0.5, "sugg_chars": 3.0, "mean_logprob": -1.0}
    long = {"since_shown": 20.0, "sugg_chars": 50.0, "mean_logprob": -1.0}
    assert c.p_stage2(short) > c.p_stage2(long)
    assert c.p_stage1(short) > c.p_stage1(long)


def test_cli_leads_with_the_new_user_figure_and_defaults_to_transferable_features(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "small.sqlite3"
    _synthetic_log(log)
    assert cdhf_train.main(["--log", str(log), "--out", str(tmp_path / "cli"), "--no-curve"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("What a new user should expect"), out
    assert "Verdict at target 95%" in out
    meta = json.loads((tmp_path / "cli" / "cascade.json").read_text())
    assert meta["stage1_features"] == list(F.CONTEXT_FEATURES), "no telemetry by default"
    assert meta["trained"]["telemetry"] is False
    summary = json.loads(out[out.index("{") :])
    assert summary["supported"] == meta["supported"]
    ho = meta["metrics"]["held_out"]["pooled"]
    if not meta["supported"]:
        assert cdhf.Thresholds(**meta["thresholds"]).hides_nothing()
        assert "hides nothing" in meta["verdict"]
    else:
        assert ho["accuracy_when_hiding"] >= 0.95


def test_unsupported_target_writes_a_cascade_that_hides_nothing(tmp_path: Path) -> None:
    """Outcomes unrelated to the features: no threshold can be shown to meet the target."""
    log = tmp_path / "noise.sqlite3"
    flog = FeedbackLog(log)
    rnd = random.Random(5)
    for i in range(240):
        sid, extra = f"s{i}", {"user": f"u{i % 6}", "session": f"s{i % 6}"}
        feats = {
            **F.context_features("x = foo(", ")\n", "python"),
            "doc_len": rnd.random(),
            "features_version": F.FEATURES_VERSION,
        }
        flog.record("requested", sid, {"features": feats}, t=i, **extra)
        flog.record("generated", sid, {"features": {"sugg_chars": rnd.random()}}, t=i, **extra)
        flog.record("shown", sid, {"text": "x"}, t=i, **extra)
        rejected = rnd.random() < 0.6
        flog.record(
            "rejected" if rejected else "accepted", sid, {"reason": "timeout"}, t=i + 1, **extra
        )
    flog.close()
    res = cdhf_train.train(log, tmp_path / "m", curve=False)
    assert not res.supported and res.thresholds.hides_nothing()
    assert "hides nothing" in res.verdict
    c = cdhf.Cascade.load(tmp_path / "m")
    assert c.thresholds.hides_nothing() and c.meta["guard"]["prior_hidden"] == 0


def test_fit_thresholds_keeps_the_lower_bound_not_the_point_estimate() -> None:
    # 20 confident predictions, all rejected: the point estimate allows hiding them, but 20 of
    # 20 only bounds the accuracy from below at 0.1 ** (1 / 20) = 0.89 < 0.95.
    y = np.array([1.0] * 20 + [0.0, 1.0] * 40)
    p = np.array([0.99] * 20 + [0.5] * 80)
    point = cdhf_train.fit_thresholds(p, p, y, target=0.95, confidence=None)
    assert cdhf_train.cascade_metrics(p, p, y, point)["hidden_count"] == 20
    bound = cdhf_train.fit_thresholds(p, p, y, target=0.95)
    assert bound.hides_nothing() or cdhf_train.cascade_metrics(p, p, y, bound)["hidden_count"] == 0
    # 60 of 60 bounds it at 0.962: enough.
    y = np.array([1.0] * 60 + [0.0, 1.0] * 40)
    p = np.array([0.99] * 60 + [0.5] * 80)
    th = cdhf_train.fit_thresholds(p, p, y, target=0.95)
    assert cdhf_train.cascade_metrics(p, p, y, th)["hidden_count"] == 60


def test_train_one_person_needs_personal(tmp_path: Path) -> None:
    log = tmp_path / "one.sqlite3"
    _synthetic_log(log, users=1, per_user=120)
    with pytest.raises(cdhf.CdhfError, match=r"1 user.*--personal"):
        cdhf_train.train(log, tmp_path / "m", curve=False)
    assert not (tmp_path / "m").exists()
    res = cdhf_train.train(log, tmp_path / "m", curve=False, personal=True)
    assert res.metrics["held_out_by"] == "time block"
    assert "this person's held-out time" in (tmp_path / "m" / "MODEL_CARD.md").read_text()


def test_several_logs_keep_users_apart(tmp_path: Path) -> None:
    a, b = tmp_path / "logs" / "a.sqlite3", tmp_path / "logs" / "b.sqlite3"
    a.parent.mkdir()
    _synthetic_log(a, users=2, per_user=60, seed=1)  # user0, user1 in both logs
    _synthetic_log(b, users=2, per_user=60, seed=2)
    rows = cdhf_train.load_rows([a, b])
    assert {r.user for r in rows} == {"a/user0", "a/user1", "b/user0", "b/user1"}
    assert cdhf_train.load_rows([tmp_path / "logs"]) == rows or len(
        cdhf_train.load_rows([tmp_path / "logs"])
    ) == len(rows)
    res = cdhf_train.train([a, b], tmp_path / "m", curve=False)
    assert res.metrics["users"] == 4 and res.metrics["held_out_by"] == "user"
    assert (
        cdhf_train.main(
            ["--log", str(a), "--log", str(b), "--out", str(tmp_path / "m2"), "--no-curve"]
        )
        == 0
    )
    with pytest.raises(cdhf.CdhfError, match="no such log"):
        cdhf_train.load_rows([tmp_path / "missing.sqlite3"])


def test_old_feature_version_is_refused_and_the_previous_model_kept(tmp_path: Path) -> None:
    good = tmp_path / "good.sqlite3"
    _synthetic_log(good)
    out = tmp_path / "m"
    cdhf_train.train(good, out, curve=False)
    before = (out / "cascade.json").read_text()
    old = tmp_path / "old.sqlite3"
    flog = FeedbackLog(old)
    for i in range(200):
        sid, extra = f"s{i}", {"user": f"u{i % 4}", "session": f"s{i % 4}"}
        # Version 1 logs did not record the version: half the rows say it, half leave it out.
        feats = {"doc_len": float(i)} if i % 2 else {"features_version": 1, "doc_len": float(i)}
        flog.record("requested", sid, {"features": feats}, t=i, **extra)
        flog.record("shown", sid, {"text": "x"}, t=i, **extra)
        flog.record(
            "rejected" if i % 3 else "accepted", sid, {"reason": "timeout"}, t=i + 1, **extra
        )
    flog.close()
    with pytest.raises(cdhf.CdhfError, match="features of version"):
        cdhf_train.train(old, out, curve=False)
    assert cdhf_train.main(["--log", str(old), "--out", str(out)]) == 1
    assert (out / "cascade.json").read_text() == before, "the previous model is kept"


def test_train_refuses_too_little_or_one_sided_data(tmp_path: Path) -> None:
    log = tmp_path / "tiny.sqlite3"
    _synthetic_log(log, users=3, per_user=4)
    with pytest.raises(cdhf.CdhfError, match="at least"):
        cdhf_train.train(log, tmp_path / "m")
    assert cdhf_train.main(["--log", str(log), "--out", str(tmp_path / "m")]) == 1
    one = tmp_path / "one.sqlite3"
    flog = FeedbackLog(one)
    for i in range(40):
        flog.record("requested", f"s{i}", {"features": CURRENT})
        flog.record("shown", f"s{i}", {})
        flog.record("rejected", f"s{i}", {"reason": "timeout"})
    flog.close()
    with pytest.raises(cdhf.CdhfError, match="both outcomes"):
        cdhf_train.train(one, tmp_path / "m")
    few = tmp_path / "few.sqlite3"
    flog = FeedbackLog(few)
    for i in range(60):  # enough decisions, too few rejected ones to show 95 %
        flog.record("requested", f"s{i}", {"features": CURRENT}, user=f"u{i % 3}")
        flog.record("shown", f"s{i}", {}, user=f"u{i % 3}")
        flog.record(
            "rejected" if i % 3 == 0 else "accepted",
            f"s{i}",
            {"reason": "timeout"},
            user=f"u{i % 3}",
        )
    flog.close()
    with pytest.raises(cdhf.CdhfError, match=r"20 rejected decisions.*needs at least 45"):
        cdhf_train.train(few, tmp_path / "m")
    assert not (tmp_path / "m").exists(), "no model written"
    assert (
        cdhf_train.main(["--log", str(tmp_path / "missing.sqlite3"), "--out", str(tmp_path / "m")])
        == 1
    )


def test_shipped_default_model() -> None:
    path = cdhf.default_model_dir()
    c = cdhf.Cascade.load(path)
    assert c.stage1_features == F.CONTEXT_FEATURES, "shipped without telemetry (docs/cdhf.md)"
    assert c.stage2_features == F.CONTEXT_FEATURES + F.SUGGESTION_FEATURES
    m = c.meta["metrics"]
    assert m["held_out_by"] == "user" and m["users"] == 14 and m["decisions"] == 653
    assert m["stage2_auc"] >= 0.75, "the documented target"
    assert m["held_out"]["pooled"]["decided_by_stage1"] >= 0.25
    assert (path / "MODEL_CARD.md").is_file()
    feats = {
        **F.context_features("def f(x):\n    return ", "\n", "python"),
        **F.Telemetry().features(0.0, "u", 20),
    }
    p = c.p_stage1(feats)
    assert 0.0 < p < 1.0
    d = c.stage1(feats)
    assert d.stage == 1 and d.p_reject == p


def test_cascade_decisions_and_overrides() -> None:
    c = cdhf.Cascade.load(cdhf.default_model_dir())
    feats = {**F.context_features("x = ", "", "python"), "sugg_chars": 3.0}
    p1, p2 = c.p_stage1(feats), c.p_stage2(feats)
    c.thresholds = cdhf.Thresholds(entropy=0.0, stage1=1.01, stage2=p2)  # always defer; hide at p2
    d1 = c.stage1(feats)
    assert d1.show and d1.deferred
    assert not c.stage2(feats, d1).show
    c.thresholds = cdhf.Thresholds(
        entropy=1.01, stage1=p1, stage2=1.01
    )  # stage 1 decides and skips
    assert not c.stage1(feats).show
    assert c.stage2(feats, Decision(show=True, stage=1)).stage == 0, (
        "stage 1 decided: stage 2 is not asked"
    )
    c.thresholds = cdhf.Thresholds()
    c.stage1_override, c.stage2_override = 0.0, None
    assert not c.stage1(feats).show
    c.stage1_override, c.stage2_override = None, 0.0
    assert not c.stage2(feats, c.stage1(feats)).show
    c.stage2_override = 1.0
    assert c.stage2(feats, c.stage1(feats)).show


def test_bad_model_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(cdhf.CdhfError, match="not a cascade model folder"):
        cdhf.Cascade.load(tmp_path)
    src = cdhf.default_model_dir()
    for name in ("cascade.json", "stage1.txt", "stage2.txt"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    meta = json.loads((tmp_path / "cascade.json").read_text())
    meta["features_version"] = 999
    (tmp_path / "cascade.json").write_text(json.dumps(meta))
    with pytest.raises(cdhf.CdhfError, match="retrain"):
        cdhf.Cascade.load(tmp_path)
    meta["features_version"] = F.FEATURES_VERSION
    (tmp_path / "cascade.json").write_text(json.dumps(meta))
    (tmp_path / "stage2.txt").write_text("garbage")
    with pytest.raises(cdhf.CdhfError):
        cdhf.Cascade.load(tmp_path)


def test_resolve_model_dir_prefers_setting_then_own(tmp_path: Path) -> None:
    assert cdhf.resolve_model_dir(str(tmp_path / "x"), str(tmp_path)) == tmp_path / "x"
    assert cdhf.resolve_model_dir(None, str(tmp_path)) == cdhf.default_model_dir()
    own = cdhf.user_model_dir(str(tmp_path))
    own.mkdir(parents=True)
    (own / "cascade.json").write_text("{}")
    assert cdhf.resolve_model_dir(None, str(tmp_path)) == cdhf.default_model_dir(), (
        "not a trained model"
    )
    (own / "cascade.json").write_text(
        json.dumps({"metrics": {"decisions": cdhf.OWN_LOG_MIN_DECISIONS - 1}})
    )
    assert cdhf.resolve_model_dir(None, str(tmp_path)) == cdhf.default_model_dir(), (
        "too few decisions"
    )
    (own / "cascade.json").write_text(
        json.dumps({"metrics": {"decisions": cdhf.OWN_LOG_MIN_DECISIONS}})
    )
    assert cdhf.resolve_model_dir(None, str(tmp_path)) == own


# --- features ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "suffix", "expected"),
    [
        ("x = 1  # a comm", "\n", "comment"),
        ("s = 'hello wor", "'\n", "string"),
        ("def f(x):\n    ", "\n", "block_start"),
        ("def f(x):", "\n", "block_start"),
        ("x = 1\n", "\n", "empty_line"),
        ("x = foo", "\n", "line_end"),
        ("x = foo(", ")\n", "line_end"),
        ("x = foo", "(1)\n", "mid_line"),
        ("x = foo", None, "line_end"),
    ],
)
def test_context_class_is_the_cursor_class(prefix: str, suffix: str | None, expected: str) -> None:
    from tactful.cursor import cursor_class

    f = F.context_features(prefix, suffix, "python")
    assert f["context_class"] == F.CONTEXT_CLASSES.index(expected)
    assert cursor_class(prefix, suffix, "python") == expected


def test_context_features() -> None:
    f = F.context_features("def f(x):\n    return x", " + 1\n", "python")
    assert (
        f["line_len"] == len("    return x")
        and f["line_len_stripped"] == len("return x")
        and f["indent"] == 4
    )
    assert f["ws_after_cursor"] == 1.0 and f["doc_len"] == 27 and f["offset"] == 22
    assert f["last_char"] == F.CHAR_CLASSES.index("alpha")
    assert f["language"] == F.LANGUAGES.index("python")
    assert F.context_features("x", None, "weird-lang")["language"] == F.LANGUAGES.index("other")
    unknown_suffix = F.context_features("x = ", None, "python", doc_len=10)
    assert unknown_suffix["ws_after_cursor"] is None and unknown_suffix[
        "offset_frac"
    ] == pytest.approx(0.4)


def test_suggestion_features() -> None:
    f = F.suggestion_features(
        "foo(a)\nfoo(a)\n", "x = ", "\n", "python", token_logprobs=[-1.0, -3.0, float("nan")]
    )
    assert (
        f["sugg_lines"] == 3
        and f["repetition"] == 0.5
        and f["min_logprob"] == -3.0
        and f["mean_logprob"] == -2.0
    )
    assert f["sugg_tokens"] == 3.0
    assert F.suggestion_features("a + b", "x = ", "", "python")["syntax_ok"] == 1.0
    assert F.suggestion_features("a + + )", "x = ", "", "python")["syntax_ok"] == 0.0
    assert F.suggestion_features("a", "x", "", "plaintext")["syntax_ok"] is None
    dup = F.suggestion_features("return x", "def f(x):\n    ", "\n    return x\n", "python")
    assert dup["dup_suffix"] == 1.0
    assert F.suggestion_features("# note\nx = 1", "", None, "python")["comment_share"] == 0.5


def test_vector_handles_missing_and_bad_values() -> None:
    v = F.vector({"a": 1, "b": None, "c": "x", "d": float("inf")}, ["a", "b", "c", "d", "e"])
    assert v[0] == 1.0 and all(math.isnan(x) for x in v[1:])
