"""The real server over stdio serving from a real vLLM: inline completions through the engine,
type-along without another engine request, the status naming engine and model, and the fallback
to the embedded model when the engine is killed mid-session (last: it stops the session's engine).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx
import pytest
import pytest_lsp
from pytest_lsp import LanguageClient
from tests.lsp.helpers import SAMPLE, change_doc, inline, open_doc, server_config, start_session

pytestmark = [pytest.mark.model, pytest.mark.engine, pytest.mark.asyncio(loop_scope="module")]

URI = "file:///tmp/tactful-engine/sample.py"


def completion_requests(engine: Any) -> float:
    """How many /v1/completions requests the engine has answered (finished or aborted)."""
    text = httpx.get(engine.root + "/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("http_requests_total{") and 'handler="/v1/completions"' in line
    )


@pytest_lsp.fixture(config=server_config(), scope="module", loop_scope="module")
async def client(lsp_client: LanguageClient, engine: Any):
    lsp_client.engine = engine  # type: ignore[attr-defined]
    settings = {
        "completion": {"debounceMs": 0, "deadlineMs": 0, "cache": False},
        "engine": {"url": engine.url, "timeoutMs": 30000},
        "flags": {"enable": False},
    }
    await start_session(lsp_client, settings)
    open_doc(lsp_client, URI, SAMPLE)
    yield
    await lsp_client.shutdown_session()


async def test_status_names_engine_and_model(client: LanguageClient) -> None:
    st = client.statuses[-1]  # type: ignore[attr-defined]
    eng = st["engine"]
    assert eng["url"] == client.engine.url  # type: ignore[attr-defined]
    assert eng["model"] == "SmolLM2-135M-Instruct"
    assert eng["healthy"] is True and eng["serving"] == "engine"
    assert eng["fallback"] == "SmolLM2-135M-Instruct"  # the embedded model, loaded up front
    assert st["model"].startswith("SmolLM2-135M-Instruct @ 127.0.0.1:")


async def test_inline_completion_through_the_engine(client: LanguageClient) -> None:
    engine = client.engine  # type: ignore[attr-defined]
    before = completion_requests(engine)
    line = SAMPLE.splitlines().index("    return len(text.split())")
    result = await inline(client, URI, line, len("    return"))
    assert result is not None and result.items, result
    assert result.items[0].insert_text
    assert completion_requests(engine) >= before + 1  # the engine wrote it


async def test_type_along_answers_without_asking_the_engine(client: LanguageClient) -> None:
    engine = client.engine  # type: ignore[attr-defined]
    uri = "file:///tmp/tactful-engine/typealong.py"
    text = SAMPLE.replace("            print(name, len(lines))\n", "            print(")
    open_doc(client, uri, text)
    line = text.split("\n").index("            print(")
    col = len("            print(")
    res = await inline(client, uri, line, col)
    assert res is not None and res.items
    first = str(res.items[0].insert_text)
    assert len(first) >= 3, first
    before = completion_requests(engine)
    change_doc(client, uri, 2, first[:2], (line, col), (line, col))  # the user types two of it
    res2 = await inline(client, uri, line, col + 2)
    assert res2 is not None and res2.items
    assert res2.items[0].insert_text == first[2:]
    await asyncio.sleep(0.3)
    assert completion_requests(engine) == before  # answered from the suggestion on screen


@pytest.mark.skipif(
    bool(os.environ.get("TACTFUL_TEST_ENGINE_URL")), reason="would kill an engine it did not start"
)
async def test_fallback_when_the_engine_is_killed(client: LanguageClient) -> None:
    engine = client.engine  # type: ignore[attr-defined]
    uri = "file:///tmp/tactful-engine/fallback.py"
    text = SAMPLE + "\n\ndef total(values):\n    return "
    open_doc(client, uri, text)
    line = text.count("\n")
    engine.stop()  # the whole process group: API server, engine core, worker
    result = await inline(client, uri, line, len("    return "))
    # Written by the embedded model right away: the connection is refused, nothing waits for a
    # timeout. (How soon: tactful bench engine.)
    assert result is not None and result.items, result
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        msgs = [m.message for m in client.messages if "cannot connect" in m.message]
        if msgs:
            break
        await asyncio.sleep(0.05)
    assert len(msgs) == 1 and "embedded model" in msgs[0], [m.message for m in client.messages]
    # Once, not per keystroke; and the status says what serves now.
    await inline(client, uri, line, len("    return "))
    await asyncio.sleep(0.2)
    assert len([m for m in client.messages if "cannot connect" in m.message]) == 1
    st = client.statuses[-1]  # type: ignore[attr-defined]
    assert st["engine"]["serving"] == "fallback" and st["engine"]["healthy"] is False
    assert st["message"].startswith("engine down (embedded model serving): ")
