"""Helpers for driving ``tactful serve`` over stdio with pytest-lsp and the real model, for the
tests in tests/lsp and tests/engine. A test module's client fixture starts the server, sends
only its own settings (and capabilities or workspace folders where they differ) and shuts down::

    @pytest_lsp.fixture(config=server_config(), scope="module", loop_scope="module")
    async def client(lsp_client: LanguageClient):
        await start_session(lsp_client, {"completion": {"debounceMs": 0}})
        yield
        await lsp_client.shutdown_session()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient as PlainClient
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

TACTFUL = str(Path(sys.executable).parent / "tactful")


def server_config(env: dict[str, str] | None = None) -> ClientServerConfig:
    """Start the real server as a subprocess (stdio) with an isolated data dir."""
    full = dict(os.environ)
    full.update(env or {})
    return ClientServerConfig(server_command=[TACTFUL, "serve"], server_env=full)


async def kill_server(client: PlainClient) -> None:
    """Stop a client started with ``start_io`` for good: its server is killed (SIGKILL) if it
    still runs, then the client is stopped (5 s at most, errors ignored)."""
    proc = client._server
    if proc is not None and proc.returncode is None:
        proc.kill()
        await proc.wait()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.stop(), 5)


def capabilities(pull_diagnostics: bool = True) -> types.ClientCapabilities:
    """A modern client: VS Code's bundled capabilities plus inline completion and progress."""
    caps = client_capabilities("visual-studio-code")
    caps.text_document.inline_completion = types.InlineCompletionClientCapabilities(
        dynamic_registration=False
    )
    if not pull_diagnostics:
        caps.text_document.diagnostic = None
    else:
        caps.text_document.diagnostic = types.DiagnosticClientCapabilities(
            dynamic_registration=False
        )
    caps.window = types.WindowClientCapabilities(work_done_progress=True, show_message=None)
    return caps


#: A small module to complete in, for the end-to-end tests of the server (tests/lsp) and of the
#: server serving from an engine (tests/engine).
SAMPLE = '''import os


def read_lines(path):
    """Return the lines of a text file."""
    with open(path) as f:
        return f.read().splitlines()


def count_words(text):
    """Return the number of words in text."""
    return len(text.split())


def main():
    for name in os.listdir("."):
        if name.endswith(".py"):
            lines = read_lines(name)
            print(name, len(lines))
'''


async def start_session(
    client: LanguageClient,
    settings: dict[str, Any],
    caps: types.ClientCapabilities | None = None,
    **params: Any,
) -> types.InitializeResult:
    """Initialize the server that ``client`` started (``server_config``) and wait for its model.

    ``settings`` are the initialization options; ``caps`` the client's capabilities
    (``capabilities()`` when None); ``params`` further fields of the initialize request (e.g.
    ``workspace_folders``, ``root_uri``). The server's ``tactful/status`` notifications are
    collected on ``client.statuses``. Fails the fixture unless the model becomes ready. Returns
    the server's answer to initialize (its capabilities). The fixture that calls it shuts the
    session down (``await client.shutdown_session()``) after its ``yield``."""
    client.statuses = track_status(client)  # type: ignore[attr-defined]
    result = await client.initialize_session(
        types.InitializeParams(
            capabilities=capabilities() if caps is None else caps,
            initialization_options=settings,
            **params,
        )
    )
    st = await wait_ready(client, client.statuses)  # type: ignore[attr-defined]
    assert st["state"] == "ready", st
    return result


def track_status(client: LanguageClient) -> list[dict[str, Any]]:
    """Collect ``tactful/status`` notifications on ``client.statuses``."""
    statuses: list[dict[str, Any]] = []

    @client.feature("tactful/status")
    def _status(params: Any) -> None:
        statuses.append(_plain(params))

    return statuses


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list) or (isinstance(obj, tuple) and not hasattr(obj, "_asdict")):
        return [_plain(v) for v in obj]
    if hasattr(obj, "_asdict"):
        return {k: _plain(v) for k, v in obj._asdict().items()}
    if hasattr(obj, "__dict__"):
        return {k: _plain(v) for k, v in vars(obj).items()}
    return obj


async def wait_ready(
    client: LanguageClient, statuses: list[dict[str, Any]], timeout: float = 180
) -> dict[str, Any]:
    """Wait until the server reports its model ready (or failed)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for st in reversed(statuses):
            if st.get("state") in ("ready", "failed", "disabled"):
                return st
        await asyncio.sleep(0.1)
    raise TimeoutError(f"server not ready after {timeout} s; statuses: {statuses[-3:]}")


def open_doc(
    client: LanguageClient, uri: str, text: str, language_id: str = "python", version: int = 1
) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id=language_id, version=version, text=text
            )
        )
    )


def change_doc(
    client: LanguageClient,
    uri: str,
    version: int,
    text: str,
    start: tuple[int, int],
    end: tuple[int, int],
) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(*start), end=types.Position(*end)),
                    text=text,
                )
            ],
        )
    )


async def inline(
    client: LanguageClient, uri: str, line: int, character: int, automatic: bool = False
) -> types.InlineCompletionList | None:
    """Ask for ghost text: invoked (the user asked: the whole suggestion is awaited), or
    ``automatic`` (as while typing: shown in part at the deadline)."""
    kind = types.InlineCompletionTriggerKind
    return await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(
                trigger_kind=kind.Automatic if automatic else kind.Invoked
            ),
        )
    )


async def code_actions(
    client: LanguageClient, uri: str, diagnostic: types.Diagnostic
) -> list[types.CodeAction | types.Command]:
    """The code actions the server offers for ``diagnostic`` (on its range) in ``uri``."""
    got = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=diagnostic.range,
            context=types.CodeActionContext(diagnostics=[diagnostic]),
        )
    )
    return list(got or [])


def apply_line_edit(text: str, edit: types.TextEdit) -> str:
    """``text`` with ``edit`` applied, as an editor would; the edit must stay on one line."""
    lines = text.split("\n")
    r = edit.range
    assert r.start.line == r.end.line
    line = lines[r.start.line]
    lines[r.start.line] = line[: r.start.character] + edit.new_text + line[r.end.character :]
    return "\n".join(lines)
