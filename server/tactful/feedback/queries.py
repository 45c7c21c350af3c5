"""Reading a feedback log back: events, the decisions the cascade learns from, counts.

This module owns :func:`read_events` (every event in write order), :class:`DecisionTally` (the
one definition of a decision and of the acceptance rate), :func:`load_decisions` (the labelled
show-time features the cascade trains on), :func:`export_jsonl` and :func:`stats` (``tactful log
stats``). It only reads: writing is :mod:`tactful.feedback.store`, the file itself
:mod:`tactful.feedback.logfile`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tactful.feedback.logfile import SCHEMA_VERSION, FeedbackError, connect, json_safe


@dataclass
class EventHead:
    """The columns every event has, whatever it was read from: the log, its JSON Lines export,
    CUPS data (the replay's events, :class:`tactful.replay.load.LogEvent`, share them)."""

    t: float
    kind: str
    suggestion_id: str | None
    session: str
    user: str
    uri: str | None


@dataclass
class Event(EventHead):
    """One event as the log stores it."""

    language: str | None
    data: dict[str, Any]
    #: The row's id: the order events were written in.
    id: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "t": self.t,
            "kind": self.kind,
            "suggestionId": self.suggestion_id,
            "session": self.session,
            "user": self.user,
            "uri": self.uri,
            "language": self.language,
            "data": self.data,
        }


def read_events(path: str | Path) -> Iterator[Event]:
    """Every event of a log in write order."""
    p = Path(path).expanduser()
    try:
        conn = connect(p, readonly=True)
    except sqlite3.Error as exc:
        raise FeedbackError(f"cannot open the feedback log {p}: {exc}") from exc
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise FeedbackError(
                f"{p} has log schema {version}, newer than this tactful understands ({SCHEMA_VERSION})"
            )
        if version < 1:
            raise FeedbackError(f"{p} is not a tactful feedback log")
        for row in conn.execute(
            "SELECT id, t, kind, suggestion_id, session, user, uri, language, data FROM events ORDER BY id"
        ):
            try:
                data = json.loads(row[8])
            except ValueError:
                data = {"unparsed": row[8]}
            yield Event(
                t=row[1],
                kind=row[2],
                suggestion_id=row[3],
                session=row[4],
                user=row[5],
                uri=row[6],
                language=row[7],
                data=data if isinstance(data, dict) else {"value": data},
                id=row[0],
            )
    except sqlite3.DatabaseError as exc:
        raise FeedbackError(f"cannot read the feedback log {p}: {exc}") from exc
    finally:
        conn.close()


@dataclass
class DecisionRow:
    """One shown suggestion with its outcome: the unit the cascade learns from."""

    suggestion_id: str
    t: float
    user: str
    session: str
    uri: str | None
    features: dict[str, float | None]
    accepted: bool
    accepted_length: int | None = None
    survival: dict[str, float] = field(default_factory=dict)


#: Inferred rejections this soon after the show are not decisions: the user hardly saw the
#: suggestion (Cody counts a suggestion as seen after 750 ms on screen).
MIN_VISIBLE_S = 0.75
_GLANCE_REASONS = frozenset({"new_request", "cursor_left", "diverged"})


class DecisionTally:
    """Which shown suggestions are decisions, and which of those were accepted: the one
    definition of the acceptance rate (accepted decisions / shown decisions). Training
    (:func:`load_decisions`), ``tactful log stats``, the replay and the server's status all count
    with it. Any accept wins over an inferred rejection; a rejection inferred from typing or
    moving on within ``min_visible_s`` of the last display is not a decision; explicit, timeout
    and imported rejections always count; an imported row without a user decision never does."""

    def __init__(self, min_visible_s: float = MIN_VISIBLE_S) -> None:
        self.min_visible_s = min_visible_s
        self._shown: set[str] = set()
        self._last_display: dict[str, float] = {}
        #: suggestion id -> (accepted, time, accepted length)
        self.outcome: dict[str, tuple[bool, float, int | None]] = {}

    def add(self, kind: str, sid: str | None, t: float, data: Mapping[str, Any]) -> None:
        """Count one event (events of other kinds are ignored)."""
        if not sid:
            return
        if kind == "shown":
            self._shown.add(sid)
            self._last_display[sid] = t
        elif kind == "accepted":
            prev = self.outcome.get(sid)
            length = data.get("accepted_length")
            if prev is None or not prev[0]:
                self.outcome[sid] = (True, t, length if isinstance(length, int) else None)
        elif kind == "rejected":
            if data.get("imported_label") is False:
                return  # no user decision behind it (see import_cups)
            seen_for = t - self._last_display.get(sid, t - 1e9)
            if data.get("reason") in _GLANCE_REASONS and seen_for < self.min_visible_s:
                return
            if sid not in self.outcome:
                self.outcome[sid] = (False, t, None)

    def is_decision(self, sid: str) -> bool:
        return sid in self._shown and sid in self.outcome

    def counts(self) -> tuple[int, int]:
        """(shown decisions, accepted decisions)."""
        decided = [self.outcome[sid][0] for sid in self._shown if sid in self.outcome]
        return len(decided), sum(decided)

    def summary(self) -> dict[str, Any]:
        """``{"decisions", "accepted", "acceptanceRate"}`` (the rate None without decisions)."""
        n, acc = self.counts()
        return {"decisions": n, "accepted": acc, "acceptanceRate": (acc / n) if n else None}


