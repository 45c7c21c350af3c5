"""The suggestion tracker: ids, accepts, inferred rejections, timeouts, survival, telemetry, the
cascade's decisions - driven through the same hook calls the completion engine makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tactful.cascade.gate import Gate
from tactful.cascade.hooks import Decision, Judged, RequestInfo, SuggestionInfo
from tactful.feedback import store as feedback
from tactful.feedback.store import FeedbackLog
from tactful.feedback.tracker import SuggestionTracker, survival_fraction

URI = "file:///w/a.py"
TEXT = "def add(a, b):\n    return \n\nprint(add(1, 2))\n"
CURSOR = TEXT.index("return ") + len("return ")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FixedCascade:
    """A stand-in cascade with fixed decisions (the real one is tested in test_cdhf.py)."""

    def __init__(self, stage1: Decision, stage2: Decision) -> None:
        self.s1, self.s2 = stage1, stage2
        self.seen: list[dict] = []

    def stage1(self, feats: dict) -> Decision:
        self.seen.append(dict(feats))
        return self.s1

    def stage2(self, feats: dict, stage1: Decision) -> Decision:
        self.seen.append(dict(feats))
        return self.s2


_GATE_CALLS = {
    "before_generation",
    "after_generation",
    "skipped",
    "hidden",
    "shown",
    "extended",
    "document_changed",
    "document_closed",
    "telemetry",
}


class Hooked:
    """The tracker behind the show/hide gate, as the server wires them: the engine's calls go to
    the gate, the client's (accept, reject, did_show) and the timers to the tracker."""

    def __init__(self, tr: SuggestionTracker, gate: Gate) -> None:
        self.tr, self.gate = tr, gate

    def __getattr__(self, name: str):
        return getattr(self.gate if name in _GATE_CALLS else self.tr, name)


def hooked(log, cascade=None, *, explore_rate: float = 0.0, clock=None, **kw) -> Hooked:
    tr = SuggestionTracker(log, clock=clock or Clock(), start_timer=False, **kw)
    gate = Gate(tr, cascade, explore_rate=explore_rate, clock=tr.clock)
    tr.on_outcome = gate.on_outcome
    return Hooked(tr, gate)


@pytest.fixture
def env(tmp_path: Path):
    clock = Clock()
    log = FeedbackLog(tmp_path / "log.sqlite3")
    tr = hooked(log, None, reject_timeout_s=10.0, clock=clock)
    yield tr, clock, tmp_path / "log.sqlite3"
    tr.close()


def show(tr: Hooked, text: str, offset: int, sugg: str, item: str, uri: str = URI) -> RequestInfo:
    """What the engine does for one shown suggestion."""
    req = RequestInfo(uri, "python", text, offset, 1, 11)
    s1 = tr.before_generation(req)
    assert s1.show
    info = SuggestionInfo(sugg, [-0.1, -0.5, -0.2], ["a", "b", "c"])
    s2 = tr.after_generation(req, info, s1)
    assert s2.show
    tr.shown(Judged(req, info, s1, s2), item)
    return req


def events(path: Path) -> list[feedback.Event]:
    return list(feedback.read_events(path))


