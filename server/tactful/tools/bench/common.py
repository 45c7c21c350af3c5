"""What several benchmarks share (not a benchmark itself): the server they start and its
settings, a typed stretch of a real file and the key-by-key typing of it, the percentile
figures they print, and their common command-line options."""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sysconfig
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tactful import stats
from tactful.tools import lspclient

# ---------------------------------------------------------------- the server


def private_cache_dir(tmp: Path) -> Path:
    """A cache folder for one run: the installed model (linked, not copied) and an empty
    completion cache, so that no run answers from completions cached by an earlier one."""
    from tactful import paths

    models = paths.cache_dir() / "models"
    models.mkdir(parents=True, exist_ok=True)
    (tmp / "models").symlink_to(models, target_is_directory=True)
    return tmp


def completion_only(completion: dict[str, Any], **more: Any) -> dict[str, Any]:
    """Server settings with ``completion`` as given and everything that is not completion
    (flags, the show/hide cascade, the feedback log) off; ``more``: other top-level settings."""
    return {
        "completion": completion,
        "flags": {"enable": False},
        "cdhf": {"enable": False},
        "feedback": {"enable": False},
        **more,
    }


@asynccontextmanager
async def serving(
    name: str, settings: dict[str, Any], root: str | None = None
) -> AsyncIterator[Any]:
    """A started, initialized ``tactful serve`` whose model is ready (else RuntimeError after
    300 s); shut down when the block ends."""
    client, state = await lspclient.start(name, lspclient.serve_cmd(), settings=settings, root=root)
    try:
        if not await lspclient.wait_ready(state, 300):
            raise RuntimeError(f"server not ready: {state}")
        yield client
    finally:
        await lspclient.stop(client)


# ---------------------------------------------------------------- typing


def stdlib_files(names: Sequence[str]) -> list[Path]:
    """Modules of Python's standard library, by file name (real code not written for a benchmark)."""
    return [Path(sysconfig.get_paths()["stdlib"]) / n for n in names]


def pick_stretch(text: str, lines: int, rng: random.Random) -> tuple[str, str, str] | None:
    """A stretch of ``lines`` lines inside a function body (indented 8 spaces, not a comment or
    a string, from line 61 on) to type: the text before it, the stretch, the text after it;
    None when the file has none."""
    all_lines = text.split("\n")
    candidates = [
        i
        for i in range(60, len(all_lines) - lines)
        if all_lines[i].startswith("        ")
        and all_lines[i].strip()
        and not all_lines[i].strip().startswith(("#", '"'))
    ]
    if not candidates:
        return None
    start = rng.choice(candidates)
    before = "\n".join(all_lines[:start]) + "\n"
    typed = "\n".join(all_lines[start : start + lines])
    after = "\n" + "\n".join(all_lines[start + lines :])
    return before, typed, after


async def type_keys(
    client: Any,
    uri: str,
    typed: str,
    line: int,
    key_ms: float,
    rng: random.Random,
    ask: Callable[[int, int], Awaitable[None]],
) -> None:
    """Type ``typed`` a key at a time into the open document ``uri`` (at version 1, the cursor
    at the start of ``line``): a ``didChange`` per key, then ``ask(line, character)`` for the
    position after it, the previous request cancelled when it has not been answered yet, as
    editors do. Keys come every ``key_ms`` on average (0.6-1.4 times that), with a thinking
    pause of 0.4-1.2 s before 8 % of them; returns once the last request has its answer."""
    version, col = 1, 0
    inflight: asyncio.Future[None] | None = None
    for ch in typed:
        version += 1
        lspclient.insert(client, uri, version, line, col, ch)
        if ch == "\n":
            line, col = line + 1, 0
        else:
            col += len(ch.encode("utf-16-le")) // 2
        if inflight is not None and not inflight.done():
            lspclient.cancel_pending(client)
        inflight = asyncio.ensure_future(ask(line, col))
        pause = key_ms / 1000 * rng.uniform(0.6, 1.4)
        if rng.random() < 0.08:
            pause += rng.uniform(0.4, 1.2)  # a thinking pause
        await asyncio.sleep(pause)
    if inflight is not None:
        await inflight


# ---------------------------------------------------------------- figures


def ms(xs: list[float], q: float) -> float | None:
    """The ``q``-th percentile of ``xs`` (milliseconds), rounded for the table; None when empty."""
    v = stats.percentile(xs, q)
    return None if v is None else round(v, 1)


def median_ms(xs: Sequence[float]) -> float | None:
    """The median of ``xs`` (milliseconds), rounded for the table; None when empty."""
    return round(statistics.median(xs), 1) if xs else None


def latency_figures(xs: list[float]) -> dict[str, float | None]:
    """``p50_ms`` (the median) and ``p95_ms`` of latencies in milliseconds, as the tables print
    them."""
    return {"p50_ms": median_ms(xs), "p95_ms": ms(xs, 95)}


# ---------------------------------------------------------------- command line


def add_json_option(p: argparse.ArgumentParser, text: str = "print one JSON object") -> None:
    p.add_argument("--json", action="store_true", help=text)


def add_typing_options(p: argparse.ArgumentParser, *, files: bool = True) -> None:
    """The options of the benchmarks that type real files: the files (positional, unless
    ``files`` is False), ``--key-ms`` and ``--seed``."""
    if files:
        p.add_argument(
            "files", nargs="*", type=Path, help="source files to type (default: stdlib modules)"
        )
    p.add_argument("--key-ms", type=float, default=80, help="mean time between keys (default 80)")
    p.add_argument("--seed", type=int, default=1)
