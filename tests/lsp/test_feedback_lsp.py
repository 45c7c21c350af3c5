"""The feedback log and the cascade through LSP: the real server over stdio.

With the real embedded model: accept through the command and through the Copilot-style
notification, display reports, inferred rejection, the cascade hiding a suggestion (forced with
a threshold) and skipping generation. Without a model (commands only, fast): the log survives
SIGKILL of the server, and two servers write one log at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.lsp.client import LanguageClient as PlainClient
from pytest_lsp import LanguageClient
from tests.lsp.helpers import (
    TACTFUL,
    capabilities,
    change_doc,
    inline,
    kill_server,
    open_doc,
    server_config,
    start_session,
)

from tactful.feedback import store as feedback
from tactful.lsp import protocol

pytestmark = pytest.mark.asyncio(loop_scope="module")

DATA = Path(tempfile.mkdtemp(prefix="tactful-feedback-lsp-"))
LOG = DATA / "feedback.sqlite3"
TEXT = 'def greet(name):\n    """Say hello to name."""\n    print("Hello, " + \n'
LINE = 2
COL = len('    print("Hello, " + ')


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def field(obj: Any, key: str) -> Any:
    """A field of a command result (a dict, or an object, depending on the client)."""
    return obj[key] if isinstance(obj, dict) else getattr(obj, key)


def events(path: Path = LOG) -> list[feedback.Event]:
    return list(feedback.read_events(path)) if path.exists() else []


async def wait_for(pred: Any, timeout: float = 10.0, path: Path = LOG) -> list[feedback.Event]:
    """Poll the log (another process writes it) until ``pred(events)`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        evs = events(path)
        if pred(evs):
            return evs
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"log never matched; last events: {[(e.kind, e.data) for e in evs[-6:]]}"
            )
        await asyncio.sleep(0.1)


def _settings(data: Path) -> dict[str, Any]:
    """The server's settings with the model: its data in ``data``, whole suggestions (these tests
    judge accepts of what was shown; the deadline's parts are covered in test_latency_features.py
    and test_feedback_tracker.py), and the cascade never exploring."""
    return {
        "dataDir": str(data),
        "completion": {"debounceMs": 0, "cache": False, "deadlineMs": 0},
        "cdhf": {"exploreRate": 0.0},
    }


@pytest_lsp.fixture(
    config=server_config({"TACTFUL_DATA_DIR": str(DATA)}), scope="module", loop_scope="module"
)
async def client(lsp_client: LanguageClient):
    await start_session(lsp_client, _settings(DATA))
    yield
    await lsp_client.shutdown_session()


async def _suggest(client: LanguageClient, uri: str) -> types.InlineCompletionItem:
    open_doc(client, uri, TEXT)
    res = await inline(client, uri, LINE, COL)
    assert res is not None and res.items, "the model suggests something here"
    item = res.items[0]
    assert item.command is not None and item.command.command == protocol.CMD_ACCEPT
    return item


@pytest.mark.model
async def test_log_location(client: LanguageClient) -> None:
    res = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=protocol.CMD_LOG_LOCATION)
    )
    assert Path(field(res, "path")) == LOG and field(res, "enabled") is True


@pytest.mark.model
async def test_accept_through_the_command(client: LanguageClient) -> None:
    item = await _suggest(client, "file:///w/accept_cmd.py")
    sid = item.command.arguments[0]
    res = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=protocol.CMD_ACCEPT, arguments=[sid])
    )
    assert field(res, "ok") is True
    evs = await wait_for(
        lambda evs: any(e.kind == "accepted" and e.data.get("item_id") == sid for e in evs)
    )
    shown = [e for e in evs if e.kind == "shown" and e.data.get("item_id") == sid]
    assert len(shown) == 1 and shown[0].data["text"] == item.insert_text
    rid = shown[0].suggestion_id
    mine = [e for e in evs if e.suggestion_id == rid]
    assert [e.kind for e in mine][:4] == ["requested", "generated", "shown", "accepted"]
    assert (
        mine[0].data["features"]["language"] == 0.0
        and mine[1].data["features"]["mean_logprob"] is not None
    )
    acc = mine[3].data
    assert acc["via"] == "command" and acc["full"] is True
    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=protocol.CMD_STATUS)
    )
    assert field(status, "accepted") >= 1
    # The shipped default hides nothing (docs/cdhf.md), so there is no guard to report.
    assert field(status, "cascadeGuard") is None


@pytest.mark.model
async def test_show_and_partial_accept_through_notifications(client: LanguageClient) -> None:
    item = await _suggest(client, "file:///w/accept_note.py")
    sid = item.command.arguments[0]
    wire = {
        "insertText": item.insert_text,
        "command": {
            "title": "Accept suggestion",
            "command": protocol.CMD_ACCEPT,
            "arguments": [sid],
        },
    }
    client.protocol.notify(protocol.DID_SHOW_COMPLETION, {"item": wire})
    client.protocol.notify(
        protocol.DID_PARTIALLY_ACCEPT_COMPLETION, {"item": wire, "acceptedLength": 1}
    )
    evs = await wait_for(
        lambda evs: any(e.kind == "accepted" and e.data.get("item_id") == sid for e in evs)
    )
    acc = [e for e in evs if e.kind == "accepted" and e.data.get("item_id") == sid]
    assert acc[0].data["via"] == "notification" and acc[0].data["accepted_length"] == 1
    assert acc[0].data["full"] is (len(item.insert_text) <= 1)
    assert any(e.kind == "shown" and e.data.get("client_reported") for e in evs)
    # Malformed notifications are logged and ignored; the server keeps serving.
    client.protocol.notify(
        protocol.DID_PARTIALLY_ACCEPT_COMPLETION, {"item": {}, "acceptedLength": "x"}
    )
    bad = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=protocol.CMD_ACCEPT, arguments=[42])
    )
    assert field(bad, "ok") is False and "suggestionId" in field(bad, "error")


@pytest.mark.model
async def test_inferred_rejection_when_the_edit_diverges(client: LanguageClient) -> None:
    uri = "file:///w/diverge.py"
    item = await _suggest(client, uri)
    sid = item.command.arguments[0]
    other = "~" if not item.insert_text.startswith("~") else "@"
    change_doc(client, uri, 2, other, (LINE, COL), (LINE, COL))
    evs = await wait_for(
        lambda evs: any(e.kind == "rejected" and e.data.get("item_id") == sid for e in evs)
    )
    (rej,) = [e for e in evs if e.kind == "rejected" and e.data.get("item_id") == sid]
    assert rej.data["reason"] == "diverged"


@pytest.mark.model
async def test_cascade_hides_and_skips(client: LanguageClient) -> None:
    def configure(cdhf: dict[str, Any]) -> None:
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"tactful": {"cdhf": cdhf}})
        )

    async def stats() -> dict[str, Any]:
        st = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=protocol.CMD_STATUS)
        )
        return dict(field(st, "stats"))

    # Stage 2 forced to hide everything: the model runs, the suggestion is not shown.
    configure({"stage2Threshold": 0.0})
    uri = "file:///w/hide.py"
    open_doc(client, uri, TEXT)
    before = await stats()
    res = await inline(client, uri, LINE, COL)
    assert res is not None and not res.items
    evs = await wait_for(lambda evs: any(e.kind == "hidden" and e.uri == uri for e in evs))
    hidden = next(e for e in evs if e.kind == "hidden" and e.uri == uri)
    assert 0.0 <= hidden.data["p2"] <= 1.0 and hidden.data["text"]
    after_hide = await stats()
    assert after_hide["hidden_stage2"] == before["hidden_stage2"] + 1

    # Stage 1 forced to skip: no model call at all.
    configure({"stage2Threshold": None, "stage1Threshold": 0.0})
    uri2 = "file:///w/skip.py"
    open_doc(client, uri2, TEXT)
    res = await inline(client, uri2, LINE, COL)
    assert res is not None and not res.items
    after_skip = await stats()
    assert after_skip["model_calls"] == after_hide["model_calls"], "stage 1 skipped the model call"
    assert after_skip["skipped_stage1"] == after_hide["skipped_stage1"] + 1
    evs = await wait_for(lambda evs: any(e.kind == "skipped" and e.uri == uri2 for e in evs))

    # Back to the model's own thresholds: suggestions are shown again.
    configure({"stage1Threshold": None})
    uri3 = "file:///w/show.py"
    open_doc(client, uri3, TEXT)
    res = await inline(client, uri3, LINE, COL)
    assert res is not None and res.items


@pytest.mark.model
async def test_inferred_rejection_by_timeout_and_type_along(client: LanguageClient) -> None:
    def configure(feedback_settings: dict[str, Any]) -> None:
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(
                settings={"tactful": {"feedback": feedback_settings}}
            )
        )

    configure({"rejectTimeoutS": 1.0})
    try:
        uri = "file:///w/timeout.py"
        item = await _suggest(client, uri)
        sid = item.command.arguments[0]
        # Typing the first character of the suggestion is typing along: not a rejection.
        first = item.insert_text[0]
        change_doc(client, uri, 2, first, (LINE, COL), (LINE, COL))
        res = await inline(client, uri, LINE, COL + 1)
        assert res is not None
        evs = await wait_for(
            lambda evs: any(e.kind == "rejected" and e.data.get("item_id") == sid for e in evs),
            timeout=15,
        )
        (rej,) = [e for e in evs if e.kind == "rejected" and e.data.get("item_id") == sid]
        assert rej.data["reason"] in ("timeout", "typed_through"), rej.data
        shown_t = next(e.t for e in evs if e.kind == "shown" and e.data.get("item_id") == sid)
        assert rej.t - shown_t >= 1.0
    finally:
        configure({"rejectTimeoutS": 10.0})


@pytest.mark.model
async def test_list_completion_items_carry_the_accept_command(client: LanguageClient) -> None:
    uri = "file:///w/list.py"
    open_doc(client, uri, TEXT)
    res = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(LINE, COL)
        )
    )
    assert res is not None and res.items
    cmd = res.items[0].command
    assert cmd is not None and cmd.command == protocol.CMD_ACCEPT
    sid = cmd.arguments[0]
    assert list(cmd.arguments) == [sid, None, protocol.ACCEPT_VIA_LIST]
    # What a client does on Enter: run the item's own command.
    out = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=cmd.command, arguments=cmd.arguments)
    )
    assert field(out, "ok") is True and field(out, "known") is True
    evs = await wait_for(
        lambda evs: any(e.kind == "accepted" and e.data.get("item_id") == sid for e in evs)
    )
    (acc,) = [e for e in evs if e.kind == "accepted" and e.data.get("item_id") == sid]
    assert acc.data["via"] == "list" and acc.data["full"] is True, acc.data


@pytest.mark.model
async def test_train_command_reports_a_too_small_log(client: LanguageClient) -> None:
    res = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=protocol.CMD_TRAIN)
    )
    # A fresh log is an expected state, reported as progress, not as an error.
    assert field(res, "modelDir") is None and not _get(res, "error")
    assert re.fullmatch(r"learning: \d+ of 30 decisions needed to train", field(res, "message"))
    learning = field(res, "learning")
    assert field(learning, "need") == 30 and 0 < field(learning, "have") < 30


@pytest.mark.model
async def test_one_acceptance_figure_in_status_log_stats_and_replay(client: LanguageClient) -> None:
    """The status item, `tactful log stats` and the replay count the same decisions: one more
    accepted and one explicitly rejected suggestion, then the three figures agree."""
    from tactful.replay import report as replay

    item = await _suggest(client, "file:///w/figure_accept.py")
    await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command=protocol.CMD_ACCEPT, arguments=[item.command.arguments[0]]
        )
    )
    item = await _suggest(client, "file:///w/figure_reject.py")
    await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command=protocol.CMD_REJECT, arguments=[item.command.arguments[0]]
        )
    )

    async def status() -> tuple[int, int]:
        st = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=protocol.CMD_STATUS)
        )
        return field(st, "shown"), field(st, "accepted")

    for _ in range(50):  # an inferred rejection may land between two reads: read until stable
        before = await status()
        logged = feedback.stats(LOG)
        report, _loaded, _units = replay.run(LOG, replay.make_policies())
        if await status() == before:
            break
    shown, accepted = before
    assert shown >= 2 and 1 <= accepted < shown
    assert (logged["decisions"], logged["accepted"]) == (shown, accepted)
    show_all = report["policies"]["show-all"]
    assert (show_all["shown"], show_all["accepted"]) == (shown, accepted), show_all
    assert show_all["acceptance_rate_shown"] == pytest.approx(accepted / shown)


# --- without a model: durability and concurrency ----------------------------------------------


async def _plain_server(log: Path) -> PlainClient:
    env = dict(os.environ, TACTFUL_DATA_DIR=str(log.parent))
    c = PlainClient("feedback-test", "1")
    await c.start_io(TACTFUL, "serve", env=env)
    await c.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            initialization_options={
                "model": str(log.parent / "no-such-model"),
                "feedback": {"logPath": str(log)},
            },
        )
    )
    c.initialized(types.InitializedParams())
    return c


async def _commands(c: PlainClient, tag: str, n: int) -> None:
    for i in range(n):
        cmd = protocol.CMD_ACCEPT if i % 2 == 0 else protocol.CMD_REJECT
        res = await c.workspace_execute_command_async(
            types.ExecuteCommandParams(command=cmd, arguments=[f"{tag}-{i}"])
        )
        assert field(res, "ok") is True


async def test_log_survives_sigkill_of_the_server(tmp_path: Path) -> None:
    log = tmp_path / "log.sqlite3"
    c = await _plain_server(log)
    try:
        await _commands(c, "k", 60)  # each answer comes after the event is recorded
        assert c._server is not None
        c._server.kill()  # SIGKILL: no shutdown, no flush
        await c._server.wait()
        assert c._server.returncode == -9
    finally:
        await kill_server(c)
    evs = events(log)
    assert len(evs) == 60
    assert sorted(e.suggestion_id for e in evs) == sorted(f"k-{i}" for i in range(60))
    assert {e.kind for e in evs} == {"accepted", "rejected"}


async def test_two_servers_write_one_log(tmp_path: Path) -> None:
    log = tmp_path / "log.sqlite3"
    a, b = await _plain_server(log), await _plain_server(log)
    try:
        await asyncio.gather(_commands(a, "a", 80), _commands(b, "b", 80))
    finally:
        await asyncio.gather(kill_server(a), kill_server(b))
    evs = events(log)
    assert len(evs) == 160 and len({e.session for e in evs}) == 2
    for tag in ("a", "b"):
        assert [e.suggestion_id for e in evs if e.suggestion_id.startswith(tag + "-")] == [
            f"{tag}-{i}" for i in range(80)
        ]


@pytest.mark.parametrize("enable", [False])
async def test_logging_switched_off_writes_nothing(tmp_path: Path, enable: bool) -> None:
    log = tmp_path / "log.sqlite3"
    env = dict(os.environ, TACTFUL_DATA_DIR=str(tmp_path))
    c = PlainClient("feedback-test", "1")
    await c.start_io(TACTFUL, "serve", env=env)
    try:
        await c.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                initialization_options={
                    "model": str(tmp_path / "none"),
                    "feedback": {"enable": enable, "logPath": str(log)},
                },
            )
        )
        c.initialized(types.InitializedParams())
        res = await c.workspace_execute_command_async(
            types.ExecuteCommandParams(command=protocol.CMD_LOG_LOCATION)
        )
        assert field(res, "enabled") is False and field(res, "path") is None
        await _commands(c, "off", 4)
    finally:
        await kill_server(c)
    assert not log.exists()


# --- shutdown: the final survival records ------------------------------------------------------


async def _accept_one(c: PlainClient, uri: str) -> str:
    """Open a document, take the model's suggestion and accept it through the command."""
    statuses: list[dict[str, Any]] = []
    c.feature("tactful/status")(lambda params: statuses.append(vars(params)))
    open_doc(c, uri, TEXT)  # type: ignore[arg-type]
    for _ in range(600):  # the model loads in the background
        if any(st.get("state") == "ready" for st in statuses):
            break
        await asyncio.sleep(0.1)
    res = await inline(c, uri, LINE, COL)  # type: ignore[arg-type]
    assert res is not None and res.items, "the model suggests something here"
    sid = res.items[0].command.arguments[0]
    # The editor inserts the suggestion, then runs its accept command.
    change_doc(c, uri, 2, res.items[0].insert_text, (LINE, COL), (LINE, COL))  # type: ignore[arg-type]
    ok = await c.workspace_execute_command_async(
        types.ExecuteCommandParams(command=protocol.CMD_ACCEPT, arguments=[sid])
    )
    assert field(ok, "ok") is True
    return str(sid)


@pytest.mark.model
@pytest.mark.parametrize("how", ["shutdown", "eof"])
async def test_final_survival_records_are_written_when_the_server_stops(
    tmp_path: Path, how: str
) -> None:
    """An accepted suggestion has three survival checks due (30 s, 2 min, 10 min); a server
    that stops before they are due records all three as they stand, marked early."""
    env = dict(os.environ, TACTFUL_DATA_DIR=str(tmp_path))
    c = PlainClient("survival-test", "1")
    await c.start_io(TACTFUL, "serve", env=env)
    await c.initialize_async(
        types.InitializeParams(
            capabilities=capabilities(), initialization_options=_settings(tmp_path)
        )
    )
    c.initialized(types.InitializedParams())
    sid = await _accept_one(c, "file:///w/survival.py")
    log = tmp_path / "feedback.sqlite3"
    rid = next(e.suggestion_id for e in events(log) if e.data.get("item_id") == sid)
    assert not [e for e in events(log) if e.kind == "survival"]
    proc = c._server
    assert proc is not None
    if how == "shutdown":
        await c.shutdown_async(None)
        # Recorded when shutdown is answered, before the client says exit.
        survival = [e for e in events(log) if e.kind == "survival" and e.suggestion_id == rid]
        c.exit(None)
    else:  # the editor went away without shutdown: stdin closes
        assert proc.stdin is not None
        proc.stdin.close()
    await asyncio.wait_for(proc.wait(), 30)
    if how != "shutdown":
        survival = [e for e in events(log) if e.kind == "survival" and e.suggestion_id == rid]
    assert [e.data["after_s"] for e in survival] == [30.0, 120.0, 600.0]
    assert all(e.data["early"] is True and e.data["survived"] == 1.0 for e in survival)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(c.stop(), 5)
