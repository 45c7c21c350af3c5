"""Learning this user (issue 25, item 3): the adaptation rule (conservative with little evidence,
hides more when the user's later decisions support it, never adopts a candidate that fails
them), the adapted folder the server writes, the folder lock shared with manual training, and
the static-vs-adaptive replay."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import numpy as np
import pytest
from tests.unit.test_cdhf import _synthetic_log, record_decision, suggestion_features

from tactful.cascade import adapt
from tactful.cascade import features as F
from tactful.cascade import model as cdhf
from tactful.cascade import train as cdhf_train
from tactful.cascade.lock import FolderBusy, folder_lock
from tactful.feedback.store import FeedbackLog
from tactful.replay import adapt as replay_adapt


def _scores(n: int, seed: int = 0, flip_after: float | None = None):
    """Prior scores where the top third is always rejected, the rest rejected 30 % of the time;
    from ``flip_after`` (a share of n) on, the top third is always accepted."""
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    y = np.where(p > 0.67, 1.0, (rng.random(n) < 0.3).astype(float))
    if flip_after is not None:
        late = np.arange(n) >= int(flip_after * n)
        y = np.where(late & (p > 0.67), 0.0, y)
    return p, p.copy(), y


def test_little_evidence_adopts_nothing() -> None:
    p1, p2, y = _scores(40)
    prop = adapt.propose(p1, p2, y, target=0.95)
    assert not prop.adopted and prop.thresholds is None
    assert f"needs at least {adapt.min_decisions(0.95)}" in prop.reason
    assert adapt.min_decisions(0.95) == 150  # 45 of 45 hidden correct, in the later 30 %


def test_hides_more_as_the_users_evidence_grows() -> None:
    p1, p2, y = _scores(600, seed=1)
    small = adapt.propose(p1[:160], p2[:160], y[:160], target=0.95)
    assert not small.adopted, small.reason
    prop = adapt.propose(p1, p2, y, target=0.95)
    assert prop.adopted, prop.reason
    assert prop.thresholds is not None and not prop.thresholds.hides_nothing()
    assert prop.check_lower is not None and prop.check_lower >= 0.95
    assert prop.fitted_on == 420 and prop.checked_on == 180
    hide, _ = cdhf.apply_thresholds(p1, p2, prop.thresholds)
    assert hide.mean() > 0.2 and y[hide].mean() >= 0.95


def test_never_adopts_a_candidate_that_fails_the_later_decisions() -> None:
    # The earlier 70 % support hiding the top third; the later 30 % accept exactly those.
    p1, p2, y = _scores(600, seed=2, flip_after=0.7)
    prop = adapt.propose(p1, p2, y, target=0.95)
    assert prop.thresholds is not None and not prop.thresholds.hides_nothing()
    assert prop.check_hidden > 0 and not prop.adopted
    assert "below the 95% target" in prop.reason


def test_replayed_adaptive_policy_is_static_until_evidence_supports_more() -> None:
    p1, p2, y = _scores(600, seed=3)
    prior = cdhf.Thresholds()  # the prior hides nothing
    res = replay_adapt.simulate_user(p1, p2, y, prior, 0.95, 0.5, every=20, explore=0.05)
    assert res["static_hidden"] == 0
    first = res["adoptions"][0]
    assert first >= adapt.min_decisions(0.95)
    assert res["adaptive_hidden"] > 20 and res["added_correct"] >= 0.95 * res["added_hidden"]
    # The same user with a short stream: nothing adopted, the two policies agree.
    short = replay_adapt.simulate_user(p1[:100], p2[:100], y[:100], prior, 0.95, 0.5, 20, 0.05)
    assert short["adoptions"] == [] and short["adaptive_hidden"] == short["static_hidden"] == 0
    pooled = replay_adapt.pooled({"a": res, "b": short})
    assert pooled["adaptive"]["accuracy_cp95"][1] == 1.0 and pooled["users_adopting"] == 1


# --- the server's side: the adapted folder -----------------------------------------------------


def _user_log(path: Path, n: int, seed: int = 0, flip_after: int | None = None) -> None:
    """One person's log: short suggestions always rejected (accepted from ``flip_after`` on),
    long ones rejected 20 % of the time."""
    rnd = random.Random(seed)
    log = FeedbackLog(path)
    t = 1000.0
    for i in range(n):
        sid = f"s{i}"
        short = rnd.random() < 0.5
        flipped = flip_after is not None and i >= flip_after
        rejected = (not flipped) if short else rnd.random() < 0.2
        record_decision(
            log,
            sid,
            {**F.context_features("x = f(", ")", "python"), "features_version": F.FEATURES_VERSION},
            suggestion_features(rnd, short),
            rejected=rejected,
            reason="explicit",
            t=t,
            decided_after=2,
            user="local",
            session="s",
        )
        t += 10
    log.close()


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prior trained on other people (4 users), target 0.9, hiding nothing or little."""
    tmp = tmp_path_factory.mktemp("prior")
    _synthetic_log(tmp / "team.sqlite3", users=4, per_user=40, seed=5)
    cdhf_train.train(tmp / "team.sqlite3", tmp / "prior", target=0.9, lam=0.05, curve=False)
    return tmp / "prior"


