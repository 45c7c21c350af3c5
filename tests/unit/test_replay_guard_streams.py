"""The guard on long streams of held-out users (issue 25's 200-decision target): how users are
cut into streams, how a stream is put together, and what is measured at decision N (the CUPS
figures are in docs/cdhf.md)."""

from __future__ import annotations

import json

import pytest
from tests.unit.test_replay_guard import Hider, _stream

from tactful.cascade.guard import Guard
from tactful.replay.guard import GuardedPolicy, Trace
from tactful.replay.guard_streams import GAP_S, at_decision, concatenate, stream_folds
from tactful.replay.report import replay

CUPS_LIKE = {f"cups-{i}": n for i, n in enumerate([31, 85, 26, 34, 78, 34, 69, 30, 31, 63])}


def test_stream_folds_hold_every_user_once_in_streams_of_at_least_n() -> None:
    total = sum(CUPS_LIKE.values())  # 481: two streams of 200
    for seed in range(5):
        groups = stream_folds(CUPS_LIKE, 200, seed)
        assert len(groups) == total // 200
        flat = [u for g in groups for u in g]
        assert sorted(flat) == sorted(CUPS_LIKE), "every user in exactly one stream"
        assert all(sum(CUPS_LIKE[u] for u in g) >= 200 for g in groups)
        assert stream_folds(CUPS_LIKE, 200, seed) == groups, "the seed fixes the cut and order"
    assert stream_folds(CUPS_LIKE, 200, 0) != stream_folds(CUPS_LIKE, 200, 1)
    assert len(stream_folds(CUPS_LIKE, 150, 0)) == 3


def test_stream_folds_refuse_what_cannot_make_two_streams() -> None:
    with pytest.raises(ValueError, match="two held-out streams"):
        stream_folds(CUPS_LIKE, 300, 0)
    with pytest.raises(ValueError, match="no cut"):
        stream_folds({"a": 399, "b": 1, "c": 1}, 200, 0)  # 401 decisions, one user has 399


def test_concatenate_puts_users_one_after_the_other_as_one_person() -> None:
    a, _ = _stream("alice", 5, accepted=True)
    b, _ = _stream("bob", 4, accepted=False)
    # Both logged at the same times, bob's given out of order: the stream sorts each user.
    units = b[::-1] + a
    s = concatenate(units, ["bob", "alice", "carol"], "bob+alice")
    assert [u.sid for u in s] == [f"bob-{i}" for i in range(4)] + [f"alice-{i}" for i in range(5)]
    assert {u.user for u in s} == {"bob+alice"}
    assert [u.session for u in s] == ["bob"] * 4 + ["alice"] * 5, "sessions are kept"
    ts = [u.t for u in s]
    assert ts == sorted(ts) and ts[0] == 0.0
    assert ts[4] - max(ts[3], s[3].t_seen or 0) == GAP_S, "alice starts GAP_S after bob ended"
    for u, orig in zip(s, sorted(b, key=lambda u: u.t) + a, strict=True):
        assert u.t_seen is not None and orig.t_seen is not None
        assert u.t_seen - u.t == orig.t_seen - orig.t, "each user's own timing is kept"
        assert (u.text, u.accepted) == (orig.text, orig.accepted)


def _trace() -> Trace:
    tr = Trace()
    # 6 decisions: would hide 0, 1, 3, 4; rejected 0, 1, 2, 4.
    tr.would_hide = [True, True, False, True, True, False]
    tr.accepted = [False, False, False, True, False, True]
    tr.estimate = [None, 1.0, 0.95, 0.9, 0.8, 0.7]
    tr.observed = [None, 1.0, 1.0, 0.5, 0.6, 0.75]
    tr.evidence = [0, 1, 2, 2, 3, 4]
    tr.end = {"accuracy": 0.72, "observed": 0.7, "n": 5}
    return tr


