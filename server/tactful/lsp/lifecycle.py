"""LSP lifecycle and document sync: initialize, initialized, configuration changes, shutdown,
the server's copy of open documents, and the toggle/status commands.

Owns translating these messages into calls on :class:`~tactful.lsp.server.TactfulServer`
(settings, documents, model loading). Must not hold feature logic: feature modules subscribe to
``settings_listeners`` and ``document_listeners`` instead.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from tactful import paths
from tactful.cache import JsonCache
from tactful.lsp import protocol

if TYPE_CHECKING:
    from tactful.lsp.server import TactfulServer

log = logging.getLogger("tactful")


def _model_settings(s: Any) -> tuple[Any, ...]:
    """The settings whose change reloads the model."""
    return (s.model, s.device, s.dtype, s.threads, s.fast_decode, s.cache_dir, s.engine)


def register(server: TactfulServer) -> None:
    """Register lifecycle, document and control handlers on ``server``."""

    @server.feature(types.INITIALIZE)
    def on_initialize(ls: TactfulServer, params: types.InitializeParams) -> None:
        caps = params.capabilities
        td = caps.text_document
        ls.client_pull_diagnostics = bool(td and td.diagnostic)
        ls.client_work_done_progress = bool(caps.window and caps.window.work_done_progress)
        enc = ls.workspace.position_encoding
        ls.documents.encoding = str(getattr(enc, "value", enc) or "utf-16")
        ls.update_settings(params.initialization_options)

    @server.feature(types.INITIALIZED)
    def on_initialized(ls: TactfulServer, params: types.InitializedParams) -> None:
        cache_dir = paths.cache_dir(ls.settings.cache_dir)
        try:
            ls.engine.cache = JsonCache(
                cache_dir / "completions", ls.settings.completion.cache_size_mb
            )
        except OSError as exc:
            log.warning("completion cache unavailable: %s", exc)
        ls.start_model()
        for listener in list(ls.initialized_listeners):
            try:
                listener()
            except Exception:
                log.exception("initialized listener failed")

    @server.feature(types.SHUTDOWN)
    def on_shutdown(ls: TactfulServer, params: Any) -> None:
        # The final survival records and every pending event reach the log before the client
        # sends ``exit`` (which may end the process at once).
        ls.close()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def on_configuration(ls: TactfulServer, params: types.DidChangeConfigurationParams) -> None:
        old = ls.settings
        ls.update_settings(params.settings)
        if _model_settings(old) != _model_settings(ls.settings):
            ls.start_model()
        else:
            ls.send_status()

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
            if isinstance(ch, types.TextDocumentContentChangePartial):
                rng = ch.range
                doc.apply_change(
                    ch.text,
                    (rng.start.line, rng.start.character),
                    (rng.end.line, rng.end.character),
                )
            else:
                doc.apply_change(ch.text)
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

    # Command handlers take ``ls: Any``: pygls resolves a command handler's type hints when it
    # is called, and TactfulServer is imported for type checking only.
    @server.command(protocol.CMD_TOGGLE)
    def cmd_toggle(ls: Any, *args: Any) -> dict[str, Any]:
        enabled = bool(args[0]) if args and isinstance(args[0], bool) else not ls.settings.enable
        ls.update_settings({"enable": enabled})
        ls.send_status()
        return {"enabled": ls.settings.enable}

    @server.command(protocol.CMD_STATUS)
    def cmd_status(ls: Any, *args: Any) -> dict[str, Any]:
        return ls.status()
