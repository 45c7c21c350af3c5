"""Python import resolution over the index: module names of files, relative and absolute
imports, re-exports through ``__init__`` modules and ``from x import *``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tactful.workspace.index import Definition, FileEntry, Import

MAX_REEXPORT_DEPTH = 4


def _module_names(entry: FileEntry, known: set[str]) -> list[str]:
    """The dotted names a Python file is imported by: from its outermost package folder (the
    highest folder chain with ``__init__.py``), and from its workspace folder (and ``src/``)."""
    path = entry.path
    folder, fname = os.path.split(path)
    stem = os.path.splitext(fname)[0]
    parts = [] if stem == "__init__" else [stem]
    d = folder
    while (
        os.path.join(d, "__init__.py") in known or os.path.join(d, "__init__.pyi") in known
    ) and d.startswith(entry.root):
        parts.insert(0, os.path.basename(d))
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    names = []
    # A file in a folder without ``__init__.py`` (a namespace package such as flask's
    # ``sansio/``) is not the top-level module its stem names: its folder-relative names come
    # first, so that its relative imports (``from ..x import y``) resolve from them.
    in_package = d != folder or stem == "__init__" or folder == entry.root
    if parts and in_package:
        names.append(".".join(parts))
    rel = os.path.relpath(path, entry.root)
    rel_parts = os.path.splitext(rel)[0].split(os.sep)
    if rel_parts and rel_parts[-1] == "__init__":
        rel_parts = rel_parts[:-1]
    if rel_parts and all(p.isidentifier() for p in rel_parts):
        if rel_parts[0] in ("src", "lib") and len(rel_parts) > 1:
            names.append(".".join(rel_parts[1:]))
        names.append(".".join(rel_parts))
    if parts and not in_package:
        names.append(".".join(parts))
    out: list[str] = []
    for n in names:
        if n and n not in out:
            out.append(n)
    return out


class ModuleMap:
    """Dotted module name -> file, for the Python files of the index."""

    def __init__(
        self, entries: Iterable[FileEntry], live: Mapping[str, FileEntry] | None = None
    ) -> None:
        py = [e for e in entries if e.language == "python"]
        known = {e.path for e in py}
        #: The index's own dict when given: an edited file's new entry is seen at once (the map
        #: itself only changes when files are added or removed).
        self.entries: Mapping[str, FileEntry] = (
            live if live is not None else {e.path: e for e in py}
        )
        self.by_name: dict[str, str] = {}
        self.name_of: dict[str, str] = {}
        # Sorted: the same files always give the same map, whatever the indexing order.
        for e in sorted(py, key=lambda e: e.path):
            names = _module_names(e, known)
            if names:
                self.name_of[e.path] = names[0]
            for n in names:
                # .py wins over .pyi, the canonical name over a folder-relative one.
                if n not in self.by_name or self.by_name[n].endswith(".pyi"):
                    self.by_name[n] = e.path

    def is_package(self, path: str) -> bool:
        return os.path.splitext(os.path.basename(path))[0] == "__init__"

    def absolute(self, current: str | None, imp: Import) -> str | None:
        """The absolute module name an import refers to, from the importing file ``current``."""
        if imp.level == 0:
            return imp.module
        if current is None or current not in self.name_of:
            return None
        base = self.name_of[current]
        pkg = base.split(".") if self.is_package(current) else base.split(".")[:-1]
        up = imp.level - 1
        if up > len(pkg):
            return None
        pkg = pkg[: len(pkg) - up] if up else pkg
        return ".".join([*pkg, imp.module] if imp.module else pkg) or None

    def file(self, module: str | None) -> FileEntry | None:
        if not module:
            return None
        path = self.by_name.get(module)
        entry = self.entries.get(path) if path else None
        return entry if entry is not None and entry.language == "python" else None

    def resolve(
        self, module: str, name: str, depth: int = 0
    ) -> tuple[FileEntry, Definition | None] | None:
        """Where ``name`` imported from ``module`` is defined: (file, definition), or (file,
        None) when the name is itself a module; follows re-exports."""
        entry = self.file(module)
        if entry is None:
            sub = self.file(f"{module}.{name}")
            return (sub, None) if sub is not None else None
        for d in entry.defs:
            if d.parent is None and d.name == name:
                return entry, d
        sub = self.file(f"{module}.{name}")
        if sub is not None:
            return sub, None
        if depth >= MAX_REEXPORT_DEPTH:
            return None
        for imp in entry.imports:
            target = self.absolute(entry.path, imp)
            if target is None:
                continue
            for orig, bound in imp.names:
                if bound == name and orig != "*":
                    found = self.resolve(target, orig, depth + 1)
                    if found is not None:
                        return found
            if imp.bound == name and not imp.names:
                sub = self.file(imp.module)
                if sub is not None:
                    return sub, None
        for imp in entry.imports:
            if ("*", "*") in imp.names:
                target = self.absolute(entry.path, imp)
                if target is not None:
                    found = self.resolve(target, name, depth + 1)
                    if found is not None and found[1] is not None:
                        return found
        return None


@dataclass
class Binding:
    """A name the current file binds by importing it from the workspace."""

    #: The name as used in the file.
    name: str
    entry: FileEntry
    #: None: the name is a module (``import pkg.x as m``, ``from . import x``).
    definition: Definition | None
    line: int


def bindings(modules: ModuleMap, current: str | None, imports: Iterable[Import]) -> list[Binding]:
    """The names bound by ``imports`` that resolve to files of the workspace, in import order."""
    out: list[Binding] = []
    seen: set[str] = set()
    for imp in imports:
        target = modules.absolute(current, imp)
        if target is None:
            continue
        if not imp.names:
            entry = modules.file(target)
            if entry is not None and imp.bound and imp.bound not in seen:
                if imp.bound != target.split(".")[0] or "." not in target:
                    seen.add(imp.bound)
                    out.append(Binding(imp.bound, entry, None, imp.line))
                else:
                    # ``import pkg.sub``: binds pkg, used as pkg.sub.x; the file is pkg.sub's.
                    seen.add(target)
                    out.append(Binding(target, entry, None, imp.line))
            continue
        for orig, bound in imp.names:
            if orig == "*":
                entry = modules.file(target)
                if entry is not None:
                    for d in entry.defs:
                        if d.parent is None and not d.name.startswith("_") and d.name not in seen:
                            seen.add(d.name)
                            out.append(Binding(d.name, entry, d, imp.line))
                continue
            if bound in seen:
                continue
            found = modules.resolve(target, orig)
            if found is None:
                continue
            if found[0].path == current:
                continue
            seen.add(bound)
            out.append(Binding(bound, found[0], found[1], imp.line))
    return out
