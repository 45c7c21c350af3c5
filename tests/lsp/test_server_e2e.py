"""End to end: the real server over stdio with the real embedded model."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient
from tests.lsp.helpers import SAMPLE, change_doc, inline, open_doc, server_config, start_session

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="module")]

URI = "file:///tmp/tactful-e2e/sample.py"


@pytest_lsp.fixture(config=server_config(), scope="module", loop_scope="module")
async def client(lsp_client: LanguageClient):
    # These tests judge whole suggestions; tests/lsp/test_latency_features.py covers the
    # deadline, which would show part of them on a slow machine.
    settings = {"completion": {"debounceMs": 0, "deadlineMs": 0}}
    lsp_client.init_result = await start_session(lsp_client, settings)  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()


async def test_capabilities(client: LanguageClient) -> None:
    caps = client.init_result.capabilities  # type: ignore[attr-defined]
    assert caps.inline_completion_provider is not None
    assert caps.completion_provider is not None
    assert "tactful.toggle" in caps.execute_command_provider.commands
    sync = caps.text_document_sync
    assert sync.change == types.TextDocumentSyncKind.Incremental


async def test_model_load_reports_progress(client: LanguageClient) -> None:
    reports = [r for rs in client.progress_reports.values() for r in rs]
    begins = [r for r in reports if isinstance(r, types.WorkDoneProgressBegin)]
    assert any("loading model" in b.title for b in begins), reports
    assert any(isinstance(r, types.WorkDoneProgressEnd) for r in reports), reports


async def test_inline_completion_at_a_real_position(client: LanguageClient) -> None:
    # Cursor at the end of "lines = read_lines(name)" -> next statement; here: mid-function,
    # after typing "    return " in count_words' replacement.
    text = SAMPLE.replace("    return len(text.split())", "    return len(")
    open_doc(client, URI, text)
    line = text.splitlines().index("    return len(")
    res = await inline(client, URI, line, len("    return len("))
    assert res is not None and res.items, "expected a suggestion"
    item = res.items[0]
    assert item.insert_text.strip(), "never an empty suggestion"
    assert "\n" not in item.insert_text, "mid-expression completions are single-line"
    assert item.range == types.Range(start=types.Position(line, 15), end=types.Position(line, 15))
    assert item.command is not None and item.command.command == "tactful.accept"
    assert "text" in item.insert_text, (
        f"a completion that makes sense here uses the parameter: {item.insert_text!r}"
    )


async def test_status_reports_model_latency(client: LanguageClient) -> None:
    uri = "file:///tmp/tactful-e2e/latency.py"
    # A fresh comment makes the prompt new, so the model (not the cache) answers.
    text = f"# run {uuid.uuid4().hex}\ndef area(width, height):\n    return width * "
    open_doc(client, uri, text)
    before = (
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="tactful.status")
        )
    )["modelLatency"]["n"]
    res = await inline(client, uri, 2, len("    return width * "))
    assert res is not None and res.items
    lat = (
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="tactful.status")
        )
    )["modelLatency"]
    assert lat["n"] == before + 1 and 0 < lat["p50Ms"] <= lat["p95Ms"], lat


async def test_block_completion_after_def(client: LanguageClient) -> None:
    uri = "file:///tmp/tactful-e2e/block.py"
    text = 'def is_even(n):\n    """Return True if n is even."""\n    '
    open_doc(client, uri, text)
    res = await inline(client, uri, 2, 4)
    assert res is not None and res.items
    out = res.items[0].insert_text
    assert ("return" in out and "%" in out) or "==" in out, out
    # The block ends where the function ends: nothing at column 0 after it.
    assert all(not ln or ln.startswith(" ") for ln in out.split("\n")[1:]), out


async def test_list_completion(client: LanguageClient) -> None:
    uri = "file:///tmp/tactful-e2e/list.py"
    text = "import os\n\nfiles = os.listdir('.')\nfor f in fi"
    open_doc(client, uri, text)
    res = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(3, 11)
        )
    )
    assert res is not None and res.items
    item = res.items[0]
    assert item.text_edit is not None and item.text_edit.new_text.startswith("fi")
    assert item.text_edit.range.start == types.Position(3, 9)
    assert item.command is not None and item.command.command == "tactful.accept"


async def test_incremental_edits_with_emoji_and_crlf(client: LanguageClient) -> None:
    uri = "file:///tmp/tactful-e2e/emoji.py"
    text = "s = '😀😀'  # emoji\r\nt = '漢字'\r\nu = "
    open_doc(client, uri, text)
    # Replace the second emoji (UTF-16 columns 7-9) with 'x', then type after 'u = '.
    change_doc(client, uri, 2, "x", (0, 7), (0, 9))
    change_doc(client, uri, 3, "len(s", (2, 4), (2, 4))
    res = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tactful.status", arguments=[])
    )
    assert res["state"] == "ready"
    out = await inline(client, uri, 2, 9)
    assert out is not None  # answered (possibly empty), no error


async def test_configuration_change_and_invalid_value(client: LanguageClient) -> None:
    messages: list[str] = []
    client.show_message_handler = None  # type: ignore[attr-defined]
    orig = list(client.messages)
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={"tactful": {"completion": {"maxNewTokens": "lots", "debounceMs": 5}}}
        )
    )
    for _ in range(50):
        await asyncio.sleep(0.05)
        messages = [m.message for m in client.messages[len(orig) :]]
        if messages:
            break
    assert any("tactful.completion.maxNewTokens" in m for m in messages), messages
    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tactful.status")
    )
    assert status["state"] == "ready"


async def test_bad_requests_keep_the_server_serving(client: LanguageClient) -> None:
    never = "file:///tmp/tactful-e2e/never-opened.py"
    res = await inline(client, never, 0, 0)
    assert res is None or not res.items
    empty = "file:///tmp/tactful-e2e/empty.zzz"
    open_doc(client, empty, "", language_id="no-such-language")
    res = await inline(client, empty, 0, 0)
    assert res is None or not res.items or res.items[0].insert_text.strip()
    res = await inline(client, empty, 40, 999)  # past the end of the document
    assert res is None or not res.items
    text = "x = 1\n"
    open_doc(client, "file:///tmp/tactful-e2e/past.py", text)
    res = await inline(
        client, "file:///tmp/tactful-e2e/past.py", 0, 500
    )  # past the end of the line
    assert res is not None
    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tactful.status")
    )
    assert status["state"] == "ready"


async def test_cache_answers_a_repeated_context(client: LanguageClient) -> None:
    uri = "file:///tmp/tactful-e2e/cache.py"
    text = "def greet(name):\n    return 'Hello, ' + "
    open_doc(client, uri, text)
    first = await inline(client, uri, 1, len("    return 'Hello, ' + "))
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    before = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tactful.status")
    )
    open_doc(client, uri, text)
    second = await inline(client, uri, 1, len("    return 'Hello, ' + "))
    after = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tactful.status")
    )
    assert after["stats"]["cache_hits"] == before["stats"]["cache_hits"] + 1
    assert after["stats"]["model_calls"] == before["stats"]["model_calls"]
    assert [i.insert_text for i in (first.items if first else [])] == [
        i.insert_text for i in (second.items if second else [])
    ]


async def test_huge_and_binary_documents(client: LanguageClient) -> None:
    big = "".join(f"value_{i} = compute({i}, factor=2)\n" for i in range(50_000)) + "result = "
    open_doc(client, "file:///tmp/tactful-e2e/huge.py", big)
    res = await inline(client, "file:///tmp/tactful-e2e/huge.py", 50_000, 9)
    assert res is not None  # answered at bounded cost
    binary = "\x00\x01\x02PK\x03\x04\ufffd\ufffd" * 2000
    open_doc(client, "file:///tmp/tactful-e2e/blob.bin", binary, language_id="plaintext")
    res = await inline(client, "file:///tmp/tactful-e2e/blob.bin", 0, 10)
    assert res is None or not res.items  # plaintext is off by default
    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tactful.status")
    )
    assert status["state"] == "ready"
