"""Real project bugs for the flag classifiers: ``shared/data/realfix`` (real one-line fixes from
the git history of 12 Python projects, each file before and after the fix), its filters, a
sample capped per project, and the dataset samples of both versions of each file. The buggy
version's changed line is its bug; the fixed version is correct code (no bug line), which
measures how many flags a correct file gets. Samples are grouped by repository for
leave-project-out evaluation. Training and benchmarks only (never needed at run time).
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tactful.flags.datasets import shared_data
from tactful.flags.fixes import python_compiles

REALFIX = shared_data("TACTFUL_REALFIX", "realfix", "realfix_dev.jsonl.gz")
#: A row whose changed line only sets version metadata is no bug (LOADER.md's spot-check).
NOT_A_BUG = re.compile(r"^\s*(__version__|__build__|__version_info__|VERSION)\s*=")
#: Suffix of the id of a fixed (correct) version's sample.
FIXED = "#fixed"


def read(path: Path = REALFIX) -> list[dict[str, Any]]:
    """Every row of the realfix file."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def usable(row: dict[str, Any], max_lines: int) -> bool:
    """Python 3 files (both versions compile), not a version bump, a real change, at most
    ``max_lines`` lines."""
    if row["n_lines"] > max_lines or NOT_A_BUG.match(row["buggy_line_text"]):
        return False
    return row["buggy_code"] != row["fixed_code"] and (
        python_compiles(row["buggy_code"]) and python_compiles(row["fixed_code"])
    )


def by_repo(rows: Sequence[dict[str, Any]], max_lines: int) -> dict[str, list[dict[str, Any]]]:
    """The usable rows of each repository, sorted by id."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["id"]):
        if usable(r, max_lines):
            out[r["repo"]].append(r)
    return dict(sorted(out.items()))


def in_turn(groups: dict[str, list[dict[str, Any]]], per_group: int | None = None) -> list[Any]:
    """The rows taken in turn from each group (at most ``per_group`` of each), so that any
    prefix samples every group."""
    out: list[Any] = []
    k = 0
    while any(len(v) > k and (per_group is None or k < per_group) for v in groups.values()):
        out += [v[k] for v in groups.values() if len(v) > k]
        k += 1
    return out


def sample_rows(
    max_lines: int, per_project: int, rows: Sequence[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """At most ``per_project`` usable rows of each project (first by id), taken in turn."""
    return in_turn(by_repo(read() if rows is None else rows, max_lines), per_project)


def fixed_line(row: dict[str, Any]) -> int:
    """0-based line of the fix in ``fixed_code`` (the buggy line's index, unless whitespace
    elsewhere moved it)."""
    lines = row["fixed_code"].split("\n")
    i = row["buggy_line"] - 1
    if i < len(lines) and lines[i] == row["fixed_line_text"]:
        return i
    near = [j for j, ln in enumerate(lines) if ln == row["fixed_line_text"]]
    return min(near, key=lambda j: abs(j - i)) if near else min(i, len(lines) - 1)


def samples(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, list[int]]]:
    """Dataset samples ``(id, text, bug lines)``: each row's buggy version (its changed line is
    the bug), then its fixed version (id + :data:`FIXED`, no bug line)."""
    out: list[tuple[str, str, list[int]]] = []
    for r in rows:
        out.append((r["id"], r["buggy_code"], [r["buggy_line"] - 1]))
        out.append((r["id"] + FIXED, r["fixed_code"], []))
    return out


def also_fixed_line(rows: Sequence[dict[str, Any]]) -> Any:
    """For the build: ``also(id, text)`` giving a fixed version's changed line, so that it is
    regenerated as the bug line is in the buggy version (a flag there is a false flag)."""
    where = {r["id"] + FIXED: fixed_line(r) for r in rows}

    def also(sid: str, _text: str) -> list[int]:
        return [where[sid]] if sid in where else []

    return also


def repo_of(sample_id: str) -> str:
    """The repository (``owner/name``) of a realfix sample id."""
    return sample_id.split("@", 1)[0]


def is_fixed(sample_id: str) -> bool:
    return sample_id.endswith(FIXED)
