"""Offline replay of logged sessions through show/hide policies (issue 6; CDHF's retrospective evaluation).

This module owns

* loading a log for replay (:func:`load_log`): the server's SQLite feedback log, its JSON Lines
  export (``tactful log export``) or raw CUPS study events (``cups_events.jsonl[.gz]``, converted
  with :func:`tactful.feedback.importers.import_cups`). Corrupt or truncated lines are reported with their
  line number and skipped, never silently;
* turning events into time-ordered requests (:class:`Unit`) and replaying them through policies
  (:func:`replay`): each policy keeps its own per-session :class:`tactful.cascade.features.Telemetry`,
  so that the telemetry features are those the server would have computed had that policy been
  live (a hidden suggestion is never seen, so it updates no history);
* the metrics per policy, overall and per user, with bootstrap confidence intervals over users,
  threshold sweeps for the plots (:func:`build_report`);
* ``--regenerate``: re-running a completion model on logged contexts and comparing with what
  was shown/accepted (:func:`regenerate`);
* ``tactful replay --log LOG [--policy DIR] [--threshold T] [--json] [--html FILE]`` (:func:`main`).

The HTML report is written by :mod:`tactful.replay.html`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tactful import stats
from tactful.cascade import features as F
from tactful.cascade.hooks import Decision

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 20240611
SWEEP_POINTS = 41


class ReplayError(Exception):
    """The log cannot be replayed; the message is meant for a person."""


# --- loading -----------------------------------------------------------------------------------


@dataclass
class LogEvent:
    t: float
    kind: str
    suggestion_id: str | None
    session: str
    user: str
    uri: str | None
    data: dict[str, Any]
    order: int


@dataclass
class Loaded:
    events: list[LogEvent]
    fmt: str  # "sqlite" | "jsonl" | "cups"
    problems: list[str] = field(default_factory=list)
    #: Context text per suggestion id where the log has it (CUPS prompts; ``prefix`` in data).
    contexts: dict[str, tuple[str, str]] = field(default_factory=dict)


def _open_text(path: Path) -> Any:
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _read_json_lines(path: Path, problems: list[str]) -> list[tuple[int, dict[str, Any]]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        with _open_text(path) as fh:
            n = 0
            try:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError as exc:
                        problems.append(f"{path}:{n}: not valid JSON ({exc}); skipped")
                        continue
                    if not isinstance(obj, dict):
                        problems.append(f"{path}:{n}: not a JSON object; skipped")
                        continue
                    rows.append((n, obj))
            except (EOFError, OSError) as exc:  # truncated gzip
                problems.append(f"{path}:{n + 1}: file ends early ({exc}); the rest is lost")
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc}") from exc
    return rows


def _cups_events(
    path: Path, rows: list[tuple[int, dict[str, Any]]], problems: list[str]
) -> tuple[list[LogEvent], dict[str, tuple[str, str]]]:
    from tactful.feedback import importers
    from tactful.feedback import store as feedback

    good: list[dict[str, Any]] = []
    contexts: dict[str, tuple[str, str]] = {}
    for n, e in rows:
        if "state_name" not in e or "session_index" not in e or "time_generated" not in e:
            problems.append(
                f"{path}:{n}: not a CUPS event (needs state_name, session_index, time_generated); skipped"
            )
            continue
        try:
            int(e["session_index"])
            importers.parse_time(str(e["time_generated"]))
        except (TypeError, ValueError) as exc:
            problems.append(f"{path}:{n}: bad session_index or time_generated ({exc}); skipped")
            continue
        good.append(e)
        if e.get("state_name") == "Shown":
            prefix, _fname = importers._cups_prefix(e.get("prompt"))
            if prefix is not None:
                contexts[f"cups-{e['session_index']}-{e.get('event_index')}"] = (prefix, "")
    with tempfile.TemporaryDirectory(prefix="tactful-replay-") as tmp:
        src = Path(tmp) / "cups.jsonl"
        src.write_text("".join(json.dumps(e) + "\n" for e in good), encoding="utf-8")
        db = Path(tmp) / "log.sqlite3"
        try:
            importers.import_cups(src, db)
            events = [_from_feedback_event(ev) for ev in feedback.read_events(db)]
        except feedback.FeedbackError as exc:
            raise ReplayError(f"{path}: cannot import the CUPS events: {exc}") from exc
    return events, contexts


def _from_feedback_event(ev: Any) -> LogEvent:
    return LogEvent(
        float(ev.t),
        str(ev.kind),
        ev.suggestion_id,
        str(ev.session),
        str(ev.user),
        ev.uri,
        ev.data,
        int(ev.id),
    )


def load_log(path: str | Path) -> Loaded:
    """Read a feedback log (SQLite), its JSON Lines export or CUPS events; see module doc."""
    from tactful.feedback import store as feedback

    p = Path(path).expanduser()
    if not p.exists():
        raise ReplayError(f"no log at {p}")
    if p.is_dir():
        raise ReplayError(f"{p} is a folder, not a log file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ReplayError(f"cannot read {p}: {exc}") from exc
    if head.startswith(b"SQLite format 3"):
        try:
            events = [_from_feedback_event(ev) for ev in feedback.read_events(p)]
        except feedback.FeedbackError as exc:
            raise ReplayError(str(exc)) from exc
        contexts = {
            ev.suggestion_id: (ev.data["prefix"], str(ev.data.get("suffix") or ""))
            for ev in events
            if ev.kind == "requested"
            and ev.suggestion_id
            and isinstance(ev.data.get("prefix"), str)
        }
        return Loaded(events, "sqlite", [], contexts)
    problems: list[str] = []
    rows = _read_json_lines(p, problems)
    if not rows:
        return Loaded([], "jsonl", problems)
    if sum(1 for _n, r in rows if "state_name" in r) * 2 > len(rows):
        events, contexts = _cups_events(p, rows, problems)
        problems.sort(key=_line_of)
        return Loaded(events, "cups", problems, contexts)
    events = []
    contexts = {}
    for n, r in rows:
        try:
            t = float(r["t"])
            kind = r["kind"]
            if not isinstance(kind, str) or not math.isfinite(t):
                raise ValueError("bad kind or time")
            data = r.get("data") or {}
            if not isinstance(data, dict):
                raise ValueError("data is not an object")
            sid = r.get("suggestionId", r.get("suggestion_id"))
            ev = LogEvent(
                t,
                kind,
                None if sid is None else str(sid),
                str(r.get("session") or "session"),
                str(r.get("user") or "user"),
                r.get("uri"),
                data,
                int(r.get("id", n)) if isinstance(r.get("id", n), int) else n,
            )
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"{p}:{n}: not a tactful log event ({exc}); skipped")
            continue
        events.append(ev)
        if kind == "requested" and ev.suggestion_id and isinstance(data.get("prefix"), str):
            contexts[ev.suggestion_id] = (data["prefix"], str(data.get("suffix") or ""))
    problems.sort(key=_line_of)
    return Loaded(events, "jsonl", problems, contexts)


def _line_of(msg: str) -> int:
    """The line number in a ``path:N: ...`` problem message (for ordering)."""
    parts = msg.rsplit(": ", 1)[0].split(":")
    for part in reversed(parts):
        if part.isdigit():
            return int(part)
    return 0


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
    #: True accepted, False rejected, None no (usable) decision.
    accepted: bool | None = None
    t_outcome: float | None = None


def build_units(events: Iterable[LogEvent]) -> list[Unit]:
    """Group events by suggestion id into requests, sorted by request time (then log order)."""
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
        elif ev.kind == "accepted":
            if u.accepted is not True:
                u.accepted, u.t_outcome = True, ev.t
        elif ev.kind == "rejected":
            if ev.data.get("imported_label") is False:
                continue
            if u.accepted is None:
                u.accepted, u.t_outcome = False, ev.t
    out = [u for u in units.values() if u.shown or u.generated or u.ctx_features]
    for u in out:
        if not u.shown:
            u.accepted = None  # an outcome without a display is not a user decision
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
        if u.accepted is not None and u.t_outcome is not None:
            stream.append((max(u.t_outcome, u.t), 1, i))
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
                    tel.on_outcome(u.t_outcome or u.t, u.uri, bool(u.accepted), u.text)
                    pol.observe(i, u, None)
                continue
            doc_len = u.ctx_features.get("doc_len")
            tele = tel.on_request(
                u.t,
                u.uri,
                int(doc_len) if isinstance(doc_len, int | float) and math.isfinite(doc_len) else 0,
            )
            feats: dict[str, Any] = {**u.ctx_features, **tele}
            pol.current = u
            s1 = pol.stage1(feats)
            p1, p2 = None, None
            if pol.has_model:
                feats2 = {**feats, **u.sugg_features}
                if u.text is not None and u.sugg_features:
                    r, a = tel.history(u.text)
                    feats2["repeat_rejected"], feats2["repeat_accepted"] = float(r), float(a)
                p1, p2 = pol.probabilities(feats2)
            if not s1.show:
                res[i] = Outcome(True, True, p1, p2)
                pol.observe(i, u, res[i])
                continue
            feats2 = {**feats, **u.sugg_features}
            if u.text is not None and u.sugg_features:
                r, a = tel.history(u.text)
                feats2["repeat_rejected"], feats2["repeat_accepted"] = float(r), float(a)
            s2 = pol.stage2(feats2, s1)
            hidden = not s2.show
            res[i] = Outcome(False, hidden, p1, p2)
            pol.observe(i, u, res[i])
            if not hidden and u.shown:
                tel.on_shown(u.t, u.uri)
        if what == 0:
            done += 1
            if progress is not None:
                progress(done, len(units))
    return {
        k: [o if o is not None else Outcome(False, False, None, None) for o in v]
        for k, v in results.items()
    }


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
    """What a policy is, what its model was trained on and whether ``log`` is in-sample for it.

    In-sample (its figures optimistic): the model's training log is the replayed file (the same
    absolute path, or the same file name with as many decisions and users), or it was trained on
    a CUPS study log and the replayed users are CUPS programmers (``cups-N``, as ``tactful log
    import-cups`` names them; the shipped default is trained on CUPS)."""
    cascade = getattr(pol, "cascade", None)
    if cascade is None:
        return {"kind": "baseline" if isinstance(pol, ShowAll) else "rule"}
    meta: Mapping[str, Any] = getattr(cascade, "meta", None) or {}
    trained = meta.get("trained") or {}
    logs = [str(x) for x in trained.get("logs") or ([trained["log"]] if trained.get("log") else [])]
    m = meta.get("metrics") or {}
    held = m.get("held_out") or {}
    threshold = getattr(cascade, "stage2_override", None)
    why = None
    try:
        same = any(
            Path(x).expanduser().is_absolute()
            and Path(x).expanduser().resolve() == Path(log).expanduser().resolve()
            for x in logs
        )
    except (OSError, ValueError):
        same = False
    alike = Path(log).name in {Path(x).name for x in logs} and (
        m.get("decisions") == decisions and m.get("users") == len(users)
    )
    cups_users = [u for u in users if u.startswith("cups-") and u[5:].isdigit()]
    if same:
        why = f"it was trained on this log ({log})"
    elif alike:
        why = (
            f"it was trained on {Path(log).name} with {decisions} decisions of {len(users)} users, "
            "as this log"
        )
    elif cups_users and any("cups" in Path(x).name.lower() for x in logs):
        why = (
            f"it was trained on the CUPS study log ({', '.join(Path(x).name for x in logs)}, "
            f"{m.get('users', '?')} users) and {len(cups_users)} of the {len(users)} replayed users "
            "are CUPS programmers"
        )
    return {
        "kind": "cascade" if threshold is None else "threshold",
        "model": str(getattr(cascade, "path", "")),
        "shipped": _is_shipped(getattr(cascade, "path", None)),
        "stage2_threshold": threshold,
        "target": meta.get("target"),
        "verdict": meta.get("verdict"),
        "trained_on": logs,
        "trained_users": m.get("users"),
        "held_out": {
            "by": m.get("held_out_by"),
            "folds": m.get("folds"),
            "auc_stage1": m.get("stage1_auc"),
            "auc_stage2": m.get("stage2_auc"),
            "hidden_rate": (held.get("pooled") or {}).get("hidden"),
            "accuracy_when_hiding": (held.get("pooled") or {}).get("accuracy_when_hiding"),
            "ci95": held.get("ci95"),
        },
        "in_sample": why is not None,
        "in_sample_why": why,
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


# --- regenerate --------------------------------------------------------------------------------


def edit_similarity(a: str, b: str) -> float:
    """1 - normalised Levenshtein distance (1.0 for equal strings, also both empty)."""
    if a == b:
        return 1.0
    n, m = len(a), len(b)
    prev = list(range(m + 1))
    for i in range(1, n + 1):
        cur = [i] + [0] * m
        ca = a[i - 1]
        for j in range(1, m + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != b[j - 1]))
        prev = cur
    return 1.0 - prev[m] / max(n, m)


def regenerate(
    units: Sequence[Unit],
    contexts: Mapping[str, tuple[str, str]],
    complete: Callable[[str, str], str | None],
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Re-run ``complete(prefix, suffix)`` on each shown suggestion's logged context and compare.

    Returns counts and means of exact match / edit similarity against what was shown, and
    separately against what was accepted."""
    todo = [u for u in units if u.shown and u.text is not None and u.sid in contexts]
    missing = sum(1 for u in units if u.shown and u.sid not in contexts)
    if limit is not None:
        todo = todo[:limit]
    rows: list[dict[str, Any]] = []
    for k, u in enumerate(todo, 1):
        prefix, suffix = contexts[u.sid]
        new = complete(prefix, suffix) or ""
        old = u.text or ""
        rows.append(
            {
                "id": u.sid,
                "accepted": u.accepted,
                "exact": new.strip() == old.strip(),
                "edit_similarity": edit_similarity(new.strip(), old.strip()),
            }
        )
        if progress is not None:
            progress(k, len(todo))

    def summary(sel: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "n": len(sel),
            "exact_match": _ratio(sum(1 for r in sel if r["exact"]), len(sel)),
            "edit_similarity": _ratio(sum(r["edit_similarity"] for r in sel), len(sel)),
        }

    return {
        "compared": len(rows),
        "without_context": missing,
        "vs_shown": summary(rows),
        "vs_accepted": summary([r for r in rows if r["accepted"] is True]),
        "vs_rejected": summary([r for r in rows if r["accepted"] is False]),
        "rows": rows,
    }


