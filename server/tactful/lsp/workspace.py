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


def register(server: TactfulServer) -> None:
    svc = WorkspaceService(None, lambda: options(server.settings), lambda uri: live(uri))
    server.workspace_index = svc
    docs: dict[str, Any] = {}

    def live(uri: str) -> tuple[str, str] | None:
        d = docs.get(uri)
        return (d.text, d.language_id) if d is not None else None

    def start(ls: TactfulServer) -> None:
        if not ls.settings.context.enable:
            return
        svc.cache_dir = paths.cache_dir(ls.settings.cache_dir)
        try:
            ws = ls.workspace
            roots = workspace_roots(list(ws.folders.values()), ws.root_uri)
        except RuntimeError:
            roots = []
        svc.start(roots)

    def repo_context(
        uri: str, text: str, offset: int, language: str, prompt_start: int, backend: Any
    ) -> str:
        try:
            return svc.context(uri, text, offset, language, prompt_start, svc.format_for(backend))
        except Exception:  # context is a bonus: never cost the completion
            log.exception("workspace context failed; completing without it")
            return ""

    server.engine.repo_context = repo_context

    def on_initialized() -> None:
        start(server)
        caps = server.client_capabilities
        w = caps.workspace if caps is not None else None
        dyn = w.did_change_watched_files if w is not None else None
        if dyn is not None and dyn.dynamic_registration and server.settings.context.enable:
            _tasks.add(asyncio.ensure_future(_register_watchers(server)))

    server.initialized_listeners.append(on_initialized)

    def on_document(event: str, uri: str) -> None:
        if event == "open":
            d = server.documents.get(uri)
            if d is not None:
                docs[uri] = d
                svc.opened(uri, d.text, d.language_id)
        elif event in ("change", "save"):
            svc.changed(uri)
        elif event == "close":
            d = docs.pop(uri, None)
            svc.closed(uri, d.text if d is not None else None)

    server.document_listeners.append(on_document)

    def on_settings(old: Settings, new: Settings) -> None:
        if old.context == new.context and old.cache_dir == new.cache_dir:
            return
        if not new.context.enable:
            svc.stop()
            return
        if (
            (old.context.exclude, old.context.max_files, old.context.max_file_kb)
            != (
                new.context.exclude,
                new.context.max_files,
                new.context.max_file_kb,
            )
            or not old.context.enable
            or old.cache_dir != new.cache_dir
        ):
            try:
                server.workspace  # noqa: B018  (initialized yet?)
            except RuntimeError:
                return
            start(server)

    server.settings_listeners.append(on_settings)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def on_watched(ls: Any, params: types.DidChangeWatchedFilesParams) -> None:
        svc.files_changed([(c.uri, _CHANGE_KINDS.get(c.type, "changed")) for c in params.changes])

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def on_folders(ls: Any, params: types.DidChangeWorkspaceFoldersParams) -> None:
        start(ls)


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
