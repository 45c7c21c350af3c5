"""tree-sitter parsers for the languages tactful knows, from the per-language wheels.

``parser_for(language_id)`` returns None for languages without a grammar; callers then use
line and indentation rules. Grammars load lazily and once.
"""

from __future__ import annotations

import functools
import importlib
import logging
from typing import Any

log = logging.getLogger(__name__)

# LSP language id -> (module, function returning the grammar pointer)
GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "javascriptreact": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "typescriptreact": ("tree_sitter_typescript", "language_tsx"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "java": ("tree_sitter_java", "language"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
}

#: Languages whose blocks are delimited by indentation rather than braces.
INDENT_LANGUAGES = {"python", "yaml", "nim", "coffeescript", "haskell", "fsharp"}

#: File extensions to LSP language ids, for the command line.
EXTENSIONS = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascriptreact",
    ".ts": "typescript",
    ".tsx": "typescriptreact",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".java": "java",
    ".go": "go",
    ".rs": "rust",
    ".rb": "ruby",
    ".lua": "lua",
    ".sh": "shellscript",
    ".md": "markdown",
    ".txt": "plaintext",
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
}


def language_from_path(path: str) -> str:
    """LSP language id guessed from a file name ('plaintext' when unknown)."""
    import os

    return EXTENSIONS.get(os.path.splitext(path)[1].lower(), "plaintext")


@functools.cache
def language(language_id: str) -> Any | None:
    spec = GRAMMARS.get(language_id)
    if spec is None:
        return None
    try:
        from tree_sitter import Language

        mod = importlib.import_module(spec[0])
        return Language(getattr(mod, spec[1])())
    except Exception as exc:  # a broken or missing grammar wheel: fall back to line rules
        log.warning("no tree-sitter grammar for %s: %s", language_id, exc)
        return None


def parser_for(language_id: str) -> Any | None:
    lang = language(language_id)
    if lang is None:
        return None
    from tree_sitter import Parser

    return Parser(lang)


def parse(text: str, language_id: str) -> Any | None:
    """The tree of ``text`` or None when the language has no grammar."""
    parser = parser_for(language_id)
    if parser is None:
        return None
    return parser.parse(text.encode("utf-8", "surrogatepass"))
