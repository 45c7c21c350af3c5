"""LSP base-protocol framing: a byte stream cut into message bodies, whatever the stream holds.

pygls 2.1.1 reads headers line by line and trusts them: a ``Content-Length`` of 10^12 makes it
try to read that much (MemoryError / OverflowError ends the process), and a header without its
CRLF swallows the next messages. :class:`Framer` replaces that: a body is at most
``max_message`` bytes, and a bigger one is skipped as it arrives (never buffered). It
resynchronises on the next ``Content-Length: N<CRLF>`` line, which cannot occur inside a JSON
body (JSON strings cannot hold a raw CR or LF), so a bad header or a short body never swallows
the next message, and no recovery waits for more bytes than the next header. Plain code: no
JSON, no pygls.
"""

from __future__ import annotations

import re

#: The largest message body accepted (bytes). A document bigger than this cannot be opened.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
#: A header block longer than this (without its blank line) is not a header.
MAX_HEADER_BYTES = 8192


_START = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)
#: A complete Content-Length line: what resynchronises the stream (impossible inside JSON).
_HEADER_LINE = re.compile(rb"content-length[ \t]*:[ \t]*\d+[ \t]*\r\n", re.IGNORECASE)
_CL_LINE = re.compile(rb"content-length[ \t]*:[ \t]*(\d{1,40})[ \t]*", re.IGNORECASE)
_OTHER_HEADER = re.compile(rb"[!-9;-~]+[ \t]*:[^\r\n]*")
_HEADERISH = re.compile(rb"(?:[!-9;-~]+[ \t]*:[^\r\n]*\r\n|\s)*")


class Framer:
    """Incremental framing of the LSP base protocol. ``feed(bytes)`` returns a list of
    ``(body, None)`` for messages and ``(None, problem)`` for what was dropped."""

    def __init__(self, max_message: int = MAX_MESSAGE_BYTES) -> None:
        self.max_message = max_message
        self.buf = bytearray()
        self.need: int | None = None  # body length once a header is read
        self._scanned = 0  # body bytes already searched for a header line
        self._quiet = False  # inside a skipped body or a reported run of garbage

    def feed(self, data: bytes) -> list[tuple[bytes | None, str | None]]:
        self.buf += data
        out: list[tuple[bytes | None, str | None]] = []
        while True:
            if self.need is not None:
                if not self._body(out):
                    break
                continue
            if not self._header(out):
                break
        return out

    def _problem(self, out: list[tuple[bytes | None, str | None]], text: str) -> None:
        if not self._quiet:
            out.append((None, text))
        self._quiet = True

    def _body(self, out: list[tuple[bytes | None, str | None]]) -> bool:
        need = self.need
        assert need is not None
        start = max(0, self._scanned - 64)
        m = _HEADER_LINE.search(self.buf, start, min(len(self.buf), need + 64))
        if m is not None and m.start() < need:
            # A header where the body should be: the body was shorter than announced.
            del self.buf[: m.start()]
            self.need = None
            self._quiet = False
            self._problem(
                out,
                f"a message body was shorter than its Content-Length ({need}); it was dropped",
            )
            self._quiet = False
            return True
        if len(self.buf) < need:
            self._scanned = len(self.buf)
            return False
        body = bytes(self.buf[:need])
        del self.buf[:need]
        self.need = None
        self._scanned = 0
        out.append((body, None))
        return True

    def _header(self, out: list[tuple[bytes | None, str | None]]) -> bool:
        m = _START.search(self.buf)
        if m is None:
            keep = 32  # a header start split across reads
            if len(self.buf) > MAX_HEADER_BYTES:
                dropped = bytes(self.buf[:-keep])
                del self.buf[:-keep]
                if not _HEADERISH.fullmatch(dropped):
                    self._problem(out, "bytes outside any message were dropped")
            return False
        if m.start() > 0:
            dropped = bytes(self.buf[: m.start()])
            del self.buf[: m.start()]
            if not _HEADERISH.fullmatch(dropped):
                self._problem(out, "bytes outside any message were dropped")
        self._quiet = False  # a header start ends any skipped body or reported garbage
        end = self.buf.find(b"\r\n\r\n")
        nxt = _START.search(self.buf, 1)
        if end < 0 or (nxt is not None and nxt.start() < end):
            if nxt is not None:
                del self.buf[: nxt.start()]
                self._problem(out, "a malformed message header was dropped")
                self._quiet = False
                return True
            if len(self.buf) > MAX_HEADER_BYTES:
                del self.buf[:1]
                self._problem(out, "a message header without its blank line was dropped")
                return True
            return False
        header = bytes(self.buf[:end])
        del self.buf[: end + 4]
        lines = header.split(b"\r\n")
        cl = _CL_LINE.fullmatch(lines[0])
        if cl is None or not all(_OTHER_HEADER.fullmatch(line) for line in lines[1:]):
            self._quiet = False
            self._problem(out, "a malformed message header was dropped")
            return True
        n = int(cl.group(1))
        self._quiet = False
        if n == 0:
            self._problem(out, "an empty message (Content-Length: 0) was dropped")
            self._quiet = False
            return True
        if n > self.max_message:
            self._problem(
                out,
                f"a message of {n} bytes is over the limit of {self.max_message} bytes; it was skipped",
            )
            # _quiet stays set: the skipped body is dropped without more reports.
            return True
        self.need = n
        self._scanned = 0
        return True
