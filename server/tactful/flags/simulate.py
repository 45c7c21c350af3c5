"""What the two-stage flagger would flag on recorded dataset samples, counted as
``tactful bench flag`` counts (top-1, top-3, recall at the budget, with the exact expectation of
a random ranking), and the one-line summary of those figures. Training only: it reads the rows a
dataset build recorded and never runs the language model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tactful.flags import features as ff


def simulate(
    samples: Sequence[dict[str, Any]],
    model: Any,
    budget: float = 0.15,
    extra: int | None = None,
    min_score: float = 0.05,
    regen_min: float = 0.0,
) -> dict[str, float]:
    """Top-1, top-3 and recall at the budget of the two-stage ranking on recorded samples, as
    ``tactful bench flag`` counts them, with the exact expectation of a random ranking.

    The first stage picks ``max_flags + extra`` lines; of those, the ones the build regenerated
    get the final score (a pick the build did not regenerate is counted in ``missing`` and ranks
    by the first stage, below them). Flags are the regenerated lines whose regeneration differs
    from the written line and is not empty, best first, at most ``max_flags``; the ranking for
    top-1/top-3 is the flags, then the other regenerated lines, then the rest by the first stage.
    ``recall_min_score`` and ``share_min_score``: the recall and the share of lines flagged when
    flags scoring below ``min_score`` are not shown (the editor's ``flags.minScore``).
    ``regen_min``: picks whose first-stage score is below it are not regenerated (a threshold
    tried for the flagger and not shipped, see docs/benchmarks.md); ``regen_per_100``: the
    regenerations per 100 lines.
    """
    from tactful.flags.plan import REGEN_EXTRA

    extra = REGEN_EXTRA if extra is None else extra
    t: dict[str, float] = dict.fromkeys(
        ("hits1", "hits3", "hitb", "rand1", "rand3", "randb", "missing", "picked", "hit_ms"), 0.0
    )
    t["share_ms"] = t["lines"] = 0.0
    for s in samples:
        if s["rows"]:
            _simulate_one(s, model, budget, extra, min_score, regen_min, t)
    n = max(1, len(samples))
    return {
        "n": len(samples),
        "top1": t["hits1"] / n,
        "top3": t["hits3"] / n,
        "recall_at_budget": t["hitb"] / n,
        "random_top1": t["rand1"] / n,
        "random_top3": t["rand3"] / n,
        "random_recall": t["randb"] / n,
        "missing_picks": t["missing"] / max(1, t["picked"]),
        "recall_min_score": t["hit_ms"] / n,
        "share_min_score": t["share_ms"] / n,
        "regen_per_100": 100 * t["picked"] / max(1, t["lines"]),
    }


def window_picks(s: dict[str, Any], p1: Sequence[float], n_regen: int) -> list[int]:
    """Indices into ``s["rows"]`` of the lines the flagger regenerates: each scoring window
    gets its share of ``n_regen`` (the last one the rest) and takes its top first-stage lines,
    as :meth:`tactful.flags.job.FlagJob.steps` does."""
    from tactful.flags.plan import plan_windows

    rows = s["rows"]
    pos = {r["i"]: j for j, r in enumerate(rows)}
    windows = plan_windows(ff.document_lines(s["text"])) if "text" in s else []
    if len(windows) <= 1:
        return sorted(range(len(rows)), key=lambda j: -p1[j])[:n_regen]
    picks: list[int] = []
    left = n_regen
    for wi, w in enumerate(windows):
        mine = [pos[i] for i in range(w.start, w.end) if i in pos]
        if not mine:
            continue
        k = (
            left
            if wi == len(windows) - 1
            else min(left, math.ceil(n_regen * len(mine) / len(rows)))
        )
        left -= k
        picks += sorted(mine, key=lambda j: -p1[j])[:k]
    return picks


def ranking(
    s: dict[str, Any], model: Any, budget: float, extra: int, regen_min: float = 0.0
) -> dict[str, Any]:
    """What the flagger does with one recorded sample: ``flags`` ([line, final score], best
    first, at most the budget), ``ranked`` (every considered line: the flags, the other
    regenerated lines, the rest by the first stage), ``picked`` and ``missing`` (picks the build
    did not regenerate; they rank by the first stage, below the regenerated lines)."""
    from tactful.flags.plan import RegenOptions, max_flags, regen_count

    i_exact = len(ff.CHEAP_FEATURES) + ff.REGEN_FEATURES.index("exact_ws")
    i_empty = len(ff.CHEAP_FEATURES) + ff.REGEN_FEATURES.index("gen_empty")
    rows = s["rows"]
    n_flags = max_flags(budget, s["lines"])
    n_regen = regen_count(len(rows), n_flags, RegenOptions(regen_extra=extra))
    p1 = model.stage1([r["cheap"] for r in rows])
    order = sorted(range(len(rows)), key=lambda j: -p1[j])
    picks = [j for j in window_picks(s, p1, n_regen) if p1[j] >= regen_min]
    chosen = [j for j in picks if rows[j]["regen"] is not None]
    full = [rows[j]["cheap"] + rows[j]["regen"] for j in chosen]
    pf = model.final(full) if full else []
    by_score = sorted(range(len(chosen)), key=lambda k: -pf[k])
    eligible = [k for k in by_score if not full[k][i_exact] and not full[k][i_empty]]
    flags = [[rows[chosen[k]]["i"], float(pf[k])] for k in eligible[:n_flags]]
    ranked = [ln for ln, _s in flags]
    ranked += [rows[chosen[k]]["i"] for k in by_score if rows[chosen[k]]["i"] not in ranked]
    seen = set(ranked)
    ranked += [rows[j]["i"] for j in order if rows[j]["i"] not in seen]
    return {
        "flags": flags,
        "ranked": ranked,
        "picked": len(picks),
        "missing": len(picks) - len(chosen),
        "max_flags": n_flags,
    }


def _simulate_one(
    s: dict[str, Any],
    model: Any,
    budget: float,
    extra: int,
    min_score: float,
    regen_min: float,
    t: dict[str, float],
) -> None:
    """Add one recorded sample's counts to the tallies ``t`` (see :func:`simulate`)."""
    r = ranking(s, model, budget, extra, regen_min)
    t["picked"] += r["picked"]
    t["missing"] += r["missing"]
    t["lines"] += s["lines"]
    flags = [ln for ln, _s in r["flags"]]
    ranked = r["ranked"]
    bugs = set(s["bugs"])
    t["hits1"] += bool(bugs & set(ranked[:1]))
    t["hits3"] += bool(bugs & set(ranked[:3]))
    t["hitb"] += bool(bugs & set(flags))
    shown = [ln for ln, score in r["flags"] if score >= min_score]
    t["hit_ms"] += bool(bugs & set(shown))
    t["share_ms"] += len(shown) / max(1, s["lines"])
    c = len(s["rows"])
    if bugs & {row["i"] for row in s["rows"]}:
        t["rand1"] += min(1, c) / c
        t["rand3"] += min(3, c) / c
        t["randb"] += min(r["max_flags"], c) / c


def pool(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    """Figures of several :func:`simulate` results over all their programs together."""
    n = sum(p["n"] for p in parts)
    out: dict[str, float] = {"n": n}
    for key in parts[0]:
        if key != "n":
            out[key] = sum(p[key] * p["n"] for p in parts) / max(1, n)
    return out


def summary_line(name: str, m: dict[str, float]) -> str:
    """One line of figures of a :func:`simulate` result, each beside its random expectation."""

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "-"

    return (
        f"{name}: n={m['n']} recall@15% {m['recall_at_budget']:.3f} "
        f"(random {m['random_recall']:.3f}, {ratio(m['recall_at_budget'], m['random_recall'])}) "
        f"top-1 {m['top1']:.3f} (random {m['random_top1']:.3f}, "
        f"{ratio(m['top1'], m['random_top1'])}) top-3 {m['top3']:.3f} "
        f"(random {m['random_top3']:.3f}, {ratio(m['top3'], m['random_top3'])}) "
        f"missing picks {m['missing_picks']:.2f}; at minScore 0.05: recall "
        f"{m['recall_min_score']:.3f}, lines flagged {m['share_min_score']:.3f}; "
        f"regenerated per 100 lines {m['regen_per_100']:.1f}"
    )
