"""The guard's running estimate on long streams of held-out users (issue 25's target: within
±0.10 of the truth after 200 decisions, users held out).

No CUPS programmer has 200 decisions (at most 85), so held-out users are put one after the
other (:func:`stream_folds`): the users, sorted by name and shuffled with ``random.Random(seed)``,
each join in turn the group with the fewest labelled decisions so far (as many groups as
``min_decisions`` fits in the total: 3 for CUPS's 653 at 200); a cut where a group falls short of
``min_decisions`` is drawn again from the same generator. Each group is one fold: a cascade is trained on all the
other users, and the group's users are replayed as one stream (:func:`concatenate`: in the
group's order, each user's decisions in time order) through ONE fresh guard, as if a single
person. That person's habits change abruptly at each user boundary, which is harder for a
guard than one person's stream: the window mixes users.

The truth at decision ``k`` (:func:`at_decision`) is the accuracy when hiding of the unguarded
cascade over the stream's first ``k`` labelled decisions (the share of those it would skip or
hide that the user rejected); the guard's running estimate is read after the same ``k``
decisions: from the user's evidence alone (``observed``, what the status shows) and with the
fading training prior (``estimate``, what the guard acts on).
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tactful.cascade.guard import LEVELS, Guard
from tactful.replay.guard import GuardedPolicy, Trace, _fold_cascade
from tactful.replay.report import Unit

#: Seconds between the end of one user's stream and the start of the next one's: far past the
#: typed-next window, so no evidence crosses users.
GAP_S = 3600.0
#: Random cuts of the users tried before giving up (:func:`stream_folds`).
DRAWS = 1000
#: Within this of the truth counts as on target.
TOLERANCE = 0.10


def stream_folds(decisions: Mapping[str, int], min_decisions: int, seed: int) -> list[list[str]]:
    """Users (name -> labelled decisions) cut into as many held-out groups as there are
    ``min_decisions`` in the total (at least two), each of at least ``min_decisions`` (module
    doc); ValueError when no such cut is drawn."""
    k = sum(decisions.values()) // min_decisions if min_decisions > 0 else 0
    if k < 2:
        raise ValueError(
            f"{sum(decisions.values())} decisions cannot make two held-out streams of "
            f"{min_decisions} decisions"
        )
    rng = random.Random(seed)
    for _ in range(DRAWS):
        users = sorted(decisions)
        rng.shuffle(users)
        groups: list[list[str]] = [[] for _ in range(k)]
        sizes = [0] * k
        for u in users:
            g = sizes.index(min(sizes))
            groups[g].append(u)
            sizes[g] += decisions[u]
        if min(sizes) >= min_decisions:
            return groups
    raise ValueError(f"no cut into {k} streams of {min_decisions} decisions in {DRAWS} draws")


def concatenate(units: Sequence[Unit], users: Sequence[str], name: str) -> list[Unit]:
    """The users' requests as one person ``name``'s stream: the users one after the other in
    the order given, each one's requests in time order, shifted to start :data:`GAP_S` after
    the previous user's last request. Sessions are kept (typed-next evidence stays within one)."""
    out: list[Unit] = []
    end = 0.0
    for user in users:
        mine = sorted((u for u in units if u.user == user), key=lambda u: u.t)
        if not mine:
            continue
        shift = (end + GAP_S if out else 0.0) - mine[0].t
        for u in mine:
            seen = None if u.t_seen is None else u.t_seen + shift
            out.append(replace(u, user=name, t=u.t + shift, t_seen=seen))
        end = max(v.t if v.t_seen is None else max(v.t, v.t_seen) for v in out)
    return out


def at_decision(tr: Trace, k: int, prior: float | None = None) -> dict[str, Any]:
    """The guard's running estimate after the first ``k`` labelled decisions of its stream (all
    of them when it is shorter) against the truth over the same decisions (module doc), and
    the training ``prior`` alone (the held-out record the guard starts from) as a baseline."""
    n = len(tr.would_hide)
    k = min(k, n)
    wh = np.array(tr.would_hide[:k], dtype=bool)
    rejected = ~np.array(tr.accepted[:k], dtype=bool)
    truth = float(rejected[wh].mean()) if wh.any() else None
    if k < n:  # the trace holds the state before each decision: index k is after k of them
        est, obs, ev = tr.estimate[k], tr.observed[k], tr.evidence[k]
    elif tr.end is not None:
        est, obs, ev = tr.end["accuracy"], tr.end["observed"], tr.end["n"]
    else:
        raise ValueError("the trace has no end state (GuardedPolicy.finish)")

    def err(x: float | None) -> float | None:
        return None if x is None or truth is None else x - truth

    return {
        "decisions": k,
        "would_hide": int(wh.sum()),
        "truth": truth,
        "observed": obs,
        "observed_error": err(obs),
        "estimate": est,
        "estimate_error": err(est),
        "evidence": ev,
        "prior": prior,
        "prior_error": err(prior),
    }


@dataclass
class Bench:
    """What every stream of the benchmark shares: the log (training dataset, requests and
    their contexts) and the settings."""

    ds: Any
    units: Sequence[Unit]
    contexts: Mapping[str, tuple[str, str]]
    min_decisions: int
    target: float
    explore: float
    #: The lower bound's confidence the thresholds are fitted with; None: the point estimate.
    confidence: float | None


