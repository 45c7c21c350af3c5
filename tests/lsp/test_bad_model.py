"""A missing or broken model: a clear message, a failed status, and a server that keeps serving."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient
from tests.lsp.helpers import inline, open_doc, server_config, track_status, wait_ready

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_lsp.fixture(config=server_config(), scope="module", loop_scope="module")
async def client(lsp_client: LanguageClient, tmp_path_factory: pytest.TempPathFactory):
    lsp_client.statuses = track_status(lsp_client)  # type: ignore[attr-defined]
    missing = tmp_path_factory.mktemp("models") / "does-not-exist"
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                text_document=types.TextDocumentClientCapabilities(
                    inline_completion=types.InlineCompletionClientCapabilities()
                ),
            ),
            initialization_options={"model": str(missing), "flags": {"enable": False}},
        )
    )
    yield
    await lsp_client.shutdown_session()


async def _messages(client: LanguageClient, needle: str, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m.message for m in client.messages if needle in m.message]
        if found:
            return found
        await asyncio.sleep(0.05)
    return [m.message for m in client.messages]


async def test_missing_model_folder(client: LanguageClient) -> None:
    st = await wait_ready(client, client.statuses)  # type: ignore[attr-defined]
    assert st["state"] == "failed"
    assert "not found" in st["message"]
    msgs = await _messages(client, "could not load the model")
    assert any("does-not-exist" in m for m in msgs), msgs
    open_doc(client, "file:///tmp/bad/a.py", "def f():\n    ")
    res = await inline(client, "file:///tmp/bad/a.py", 1, 4)
    assert res is None or not res.items  # empty, not an error


async def test_not_a_causal_lm_then_still_serving(client: LanguageClient, tmp_path: Path) -> None:
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"architectures": ["BertModel"], "model_type": "bert"})
    )
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"model": str(folder)})
    )
    msgs = await _messages(client, "not a causal language model")
    assert any("not a causal language model" in m for m in msgs), msgs
    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tactful.status")
    )
    assert status["state"] == "failed"
