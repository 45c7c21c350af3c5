"""A small LSP client for tactful's own tools (``tactful demo``, ``tactful bench latency``):
start ``tactful serve`` over stdio, initialize it, and wait until the model is ready.

Both tools talk to the real server exactly as an editor does; this keeps the handshake and the
``tactful/status`` bookkeeping in one place."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lsprotocol import types


async def start(
    name: str,
    cmd: Sequence[str],
    *,
    settings: dict[str, Any] | None = None,
    diagnostics: bool = False,
    on_diagnostics: Callable[[types.PublishDiagnosticsParams], None] | None = None,
    on_message: Callable[[types.ShowMessageParams], None] | None = None,
    root: str | None = None,
    start_new_session: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Start and initialize the server; the client and a dict kept up to date with its status.

    ``diagnostics`` advertises pull and push diagnostics (else only inline completion); ``root``
    is a local folder sent as the workspace folder; ``start_new_session`` starts the server in
    its own process group (``tactful bench load`` kills each group at the end)."""
    from pygls.lsp.client import LanguageClient

    client = LanguageClient(name, "1")
    state = ServerState()

    @client.feature("tactful/status")
    def _status(params: Any) -> None:
        state.update(params._asdict() if hasattr(params, "_asdict") else vars(params))
        if state.get("state") in ("ready", "failed"):
            state.settled.set()

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def _diags(params: types.PublishDiagnosticsParams) -> None:
        if on_diagnostics is not None:
            on_diagnostics(params)

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def _create(params: Any) -> None:
        return None

    @client.feature(types.PROGRESS)
    def _progress(params: Any) -> None:
        return None

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def _msg(params: types.ShowMessageParams) -> None:
        if on_message is not None:
            on_message(params)

    await client.start_io(cmd[0], *cmd[1:], start_new_session=start_new_session)
    caps = types.ClientCapabilities(
        text_document=types.TextDocumentClientCapabilities(
            inline_completion=types.InlineCompletionClientCapabilities(),
            diagnostic=types.DiagnosticClientCapabilities() if diagnostics else None,
            publish_diagnostics=types.PublishDiagnosticsClientCapabilities()
            if diagnostics
            else None,
        ),
        window=types.WindowClientCapabilities(work_done_progress=True),
    )
    await client.initialize_async(
        types.InitializeParams(
            capabilities=caps,
            process_id=None,
            initialization_options=settings,
            root_uri=Path(root).resolve().as_uri() if root else None,
            workspace_folders=[
                types.WorkspaceFolder(uri=Path(root).resolve().as_uri(), name=Path(root).name)
            ]
            if root
            else None,
        )
    )
    client.initialized(types.InitializedParams())
    return client, state


class ServerState(dict[str, Any]):
    """The server's last ``tactful/status`` payload; ``settled`` is set once the model is ready
    or has failed."""

    def __init__(self) -> None:
        super().__init__()
        self.settled = asyncio.Event()


async def wait_ready(state: dict[str, Any], timeout: float) -> bool:
    """Wait until the server reports the model ready (True) or failed / the timeout (False)."""
    if isinstance(state, ServerState):
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(state.settled.wait(), timeout)
    return state.get("state") == "ready"
