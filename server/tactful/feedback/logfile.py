"""The feedback log's file: what a tactful log is, opening it, and moving a damaged one aside.

This module owns the SQLite schema (``SCHEMA_VERSION`` in ``PRAGMA user_version``, with
migrations), the checks made before tactful writes to a file (never another application's
database, never a file that is not SQLite), opening a log in WAL mode readable by its owner
only, telling a damaged log from a file that is not a log, and moving a damaged log aside (kept,
never deleted). It also turns event data into the JSON a row stores (:func:`encode_data`).

Writing events is :mod:`tactful.feedback.store`; reading them back is
:mod:`tactful.feedback.queries`. The schema is documented in ``docs/feedback-log.md``.
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
import time
from collections.abc import Mapping, Sequence
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

#: Tables a tactful log may hold (``sqlite_*`` are SQLite's own).
OWN_TABLES = frozenset({"events", "meta"})
#: What SQLite says about a damaged file.
_CORRUPT = ("malformed", "not a database", "file is encrypted")
#: Text of tactful's schema that SQLite keeps in the file's first page (``sqlite_master``): a
#: damaged file that still holds it is a tactful log, whatever else is broken.
_SIGNATURE = (b"CREATE TABLE events (", b"suggestion_id TEXT,", b"CREATE TABLE meta (key TEXT")
#: How far into a damaged file the signature is looked for (the largest SQLite page).
_SIGNATURE_BYTES = 65536
#: How long opening a log retries switching it to WAL while another process holds it.
WAL_RETRY_S = 10.0


class FeedbackError(Exception):
    """The log cannot be opened, read or written; the message is meant for a person."""


class DamagedLog(FeedbackError):
    """The file is a tactful log that SQLite reports damaged (it can be moved aside)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"the feedback log {path} is damaged ({reason})")
        #: What SQLite said.
        self.reason = reason


def default_log_path(data_dir: str | None = None) -> Path:
    """``feedback.sqlite3`` in the data directory (setting, ``$TACTFUL_DATA_DIR``, user dir)."""
    from tactful.paths import data_dir as _data_dir

    return _data_dir(data_dir) / LOG_FILENAME


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# --- event data as a row stores it -------------------------------------------------------------


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf by None so that json.dumps(allow_nan=False) accepts the value."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def _json_default(o: Any) -> Any:
    # Anything else a caller put in an event (a Path, a numpy number, ...) is kept as text.
    if hasattr(o, "item") and callable(o.item):
        with contextlib.suppress(Exception):
            return json_safe(o.item())
    return str(o)


def clean_text(value: Any) -> Any:
    """A string SQLite can store (lone surrogates replaced); other values as they are."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value


def encode_data(data: Mapping[str, Any] | None, store_text: str) -> str:
    """The ``data`` column of an event: JSON that never refuses a value (NaN/inf become null,
    odd objects text), with the code text (``text``, ``prefix``, ``suffix``) replaced by its
    SHA-256 when ``store_text`` is ``"hash"``."""
    payload = json_safe(dict(data or {}))
    if store_text == "hash":
        for key in ("text", "prefix", "suffix"):
            if isinstance(payload.get(key), str):
                payload[f"{key}_sha256"] = text_hash(payload.pop(key))
    return str(
        clean_text(
            json.dumps(payload, allow_nan=False, default=_json_default, separators=(",", ":"))
        )
    )


# --- opening -----------------------------------------------------------------------------------


def private_file(path: Path, create: bool = True) -> None:
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


def is_damage(exc: BaseException) -> bool:
    """Whether an SQLite error says the file is damaged (not busy, not full)."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and any(c in text for c in _CORRUPT)


def holds_tactful_schema(path: Path) -> bool:
    """Whether the start of the file still holds tactful's schema text (see ``_SIGNATURE``)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SIGNATURE_BYTES)
    except OSError:
        return False
    return all(s in head for s in _SIGNATURE)


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


def _refuse_unless_own(path: Path) -> None:
    """Raise unless ``path`` is missing, empty or a tactful log (read-only checks)."""
    try:
        foreign = _foreign_tables(path)
    except sqlite3.DatabaseError as exc:
        if is_damage(exc) and holds_tactful_schema(path):
            raise DamagedLog(path, str(exc)) from exc
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


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the log at ``path``: read-only, or for writing after the checks of
    :func:`_refuse_unless_own` (the file is created owner-only)."""
    if readonly:
        if not path.is_file():
            raise FeedbackError(f"no feedback log at {path}")
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0, check_same_thread=False
        )
    else:
        _refuse_unless_own(path)
        private_file(path)
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


def open_for_writing(path: Path, durable: bool) -> sqlite3.Connection:
    """Open (creating or migrating) the log at ``path`` for appending events.

    Raises :class:`DamagedLog` when SQLite finds the file damaged and it is a tactful log,
    :class:`FeedbackError` for anything else that stops it (another application's file, a newer
    schema, no permission)."""
    conn: sqlite3.Connection | None = None
    try:
        conn = connect(path)
        mode = _set_wal(conn)
        if mode.lower() != "wal":
            log.warning("feedback log %s: journal mode is %s, not WAL", path, mode)
        conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        _migrate(conn, path)
        # The newest row: reads the events table's root and right edge, so that a log damaged
        # there is found now rather than at the first write.
        conn.execute("SELECT max(id) FROM events").fetchone()
    except sqlite3.Error as exc:
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        if is_damage(exc) and holds_tactful_schema(path):
            raise DamagedLog(path, str(exc)) from exc
        raise FeedbackError(f"cannot open the feedback log {path}: {exc}") from exc
    except FeedbackError:
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        raise
    private_file(path, create=False)
    return conn


# --- a damaged log -----------------------------------------------------------------------------


def file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``; None when there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def move_aside(path: Path, found: tuple[int, int] | None) -> Path | None:
    """Move a damaged log (and its ``-wal``/``-shm`` files) to ``<name>.corrupt-<time>`` next
    to it, owner-only, never overwriting an earlier one; returns the new path of the log.

    ``found`` is the :func:`file_id` of the file found damaged: when ``path`` is another file
    by now (a second server process moved the damaged one and started a new log), nothing is
    moved and None is returned (the moved file keeps its inode, so the new one has another).
    Raises OSError when the file cannot be moved."""
    if found is None or file_id(path) != found:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while any(Path(str(aside) + s).exists() for s in ("", "-wal", "-shm")):
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            dst = Path(str(aside) + suffix)
            src.rename(dst)
            with contextlib.suppress(OSError):
                dst.chmod(0o600)
    return aside


def moved_aside_message(reason: str, aside: Path, path: Path) -> str:
    """What the user is told once a damaged log was moved aside (``reason``: SQLite's words)."""
    return (
        f"the feedback log was damaged ({reason}); it was moved to {aside} and a new log was "
        f"started at {path}, with the events of this session. `sqlite3 {aside} .recover` "
        "may get the older events back."
    )
