"""``tactful.replayReport`` through the real server over stdio (no model needed: commands only)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient
from test_replay import write_log
from tests.lsp.helpers import TACTFUL, kill_server

from tactful.lsp import protocol


def field(obj: Any, key: str) -> Any:
    return obj[key] if isinstance(obj, dict) else getattr(obj, key)


async def _server(data: Path) -> LanguageClient:
    c = LanguageClient("replay-test", "1")
    await c.start_io(TACTFUL, "serve", env=dict(os.environ, TACTFUL_DATA_DIR=str(data)))
    await c.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            initialization_options={"model": str(data / "no-such-model")},
        )
    )
    c.initialized(types.InitializedParams())
    return c


async def _run(c: LanguageClient, *args: Any) -> Any:
    return await asyncio.wait_for(
        c.workspace_execute_command_async(
            types.ExecuteCommandParams(command=protocol.CMD_REPLAY_REPORT, arguments=list(args))
        ),
        120,
    )


@pytest.mark.asyncio
async def test_replay_report_command(tmp_path: Path) -> None:
    data = tmp_path / "data"
    c = await _server(data)
    try:
        # an empty log (the server creates it): a clear error, the server keeps running
        res = await _run(c)
        assert field(res, "html") is None and "nothing to replay" in field(res, "error")
        write_log(data / "feedback.sqlite3")
        res = await _run(c)
        assert field(res, "html") == str(data / "replay-report.html")
        assert field(res, "decisions") == 9
        assert list(field(res, "policies")) == ["show-all", "default"]
        assert (data / "replay-report.html").stat().st_mode & 0o077 == 0  # owner-only
        out = data / "reports" / "r.html"
        res = await _run(c, str(out))
        assert field(res, "html") == str(out) and '<svg id="sweep"' in out.read_text(
            encoding="utf-8"
        )
        # Only inside the data folder: a client cannot make the server write elsewhere.
        elsewhere = tmp_path / "elsewhere" / "r.html"
        res = await _run(c, str(elsewhere))
        assert field(res, "html") is None and "outside the data folder" in field(res, "error")
        assert not elsewhere.parent.exists()
        with pytest.raises(JsonRpcException, match="arguments must be"):
            await _run(c, 42)
        status = await c.workspace_execute_command_async(
            types.ExecuteCommandParams(command=protocol.CMD_STATUS, arguments=[])
        )
        # The server still answers, about the model it was given.
        assert field(status, "model") == str(data / "no-such-model")
        assert field(status, "state") in ("loading", "failed")
    finally:
        await kill_server(c)
