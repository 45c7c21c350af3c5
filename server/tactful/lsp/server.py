"""The language server: composition root and thin LSP handlers.

Each handler translates LSP types to plain data, calls the capability module that owns the
work (completion, config, documents, runner, and the feature modules registered at the
bottom), and translates back. ``tactful serve`` runs :func:`main`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from tactful import __version__, paths
from tactful.backend.runner import READY, ModelRunner
from tactful.cache import JsonCache
from tactful.cascade.hooks import NullHooks, SuggestionHooks
from tactful.completion.engine import CompletionEngine, Suggestion
from tactful.config import Settings, apply_settings
from tactful.documents import Documents
from tactful.lsp import protocol

log = logging.getLogger("tactful")


class TactfulServer(LanguageServer):
    """pygls server holding tactful's state: settings, documents, model runner, engine, hooks."""

    def __init__(self) -> None:
        super().__init__("tactful", __version__)
        self.settings = Settings()
        self.documents = Documents()
        self.runner = ModelRunner()
        self.hooks: SuggestionHooks = NullHooks()
        self.engine = CompletionEngine(self.runner, lambda: self.settings, lambda: self.hooks)
        self.client_pull_diagnostics = False
        self.client_work_done_progress = False
        self._failure_shown: str | None = None
        #: Called with (old, new) settings after every successful change (feature modules subscribe).
        self.settings_listeners: list[Any] = []
        #: Called with (event, uri), event in open/change/save/close, after the server's copy of a
        #: document changed (feature modules subscribe: line flags).
        self.document_listeners: list[Any] = []
        self.counters = {"shown": 0, "accepted": 0}

    # --- settings ------------------------------------------------------------------------------
    def update_settings(self, raw: Any) -> list[str]:
        """Validate and apply a (partial) settings payload; errors are shown to the user."""
        old = self.settings
        new, errors, unknown = apply_settings(old, raw)
        self.settings = new
        for err in errors:
            log.warning("%s", err)
            self.show_message(err, types.MessageType.Error)
        if unknown:
            log.info("ignoring unknown settings: %s", ", ".join(unknown))
        if new != old:
            for listener in list(self.settings_listeners):
                try:
                    listener(old, new)
                except Exception:
                    log.exception("settings listener failed")
        return errors

    def document_event(self, event: str, uri: str) -> None:
        for listener in list(self.document_listeners):
            try:
                listener(event, uri)
            except Exception:
                log.exception("document listener failed")

    def show_message(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        try:
            self.window_show_message(
                types.ShowMessageParams(type=kind, message=f"tactful: {message}")
            )
        except Exception:  # no client attached yet (unit tests), or the stream is gone
            log.debug("could not show message: %s", message)

    # --- model ---------------------------------------------------------------------------------
    def start_model(self) -> None:
        """(Re)load the configured model in the background, reporting progress."""
        s = self.settings
        from tactful.backend.hf import TransformersBackend

        loop = asyncio.get_running_loop()
        token = f"tactful-load-{id(object())}"
        progress_ok = self.client_work_done_progress

        def report(message: str, pct: int) -> None:
            if progress_ok:
                loop.call_soon_threadsafe(
                    self.work_done_progress.report,
                    token,
                    types.WorkDoneProgressReport(message=message, percentage=pct),
                )

        def loader() -> Any:
            return TransformersBackend.load(
                s.model,
                cache_dir=paths.cache_dir(s.cache_dir),
                device=s.device,
                dtype=s.dtype,
                threads=s.threads,
                fast_decode=s.fast_decode,
                progress=report,
            )

        async def run() -> None:
            if progress_ok:
                try:
                    await self.work_done_progress.create_async(token)
                    self.work_done_progress.begin(
                        token,
                        types.WorkDoneProgressBegin(title="tactful: loading model", percentage=0),
                    )
                except Exception:
                    pass
            fut = self.runner.load(loader, s.model or "SmolLM2-135M-Instruct (embedded)")
            self.send_status()
            try:
                await asyncio.wrap_future(fut)
                msg = f"{self.runner.model_name} ready"
            except Exception:
                msg = f"model failed: {self.runner.error}"
                if self._failure_shown != self.runner.error:
                    self._failure_shown = self.runner.error
                    self.show_message(
                        f"could not load the model: {self.runner.error}. Completions are off until the "
                        "`model` setting points at a valid model.",
                        types.MessageType.Error,
                    )
            if progress_ok:
                with contextlib.suppress(Exception):
                    self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=msg))
            self.send_status()

        self._load_task = loop.create_task(run())

    def status(self) -> dict[str, Any]:
        st = self.runner.status()
        shown, accepted = self.counters["shown"], self.counters["accepted"]
        st.update(
            enabled=self.settings.enable,
            shown=shown,
            accepted=accepted,
            acceptanceRate=(accepted / shown) if shown else None,
            stats=self.engine.stats.as_dict(),
            modelLatency=self.engine.latency_summary(),
            backend=getattr(self.runner.backend, "stats", {}),
        )
        if not self.settings.enable and st["state"] == READY:
            st["state"] = "disabled"
        return st

    def send_status(self) -> None:
        try:
            self.protocol.notify(protocol.STATUS, self.status())
        except Exception:
            log.debug("could not send status")


