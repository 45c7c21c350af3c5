"""Reading JSON Lines files, plain or gzip-compressed: CUPS study data
(:mod:`tactful.feedback.importers`) and logs to replay (:mod:`tactful.replay.load`). Each caller
decides what a line that is not JSON means (an error, or a line skipped and reported)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


def open_text(path: Path) -> IO[str]:
    """The file as UTF-8 text, gunzipped when it starts with gzip's magic bytes (whatever its
    name); bytes that are not UTF-8 are replaced. Reading a truncated gzip file raises EOFError."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def json_lines(lines: Iterable[str]) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, value, None) for each non-blank line that is JSON, and (line number, None,
    the parser's complaint) for one that is not."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            yield n, None, str(exc)
            continue
        yield n, value, None