def embedded_completer(model: str | None = None) -> Callable[[str, str], str | None]:
    """``complete(prefix, suffix)`` with the embedded (or given) model through the server's path."""
    from tactful import paths
    from tactful.backend.hf import TransformersBackend
    from tactful.completion.engine import complete_text

    backend = TransformersBackend.load(model, cache_dir=paths.cache_dir())

    def complete(prefix: str, suffix: str) -> str | None:
        return complete_text(backend, prefix + suffix, len(prefix), "python")

    return complete


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


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{100 * v:.1f}%" if pct else f"{v:.3f}"
    return str(v)


def table(report: Mapping[str, Any]) -> str:
    """The terminal table: one column per policy."""
    names = list(report["policies"])
    rows: list[tuple[str, str, bool]] = [
        ("decisions", "decisions", False),
        ("shown", "shown", False),
        ("hidden", "hidden", False),
        ("rejected hidden", "rejected_hidden", False),
        ("accepted lost", "accepted_hidden", False),
        ("skipped before gen.", "skipped_before_generation", False),
        ("model s saved", "model_seconds_saved", False),
        ("hiding rate", "hidden_rate", True),
        ("accept rate (shown)", "acceptance_rate_shown", True),
        ("accuracy when hiding", "accuracy_when_hiding", True),
        ("accepted lost share", "accepted_lost_share", True),
        ("AUC stage 1", "auc_stage1", False),
        ("AUC stage 2", "auc_stage2", False),
    ]
    w = max(12, *(len(n) + 2 for n in names))
    out = [f"{'':<22}" + "".join(f"{n:>{w}}" for n in names)]
    for label, key, pct in rows:
        out.append(
            f"{label:<22}"
            + "".join(f"{_fmt(report['policies'][n].get(key), pct):>{w}}" for n in names)
        )
    for key in ("hidden_rate", "accuracy_when_hiding"):
        cells = []
        for n in names:
            ci = report["policies"][n].get("ci95_over_users", {}).get(key)
            cells.append("-" if not ci else f"{100 * ci[0]:.0f}-{100 * ci[1]:.0f}%")
        out.append(f"{key.replace('_', ' ') + ' CI':<22}" + "".join(f"{c:>{w}}" for c in cells))
    return "\n".join(out)


