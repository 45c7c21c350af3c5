"""Post-processing: stop rules and never an empty suggestion."""

from __future__ import annotations

from tactful.completion.context import build_context
from tactful.completion.postprocess import postprocess


def pp(text: str, raw: str, language: str = "python") -> str | None:
    i = text.index("|")
    return postprocess(raw, build_context(text.replace("|", "", 1), i, language))


def test_single_line_stops_at_newline() -> None:
    assert pp("x = len(|", "items)\nprint(x)") == "items)"
    assert pp("x = len(|)", "items)\nprint(x)") == "items"


def test_block_cut_at_dedent_and_prose() -> None:
    raw = "if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n# Example usage:\nprint(fib(10))"
    assert (
        pp("def fib(n):\n    |", raw)
        == "if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)"
    )


def test_code_fence_and_chat_tokens() -> None:
    assert pp("def f():\n    |", "return 1\n```\n\nThis function returns one.") == "return 1"
    assert pp("x = |", "1<|im_end|>") == "1"


def test_prose_drift() -> None:
    raw = "return a + b\n\nThis function adds two numbers and returns the result."
    assert pp("def add(a, b):\n    |", raw) == "return a + b"


def test_repetition() -> None:
    raw = "x = 1\n    x = 1\n    x = 1"
    assert pp("def f():\n    |", raw) == "x = 1"
    assert pp("x = |", "ab ab ab ab ab ab") == "ab"


def test_suffix_overlap_and_next_line() -> None:
    assert pp("print(|)", "'hello')") == "'hello'"
    assert pp("def f():\n    |\n    return y", "y = 2\n    return y") == "y = 2"


def test_never_empty_or_whitespace() -> None:
    assert pp("x = |", "   \n\n") is None
    assert pp("x = |", "") is None
    assert pp("def f():\n    |", "```python") is None


def test_braces_block_end() -> None:
    raw = "return a + b;\n}\n\nint main() {"
    assert pp("int add(int a, int b) {\n    |", raw, "c") == "return a + b;"


def test_single_line_generation_stops_when_the_model_ends_the_line() -> None:
    """Single-line: once the model writes a newline, even first, nothing after it is shown, so
    the generation stops there instead of writing the next line for nothing."""
    from tactful.completion.request import make_generate_request
    from tactful.config import Settings

    def stop(text: str, raw: str) -> bool:
        i = text.index("|")
        ctx = build_context(text.replace("|", "", 1), i, "python")
        check = make_generate_request(ctx, Settings(), None, fim=False).should_stop
        assert callable(check)
        return bool(check(raw))

    assert stop("x = len(|", "\n    y = 2")
    assert stop("x = len(|", "items)\n")
    assert not stop("x = len(|", "items)")
    # A block (after "def f():") goes on past its first newline.
    assert not stop("def f():|", "\n    return 1")
