"""Fail when a module of server/tactful is over 600 lines or a function over 60 (issue #26: a
unit a reviewer can read at once). Run by scripts/test.sh with the linters."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


def problems(root: Path) -> list[str]:
    out: list[str] = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            out.append(f"{path}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(
                        f"{path}:{node.lineno}: {node.name} is {n} lines "
                        f"(at most {MAX_FUNCTION_LINES})"
                    )
    return out


def main() -> int:
    root = Path(__file__).resolve().parents[1] / "server" / "tactful"
    found = problems(root)
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