def test_lifecycle_accept_via_command_and_survival(env) -> None:
    tr, clock, path = env
    tr.document_changed(URI, TEXT, 1)
    show(tr, TEXT, CURSOR, "a + b", "item-1")
    clock.t += 2
    inserted = TEXT[:CURSOR] + "a + b" + TEXT[CURSOR:]
    tr.document_changed(URI, inserted, 2)  # the client inserts, then runs the command
    assert tr.accept("item-1") is True
    assert tr.accept("item-1") is False, "a second accept is logged but not counted"
    clock.t += 31
    # The user then edits part of the accepted text.
    edited = "import os\n" + inserted.replace("a + b", "a + c")
    tr.document_changed(URI, edited, 3)
    tr.poll()
    evs = events(path)
    kinds = [e.kind for e in evs]
    assert kinds[:5] == ["requested", "generated", "shown", "accepted", "accepted"]
    rid = evs[0].suggestion_id
    assert {e.suggestion_id for e in evs} == {rid}, "one id for the whole life of a suggestion"
    assert evs[2].data["item_id"] == "item-1" and evs[2].data["text"] == "a + b"
    assert evs[3].data["full"] is True and evs[3].data["via"] == "command"
    surv = [e for e in evs if e.kind == "survival"]
    assert len(surv) == 1 and surv[0].data["after_s"] == 30.0
    assert surv[0].data["survived"] == pytest.approx(0.8)
    # Features recorded at request time include context and telemetry; suggestion features at generation.
    req_f = evs[0].data["features"]
    assert (
        req_f["language"] == 0.0
        and req_f["since_shown"] is None
        and req_f["context_class"] is not None
    )
    gen_f = evs[1].data["features"]
    assert (
        gen_f["sugg_chars"] == 5.0
        and gen_f["mean_logprob"] == pytest.approx(-0.8 / 3)
        and gen_f["min_logprob"] == -0.5
    )
    clock.t += 600
    tr.poll()
    assert [e.data["after_s"] for e in events(path) if e.kind == "survival"] == [30.0, 120.0, 600.0]
    (d,) = feedback.load_decisions(path)
    assert d.accepted and d.features["sugg_chars"] == 5.0 and d.features["doc_len"] == len(TEXT)


def test_partial_accept_via_notification(env) -> None:
    tr, _clock, path = env
    show(tr, TEXT, CURSOR, "a + b", "item-2")
    tr.document_changed(URI, TEXT[:CURSOR] + "a " + TEXT[CURSOR:], 2)
    assert tr.accept("item-2", 2, via="notification") is True
    acc = [e for e in events(path) if e.kind == "accepted"]
    assert (
        acc[0].data["full"] is False
        and acc[0].data["accepted_length"] == 2
        and acc[0].data["via"] == "notification"
    )
    assert tr.telemetry.recent[-1] == 1


def test_new_request_that_does_not_type_along_rejects(env) -> None:
    tr, _clock, path = env
    show(tr, TEXT, CURSOR, "a + b", "item-3")
    # Typing along ("a ") keeps it on screen ...
    typed = TEXT[:CURSOR] + "a " + TEXT[CURSOR:]
    tr.document_changed(URI, typed, 2)
    tr.before_generation(RequestInfo(URI, "python", typed, CURSOR + 2, 1, 13))
    assert not [e for e in events(path) if e.kind == "rejected"]
    # ... typing something else is a divergence.
    other = TEXT[:CURSOR] + "a * " + TEXT[CURSOR:]
    tr.document_changed(URI, other, 3)
    rej = [e for e in events(path) if e.kind == "rejected"]
    assert (
        len(rej) == 1 and rej[0].data["reason"] == "diverged" and rej[0].data["item_id"] == "item-3"
    )
    assert tr.telemetry.recent[-1] == 0


def test_request_elsewhere_and_other_document(env) -> None:
    tr, _clock, path = env
    show(tr, TEXT, CURSOR, "a + b", "item-4")
    tr.before_generation(RequestInfo(URI, "python", TEXT, 3, 0, 3))  # cursor moved, no edit
    show(tr, TEXT, CURSOR, "a - b", "item-5")
    tr.before_generation(RequestInfo("file:///w/b.py", "python", "x = ", 4, 0, 4))
    reasons = [(e.data["item_id"], e.data["reason"]) for e in events(path) if e.kind == "rejected"]
    assert reasons == [("item-4", "cursor_left"), ("item-5", "cursor_left")]


def test_newer_suggestion_replaces_and_timeout_and_explicit(env) -> None:
    tr, clock, path = env
    show(tr, TEXT, CURSOR, "a + b", "item-6")
    show(tr, TEXT, CURSOR, "b + a", "item-7")  # e.g. type-along off: a new suggestion replaces it
    clock.t += 9.9
    tr.poll()
    clock.t += 0.2
    tr.poll()
    show(tr, TEXT, CURSOR, "a * b", "item-8")
    assert tr.reject("item-8") is True
    assert tr.reject("item-8") is False
    assert tr.reject("never-seen") is False
    reasons = [(e.data["item_id"], e.data["reason"]) for e in events(path) if e.kind == "rejected"]
    assert reasons == [
        ("item-6", "new_request"),
        ("item-7", "timeout"),
        ("item-8", "explicit"),
        ("never-seen", "explicit"),
    ]


