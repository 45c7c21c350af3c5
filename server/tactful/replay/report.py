"""Offline replay of logged sessions through show/hide policies (issue 6; CDHF's retrospective evaluation).

This module owns

* turning events into time-ordered requests (:class:`Unit`) and replaying them through policies
  (:func:`replay`): each policy keeps its own per-session :class:`tactful.cascade.features.Telemetry`,
  so that the telemetry features are those the server would have computed had that policy been
  live (a hidden suggestion is never seen, so it updates no history);
* the metrics per policy, overall and per user, with bootstrap confidence intervals over users,
  threshold sweeps for the plots (:func:`build_report`), and :func:`run` (load, replay, report).

Loading a log is :mod:`tactful.replay.load`, ``--regenerate`` is :mod:`tactful.replay.regenerate`,
the guard's simulation :mod:`tactful.replay.guard`, the command line (``tactful replay``)
:mod:`tactful.replay.cli`, the HTML report :mod:`tactful.replay.html`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tactful import stats
from tactful.cascade import features as F
from tactful.cascade.hooks import Decision
from tactful.replay.load import Loaded, LogEvent, ReplayError, load_log
from tactful.replay.regenerate import edit_similarity, embedded_completer, regenerate

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 20240611
SWEEP_POINTS = 41


# --- units -------------------------------------------------------------------------------------


@dataclass
class Unit:
    """One completion request with what followed it in the log."""

    sid: str
    t: float
    user: str
    session: str
    uri: str
    language: str
    ctx_features: dict[str, Any] = field(default_factory=dict)
    sugg_features: dict[str, Any] = field(default_factory=dict)
    generated: bool = False
    seconds: float | None = None
    text: str | None = None
    shown: bool = False
    #: True accepted, False rejected, None no (usable) decision (as training counts them).
    accepted: bool | None = None
    #: The outcome the server saw, glances included: what its telemetry was told.
    seen_accepted: bool | None = None
    t_seen: float | None = None


def build_units(events: Iterable[LogEvent]) -> list[Unit]:
    """Group events by suggestion id into requests, sorted by request time (then log order).
    A request's outcome is a decision as training counts it (:class:`DecisionTally`)."""
    from tactful.feedback.store import DecisionTally

    tally = DecisionTally()
    units: dict[str, Unit] = {}
    order: dict[str, int] = {}
    for ev in sorted(events, key=lambda e: (e.order,)):
        sid = ev.suggestion_id
        if not sid:
            continue
        u = units.get(sid)
        if u is None:
            u = units[sid] = Unit(sid, ev.t, ev.user, ev.session, ev.uri or "", "")
            order[sid] = ev.order
        tally.add(ev.kind, sid, ev.t, ev.data)
        feats = ev.data.get("features")
        if ev.kind == "requested":
            u.t = ev.t
            if isinstance(feats, dict):
                u.ctx_features.update(feats)
        elif ev.kind == "generated":
            u.generated = True
            if isinstance(feats, dict):
                u.sugg_features.update(feats)
            s = ev.data.get("seconds")
            if (
                isinstance(s, int | float)
                and not isinstance(s, bool)
                and math.isfinite(s)
                and s >= 0
            ):
                u.seconds = float(s)
        elif ev.kind == "shown":
            u.shown = True
            if isinstance(ev.data.get("text"), str):
                u.text = ev.data["text"]
        elif ev.kind == "accepted" and u.seen_accepted is not True:
            u.seen_accepted, u.t_seen = True, ev.t
        elif (
            ev.kind == "rejected"
            and u.seen_accepted is None
            and ev.data.get("imported_label") is not False
        ):
            u.seen_accepted, u.t_seen = False, ev.t
    out = [u for u in units.values() if u.shown or u.generated or u.ctx_features]
    for u in out:
        # An outcome without a display, or a glance, is not a user decision.
        if tally.is_decision(u.sid):
            u.accepted = tally.outcome[u.sid][0]
    return sorted(out, key=lambda u: (u.t, order[u.sid]))


# --- policies ----------------------------------------------------------------------------------


