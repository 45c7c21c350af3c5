"""Prefix reuse, cancellation, type-along and bursts (issue 3), functional and untimed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient
from tests.lsp.helpers import change_doc, inline, open_doc, server_config, start_session

from tactful.completion.deadline import stop_point

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="module")]

CODE = '''import os
import sys


def list_python_files(root):
    """Return the paths of the Python files under root."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.endswith(".py"):
                found.append(os.path.join(dirpath, name))
    return found


def main():
    files = list_python_files(sys.argv[1])
    for path in files:
        print(path)
'''


@pytest_lsp.fixture(config=server_config(), scope="module", loop_scope="module")
async def client(lsp_client: LanguageClient):
    caps = types.ClientCapabilities(
        text_document=types.TextDocumentClientCapabilities(
            inline_completion=types.InlineCompletionClientCapabilities()
        ),
        window=types.WindowClientCapabilities(work_done_progress=False),
    )
    settings = {
        "flags": {"enable": False},
        "cdhf": {"enable": False},
        # The deadline tests below switch it on; the others wait for whole suggestions.
        "completion": {"cache": False, "deadlineMs": 0},
    }
    await start_session(lsp_client, settings, caps)
    yield
    await lsp_client.shutdown_session()


async def status(client: LanguageClient) -> dict[str, Any]:
    res = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tactful.status")
    )
    return res._asdict() if hasattr(res, "_asdict") else dict(res)


def _d(obj: Any) -> dict[str, Any]:
    return obj._asdict() if hasattr(obj, "_asdict") else dict(obj)


async def test_type_along_returns_the_rest_without_the_model(client: LanguageClient) -> None:
    uri = "file:///tmp/latency/typealong.py"
    text = CODE.replace("        print(path)\n", "        print(")
    open_doc(client, uri, text)
    line = text.split("\n").index("        print(")
    res = await inline(client, uri, line, 14)
    assert res is not None and res.items
    first = res.items[0].insert_text
    assert len(first) >= 3, first
    before = _d((await status(client))["stats"])["model_calls"]
    # Type the first two characters of the suggestion.
    change_doc(client, uri, 2, first[:2], (line, 14), (line, 14))
    res2 = await inline(client, uri, line, 16)
    assert res2 is not None and res2.items
    assert res2.items[0].insert_text == first[2:]
    assert res2.items[0].command.arguments == res.items[0].command.arguments  # the same suggestion
    after = _d((await status(client))["stats"])
    assert after["model_calls"] == before and after["type_along"] >= 1
    # Typing something else falls back to the model.
    change_doc(client, uri, 3, "#", (line, 16), (line, 16))
    await inline(client, uri, line, 17)
    assert _d((await status(client))["stats"])["model_calls"] == before + 1


async def test_newer_request_supersedes_older_and_no_stale_result(client: LanguageClient) -> None:
    uri = "file:///tmp/latency/stale.py"
    text = CODE.replace("    return found\n", "    return ")
    open_doc(client, uri, text)
    line = text.split("\n").index("    return ")
    older = asyncio.ensure_future(inline(client, uri, line, 11))
    await asyncio.sleep(0.01)
    change_doc(client, uri, 2, "f", (line, 11), (line, 11))
    newer = await inline(client, uri, line, 12)
    old = await older
    assert old is None or not old.items, (
        f"a superseded request returned {old.items[0].insert_text!r}"
    )
    assert newer is not None and newer.items, "the newest request is answered"


async def test_cancel_request_is_honoured(client: LanguageClient) -> None:
    uri = "file:///tmp/latency/cancel.py"
    text = CODE.replace("    return found\n", "    return ")
    open_doc(client, uri, text)
    line = text.split("\n").index("    return ")
    before = _d((await status(client))["backend"])
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line, 11),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Automatic
        ),
    )
    fut = asyncio.ensure_future(
        client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=777001
        )
    )
    await asyncio.sleep(0.05)
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=777001))
    from pygls.exceptions import JsonRpcRequestCancelled

    with pytest.raises(JsonRpcRequestCancelled):
        await asyncio.wait_for(fut, timeout=60)
    after = _d((await status(client))["backend"])
    assert after["finished"] == before["finished"], "the cancelled generation ran to the end"


async def test_burst_of_50_runs_at_most_one_generation(client: LanguageClient) -> None:
    uri = "file:///tmp/latency/burst.py"
    text = CODE.replace(
        "    for path in files:\n        print(path)\n", "    for path in files:\n        "
    )
    open_doc(client, uri, text)
    line = text.split("\n").index("    for path in files:") + 1
    before = _d((await status(client))["backend"])
    version = 1
    futures = []
    typed = ""
    for ch in "if path.endswith('.py') and not path.startswith('test_') or verbose:"[:50]:
        version += 1
        change_doc(client, uri, version, ch, (line, 8 + len(typed)), (line, 8 + len(typed)))
        typed += ch
        futures.append(asyncio.ensure_future(inline(client, uri, line, 8 + len(typed))))
    results = await asyncio.gather(*futures)
    after = _d((await status(client))["backend"])
    finished = after["finished"] - before["finished"]
    assert finished <= 1, f"{finished} generations ran to the end for one burst"
    answered = [r for r in results[:-1] if r is not None and r.items]
    assert not answered, "superseded requests in the burst returned suggestions"
    # Every generation the burst started either ran to the end (at most the last one) or was
    # cancelled: none is left running or failed.
    calls = after["calls"] - before["calls"]
    assert calls - finished <= after["cancelled"] - before["cancelled"], (before, after)


async def test_list_and_inline_requests_do_not_supersede_each_other(client: LanguageClient) -> None:
    uri = "file:///tmp/latency/both.py"
    text = CODE.replace("    return found\n", "    return ")
    open_doc(client, uri, text)
    line = text.split("\n").index("    return ")
    before = _d((await status(client))["stats"])
    ghost = asyncio.ensure_future(inline(client, uri, line, 11))
    listed = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line, 11)
        )
    )
    ghosted = await ghost
    after = _d((await status(client))["stats"])
    assert ghosted is not None and listed is not None
    # Both reached their end: neither was superseded or cancelled by the other. (Their text may
    # still be empty: a generation the token cap ends with no place to stop shows nothing.)
    assert after["superseded"] == before["superseded"], (before, after)
    assert after["cancelled"] == before["cancelled"], (before, after)
    done = after["answered"] + after["empty"] - before["answered"] - before["empty"]
    assert done == 2, (before, after)


def _set(client: LanguageClient, completion: dict[str, Any]) -> None:
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"tactful": {"completion": completion}})
    )


async def _stats_when(client: LanguageClient, key: str, at_least: int) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for _ in range(600):
        stats = _d((await status(client))["stats"])
        if stats[key] >= at_least:
            break
        await asyncio.sleep(0.05)
    return stats


async def test_deadline_shows_whole_words_then_the_rest_by_type_along(
    client: LanguageClient,
) -> None:
    """Past completion.deadlineMs the answer is the whole words written so far; the generation
    goes on (typing along does not cancel it), and then type-along serves the whole line."""
    uri = "file:///tmp/latency/deadline.py"
    text = CODE.replace("    files = list_python_files(sys.argv[1])\n", "    files = \n")
    open_doc(client, uri, text)
    line = text.split("\n").index("    files = ")
    await status(client)  # the document is in
    _set(client, {"deadlineMs": 1})
    try:
        before = _d((await status(client))["stats"])
        res = await inline(client, uri, line, 12, automatic=True)
        assert res is not None and res.items, "answered at the deadline"
        part = res.items[0].insert_text
        mid = _d((await status(client))["stats"])
        assert mid["partial"] == before["partial"] + 1, (part, mid)
        assert part.strip() and part == part[: stop_point(part)], f"not cut at a stop: {part!r}"
        # Type the first character while the model still writes: answered by type-along, and
        # the generation is not cancelled.
        change_doc(client, uri, 2, part[0], (line, 12), (line, 12))
        res2 = await inline(client, uri, line, 13, automatic=True)
        assert res2 is not None and res2.items and res2.items[0].insert_text.startswith(part[1:])
        after = await _stats_when(client, "extended", before["extended"] + 1)
        assert after["extended"] == before["extended"] + 1, after
        assert after["model_calls"] == mid["model_calls"], "typing along started a model call"
        # The whole suggestion is served now: longer than the part that was shown.
        change_doc(client, uri, 3, part[1], (line, 13), (line, 13))
        res3 = await inline(client, uri, line, 14, automatic=True)
        assert res3 is not None and res3.items
        rest = res3.items[0].insert_text
        assert rest.startswith(part[2:]) and len(rest) > len(part) - 2, (part, rest)
        assert res3.items[0].command.arguments == res.items[0].command.arguments
        final = _d((await status(client))["stats"])
        assert final["model_calls"] == mid["model_calls"]
    finally:
        _set(client, {"deadlineMs": 0})


async def test_deadline_continuation_is_cancelled_by_an_edit_that_diverges(
    client: LanguageClient,
) -> None:
    uri = "file:///tmp/latency/deadline-cancel.py"
    text = CODE.replace("    files = list_python_files(sys.argv[1])\n", "    files = \n")
    open_doc(client, uri, text)
    line = text.split("\n").index("    files = ")
    await status(client)
    _set(client, {"deadlineMs": 1})
    try:
        before = _d((await status(client))["backend"])
        res = await inline(client, uri, line, 12, automatic=True)
        assert res is not None and res.items
        part = res.items[0].insert_text
        still_writing = _d((await status(client))["backend"])["finished"] == before["finished"]
        # Type something the suggestion does not say: the background generation is cancelled.
        other = "#" if part[0] != "#" else "@"
        change_doc(client, uri, 2, other, (line, 12), (line, 12))
        await inline(client, uri, line, 13, automatic=True)
        after = _d((await status(client))["backend"])
        if still_writing:  # (a fast machine may have finished the line already)
            assert after["cancelled"] >= before["cancelled"] + 1, (before, after)
    finally:
        _set(client, {"deadlineMs": 0})


def _texts(res: types.InlineCompletionList | None) -> list[str]:
    return [item.insert_text for item in res.items] if res is not None else []  # type: ignore[misc]


async def test_a_long_line_elsewhere_does_not_keep_a_document_from_its_answer(
    client: LanguageClient,
) -> None:
    """Issue 28: a 30 KB single line of digits (a token per digit) is being completed when a
    small document asks: the small one gets the suggestion it gets alone (the long line's
    generation gives the model way or is cancelled), the long line is answered too, and its next
    request writes what a fresh copy of it writes (what it prefilled before it gave way is
    consistent). Untimed: the delay is measured by ``tactful bench longline``."""
    # The fixture's settings (the deadline tests above replaced them: the cascade would judge),
    # and each document's prompt its own text only.
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={
                "tactful": {
                    "flags": {"enable": False},
                    "cdhf": {"enable": False},
                    "completion": {"cache": False, "deadlineMs": 0},
                    "context": {"tokens": 0},  # no snippets of the other open documents
                }
            }
        )
    )
    long_text = "x = " + "3141592653589793238462643383279502884197" * 770
    b_text = "# fair scheduling\n" + CODE.replace("    return found\n", "    return ")
    b_line = b_text.split("\n").index("    return ")
    a_uri, b_uri = "file:///tmp/latency/long-a.txt", "file:///tmp/latency/small-b.py"
    open_doc(client, a_uri, long_text)
    open_doc(client, b_uri, b_text)
    first_a = asyncio.ensure_future(inline(client, a_uri, 0, len(long_text)))
    await asyncio.sleep(0.05)
    b = await inline(client, b_uri, b_line, 11)
    assert await first_a is not None, "the long line's request is answered (maybe with nothing)"
    again = await inline(client, a_uri, 0, len(long_text))
    open_doc(client, "file:///tmp/latency/long-copy.txt", long_text)
    fresh = await inline(client, "file:///tmp/latency/long-copy.txt", 0, len(long_text))
    assert _texts(again) == _texts(fresh)
    open_doc(client, "file:///tmp/latency/small-copy.py", b_text)
    alone = await inline(client, "file:///tmp/latency/small-copy.py", b_line, 11)
    assert _texts(b) == _texts(alone) and _texts(b) and _texts(b)[0].strip(), (b, alone)