def test_typed_through_and_close(env) -> None:
    tr, clock, path = env
    show(tr, TEXT, CURSOR, "a + b", "item-9")
    typed = TEXT[:CURSOR] + "a + b" + TEXT[CURSOR:]
    tr.document_changed(URI, typed, 2)  # all typed, never accepted
    on = TEXT[:CURSOR] + "a + b  # sum" + TEXT[CURSOR:]
    tr.document_changed(URI, on, 3)  # and typed on
    tr.before_generation(RequestInfo(URI, "python", on, CURSOR + 12, 1, 23))
    assert not [e for e in events(path) if e.kind == "rejected"], (
        "typing on after it is no divergence"
    )
    clock.t += 11
    tr.poll()
    show(tr, TEXT, CURSOR, "a", "item-10", uri="file:///w/c.py")
    tr.document_closed("file:///w/c.py")
    reasons = [e.data["reason"] for e in events(path) if e.kind == "rejected"]
    assert reasons == ["typed_through", "closed"]


def test_telemetry_features_follow_the_history(env) -> None:
    tr, clock, path = env
    show(tr, TEXT, CURSOR, "a + b", "i1")
    clock.t += 1
    tr.accept("i1")
    clock.t += 4
    show(tr, TEXT, CURSOR, "a + b", "i2")
    clock.t += 1
    tr.reject("i2")
    clock.t += 2
    req = RequestInfo(URI, "python", TEXT + "x", CURSOR, 1, 11)
    tr.before_generation(req)
    f = [e for e in events(path) if e.kind == "requested"][-1].data["features"]
    assert f["since_accepted"] == pytest.approx(7.0) and f["since_rejected"] == pytest.approx(2.0)
    assert (
        f["since_shown"] == pytest.approx(3.0)
        and f["session_accept_rate"] == 0.5
        and f["prev_outcome"] == 0.0
    )
    assert f["session_decisions"] == 2.0 and f["file_accept_rate"] == 0.5
    assert f["since_request"] == pytest.approx(3.0) and f["typing_speed"] == pytest.approx(1 / 3)
    info = SuggestionInfo("a + b")
    tr.after_generation(req, info, Decision())
    g = [e for e in events(path) if e.kind == "generated"][-1].data["features"]
    assert g["repeat_accepted"] == 1.0 and g["repeat_rejected"] == 1.0


def test_cascade_skip_and_hide_are_logged(tmp_path: Path) -> None:
    clock = Clock()
    log = FeedbackLog(tmp_path / "log.sqlite3")
    cas = FixedCascade(
        Decision(show=False, p_reject=0.97, stage=1), Decision(show=False, p_reject=0.9, stage=2)
    )
    tr = hooked(log, cas, clock=clock)
    req = RequestInfo(URI, "python", TEXT, CURSOR, 1, 11)
    d1 = tr.before_generation(req)
    assert not d1.show and d1.p_reject == 0.97
    tr.skipped(req, d1)
    cas.s1 = Decision(show=True, p_reject=0.6, stage=1, deferred=True)
    req2 = RequestInfo(URI, "python", TEXT, CURSOR, 1, 11)
    d1 = tr.before_generation(req2)
    info = SuggestionInfo("a + b", [-1.0])
    d2 = tr.after_generation(req2, info, d1)
    assert not d2.show
    tr.hidden(Judged(req2, info, d1, d2))
    evs = events(tmp_path / "log.sqlite3")
    assert [e.kind for e in evs] == ["requested", "skipped", "requested", "generated", "hidden"]
    assert evs[1].data == {"p1": 0.97, "stage": 1}
    assert evs[4].data["p1"] == 0.6 and evs[4].data["p2"] == 0.9
    assert "sugg_chars" in cas.seen[-1] and "since_shown" in cas.seen[-1], (
        "stage 2 sees all features"
    )
    assert tr.counts["skipped"] == 1 and tr.counts["hidden"] == 1
    tr.close()


