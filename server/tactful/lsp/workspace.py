"""Repository context over LSP: the workspace folders from ``initialize`` (``workspaceFolders``,
else ``rootUri``) are indexed in the background (``tactful.workspace.service``), kept current
from open documents and ``workspace/didChangeWatchedFiles`` (registered where the client allows
dynamic registration), and the completion engine asks for each prompt's preamble."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from tactful import paths
from tactful.config import Settings
from tactful.workspace import files as wf
from tactful.workspace.service import Options, WorkspaceService

if TYPE_CHECKING:
    from tactful.documents import Document
    from tactful.lsp.server import TactfulServer

log = logging.getLogger(__name__)

_CHANGE_KINDS = {
    types.FileChangeType.Created: "created",
    types.FileChangeType.Changed: "changed",
    types.FileChangeType.Deleted: "deleted",
}


def options(settings: Settings) -> Options:
    c = settings.context
    return Options(
        enable=c.enable,
        tokens=c.tokens,
        max_files=c.max_files,
        max_file_kb=c.max_file_kb,
        exclude=tuple(c.exclude),
        format=c.format,
    )


def workspace_roots(folders: Any, root_uri: str | None) -> list[str]:
    """Local folders of the workspace: each ``workspaceFolders`` entry, else ``rootUri``."""
    uris = [f.uri for f in folders] if folders else ([root_uri] if root_uri else [])
    out = []
    for uri in uris:
        p = wf.uri_to_path(uri) if uri else None
        if p is not None:
            out.append(p)
        elif uri:
            log.info("workspace context: %s is not a local folder; not indexed", uri)
    return out


def watcher_globs() -> list[str]:
    exts = sorted({e.lstrip(".") for e in wf.SOURCE_EXTENSIONS})
    return ["**/*.{" + ",".join(exts) + "}"]


_tasks: set[asyncio.Future[None]] = set()


def index_settings_changed(old: Settings, new: Settings) -> bool:
    """Whether a settings change asks for the index to be built again (what is indexed, or
    where it is kept, changed, or context was just turned on)."""
    o, n = old.context, new.context
    return (
        (o.exclude, o.max_files, o.max_file_kb) != (n.exclude, n.max_files, n.max_file_kb)
        or not o.enable
        or old.cache_dir != new.cache_dir
    )


class WorkspaceContext:
    """The repository context of one server: its index service, fed by the server's events
    (wired by :func:`register`)."""

    def __init__(self, server: TactfulServer) -> None:
        self.server = server
        self.service = WorkspaceService(None, lambda: options(server.settings), self.live)
        #: The open documents, as opened (the index reads their live text).
        self.docs: dict[str, Document] = {}

    def live(self, uri: str) -> tuple[str, str] | None:
        """The text and language of ``uri`` when it is open."""
        d = self.docs.get(uri)
        return (d.text, d.language_id) if d is not None else None

    def start(self) -> None:
        """(Re)index the workspace folders, when context is on."""
        ls = self.server
        if not ls.settings.context.enable:
            return
        self.service.cache_dir = paths.cache_dir(ls.settings.cache_dir)
        try:
            ws = ls.workspace
            roots = workspace_roots(list(ws.folders.values()), ws.root_uri)
        except RuntimeError:
            roots = []
        self.service.start(roots)

    def repo_context(
        self, uri: str, text: str, offset: int, language: str, prompt_start: int, backend: Any
    ) -> str:
        """The preamble of a prompt (the completion engine's ``repo_context``); "" on failure."""
        svc = self.service
        try:
            return svc.context(uri, text, offset, language, prompt_start, svc.format_for(backend))
        except Exception:  # context is a bonus: never cost the completion
            log.exception("workspace context failed; completing without it")
            return ""

    def initialized(self) -> None:
        """Start indexing, and ask for file watching where the client allows it."""
        self.start()
        caps = self.server.client_capabilities
        w = caps.workspace if caps is not None else None
        dyn = w.did_change_watched_files if w is not None else None
        if dyn is not None and dyn.dynamic_registration and self.server.settings.context.enable:
            _tasks.add(asyncio.ensure_future(_register_watchers(self.server)))

    def document_event(self, event: str, uri: str) -> None:
        """Open documents are read from the editor's text, not from disk."""
        svc = self.service
        if event == "open":
            d = self.server.documents.get(uri)
            if d is not None:
                self.docs[uri] = d
                svc.opened(uri, d.text, d.language_id)
        elif event in ("change", "save"):
            svc.changed(uri)
        elif event == "close":
            d = self.docs.pop(uri, None)
            svc.closed(uri, d.text if d is not None else None)

    def settings_changed(self, old: Settings, new: Settings) -> None:
        """Stop when context is turned off, index again when what is indexed changed."""
        if old.context == new.context and old.cache_dir == new.cache_dir:
            return
        if not new.context.enable:
            self.service.stop()
            return
        if index_settings_changed(old, new):
            try:
                self.server.workspace  # noqa: B018  (initialized yet?)
            except RuntimeError:
                return
            self.start()

    def files_changed(self, params: types.DidChangeWatchedFilesParams) -> None:
        """Files changed on disk (the client's watcher)."""
        self.service.files_changed(
            [(c.uri, _CHANGE_KINDS.get(c.type, "changed")) for c in params.changes]
        )


def register(server: TactfulServer) -> WorkspaceContext:
    """Install the index as ``server.workspace_index`` and the engine's ``repo_context``, and
    subscribe to the server's events and the workspace notifications."""
    ctx = WorkspaceContext(server)
    server.workspace_index = ctx.service
    server.engine.repo_context = ctx.repo_context
    server.initialized_listeners.append(ctx.initialized)
    server.document_listeners.append(ctx.document_event)
    server.settings_listeners.append(ctx.settings_changed)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def on_watched(ls: Any, params: types.DidChangeWatchedFilesParams) -> None:
        ctx.files_changed(params)

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def on_folders(ls: Any, params: types.DidChangeWorkspaceFoldersParams) -> None:
        ctx.start()

    return ctx


async def _register_watchers(server: TactfulServer) -> None:
    try:
        await server.client_register_capability_async(
            types.RegistrationParams(
                registrations=[
                    types.Registration(
                        id="tactful-workspace-files",
                        method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                        register_options=types.DidChangeWatchedFilesRegistrationOptions(
                            watchers=[
                                types.FileSystemWatcher(glob_pattern=g) for g in watcher_globs()
                            ]
                        ),
                    )
                ]
            )
        )
    except Exception as exc:
        log.info("workspace context: the client did not take the file watcher (%s)", exc)
