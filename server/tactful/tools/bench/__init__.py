"""Benchmarks that print figures: ``tactful bench NAME [ARGS]`` runs ``tactful.tools.bench.NAME.main``.

Each benchmark measures a baseline in the same run and prints median, p95 and the ratio.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence

#: Modules of this package that are not benchmarks (what several benchmarks share).
HELPERS = frozenset({"common"})


def available() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.iter_modules(__path__)
        if not m.name.startswith("_") and m.name not in HELPERS
    )


def main(argv: Sequence[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: tactful bench NAME [ARGS...]\n\nbenchmarks: " + ", ".join(names))
        return 0 if argv else 2
    if argv[0] not in names:
        print(
            f"tactful bench: unknown benchmark {argv[0]!r}; have: {', '.join(names)}",
            file=sys.stderr,
        )
        return 2
    return int(importlib.import_module(f"tactful.tools.bench.{argv[0]}").main(list(argv[1:])) or 0)
