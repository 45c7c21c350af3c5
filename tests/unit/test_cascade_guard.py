"""The cascade's run-time guard and the show/hide gate: typed-next evidence, backing off and
returning, exploration and back-off shows, the audit log and `tactful log stats` - without a
server (the tracker behind the gate is the real one, with a fake clock)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.test_replay_guard import Hider

from tactful import stats
from tactful.cascade.gate import Gate
from tactful.cascade.guard import Evidence, Guard, stricter, typed_outcome
from tactful.cascade.hooks import Decision, Judged, RequestInfo, SuggestionInfo
from tactful.feedback import store
from tactful.feedback.store import FeedbackLog
from tactful.feedback.tracker import SuggestionTracker

URI = "file:///w/a.py"
BEFORE = "def add(a, b):\n    return "
AFTER = "\n\nprint(add(1, 2))\n"


def test_typed_outcome() -> None:
    s = "a + b"
    assert typed_outcome(BEFORE, AFTER, s, BEFORE + AFTER) is None, "nothing typed yet"
    assert typed_outcome(BEFORE, AFTER, s, BEFORE + "a +" + AFTER) is None, "typing along"
    assert typed_outcome(BEFORE, AFTER, s, BEFORE + "a + b" + AFTER) is True
    assert typed_outcome(BEFORE, AFTER, s, BEFORE + "a  +  b  # sum" + AFTER) is True
    assert typed_outcome(BEFORE, AFTER, s, BEFORE + "a + c" + AFTER) is True, "a close match"
    assert typed_outcome(BEFORE, AFTER, s, BEFORE + "sum([a, b])" + AFTER) is False
    assert typed_outcome(BEFORE, AFTER, s, "x" + BEFORE + AFTER) is None, "place lost"
    multi = "total = a + b\n    return total"
    assert typed_outcome(BEFORE, AFTER, multi, BEFORE + "total = a + b\n    log()" + AFTER)


def _ev(correct: bool, p: float = 0.95, threshold: float = 0.9) -> Evidence:
    return Evidence(correct, "explored", 2, p, threshold)


def test_guard_backs_off_within_a_few_wrong_hides_and_says_so_once() -> None:
    g = Guard(0.95, prior_hidden=100, prior_correct=99)  # held out: 99 % of 100
    assert stats.cp_lower(99, 100) >= 0.95 and g.level == 0 and g.allows(0.91, 0.9)
    messages = [g.add(_ev(False, p=0.91 + 0.08 * (i % 2))) for i in range(50)]
    said = [m for m in messages if m]
    assert g.level == 2 and not g.allows(0.99, 0.9)
    assert 1 <= len(said) <= 2 and "backs off" in said[0]
    first_off = next(i for i, _m in enumerate(messages) if g.level == 2 and _m and "nothing" in _m)
    assert first_off < 10
    assert g.state()["state"] == "off" and g.state()["evidence"] == 50


def test_guard_stricter_level_hides_only_confident_calls() -> None:
    g = Guard(0.9, prior_hidden=60, prior_correct=59)
    # Errors only just above the threshold; the confident calls are right.
    for _ in range(30):
        g.add(_ev(False, p=0.91))
        g.add(_ev(True, p=0.99))
        g.add(_ev(True, p=0.99))
    assert g.level == 1
    assert g.allows(0.99, 0.9) and not g.allows(0.91, 0.9)
    assert stricter(0.9) == pytest.approx(0.95)


def test_guard_returns_when_the_evidence_allows_and_estimates_the_truth() -> None:
    g = Guard(0.9, prior_hidden=40, prior_correct=39)
    for _ in range(20):
        g.add(_ev(False))
    assert g.level == 2
    said = [g.add(_ev(True)) for _ in range(400)]
    assert g.level == 0 and any(m and "hides again" in m for m in said)
    # After a full window the prior has faded: the estimate is the evidence's.
    g2 = Guard(0.9, prior_hidden=1000, prior_correct=1000)
    for i in range(200):
        g2.add(_ev(i % 5 != 0))  # 80 % right
    assert g2.estimate()["accuracy"] == pytest.approx(0.8)


def test_guard_without_a_held_out_prior_assumes_the_target_just_met() -> None:
    g = Guard(0.95)
    assert g.level == 0 and g.prior_hidden == stats.min_trials(0.95)
    g.add(_ev(False))
    assert g.level > 0, "one error is enough to doubt a bare promise"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _wired(
    tmp_path: Path, guard: Guard, explore: float = 0.0
) -> tuple[Gate, SuggestionTracker, Clock]:
    clock = Clock()
    tr = SuggestionTracker(FeedbackLog(tmp_path / "log.sqlite3"), clock=clock, start_timer=False)
    messages: list[str] = []
    gate = Gate(
        tr, Hider(), explore_rate=explore, clock=clock, guard=guard, on_message=messages.append
    )
    tr.on_outcome = gate.on_outcome
    gate.messages = messages  # type: ignore[attr-defined]
    return gate, tr, clock


def _request(gate: Gate, text: str, offset: int, sugg: str) -> tuple[RequestInfo, Decision]:
    req = RequestInfo(URI, "python", text, offset, 1, 11)
    s1 = gate.before_generation(req)
    info = SuggestionInfo(sugg)
    s2 = gate.after_generation(req, info, s1)
    if s2.show:
        gate.shown(Judged(req, info, s1, s2), f"item-{req.rid}")
    else:
        gate.hidden(Judged(req, info, s1, s2))
    return req, s2


def test_a_user_who_types_the_hidden_suggestions_stops_the_hiding(tmp_path: Path) -> None:
    guard = Guard(0.95, prior_hidden=100, prior_correct=99)
    gate, tr, clock = _wired(tmp_path, guard)
    text = BEFORE + AFTER
    hidden_at: list[int] = []
    for i in range(50):
        _req, s2 = _request(gate, text, len(BEFORE), "a + b")
        if not s2.show:
            hidden_at.append(i)
            clock.t += 1
            gate.document_changed(URI, BEFORE + "a + b" + AFTER, None)  # the user types it
        else:
            tr.accept(f"item-{_req.rid}")
        clock.t += 5
    assert guard.level == 2, guard.state()
    assert max(hidden_at) < 10, "hiding stopped within a few decisions"
    assert len(gate.messages) == 1 and "backs off" in gate.messages[0]  # type: ignore[attr-defined]
    # Backed off: would-be-hidden suggestions are shown, and their accepts are evidence.
    assert guard.state()["bySource"].get("backed_off", 0) > 0
    tr.close()
    st = store.stats(tmp_path / "log.sqlite3")
    g = st["cascadeGuard"]
    assert g["state"] == "off" and g["evidenceLogged"] == guard.seen
    assert g["changes"] and "backs off" in g["changes"][0]
    evs = [e for e in store.read_events(tmp_path / "log.sqlite3") if e.kind == "guard"]
    assert evs[0].data["source"] == "typed" and not evs[0].data["correct"]


def test_a_cascade_that_is_right_keeps_hiding(tmp_path: Path) -> None:
    guard = Guard(0.9, prior_hidden=100, prior_correct=99)
    gate, tr, clock = _wired(tmp_path, guard, explore=0.2)
    hidden = 0
    for _ in range(200):
        req, s2 = _request(gate, BEFORE + AFTER, len(BEFORE), "a + b")
        if s2.show:  # explored: the user rejects it
            tr.reject(f"item-{req.rid}")
        else:
            hidden += 1
            clock.t += 1
            gate.document_changed(URI, BEFORE + "sum((a, b))" + AFTER, None)  # types something else
            gate.document_changed(URI, BEFORE + AFTER, None)
        clock.t += 5
    assert guard.level == 0 and hidden > 100
    assert guard.state()["bySource"]["explored"] > 10 and guard.state()["bySource"]["typed"] > 100
    assert gate.status()["state"] == "hiding"  # type: ignore[index]
    tr.close()


def test_no_guard_with_explicit_thresholds_or_a_cascade_that_hides_nothing() -> None:
    from tactful.cascade import model as cdhf
    from tactful.cascade.gate import guard_for

    c = cdhf.Cascade.load(cdhf.default_model_dir())
    c.thresholds = cdhf.Thresholds()
    assert guard_for(c) is None
    c.thresholds = cdhf.Thresholds(entropy=0.0, stage1=1.01, stage2=0.9)
    assert guard_for(c) is not None
    c.stage2_override = 0.5
    assert guard_for(c) is None
