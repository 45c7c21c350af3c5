"""The server's own copy of open documents, with LSP line rules and UTF-16 positions.

LSP lines end at ``\\n``, ``\\r\\n`` or ``\\r`` only (``str.splitlines`` also splits on form
feeds and U+2028, which would shift every position after them), and positions count UTF-16
code units by default. Plain data, no pygls: unit-tested on its own.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

_EOL = re.compile(r"\r\n|\r|\n")


def line_starts(text: str) -> list[int]:
    """Offsets (code points) where each LSP line starts."""
    return [0] + [m.end() for m in _EOL.finditer(text)]


def _utf16_len(s: str) -> int:
    return len(s) + sum(1 for ch in s if ord(ch) > 0xFFFF)


def _col_to_index(line: str, col: int, encoding: str) -> int:
    """Code-point index in ``line`` of a column in the client's units (clamped to the line)."""
    if encoding == "utf-32":
        return min(col, len(line))
    units = 0
    for i, ch in enumerate(line):
        if units >= col:
            return i
        o = ord(ch)
        if encoding == "utf-8":
            units += 1 if o < 0x80 else 2 if o < 0x800 else 3 if o < 0x10000 else 4
        else:
            units += 2 if o > 0xFFFF else 1
    return len(line)


def _index_to_col(line: str, index: int, encoding: str) -> int:
    head = line[:index]
    if encoding == "utf-32":
        return len(head)
    if encoding == "utf-8":
        return len(head.encode("utf-8", "surrogatepass"))
    return _utf16_len(head)


@dataclass
class Document:
    """One open document: text, version, language, and cached line starts."""

    uri: str
    text: str
    language_id: str = ""
    version: int | None = None
    encoding: str = "utf-16"
    _starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._starts = line_starts(self.text)

    @property
    def line_count(self) -> int:
        return len(self._starts)

    def line_text(self, line: int) -> str:
        """Line ``line`` without its end-of-line characters ('' past the end)."""
        if line < 0 or line >= len(self._starts):
            return ""
        start = self._starts[line]
        end = self._starts[line + 1] if line + 1 < len(self._starts) else len(self.text)
        return self.text[start:end].rstrip("\r\n")

    def offset_at(self, line: int, character: int) -> int:
        """Code-point offset of an LSP position; clamped to the line end and the document end."""
        if line < 0:
            return 0
        if line >= len(self._starts):
            return len(self.text)
        return self._starts[line] + _col_to_index(
            self.line_text(line), max(0, character), self.encoding
        )

    def position_at(self, offset: int) -> tuple[int, int]:
        """LSP (line, character) of a code-point offset."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._starts, offset) - 1
        start = self._starts[line]
        text = self.line_text(line)
        return line, _index_to_col(text, min(offset - start, len(text)), self.encoding)

    def apply_change(
        self, text: str, start: tuple[int, int] | None = None, end: tuple[int, int] | None = None
    ) -> None:
        """Apply one content change: a whole new text, or a replacement of a range."""
        if start is None or end is None:
            self.text = text
        else:
            a = self.offset_at(*start)
            b = max(a, self.offset_at(*end))
            self.text = self.text[:a] + text + self.text[b:]
        self._starts = line_starts(self.text)


class Documents:
    """Open documents by URI."""

    def __init__(self) -> None:
        self._docs: dict[str, Document] = {}
        self.encoding = "utf-16"

    def open(self, uri: str, text: str, language_id: str, version: int | None) -> Document:
        doc = Document(uri, text, language_id, version, self.encoding)
        self._docs[uri] = doc
        return doc

    def get(self, uri: str) -> Document | None:
        return self._docs.get(uri)

    def close(self, uri: str) -> None:
        self._docs.pop(uri, None)

    def __len__(self) -> int:
        return len(self._docs)

    def uris(self) -> list[str]:
        return list(self._docs)
