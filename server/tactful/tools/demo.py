"""``tactful demo``: a real LSP session over stdio against ``tactful serve`` on a sample file.

It starts the server as an editor would, waits for the embedded model, asks for inline
completions at a few real positions (as if the programmer had just typed there), and, when the
server flags lines, prints the flags and their suggested replacements.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsprotocol import types

from tactful.tools import lspclient

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "demo_sample.py"

# (line to cut, keep this much of it): the programmer is typing this line right now.
CUTS = [
    ("        data = json.load(f)", "        data = "),
    ("    return [Item(**row) for row in data]", "    return ["),
    ("        total += item.price * item.quantity", "        total += "),
    (
        "    return [item.name for item in items if item.quantity < threshold]",
        "    return [item.name for item in items if ",
    ),
]


def _print(msg: str = "") -> None:
    print(msg, flush=True)


async def run(sample: Path, server_cmd: list[str], timeout: float) -> int:
    text = sample.read_text(encoding="utf-8")
    diags: dict[str, list[types.Diagnostic]] = {}

    def _diags(params: types.PublishDiagnosticsParams) -> None:
        diags[params.uri] = list(params.diagnostics)

    def _msg(params: types.ShowMessageParams) -> None:
        _print(f"  [server says] {params.message}")

    t0 = time.perf_counter()
    client, state = await lspclient.start(
        "tactful-demo", server_cmd, diagnostics=True, on_diagnostics=_diags, on_message=_msg
    )
    _print(f"tactful demo: started `{' '.join(server_cmd)}`, waiting for the model...")
    if not await lspclient.wait_ready(state, timeout):
        _print(f"model not ready: {state.get('message') or state.get('state')}")
        return 1
    _print(f"model: {state.get('model')} ready after {time.perf_counter() - t0:.1f} s\n")

    for i, (full, typed) in enumerate(CUTS):
        await _complete_cut(client, sample, text, i, full, typed)
    await _print_flags(client, sample, text, diags)
    await lspclient.stop(client)
    return 0


async def _complete_cut(
    client: Any, sample: Path, text: str, i: int, full: str, typed: str
) -> None:
    """Open the sample with one line typed only up to ``typed`` and print what tactful suggests."""
    lines = text.split("\n")
    line_no = lines.index(full)
    lines[line_no] = typed
    doc = "\n".join(lines)
    uri = f"file://{sample.parent}/typing-{i}.py"
    lspclient.open_document(client, uri, doc)
    t1 = time.perf_counter()
    partial_before = (await _stats(client)).get("partial", 0)
    finished_before = (await _stats(client, "backend")).get("finished", 0)
    ghost = await _ghost(client, uri, line_no, len(typed))
    ms = (time.perf_counter() - t1) * 1000
    _print(f"line {line_no + 1}, you typed:  {typed.strip()}")
    if ghost is None:
        _print(f"  (no suggestion: tactful chose not to show one)  [{ms:.0f} ms]")
    else:
        _print(f"  tactful suggests: {_indent(ghost)}   [{ms:.0f} ms]")
        if (await _stats(client)).get("partial", 0) > partial_before:
            # Shown in part at completion.deadlineMs: the model goes on writing, and the
            # editor gets the whole suggestion at the next keystroke (here: asked again).
            whole = await _whole(client, uri, line_no, len(typed), ghost, finished_before)
            done_ms = (time.perf_counter() - t1) * 1000
            _print(f"  ...then, typing along: {_indent(whole, 22)}   [{done_ms:.0f} ms]")
    _print(f"  the file has:     {full.strip()[len(typed.strip()) :]}\n")
    lspclient.close_document(client, uri)


async def _print_flags(
    client: Any, sample: Path, text: str, diags: dict[str, list[types.Diagnostic]]
) -> None:
    """Open the whole sample and print the lines tactful flags (pulled, or pushed)."""
    uri = sample.resolve().as_uri()
    lspclient.open_document(client, uri, text)
    try:
        report = await asyncio.wait_for(
            client.text_document_diagnostic_async(
                types.DocumentDiagnosticParams(text_document=types.TextDocumentIdentifier(uri=uri))
            ),
            timeout=120,
        )
        flags = list(getattr(report, "items", []) or [])
    except Exception as exc:  # a server without flags answers "method not found"
        flags = diags.get(uri, [])
        if not flags:
            _print(f"(no line flags: {exc})")
            return
    if not flags:
        _print(f"No line of {sample.name} looks wrong enough to flag.")
        return
    _print(f"Lines that look wrong in {sample.name}:")
    for d in flags:
        _print(f"  line {d.range.start.line + 1}: {d.message}")


def _indent(text: str, width: int = 17) -> str:
    return text.replace("\n", "\n" + " " * width)


async def _stats(client: Any, part: str = "stats") -> dict[str, Any]:
    """A part of ``tactful.status`` ("stats": the engine's counters, "backend": the model's)."""
    return lspclient.as_dict((await lspclient.status(client)).get(part, {}))


async def _ghost(client: Any, uri: str, line: int, character: int) -> str | None:
    item = lspclient.first_item(await lspclient.inline_completion(client, uri, line, character))
    return None if item is None else lspclient.item_text(item)


async def _whole(client: Any, uri: str, line: int, character: int, part: str, finished: int) -> str:
    """The suggestion once the model has finished it (type-along serves it from then on);
    ``finished``: the model's count of finished generations before the request."""
    for _ in range(300):  # until the model has ended the generation behind the part
        if (await _stats(client, "backend")).get("finished", 0) > finished:
            break
        await asyncio.sleep(0.05)
    return await _ghost(client, uri, line, character) or part


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="tactful demo")
    parser.add_argument(
        "--file", type=Path, default=SAMPLE, help="the sample file (default: the bundled one)"
    )
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(list(argv))
    return asyncio.run(run(args.file, lspclient.serve_cmd(), args.timeout))