server = TactfulServer()


# --- lifecycle ---------------------------------------------------------------------------------
@server.feature(types.INITIALIZE)
def on_initialize(ls: TactfulServer, params: types.InitializeParams) -> None:
    caps = params.capabilities
    td = caps.text_document
    ls.client_pull_diagnostics = bool(td and td.diagnostic)
    ls.client_work_done_progress = bool(caps.window and caps.window.work_done_progress)
    enc: Any = getattr(getattr(ls, "workspace", None), "position_encoding", None)
    ls.documents.encoding = str(getattr(enc, "value", enc) or "utf-16")
    ls.update_settings(params.initialization_options)


@server.feature(types.INITIALIZED)
def on_initialized(ls: TactfulServer, params: types.InitializedParams) -> None:
    cache_dir = paths.cache_dir(ls.settings.cache_dir)
    try:
        ls.engine.cache = JsonCache(cache_dir / "completions", ls.settings.completion.cache_size_mb)
    except Exception as exc:
        log.warning("completion cache unavailable: %s", exc)
    ls.start_model()


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def on_configuration(ls: TactfulServer, params: types.DidChangeConfigurationParams) -> None:
    old = ls.settings
    ls.update_settings(params.settings)
    new = ls.settings
    if (old.model, old.device, old.dtype, old.threads, old.fast_decode, old.cache_dir) != (
        new.model,
        new.device,
        new.dtype,
        new.threads,
        new.fast_decode,
        new.cache_dir,
    ):
        ls.start_model()
    else:
        ls.send_status()


