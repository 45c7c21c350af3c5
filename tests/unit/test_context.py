"""Context windows and the single-line / block decision."""

from __future__ import annotations

import pytest

from tactful.completion.context import (
    LONG_LINE_BYTES,
    WINDOW_STEP_CHARS,
    WINDOW_STEP_LINES,
    build_context,
)


def ctx_at(text: str, language: str = "python", **kw):  # type: ignore[no-untyped-def]
    """Build a context with the cursor at the '|' marker."""
    i = text.index("|")
    return build_context(text.replace("|", "", 1), i, language, **kw)


@pytest.mark.parametrize(
    ("text", "language", "cls", "multiline"),
    [
        ("def f(x):\n    |", "python", "block_start", True),
        ("def f(x):|", "python", "block_start", True),
        ("x = foo(|)", "python", "line_end", False),
        ("x = foo(|a, b)", "python", "mid_line", False),
        ("# a comment |", "python", "comment", False),
        ("s = 'abc|def'", "python", "string", False),
        ("int main() {\n    |\n}", "c", "block_start", True),
        ("function f() {|", "javascript", "block_start", True),
        ("fn main() {\n    let x = |", "rust", "line_end", False),
        ("func f() {\n\t// todo|", "go", "comment", False),
        ("a = 1\n|", "python", "empty_line", True),
        ("some text |", "plaintext", "line_end", False),
    ],
)
def test_classes(text: str, language: str, cls: str, multiline: bool) -> None:
    c = ctx_at(text, language)
    assert (c.context_class, c.multiline) == (cls, multiline)


def test_block_indent() -> None:
    assert ctx_at("class A:\n    def f(self):|").block_indent == "        "
    assert ctx_at("def f():\n    x = 1\n    |").block_indent == "    "


def test_prefix_suffix_and_line_parts() -> None:
    c = ctx_at("import os\nx = os.pa|th.join\nprint(x)\n")
    assert c.prefix == "import os\nx = os.pa"
    assert c.line_prefix == "x = os.pa" and c.line_suffix == "th.join"
    assert c.suffix.startswith("th.join\nprint(x)")


def test_window_moves_in_steps_so_prompts_share_a_prefix() -> None:
    lines = [f"value_{i} = {i} * 2  # a line of filler text" for i in range(2000)]
    text = "\n".join(lines) + "\n"
    starts = set()
    for k in range(1000, 1010):
        offset = text.index(f"value_{k} =")
        c = build_context(text, offset, "python", context_tokens=500)
        assert len(c.prefix) <= 500 * 3 + 50 * WINDOW_STEP_LINES
        assert c.prefix_start == 0 or text[c.prefix_start - 1] == "\n"
        starts.add(c.prefix_start)
    assert len(starts) <= 2, "the window start must not move on every line"


def test_multiline_setting_off() -> None:
    assert not ctx_at("def f(x):\n    |", multiline_enabled=False).multiline


def test_cursor_class_is_build_contexts_classification() -> None:
    from tactful.cursor import cursor_class

    cases = [
        ("def f(x):\n", 9, "python"),
        ("def f(x):\n    \n", 14, "python"),
        ("x = foo(1, 2)\n", 8, "python"),
        ("# a comment\n", 5, "python"),
        ('s = "abc"\n', 6, "python"),
        ("x = 1\n\n", 6, "python"),
        ("x = 1", 5, "python"),
        ("if (a) {\n", 8, "javascript"),
        ('def f():\n    """Doc.\n\n    More."""\n', 22, "python"),
    ]
    for text, offset, lang in cases:
        got = cursor_class(text[:offset], text[offset:], lang)
        assert got == build_context(text, offset, lang).context_class
    assert cursor_class("def f(x):", "\n", "python") == "block_start"
    assert cursor_class("x = foo(", "1, 2)\n", "python") == "mid_line"