def json_report(report: Mapping[str, Any], per_user: bool = True) -> dict[str, Any]:
    """The report with NaN-free values; per-user details optional."""
    from tactful.feedback.store import _clean

    rep = dict(report)
    if not per_user:
        rep["policies"] = {
            k: {kk: vv for kk, vv in v.items() if kk != "per_user"}
            for k, v in rep["policies"].items()
        }
    cleaned: dict[str, Any] = _clean(rep)
    return cleaned


def write_html(report: Mapping[str, Any], path: str | Path) -> Path:
    from tactful.replay.html import render

    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render(report), encoding="utf-8")
    return p


def _progress_printer(label: str) -> Callable[[int, int], None]:
    """Progress on stderr in 10% steps (one updating line on a terminal, else one line each)."""
    last = [-1]
    tty = sys.stderr.isatty()

    def show(done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if pct // 10 != last[0] or done == total:
            last[0] = pct // 10
            if tty:
                end = "\n" if done == total else ""
                print(f"\r{label}: {done}/{total} ({pct}%)", end=end, file=sys.stderr, flush=True)
            else:
                print(f"{label}: {done}/{total} ({pct}%)", file=sys.stderr, flush=True)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """``tactful replay --log LOG [--policy DIR]... [--threshold T]... [--json] [--html FILE] [--regenerate]``."""
    ap = argparse.ArgumentParser(
        prog="tactful replay",
        description="Replay logged sessions through show/hide policies and report what each would have hidden.",
    )
    ap.add_argument(
        "--log",
        help="feedback log (.sqlite3), its JSON Lines export, or CUPS events (.jsonl[.gz]); default: your own log",
    )
    ap.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="DIR",
        help="a trained cascade folder (repeatable)",
    )
    ap.add_argument(
        "--threshold",
        action="append",
        default=[],
        type=parse_threshold,
        metavar="T",
        help="a fixed policy: hide when the shipped model's stage-2 P(reject) >= T (repeatable)",
    )
    ap.add_argument(
        "--no-default", action="store_true", help="leave out the shipped default cascade"
    )
    ap.add_argument(
        "--guard",
        action="store_true",
        help="also replay each cascade with the run-time guard (exploration, typed-next evidence, back-off)",
    )
    ap.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the table"
    )
    ap.add_argument("--per-user", action="store_true", help="include per-user figures in --json")
    ap.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    ap.add_argument(
        "--regenerate",
        action="store_true",
        help="re-run the completion model on logged contexts and compare",
    )
    ap.add_argument(
        "--model", default=None, help="model for --regenerate (default: the embedded one)"
    )
    ap.add_argument(
        "--limit", type=int, default=None, help="--regenerate at most this many suggestions"
    )
    ap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = ap.parse_args(list(argv) if argv is not None else None)
    if args.log is None:
        from tactful.feedback.store import default_log_path

        args.log = str(default_log_path())
    try:
        pols = make_policies(args.policy, args.threshold, include_default=not args.no_default)
        if args.guard:
            from tactful.replay.guard import guarded_twins

            pols += guarded_twins(pols)
        report, loaded, units = run(
            args.log, pols, None if args.quiet else _progress_printer("replay")
        )
        for msg in loaded.problems:
            print(f"tactful replay: {msg}", file=sys.stderr)
        if args.regenerate:
            complete = embedded_completer(args.model)
            report["regenerate"] = regenerate(
                units,
                loaded.contexts,
                complete,
                args.limit,
                None if args.quiet else _progress_printer("regenerate"),
            )
        if args.html:
            p = write_html(report, args.html)
            print(f"tactful replay: wrote {p}", file=sys.stderr)
        if args.json:
            print(json.dumps(json_report(report, args.per_user), indent=2, allow_nan=False))
        else:
            print(
                f"{report['log']} ({report['format']}): {report['requests']} requests, "
                f"{report['decisions']} decisions, {len(report['users'])} users"
            )
            print(table(report))
            for name, pol in report["policies"].items():
                if "guard" in pol:
                    print(f"{name}: guard {json.dumps(pol['guard']['pooled'])}")
            rg = report.get("regenerate")
            if rg:
                print(
                    f"regenerate: {rg['compared']} compared ({rg['without_context']} without context); "
                    f"exact {_fmt(rg['vs_shown']['exact_match'], True)}, "
                    f"edit similarity {_fmt(rg['vs_shown']['edit_similarity'])} vs shown; "
                    f"{_fmt(rg['vs_accepted']['edit_similarity'])} vs accepted"
                )
    except ReplayError as exc:
        print(f"tactful replay: {exc}", file=sys.stderr)
        return 1
    return 0