def test_at_decision_reads_the_estimate_after_k_decisions_against_the_truth_so_far() -> None:
    tr = _trace()
    a = at_decision(tr, 4)  # decisions 0-3: would hide 0, 1, 3; 0 and 1 rejected
    assert a["decisions"] == 4 and a["would_hide"] == 3
    assert a["truth"] == pytest.approx(2 / 3)
    assert (a["estimate"], a["observed"], a["evidence"]) == (0.8, 0.6, 3), "state after 4"
    assert a["observed_error"] == pytest.approx(0.6 - 2 / 3)
    assert a["estimate_error"] == pytest.approx(0.8 - 2 / 3)
    assert a["prior"] is None and a["prior_error"] is None
    assert at_decision(tr, 4, 0.9)["prior_error"] == pytest.approx(0.9 - 2 / 3)
    end = at_decision(tr, 200)  # a shorter stream: the end state, the truth over all of it
    assert end["decisions"] == 6 and end["would_hide"] == 4
    assert end["truth"] == pytest.approx(3 / 4)
    assert (end["estimate"], end["observed"], end["evidence"]) == (0.72, 0.7, 5)
    assert at_decision(tr, 6) == end
    assert at_decision(tr, 1)["truth"] == 1.0
    none = at_decision(
        Trace(
            would_hide=[False],
            accepted=[True],
            estimate=[None],
            observed=[None],
            evidence=[0],
            end={"accuracy": None, "observed": None, "n": 0},
        ),
        1,
    )
    assert none["truth"] is None and none["observed_error"] is None


def test_one_guard_over_a_concatenated_stream_tracks_the_truth_at_200() -> None:
    """Alice rejects every suggestion (the cascade is right), then Bob wants every one: one
    guard for the pair; at decision 200 the truth is 120 of 200, and the guard's own estimate
    follows it."""
    a, ca = _stream("alice", 120, accepted=False)
    b, cb = _stream("bob", 120, accepted=True)
    s = concatenate(a + b, ["alice", "bob"], "alice+bob")
    pol = GuardedPolicy("g", Hider(), lambda: Guard(0.9, 100, 99), {**ca, **cb}, 0.1)
    pol.prepare(s, {**ca, **cb})
    replay(s, [pol])
    pol.finish()
    assert set(pol.traces) == {"alice+bob"}, "one guard for the whole stream"
    tr = pol.traces["alice+bob"]
    at = at_decision(tr, 200)
    assert at["would_hide"] == 200 and at["truth"] == pytest.approx(0.6)
    assert at["evidence"] > 150
    assert abs(at["observed_error"]) <= 0.10
    assert at_decision(tr, 120)["truth"] == 1.0
    assert pol.gates["alice+bob"].guard is not None
    assert pol.gates["alice+bob"].guard.level == 2, "bob's evidence turned hiding off"


def test_guard_replay_streams_end_to_end(tmp_path, capsys) -> None:
    """``python -m tactful.replay.guard --stream-decisions N`` on a small log: users held out
    in streams of at least N decisions, one line per stream; too few decisions: a message."""
    from tests.unit.test_cdhf import _synthetic_log

    from tactful.replay import guard as replay_guard

    log = tmp_path / "log.sqlite3"
    _synthetic_log(log, users=6, per_user=40)
    args = ["--log", str(log), "--target", "0.8", "--stream-decisions", "80", "--seed", "3"]
    assert replay_guard.main(args) == 0
    out = capsys.readouterr()
    rep = json.loads(out.out)
    assert rep["seeds"] == [3] and len(rep["streams"]) == 3
    users = [u for s in rep["streams"] for u in s["users"]]
    assert sorted(users) == [f"user{u}" for u in range(6)]
    for s in rep["streams"]:
        assert s["decisions"] >= 80 and s["at_80"]["decisions"] == 80
        assert s["at_end"]["decisions"] == s["decisions"]
    assert rep["summary"]["at_80"]["streams"] == 3
    assert out.err.count("| 3 | user") == 3, "the table: one line per stream"
    assert replay_guard.main([*args[:-3], "500"]) == 2
    assert "cannot make two held-out streams" in capsys.readouterr().err