@pytest.mark.parametrize(
    ("prefix", "suffix", "language", "expected"),
    [
        # Inside a docstring, on a blank line: the closing quotes are after the cursor.
        ('def f():\n    """Doc.\n', '\n    More."""\n', "python", "string"),
        # Right after a closed string: no longer inside it.
        ('x = "abc"', "\n", "python", "line_end"),
        # A string being typed (the parse has an error): the open quote on the line decides.
        ('x = "abc', "\nprint(x)\n", "python", "string"),
        ("x = 1  # a comm", None, "python", "comment"),
        # A block comment spanning lines.
        ("int x; /* one\n   two", "\n*/\n", "c", "comment"),
        # A Rust lifetime is no quote when the grammar parses cleanly.
        ("fn f<'a>(x: &'a ", "str) {}\n", "rust", "mid_line"),
        ("fn f<'a>(x: &'a str) {}", "\n", "rust", "line_end"),
        # Auto-closed brackets and quotes after the cursor are still the line's end.
        ("x = foo(", ")\n", "python", "line_end"),
        ("x = foo(", '")\n', "python", "line_end"),
        # Unknown suffix (an imported log): nothing after the cursor.
        ("def f(x):\n    return x", None, "python", "line_end"),
        ("def f(x):\n    ", None, "python", "block_start"),
        ("x = 1\n", None, "python", "empty_line"),
        # Without a grammar: no comment or string (an apostrophe in prose is no quote).
        ("it's a ", "\n", "plaintext", "line_end"),
        ("# note ", "\n", "ruby", "line_end"),
        ("items = [\n  ", "\n", "ruby", "block_start"),
    ],
)
def test_cursor_class_rules(prefix: str, suffix: str | None, language: str, expected: str) -> None:
    from tactful.cursor import CURSOR_CLASSES, cursor_class

    got = cursor_class(prefix, suffix, language)
    assert got == expected and got in CURSOR_CLASSES


@pytest.mark.parametrize(
    "line",
    [
        "1234567890" * 3000,  # 30 KB on one line, one token per digit
        "x = 1; " * 4300,
        "漢字テスト" * 6000,  # 3 bytes a character
        "😀a" * 10000,  # 4 bytes a character (two UTF-16 units)
        "\ud800" * 20000,  # lone surrogates
    ],
)
@pytest.mark.parametrize("fim", [False, True])
def test_prompt_is_capped_on_one_long_line(line: str, fim: bool) -> None:
    """On a line longer than the whole budget the prompt holds at most LONG_LINE_BYTES of it
    before and after the cursor (so at most that many tokens each), cut inside the line; the
    window start moves in steps inside the line."""
    starts = set()
    for k in range(50):
        offset = len(line) - 5000 + k
        c = build_context(line, offset, "python", context_tokens=1500, fim=fim)
        assert len(c.prefix.encode("utf-8", "surrogatepass")) <= LONG_LINE_BYTES
        if fim:
            assert len(c.suffix.encode("utf-8", "surrogatepass")) <= LONG_LINE_BYTES
        assert c.prefix == line[c.prefix_start : offset]
        assert len(c.prefix) >= LONG_LINE_BYTES // 4 - WINDOW_STEP_CHARS
        starts.add(c.prefix_start)
    assert len(starts) <= 2


def test_lines_within_the_budget_keep_the_whole_window() -> None:
    """Ordinary code is not affected by the long-line cap: the window is the budget."""
    text = "".join(f"x_{i} = {i}  # filler\n" for i in range(3000))
    c = build_context(text, len(text), "python", context_tokens=1500)
    assert 1500 * 3 - 32 * 25 <= len(c.prefix) <= 1500 * 3


def test_prompt_tokens_are_capped_with_the_real_tokenizer() -> None:
    """With the embedded model's tokenizer: a 30 KB line of digits gives at most the budget's
    worth of bytes in tokens, far below the model's 8,192 (and a long line far fewer)."""
    import os

    from tactful import paths

    model_dir = paths.cache_dir() / "models" / "smollm2-135m-instruct-bf16"
    if not (model_dir / "tokenizer.json").is_file():
        pytest.skip("the converted embedded model is not here")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.fspath(model_dir / "tokenizer.json"))
    for line in ("1234567890" * 3000, "😀" * 8000):
        c = build_context(line, len(line) - 10, "python", context_tokens=1500)
        n = len(tok.encode(c.prefix, add_special_tokens=False).ids)
        assert n <= LONG_LINE_BYTES < 1500 * 3 < 8192


def test_a_long_line_is_classified_from_a_short_window_and_the_same_way() -> None:
    from tactful import cursor

    # A minified line of 30,000 characters with the cursor inside a string and in code.
    code = "var a=1;" * 2000 + 'var s="abc'
    rest = 'def";' + "var b=2;" * 1700
    assert len(cursor.prefix_window(code)) == cursor.LONG_LINE_WINDOW
    assert cursor.cursor_class(code, rest, "javascript") == "string"
    assert cursor.cursor_class(code + 'def";', "var b=2;" * 1700, "javascript") == "mid_line"
    # Ordinary lines: the window begins at a line start, as long as before.
    text = "q = 0\n" * 2000
    window = cursor.prefix_window(text)
    assert text.endswith(window) and text[-len(window) - 1] == "\n"
    assert cursor.LONG_LINE_WINDOW < len(window) <= cursor.PARSE_WINDOW