def test_adapt_log_writes_only_a_checked_model(tmp_path: Path, prior_dir: Path) -> None:
    out = tmp_path / "cdhf-user"
    small = tmp_path / "small.sqlite3"
    _user_log(small, 30)
    with pytest.raises(cdhf.NotEnoughData, match="adapting needs at least"):
        adapt.adapt_log(small, out, prior_dir)
    assert not out.exists()
    good = tmp_path / "good.sqlite3"
    _user_log(good, 300, seed=1)
    res = adapt.adapt_log(good, out, prior_dir)
    assert res.written, res.proposal.reason
    meta = json.loads((out / "cascade.json").read_text())
    assert meta["adapted"]["check_lower"] >= 0.9 and meta["supported"] is True
    assert meta["guard"]["prior_hidden"] == res.proposal.check_hidden > 0
    assert "adapted to your log" in (out / "MODEL_CARD.md").read_text()
    c = cdhf.Cascade.load(out)
    assert not c.thresholds.hides_nothing() and cdhf.own_model_ready(out)
    # A later candidate that fails on the later decisions never replaces it.
    before = (out / "cascade.json").read_bytes()
    bad = tmp_path / "bad.sqlite3"
    _user_log(bad, 300, seed=2, flip_after=210)
    res2 = adapt.adapt_log(bad, out, prior_dir)
    assert not res2.written and "below" in res2.proposal.reason
    assert (out / "cascade.json").read_bytes() == before


def test_a_model_the_user_trained_is_never_overwritten(tmp_path: Path, prior_dir: Path) -> None:
    out = tmp_path / "cdhf-user"
    log = tmp_path / "own.sqlite3"
    _user_log(log, 300, seed=1)
    cdhf_train.train(log, out, target=0.9, curve=False, personal=True)
    before = (out / "cascade.json").read_bytes()
    with pytest.raises(cdhf.CdhfError, match="trained with tactful train"):
        adapt.adapt_log(log, out, prior_dir)
    assert (out / "cascade.json").read_bytes() == before


def test_manual_training_and_adaptation_never_write_one_folder_at_once(
    tmp_path: Path, prior_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tactful.cascade import lock

    out = tmp_path / "cdhf-user"
    log = tmp_path / "own.sqlite3"
    _user_log(log, 300, seed=1)
    monkeypatch.setattr(lock, "MANUAL_WAIT_S", 0.3)
    held, release = threading.Event(), threading.Event()

    def writer() -> None:  # another thread of the same server holds the folder
        with folder_lock(out):
            held.set()
            release.wait(10)

    th = threading.Thread(target=writer)
    th.start()
    assert held.wait(10)
    try:
        with pytest.raises(FolderBusy, match="another training or adaptation"):
            adapt.adapt_log(log, out, prior_dir)
        with pytest.raises(FolderBusy):
            cdhf_train.train(log, out, target=0.9, curve=False, personal=True)
        assert cdhf_train.main(["--log", str(log), "--out", str(out), "--personal"]) == 1
        assert not (out / "cascade.json").exists()
    finally:
        release.set()
        th.join()
    assert adapt.adapt_log(log, out, prior_dir).written  # free again


def test_one_outcome_is_never_adopted_and_the_ablation_is_not_the_rule() -> None:
    p1, p2, _y = _scores(400, seed=4)
    prop = adapt.propose(p1, p2, np.ones(400), target=0.95)
    assert not prop.adopted and "adapting needs both outcomes" in prop.reason
    # Without the check, a candidate fitted on the earlier decisions of the flipping user is
    # adopted although the later ones accept what it hides; the rule refuses it.
    p1, p2, y = _scores(600, seed=2, flip_after=0.7)
    assert adapt.propose(p1[:420], p2[:420], y[:420], 0.95, check=False).adopted
    assert not adapt.propose(p1, p2, y, 0.95).adopted
    res = replay_adapt.simulate_user(p1, p2, y, cdhf.Thresholds(), 0.95, 0.5, 20, 0.05, check=False)
    assert res["adoptions"] and res["adaptive_correct"] < 0.95 * res["adaptive_hidden"]


def test_adapt_log_bad_input_writes_nothing(tmp_path: Path, prior_dir: Path) -> None:
    out = tmp_path / "cdhf-user"
    old = tmp_path / "old.sqlite3"
    _user_log(old, 200, seed=1)
    log = FeedbackLog(old)
    log.record("requested", "v0", {"features": {"features_version": 0}}, t=5000.0)
    log.record("shown", "v0", {"text": "x"}, t=5000.0)
    log.record("rejected", "v0", {"reason": "explicit"}, t=5002.0)
    log.close()
    with pytest.raises(cdhf.CdhfError, match="features of version"):
        adapt.adapt_log(old, out, prior_dir)
    with pytest.raises(cdhf.CdhfError, match="not a cascade model folder"):
        adapt.adapt_log(old, out, tmp_path / "no-prior")
    assert not out.exists()
