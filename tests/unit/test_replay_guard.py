"""The guard simulated in replay: typed-next evidence read from later contexts, one guard per
user, hiding that stops for a user who wants every suggestion and goes on where the cascade is
right (a stand-in cascade; the CUPS figures are in docs/cdhf.md)."""

from __future__ import annotations

from tactful.cascade.guard import Guard
from tactful.cascade.hooks import Decision
from tactful.replay.guard import GuardedPolicy, _accepting, typed_next
from tactful.replay.report import ShowAll, Unit, replay


class Hider:
    """Stage 1 defers, stage 2 would hide everything (threshold 0.9)."""

    stage1_override = stage2_override = None

    def stage1(self, feats: dict) -> Decision:
        return Decision(True, 0.5, 1, True)

    def stage2(self, feats: dict, s1: Decision) -> Decision:
        return Decision(False, 0.95, 2, threshold=0.9)

    def p_stage1(self, feats: dict) -> float:
        return 0.5

    def p_stage2(self, feats: dict) -> float:
        return 0.95


def _stream(user: str, n: int, accepted: bool) -> tuple[list[Unit], dict[str, tuple[str, str]]]:
    """A user writing a file line by line: each suggestion is the next line, and the next
    request's context shows what they wrote (the suggestion when they take it, else another)."""
    units, ctx, doc = [], {}, "# start\n"
    for i in range(n):
        sid = f"{user}-{i}"
        sugg = f"value_{i} = compute({i})\n"
        units.append(
            Unit(
                sid,
                10.0 * i,
                user,
                user,
                "file:///a.py",
                "python",
                text=sugg,
                shown=True,
                generated=True,
                accepted=accepted,
                seen_accepted=accepted,
                t_seen=10.0 * i + 2,
            )
        )
        ctx[sid] = (doc, "")
        doc += sugg if accepted else f"print('something else {i}')\n"
    return units, ctx


def test_typed_next_reads_the_following_context() -> None:
    units, ctx = _stream("u", 3, accepted=True)
    assert typed_next(units, ctx, 0) is True
    units, ctx = _stream("u", 3, accepted=False)
    assert typed_next(units, ctx, 0) is False
    assert typed_next(units, ctx, 2) is None, "nothing follows"


def _run(units, ctx) -> GuardedPolicy:
    pol = GuardedPolicy("g", Hider(), lambda: Guard(0.9, 100, 99), ctx, explore_rate=0.1)
    pol.prepare(units, ctx)
    replay(units, [ShowAll(), pol])
    return pol


def test_hiding_stops_for_a_user_who_wants_every_suggestion() -> None:
    units, ctx = _stream("alice", 120, accepted=False)
    units2, ctx2 = _accepting(units, ctx)
    assert all(u.accepted for u in units2)
    pol = _run(units2, ctx2)
    s = pol.report()["per_user"]["alice"]
    assert s["final_state"] == "off" and s["hiding_stopped_after"] is not None
    assert s["hiding_stopped_after"] <= 50 and s["guarded_hidden"] < 20
    assert s["unguarded_hidden"] == 120


def test_hiding_goes_on_where_the_cascade_is_right_and_each_user_has_a_guard() -> None:
    a, ca = _stream("alice", 120, accepted=False)
    b, cb = _stream("bob", 120, accepted=True)
    b = [Unit(**{**u.__dict__, "t": u.t + 1.0}) for u in b]
    pol = _run(sorted(a + b, key=lambda u: u.t), {**ca, **cb})
    rep = pol.report()
    alice, bob = rep["per_user"]["alice"], rep["per_user"]["bob"]
    assert alice["final_state"] == "hiding" and alice["guarded_hidden"] > 90
    assert alice["guarded_accuracy_when_hiding"] == 1.0
    assert bob["final_state"] == "off" and bob["guarded_hidden"] < 20
    assert abs(alice["observed_error"]) <= 0.10 and abs(bob["observed_error"]) <= 0.10
    assert rep["pooled"]["users"] == 2


def test_tactful_replay_guard_adds_a_guarded_twin(tmp_path, capsys) -> None:
    """End to end: a cascade trained with `tactful train` (it hides something on this clear
    synthetic signal), replayed by `tactful replay --guard`."""
    import json

    from tests.unit.test_cdhf import _synthetic_log

    from tactful.cascade import train as cdhf_train
    from tactful.replay import report as replay_report

    log = tmp_path / "log.sqlite3"
    _synthetic_log(log, users=4, per_user=80)
    # No telemetry: each policy replays its own telemetry, so with it the guarded twin would see
    # other probabilities than the unguarded cascade once it shows what that one hides.
    res = cdhf_train.train(log, tmp_path / "m", curve=False, target=0.8)
    # Stage 1 has no signal here, and at lam 0.5 deciding there without hiding costs less.
    assert not res.supported and "a lower --lam" in res.verdict
    res = cdhf_train.train(log, tmp_path / "m", curve=False, target=0.8, lam=0.05)
    assert res.supported, res.verdict
    code = replay_report.main(
        ["--log", str(log), "--policy", str(tmp_path / "m"), "--guard", "--json", "--quiet"]
    )
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    g = rep["policies"]["m+guard"]["guard"]
    assert g["pooled"]["users"] == 4 and set(g["per_user"]) == {f"user{u}" for u in range(4)}
    assert g["pooled"]["unguarded_hidden"] == rep["policies"]["m"]["hidden"]
    assert rep["policies"]["m+guard"]["hidden"] == g["pooled"]["guarded_hidden"]
    # The HTML report shows the guard's record too.
    page = tmp_path / "report.html"
    args = ["--log", str(log), "--policy", str(tmp_path / "m"), "--guard", "--quiet"]
    assert replay_report.main([*args, "--html", str(page)]) == 0
    html = page.read_text()
    assert "<h2>The guard</h2>" in html and "<th>m+guard</th>" in html
    assert f"<td>{g['pooled']['guarded_hidden']} (" in html
