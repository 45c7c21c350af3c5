"""Loading a log for replay: the server's SQLite feedback log, its JSON Lines export
(``tactful log export``) or raw CUPS study events (``cups_events.jsonl[.gz]``, converted with
:func:`tactful.feedback.importers.import_cups`). Corrupt or truncated lines are reported with their
line number and skipped, never silently."""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tactful.feedback.jsonl import json_lines, open_text
from tactful.feedback.queries import EventHead


class ReplayError(Exception):
    """The log cannot be replayed; the message is meant for a person."""


# --- loading -----------------------------------------------------------------------------------


@dataclass
class LogEvent(EventHead):
    """An event to replay, from any of the log formats."""

    data: dict[str, Any]
    order: int


@dataclass
class Loaded:
    events: list[LogEvent]
    fmt: str  # "sqlite" | "jsonl" | "cups"
    problems: list[str] = field(default_factory=list)
    #: Context text per suggestion id where the log has it (CUPS prompts; ``prefix`` in data).
    contexts: dict[str, tuple[str, str]] = field(default_factory=dict)


def _read_json_lines(path: Path, problems: list[str]) -> list[tuple[int, dict[str, Any]]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        with open_text(path) as fh:
            n = 0
            try:
                for n, obj, error in json_lines(fh):
                    if error is not None:
                        problems.append(f"{path}:{n}: not valid JSON ({error}); skipped")
                    elif not isinstance(obj, dict):
                        problems.append(f"{path}:{n}: not a JSON object; skipped")
                    else:
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
    events, contexts = _export_events(p, rows, problems)
    problems.sort(key=_line_of)
    return Loaded(events, "jsonl", problems, contexts)


def _export_events(
    p: Path, rows: list[tuple[int, dict[str, Any]]], problems: list[str]
) -> tuple[list[LogEvent], dict[str, tuple[str, str]]]:
    """Events of a ``tactful log export`` file, and the contexts its requests carry."""
    events: list[LogEvent] = []
    contexts: dict[str, tuple[str, str]] = {}
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
    return events, contexts


def _line_of(msg: str) -> int:
    """The line number in a ``path:N: ...`` problem message (for ordering)."""
    parts = msg.rsplit(": ", 1)[0].split(":")
    for part in reversed(parts):
        if part.isdigit():
            return int(part)
    return 0