def run_seed(bench: Bench, seed: int) -> list[dict[str, Any]]:
    """One cut of the users into streams (``seed``), each replayed (:func:`one_stream`)."""
    counts: dict[str, int] = {}
    for u in bench.units:
        if u.accepted is not None:
            counts[u.user] = counts.get(u.user, 0) + 1
    out: list[dict[str, Any]] = []
    for k, users in enumerate(stream_folds(counts, bench.min_decisions, seed)):
        out.append({"seed": seed, "fold": k, "users": users, **one_stream(bench, users, seed)})
        print(f"guard streams: seed {seed} stream {k}: {'+'.join(users)}", file=sys.stderr)
    return out


def one_stream(bench: Bench, users: Sequence[str], seed: int) -> dict[str, Any]:
    """The held-out ``users`` as one stream: a cascade trained on all the other users,
    replayed through one fresh guard; the figures at ``min_decisions`` and at the end."""
    from tactful.cascade.gate import guard_for
    from tactful.replay.report import replay

    ds = bench.ds
    held = np.isin(ds.groups, [ds.group_names.index(u) for u in users])
    cascade = _fold_cascade(ds, np.flatnonzero(~held), bench.target, bench.confidence)
    name = "+".join(users)
    stream = concatenate(bench.units, users, name)
    fitted = guard_for(cascade)
    guard = fitted or Guard(bench.target)
    prior = guard.prior_correct / guard.prior_hidden if fitted is not None else None
    pol = GuardedPolicy(
        "guarded", cascade, _once(guard), bench.contexts, bench.explore, seed=1234 + seed
    )
    pol.prepare(stream, bench.contexts)
    replay(stream, [pol])
    pol.finish()
    tr = pol.traces.get(name) or Trace()
    return {
        "decisions": len(tr.would_hide),
        f"at_{bench.min_decisions}": at_decision(tr, bench.min_decisions, prior),
        "at_end": at_decision(tr, len(tr.would_hide), prior),
        "final_state": LEVELS[guard.level] if fitted is not None else "hides nothing",
        "thresholds": vars(cascade.thresholds),
    }


def _once(guard: Guard) -> Callable[[], Guard]:
    """The stream's one guard (GuardedPolicy makes one per user; a stream is one user)."""
    return lambda: guard


def summarise(streams: Sequence[Mapping[str, Any]], key: str) -> dict[str, Any]:
    """Pooled over streams at ``key`` (``at_200``, ``at_end``): how many estimates are within
    :data:`TOLERANCE` of the truth, and the median absolute error, for both estimates and for
    the training prior alone."""
    out: dict[str, Any] = {"streams": len(streams)}
    for which in ("observed", "estimate", "prior"):
        e = [abs(s[key][f"{which}_error"]) for s in streams if s[key][f"{which}_error"] is not None]
        out[f"{which}_within_{TOLERANCE:.2f}"] = f"{sum(x <= TOLERANCE for x in e)} of {len(e)}"
        out[f"{which}_abs_error_median"] = float(np.median(e)) if e else None
    out["evidence_median"] = float(np.median([s[key]["evidence"] for s in streams]))
    return out


def run(bench: Bench, seeds: Sequence[int]) -> dict[str, Any]:
    """The benchmark over ``seeds`` (module doc): per stream and pooled."""
    streams: list[dict[str, Any]] = []
    for seed in seeds:
        streams += run_seed(bench, seed)
    at = f"at_{bench.min_decisions}"
    return {
        "target": bench.target,
        "explore": bench.explore,
        "seeds": list(seeds),
        "min_decisions": bench.min_decisions,
        "streams": streams,
        "summary": {at: summarise(streams, at), "at_end": summarise(streams, "at_end")},
    }


def cli(bench: Bench, seeds: Sequence[int]) -> int:
    """``python -m tactful.replay.guard --stream-decisions N``: the table on stderr, the
    report as JSON on stdout; 2 with a message when the users cannot make the streams."""
    try:
        rep = run(bench, seeds)
    except ValueError as exc:
        print(f"python -m tactful.replay.guard: {exc}", file=sys.stderr)
        return 2
    print(table(rep), file=sys.stderr)
    print(json.dumps(rep, indent=2))
    return 0


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def table(report: Mapping[str, Any]) -> str:
    """Markdown: one line per stream (users, the truth, both estimates and the evidence at
    ``min_decisions`` decisions, then at the end), and the pooled line."""
    m = report["min_decisions"]
    lines = [
        f"| seed | stream (users in order) | decisions | at {m}: truth (would hide) | "
        f"own estimate | with prior | evidence | training prior | at end: truth | own estimate | "
        "with prior | guard at the end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["streams"]:
        a, e = s[f"at_{m}"], s["at_end"]
        lines.append(
            f"| {s['seed']} | {', '.join(s['users'])} | {s['decisions']} | "
            f"{_pct(a['truth'])} ({a['would_hide']}) | {_pct(a['observed'])} | "
            f"{_pct(a['estimate'])} | {a['evidence']} | {_pct(a['prior'])} | {_pct(e['truth'])} | "
            f"{_pct(e['observed'])} | {_pct(e['estimate'])} | {s['final_state']} |"
        )
    return "\n".join(lines)