class Policy:
    """Decides per request like the server: stage 1 before generation, stage 2 after."""

    name: str = "policy"
    has_model: bool = False
    #: The request being decided (set by :func:`replay` before ``stage1``).
    current: Unit | None = None

    def stage1(self, feats: Mapping[str, Any]) -> Decision:
        return Decision()

    def stage2(self, feats: Mapping[str, Any], s1: Decision) -> Decision:
        return Decision()

    def probabilities(self, feats: Mapping[str, Any]) -> tuple[float | None, float | None]:
        return None, None

    def observe(self, i: int, unit: Unit, outcome: Outcome | None) -> None:
        """Told each decision (``outcome``) and, later, each decided outcome of a shown
        suggestion (``outcome`` None): policies that learn online (the guard) use it."""


class ShowAll(Policy):
    name = "show-all"


class CascadePolicy(Policy):
    has_model = True

    def __init__(self, name: str, cascade: Any) -> None:
        self.name = name
        self.cascade = cascade

    def stage1(self, feats: Mapping[str, Any]) -> Decision:
        d: Decision = self.cascade.stage1(feats)
        return d

    def stage2(self, feats: Mapping[str, Any], s1: Decision) -> Decision:
        d: Decision = self.cascade.stage2(feats, s1)
        return d

    def probabilities(self, feats: Mapping[str, Any]) -> tuple[float | None, float | None]:
        return self.cascade.p_stage1(feats), self.cascade.p_stage2(feats)


def load_policy(
    name: str, model_dir: str | Path, stage2_threshold: float | None = None
) -> CascadePolicy:
    from tactful.cascade import model as cdhf

    try:
        c = cdhf.Cascade.load(model_dir)
    except cdhf.CdhfError as exc:
        raise ReplayError(str(exc)) from exc
    if stage2_threshold is not None:
        c.stage2_override = float(stage2_threshold)
        c.stage1_override = 1.01  # a fixed threshold policy never skips before generation
    return CascadePolicy(name, c)


# --- replay ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One policy's verdict on one request."""

    skipped: bool
    hidden: bool
    p1: float | None
    p2: float | None


def replay(
    units: Sequence[Unit],
    policies: Sequence[Policy],
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[Outcome]]:
    """Replay requests in time order through each policy; outcomes are index-aligned with units."""
    results: dict[str, list[Outcome | None]] = {p.name: [None] * len(units) for p in policies}
    stream: list[tuple[float, int, int]] = []
    for i, u in enumerate(units):
        stream.append((u.t, 0, i))
        if u.shown and u.seen_accepted is not None and u.t_seen is not None:
            stream.append((max(u.t_seen, u.t), 1, i))
    stream.sort()
    tels: dict[str, dict[str, F.Telemetry]] = {p.name: {} for p in policies}
    done = 0
    for _t, what, i in stream:
        u = units[i]
        for pol in policies:
            tel = tels[pol.name].setdefault(u.session, F.Telemetry())
            res = results[pol.name]
            if what == 1:
                o = res[i]
                if o is not None and not o.skipped and not o.hidden:
                    tel.on_outcome(u.t_seen or u.t, u.uri, bool(u.seen_accepted), u.text)
                    pol.observe(i, u, None)
                continue
            out = res[i] = _decide(pol, u, tel)
            pol.observe(i, u, out)
            if not out.hidden and u.shown:
                tel.on_shown(u.t, u.uri)
        if what == 0:
            done += 1
            if progress is not None:
                progress(done, len(units))
    return {
        k: [o if o is not None else Outcome(False, False, None, None) for o in v]
        for k, v in results.items()
    }


def _decide(pol: Policy, u: Unit, tel: F.Telemetry) -> Outcome:
    """One policy's decision on one request, with the telemetry that policy would have seen."""
    doc_len = u.ctx_features.get("doc_len")
    tele = tel.on_request(
        u.t,
        u.uri,
        int(doc_len) if isinstance(doc_len, int | float) and math.isfinite(doc_len) else 0,
    )
    feats: dict[str, Any] = {**u.ctx_features, **tele}
    feats2 = {**feats, **u.sugg_features}
    if u.text is not None and u.sugg_features:
        r, a = tel.history(u.text)
        feats2["repeat_rejected"], feats2["repeat_accepted"] = float(r), float(a)
    pol.current = u
    s1 = pol.stage1(feats)
    p1, p2 = pol.probabilities(feats2) if pol.has_model else (None, None)
    if not s1.show:
        return Outcome(True, True, p1, p2)
    return Outcome(False, not pol.stage2(feats2, s1).show, p1, p2)


