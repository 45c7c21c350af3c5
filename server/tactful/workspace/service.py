"""The workspace index as a service: one background thread builds it (from the persisted rows
where the files did not change), keeps it current from open documents and file events, and the
event loop asks ``context`` for the preamble of each completion prompt (cheap: no file access).

Plain Python, no pygls: ``tactful.lsp.workspace`` wires it to the server.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tactful.workspace import files as wf
from tactful.workspace.index import LONG_LINE_CHARS, FileEntry, cut_long_lines, extract
from tactful.workspace.select import (
    COMMENTS,
    Part,
    RepoFormat,
    SnippetWindows,
    detect_format,
    render,
    repo_name,
    select,
)
from tactful.workspace.store import IndexStore, WorkspaceIndex

log = logging.getLogger(__name__)

#: An edited document is re-parsed for the index after this long without edits.
LIVE_REPARSE_S = 0.75
#: Recently edited (closed) documents kept for similar snippets.
RECENT_DOCS = 8
#: Pause after each file parsed by the background build (leaves the CPU to the model).
BUILD_PAUSE_S = 0.002
#: A document the index does not hold yet is parsed at its first request (on the event loop) up
#: to this size (about 25 ms of ordinary code on an idle core); a bigger one is left to the index's thread, and
#: that request has no repository context.
LIVE_PARSE_CHARS = 64 * 1024


_NOTABLE = (
    "unreadable files",
    "unreadable folders",
    "binary files",
    "files deleted while indexed",
    "unparsable files",
    "files over the size cap",
    "folders seen twice (links)",
    "links out of the workspace",
    "broken links",
)


@dataclass(frozen=True)
class Options:
    """What the service needs from the settings (``context`` section)."""

    enable: bool = True
    tokens: int = 512
    max_files: int = 5000
    max_file_kb: int = 512
    exclude: tuple[str, ...] = ()
    format: str = "auto"


class WorkspaceService:
    def __init__(
        self,
        cache_dir: Path | None,
        options: Callable[[], Options],
        live_text: Callable[[str], tuple[str, str] | None] = lambda uri: None,
    ) -> None:
        self.cache_dir = cache_dir
        self._options = options
        self._live_text = live_text
        self.index = WorkspaceIndex()
        self.roots: list[str] = []
        self.state = "idle"
        self.last_report = ""
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._generation = 0
        self._dirty: dict[str, float] = {}
        self._open: dict[str, str] = {}  # uri -> real path (or a pseudo path)
        self._recent: OrderedDict[str, tuple[str, str]] = OrderedDict()  # uri -> (path, text)
        self._snippets = SnippetWindows()
        self._store: IndexStore | None = None
        self._formats: dict[int, RepoFormat] = {}
        self.built = threading.Event()
        #: The last query's key and answer (the next keystroke on the same line often asks again).
        self._memo: tuple[Any, str] | None = None
        self._busy = False
        #: (kind, path) of the bounds already told in the log.
        self._noted: set[tuple[str, str]] = set()

    # --- lifecycle ------------------------------------------------------------------------
    def start(self, roots: Sequence[str]) -> None:
        """(Re)build the index of ``roots`` (local folders) in the background."""
        real = []
        for r in roots:
            try:
                rp = os.path.realpath(r)
            except (OSError, ValueError):
                continue
            if os.path.isdir(rp) and rp not in real:
                real.append(rp)
        self.roots = real
        self._generation += 1
        self.built.clear()
        if not real:
            self.last_report = (
                "workspace index: no workspace folder; only open documents give context"
            )
            log.info("%s", self.last_report)
            self.state = "ready"
            self.built.set()
        self._ensure_thread()
        if real:
            self._queue.put(("build", (self._generation, tuple(real))))

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(("stop", None))

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._stop.is_set():
            self._thread.join(2.0)
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="tactful-workspace-index", daemon=True
            )
            self._thread.start()

    # --- events from the editor ----------------------------------------------------------
    def opened(self, uri: str, text: str, language: str) -> None:
        path = self._path_for(uri)
        if path is None:
            return
        self._open[uri] = path
        self._recent.pop(uri, None)
        self._dirty[uri] = 0.0  # parse at once
        self._ensure_thread()
        self._queue.put(("tick", None))

    def changed(self, uri: str) -> None:
        if uri in self._open:
            self._dirty[uri] = time.monotonic()

    def closed(self, uri: str, text: str | None) -> None:
        path = self._open.pop(uri, None)
        self._dirty.pop(uri, None)
        if path is None:
            return
        if text is not None:
            self._recent[uri] = (path, text)
            while len(self._recent) > RECENT_DOCS:
                self._recent.popitem(last=False)
        # The file on disk is the truth again (or nothing, outside the workspace).
        self._queue.put(("file", (path, "changed")))

    def files_changed(self, events: Sequence[tuple[str, str]]) -> None:
        """(uri, "created" | "changed" | "deleted") from ``workspace/didChangeWatchedFiles``."""
        for uri, kind in events:
            path = wf.uri_to_path(uri)
            if path is not None:
                self._queue.put(("file", (os.path.abspath(path), kind)))
        self._ensure_thread()

    # --- the per-request part (event loop) -----------------------------------------------
    def format_for(self, backend: Any) -> RepoFormat:
        opts = self._options()
        if opts.format == "comments" or backend is None:
            return COMMENTS
        key = id(backend)
        fmt = self._formats.get(key)
        if fmt is None:
            fmt = self._formats[key] = detect_format(vocabulary_of(backend))
        return fmt

    def context(
        self,
        uri: str,
        text: str,
        offset: int,
        language: str,
        prompt_start: int,
        fmt: RepoFormat = COMMENTS,
    ) -> str:
        """The preamble for a completion at ``offset`` in the document ``uri`` ("" for none)."""
        opts = self._options()
        if not opts.enable or opts.tokens <= 0:
            return ""
        path = self._open.get(uri) or self._path_for(uri)
        if path is None:
            return ""
        others = self._other_documents(uri, opts.max_file_kb * 1024)
        key = self._memo_key(uri, path, text, offset, prompt_start, opts, fmt, others)
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        parts = self.parts(uri, text, offset, language, prompt_start, opts.tokens)
        root = self._root_of(path)
        out = render(
            parts, fmt, repo=repo_name(root), current_rel=self._rel(path), language=language
        )
        self._memo = (key, out)
        return out

    def parts(
        self, uri: str, text: str, offset: int, language: str, prompt_start: int, tokens: int
    ) -> list[Part]:
        """The parts of context chosen within ``tokens`` for the cursor at ``offset`` in the
        document ``uri``, in rendering order (``context`` renders them; benchmarks count them)."""
        path = self._open.get(uri) or self._path_for(uri)
        if path is None:
            return []
        entry = self.index.files.get(path)
        if entry is None or entry.language != language:
            entry = self._first_parse(path, text, language)
            if entry is None:
                return []
        return select(
            modules=self.index.modules(),
            current=entry,
            current_path=path,
            imports=entry.imports,
            text=text,
            offset=offset,
            prompt_start=prompt_start,
            budget_tokens=tokens,
            others=self._other_documents(uri, self._options().max_file_kb * 1024),
            snippets=self._snippets,
        )

    def _other_documents(self, uri: str, max_chars: int) -> list[tuple[str, str, str]]:
        """(path, rel, text) of the open documents other than ``uri`` (up to ``max_chars``
        long), then of the recently edited ones that are closed: the sources of snippets."""
        others = []
        for ouri, opath in list(self._open.items()):
            if ouri == uri:
                continue
            live = self._live_text(ouri)
            if live is not None and len(live[0]) <= max_chars:
                others.append((opath, self._rel(opath), live[0]))
        for ouri, (opath, otext) in list(self._recent.items()):
            if ouri != uri and ouri not in self._open:
                others.append((opath, self._rel(opath), otext))
        return others

    def _memo_key(
        self,
        uri: str,
        path: str,
        text: str,
        offset: int,
        prompt_start: int,
        opts: Options,
        fmt: RepoFormat,
        others: Sequence[tuple[str, str, str]],
    ) -> tuple[Any, ...]:
        """What the preamble depends on: the index, the document, the cursor's line (not what
        is typed on it), the settings and the other documents' texts."""
        line_start = text.rfind("\n", 0, offset) + 1
        line_end = text.find("\n", offset)
        return (
            self.index.version,
            uri,
            path,
            text.count("\n", 0, offset),
            prompt_start,
            hash(text[:line_start]),
            hash(text[line_end:]) if line_end >= 0 else 0,
            opts,
            fmt,
            tuple((p, len(t), hash(t)) for p, _, t in others),
        )

    # --- helpers --------------------------------------------------------------------------
    def _path_for(self, uri: str) -> str | None:
        p = wf.uri_to_path(uri)
        if p is None:
            return f"/untitled/{hashlib.sha1(uri.encode()).hexdigest()[:12]}"
        if wf.is_secret_name(os.path.basename(p)):
            return None
        try:
            return os.path.realpath(p)
        except (OSError, ValueError):
            return os.path.abspath(p)

    def _root_of(self, path: str) -> str | None:
        for r in self.roots:
            if wf.within(path, [r]):
                return r
        return None

    def _rel(self, path: str) -> str:
        root = self._root_of(path)
        if root is None:
            return os.path.basename(path)
        return os.path.relpath(path, root).replace(os.sep, "/")

    def _first_parse(self, path: str, text: str, language: str) -> FileEntry | None:
        """The entry of a document the index does not hold yet, at a request (on the event
        loop): parsed here up to ``LIVE_PARSE_CHARS``; a bigger document is left to the index's
        thread, which parses open documents after they open or change (None: this request has
        no repository context)."""
        if len(text) <= LIVE_PARSE_CHARS:
            return self._parse_live(path, text, language)
        self._note(
            "big",
            path,
            f"is over {LIVE_PARSE_CHARS // 1024} KB: parsed by the index's "
            "thread, not at its first request (which has no repository context)",
        )
        return None

    def _note(self, kind: str, path: str, what: str) -> None:
        """One INFO line per document and kind of bound."""
        if (kind, path) not in self._noted:
            self._noted.add((kind, path))
            log.info("workspace context: %s %s", path, what)

    def _parse_live(self, path: str, text: str, language: str) -> FileEntry | None:
        if len(text) > self._options().max_file_kb * 1024:
            return None
        parsed, cut = cut_long_lines(text)
        if cut:
            what = f"has {cut} line(s) over {LONG_LINE_CHARS} characters, cut for its parse"
            self._note("long lines", path, what)
        try:
            defs, imports = extract(parsed, language)
        except Exception as exc:  # a grammar failure must not cost the completion
            log.debug("workspace context: could not parse %s: %s", path, exc)
            return None
        root = self._root_of(path) or os.path.dirname(path)
        entry = FileEntry(path, root, language, 0, len(text), defs, imports)
        self.index.put(entry)
        return entry

    # --- the background thread ------------------------------------------------------------
    def _run(self) -> None:
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while not self._stop.is_set():
            try:
                cmd, arg = self._queue.get(timeout=0.25)
            except queue.Empty:
                cmd, arg = "tick", None
            self._busy = True
            try:
                if cmd == "stop":
                    break
                if cmd == "build":
                    self._build(*arg)
                elif cmd == "file":
                    self._file_event(*arg)
                self._reparse_dirty()
                if self.index.modules_stale and self._queue.empty():
                    self.index.refresh_modules()
            except Exception:
                log.exception("workspace index: %s failed", cmd)
            finally:
                self._busy = False
        if self._store is not None:
            self._store.close()
            self._store = None

    def _reparse_dirty(self) -> None:
        now = time.monotonic()
        for uri, t in list(self._dirty.items()):
            if now - t < LIVE_REPARSE_S:
                continue
            self._dirty.pop(uri, None)
            live = self._live_text(uri)
            path = self._open.get(uri)
            if live is None or path is None:
                continue
            text, language = live
            if language in wf.SOURCE_EXTENSIONS.values():
                self._parse_live(path, text, language)

    def _open_store(self, roots: tuple[str, ...]) -> IndexStore | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256("\0".join(roots).encode("utf-8", "surrogatepass")).hexdigest()[:20]
        try:
            return IndexStore(self.cache_dir / "workspace" / f"index-{key}.sqlite3")
        except Exception as exc:
            log.warning("workspace index: not persisted (%s)", exc)
            return None

    def _build(self, generation: int, roots: tuple[str, ...]) -> None:
        """Index ``roots``: the persisted rows of unchanged files, the other files read and
        parsed (persisted in batches); stops when a newer build starts."""
        self.state = "building"
        t0 = time.perf_counter()
        opts = self._options()
        if self._store is not None:
            self._store.close()
        self._store = store = self._open_store(roots)
        stored = store.load() if store is not None else {}
        report = wf.ScanReport()
        found: set[str] = set()
        batch: list[FileEntry] = []
        reused = 0
        max_bytes = opts.max_file_kb * 1024
        open_paths = set(self._open.values())
        for root, path in wf.walk(
            roots, max_files=opts.max_files, exclude=opts.exclude, report=report
        ):
            if generation != self._generation or self._stop.is_set():
                return
            found.add(path)
            if path in open_paths and path in self.index.files:
                continue
            row = stored.get(path)
            if row is not None:
                try:
                    unchanged = _unchanged_entry(root, path, row)
                except OSError:
                    report.skipped["files deleted while indexed"] += 1
                    continue
                if unchanged is not None:
                    self.index.put(unchanged)
                    reused += 1
                    continue
            entry = self._read(root, path, max_bytes, report)
            if entry is not None:
                self.index.put(entry)
                batch.append(entry)
                if len(batch) >= 200:
                    if store is not None:
                        store.put_many(batch)
                    batch = []
                    self.index.refresh_modules()
            time.sleep(BUILD_PAUSE_S)
        self._finish_build(store, stored, batch, found)
        seconds = time.perf_counter() - t0
        self._report_build(len(found), len(roots), seconds, reused, report, opts.max_files)
        self.built.set()

    def _finish_build(
        self,
        store: IndexStore | None,
        stored: Mapping[str, Any],
        batch: Sequence[FileEntry],
        found: set[str],
    ) -> None:
        """Persist the last batch, and drop from the store and the index the files the scan
        did not find (documents open outside the workspace stay)."""
        if store is not None:
            store.put_many(batch)
            gone = [p for p in stored if p not in found]
            store.delete_many(gone)
        for path in [p for p, e in self.index.files.items() if e.mtime_ns and p not in found]:
            self.index.remove(path)
        self.index.refresh_modules()
        self.state = "ready"

    def _report_build(
        self,
        n: int,
        folders: int,
        seconds: float,
        reused: int,
        report: wf.ScanReport,
        max_files: int,
    ) -> None:
        """The build's one log line (kept for the status command)."""
        self.last_report = (
            f"workspace index: {n} files of {folders} folder(s) in "
            f"{seconds:.1f} s ({reused} unchanged since the last run); "
            f"{report.summary()}"
        )
        if report.capped:
            self.last_report += (
                f" (context.maxFiles {max_files}: the files nearest the folder roots were kept)"
            )
        # Skips that are normal (dependency folders, .gitignore, secrets) are INFO; a cap or files
        # that could not be read are worth a WARNING (seen at the default log level).
        notable = report.capped or any(report.skipped[k] for k in _NOTABLE)
        log.log(logging.WARNING if notable else logging.INFO, "%s", self.last_report)

    def _read(
        self, root: str, path: str, max_bytes: int, report: wf.ScanReport
    ) -> FileEntry | None:
        try:
            text, mtime, size = wf.read_source(path, max_bytes)
        except wf.Skip as why:
            report.skipped[str(why)] += 1
            return None
        language = wf.language_of(path)
        parsed, cut = cut_long_lines(text)
        if cut:
            report.skipped[f"lines over {LONG_LINE_CHARS} characters (cut for the parse)"] += cut
        try:
            defs, imports = extract(parsed, language)
        except Exception as exc:
            log.debug("workspace index: could not parse %s: %s", path, exc)
            report.skipped["unparsable files"] += 1
            return None
        return FileEntry(path, root, language, mtime, size, defs, imports)

    def _file_event(self, path: str, kind: str) -> None:
        real = os.path.realpath(path) if os.path.exists(path) else path
        if kind == "deleted" or not os.path.exists(path):
            if self.index.remove(real) and self._store is not None:
                self._store.delete_many([real])
            return
        if real in self._open.values():
            return  # the editor's text wins while the document is open
        opts = self._options()
        if not wf.allowed(real, self.roots, opts.exclude):
            # Open documents outside the workspace leave the index when they close.
            if real in self.index.files and not self.index.files[real].mtime_ns:
                self.index.remove(real)
            return
        root = self._root_of(real)
        if root is None:
            return
        report = wf.ScanReport()
        entry = self._read(root, real, opts.max_file_kb * 1024, report)
        if entry is None:
            if self.index.remove(real) and self._store is not None:
                self._store.delete_many([real])
            return
        self.index.put(entry)
        if self._store is not None:
            self._store.put_many([entry])

    def status(self) -> dict[str, Any]:
        """For ``tactful.status``: the index's state, size and last build's report."""
        return {
            "state": self.state,
            "files": len(self.index.files),
            "folders": len(self.roots),
            "generation": self._generation,
            "pending": self._queue.qsize() + len(self._dirty) + int(self._busy),
            "report": self.last_report,
        }

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests and benchmarks: wait until the build and queued events are done."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._idle():
                time.sleep(0.05)
                if self._idle():
                    return True
            time.sleep(0.02)
        return False

    def _idle(self) -> bool:
        return (
            self._queue.empty()
            and self.built.is_set()
            and not self._dirty
            and not self._busy
            and not self.index.modules_stale
        )


def _unchanged_entry(root: str, path: str, row: Sequence[Any]) -> FileEntry | None:
    """The entry of a persisted row (mtime_ns, size, data at 1..3) when the file on disk has
    that mtime and size and the row reads back; None: read the file again. OSError when the
    file is gone."""
    st = os.stat(path)
    if row[1] == st.st_mtime_ns and row[2] == st.st_size:
        try:
            return FileEntry.from_row(path, root, row[1], row[2], row[3])
        except (ValueError, KeyError, IndexError, TypeError):
            pass  # a damaged row: read the file again
    return None


def vocabulary_of(backend: Any) -> set[str]:
    """The special / added tokens of a backend's tokenizer (for the repository format)."""
    tokens = getattr(backend, "repo_tokens", None)
    if tokens is not None:
        return set(tokens)
    tok = getattr(backend, "tok", None)
    if tok is None:
        return set()
    out: set[str] = set()
    with contextlib.suppress(Exception):
        out.update(tok.get_added_vocab().keys())
    out.update(getattr(tok, "all_special_tokens", []) or [])
    return out
