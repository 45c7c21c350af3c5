"""LSP delivery of line anomaly flags: scheduling, diagnostics (pull or push), the quick fix and
the ``tactful.flagDocument`` command.

Flags are computed on open, on save and after ``flags.idleMs`` without edits; an edit cancels
the job in flight. A job runs as short units on the shared model at ``PRIORITY_FLAG``; a unit
that is running when a completion request arrives is interrupted (within one decoding step or
one 256-token chunk) and run again afterwards, so completions never wait for flags.

Diagnostics are pulled (``textDocument/diagnostic``) when the client advertises
``textDocument.diagnostic`` and pushed (``publishDiagnostics``) otherwise, never both. The
plain logic lives in :mod:`tactful.flags.job`; this module only translates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types

from tactful.backend.runner import FAILED, PRIORITY_FLAG, READY
from tactful.flags.job import (
    Flag,
    FlagCancelled,
    FlagInterrupted,
    FlagJob,
    FlagModel,
    FlagResult,
    WindowMemo,
    default_model,
    open_store,
)
from tactful.lsp import protocol

log = logging.getLogger(__name__)

_SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "information": types.DiagnosticSeverity.Information,
    "hint": types.DiagnosticSeverity.Hint,
}
#: How long a pull from a client without refresh support may wait for flags in progress.
PULL_WAIT_S = 600.0
#: How far (lines) a flag follows its line when lines are inserted or deleted above it.
_REMAP_WINDOW = 40


@dataclass
class _DocFlags:
    """Per-document state."""

    task: asyncio.Task[Any] | None = None
    cancel: threading.Event | None = None
    idle: asyncio.TimerHandle | None = None
    result: FlagResult | None = None
    #: Flags of the last finished job with the document version they were computed on.
    flags: list[Flag] = field(default_factory=list)
    version: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class FlagService:
    """Line flags for one server's open documents."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.docs: dict[str, _DocFlags] = {}
        self.model: FlagModel | None = None
        self.runs = 0
        #: Model results by window text, so that a re-flag after an edit redoes only the windows
        #: that changed; cleared when the model changes (``_memo_for``: the backend it is for).
        self.memo = WindowMemo()
        self._memo_for: weakref.ref[Any] | None = None
        #: What the memo's store was opened for: (cache directory, size in MB); None: none.
        self._store_for: tuple[str, int] | None = None

    # --- settings and capabilities -----------------------------------------------------------
    @property
    def settings(self) -> Any:
        return self.server.settings.flags

    @property
    def pull(self) -> bool:
        return bool(getattr(self.server, "client_pull_diagnostics", False))

    def _refresh_support(self) -> bool:
        try:
            caps = self.server.client_capabilities
            return bool(
                caps.workspace
                and caps.workspace.diagnostics
                and caps.workspace.diagnostics.refresh_support
            )
        except Exception:
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

    def _cancel(self, state: _DocFlags) -> None:
        if state.idle is not None:
            state.idle.cancel()
            state.idle = None
        if state.cancel is not None:
            state.cancel.set()

    def _schedule(self, uri: str, delay: float) -> None:
        state = self.docs[uri]
        loop = asyncio.get_running_loop()

        def start() -> None:
            state.idle = None
            state.task = loop.create_task(self.run(uri))

        state.idle = loop.call_later(delay, start)

    def _close(self, uri: str) -> None:
        state = self.docs.pop(uri, None)
        if state is not None:
            self._cancel(state)
        drop = getattr(getattr(self.server.runner, "backend", None), "drop_cache", None)
        if callable(drop):
            with contextlib.suppress(Exception):
                self.server.runner.submit(lambda: drop(f"flag:{uri}"), PRIORITY_FLAG)
        if not self.pull:
            self._publish(uri, [], None)

    def settings_changed(self, old: Any, new: Any) -> None:
        if old.flags == new.flags and old.languages == new.languages and old.enable == new.enable:
            return
        if not new.flags.enable:
            for uri, state in list(self.docs.items()):
                self._cancel(state)
                state.flags, state.result = [], None
                if not self.pull:
                    self._publish(uri, [], None)
            self._refresh()
            return
        for uri in list(self.docs):
            self.document_event("open" if self.settings.on_open else "change", uri)

    # --- running -----------------------------------------------------------------------------
    async def _wait_model(self) -> bool:
        runner = self.server.runner
        while runner.state not in (READY, FAILED):
            await asyncio.sleep(0.25)
        return bool(runner.state == READY)

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
            self._message(f"line flags failed for {uri}: {exc}")
            return None
        finally:
            if state.cancel is cancel:
                state.cancel = None
            state.done.set()

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
        text = "\n".join(doc.line_text(i) for i in range(doc.line_count))
        s = self.settings
        backend = getattr(self.server.runner, "backend", None)
        if backend is not None and (self._memo_for is None or self._memo_for() is not backend):
            self.memo.clear()
            self._memo_for = weakref.ref(backend)
        await asyncio.to_thread(self._open_store)
        job = FlagJob(
            text,
            doc.language_id,
            budget=s.budget,
            model=model,
            max_lines=s.max_lines,
            key=uri,
            cancel=cancel,
            min_score=s.min_score,
            memo=self.memo,
        )
        if job.skipped:
            log.info("flags: not flagging %s: %s", uri, job.skipped)
        runner = self.server.runner
        shown = 0  # windows whose flags the editor was given before the job ended
        for unit in job.steps():
            if shown < job.windows_done < len(job.windows):
                shown = job.windows_done
                await self._show_partial(uri, state, job, version)
            while True:
                if (
                    cancel.is_set()
                    or doc.version != version
                    or self.server.documents.get(uri) is not doc
                ):
                    raise FlagCancelled()
                interrupt = threading.Event()
                started = threading.Event()
                job.interrupt = interrupt

                def wrapped(
                    backend: Any, unit: Any = unit, started: threading.Event = started
                ) -> None:
                    started.set()
                    unit(backend)

                watcher = asyncio.get_running_loop().create_task(
                    self._watch(interrupt, started, cancel)
                )
                try:
                    await runner.run(wrapped, PRIORITY_FLAG)
                    break
                except FlagInterrupted:
                    await asyncio.sleep(0.02)  # the completion is queued ahead of the retry
                finally:
                    watcher.cancel()
        result = await asyncio.to_thread(job.result)
        if cancel.is_set() or doc.version != version:
            raise FlagCancelled()
        self.runs += 1
        state.result, state.flags, state.version = result, result.flags, version
        self._deliver(uri, version)
        return result

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

    async def _show_partial(self, uri: str, state: _DocFlags, job: FlagJob, version: int) -> None:
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
        self._deliver(uri, version)

    def _deliver(self, uri: str, version: int) -> None:
        """Tell the editor about the document's current flags: a refresh to pull clients, a
        push to the others."""
        if self.pull:
            self._refresh()
        else:
            self._publish(uri, self.diagnostics(uri), version)

    async def _watch(
        self, interrupt: threading.Event, started: threading.Event, cancel: threading.Event
    ) -> None:
        runner = self.server.runner
        while not interrupt.is_set():
            if cancel.is_set() or (started.is_set() and runner.urgent_waiting()):
                interrupt.set()
                return
            await asyncio.sleep(0.01)

    # --- diagnostics -------------------------------------------------------------------------
    def _current_flags(self, uri: str) -> list[Flag]:
        """The last flags, moved to where their line now is (dropped when it changed)."""
        state = self.docs.get(uri)
        doc = self.server.documents.get(uri)
        if state is None or doc is None or not state.flags:
            return []
        if doc.version == state.version:
            return list(state.flags)
        out = []
        for f in state.flags:
            for d in sorted(range(-_REMAP_WINDOW, _REMAP_WINDOW + 1), key=abs):
                j = f.line + d
                if 0 <= j < doc.line_count and doc.line_text(j) == f.text:
                    out.append(Flag(j, f.score, f.text, f.suggestion, f.start_col, f.end_col))
                    break
        return out

    def diagnostics(self, uri: str) -> list[types.Diagnostic]:
        doc = self.server.documents.get(uri)
        if doc is None or not self.settings.enable:
            return []
        severity = _SEVERITY.get(self.settings.severity, types.DiagnosticSeverity.Information)
        out = []
        base = 0
        for f in self._current_flags(uri):
            base = doc.offset_at(f.line, 0)
            sl, sc = doc.position_at(base + f.start_col)
            el, ec = doc.position_at(base + f.end_col)
            out.append(
                types.Diagnostic(
                    range=types.Range(types.Position(sl, sc), types.Position(el, ec)),
                    message=f.message,
                    severity=severity,
                    code=protocol.DIAGNOSTIC_CODE,
                    source=protocol.DIAGNOSTIC_SOURCE,
                    data={
                        "score": round(f.score, 4),
                        "suggestion": f.suggestion,
                        "line": f.line + 1,
                    },
                )
            )
        return out

    def _publish(self, uri: str, diags: list[types.Diagnostic], version: int | None) -> None:
        try:
            self.server.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, diagnostics=diags, version=version)
            )
        except Exception:
            log.debug("flags: could not publish diagnostics for %s", uri)

    def _refresh(self) -> None:
        if self.pull and self._refresh_support():
            try:
                self.server.workspace_diagnostic_refresh(None)
            except Exception:
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
        while state.idle is not None or (state.task is not None and not state.task.done()):
            await asyncio.sleep(0.2)

    # --- quick fix ---------------------------------------------------------------------------
    def code_actions(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        if self.server.documents.get(uri) is None:
            return []
        wanted = [
            d
            for d in params.context.diagnostics
            if d.source == protocol.DIAGNOSTIC_SOURCE and d.code == protocol.DIAGNOSTIC_CODE
        ]
        if not wanted:  # clients that do not send the diagnostics back: ours on the range's lines
            lines = range(params.range.start.line, params.range.end.line + 1)
            wanted = [d for d in self.diagnostics(uri) if d.range.start.line in lines]
        actions = []
        for d in wanted:
            data = d.data if isinstance(d.data, dict) else {}
            suggestion = data.get("suggestion")
            if not isinstance(suggestion, str) or not suggestion.strip():
                continue
            actions.append(
                types.CodeAction(
                    title=protocol.CODE_ACTION_TITLE,
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[d],
                    is_preferred=False,
                    edit=types.WorkspaceEdit(
                        changes={uri: [types.TextEdit(range=d.range, new_text=suggestion)]}
                    ),
                )
            )
        return actions

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
        out["ok"] = True
        return out

    def _message(self, text: str) -> None:
        show = getattr(self.server, "show_message", None)
        if callable(show):
            show(text)


def register(server: Any) -> FlagService:
    """Register diagnostics (pull), the quick fix and the command on ``server``, and listen to
    its document events (``server.document_listeners``) and settings changes."""
    service = FlagService(server)
    server.flags = service
    listeners = getattr(server, "settings_listeners", None)
    if isinstance(listeners, list):
        listeners.append(service.settings_changed)
    doc_listeners = getattr(server, "document_listeners", None)
    if isinstance(doc_listeners, list):
        doc_listeners.append(service.document_event)

    @server.feature(
        types.TEXT_DOCUMENT_DIAGNOSTIC,
        types.DiagnosticOptions(
            identifier=protocol.DIAGNOSTIC_IDENTIFIER,
            inter_file_dependencies=False,
            workspace_diagnostics=False,
        ),
    )
    async def on_diagnostic(
        ls: Any, params: types.DocumentDiagnosticParams
    ) -> types.DocumentDiagnosticReport:
        return await service.pull_report(params.text_document.uri)

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    def on_code_action(ls: Any, params: types.CodeActionParams) -> list[types.CodeAction]:
        try:
            return service.code_actions(params)
        except Exception:
            log.exception("flags: code actions failed")
            return []

    @server.command(protocol.CMD_FLAG)
    async def cmd_flag(ls: Any, *args: Any) -> dict[str, Any]:
        return await service.flag_command(args)

    return service
