"""LSP lifecycle and document sync: initialize, initialized, configuration changes, shutdown,
the server's copy of open documents, and the toggle/status commands.

Owns translating these messages into calls on :class:`~tactful.lsp.server.TactfulServer`
(settings, documents, model loading). Must not hold feature logic: feature modules subscribe to
``settings_listeners`` and ``document_listeners`` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from tactful import paths
from tactful.cache import JsonCache
from tactful.lsp import protocol

if TYPE_CHECKING:
    from tactful.documents import Document
    from tactful.lsp.server import TactfulServer

log = logging.getLogger("tactful")


def _model_settings(s: Any) -> tuple[Any, ...]:
    """The settings whose change reloads the model."""
    return (s.model, s.device, s.dtype, s.threads, s.fast_decode, s.cache_dir, s.engine)


# --- lifecycle -------------------------------------------------------------------------------
def on_initialize(ls: TactfulServer, params: types.InitializeParams) -> None:
    """Record what the client can do and apply its initial settings."""
    caps = params.capabilities
    td = caps.text_document
    ls.client_pull_diagnostics = bool(td and td.diagnostic)
    ls.client_work_done_progress = bool(caps.window and caps.window.work_done_progress)
    enc = ls.workspace.position_encoding
    ls.documents.encoding = str(getattr(enc, "value", enc) or "utf-16")
    ls.update_settings(params.initialization_options)


def on_initialized(ls: TactfulServer, params: types.InitializedParams) -> None:
    """Open the completion cache, start loading the model, then tell the features."""
    cache_dir = paths.cache_dir(ls.settings.cache_dir)
    try:
        ls.engine.cache = JsonCache(cache_dir / "completions", ls.settings.completion.cache_size_mb)
    except OSError as exc:
        log.warning("completion cache unavailable: %s", exc)
    ls.start_model()
    for listener in list(ls.initialized_listeners):
        try:
            listener()
        except Exception:
            log.exception("initialized listener failed")


def on_shutdown(ls: TactfulServer, params: Any) -> None:
    # The final survival records and every pending event reach the log before the client
    # sends ``exit`` (which may end the process at once).
    ls.close()


def on_configuration(ls: TactfulServer, params: types.DidChangeConfigurationParams) -> None:
    """Apply changed settings; reload the model only when a model setting changed."""
    old = ls.settings
    ls.update_settings(params.settings)
    if _model_settings(old) != _model_settings(ls.settings):
        ls.start_model()
    else:
        ls.send_status()


# --- document sync -----------------------------------------------------------------------------
def apply_changes(doc: Document, changes: Sequence[types.TextDocumentContentChangeEvent]) -> None:
    """Apply ``didChange`` content changes in order: ranged ones in place, whole ones over all."""
    for ch in changes:
        if isinstance(ch, types.TextDocumentContentChangePartial):
            rng = ch.range
            doc.apply_change(
                ch.text,
                (rng.start.line, rng.start.character),
                (rng.end.line, rng.end.character),
            )
        else:
            doc.apply_change(ch.text)


def on_open(ls: TactfulServer, params: types.DidOpenTextDocumentParams) -> None:
    d = params.text_document
    doc = ls.documents.open(d.uri, d.text, d.language_id, d.version)
    ls.hooks.document_changed(doc.uri, doc.text, doc.version)
    ls.document_event("open", doc.uri)
    ls.use_document(doc.uri)  # the open documents' bound (tactful.documents)


def on_change(ls: TactfulServer, params: types.DidChangeTextDocumentParams) -> None:
    doc = ls.documents.get(params.text_document.uri)
    if doc is None:
        log.warning("didChange for a document never opened: %s", params.text_document.uri)
        return
    apply_changes(doc, params.content_changes)
    doc.version = params.text_document.version
    ls.use_document(doc.uri)  # wakes a dormant document (tactful.documents)
    ls.hooks.document_changed(doc.uri, doc.text, doc.version)
    ls.document_event("change", doc.uri)


def on_save(ls: TactfulServer, params: types.DidSaveTextDocumentParams) -> None:
    doc = ls.documents.get(params.text_document.uri)
    if doc is not None and params.text is not None:
        doc.apply_change(params.text)
    if doc is not None:
        ls.use_document(doc.uri)
    ls.document_event("save", params.text_document.uri)


def on_close(ls: TactfulServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.documents.close(uri)
    ls.engine.forget(uri)
    ls.hooks.document_closed(uri)
    ls.document_event("close", uri)


# --- commands ----------------------------------------------------------------------------------
# Command handlers take ``ls: Any``: pygls resolves a command handler's type hints when it is
# called, and TactfulServer is imported for type checking only.
def cmd_toggle(ls: Any, *args: Any) -> dict[str, Any]:
    """``tactful.toggle [enabled?]``: turn completions on or off (flip without an argument)."""
    enabled = bool(args[0]) if args and isinstance(args[0], bool) else not ls.settings.enable
    ls.update_settings({"enable": enabled})
    ls.send_status()
    return {"enabled": ls.settings.enable}


def cmd_status(ls: Any, *args: Any) -> dict[str, Any]:
    """``tactful.status``: the status the clients show."""
    return ls.status()


#: The LSP messages this module handles (each handler's first parameter is the server: ``ls``).
FEATURES: tuple[tuple[str, Callable[..., Any]], ...] = (
    (types.INITIALIZE, on_initialize),
    (types.INITIALIZED, on_initialized),
    (types.SHUTDOWN, on_shutdown),
    (types.WORKSPACE_DID_CHANGE_CONFIGURATION, on_configuration),
    (types.TEXT_DOCUMENT_DID_OPEN, on_open),
    (types.TEXT_DOCUMENT_DID_CHANGE, on_change),
    (types.TEXT_DOCUMENT_DID_SAVE, on_save),
    (types.TEXT_DOCUMENT_DID_CLOSE, on_close),
)
COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    (protocol.CMD_TOGGLE, cmd_toggle),
    (protocol.CMD_STATUS, cmd_status),
)


def register(server: TactfulServer) -> None:
    """Register lifecycle, document and control handlers on ``server``."""
    for method, handler in FEATURES:
        server.feature(method)(handler)
    for name, command in COMMANDS:
        server.command(name)(command)
