"""The workspace index: per source file, its definitions (with signature lines and a short
excerpt) and its imports, from tree-sitter; kept in memory and persisted in SQLite (plain JSON
rows, never pickles) so that a restart re-reads only the files whose size or mtime changed.

``extract(text, language)`` is the pure part (unit-tested); ``store`` keeps the entries.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tactful import syntax

log = logging.getLogger(__name__)

#: Bump when the extracted data changes: older rows are re-extracted.
FORMAT = 3
SIGNATURE_CHARS = 240
EXCERPT_LINES = 3
EXCERPT_CHARS = 240
MAX_DEFS_PER_FILE = 400
MAX_MEMBERS_PER_CLASS = 60
#: Lines longer than this (data, minified code) are cut to their first and last
#: ``LONG_LINE_KEEP`` characters before a file is parsed (a string or comment that opens or closes
#: there still does): tree-sitter holds the GIL while it parses, whichever thread runs it, and its
#: error recovery on such a line costs about 5 ms per KB (150 ms for a 30 KB minified line).
LONG_LINE_CHARS = 1000
LONG_LINE_KEEP = 80

# A run of more than LONG_LINE_CHARS characters that starts a line (\n, \r\n or a lone \r).
_LONG_LINE = re.compile(rf"(?<![^\r\n])[^\r\n]{{{LONG_LINE_CHARS + 1},}}")


@dataclass
class Definition:
    name: str
    #: function, class, method, variable, class_attribute
    kind: str
    #: 0-based line of the definition's header.
    line: int
    #: The header as written (decorators left out), e.g. ``def f(a, b) -> int:``.
    signature: str
    #: The first lines of the body (docstring first), indented as in the file; may be empty.
    excerpt: str = ""
    #: The class a member belongs to.
    parent: str | None = None
    #: Classes: the base classes as written.
    bases: tuple[str, ...] = ()

    def to_json(self) -> list[Any]:
        return [
            self.name,
            self.kind,
            self.line,
            self.signature,
            self.excerpt,
            self.parent,
            list(self.bases),
        ]

    @classmethod
    def from_json(cls, v: list[Any]) -> Definition:
        return cls(v[0], v[1], int(v[2]), v[3], v[4], v[5], tuple(v[6]))


@dataclass
class Import:
    """``from <level dots><module> import name as bound`` or ``import module as bound``."""

    module: str
    level: int = 0
    #: (name, bound as); empty for ``import module``.
    names: tuple[tuple[str, str], ...] = ()
    #: ``import a.b as c`` binds c; ``import a.b`` binds a.
    bound: str | None = None
    line: int = 0

    def to_json(self) -> list[Any]:
        return [self.module, self.level, [list(n) for n in self.names], self.bound, self.line]

    @classmethod
    def from_json(cls, v: list[Any]) -> Import:
        return cls(v[0], int(v[1]), tuple((a, b) for a, b in v[2]), v[3], int(v[4]))


@dataclass
class FileEntry:
    path: str
    root: str
    language: str
    mtime_ns: int = 0
    size: int = 0
    defs: list[Definition] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)

    @functools.cached_property
    def rel(self) -> str:
        return os.path.relpath(self.path, self.root).replace(os.sep, "/")

    def data_json(self) -> str:
        return json.dumps(
            {
                "language": self.language,
                "defs": [d.to_json() for d in self.defs],
                "imports": [i.to_json() for i in self.imports],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_row(cls, path: str, root: str, mtime_ns: int, size: int, data: str) -> FileEntry:
        d = json.loads(data)
        return cls(
            path,
            root,
            d["language"],
            mtime_ns,
            size,
            [Definition.from_json(x) for x in d["defs"]],
            [Import.from_json(x) for x in d["imports"]],
        )


# --- extraction -----------------------------------------------------------------------------
def _text(src: bytes, node: Any) -> str:
    return src[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _header(src: bytes, node: Any, body: Any | None) -> str:
    end = body.start_byte if body is not None else node.end_byte
    # Python: up to the ``:`` that ends the header (a comment may sit between it and the body).
    colons = [c.end_byte for c in node.children if c.type == ":" and c.end_byte <= end]
    if colons:
        end = colons[-1]
    text = src[node.start_byte : end].decode("utf-8", "replace").rstrip()
    if len(text) > SIGNATURE_CHARS:
        text = text[:SIGNATURE_CHARS].rstrip() + " ..."
    return text


def _indent_at(src: bytes, node: Any) -> str:
    start = src.rfind(b"\n", 0, node.start_byte) + 1
    return src[start : node.start_byte].decode("utf-8", "replace")


def _excerpt(src: bytes, body: Any | None, max_lines: int = EXCERPT_LINES) -> str:
    """The first EXCERPT_LINES lines of a body, as in the file (with their indentation)."""
    if body is None or body.start_byte >= body.end_byte:
        return ""
    start = src.rfind(b"\n", 0, body.start_byte) + 1
    chunk = src[start : min(body.end_byte, start + EXCERPT_CHARS * 2)].decode("utf-8", "replace")
    lines = [ln.rstrip() for ln in chunk.split("\n")]
    out: list[str] = []
    size = 0
    for ln in lines:
        if not ln.strip():
            continue
        if len(out) >= max_lines or size + len(ln) > EXCERPT_CHARS:
            break
        out.append(ln)
        size += len(ln) + 1
    if out and out[0].strip() in ('"""', "'''", 'r"""') and len(out) == 1:
        return ""
    for q in ('"""', "'''"):
        if "\n".join(out).count(q) % 2:
            # A docstring cut short: close it, or the code after it would read as a string.
            out[-1] = out[-1] + (" ..." if out[-1].strip() != q else "") + q
            break
    return "\n".join(out)


