"""A small LSP client for tactful's own tools (``tactful demo``, ``tactful bench ...``):
start ``tactful serve`` over stdio, initialize it, wait until the model is ready, and the few
requests and notifications the tools send (open, type, ask for an inline completion, status).

The tools talk to the real server exactly as an editor does; this keeps the handshake, the
``tactful/status`` bookkeeping and the shape of each message in one place."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from lsprotocol import types


def serve_cmd() -> list[str]:
    """``tactful serve`` of this environment (the one running this Python)."""
    return [str(Path(sys.executable).parent / "tactful"), "serve"]


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
    _register_handlers(client, state, on_diagnostics, on_message)
    await client.start_io(cmd[0], *cmd[1:], start_new_session=start_new_session)
    await client.initialize_async(
        _initialize_params(_capabilities(diagnostics), settings, Path(root) if root else None)
    )
    client.initialized(types.InitializedParams())
    return client, state


def _register_handlers(
    client: Any,
    state: ServerState,
    on_diagnostics: Callable[[types.PublishDiagnosticsParams], None] | None,
    on_message: Callable[[types.ShowMessageParams], None] | None,
) -> None:
    """Answer what the server sends the client: its status (kept in ``state``), diagnostics and
    messages (passed on to the callbacks, when given), and progress (ignored)."""

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


def _capabilities(diagnostics: bool) -> types.ClientCapabilities:
    """Inline completion, work-done progress, and pull and push diagnostics when asked for."""
    return types.ClientCapabilities(
        text_document=types.TextDocumentClientCapabilities(
            inline_completion=types.InlineCompletionClientCapabilities(),
            diagnostic=types.DiagnosticClientCapabilities() if diagnostics else None,
            publish_diagnostics=types.PublishDiagnosticsClientCapabilities()
            if diagnostics
            else None,
        ),
        window=types.WindowClientCapabilities(work_done_progress=True),
    )


def _initialize_params(
    caps: types.ClientCapabilities, settings: dict[str, Any] | None, root: Path | None
) -> types.InitializeParams:
    """The ``initialize`` request: the settings as initialization options, ``root`` (when
    given) as the root and only workspace folder."""
    uri = root.resolve().as_uri() if root else None
    return types.InitializeParams(
        capabilities=caps,
        process_id=None,
        initialization_options=settings,
        root_uri=uri,
        workspace_folders=[types.WorkspaceFolder(uri=uri, name=root.name)]
        if root and uri
        else None,
    )


async def stop(client: Any) -> None:
    """Shut the server down as an editor does: ``shutdown``, ``exit``, then close the pipes."""
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()


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


# ---------------------------------------------------------------- messages


def as_dict(obj: Any) -> dict[str, Any]:
    """A payload the client decoded (a dict, a named tuple or an object) as a plain dict."""
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "_asdict"):
        return dict(obj._asdict())
    return dict(vars(obj)) if hasattr(obj, "__dict__") else {}


async def status(client: Any) -> dict[str, Any]:
    """The answer to the ``tactful.status`` command, as a dict (its parts are left as decoded)."""
    st = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tactful.status")
    )
    return as_dict(st)


def open_document(client: Any, uri: str, text: str) -> None:
    """``didOpen`` of a Python document at version 1."""
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=text
            )
        )
    )


def close_document(client: Any, uri: str) -> None:
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


def insert(client: Any, uri: str, version: int, line: int, character: int, text: str) -> None:
    """``didChange``: ``text`` inserted at (``line``, ``character``), the document now at
    ``version``."""
    at = types.Position(line, character)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(range=types.Range(at, at), text=text)
            ],
        )
    )


def inline_completion(
    client: Any,
    uri: str,
    line: int,
    character: int,
    trigger: types.InlineCompletionTriggerKind = types.InlineCompletionTriggerKind.Automatic,
) -> Awaitable[Any]:
    """Send ``textDocument/inlineCompletion`` at (``line``, ``character``); await the answer."""
    return client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(trigger_kind=trigger),
        )
    )


def first_item(answer: Any) -> types.InlineCompletionItem | None:
    """The first item of an inline completion answer (a list or a ``InlineCompletionList``)."""
    items = answer.items if isinstance(answer, types.InlineCompletionList) else (answer or [])
    return items[0] if items else None


def item_text(item: types.InlineCompletionItem) -> str:
    """The text an item inserts (a snippet's text as written)."""
    text = item.insert_text
    return text if isinstance(text, str) else text.value


def cancel_pending(client: Any) -> None:
    """``$/cancelRequest`` for every request still waiting for its answer, as editors do when
    the next key is typed."""
    for i in [i for i, f in client.protocol._request_futures.items() if not f.done()]:
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=i))
