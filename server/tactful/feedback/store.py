"""The local feedback log: every suggestion's life, from request to code survival.

This module owns

* the SQLite store (:class:`FeedbackLog`): WAL mode, a versioned schema with migrations
  (``SCHEMA_VERSION``; ``PRAGMA user_version``), one autocommitted transaction per event so that
  an event is on disk once :meth:`FeedbackLog.record` returns (it survives SIGKILL of the
  server), safe with several server processes writing one file (SQLite's file locking plus a
  busy timeout), files readable by their owner only, and optional hashing of code text;
* reading a log back (:func:`read_events`, :func:`load_decisions` - the labelled show-time
  features the cascade trains on) and exporting it to JSON Lines;
* counting a log (:func:`stats`).

The CUPS importer is :mod:`tactful.feedback.importers`; ``tactful log`` is
:mod:`tactful.feedback.cli`.

The schema is documented in ``docs/feedback-log.md``. No torch, no pygls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    "guard",  # the cascade guard's evidence and state after it (tactful.cascade.guard)
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


#: Tables a tactful log may hold (``sqlite_*`` are SQLite's own).
OWN_TABLES = frozenset({"events", "meta"})
#: Events kept in memory while the log cannot be written (disk full); older ones beyond are lost
#: and counted.
MAX_PENDING = 10_000
_CORRUPT = ("malformed", "not a database", "file is encrypted")


def _foreign_tables(path: Path) -> list[str]:
    """Tables of an existing SQLite file at ``path`` that are not tactful's (read-only look; a
    file that is not SQLite raises sqlite3.DatabaseError)."""
    if not path.is_file() or path.stat().st_size == 0:
        return []
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    try:
        names = [
            str(r[0])
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
        ]
    finally:
        conn.close()
    return sorted(n for n in names if n not in OWN_TABLES and not n.startswith("sqlite_"))


def _clean_text(value: Any) -> Any:
    """A string SQLite can store (lone surrogates replaced); other values as they are."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        if not path.is_file():
            raise FeedbackError(f"no feedback log at {path}")
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0, check_same_thread=False
        )
    else:
        try:
            foreign = _foreign_tables(path)
        except sqlite3.DatabaseError as exc:
            raise FeedbackError(
                f"{path} is not a tactful feedback log ({exc}); tactful leaves it alone: set "
                "feedback.logPath to a new file, or move this one away"
            ) from exc
        if foreign:
            raise FeedbackError(
                f"{path} is another application's SQLite database (tables: "
                f"{', '.join(foreign[:5])}); tactful will not write to it: set feedback.logPath "
                "to a new file"
            )
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
    #: Called with (kind, message for a person) when writing fails ("full", "corrupt",
    #: "error") and with (kind, "") once it works again; kinds are reported once per problem.
    on_fault: Any = None

    def __post_init__(self) -> None:
        self.path = Path(self.path).expanduser()
        self._lock = threading.Lock()
        self._pending: list[tuple[Any, ...]] = []
        #: The current write problem (kind, message), None when the log is healthy.
        self.fault: tuple[str, str] | None = None
        #: Events dropped: unwritable rows, or the oldest beyond MAX_PENDING while the disk is full.
        self.lost = 0
        #: Corrupt logs moved aside this session.
        self.moved_aside: list[Path] = []
        self._open()

    def _open(self) -> None:
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
        row = tuple(
            _clean_text(v)
            for v in (
                time.time() if t is None else float(t),
                kind,
                suggestion_id,
                session or self.session,
                user or self.user,
                uri,
                language,
                json.dumps(payload, allow_nan=False, default=_json_default, separators=(",", ":")),
            )
        )
        with self._lock:
            self._pending.append(row)
            if len(self._pending) > MAX_PENDING:
                del self._pending[0]
                self.lost += 1
            return self._flush()

    def _flush(self) -> bool:
        while self._pending:
            try:
                self._conn.execute(
                    "INSERT INTO events(t, kind, suggestion_id, session, user, uri, language, data) VALUES (?,?,?,?,?,?,?,?)",
                    self._pending[0],
                )
            except sqlite3.Error as exc:
                return self._write_failed(exc)
            except Exception as exc:  # a row SQLite can never take: drop it, keep the others
                log.error("feedback log %s: dropped an event it cannot store: %s", self.path, exc)
                self.lost += 1
            self._pending.pop(0)
        if self.fault is not None:
            kind = self.fault[0]
            self.fault = None
            log.warning("feedback log %s: writing again", self.path)
            self._report(kind, "")
        return True

    def _write_failed(self, exc: sqlite3.Error) -> bool:
        text = str(exc).lower()
        if isinstance(exc, sqlite3.DatabaseError) and any(c in text for c in _CORRUPT):
            return self._recover_corrupt(exc)
        full = "full" in text or "no space" in text
        kind = "full" if full else "error"
        msg = (
            f"the disk holding the feedback log ({self.path}) is full: {len(self._pending)} "
            "event(s) wait in memory and are written once there is space. Free some disk space."
            if full
            else f"the feedback log ({self.path}) cannot be written ({exc}); {len(self._pending)} "
            "event(s) wait in memory and are retried with the next one."
        )
        log.error(
            "feedback log %s: could not write %d event(s), will retry: %s",
            self.path,
            len(self._pending),
            exc,
        )
        if self.fault is None or self.fault[0] != kind:
            self.fault = (kind, msg)
            self._report(kind, msg)
        return False

    def _recover_corrupt(self, exc: sqlite3.Error) -> bool:
        """The file is damaged: move it aside (kept for the user) and go on in a new log."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    src.rename(Path(str(aside) + suffix))
            self.moved_aside.append(aside)
            self._open()
        except (OSError, FeedbackError) as err:
            msg = (
                f"the feedback log ({self.path}) is damaged ({exc}) and could not be replaced "
                f"({err}); events wait in memory. Move the file away and restart."
            )
            log.error("feedback log %s: %s", self.path, msg)
            if self.fault is None or self.fault[0] != "corrupt":
                self.fault = ("corrupt", msg)
                self._report("corrupt", msg)
            return False
        msg = (
            f"the feedback log was damaged ({exc}); it was moved to {aside} and a new log was "
            f"started at {self.path}, with the events of this session. `sqlite3 {aside} .recover` "
            "may get the older events back."
        )
        log.error("feedback log: %s", msg)
        self._report("corrupt", msg)
        return self._flush()

    def _report(self, kind: str, message: str) -> None:
        if self.on_fault is not None:
            try:
                self.on_fault(kind, message)
            except Exception:
                log.exception("feedback log: reporting a fault failed")

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
        out.write(json.dumps(_clean(ev.to_json()), ensure_ascii=False) + "\n")
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


# --- CUPS importer -----------------------------------------------------------------------------
