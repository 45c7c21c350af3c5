"""``tactful replay --regenerate``: re-running a completion model on logged contexts and
comparing with what was shown and accepted."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tactful.replay.report import Unit


def edit_similarity(a: str, b: str) -> float:
    """1 - normalised Levenshtein distance (1.0 for equal strings, also both empty)."""
    if a == b:
        return 1.0
    n, m = len(a), len(b)
    prev = list(range(m + 1))
    for i in range(1, n + 1):
        cur = [i] + [0] * m
        ca = a[i - 1]
        for j in range(1, m + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != b[j - 1]))
        prev = cur
    return 1.0 - prev[m] / max(n, m)


def regenerate(
    units: Sequence[Unit],
    contexts: Mapping[str, tuple[str, str]],
    complete: Callable[[str, str], str | None],
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Re-run ``complete(prefix, suffix)`` on each shown suggestion's logged context and compare.

    Returns counts and means of exact match / edit similarity against what was shown, and
    separately against what was accepted."""
    todo = [u for u in units if u.shown and u.text is not None and u.sid in contexts]
    missing = sum(1 for u in units if u.shown and u.sid not in contexts)
    if limit is not None:
        todo = todo[:limit]
    rows: list[dict[str, Any]] = []
    for k, u in enumerate(todo, 1):
        prefix, suffix = contexts[u.sid]
        new = complete(prefix, suffix) or ""
        old = u.text or ""
        rows.append(
            {
                "id": u.sid,
                "accepted": u.accepted,
                "exact": new.strip() == old.strip(),
                "edit_similarity": edit_similarity(new.strip(), old.strip()),
            }
        )
        if progress is not None:
            progress(k, len(todo))

    def summary(sel: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "n": len(sel),
            "exact_match": _ratio(sum(1 for r in sel if r["exact"]), len(sel)),
            "edit_similarity": _ratio(sum(r["edit_similarity"] for r in sel), len(sel)),
        }

    return {
        "compared": len(rows),
        "without_context": missing,
        "vs_shown": summary(rows),
        "vs_accepted": summary([r for r in rows if r["accepted"] is True]),
        "vs_rejected": summary([r for r in rows if r["accepted"] is False]),
        "rows": rows,
    }


def embedded_completer(model: str | None = None) -> Callable[[str, str], str | None]:
    """``complete(prefix, suffix)`` with the embedded (or given) model through the server's path."""
    from tactful import paths
    from tactful.backend.hf import TransformersBackend
    from tactful.completion.oneshot import complete_text

    backend = TransformersBackend.load(model, cache_dir=paths.cache_dir())

    def complete(prefix: str, suffix: str) -> str | None:
        return complete_text(backend, prefix + suffix, len(prefix), "python")

    return complete


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None
