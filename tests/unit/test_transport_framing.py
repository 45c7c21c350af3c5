"""The LSP framer (tactful.lsp.framing.Framer): size cap, resynchronisation, split reads."""

from __future__ import annotations

import json

from tactful.lsp.framing import Framer


def frame(obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def bodies(out: list[tuple[bytes | None, str | None]]) -> list[object]:
    return [json.loads(b) for b, _p in out if b is not None]


def problems(out: list[tuple[bytes | None, str | None]]) -> list[str]:
    return [p for _b, p in out if p is not None]


OK = {"jsonrpc": "2.0", "id": 1, "method": "shutdown"}


def test_plain_messages_and_split_reads() -> None:
    data = frame(OK) + b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n" + frame(OK)
    f = Framer()
    out = []
    for i in range(len(data)):  # one byte at a time
        out += f.feed(data[i : i + 1])
    assert bodies(out) == [OK, OK]
    assert problems(out) == []


def test_content_type_after_length() -> None:
    body = json.dumps(OK).encode()
    data = b"Content-Length: %d\r\nContent-Type: x\r\n\r\n%s" % (len(body), body)
    assert bodies(Framer().feed(data)) == [OK]


def test_huge_lengths_are_skipped_and_the_stream_resynchronises() -> None:
    for n in (10**12, 2**63, 10**30):
        f = Framer(max_message=1 << 20)
        out = f.feed(b'Content-Length: %d\r\n\r\n{"a": ' % n + b"x" * 5000)
        out += f.feed(frame(OK))
        assert bodies(out) == [OK], n
        assert len(problems(out)) == 1 and "over the limit" in problems(out)[0]
        assert len(f.buf) < 100  # the skipped body is never kept


def test_bad_header_without_crlf_does_not_wait_for_more_bytes() -> None:
    f = Framer()
    out = f.feed(b"Content-Length: 5\r\nGARBAGE" + frame(OK))
    assert bodies(out) == [OK]
    assert problems(out)
    out = f.feed(b"Content-Length: abc" + frame(OK))
    assert bodies(out) == [OK]


def test_short_body_is_dropped_at_the_next_header() -> None:
    f = Framer()
    out = f.feed(b'Content-Length: 500\r\n\r\n{"short": 1}' + frame(OK))
    assert bodies(out) == [OK]
    assert "shorter" in problems(out)[0]


def test_garbage_between_messages_is_reported_once() -> None:
    f = Framer()
    out = f.feed(b"\x00\xff garbage " * 1000 + frame(OK) + b"more junk" * 10 + frame(OK))
    assert bodies(out) == [OK, OK]
    assert 1 <= len(problems(out)) <= 2


def test_header_without_blank_line_is_bounded() -> None:
    f = Framer()
    out = f.feed(b"Content-Length: 10\r\n" + b"X-Pad: y\r\n" * 2000)
    out += f.feed(frame(OK))
    assert bodies(out) == [OK]
    assert len(f.buf) == 0


def test_zero_length_and_whitespace() -> None:
    f = Framer()
    out = f.feed(b"\r\n\r\nContent-Length: 0\r\n\r\n" + frame(OK))
    assert bodies(out) == [OK]
    assert len(problems(out)) == 1
