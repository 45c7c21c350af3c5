"""The index's storage: ``IndexStore`` persists file entries in SQLite (one owner-only file per
set of workspace folders, plain JSON rows, never pickles); ``WorkspaceIndex`` is the in-memory
map the selection reads (entries are replaced whole, so a reader on another thread sees either
the old or the new entry of a file)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tactful.workspace.index import FORMAT, FileEntry


class IndexStore:
    """One SQLite file per set of workspace folders, owner-only, JSON rows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        old = os.umask(0o077)
        try:
            self.db = sqlite3.connect(str(path), check_same_thread=False)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, root TEXT, "
            "mtime_ns INTEGER, size INTEGER, data TEXT)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = self.db.execute("SELECT value FROM meta WHERE key='format'").fetchone()
        if row is None or row[0] != str(FORMAT):
            self.db.execute("DELETE FROM files")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (str(FORMAT),))
        self.db.commit()

    def load(self) -> dict[str, tuple[str, int, int, str]]:
        """path -> (root, mtime_ns, size, data)."""
        return {
            p: (r, m, s, d)
            for p, r, m, s, d in self.db.execute(
                "SELECT path, root, mtime_ns, size, data FROM files"
            )
        }

    def put_many(self, entries: Iterable[FileEntry]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
            [(e.path, e.root, e.mtime_ns, e.size, e.data_json()) for e in entries],
        )
        self.db.commit()

    def delete_many(self, paths: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])
        self.db.commit()

    def close(self) -> None:
        self.db.close()


class WorkspaceIndex:
    """path -> FileEntry, with the module map for import resolution (see ``imports``)."""

    def __init__(self) -> None:
        self.files: dict[str, FileEntry] = {}
        self.lock = threading.Lock()
        #: Bumped on every change: selections cached against an older version are recomputed.
        self.version = 0
        self._modules: Any = None
        #: Files were added or removed since the module map was built.
        self.modules_stale = True

    def put(self, entry: FileEntry) -> None:
        with self.lock:
            old = self.files.get(entry.path)
            self.files[entry.path] = entry
            if old is None:
                self.modules_stale = True
            self.version += 1

    def remove(self, path: str) -> bool:
        with self.lock:
            gone = self.files.pop(path, None) is not None
            if gone:
                self.modules_stale = True
                self.version += 1
            return gone

    def modules(self) -> Any:
        """The module map as last built. The background thread rebuilds it after files were
        added or removed (``refresh_modules``), so a query never pays for it; only the first
        query, before any build, builds it here."""
        m = self._modules
        if m is None:
            m = self.refresh_modules()
        return m

    def refresh_modules(self) -> Any:
        from tactful.workspace.imports import ModuleMap

        with self.lock:
            entries = list(self.files.values())
            self.modules_stale = False
        m = self._modules = ModuleMap(entries, self.files)
        return m