# --- metrics -----------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def counts(
    units: Sequence[Unit], outs: Sequence[Outcome], median_seconds: float | None
) -> dict[str, Any]:
    """The per-policy figures over labelled decisions (shown suggestions with an outcome)."""
    dec = [(u, o) for u, o in zip(units, outs, strict=True) if u.accepted is not None]
    n = len(dec)
    hidden = sum(1 for _u, o in dec if o.hidden)
    rej_h = sum(1 for u, o in dec if o.hidden and not u.accepted)
    acc_h = sum(1 for u, o in dec if o.hidden and u.accepted)
    skipped = sum(1 for _u, o in dec if o.skipped)
    shown = n - hidden
    acc_shown = sum(1 for u, o in dec if not o.hidden and u.accepted)
    rejected = sum(1 for u, _o in dec if not u.accepted)
    accepted = n - rejected
    saved = 0.0
    estimated = False
    for u, o in zip(units, outs, strict=True):
        if not o.skipped:
            continue
        if u.seconds is not None:
            saved += u.seconds
        elif median_seconds is not None:
            saved += median_seconds
            estimated = True
    y = np.array([0 if u.accepted else 1 for u, _o in dec], dtype=float)
    return {
        "requests": len(units),
        "skipped_requests": sum(1 for o in outs if o.skipped),
        "decisions": n,
        "accepted": accepted,
        "rejected": rejected,
        "shown": shown,
        "hidden": hidden,
        "rejected_hidden": rej_h,
        "accepted_hidden": acc_h,
        "skipped_before_generation": skipped,
        "hidden_rate": _ratio(hidden, n),
        "acceptance_rate_shown": _ratio(acc_shown, shown),
        "accuracy_when_hiding": _ratio(rej_h, hidden),
        "rejected_hidden_share": _ratio(rej_h, rejected),
        "accepted_lost_share": _ratio(acc_h, accepted),
        "model_seconds_saved": None
        if (median_seconds is None and not any(u.seconds is not None for u in units))
        else round(saved, 3),
        "model_seconds_estimated": estimated,
        "auc_stage1": stats.auc(y, [o.p1 for _u, o in dec]),
        "auc_stage2": stats.auc(y, [o.p2 for _u, o in dec]),
    }


CI_METRICS = ("hidden_rate", "accuracy_when_hiding", "accepted_lost_share", "acceptance_rate_shown")


def bootstrap(
    per_user: Mapping[str, Mapping[str, Any]], samples: int = BOOTSTRAP_SAMPLES
) -> dict[str, Any]:
    """95% percentile intervals of pooled rates, resampling users with replacement (seeded;
    :func:`tactful.stats.bootstrap_groups`)."""
    keys = ("decisions", "hidden", "rejected_hidden", "accepted_hidden", "accepted", "shown")
    per = {
        u: {
            **{k: float(c[k]) for k in keys},
            "accepted_shown": float(c["accepted"] - c["accepted_hidden"]),
        }
        for u, c in per_user.items()
    }
    ratios = {
        "hidden_rate": ("hidden", "decisions"),
        "accuracy_when_hiding": ("rejected_hidden", "hidden"),
        "accepted_lost_share": ("accepted_hidden", "accepted"),
        "acceptance_rate_shown": ("accepted_shown", "shown"),
    }
    return stats.bootstrap_groups(per, ratios, samples, BOOTSTRAP_SEED)


