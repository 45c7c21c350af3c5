"""Flags where bugs are born (issue #27 item 3): lines changed in this editing session are
regenerated ahead of untouched ones, so they get the budget first however the first stage ranks
them; accepted lines are never regenerated. Through the real job with the counting stand-in
model of test_flag_bad_input."""

from __future__ import annotations

from tests.unit.test_flag_bad_input import StandIn, _flag

from tactful.flags.plan import Focus

TEXT = "".join(
    f"def f{n}(items):\n    total = {n}\n    for x in items:\n        total += x * {n}\n"
    f"    return total\n\n\n"
    for n in range(6)
)


def test_a_changed_line_is_regenerated_however_low_the_first_stage_ranks_it() -> None:
    untouched = StandIn(lambda i: "total = -1")
    job, res = _flag(TEXT, untouched, budget=0.05)
    assert res.skipped is None and 0 < job.n_regen < len(job.considered)
    last = min(job.considered, key=lambda i: job.info[i].p1)  # ranked last by the first stage
    assert last not in untouched.lines
    edited = StandIn(lambda i: "total = -1")
    job, res = _flag(TEXT, edited, budget=0.05, focus=Focus.of({last}))
    assert last in edited.lines and len(edited.lines) == job.n_regen
    assert res.flags and res.flags[0].line == last and res.flags[0].changed


def test_accepted_lines_are_never_regenerated() -> None:
    everything = StandIn(lambda i: "total = -1")
    job, _res = _flag(TEXT, everything, budget=1.0)
    some = set(everything.lines[:3])
    again = StandIn(lambda i: "total = -1")
    job, res = _flag(TEXT, again, budget=1.0, focus=Focus.of(some, some))
    assert not some & set(again.lines) and not some & set(job.considered)
    assert not some & {f.line for f in res.flags}