def load_decisions(path: str | Path, min_visible_s: float = MIN_VISIBLE_S) -> list[DecisionRow]:
    """Shown suggestions that have an outcome (:class:`DecisionTally`), with the features
    recorded before the outcome (``requested`` + ``generated`` events)."""
    tally = DecisionTally(min_visible_s)
    feats: dict[str, dict[str, float | None]] = {}
    shown: dict[str, Event] = {}
    survival: dict[str, dict[str, float]] = {}
    for ev in read_events(path):
        sid = ev.suggestion_id
        if not sid:
            continue
        tally.add(ev.kind, sid, ev.t, ev.data)
        if ev.kind in ("requested", "generated"):
            f = ev.data.get("features")
            if isinstance(f, dict):
                feats.setdefault(sid, {}).update(f)
        elif ev.kind == "shown":
            shown.setdefault(sid, ev)
        elif ev.kind == "survival":
            after = ev.data.get("after_s")
            key = str(after if after is not None else ev.data.get("checkpoint"))
            val = ev.data.get("survived")
            if isinstance(val, int | float):
                survival.setdefault(sid, {})[key] = float(val)
    rows: list[DecisionRow] = []
    for sid, ev in shown.items():
        if not tally.is_decision(sid):
            continue
        acc, _t, length = tally.outcome[sid]
        rows.append(
            DecisionRow(
                suggestion_id=sid,
                t=ev.t,
                user=ev.user,
                session=ev.session,
                uri=ev.uri,
                features=feats.get(sid, {}),
                accepted=acc,
                accepted_length=length,
                survival=survival.get(sid, {}),
            )
        )
    return sorted(rows, key=lambda r: r.t)


def export_jsonl(path: str | Path, out: Any) -> int:
    """Write every event as one JSON object per line to the text stream ``out``."""
    n = 0
    for ev in read_events(path):
        out.write(json.dumps(json_safe(ev.to_json()), ensure_ascii=False) + "\n")
        n += 1
    return n


def stats(path: str | Path) -> dict[str, Any]:
    """Counts by event kind, decisions, acceptance rate, rejection reasons, sessions."""
    kinds: dict[str, int] = {}
    reasons: dict[str, int] = {}
    guard: dict[str, Any] | None = None
    sessions: set[str] = set()
    users: set[str] = set()
    for ev in read_events(path):
        kinds[ev.kind] = kinds.get(ev.kind, 0) + 1
        sessions.add(ev.session)
        users.add(ev.user)
        if ev.kind == "rejected":
            r = str(ev.data.get("reason"))
            reasons[r] = reasons.get(r, 0) + 1
        elif ev.kind == "guard":
            guard = _guard_summary(ev.data, guard)
    decisions = load_decisions(path)
    acc = sum(1 for d in decisions if d.accepted)
    by_checkpoint: dict[str, list[float]] = {}
    for d in decisions:
        for key, val in d.survival.items():
            by_checkpoint.setdefault(key, []).append(val)
    return {
        "path": str(Path(path).expanduser()),
        "schema": SCHEMA_VERSION,
        "events": kinds,
        "rejectReasons": reasons,
        "decisions": len(decisions),
        "accepted": acc,
        "acceptanceRate": (acc / len(decisions)) if decisions else None,
        "sessions": len(sessions),
        "users": len(users),
        # Mean share of accepted text still in the document, per checkpoint (seconds, or the
        # checkpoint index for imported data): acceptance alone is a poor measure of value.
        "survival": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_checkpoint.items())},
        # The cascade guard's last state (hiding / stricter / off, its estimate of accuracy when
        # hiding with the lower bound and counts) and its changes of state; None: no evidence.
        "cascadeGuard": guard,
    }


def _guard_summary(data: Mapping[str, Any], prev: dict[str, Any] | None) -> dict[str, Any]:
    keys = (
        "state",
        "target",
        "accuracyWhenHiding",
        "lowerBound",
        "evidence",
        "correct",
        "bySource",
    )
    out: dict[str, Any] = {k: data.get(k) for k in keys}
    out["evidenceLogged"] = (prev or {}).get("evidenceLogged", 0) + 1
    changes = list((prev or {}).get("changes", []))
    if data.get("message"):
        changes.append(data["message"])
    out["changes"] = changes[-10:]
    return out