def sweep(units: Sequence[Unit], outs: Sequence[Outcome]) -> list[dict[str, float | None]]:
    """Hiding rate and accuracy when hiding as a single stage-2 threshold moves (hide p2 >= t)."""
    dec = [(u, o) for u, o in zip(units, outs, strict=True) if u.accepted is not None]
    if not dec or any(o.p2 is None for _u, o in dec):
        return []
    p = np.array([float(o.p2) for _u, o in dec])  # type: ignore[arg-type]
    y = np.array([0.0 if u.accepted else 1.0 for u, _o in dec])
    rows: list[dict[str, float | None]] = []
    for t in np.linspace(0.0, 1.0, SWEEP_POINTS):
        hide = p >= t
        k = int(hide.sum())
        rows.append(
            {
                "threshold": round(float(t), 4),
                "hidden_rate": k / len(y),
                "accuracy_when_hiding": float(y[hide].mean()) if k else None,
                "accepted_lost_share": float((hide & (y == 0)).sum() / max(int((y == 0).sum()), 1)),
            }
        )
    return rows


def _natural(s: str) -> tuple[Any, ...]:
    """Sort key that orders ``cups-2`` before ``cups-10``."""
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s))


def _is_shipped(path: Any) -> bool:
    from tactful.cascade import model as cdhf

    try:
        return path is not None and Path(path).resolve() == cdhf.default_model_dir().resolve()
    except (OSError, TypeError, ValueError):
        return False


def describe_policy(
    pol: Policy, log: str, users: Sequence[str], decisions: int | None = None
) -> dict[str, Any]:
    """What a policy is, what its model was trained on and whether ``log`` is in-sample for it
    (:func:`_in_sample_reason`)."""
    cascade = getattr(pol, "cascade", None)
    if cascade is None:
        return {"kind": "baseline" if isinstance(pol, ShowAll) else "rule"}
    meta: Mapping[str, Any] = getattr(cascade, "meta", None) or {}
    trained = meta.get("trained") or {}
    logs = [str(x) for x in trained.get("logs") or ([trained["log"]] if trained.get("log") else [])]
    m = meta.get("metrics") or {}
    threshold = getattr(cascade, "stage2_override", None)
    why = _in_sample_reason(log, logs, m, users, decisions)
    return {
        "kind": "cascade" if threshold is None else "threshold",
        "model": str(getattr(cascade, "path", "")),
        "shipped": _is_shipped(getattr(cascade, "path", None)),
        "stage2_threshold": threshold,
        "target": meta.get("target"),
        "verdict": meta.get("verdict"),
        "trained_on": logs,
        "trained_users": m.get("users"),
        "held_out": _held_out_figures(m),
        "in_sample": why is not None,
        "in_sample_why": why,
    }


def _in_sample_reason(
    log: str,
    logs: Sequence[str],
    metrics: Mapping[str, Any],
    users: Sequence[str],
    decisions: int | None,
) -> str | None:
    """Why the replayed ``log`` is in-sample for a model trained on ``logs`` (None: it is not).

    In-sample (its figures optimistic): the model's training log is the replayed file (the same
    absolute path, or the same file name with as many decisions and users), or it was trained on
    a CUPS study log and the replayed users are CUPS programmers (``cups-N``, as ``tactful log
    import-cups`` names them; the shipped default is trained on CUPS)."""
    try:
        same = any(
            Path(x).expanduser().is_absolute()
            and Path(x).expanduser().resolve() == Path(log).expanduser().resolve()
            for x in logs
        )
    except (OSError, ValueError):
        same = False
    alike = Path(log).name in {Path(x).name for x in logs} and (
        metrics.get("decisions") == decisions and metrics.get("users") == len(users)
    )
    cups_users = [u for u in users if u.startswith("cups-") and u[5:].isdigit()]
    if same:
        return f"it was trained on this log ({log})"
    if alike:
        return (
            f"it was trained on {Path(log).name} with {decisions} decisions of {len(users)} users, "
            "as this log"
        )
    if cups_users and any("cups" in Path(x).name.lower() for x in logs):
        return (
            f"it was trained on the CUPS study log ({', '.join(Path(x).name for x in logs)}, "
            f"{metrics.get('users', '?')} users) and {len(cups_users)} of the {len(users)} replayed users "
            "are CUPS programmers"
        )
    return None


