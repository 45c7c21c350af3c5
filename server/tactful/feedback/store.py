"""The local feedback log: every suggestion's life, from request to code survival.

This module owns

* the SQLite store (:class:`FeedbackLog`): WAL mode, a versioned schema with migrations
  (``SCHEMA_VERSION``; ``PRAGMA user_version``), one autocommitted transaction per event so that
  an event is on disk once :meth:`FeedbackLog.record` returns (it survives SIGKILL of the
  server), safe with several server processes writing one file (SQLite's file locking plus a
  busy timeout), files readable by their owner only, and optional hashing of code text;
* reading a log back (:func:`read_events`, :func:`load_decisions` - the labelled show-time
  features the cascade trains on) and exporting it to JSON Lines;
* the CUPS importer (:func:`import_cups`), converting the Copilot user-study events into this
  log format with each decision's features taken from its preceding ``Shown`` event;
* ``tactful log stats|export|import-cups|path`` (:func:`main`).

The schema is documented in ``docs/feedback-log.md``. No torch, no pygls.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import logging
import math
import os
import sqlite3
import stat
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tactful.cascade import features as F

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
LOG_FILENAME = "feedback.sqlite3"

#: Event kinds, in the order they happen to one suggestion.
KINDS = (
    "requested",
    "skipped",
    "generated",
    "hidden",
    "shown",
    "extended",
    "accepted",
    "rejected",
    "survival",
)
#: Why the server counted a suggestion as rejected.
REJECT_REASONS = (
    "explicit",  # the client ran tactful.reject
    "new_request",  # a newer request in the document that does not type along the suggestion
    "diverged",  # an edit at the suggestion that does not match it
    "cursor_left",  # a request elsewhere (other position or document) with the suggestion pending
    "closed",  # the document was closed
    "timeout",  # no accept within feedback.rejectTimeoutS
    "typed_through",  # the user typed the whole suggestion by hand and never accepted it
    "superseded",  # imported data: a newer suggestion was shown before any decision
)

_MIGRATIONS: dict[int, Sequence[str]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            t REAL NOT NULL,
            kind TEXT NOT NULL,
            suggestion_id TEXT,
            session TEXT NOT NULL,
            user TEXT NOT NULL,
            uri TEXT,
            language TEXT,
            data TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX IF NOT EXISTS events_suggestion ON events(suggestion_id)",
        "CREATE INDEX IF NOT EXISTS events_kind_t ON events(kind, t)",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
}


class FeedbackError(Exception):
    """The log cannot be opened, read or written; the message is meant for a person."""


def default_log_path(data_dir: str | None = None) -> Path:
    """``feedback.sqlite3`` in the data directory (setting, ``$TACTFUL_DATA_DIR``, user dir)."""
    from tactful.paths import data_dir as _data_dir

    return _data_dir(data_dir) / LOG_FILENAME


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _private_file(path: Path, create: bool = True) -> None:
    """Create ``path`` (and its folder) readable by the owner only; tighten existing files.

    ``create=False`` once this process has the database open: closing any descriptor of the
    database file drops all of the process's POSIX locks on it (SQLite's locking would break,
    and concurrent writers could overwrite each other's events), so then only chmod is safe.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if create and not path.exists():
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
    for p in (path, Path(str(path) + "-wal"), Path(str(path) + "-shm")):
        with contextlib.suppress(OSError):
            st = p.stat()
            if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
                p.chmod(0o600)


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        if not path.is_file():
            raise FeedbackError(f"no feedback log at {path}")
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0, check_same_thread=False
        )
    else:
        _private_file(path)
        conn = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise FeedbackError(
            f"{path} has log schema {version}, newer than this tactful understands ({SCHEMA_VERSION}); upgrade tactful"
        )
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have won
        for v in range(version + 1, SCHEMA_VERSION + 1):
            for sql in _MIGRATIONS[v]:
                conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {v}")
        conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('created', ?)", (str(time.time()),)
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


#: How long opening a log retries switching it to WAL while another process holds it.
WAL_RETRY_S = 10.0


