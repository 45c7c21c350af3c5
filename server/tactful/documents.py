"""The server's own copy of open documents, with LSP line rules and UTF-16 positions.

LSP lines end at ``\\n``, ``\\r\\n`` or ``\\r`` only (``str.splitlines`` also splits on form
feeds and U+2028, which would shift every position after them), and positions count UTF-16
code units by default. Plain data, no pygls: unit-tested on its own.

Open documents are bounded (``Documents.max_bytes``, the ``openDocumentsMb`` setting): LSP lets
a server neither refuse a ``didOpen`` nor forget an open document's text (the next incremental
``didChange`` is relative to it), so the text of every open document stays; what tactful
derives from a document (its flags, its entries in the repository index, the model's cache for
it) is what grows with many or huge documents. Beyond the bound, the least recently used
documents go *dormant*: the server drops their derived state as on a close, keeps their text, and
wakes them (as on an open) when they are edited or asked for a completion again.
"""

from __future__ import annotations

import bisect
import re
import sys
from array import array
from collections import OrderedDict
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
    #: Dropped from the server's bounded set (see the module doc): text kept, derived state not.
    dormant: bool = False
    #: Line starts, 8 bytes a line (a list of ints takes 36).
    _starts: array[int] = field(default_factory=lambda: array("q"), repr=False)

    def __post_init__(self) -> None:
        self._starts = array("q", line_starts(self.text))

    @property
    def size(self) -> int:
        """Bytes the text takes in memory."""
        return sys.getsizeof(self.text)

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
        self._starts = array("q", line_starts(self.text))


#: Default bound on the text of the open documents whose derived state is kept (bytes).
DEFAULT_MAX_BYTES = 64 << 20


class Documents:
    """Open documents by URI, least recently used first, with a bound on the text of the ones
    that are not dormant (``max_bytes``; see the module doc).

    The awake documents' total is kept as each one's size when it was last opened or used (the
    server calls :meth:`use` after every edit), so checking the bound costs nothing while it
    holds."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._docs: OrderedDict[str, Document] = OrderedDict()
        #: Awake documents' sizes as last counted, and their sum.
        self._counted: dict[str, int] = {}
        self._awake_bytes = 0
        self.encoding = "utf-16"
        self.max_bytes = max_bytes
        #: Documents that went dormant so far.
        self.dormant_count = 0

    def _count(self, doc: Document) -> None:
        size = 0 if doc.dormant else doc.size
        self._awake_bytes += size - self._counted.pop(doc.uri, 0)
        if size:
            self._counted[doc.uri] = size

    def open(self, uri: str, text: str, language_id: str, version: int | None) -> Document:
        self.close(uri)
        doc = Document(uri, text, language_id, version, self.encoding)
        self._docs[uri] = doc
        self._count(doc)
        return doc

    def get(self, uri: str) -> Document | None:
        return self._docs.get(uri)

    def use(self, uri: str) -> bool:
        """Mark ``uri`` as just used (edited, completed in); True when it was dormant and is
        awake again (the caller rebuilds its derived state)."""
        doc = self._docs.get(uri)
        if doc is None:
            return False
        self._docs.move_to_end(uri)
        woke, doc.dormant = doc.dormant, False
        self._count(doc)
        return woke

    def over_budget(self) -> list[str]:
        """Put the least recently used documents to sleep until the awake ones' text fits
        ``max_bytes``; the most recently used one always stays awake. Returns the URIs that
        went dormant now (the caller drops their derived state)."""
        out: list[str] = []
        if self._awake_bytes <= self.max_bytes:
            return out
        newest = next(reversed(self._docs), None)
        for doc in list(self._docs.values()):
            if self._awake_bytes <= self.max_bytes or doc.uri == newest:
                break
            if not doc.dormant:
                doc.dormant = True
                self._count(doc)
                out.append(doc.uri)
        self.dormant_count += len(out)
        return out

    def close(self, uri: str) -> None:
        if self._docs.pop(uri, None) is not None:
            self._awake_bytes -= self._counted.pop(uri, 0)

    def __len__(self) -> int:
        return len(self._docs)

    def uris(self) -> list[str]:
        return list(self._docs)

    def dormant_uris(self) -> list[str]:
        return [u for u, d in self._docs.items() if d.dormant]