# --- documents ---------------------------------------------------------------------------------
@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def on_open(ls: TactfulServer, params: types.DidOpenTextDocumentParams) -> None:
    d = params.text_document
    doc = ls.documents.open(d.uri, d.text, d.language_id, d.version)
    ls.hooks.document_changed(doc.uri, doc.text, doc.version)
    ls.document_event("open", doc.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def on_change(ls: TactfulServer, params: types.DidChangeTextDocumentParams) -> None:
    doc = ls.documents.get(params.text_document.uri)
    if doc is None:
        log.warning("didChange for a document never opened: %s", params.text_document.uri)
        return
    for ch in params.content_changes:
        rng = getattr(ch, "range", None)
        if rng is None:
            doc.apply_change(ch.text)
        else:
            doc.apply_change(
                ch.text, (rng.start.line, rng.start.character), (rng.end.line, rng.end.character)
            )
    doc.version = params.text_document.version
    ls.hooks.document_changed(doc.uri, doc.text, doc.version)
    ls.document_event("change", doc.uri)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def on_save(ls: TactfulServer, params: types.DidSaveTextDocumentParams) -> None:
    doc = ls.documents.get(params.text_document.uri)
    if doc is not None and params.text is not None:
        doc.apply_change(params.text)
    ls.document_event("save", params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def on_close(ls: TactfulServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.documents.close(uri)
    ls.engine.forget(uri)
    ls.hooks.document_closed(uri)
    ls.document_event("close", uri)


# --- completions -------------------------------------------------------------------------------
async def _suggest(
    ls: TactfulServer, uri: str, pos: types.Position, trigger: str, single_line: bool
) -> Suggestion | None:
    doc = ls.documents.get(uri)
    if doc is None:
        return None
    if pos.line >= doc.line_count:
        return None
    offset = doc.offset_at(pos.line, pos.character)
    return await ls.engine.complete(
        uri=uri,
        text=doc.text,
        offset=offset,
        language_id=doc.language_id,
        line=pos.line,
        character=pos.character,
        version=doc.version,
        trigger=trigger,
        single_line=single_line,
        current_version=lambda: doc.version,
        channel="list" if single_line else "inline",
    )


def accept_command(suggestion_id: str) -> types.Command:
    return types.Command(
        title="Accept suggestion", command=protocol.CMD_ACCEPT, arguments=[suggestion_id]
    )


def to_inline_items(sugg: Suggestion | None, pos: types.Position) -> types.InlineCompletionList:
    """A suggestion as LSP inline items: insert at the cursor (empty range)."""
    if sugg is None:
        return types.InlineCompletionList(items=[])
    return types.InlineCompletionList(
        items=[
            types.InlineCompletionItem(
                insert_text=sugg.text,
                range=types.Range(start=pos, end=pos),
                command=accept_command(sugg.id),
            )
        ]
    )


def to_completion_items(
    sugg: Suggestion | None, pos: types.Position, line_prefix: str
) -> types.CompletionList:
    """A suggestion as a list completion item that replaces the word being typed."""
    if sugg is None:
        return types.CompletionList(is_incomplete=True, items=[])
    word = len(line_prefix) - len(
        line_prefix.rstrip("_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    )
    word_text = line_prefix[len(line_prefix) - word :]
    start = types.Position(
        line=pos.line, character=max(0, pos.character - len(word_text.encode("utf-16-le")) // 2)
    )
    new_text = word_text + sugg.text
    label = new_text.strip().splitlines()[0][:60] if new_text.strip() else new_text
    return types.CompletionList(
        is_incomplete=True,
        items=[
            types.CompletionItem(
                label=label,
                kind=types.CompletionItemKind.Snippet,
                detail="tactful",
                documentation=new_text,  # plain text: every client can show it
                filter_text=new_text,
                sort_text="0",
                text_edit=types.TextEdit(
                    range=types.Range(start=start, end=pos), new_text=new_text
                ),
                insert_text_format=types.InsertTextFormat.PlainText,
                command=accept_command(sugg.id),
            )
        ],
    )


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def on_inline_completion(
    ls: TactfulServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList:
    trigger = (
        "invoked"
        if params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        else "automatic"
    )
    sugg = await _suggest(ls, params.text_document.uri, params.position, trigger, single_line=False)
    if sugg is not None and sugg.source != "type_along":
        ls.counters["shown"] += 1
    return to_inline_items(sugg, params.position)


@server.feature(
    types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", "(", " "])
)
async def on_completion(ls: TactfulServer, params: types.CompletionParams) -> types.CompletionList:
    doc = ls.documents.get(params.text_document.uri)
    if doc is None:
        return types.CompletionList(is_incomplete=True, items=[])
    line_prefix = doc.line_text(params.position.line)[
        : doc.offset_at(params.position.line, params.position.character)
        - doc.offset_at(params.position.line, 0)
    ]
    sugg = await _suggest(
        ls, params.text_document.uri, params.position, "invoked", single_line=True
    )
    if sugg is not None:
        ls.counters["shown"] += 1
    return to_completion_items(sugg, params.position, line_prefix)


# --- commands ----------------------------------------------------------------------------------
@server.command(protocol.CMD_TOGGLE)
def cmd_toggle(ls: TactfulServer, *args: Any) -> dict[str, Any]:
    enabled = bool(args[0]) if args and isinstance(args[0], bool) else not ls.settings.enable
    ls.update_settings({"enable": enabled})
    ls.send_status()
    return {"enabled": ls.settings.enable}


@server.command(protocol.CMD_STATUS)
def cmd_status(ls: TactfulServer, *args: Any) -> dict[str, Any]:
    return ls.status()


# --- feature modules ---------------------------------------------------------------------------
from tactful.lsp import feedback as lsp_feedback  # noqa: E402  (feedback log + CDHF cascade: server.hooks, commands)

lsp_feedback.register(server)

from tactful.lsp import flags as lsp_flags  # noqa: E402  (line anomaly flags: diagnostics, quick fix, command)

lsp_flags.register(server)

from tactful.lsp import replay as lsp_replay  # noqa: E402  (tactful.replayReport)

lsp_replay.register(server)


# --- entry point -------------------------------------------------------------------------------
def main(argv: Sequence[str] = ()) -> int:
    """``tactful serve [--tcp HOST:PORT] [--log-file F] [-v]``."""
    parser = argparse.ArgumentParser(prog="tactful serve")
    parser.add_argument(
        "--stdio", action="store_true", help="speak LSP over stdin/stdout (default)"
    )
    parser.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        help="listen on TCP instead (loopback unless HOST says otherwise)",
    )
    parser.add_argument("--log-file", default=None, help="write logs here (default: stderr)")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(list(argv))
    level = logging.WARNING - 10 * min(args.verbose, 2)
    handler: logging.Handler = (
        logging.FileHandler(args.log_file) if args.log_file else logging.StreamHandler(sys.stderr)
    )
    logging.basicConfig(
        level=level, handlers=[handler], format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        try:
            server.start_tcp(host or "127.0.0.1", int(port))
        except ValueError:
            print(f"tactful serve: --tcp wants HOST:PORT, got {args.tcp!r}", file=sys.stderr)
            return 2
    else:
        server.start_io()
    # Leave without running interpreter teardown: the model thread may be inside torch, and
    # everything worth keeping (the feedback log) is committed as it is recorded.
    # (pygls may have closed stdout already: flushing it then raises.)
    logging.shutdown()
    with contextlib.suppress(ValueError, OSError):
        sys.stdout.flush()
    os._exit(0)