def test_exploration_shows_some_would_be_hidden(tmp_path: Path) -> None:
    cas = FixedCascade(Decision(show=False, p_reject=0.99, stage=1), Decision())
    tr = hooked(None, cas, explore_rate=0.5)
    shown = sum(
        tr.before_generation(RequestInfo(URI, "python", TEXT, CURSOR, 1, 11)).show
        for _ in range(200)
    )
    assert 60 < shown < 140
    tr.close()


def test_no_log_and_broken_cascade_never_raise() -> None:
    class Broken:
        def stage1(self, feats):
            raise RuntimeError("boom")

        def stage2(self, feats, s1):
            raise RuntimeError("boom")

    tr = hooked(None, Broken())
    req = RequestInfo(URI, "python", TEXT, CURSOR, 1, 11)
    assert tr.before_generation(req).show
    assert tr.after_generation(req, SuggestionInfo("x"), Decision()).show
    tr.shown(Judged(req, SuggestionInfo("x"), Decision(), Decision()), "id")
    assert tr.accept("id") is True
    tr.close()


def test_survival_fraction_finds_moved_text() -> None:
    acc = "return a + b"
    doc = "x = 1\n" * 50 + "def f(a, b):\n    return a + b\n"
    anchor = "def f(a, b):\n    "
    assert survival_fraction(acc, doc, 20, anchor) == 1.0
    assert survival_fraction(acc, doc.replace("return a + b", ""), 20, anchor) < 0.3


def test_close_records_survival_so_far(env) -> None:
    tr, clock, path = env
    show(tr, TEXT, CURSOR, "a + b", "item-c")
    tr.document_changed(URI, TEXT[:CURSOR] + "a + b" + TEXT[CURSOR:], 2)
    tr.accept("item-c")
    clock.t += 5
    tr.close()
    tr.close()
    surv = [e.data for e in events(path) if e.kind == "survival"]
    assert [s["after_s"] for s in surv] == [30.0, 120.0, 600.0]
    assert all(s["early"] and s["survived"] == 1.0 for s in surv)


def test_requests_log_their_context_for_replay_regenerate(env) -> None:
    from tactful.replay import report as replay

    tr, _clock, path = env
    show(tr, TEXT, CURSOR, "a + b", "item-ctx")
    tr.close()
    (req,) = [e for e in feedback.read_events(path) if e.kind == "requested"]
    assert req.data["prefix"] == TEXT[:CURSOR] and req.data["suffix"] == TEXT[CURSOR:]
    loaded = replay.load_log(path)
    assert loaded.contexts[req.suggestion_id] == (TEXT[:CURSOR], TEXT[CURSOR:])


def test_partial_accept_is_not_counted_twice(env) -> None:
    tr, _clock, _path = env
    show(tr, TEXT, CURSOR, "a + b", "item-partial")
    # The client inserts the accepted word, then reports it (VS Code: cumulative length 2).
    after = TEXT[:CURSOR] + "a " + TEXT[CURSOR:]
    tr.document_changed(URI, after, 2)
    tr.accept("item-partial", 2, via="partial")
    assert tr._by_item["item-partial"].accepted_text == "a "


