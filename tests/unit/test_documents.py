"""UTF-16 positions and incremental edits on the server's own document copy."""

from __future__ import annotations

from tactful.documents import Document, Documents, line_starts


def test_utf16_columns_for_emoji_and_cjk() -> None:
    doc = Document("u", "a😀b漢c\nx")
    # 'a'=1 unit, '😀'=2 units, 'b'=1, '漢'=1
    assert doc.offset_at(0, 0) == 0
    assert doc.offset_at(0, 1) == 1
    assert doc.offset_at(0, 3) == 2  # after the emoji
    assert doc.offset_at(0, 5) == 4  # after 漢
    assert doc.position_at(2) == (0, 3)
    assert doc.position_at(4) == (0, 5)
    assert doc.position_at(len(doc.text)) == (1, 1)


def test_utf8_and_utf32_encodings() -> None:
    doc = Document("u", "é😀x", encoding="utf-8")
    assert doc.offset_at(0, 2) == 1 and doc.offset_at(0, 6) == 2
    assert doc.position_at(2) == (0, 6)
    doc32 = Document("u", "é😀x", encoding="utf-32")
    assert doc32.offset_at(0, 2) == 2


def test_crlf_and_lone_cr_are_line_ends_but_form_feed_is_not() -> None:
    text = "a\r\nb\rc\x0cd\u2028e\nf"
    assert line_starts(text) == [0, 3, 5, 11]
    doc = Document("u", text)
    assert doc.line_text(0) == "a" and doc.line_text(2) == "c\x0cd\u2028e"
    assert doc.offset_at(3, 0) == text.index("f")


def test_positions_past_the_end_are_clamped() -> None:
    doc = Document("u", "ab\ncd")
    assert doc.offset_at(0, 99) == 2
    assert doc.offset_at(9, 0) == len(doc.text)
    assert doc.offset_at(-1, 0) == 0


def test_incremental_edits() -> None:
    doc = Document("u", "s = '😀😀'\r\nt = 1\r\n")
    doc.apply_change("x", (0, 7), (0, 9))  # replace the second emoji
    assert doc.text == "s = '😀x'\r\nt = 1\r\n"
    doc.apply_change("len(s)", (1, 4), (1, 5))
    assert doc.line_text(1) == "t = len(s)"
    doc.apply_change("whole\n")
    assert doc.text == "whole\n" and doc.line_count == 2


def test_open_documents_over_the_bound_go_dormant_least_recently_used_first() -> None:
    docs = Documents(max_bytes=3 * Document("x", "a" * 1000).size)
    for name in "abcd":
        docs.open(name, name * 1000, "python", 1)
    assert docs.over_budget() == ["a"]  # four of ~1 KB in a bound of three
    assert docs.dormant_uris() == ["a"] and docs.get("a") is not None  # the text stays
    assert docs.use("b") is False  # b was awake; now the most recently used
    docs.open("e", "e" * 1000, "python", 1)
    assert docs.over_budget() == ["c"]
    assert docs.use("a") is True  # awake again; the next check puts the oldest awake to sleep
    assert docs.over_budget() == ["d"]
    assert set(docs.dormant_uris()) == {"c", "d"} and len(docs) == 5 and docs.dormant_count == 3


def test_a_dormant_document_still_takes_edits_and_the_newest_never_sleeps() -> None:
    docs = Documents(max_bytes=10)
    docs.open("big", "x = 1\n" * 100, "python", 1)
    assert docs.over_budget() == []  # alone and over the bound: the newest stays awake
    docs.open("next", "y\n", "python", 1)
    assert docs.over_budget() == ["big"]
    big = docs.get("big")
    assert big is not None and big.dormant
    big.apply_change("z", (1, 0), (1, 5))  # an incremental didChange still applies
    assert big.line_text(1) == "z" and big.line_count == 101
    assert docs.use("big") is True and not big.dormant
    docs.close("big")
    assert docs.use("big") is False and docs.uris() == ["next"]


def test_the_bound_follows_edits_and_closes() -> None:
    one_kb = Document("x", "a" * 1000).size
    docs = Documents(max_bytes=3 * one_kb)
    docs.open("a", "a" * 1000, "python", 1)
    docs.open("b", "b" * 1000, "python", 1)
    assert docs.over_budget() == []
    b = docs.get("b")
    assert b is not None
    b.apply_change("b" * 2500)  # b grows past the bound's room for a
    docs.use("b")
    assert docs.over_budget() == ["a"]
    docs.close("b")  # closing gives its bytes back: a wakes and fits
    assert docs.use("a") is True and docs.over_budget() == []
    docs.open("a", "a" * 100, "python", 2)  # opened again: counted once
    docs.open("c", "c" * 1000, "python", 1)
    assert docs.over_budget() == [] and docs.dormant_uris() == []