def _held_out_figures(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The model's training figures with whole groups held out (what a new user should expect)."""
    held = metrics.get("held_out") or {}
    return {
        "by": metrics.get("held_out_by"),
        "folds": metrics.get("folds"),
        "auc_stage1": metrics.get("stage1_auc"),
        "auc_stage2": metrics.get("stage2_auc"),
        "hidden_rate": (held.get("pooled") or {}).get("hidden"),
        "accuracy_when_hiding": (held.get("pooled") or {}).get("accuracy_when_hiding"),
        "ci95": held.get("ci95"),
    }


def build_report(
    units: Sequence[Unit],
    results: Mapping[str, Sequence[Outcome]],
    source: str = "",
    problems: Sequence[str] = (),
    fmt: str = "",
    described: Sequence[Policy] = (),
) -> dict[str, Any]:
    """The whole report: per policy overall, per user, bootstrap CIs, the threshold sweep and
    what the policy is (``about``, :func:`describe_policy`, for the policies in ``described``)."""
    secs = [u.seconds for u in units if u.seconds is not None]
    median = float(np.median(secs)) if secs else None
    users = sorted({u.user for u in units}, key=_natural)
    policies: dict[str, Any] = {}
    for name, outs in results.items():
        overall = counts(units, outs, median)
        per_user: dict[str, Any] = {}
        for user in users:
            idx = [i for i, u in enumerate(units) if u.user == user]
            per_user[user] = counts([units[i] for i in idx], [outs[i] for i in idx], median)
        policies[name] = {
            **overall,
            "about": next(
                (
                    describe_policy(p, source, users, overall["decisions"])
                    for p in described
                    if p.name == name
                ),
                {},
            ),
            "ci95_over_users": bootstrap(per_user),
            "per_user": per_user,
            "sweep_stage2": sweep(units, outs),
        }
    return {
        "log": source,
        "format": fmt,
        "requests": len(units),
        "decisions": sum(1 for u in units if u.accepted is not None),
        "users": users,
        "median_model_seconds": median,
        "problems": list(problems),
        "policies": policies,
    }


# --- running -----------------------------------------------------------------------------------


def parse_threshold(s: str) -> float:
    try:
        v = float(s)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from exc
    if not 0.0 <= v <= 1.01:
        raise argparse.ArgumentTypeError(f"a threshold is a probability in [0, 1], got {v}")
    return v


def make_policies(
    policy_dirs: Sequence[str] = (),
    thresholds: Sequence[float] = (),
    include_default: bool = True,
) -> list[Policy]:
    from tactful.cascade import model as cdhf

    pols: list[Policy] = [ShowAll()]
    if include_default:
        pols.append(load_policy("default", cdhf.default_model_dir()))
    for t in thresholds:
        pols.append(load_policy(f"threshold-{t:g}", cdhf.default_model_dir(), stage2_threshold=t))
    names = {p.name for p in pols}
    for d in policy_dirs:
        base = Path(d).expanduser().name or str(d)
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.add(name)
        pols.append(load_policy(name, d))
    return pols


def run(
    log: str | Path,
    policies: Sequence[Policy],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], Loaded, list[Unit]]:
    loaded = load_log(log)
    units = build_units(loaded.events)
    if not any(u.accepted is not None for u in units):
        detail = f" ({len(loaded.problems)} bad lines skipped)" if loaded.problems else ""
        raise ReplayError(
            f"{log}: the log holds no shown suggestion with an accept or reject{detail}; nothing to replay"
        )
    from tactful.replay.guard import GuardedPolicy

    guarded = [p for p in policies if isinstance(p, GuardedPolicy)]
    for pol in guarded:
        pol.prepare(units, loaded.contexts)  # the guard reads what was typed next
    results = replay(units, policies, progress)
    report = build_report(units, results, str(log), loaded.problems, loaded.fmt, policies)
    for pol in guarded:
        report["policies"][pol.name]["guard"] = pol.report()
    return report, loaded, units


def write_html(report: Mapping[str, Any], path: str | Path) -> Path:
    from tactful.replay.html import render

    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render(report), encoding="utf-8")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``tactful replay`` (:mod:`tactful.replay.cli`)."""
    from tactful.replay.cli import main as cli_main

    return cli_main(argv)


__all__ = [
    "Loaded",
    "LogEvent",
    "ReplayError",
    "edit_similarity",
    "embedded_completer",
    "load_log",
    "main",
    "regenerate",
]
