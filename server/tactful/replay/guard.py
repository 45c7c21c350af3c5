"""The cascade's run-time guard, simulated on a logged stream (issue 25, item 5).

:class:`GuardedPolicy` replays a cascade as the server runs it: the same gate decision
(:meth:`tactful.cascade.gate.Gate.guarded`: exploration and the guard's back-off) and the same
evidence. A would-hide suggestion shown by exploration or back-off is labelled by the user's
logged accept or reject when it comes; a hidden one by what the user typed next, read from the
contexts of the following requests in the same session within
:data:`~tactful.cascade.guard.TYPED_WINDOW_S` (CUPS prompts, or the ``prefix`` of ``requested``
events). In replay that evidence is credited at the decision; in the server it arrives seconds
later, when the user types.

``python -m tactful.replay.guard --log CUPS`` (:func:`main`) is the benchmark behind
docs/cdhf.md: users held out (GroupKFold), a cascade trained on the other users, replayed with
and without the guard on the held-out users' streams, and on the same streams with every
suggestion accepted (a user for whom hiding is always wrong). With ``--stream-decisions N``
(:mod:`tactful.replay.guard_streams`) the held-out users are replayed several at a time as one
stream of at least N decisions through one guard, and its estimate is read at decision N.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tactful.cascade.gate import Gate
from tactful.cascade.guard import TYPED_WINDOW_S, Evidence, Guard, typed_outcome
from tactful.cascade.hooks import Decision
from tactful.replay.report import CascadePolicy, Outcome, Unit

#: Characters of a context used to find the suggestion's place again in a later, truncated one.
ANCHOR_CHARS = 300


def typed_next(
    units: Sequence[Unit], contexts: Mapping[str, tuple[str, str]], i: int
) -> bool | None:
    """Whether the user typed unit ``i``'s suggestion themselves (see module doc); None when
    the following contexts do not tell within the window."""
    u = units[i]
    ctx = contexts.get(u.sid)
    if ctx is None or not u.text:
        return None
    before = ctx[0]
    anchor = before[-ANCHOR_CHARS:]
    for v in units[i + 1 :]:
        if v.t - u.t > TYPED_WINDOW_S:
            break
        if v.session != u.session or v.sid not in contexts:
            continue
        later = contexts[v.sid][0]
        if later.startswith(before):
            verdict = typed_outcome(before, "", u.text, later)
        else:
            k = later.rfind(anchor) if anchor else -1
            verdict = typed_outcome(anchor, "", u.text, later[k:]) if k >= 0 else None
        if verdict is not None:
            return verdict
    return None


@dataclass
class Trace:
    """What the guard did on one stream, per labelled decision."""

    level: list[int] = field(default_factory=list)
    estimate: list[float | None] = field(default_factory=list)
    #: The user's evidence alone, without the training prior.
    observed: list[float | None] = field(default_factory=list)
    #: The unguarded cascade would hide this decision (its label is known).
    would_hide: list[bool] = field(default_factory=list)
    accepted: list[bool] = field(default_factory=list)
    hidden: list[bool] = field(default_factory=list)
    #: Pieces of evidence the estimate rests on (the guard's window).
    evidence: list[int] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    #: The guard's estimate after the last decision (:meth:`GuardedPolicy.finish`).
    end: dict[str, Any] | None = None


class GuardedPolicy(CascadePolicy):
    """A cascade with exploration and the run-time guard, replayed as the server runs it: one
    guard per user (each user's server has its own)."""

    def __init__(
        self,
        name: str,
        cascade: Any,
        make_guard: Callable[[], Guard],
        contexts: Mapping[str, tuple[str, str]] | None = None,
        explore_rate: float = 0.05,
        seed: int = 1234,
    ) -> None:
        super().__init__(name, cascade)
        self.make_guard = make_guard
        self.explore_rate, self.seed = explore_rate, seed
        self.contexts: Mapping[str, tuple[str, str]] = contexts or {}
        self.units: Sequence[Unit] = ()
        self.gates: dict[str, Gate] = {}
        self.traces: dict[str, Trace] = {}
        self._why: tuple[str, Decision] | None = None
        self._awaiting: dict[int, tuple[str, Decision]] = {}

    def prepare(self, units: Sequence[Unit], contexts: Mapping[str, tuple[str, str]]) -> None:
        self.units, self.contexts = units, contexts

    def _gate(self, user: str) -> Gate:
        if user not in self.gates:
            self.gates[user] = Gate(
                None,
                self.cascade,
                explore_rate=self.explore_rate,
                guard=self.make_guard(),
                seed=self.seed,
            )
            self.traces[user] = Trace()
        return self.gates[user]

    def _decide(self, base: Decision) -> Decision:
        user = self.current.user if self.current is not None else ""
        d, why = self._gate(user).guarded(base)
        if not base.show:
            self._why = (why or "hidden", base)
        return d

    def stage1(self, feats: Mapping[str, Any]) -> Decision:
        self._why = None
        return self._decide(self.cascade.stage1(feats))

    def stage2(self, feats: Mapping[str, Any], s1: Decision) -> Decision:
        if self._why is not None:  # stage 1 would have skipped it: shown by exploration/back-off
            return Decision()
        return self._decide(self.cascade.stage2(feats, s1))

    def observe(self, i: int, unit: Unit, outcome: Outcome | None) -> None:
        guard = self._gate(unit.user).guard
        assert guard is not None
        trace = self.traces[unit.user]
        if outcome is None:
            waiting = self._awaiting.pop(i, None)
            if waiting is not None and unit.accepted is not None:
                ev = Evidence(not unit.accepted, waiting[0], *_pd(waiting[1]), unit.t, unit.sid)
                _add(guard, trace, ev)
            return
        why = self._why
        if unit.accepted is not None:
            est = guard.estimate()
            trace.level.append(guard.level)
            trace.estimate.append(est["accuracy"])
            trace.observed.append(est["observed"])
            trace.evidence.append(est["n"])
            trace.would_hide.append(why is not None)
            trace.accepted.append(bool(unit.accepted))
            trace.hidden.append(outcome.hidden)
        if why is None:
            return
        if outcome.hidden:
            verdict = typed_next(self.units, self.contexts, i)
            if verdict is not None:
                _add(guard, trace, Evidence(not verdict, "typed", *_pd(why[1]), unit.t, unit.sid))
        elif unit.shown:
            self._awaiting[i] = why

    def finish(self) -> None:
        """Record each guard's estimate after the last decision of its stream."""
        for user, gate in self.gates.items():
            assert gate.guard is not None
            self.traces[user].end = gate.guard.estimate()

    def report(self) -> dict[str, Any]:
        """Per user and pooled: hiding with and without the guard, its estimate, its state."""
        per_user = {u: trace_summary(t) for u, t in self.traces.items()}
        return {"per_user": per_user, "pooled": summarise(list(per_user.values()))}


def guarded_twins(policies: Sequence[Any]) -> list[GuardedPolicy]:
    """A guarded copy of each cascade policy whose fitted thresholds hide something."""
    from tactful.cascade.gate import guard_for

    out: list[GuardedPolicy] = []
    for pol in policies:
        if isinstance(pol, CascadePolicy) and guard_for(pol.cascade) is not None:
            out.append(GuardedPolicy(f"{pol.name}+guard", pol.cascade, _fresh_guard(pol.cascade)))
    return out


def _fresh_guard(cascade: Any) -> Callable[[], Guard]:
    from tactful.cascade.gate import guard_for

    def make() -> Guard:
        g = guard_for(cascade)
        assert g is not None
        return g

    return make


def _add(guard: Guard, trace: Trace, ev: Evidence) -> None:
    msg = guard.add(ev)
    if msg:
        trace.messages.append(msg)


def _pd(d: Decision) -> tuple[int, float, float]:
    nan = float("nan")
    return (
        d.stage,
        nan if d.p_reject is None else d.p_reject,
        nan if d.threshold is None else d.threshold,
    )


def trace_summary(tr: Trace, at: int = 200) -> dict[str, Any]:
    """Hiding with and without the guard, and the guard's estimate against the truth."""
    wh, acc, hid = np.array(tr.would_hide), np.array(tr.accepted), np.array(tr.hidden)
    n = len(wh)

    def acc_when(mask: np.ndarray) -> float | None:
        return float((~acc[mask]).mean()) if mask.any() else None

    truth = acc_when(wh)
    k = min(at, n) - 1
    est = tr.estimate[k] if n else None
    obs = tr.observed[k] if n else None
    stop = _hiding_stopped_at(tr)
    return {
        "decisions": n,
        "unguarded_hidden": int(wh.sum()),
        "unguarded_accuracy_when_hiding": truth,
        "guarded_hidden": int(hid.sum()),
        "guarded_accuracy_when_hiding": acc_when(hid),
        f"estimate_at_{at}": est,
        "estimate_error": None if est is None or truth is None else est - truth,
        "observed_at_end": obs,
        "observed_error": None if obs is None or truth is None else obs - truth,
        "final_state": ["hiding", "stricter", "off"][tr.level[-1]] if n else None,
        "hiding_stopped_after": stop,
        "messages": tr.messages,
    }


def _hiding_stopped_at(tr: Trace) -> int | None:
    """Decisions until the guard was off for good (None: it never was at the end)."""
    if not tr.level or tr.level[-1] != 2:
        return None
    k = len(tr.level)
    while k > 0 and tr.level[k - 1] == 2:
        k -= 1
    return k


# --- the benchmark -----------------------------------------------------------------------------


def _fold_cascade(ds: Any, tr_idx: np.ndarray, target: float, confidence: float | None) -> Any:
    """A cascade trained on the training users only, thresholds as ``tactful train`` fits them
    (``confidence`` None: the point estimate, as before issue 25)."""
    from tactful.cascade.fit import fold_models

    return fold_models(ds, tr_idx).cascade(target, confidence=confidence)


def run_users(
    units: Sequence[Unit],
    contexts: Mapping[str, tuple[str, str]],
    cascade: Any,
    target: float,
    explore_rate: float,
) -> dict[str, dict[str, Any]]:
    """Held-out users' streams replayed with the guard: as logged, and accepting everything."""
    from tactful.cascade.gate import guard_for
    from tactful.replay.report import replay

    out: dict[str, dict[str, Any]] = {}
    accepting = _accepting(units, contexts)
    for label, (us, ctx) in (
        ("logged", (list(units), contexts)),
        ("accepts_everything", accepting),
    ):
        pol = GuardedPolicy(
            "guarded", cascade, lambda: guard_for(cascade) or Guard(target), ctx, explore_rate
        )
        pol.prepare(us, ctx)
        replay(us, [pol])
        for user, summary in pol.report()["per_user"].items():
            out.setdefault(user, {})[label] = summary
    return out


def _accepting(
    units: Sequence[Unit], contexts: Mapping[str, tuple[str, str]]
) -> tuple[list[Unit], dict[str, tuple[str, str]]]:
    """The same stream from a user who accepts (or types) every suggestion: each labelled
    decision accepted, and the next context of the session holds the suggestion."""
    out = [replace(u, accepted=True if u.accepted is not None else None) for u in units]
    ctx = dict(contexts)
    for i, u in enumerate(out):
        if u.accepted and u.text and u.sid in ctx:
            nxt = next((v for v in out[i + 1 :] if v.session == u.session), None)
            if nxt is not None and nxt.t - u.t <= TYPED_WINDOW_S:
                ctx[nxt.sid] = (ctx[u.sid][0] + u.text, "")
    return out, ctx


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tactful.replay.guard --log CUPS_EVENTS [--target T] [--point]
    [--stream-decisions N [--seed S ...]]``."""
    args = _parser().parse_args(list(argv) if argv is not None else None)
    from tactful.cascade import train as T
    from tactful.cascade.model import BOUND_CONFIDENCE

    units, contexts, ds = _load(args.log, args.target)
    conf = None if args.point else BOUND_CONFIDENCE
    if args.stream_decisions:
        from tactful.replay import guard_streams

        bench = guard_streams.Bench(
            ds, units, contexts, args.stream_decisions, args.target, args.explore, conf
        )
        return guard_streams.cli(bench, args.seed or [0])
    results = []
    for k, (tr, te) in enumerate(T._folds(ds.groups, args.folds)):
        cascade = _fold_cascade(ds, tr, args.target, conf)
        held = {ds.group_names[j] for j in np.unique(ds.groups[te])}
        us = [u for u in units if u.user in held]
        for user, res in run_users(us, contexts, cascade, args.target, args.explore).items():
            res.update(fold=k, user=user, thresholds=vars(cascade.thresholds))
            results.append(res)
            print(json.dumps(res), file=sys.stderr)
    summary = {
        label: summarise([r[label] for r in results]) for label in ("logged", "accepts_everything")
    }
    print(json.dumps({"per_user": results, "summary": summary}, indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tactful.replay.guard")
    ap.add_argument("--log", required=True, help="CUPS events (cups_events.jsonl.gz) or a log")
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument(
        "--point",
        action="store_true",
        help="fit thresholds on the point estimate (the cascade before issue 25)",
    )
    ap.add_argument("--explore", type=float, default=0.05)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--stream-decisions",
        type=int,
        default=0,
        metavar="N",
        help="hold users out in groups of at least N decisions, each group replayed as ONE "
        "stream through one guard, measured at decision N (tactful.replay.guard_streams)",
    )
    ap.add_argument(
        "--seed",
        type=int,
        action="append",
        help="with --stream-decisions: the order users are cut into streams in; repeat",
    )
    return ap


def _load(log: str, target: float) -> tuple[list[Unit], Mapping[str, tuple[str, str]], Any]:
    """The log's requests, their contexts, and its training dataset (CUPS events imported)."""
    import tempfile
    from pathlib import Path

    from tactful.cascade import train as T
    from tactful.feedback import importers
    from tactful.replay.report import build_units, load_log

    loaded = load_log(log)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "log.sqlite3"
        if loaded.fmt == "cups":
            importers.import_cups(log, db)
        else:
            db = Path(log)
        ds = T.dataset([db], target=min(target, 0.9))
    return build_units(loaded.events), loaded.contexts, ds


def summarise(rs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pooled over users (:func:`trace_summary` each): hiding with and without the guard, how
    far its estimate is from the truth, when hiding stopped."""
    uh = sum(r["unguarded_hidden"] for r in rs)
    gh = sum(r["guarded_hidden"] for r in rs)

    def pooled(key: str, n_key: str) -> float | None:
        n = sum(r[n_key] for r in rs)
        return sum(r[n_key] * (r[key] or 0.0) for r in rs) / n if n else None

    def errors(key: str) -> tuple[float | None, str]:
        e = [abs(r[key]) for r in rs if r[key] is not None]
        return (float(np.median(e)) if e else None), f"{sum(x <= 0.10 for x in e)} of {len(e)}"

    stops = [r["hiding_stopped_after"] for r in rs if r["unguarded_hidden"]]
    est, obs = errors("estimate_error"), errors("observed_error")
    return {
        "users": len(rs),
        "decisions": sum(r["decisions"] for r in rs),
        "unguarded_hidden": uh,
        "unguarded_accuracy_when_hiding": pooled(
            "unguarded_accuracy_when_hiding", "unguarded_hidden"
        ),
        "guarded_hidden": gh,
        "guarded_accuracy_when_hiding": pooled("guarded_accuracy_when_hiding", "guarded_hidden"),
        "estimate_abs_error_median": est[0],
        "estimate_within_0.10": est[1],
        "observed_abs_error_median": obs[0],
        "observed_within_0.10": obs[1],
        "hiding_stopped_after_max": None if None in stops or not stops else max(stops),
        "users_where_hiding_never_stopped": sum(1 for x in stops if x is None),
        "final_states": {
            s: sum(1 for r in rs if r["final_state"] == s) for s in ("hiding", "stricter", "off")
        },
    }


if __name__ == "__main__":
    raise SystemExit(main())
