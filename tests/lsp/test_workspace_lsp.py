"""Repository context end to end: the real server over stdio, the real embedded model, a small
multi-file project as the workspace folder. The method the completion needs is defined in
another file; the model writes it only when that file's definitions are in the prompt."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient
from tests.lsp.helpers import (
    _plain,
    capabilities,
    change_doc,
    inline,
    open_doc,
    server_config,
    start_session,
)

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="module")]

MODELS = '''"""Stock kept by a shop."""


class Inventory:
    """Items on hand, by name."""

    def __init__(self) -> None:
        self.items: dict[str, float] = {}

    def add_item(self, name: str, price: float) -> None:
        self.items[name] = price

    def most_expensive_items(self, threshold: float) -> list[str]:
        """Names of the items priced over ``threshold``."""
        return [n for n, p in self.items.items() if p > threshold]
'''

REPORT = '''"""Reports on the shop's stock."""

from shop.models import Inventory


def expensive_report(inventory: Inventory, threshold: float) -> str:
    """One line per item priced over the threshold."""
    return inventory.'''

NAME = "most_expensive_items"
#: Made by the fixture (not at import: a deselected module leaves nothing behind).
PROJECT = Path(tempfile.gettempdir()) / f"tactful-ws-e2e-{uuid.uuid4().hex[:12]}"


def _write_project() -> None:
    (PROJECT / "shop").mkdir(parents=True, exist_ok=True)
    (PROJECT / "shop" / "__init__.py").write_text("")
    (PROJECT / "shop" / "models.py").write_text(MODELS)
    (PROJECT / "shop" / "report.py").write_text(REPORT)
    (PROJECT / ".env").write_text("SECRET=never-read\n")


@pytest_lsp.fixture(config=server_config(), scope="module", loop_scope="module")
async def client(lsp_client: LanguageClient):
    _write_project()
    caps = capabilities()
    caps.workspace.did_change_watched_files = types.DidChangeWatchedFilesClientCapabilities(
        dynamic_registration=True
    )
    lsp_client.registrations = []  # type: ignore[attr-defined]

    @lsp_client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def _register(params: types.RegistrationParams) -> None:
        lsp_client.registrations.extend(params.registrations)  # type: ignore[attr-defined]

    settings = {
        "completion": {"debounceMs": 0, "deadlineMs": 0, "cache": False, "typeAlong": False},
        "flags": {"enable": False},
    }
    await start_session(
        lsp_client,
        settings,
        caps,
        root_uri=PROJECT.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=PROJECT.as_uri(), name="shop")],
    )
    yield
    await lsp_client.shutdown_session()
    shutil.rmtree(PROJECT, ignore_errors=True)


async def status(client: LanguageClient) -> dict[str, Any]:
    st = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tactful.status")
    )
    return _plain(st)  # type: ignore[no-any-return]


async def index_ready(client: LanguageClient) -> dict[str, Any]:
    for _ in range(300):
        ws = (await status(client)).get("workspace") or {}
        if ws.get("state") == "ready" and not ws.get("pending"):
            return ws  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise TimeoutError("workspace index not ready")


def _text(res: types.InlineCompletionList | None) -> str:
    assert res is not None and res.items, res
    first = res.items[0].insert_text
    return first if isinstance(first, str) else first.value


async def test_index_built_and_watcher_registered(client: LanguageClient) -> None:
    ws = await index_ready(client)
    assert ws["files"] == 3, ws  # __init__, models, report; never .env
    assert "3 files" in ws["report"]
    regs = client.registrations  # type: ignore[attr-defined]
    assert any(r.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES for r in regs), regs


async def test_cross_file_name_only_with_context(client: LanguageClient) -> None:
    await index_ready(client)
    uri = (PROJECT / "shop" / "report.py").as_uri()
    open_doc(client, uri, REPORT)
    line = REPORT.count("\n")
    col = len(REPORT.split("\n")[-1])
    with_context = _text(await inline(client, uri, line, col))
    assert NAME in with_context, with_context
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"context": {"tokens": 0}})
    )
    res = await inline(client, uri, line, col)
    without = _text(res) if res is not None and res.items else ""
    assert NAME not in without, without
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"context": {"tokens": 512}})
    )


async def test_prompt_prefix_reused_across_keystrokes(client: LanguageClient) -> None:
    """Typing after the suggestion keeps the repository context at the start of the prompt:
    the model's KV cache of it (and of the file above) is reused, not prefilled again."""
    await index_ready(client)
    uri = (PROJECT / "shop" / "report.py").as_uri()
    line = REPORT.count("\n")
    col = len(REPORT.split("\n")[-1])
    open_doc(client, uri, REPORT, version=4)
    await inline(client, uri, line, col)
    before = (await status(client))["backend"]
    change_doc(client, uri, 5, "x", (line, col), (line, col))
    await inline(client, uri, line, col + 1)
    after = (await status(client))["backend"]
    reused = after["reused"] - before["reused"]
    prefilled = after["prefilled"] - before["prefilled"]
    # the prompt is ~150 tokens, ~90 of them the repository context
    assert reused > 100 and prefilled < 10, (reused, prefilled)