def _py_assign_names(src: bytes, node: Any) -> list[str]:
    """Names bound by a module- or class-level ``NAME = ...`` / ``NAME: T = ...``."""
    if node.type != "expression_statement" or node.named_child_count != 1:
        return []
    a = node.named_children[0]
    if a.type != "assignment":
        return []
    left = a.child_by_field_name("left")
    if left is None:
        return []
    if left.type == "identifier":
        return [_text(src, left)]
    if left.type in ("pattern_list", "tuple_pattern"):
        return [_text(src, c) for c in left.named_children if c.type == "identifier"]
    return []


_CLOSERS = {"(": ")", "[": "]", "{": "}"}


def _py_line(src: bytes, node: Any) -> str:
    """An assignment on one line: the whole statement when short, else its start with the
    brackets it opened closed again (``X = Union[ ...]``), so it still reads as code."""
    text = _text(src, node)
    one = " ".join(text.split())
    if "\n" not in text.strip() and len(one) <= 160:
        return text.strip()
    if len(one) <= 160 and '"""' not in one and "'''" not in one:
        return one
    line = text.split("\n", 1)[0].rstrip()[:160]
    stack: list[str] = []
    quote = ""
    for ch in line:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in _CLOSERS:
            stack.append(_CLOSERS[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
    if quote:
        return line.split("=", 1)[0].rstrip() + " = ..."
    return line + " ..." + "".join(reversed(stack))


def _py_defs(src: bytes, block: Any, parent: str | None, out: list[Definition]) -> None:
    """Append the definitions of a Python block (a module or a class body) to ``out``: functions,
    classes with their members (top-level classes only), assignments, and what module-level
    ``if``/``try`` blocks define; at most :data:`MAX_DEFS_PER_FILE` in all."""
    for child in block.named_children:
        node = child
        if node.type == "decorated_definition":
            inner = node.child_by_field_name("definition")
            if inner is None:
                continue
            node = inner
        if node.type == "function_definition":
            d = _py_function(src, node, parent)
            if d is None:
                continue
            out.append(d)
        elif node.type == "class_definition":
            d = _py_class(src, node, parent)
            if d is None:
                continue
            out.append(d)
            body = node.child_by_field_name("body")
            if parent is None and body is not None:
                before = len(out)
                _py_defs(src, body, d.name, out)
                del out[before + MAX_MEMBERS_PER_CLASS :]
        elif node.type == "expression_statement":
            out += _py_assignments(src, node, parent)
        elif parent is None and node.type in ("if_statement", "try_statement"):
            # ``if TYPE_CHECKING:`` / ``try: ... except ImportError:`` at module level.
            for sub in _py_branch_blocks(node):
                _py_defs(src, sub, None, out)
        if len(out) >= MAX_DEFS_PER_FILE:
            return


def _py_function(src: bytes, node: Any, parent: str | None) -> Definition | None:
    """A function (a method inside a class) with its header and the first lines of its body."""
    name = node.child_by_field_name("name")
    body = node.child_by_field_name("body")
    if name is None:
        return None
    return Definition(
        _text(src, name),
        "method" if parent else "function",
        node.start_point[0],
        _indent_at(src, node) + _header(src, node, body),
        _excerpt(src, body),
        parent,
    )


def _py_class(src: bytes, node: Any, parent: str | None) -> Definition | None:
    """A class with its header, its base classes and the start of its docstring (its members
    are separate definitions)."""
    name = node.child_by_field_name("name")
    body = node.child_by_field_name("body")
    if name is None:
        return None
    sup = node.child_by_field_name("superclasses")
    bases = tuple(
        _text(src, c)
        for c in (sup.named_children if sup is not None else [])
        if c.type in ("identifier", "attribute")
    )
    return Definition(
        _text(src, name),
        "class",
        node.start_point[0],
        _indent_at(src, node) + _header(src, node, body),
        _py_class_doc(src, body),
        parent,
        bases,
    )


def _py_class_doc(src: bytes, body: Any | None) -> str:
    """The first lines of a class's docstring (only its first line when that closes it); ''
    when the body does not start with a string."""
    if body is None or not body.named_child_count:
        return ""
    first = body.named_children[0]
    if not (
        first.type == "expression_statement"
        and first.named_children
        and (first.named_children[0].type == "string")
    ):
        return ""
    doc = _excerpt(src, body, 2)
    first_line = doc.split("\n", 1)[0]
    if first_line.count('"""') >= 2 or first_line.count("'''") >= 2:
        return first_line
    return doc


def _py_assignments(src: bytes, node: Any, parent: str | None) -> list[Definition]:
    """The names a module- or class-level assignment binds, each with the statement on one line."""
    return [
        Definition(
            n,
            "class_attribute" if parent else "variable",
            node.start_point[0],
            _indent_at(src, node) + _py_line(src, node),
            "",
            parent,
        )
        for n in _py_assign_names(src, node)
    ]


def _py_branch_blocks(node: Any) -> Iterator[Any]:
    """The blocks of an ``if``/``try`` statement: its own, then its clauses' (else, except, elif,
    finally)."""
    for sub in node.named_children:
        if sub.type == "block":
            yield sub
        elif sub.type in ("else_clause", "except_clause", "elif_clause", "finally_clause"):
            for b in sub.named_children:
                if b.type == "block":
                    yield b


def _dotted(src: bytes, node: Any) -> str:
    return _text(src, node).replace(" ", "")


def _py_imports(src: bytes, root: Any) -> list[Import]:
    out: list[Import] = []
    stack = [root]
    while stack:
        node = stack.pop()
        t = node.type
        if t == "import_statement":
            for c in node.named_children:
                if c.type == "dotted_name":
                    mod = _dotted(src, c)
                    out.append(Import(mod, 0, (), mod.split(".")[0], node.start_point[0]))
                elif c.type == "aliased_import":
                    n, a = c.child_by_field_name("name"), c.child_by_field_name("alias")
                    if n is not None and a is not None:
                        out.append(
                            Import(_dotted(src, n), 0, (), _text(src, a), node.start_point[0])
                        )
            continue
        if t == "import_from_statement":
            mod_node = node.child_by_field_name("module_name")
            level, module = 0, ""
            if mod_node is not None:
                raw = _dotted(src, mod_node)
                level = len(raw) - len(raw.lstrip("."))
                module = raw.lstrip(".")
            names: list[tuple[str, str]] = []
            for c in node.children_by_field_name("name"):
                if c.type == "dotted_name":
                    n = _dotted(src, c)
                    names.append((n, n))
                elif c.type == "aliased_import":
                    n2, a = c.child_by_field_name("name"), c.child_by_field_name("alias")
                    if n2 is not None and a is not None:
                        names.append((_dotted(src, n2), _text(src, a)))
            if any(c.type == "wildcard_import" for c in node.named_children):
                names.append(("*", "*"))
            out.append(Import(module, level, tuple(names), None, node.start_point[0]))
            continue
        if t in ("string", "comment"):
            continue
        stack.extend(reversed(node.named_children))
    out.sort(key=lambda i: i.line)
    return out


#: Generic (non-Python) definition node types that have a ``name`` field.
_GENERIC_DEFS = {
    "function_declaration": "function",
    "function_definition": "function",
    "function_item": "function",
    "method_declaration": "method",
    "method_definition": "method",
    "class_declaration": "class",
    "class_specifier": "class",
    "struct_specifier": "class",
    "struct_item": "class",
    "enum_item": "class",
    "trait_item": "class",
    "interface_declaration": "class",
    "type_alias_declaration": "class",
    "enum_declaration": "class",
}
_GENERIC_CONTAINERS = {
    "class_body",
    "declaration_list",
    "field_declaration_list",
    "export_statement",
}


def _generic_defs(
    src: bytes, node: Any, parent: str | None, out: list[Definition], depth: int
) -> None:
    for c in node.named_children:
        if len(out) >= MAX_DEFS_PER_FILE:
            return
        kind = _GENERIC_DEFS.get(c.type)
        if c.type in _GENERIC_CONTAINERS or (c.type == "impl_item" and depth < 2):
            _generic_defs(src, c, parent, out, depth + 1)
            continue
        if kind is None:
            continue
        name = c.child_by_field_name("name")
        if name is None:
            decl = c.child_by_field_name("declarator")
            while decl is not None and decl.child_by_field_name("declarator") is not None:
                decl = decl.child_by_field_name("declarator")
            name = decl
        if name is None:
            continue
        body = c.child_by_field_name("body")
        nm = _text(src, name)
        out.append(
            Definition(
                nm,
                "method" if parent and kind == "function" else kind,
                c.start_point[0],
                _indent_at(src, c) + _header(src, c, body).rstrip("{ ").rstrip(),
                "",
                parent,
            )
        )
        if kind == "class" and body is not None and depth < 2:
            _generic_defs(src, body, nm, out, depth + 1)


def cut_long_lines(text: str) -> tuple[str, int]:
    """``text`` as tree-sitter gets it: each line longer than ``LONG_LINE_CHARS`` cut to its
    first and last ``LONG_LINE_KEEP`` characters (line breaks kept, so every definition keeps its
    line number), and how many lines were cut."""
    if len(text) <= LONG_LINE_CHARS:
        return text, 0
    return _LONG_LINE.subn(lambda m: m[0][:LONG_LINE_KEEP] + m[0][-LONG_LINE_KEEP:], text)


def extract(text: str, language: str) -> tuple[list[Definition], list[Import]]:
    """Definitions and imports of one file's text (empty when the language has no grammar)."""
    tree = syntax.parse(text, language)
    if tree is None:
        return [], []
    src = text.encode("utf-8", "surrogatepass")
    defs: list[Definition] = []
    if language == "python":
        _py_defs(src, tree.root_node, None, defs)
        return defs, _py_imports(src, tree.root_node)
    _generic_defs(src, tree.root_node, None, defs, 0)
    return defs, []
