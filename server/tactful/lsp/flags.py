"""LSP delivery of line anomaly flags: scheduling, diagnostics (pull or push), the quick fix and
the ``tactful.flagDocument`` command.

Flags are computed on open, on save and after ``flags.idleMs`` without edits; an edit cancels
the job in flight. A job runs as short units on the shared model at ``PRIORITY_FLAG``; a unit
that is running when a completion request arrives gives way (within one decoding step or one
scoring chunk: the backend asks the unit's :class:`GiveWay` event between them) and runs again
afterwards, so completions never wait for flags.

Diagnostics are pulled (``textDocument/diagnostic``) when the client advertises
``textDocument.diagnostic`` and pushed (``publishDiagnostics``) otherwise, never both. The
plain logic lives in :mod:`tactful.flags`, the LSP objects are built by
:mod:`tactful.lsp.flag_diagnostics`; this module only schedules and translates.

Concurrency: flag units run on the model worker thread (``runner.run``); planning, results and
the diff of changed lines run in threads (``asyncio.to_thread``); everything else runs on the
event loop. Nothing polls: waiting for the model is the runner's ``until_settled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from tactful.backend.runner import PRIORITY_FLAG, ModelRunner
from tactful.backend.types import Backend
from tactful.config import FlagSettings, Settings
from tactful.flags import focus as ffocus
from tactful.flags.guard import RateGuard, describe
from tactful.flags.guard import target as rate_target
from tactful.flags.job import FlagCancelled, FlagInterrupted, FlagJob
from tactful.flags.memo import WindowMemo, open_store
from tactful.flags.model import FlagModel, default_model
from tactful.flags.plan import Focus, skip_reason
from tactful.flags.result import Flag, FlagResult
from tactful.lsp import protocol
from tactful.lsp.flag_diagnostics import (
    document_lines,
    follow_lines,
    is_ours,
    quick_fixes,
    to_diagnostics,
)

if TYPE_CHECKING:
    from tactful.documents import Document
    from tactful.lsp.server import TactfulServer

log = logging.getLogger(__name__)

#: How long a pull from a client without refresh support may wait for flags in progress.
PULL_WAIT_S = 600.0
#: Accepted suggestions remembered per document (their lines are not flagged while unedited).
_ACCEPTED_KEEP = 64


class GiveWay(threading.Event):
    """The event a flag unit's model calls watch: set when the job is cancelled or when more
    urgent work (a completion) is queued on the model. The backend asks it between decoding
    steps and scoring chunks, so nothing polls on the event loop."""

    def __init__(self, cancel: threading.Event, runner: ModelRunner) -> None:
        super().__init__()
        self._cancel = cancel
        self._runner = runner

    def is_set(self) -> bool:
        if super().is_set():
            return True
        if self._cancel.is_set() or self._runner.urgent_waiting():
            self.set()
            return True
        return False


@dataclass
class _DocFlags:
    """Per-document state."""

    task: asyncio.Task[Any] | None = None
    cancel: threading.Event | None = None
    idle: asyncio.TimerHandle | None = None
    #: Set whenever a scheduled run starts or is called off (``_settled`` waits on it).
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    result: FlagResult | None = None
    #: Flags of the last finished job with the document version they were computed on.
    flags: list[Flag] = field(default_factory=list)
    version: int | None = None
    #: Every fix of ``flags`` was checked on the text of ``version`` (a code action on that
    #: text need not check it again).
    fixes_checked: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: The lines changes are measured against: git's HEAD, else the text when opened.
    baseline: list[str] | None = None
    #: Why the last run did not flag the document, numbers left out (``_log_skip``).
    skip_logged: str | None = None
    #: Texts of suggestions accepted in this document, newest last.
    accepted: deque[str] = field(default_factory=lambda: deque(maxlen=_ACCEPTED_KEEP))


def _thresholds(s: FlagSettings) -> tuple[float, float, float, str]:
    return (s.budget, s.min_score, s.min_probability, s.scope)


class FlagService:
    """Line flags for one server's open documents."""

    def __init__(self, server: TactfulServer) -> None:
        self.server = server
        self.docs: dict[str, _DocFlags] = {}
        self.model: FlagModel | None = None
        self.runs = 0
        #: Model results by window text, so that a re-flag after an edit redoes only the windows
        #: that changed; cleared when the model changes (``_memo_for``: the backend it is for).
        self.memo = WindowMemo()
        self._memo_for: weakref.ref[Backend] | None = None
        #: What the memo's store was opened for: (cache directory, size in MB); None: none.
        self._store_for: tuple[str, int] | None = None
        #: Flags per 100 lines over the files flagged in this session (flags.maxPerHundredLines).
        self.guard = RateGuard()

    # --- settings and capabilities -----------------------------------------------------------
    @property
    def settings(self) -> FlagSettings:
        return self.server.settings.flags

    @property
    def pull(self) -> bool:
        return self.server.client_pull_diagnostics

    def _refresh_support(self) -> bool:
        try:
            caps = self.server.client_capabilities
            return bool(
                caps.workspace
                and caps.workspace.diagnostics
                and caps.workspace.diagnostics.refresh_support
            )
        except Exception:  # no client capabilities yet
            return False

    def enabled_for(self, language_id: str) -> bool:
        return bool(self.settings.enable) and self.server.settings.language_enabled(language_id)

    # --- document events ---------------------------------------------------------------------
    def document_event(self, event: str, uri: str) -> None:
        """``open``, ``change``, ``save`` or ``close`` of ``uri`` (called by the server's handlers)."""
        try:
            if event == "close":
                self._close(uri)
                return
            state = self.docs.setdefault(uri, _DocFlags())
            if event == "open":
                self._set_baseline(uri, state)
            if event == "change" or (event == "open" and self.settings.on_open):
                # Open waits for the idle pause too: a document opened and closed at once
                # (a quick look, a test) costs nothing.
                self._cancel(state)
                self._schedule(uri, self.settings.idle_ms / 1000.0)
            elif event == "save" and self.settings.on_save:
                self._cancel(state)
                self._schedule(uri, 0.0)
        except Exception:
            log.exception("flags: handling %s of %s failed", event, uri)

    def _set_baseline(self, uri: str, state: _DocFlags) -> None:
        """The text changes are measured against: the text as opened now, replaced by git's
        HEAD (looked up in a thread) where the file is tracked."""
        doc = self.server.documents.get(uri)
        if doc is None:
            return
        state.baseline = document_lines(doc)
        if not uri.startswith("file:"):
            return
        from pygls.uris import to_fs_path

        fs = to_fs_path(uri)
        if fs is None:
            return

        async def from_git() -> None:
            head = await asyncio.to_thread(ffocus.git_head_text, Path(fs))
            if head is not None and self.docs.get(uri) is state:
                state.baseline = head.split("\n")

        asyncio.get_running_loop().create_task(from_git())

    def accepted(self, uri: str, text: str) -> None:
        """The user accepted ``text`` from tactful in ``uri``: its lines are not flagged until
        they are edited (called by the feedback hub)."""
        if text.strip():
            self.docs.setdefault(uri, _DocFlags()).accepted.append(text)

    def _cancel(self, state: _DocFlags) -> None:
        if state.idle is not None:
            state.idle.cancel()
            state.idle = None
        state.wake.set()
        if state.cancel is not None:
            state.cancel.set()

    def _schedule(self, uri: str, delay: float) -> None:
        state = self.docs[uri]
        loop = asyncio.get_running_loop()

        def start() -> None:
            state.idle = None
            state.task = loop.create_task(self.run(uri))
            state.wake.set()

        state.wake.clear()
        state.idle = loop.call_later(delay, start)

    def _close(self, uri: str) -> None:
        state = self.docs.pop(uri, None)
        if state is not None:
            self._cancel(state)
        backend = self.server.runner.backend
        if backend is not None:
            with contextlib.suppress(Exception):
                self.server.runner.submit(lambda: backend.drop_cache(f"flag:{uri}"), PRIORITY_FLAG)
        if not self.pull:
            self._publish(uri, [], None)

    def settings_changed(self, old: Settings, new: Settings) -> None:
        if old.flags == new.flags and old.languages == new.languages and old.enable == new.enable:
            return
        if _thresholds(old.flags) != _thresholds(new.flags):
            self.guard.clear()  # its scores were of the flags the old thresholds showed
        if not new.flags.enable:
            for uri, state in list(self.docs.items()):
                self._cancel(state)
                state.flags, state.result = [], None
                if not self.pull:
                    self._publish(uri, [], None)
            self._refresh()
            return
        for uri, state in list(self.docs.items()):  # flagged again (the baselines stay)
            self._cancel(state)
            self._schedule(uri, self.settings.idle_ms / 1000.0)

    # --- running -----------------------------------------------------------------------------
    async def _wait_model(self) -> bool:
        return await self.server.runner.until_settled()

    async def _classifier(self) -> FlagModel:
        if self.model is None:
            self.model = await asyncio.to_thread(default_model)
        return self.model

    async def run(self, uri: str) -> FlagResult | None:
        """Flag ``uri`` now; None when it was cancelled, closed or flags are off."""
        state = self.docs.setdefault(uri, _DocFlags())
        if state.cancel is not None:
            state.cancel.set()
        cancel = threading.Event()
        state.cancel = cancel
        state.done.clear()
        try:
            return await self._run(uri, state, cancel)
        except FlagCancelled:
            return None
        except Exception as exc:
            log.exception("flags: flagging %s failed", uri)
            self.server.show_message(f"line flags failed for {uri}: {exc}")
            return None
        finally:
            if state.cancel is cancel:
                state.cancel = None
            state.done.set()

    def _focus(self, state: _DocFlags, lines: list[str]) -> Focus:
        """Changed lines (against the baseline) and accepted, unedited lines of ``lines``."""
        changed = ffocus.changed_lines(state.baseline, lines) if state.baseline else set()
        accepted = ffocus.accepted_lines(lines, list(state.accepted)) & changed
        return Focus.of(changed, accepted, changed_only=self.settings.scope == "changed")

    def _new_job(
        self, uri: str, doc: Document, state: _DocFlags, cancel: threading.Event, model: FlagModel
    ) -> FlagJob:
        lines = document_lines(doc)
        text = "\n".join(lines)
        s = self.settings
        skipped = skip_reason(text, s.max_lines) is not None  # no diff of what is not flagged
        job = FlagJob(
            text,
            doc.language_id,
            budget=s.budget,
            model=model,
            max_lines=s.max_lines,
            key=uri,
            cancel=cancel,
            min_score=s.min_score,
            min_probability=s.min_probability,
            memo=self.memo,
            focus=None if skipped else self._focus(state, lines),
        )
        self._log_skip(uri, state, job)
        return job

    @staticmethod
    def _log_skip(uri: str, state: _DocFlags, job: FlagJob) -> None:
        """Say in the log why ``uri`` is not flagged: once per document and reason, at WARNING
        when the reason is its content (binary, too long, minified), INFO when it is routine
        (empty, nothing changed, a budget too small); repeats (the same reason with other
        numbers: a long file edited) at DEBUG."""
        reason = job.skipped
        kind = None if reason is None else re.sub(r"\d+", "N", reason)
        if kind is None or kind == state.skip_logged:
            state.skip_logged = kind
            if reason is not None:
                log.debug("flags: not flagging %s: %s", uri, reason)
            return
        state.skip_logged = kind
        level = logging.INFO if job.skip_routine else logging.WARNING
        log.log(level, "flags: not flagging %s: %s", uri, reason)

    async def _run(self, uri: str, state: _DocFlags, cancel: threading.Event) -> FlagResult | None:
        doc = self.server.documents.get(uri)
        if doc is None or not self.enabled_for(doc.language_id):
            return None
        if not await self._wait_model():
            return None
        model = await self._classifier()
        doc = self.server.documents.get(uri)
        if doc is None or cancel.is_set():
            return None
        version = doc.version
        backend = self.server.runner.backend
        if backend is not None and (self._memo_for is None or self._memo_for() is not backend):
            self.memo.clear()
            self.guard.clear()  # another model's scores
            self._memo_for = weakref.ref(backend)
        await asyncio.to_thread(self._open_store)
        job = await asyncio.to_thread(self._new_job, uri, doc, state, cancel, model)
        await self._run_units(uri, state, job, doc, version)
        result = await asyncio.to_thread(job.result)
        if cancel.is_set() or doc.version != version:
            raise FlagCancelled()
        self.runs += 1
        state.result, state.flags, state.version = result, result.flags, version
        state.fixes_checked = True
        self._guard(uri, result)
        self._deliver(uri, version)
        if result.no_fix:
            log.info(
                "flags: %s: flags without a quick fix: %s (the document has %d parse errors)",
                uri,
                result.no_fix,
                result.parse_errors,
            )
        return result

    async def _run_units(
        self, uri: str, state: _DocFlags, job: FlagJob, doc: Document, version: int | None
    ) -> None:
        """Run the job's units on the model, each again after it gave way to a completion."""
        runner = self.server.runner
        shown = 0  # windows whose flags the editor was given before the job ended
        for unit in job.steps():
            if shown < job.windows_done < len(job.windows):
                shown = job.windows_done
                await self._show_partial(uri, state, job, version)
            while True:
                if (
                    job.cancel.is_set()
                    or doc.version != version
                    or self.server.documents.get(uri) is not doc
                ):
                    raise FlagCancelled()
                job.interrupt = GiveWay(job.cancel, runner)
                try:
                    await runner.run(unit, PRIORITY_FLAG)
                    break
                except FlagInterrupted:
                    continue  # the completion is queued ahead of the retry (priority queue)

    def _open_store(self) -> None:
        """Give the memo the persistent store the settings ask for (``flags.cache``), opened
        once per folder and size; without one when it is off or cannot be opened."""
        from tactful import paths

        s = self.settings
        cache_dir = paths.cache_dir(self.server.settings.cache_dir)
        want = (str(cache_dir), int(s.cache_size_mb)) if s.cache else None
        if want == self._store_for:
            return
        old, self.memo.store, self._store_for = self.memo.store, None, want
        if old is not None:
            old.close()
        if want is not None:
            self.memo.store = open_store(cache_dir, want[1])

    async def _show_partial(
        self, uri: str, state: _DocFlags, job: FlagJob, version: int | None
    ) -> None:
        """Give the editor the flags of the windows done so far of a long document: new flags
        before the next window's first line, the last run's (moved with their lines) after it."""
        cut = job.windows[job.windows_done].start
        result = await asyncio.to_thread(job.result)
        doc = self.server.documents.get(uri)
        if job.cancel.is_set() or doc is None or doc.version != version:
            return
        older = [f for f in self._current_flags(uri) if f.line >= cut]
        state.flags = [f for f in result.flags if f.line < cut] + older
        state.version = version
        state.fixes_checked = not older  # the older flags' fixes were checked on older text
        self._deliver(uri, version)

    def _deliver(self, uri: str, version: int | None) -> None:
        """Tell the editor about the document's current flags: a refresh to pull clients, a
        push to the others."""
        if self.pull:
            self._refresh()
        else:
            self._publish(uri, self.diagnostics(uri), version)

    def _rate_target(self) -> float:
        return rate_target(self.settings.max_per_hundred_lines, self.settings.min_probability)

    def _guard(self, uri: str, result: FlagResult) -> None:
        """Give a whole-file result to the rate guard; when the score a flag needs changed, say
        so in the log and give the other documents' editors their flags again."""
        if result.skipped is not None or self.settings.scope != "file":
            return
        target = self._rate_target()
        changed = self.guard.record(uri, result.lines, [f.score for f in result.flags], target)
        if changed is None:
            return
        log.info("flags: %s", describe(changed, target))
        if not self.pull:
            for other, state in list(self.docs.items()):
                if other != uri and state.flags:
                    self._publish(other, self.diagnostics(other), state.version)

    # --- diagnostics -------------------------------------------------------------------------
    def _current_flags(self, uri: str) -> list[Flag]:
        """The last flags that the rate guard lets through, moved to where their line now is
        (dropped when it changed)."""
        state = self.docs.get(uri)
        doc = self.server.documents.get(uri)
        if state is None or doc is None or not state.flags:
            return []
        flags = self.guard.passing(state.flags, self._rate_target())
        if doc.version == state.version:
            return flags
        return follow_lines(flags, doc)

    def diagnostics(self, uri: str) -> list[types.Diagnostic]:
        doc = self.server.documents.get(uri)
        if doc is None or not self.settings.enable:
            return []
        return to_diagnostics(doc, self._current_flags(uri), self.settings.severity)

    def _publish(self, uri: str, diags: list[types.Diagnostic], version: int | None) -> None:
        try:
            self.server.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, diagnostics=diags, version=version)
            )
        except Exception:  # the stream is gone (shutdown): nothing to tell
            log.debug("flags: could not publish diagnostics for %s", uri)

    def _refresh(self) -> None:
        if self.pull and self._refresh_support():
            try:
                self.server.workspace_diagnostic_refresh(None)
            except Exception:  # the stream is gone (shutdown): nothing to tell
                log.debug("flags: diagnostic refresh failed")

    async def pull_report(self, uri: str) -> types.DocumentDiagnosticReport:
        state = self.docs.get(uri)
        doc = self.server.documents.get(uri)
        # A client that cannot be told to pull again (no refresh support, e.g. Neovim 0.11)
        # waits for the flags of the job that is scheduled (idle pause) or in flight.
        if state is not None and doc is not None and not self._refresh_support():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled(state), timeout=PULL_WAIT_S)
        return types.RelatedFullDocumentDiagnosticReport(items=self.diagnostics(uri))

    @staticmethod
    async def _settled(state: _DocFlags) -> None:
        """Until no run is scheduled or in flight (woken by events, not polled)."""
        while state.idle is not None or (state.task is not None and not state.task.done()):
            task = state.task
            if task is not None and not task.done():
                await asyncio.wait({task})
            else:
                await state.wake.wait()

    # --- quick fix ---------------------------------------------------------------------------
    def code_actions(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        """Quick fixes for the flags the client sent back, or for ours on the range's lines
        when it sends none."""
        uri = params.text_document.uri
        doc = self.server.documents.get(uri)
        if doc is None:
            return []
        wanted = [d for d in params.context.diagnostics if is_ours(d)]
        if not wanted:
            lines = range(params.range.start.line, params.range.end.line + 1)
            wanted = [d for d in self.diagnostics(uri) if d.range.start.line in lines]
        state = self.docs.get(uri)
        recheck = state is None or not state.fixes_checked or doc.version != state.version
        return quick_fixes(uri, doc, wanted, self._current_flags(uri), recheck)

    # --- command -----------------------------------------------------------------------------
    async def flag_command(self, args: tuple[Any, ...]) -> dict[str, Any]:
        if not args or not isinstance(args[0], str):
            return {
                "ok": False,
                "error": f"{protocol.CMD_FLAG}: expected [uri: str], got {list(args)!r}",
            }
        uri = args[0]
        doc = self.server.documents.get(uri)
        if doc is None:
            return {"ok": False, "error": f"{protocol.CMD_FLAG}: {uri} is not open"}
        if not self.settings.enable:
            return {"ok": False, "error": "line flags are off (tactful.flags.enable)"}
        state = self.docs.setdefault(uri, _DocFlags())
        self._cancel(state)
        result = await self.run(uri)
        if result is None:
            return {
                "ok": False,
                "error": self.server.runner.error or "flagging was cancelled or is unavailable",
            }
        out = result.to_json(uri)
        guarded = self.guard.state(self._rate_target())
        kept = self.guard.passing(result.flags, self._rate_target())
        out.update(
            flags=[f.to_json() for f in sorted(kept, key=lambda f: -f.score)],
            held_back_by_rate=len(result.flags) - len(kept),
            rate_guard=guarded.to_json(),
            ok=True,
        )
        return out


def register(server: TactfulServer) -> FlagService:
    """Install the service as ``server.flags``, register diagnostics (pull), the quick fix and
    the command, and listen to document events, settings changes and accepted suggestions (the
    feedback hub's, when it was registered first)."""
    service = FlagService(server)
    server.flags = service
    if server.feedback is not None:
        server.feedback.accept_listeners.append(service.accepted)
    server.settings_listeners.append(service.settings_changed)
    server.document_listeners.append(service.document_event)

    @server.feature(
        types.TEXT_DOCUMENT_DIAGNOSTIC,
        types.DiagnosticOptions(
            identifier=protocol.DIAGNOSTIC_IDENTIFIER,
            inter_file_dependencies=False,
            workspace_diagnostics=False,
        ),
    )
    async def on_diagnostic(
        ls: TactfulServer, params: types.DocumentDiagnosticParams
    ) -> types.DocumentDiagnosticReport:
        return await service.pull_report(params.text_document.uri)

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    def on_code_action(ls: TactfulServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        try:
            return service.code_actions(params)
        except Exception:
            log.exception("flags: code actions failed")
            return []

    # pygls resolves a command handler's type hints when it is called: ``ls: Any``.
    @server.command(protocol.CMD_FLAG)
    async def cmd_flag(ls: Any, *args: Any) -> dict[str, Any]:
        return await service.flag_command(args)

    return service