def test_a_suggestion_shown_in_part_is_extended_and_accepted_whole(env) -> None:
    """The completion deadline showed 'a +'; the model then wrote 'a + b': typing along and the
    accept are judged on the whole text, and the log keeps both."""
    tr, _clock, path = env
    show(tr, TEXT, CURSOR, "a +", "item-x")
    tr.extended("item-x", "a + b")
    tr.extended("item-x", "something else")  # not a continuation of the shown text: ignored
    tr.extended("unknown-item", "a + b")  # never shown: ignored
    typed = TEXT[:CURSOR] + "a + " + TEXT[CURSOR:]
    tr.document_changed(URI, typed, 2)
    # Typing "a + " went past the part on screen but along the whole suggestion: still pending.
    tr.before_generation(RequestInfo(URI, "python", typed, CURSOR + 4, 1, 15))
    assert [e.kind for e in events(path) if e.kind == "rejected"] == []
    tr.document_changed(URI, TEXT[:CURSOR] + "a + b" + TEXT[CURSOR:], 3)
    assert tr.accept("item-x") is True
    evs = events(path)
    (ext,) = [e for e in evs if e.kind == "extended"]
    assert ext.data == {"item_id": "item-x", "text": "a + b", "shown_chars": 3}
    shown_ev = next(e for e in evs if e.kind == "shown")
    assert shown_ev.data["text"] == "a +", "the shown event keeps what was on screen"
    acc = next(e for e in evs if e.kind == "accepted")
    assert acc.data["full"] is True and acc.data["accepted_length"] == 5


def test_extended_text_is_hashed_in_hash_mode(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "log.sqlite3", store_text="hash")
    tr = hooked(log, None, clock=Clock())
    try:
        show(tr, TEXT, CURSOR, "a +", "item-h")
        tr.extended("item-h", "a + b")
    finally:
        tr.close()
    (ext,) = [e for e in events(tmp_path / "log.sqlite3") if e.kind == "extended"]
    assert "text" not in ext.data and ext.data["text_sha256"] == feedback.text_hash("a + b")


def test_accepting_the_part_on_screen_of_an_extended_suggestion_is_partial(env) -> None:
    """Tab on the part shown at the deadline: the accept command says "all", but all of what was
    on screen is the part; the rest, accepted later from type-along, completes it."""
    tr, _clock, path = env
    show(tr, TEXT, CURSOR, "a +", "item-p")
    tr.extended("item-p", "a + b")
    tr.document_changed(URI, TEXT[:CURSOR] + "a +" + TEXT[CURSOR:], 2)
    assert tr.accept("item-p") is True
    tr.document_changed(URI, TEXT[:CURSOR] + "a + b" + TEXT[CURSOR:], 3)
    assert tr.accept("item-p") is False  # the second accept of one suggestion is logged only
    first, second = [e for e in events(path) if e.kind == "accepted"]
    assert first.data["full"] is False and first.data["accepted_length"] == 3
    assert second.data["full"] is True and second.data["accepted_length"] == 5


def test_client_display_reports_are_logged_once_in_either_order(env) -> None:
    """didShowCompletion may reach the server after the accept it preceded, or after a newer
    request inferred a rejection of an item the editor still shows: it is logged all the same."""
    tr, clock, path = env
    show(tr, TEXT, CURSOR, "a + b", "item-a")
    clock.t += 1
    assert tr.accept("item-a") is True
    tr.did_show("item-a")
    tr.did_show("item-a")
    # A re-request at the same place infers a rejection; the display report comes after it.
    show(tr, TEXT, CURSOR, "a - b", "item-b")
    tr.before_generation(RequestInfo(URI, "python", TEXT, CURSOR, 1, 11))
    tr.did_show("item-b")
    # An undecided item: the report restarts its reject clock.
    show(tr, TEXT, CURSOR, "b - a", "item-c")
    clock.t += 8
    tr.did_show("item-c")
    clock.t += 8
    tr.poll()
    assert not [e for e in events(path) if e.kind == "rejected" and e.data["item_id"] == "item-c"]
    clock.t += 3
    tr.poll()
    client = [
        (e.data["item_id"], e.data.get("after_outcome"))
        for e in events(path)
        if e.kind == "shown" and e.data.get("client_reported")
    ]
    assert client == [("item-a", "accepted"), ("item-b", "rejected"), ("item-c", None)]
    rej = {e.data["item_id"]: e.data["reason"] for e in events(path) if e.kind == "rejected"}
    assert rej == {"item-b": "new_request", "item-c": "timeout"}
    tr.did_show("unknown-item")  # unknown ids are ignored, never raise