def _set_wal(conn: sqlite3.Connection) -> str:
    """Switch to WAL mode. Two processes creating one log at the same moment: the switch needs
    a moment of exclusive access and SQLite answers "database is locked" at once (the busy
    timeout does not cover it), so retry for a while."""
    deadline = time.monotonic() + WAL_RETRY_S
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@dataclass
class FeedbackLog:
    """An open feedback log that the server appends events to.

    ``record`` writes one event in its own transaction and returns once SQLite has written it
    to the WAL (``synchronous=NORMAL``: it survives the process being killed; ``durable=True``
    also syncs to the disk for power loss). A write that fails (disk full, a lock held far too
    long) is kept in memory and retried with the next event, and the error is logged.
    """

    path: Path
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    user: str = "local"
    store_text: str = "text"
    durable: bool = False

    def __post_init__(self) -> None:
        self.path = Path(self.path).expanduser()
        self._lock = threading.Lock()
        self._pending: list[tuple[Any, ...]] = []
        try:
            self._conn = _connect(self.path)
            mode = _set_wal(self._conn)
            if str(mode).lower() != "wal":
                log.warning("feedback log %s: journal mode is %s, not WAL", self.path, mode)
            self._conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            _migrate(self._conn, self.path)
        except sqlite3.Error as exc:
            raise FeedbackError(f"cannot open the feedback log {self.path}: {exc}") from exc
        _private_file(self.path, create=False)

    def record(
        self,
        kind: str,
        suggestion_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        *,
        uri: str | None = None,
        language: str | None = None,
        t: float | None = None,
        session: str | None = None,
        user: str | None = None,
    ) -> bool:
        """Append one event; True when it (and any earlier pending one) is written."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        payload = _clean(dict(data or {}))  # NaN/inf -> null: JSON never refuses an event
        if self.store_text == "hash":
            for key in ("text", "prefix", "suffix"):
                if isinstance(payload.get(key), str):
                    payload[f"{key}_sha256"] = text_hash(payload.pop(key))
        row = (
            time.time() if t is None else float(t),
            kind,
            suggestion_id,
            session or self.session,
            user or self.user,
            uri,
            language,
            json.dumps(payload, allow_nan=False, default=_json_default, separators=(",", ":")),
        )
        with self._lock:
            self._pending.append(row)
            return self._flush()

    def _flush(self) -> bool:
        try:
            while self._pending:
                self._conn.execute(
                    "INSERT INTO events(t, kind, suggestion_id, session, user, uri, language, data) VALUES (?,?,?,?,?,?,?,?)",
                    self._pending[0],
                )
                self._pending.pop(0)
            return True
        except sqlite3.Error as exc:
            log.error(
                "feedback log %s: could not write %d event(s), will retry: %s",
                self.path,
                len(self._pending),
                exc,
            )
            return False

    def record_many(
        self, rows: Sequence[tuple[str, str | None, Mapping[str, Any], dict[str, Any]]]
    ) -> None:
        """Append many events in one transaction (used by importers): (kind, id, data, extra)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for kind, sid, data, extra in rows:
                    payload = _clean(dict(data))
                    if (
                        "text" in payload
                        and self.store_text == "hash"
                        and isinstance(payload["text"], str)
                    ):
                        payload["text_sha256"] = text_hash(payload.pop("text"))
                    self._conn.execute(
                        "INSERT INTO events(t, kind, suggestion_id, session, user, uri, language, data) VALUES (?,?,?,?,?,?,?,?)",
                        (
                            float(extra.get("t", time.time())),
                            kind,
                            sid,
                            extra.get("session", self.session),
                            extra.get("user", self.user),
                            extra.get("uri"),
                            extra.get("language"),
                            json.dumps(
                                payload,
                                allow_nan=False,
                                default=_json_default,
                                separators=(",", ":"),
                            ),
                        ),
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            if kind is None:
                return int(self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
            return int(
                self._conn.execute(
                    "SELECT COUNT(*) FROM events WHERE kind = ?", (kind,)
                ).fetchone()[0]
            )

    def decisions_count(self) -> int:
        """Suggestions with an accept or reject outcome."""
        with self._lock:
            return int(
                self._conn.execute(
                    "SELECT COUNT(DISTINCT suggestion_id) FROM events WHERE kind IN ('accepted', 'rejected')"
                ).fetchone()[0]
            )

    def close(self) -> None:
        with self._lock:
            self._flush()
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()


def _json_default(o: Any) -> Any:
    # Anything else a caller put in an event (a Path, a numpy number, ...) is kept as text.
    if hasattr(o, "item") and callable(o.item):
        try:
            return _clean(o.item())
        except Exception:
            pass
    return str(o)


def _clean(obj: Any) -> Any:
    """Replace NaN/inf by None so that json.dumps(allow_nan=False) accepts the value."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


# --- reading -----------------------------------------------------------------------------------


@dataclass
class Event:
    id: int
    t: float
    kind: str
    suggestion_id: str | None
    session: str
    user: str
    uri: str | None
    language: str | None
    data: dict[str, Any]

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
        conn = _connect(p, readonly=True)
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
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                row[5],
                row[6],
                row[7],
                data if isinstance(data, dict) else {"value": data},
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


def load_decisions(path: str | Path, min_visible_s: float = MIN_VISIBLE_S) -> list[DecisionRow]:
    """Shown suggestions that have an outcome, with the features recorded before the outcome
    (``requested`` + ``generated`` events). Any accept wins over an inferred rejection. A
    rejection inferred from typing or moving on within ``min_visible_s`` of the last display is
    not a decision and is left out; explicit, timeout and imported rejections always count."""
    rows: dict[str, DecisionRow] = {}
    feats: dict[str, dict[str, float | None]] = {}
    outcome: dict[str, tuple[bool, float, int | None]] = {}
    shown: dict[str, Event] = {}
    last_display: dict[str, float] = {}
    survival: dict[str, dict[str, float]] = {}
    for ev in read_events(path):
        sid = ev.suggestion_id
        if not sid:
            continue
        if ev.kind in ("requested", "generated"):
            f = ev.data.get("features")
            if isinstance(f, dict):
                feats.setdefault(sid, {}).update(f)
        elif ev.kind == "shown":
            shown.setdefault(sid, ev)
            last_display[sid] = ev.t
        elif ev.kind == "accepted":
            prev = outcome.get(sid)
            length = ev.data.get("accepted_length")
            if prev is None or not prev[0]:
                outcome[sid] = (True, ev.t, length if isinstance(length, int) else None)
        elif ev.kind == "rejected":
            if ev.data.get("imported_label") is False:
                continue  # no user decision behind it (see import_cups)
            seen_for = ev.t - last_display.get(sid, ev.t - 1e9)
            if ev.data.get("reason") in _GLANCE_REASONS and seen_for < min_visible_s:
                continue
            if sid not in outcome:
                outcome[sid] = (False, ev.t, None)
        elif ev.kind == "survival":
            after = ev.data.get("after_s")
            key = str(after if after is not None else ev.data.get("checkpoint"))
            val = ev.data.get("survived")
            if isinstance(val, int | float):
                survival.setdefault(sid, {})[key] = float(val)
    for sid, ev in shown.items():
        if sid not in outcome:
            continue
        acc, _t, length = outcome[sid]
        rows[sid] = DecisionRow(
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
    return sorted(rows.values(), key=lambda r: r.t)


def export_jsonl(path: str | Path, out: Any) -> int:
    """Write every event as one JSON object per line to the text stream ``out``."""
    n = 0
    for ev in read_events(path):
        out.write(json.dumps(_clean(ev.to_json()), ensure_ascii=False) + "\n")
        n += 1
    return n


def stats(path: str | Path) -> dict[str, Any]:
    """Counts by event kind, decisions, acceptance rate, rejection reasons, sessions."""
    kinds: dict[str, int] = {}
    reasons: dict[str, int] = {}
    sessions: set[str] = set()
    users: set[str] = set()
    for ev in read_events(path):
        kinds[ev.kind] = kinds.get(ev.kind, 0) + 1
        sessions.add(ev.session)
        users.add(ev.user)
        if ev.kind == "rejected":
            r = str(ev.data.get("reason"))
            reasons[r] = reasons.get(r, 0) + 1
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
    }


# --- CUPS importer -----------------------------------------------------------------------------


def _parse_time(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _cups_prefix(prompt: str | None) -> tuple[str | None, str]:
    """The document prefix inside a Copilot prompt (the ``# Path:`` header removed) and the path."""
    if prompt is None:
        return None, "file.py"
    lines = prompt.split("\n")
    for i, line in enumerate(lines[:3]):
        if line.startswith("# Path: "):
            return "\n".join(lines[i + 1 :]), line[len("# Path: ") :].strip() or "file.py"
    return prompt, "file.py"


def _num(m: Mapping[str, Any], key: str) -> float | None:
    v = m.get(key)
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v)):
        return float(v)
    return None


def import_cups(src: str | Path, out: str | Path, store_text: str = "text") -> dict[str, int]:
    """Convert CUPS study events (``cups_events.jsonl[.gz]``) into a feedback log at ``out``.

    Each Shown event becomes requested/generated/shown events whose features are computed from
    that Shown row only (prompt prefix and its measurements); the following Accepted/Rejected
    row only adds the outcome and its time. Replay rows (the same suggestion re-shown) and
    Browsing rows are skipped; a Shown suggestion replaced by another Shown one before any
    decision is logged as rejected with reason ``superseded`` and is not a training decision
    (``load_decisions`` keeps it, so the importer marks it ``imported_label: false``).
    """
    src = Path(src)
    opener = gzip.open if src.suffix == ".gz" else open
    events: list[dict[str, Any]] = []
    try:
        with opener(src, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    e = json.loads(line)
                except ValueError as exc:
                    raise FeedbackError(f"{src}:{n}: not JSON: {exc}") from exc
                if not isinstance(e, dict) or "state_name" not in e or "session_index" not in e:
                    raise FeedbackError(
                        f"{src}:{n}: not a CUPS event (needs state_name, session_index)"
                    )
                events.append(e)
    except OSError as exc:
        raise FeedbackError(f"cannot read {src}: {exc}") from exc
    out = Path(out)
    if out.exists():
        raise FeedbackError(
            f"{out} exists; importing appends to no existing log, choose a new path"
        )
    store = FeedbackLog(out, session="cups", user="cups", store_text=store_text)
    counts = {"shown": 0, "accepted": 0, "rejected": 0, "unmatched_decisions": 0, "superseded": 0}
    by_session: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        by_session.setdefault(int(e["session_index"]), []).append(e)
    rows: list[tuple[str, str | None, Mapping[str, Any], dict[str, Any]]] = []
    for sess, evs in sorted(by_session.items()):
        evs.sort(key=lambda e: int(e.get("event_index", 0)))
        tel = F.Telemetry()
        pending: tuple[str, float, str, str] | None = None  # (suggestion id, shown time, uri, text)
        user = f"cups-{evs[0].get('user_id', sess)}"
        session = f"cups-{sess}"
        for e in evs:
            state = e["state_name"]
            t = _parse_time(e["time_generated"])
            m = e.get("measurements") or {}
            if state == "Shown":
                prefix, fname = _cups_prefix(e.get("prompt"))
                uri = f"cups://session-{sess}/{fname}"
                extra = {"t": t, "session": session, "user": user, "uri": uri, "language": "python"}
                if pending is not None:
                    rows.append(
                        (
                            "rejected",
                            pending[0],
                            {"reason": "superseded", "imported_label": False},
                            {**extra, "uri": pending[2]},
                        )
                    )
                    counts["superseded"] += 1
                sid = f"cups-{sess}-{e.get('event_index')}"
                doc_len = _num(m, "documentLength")
                offset = _num(m, "promptEndPos")
                issued = _num(m, "timeSinceIssuedMs")
                t_req = t - (issued / 1000.0 if issued is not None and issued < 60000 else 0.0)
                ctx: dict[str, float | None]
                if prefix is not None:
                    ctx = F.context_features(
                        prefix,
                        None,
                        "python",
                        doc_len=int(doc_len) if doc_len is not None else None,
                    )
                else:
                    ctx = dict.fromkeys(F.CONTEXT_FEATURES)
                    ctx["language"] = float(F.language_code("python"))
                if doc_len is not None and offset is not None:
                    ctx["doc_len"], ctx["offset"] = doc_len, offset
                    ctx["offset_frac"] = offset / doc_len if doc_len > 0 else 1.0
                    ctx["ws_after_cursor"] = 1.0 if offset >= doc_len else None
                tele = tel.on_request(t_req, uri, int(doc_len) if doc_len is not None else 0)
                sugg = str(e.get("suggestion") or "")
                sf = F.suggestion_features(
                    sugg,
                    prefix or "",
                    None,
                    "python" if prefix is not None else "none",
                    n_tokens=int(_num(m, "numTokens") or 0) or None,
                    mean_logprob=_num(m, "meanLogProb"),
                    history=tel.history(sugg),
                )
                rows.append(
                    (
                        "requested",
                        sid,
                        {
                            "features": _clean({**ctx, **tele}),
                            "trigger": "automatic",
                            "source": "cups",
                        },
                        {**extra, "t": t_req},
                    )
                )
                rows.append(
                    (
                        "generated",
                        sid,
                        {"features": _clean(sf), "source": "model", "model": "copilot-codex"},
                        extra,
                    )
                )
                rows.append(
                    (
                        "shown",
                        sid,
                        {
                            "text": sugg,
                            "cups": {
                                "labeled_state": e.get("labeled_state"),
                                "task": e.get("task"),
                                "hidden_state": e.get("hidden_state"),
                            },
                        },
                        extra,
                    )
                )
                tel.on_shown(t, uri)
                pending = (sid, t, uri, sugg)
                counts["shown"] += 1
            elif state in ("Accepted", "Rejected"):
                if pending is None:
                    counts["unmatched_decisions"] += 1
                    continue
                sid, _ts, uri, shown_text = pending
                extra = {"t": t, "session": session, "user": user, "uri": uri, "language": "python"}
                if state == "Accepted":
                    sugg = str(e.get("suggestion") or "")
                    rows.append(
                        (
                            "accepted",
                            sid,
                            {"accepted_length": len(sugg), "full": True, "via": "cups"},
                            extra,
                        )
                    )
                    for i, ep in enumerate(e.get("edit_percentage") or []):
                        if isinstance(ep, int | float) and math.isfinite(float(ep)):
                            rows.append(
                                (
                                    "survival",
                                    sid,
                                    {
                                        "checkpoint": i,
                                        "after_s": None,
                                        "survived": max(0.0, 1.0 - float(ep)),
                                    },
                                    extra,
                                )
                            )
                    counts["accepted"] += 1
                else:
                    rows.append(("rejected", sid, {"reason": "explicit"}, extra))
                    counts["rejected"] += 1
                tel.on_outcome(t, uri, state == "Accepted", shown_text)
                pending = None
    store.record_many(rows)
    store.close()
    return counts


# --- CLI ---------------------------------------------------------------------------------------


def _log_path(arg: str | None) -> Path:
    return Path(arg).expanduser() if arg else default_log_path()


def main(argv: Sequence[str] | None = None) -> int:
    """``tactful log stats|export|import-cups|path``."""
    ap = argparse.ArgumentParser(
        prog="tactful log",
        description="The local feedback log of shown, accepted and rejected suggestions.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("stats", help="counts of events, decisions and the acceptance rate")
    p.add_argument("--log", help="log file (default: feedback.sqlite3 in the data directory)")
    p = sub.add_parser("export", help="write the log as JSON Lines")
    p.add_argument("--log", help="log file (default: feedback.sqlite3 in the data directory)")
    p.add_argument("--out", default="-", help="output file (default: stdout)")
    p = sub.add_parser(
        "import-cups", help="convert CUPS study events (cups_events.jsonl.gz) into a log"
    )
    p.add_argument("file")
    p.add_argument("--out", required=True, help="the new log file to write")
    p.add_argument(
        "--hash-text", action="store_true", help="store SHA-256 hashes instead of suggestion text"
    )
    sub.add_parser("path", help="print where the log is")
    args = ap.parse_args(list(argv) if argv is not None else None)
    try:
        if args.cmd == "path":
            print(default_log_path())
        elif args.cmd == "stats":
            print(json.dumps(stats(_log_path(args.log)), indent=2))
        elif args.cmd == "export":
            if args.out == "-":
                n = export_jsonl(_log_path(args.log), sys.stdout)
            else:
                with open(args.out, "w", encoding="utf-8") as fh:
                    n = export_jsonl(_log_path(args.log), fh)
            print(f"exported {n} events", file=sys.stderr)
        elif args.cmd == "import-cups":
            counts = import_cups(
                args.file, args.out, store_text="hash" if args.hash_text else "text"
            )
            print(json.dumps({"out": args.out, **counts}))
    except FeedbackError as exc:
        print(f"tactful log: {exc}", file=sys.stderr)
        return 1
    return 0
