"""The local feedback log: every suggestion's life, from request to code survival.

This module owns writing the log (:class:`FeedbackLog`): one autocommitted transaction per
event, so that an event is on disk once :meth:`FeedbackLog.record` returns (it survives SIGKILL
of the server), safe with several server processes writing one file (SQLite's file locking plus
a busy timeout), and the faults of writing: a full disk (events wait in memory), a damaged file
(found at open or at a write: moved aside, a new log started, the user told once).

The file itself (schema, migrations, the checks before writing, moving a damaged log aside) is
:mod:`tactful.feedback.logfile`; reading a log back (events, decisions, stats, export) is
:mod:`tactful.feedback.queries`. Both are re-exported here, the log's one import path. The CUPS
importer is :mod:`tactful.feedback.importers`; ``tactful log`` is :mod:`tactful.feedback.cli`.

The schema is documented in ``docs/feedback-log.md``. No torch, no pygls.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tactful.feedback.logfile import (
    KINDS,
    LOG_FILENAME,
    OWN_TABLES,
    REJECT_REASONS,
    SCHEMA_VERSION,
    DamagedLog,
    FeedbackError,
    clean_text,
    default_log_path,
    encode_data,
    file_id,
    is_damage,
    json_safe,
    move_aside,
    moved_aside_message,
    open_for_writing,
    text_hash,
)
from tactful.feedback.queries import (
    MIN_VISIBLE_S,
    DecisionRow,
    DecisionTally,
    Event,
    export_jsonl,
    load_decisions,
    read_events,
    stats,
)

__all__ = [
    "KINDS",
    "LOG_FILENAME",
    "MAX_PENDING",
    "MIN_VISIBLE_S",
    "OWN_TABLES",
    "REJECT_REASONS",
    "SCHEMA_VERSION",
    "DamagedLog",
    "DecisionRow",
    "DecisionTally",
    "Event",
    "FeedbackError",
    "FeedbackLog",
    "default_log_path",
    "export_jsonl",
    "load_decisions",
    "read_events",
    "stats",
    "text_hash",
]

log = logging.getLogger(__name__)

#: The name :func:`tactful.feedback.logfile.json_safe` had here (``tactful.replay.cli`` uses it).
_clean = json_safe

#: Events kept in memory while the log cannot be written (disk full); older ones beyond are lost
#: and counted.
MAX_PENDING = 10_000

_INSERT = (
    "INSERT INTO events(t, kind, suggestion_id, session, user, uri, language, data) "
    "VALUES (?,?,?,?,?,?,?,?)"
)


@dataclass
class FeedbackLog:
    """An open feedback log that the server appends events to.

    ``record`` writes one event in its own transaction and returns once SQLite has written it
    to the WAL (``synchronous=NORMAL``: it survives the process being killed; ``durable=True``
    also syncs to the disk for power loss). A write that fails (disk full, a lock held far too
    long) is kept in memory and retried with the next event, and the error is logged. A log
    that SQLite finds damaged, at open or at a write, is moved aside and a new one started.
    """

    path: Path
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    user: str = "local"
    store_text: str = "text"
    durable: bool = False
    #: Called with (kind, message for a person) when writing fails ("full", "corrupt",
    #: "error") and with (kind, "") once it works again; kinds are reported once per problem.
    #: Set it with :meth:`watch` after construction, so that what happened at open is told.
    on_fault: Callable[[str, str], None] | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path).expanduser()
        self._lock = threading.Lock()
        self._pending: list[tuple[Any, ...]] = []
        #: The current write problem (kind, message), None when the log is healthy.
        self.fault: tuple[str, str] | None = None
        #: Events dropped: unwritable rows, or the oldest beyond MAX_PENDING while the disk is full.
        self.lost = 0
        #: Damaged logs moved aside this session (where they are now).
        self.moved_aside: list[Path] = []
        #: Reports made before anyone watched (the log moved aside at open).
        self._untold: list[tuple[str, str]] = []
        self._open_replacing_damaged()

    # --- opening -------------------------------------------------------------------------------
    def _open(self) -> None:
        self._conn = open_for_writing(self.path, self.durable)
        self._file = file_id(self.path)

    def _open_replacing_damaged(self) -> None:
        """Open the log; one found damaged is moved aside and a new one started (the user is
        told once, through :attr:`on_fault`). Raises FeedbackError when that is not possible."""
        found = file_id(self.path)
        try:
            self._open()
            return
        except DamagedLog as exc:
            damage = exc
        try:
            aside = move_aside(self.path, found)
            self._open()
        except (OSError, FeedbackError) as err:
            raise FeedbackError(
                f"{damage}; it could not be moved aside ({err}): move it away and restart"
            ) from err
        self._told_moved(damage.reason, aside)

    def _told_moved(self, reason: str, aside: Path | None) -> None:
        """Tell the user (once) where the damaged log went; None: another process moved it."""
        if aside is None:
            log.warning("feedback log %s: replaced by another process after damage", self.path)
            return
        self.moved_aside.append(aside)
        msg = moved_aside_message(reason, aside, self.path)
        log.error("feedback log: %s", msg)
        self._report("corrupt", msg)

    def watch(self, on_fault: Callable[[str, str], None] | None) -> None:
        """Report faults to ``on_fault`` from now on, starting with any found at open."""
        with self._lock:
            self.on_fault = on_fault
            untold, self._untold = self._untold, []
        for kind, message in untold:
            self._report(kind, message)

    # --- writing -------------------------------------------------------------------------------
    def _row(
        self,
        kind: str,
        suggestion_id: str | None,
        data: Mapping[str, Any] | None,
        extra: Mapping[str, Any],
    ) -> tuple[Any, ...]:
        """The ``events`` row of one event; ``extra`` may give t, session, user, uri, language."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        t = extra.get("t")
        return tuple(
            clean_text(v)
            for v in (
                time.time() if t is None else float(t),
                kind,
                suggestion_id,
                extra.get("session") or self.session,
                extra.get("user") or self.user,
                extra.get("uri"),
                extra.get("language"),
                encode_data(data, self.store_text),
            )
        )

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
        extra = {"uri": uri, "language": language, "t": t, "session": session, "user": user}
        row = self._row(kind, suggestion_id, data, extra)
        with self._lock:
            self._pending.append(row)
            if len(self._pending) > MAX_PENDING:
                del self._pending[0]
                self.lost += 1
            return self._flush()

    def record_many(
        self, rows: Sequence[tuple[str, str | None, Mapping[str, Any], dict[str, Any]]]
    ) -> None:
        """Append many events in one transaction (used by importers): (kind, id, data, extra)."""
        encoded = [self._row(kind, sid, data, extra) for kind, sid, data, extra in rows]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(_INSERT, encoded)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _flush(self) -> bool:
        while self._pending:
            try:
                self._conn.execute(_INSERT, self._pending[0])
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

    # --- faults --------------------------------------------------------------------------------
    def _write_failed(self, exc: sqlite3.Error) -> bool:
        if is_damage(exc):
            return self._recover_corrupt(exc)
        text = str(exc).lower()
        kind = "full" if "full" in text or "no space" in text else "error"
        msg = (
            f"the disk holding the feedback log ({self.path}) is full: {len(self._pending)} "
            "event(s) wait in memory and are written once there is space. Free some disk space."
            if kind == "full"
            else f"the feedback log ({self.path}) cannot be written ({exc}); {len(self._pending)} "
            "event(s) wait in memory and are retried with the next one."
        )
        log.error(
            "feedback log %s: could not write %d event(s), will retry: %s",
            self.path,
            len(self._pending),
            exc,
        )
        self._fault(kind, msg)
        return False

    def _fault(self, kind: str, msg: str) -> None:
        """A write problem that lasts: reported once per kind until writing works again."""
        if self.fault is None or self.fault[0] != kind:
            self.fault = (kind, msg)
            self._report(kind, msg)

    def _recover_corrupt(self, exc: sqlite3.Error) -> bool:
        """The file is damaged: move it aside (kept for the user) and go on in a new log."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        try:
            aside = move_aside(self.path, self._file)
            self._open()
        except (OSError, FeedbackError) as err:
            msg = (
                f"the feedback log ({self.path}) is damaged ({exc}) and could not be replaced "
                f"({err}); events wait in memory. Move the file away and restart."
            )
            log.error("feedback log %s: %s", self.path, msg)
            self._fault("corrupt", msg)
            return False
        self._told_moved(str(exc), aside)
        return self._flush()

    def _report(self, kind: str, message: str) -> None:
        if self.on_fault is None:
            if message:
                self._untold.append((kind, message))
            return
        try:
            self.on_fault(kind, message)
        except Exception:
            log.exception("feedback log: reporting a fault failed")

    # --- counts and closing --------------------------------------------------------------------
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


def open_configured(settings: Any) -> FeedbackLog | None:
    """The feedback log the settings ask for (``feedback.*``, ``dataDir``), or None: logging is
    off, or the log cannot be opened (logged; the hub tells the user)."""
    if not settings.feedback.enable:
        return None
    path = (
        Path(settings.feedback.log_path).expanduser()
        if settings.feedback.log_path
        else default_log_path(settings.data_dir)
    )
    try:
        return FeedbackLog(path, store_text=settings.feedback.store_text)
    except (FeedbackError, OSError) as exc:
        log.error("feedback log off: %s", exc)
        return None
