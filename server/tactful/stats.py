"""Shared statistics with one convention: AUC, binomial bounds, bootstrap over groups.

* :func:`auc` returns ``None`` (never NaN) when it is undefined (one class, no scores, or a
  missing score);
* :func:`clopper_pearson` gives exact one-sided binomial bounds (the cascade's thresholds and
  its run-time guard promise a *lower* bound of accuracy when hiding);
* :func:`bootstrap_groups` resamples whole groups (users, sessions) with replacement: one
  person's decisions are not independent, so resampling single decisions would understate the
  spread. 95 % percentile intervals, seeded;
* :func:`percentile` of a sample (latencies) is the nearest-rank one, a value that occurred;
  ``None`` for an empty sample.

Plain numpy/scipy; no torch, no pygls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

BOOTSTRAP_SEED = 20240611


def auc(y: Sequence[float] | np.ndarray, p: Sequence[float | None] | np.ndarray) -> float | None:
    """ROC AUC of scores ``p`` for labels ``y`` (1 = positive); None when undefined."""
    if len(p) == 0 or any(x is None for x in p):
        return None
    ya = np.asarray(y, dtype=float)
    if len(np.unique(ya)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(ya, np.asarray(p, dtype=float)))


def clopper_pearson(k: float, n: float, confidence: float = 0.90) -> tuple[float, float]:
    """One-sided exact (Clopper-Pearson) bounds for ``k`` successes in ``n`` trials: the lower
    bound L with P(X >= k | L) = 1 - confidence and the upper bound likewise. ``k`` and ``n`` may
    be fractional (weighted evidence). (0, 1) when ``n`` is 0."""
    from scipy.stats import beta

    if n <= 0:
        return 0.0, 1.0
    k = min(max(float(k), 0.0), float(n))
    alpha = 1.0 - confidence
    lo = 0.0 if k <= 0 else float(beta.ppf(alpha, k, n - k + 1))
    hi = 1.0 if k >= n else float(beta.ppf(1 - alpha, k + 1, n - k))
    return lo, hi


def cp_lower(k: float, n: float, confidence: float = 0.90) -> float:
    """The lower one-sided Clopper-Pearson bound (0 when ``n`` is 0)."""
    return clopper_pearson(k, n, confidence)[0]


def min_trials(target: float, confidence: float = 0.90) -> int:
    """The fewest trials, all successes, whose lower bound reaches ``target``: below this many
    hidden decisions no threshold can be shown to meet the target."""
    if not 0 < target < 1:
        raise ValueError("target must be in (0, 1)")
    return math.ceil(math.log(1.0 - confidence) / math.log(target))


def bootstrap_groups(
    per_group: Mapping[str, Mapping[str, float]],
    ratios: Mapping[str, tuple[str, str] | Callable[[Mapping[str, np.ndarray]], np.ndarray]],
    samples: int = 2000,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, list[float] | None]:
    """95 % percentile intervals of pooled ratios, resampling groups with replacement.

    ``per_group`` maps a group to its counts; ``ratios`` names each ratio as (numerator key,
    denominator key) of the pooled counts, or as a function of the pooled count arrays. A
    resample whose denominator is 0 is left out; None when every one is. Empty dict when there
    are fewer than two groups."""
    groups = sorted(per_group)
    if len(groups) < 2:
        return {}
    keys = sorted({k for g in groups for k in per_group[g]})
    m = np.array([[float(per_group[g].get(k, 0.0)) for k in keys] for g in groups])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(groups), size=(samples, len(groups)))
    s = m[idx].sum(axis=1)
    cols = {k: s[:, i] for i, k in enumerate(keys)}
    out: dict[str, list[float] | None] = {}
    for name, how in ratios.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            if callable(how):
                v = np.asarray(how(cols), dtype=float)
            else:
                num, den = how
                v = cols[num] / cols[den]
        v = v[np.isfinite(v)]
        out[name] = (
            None if len(v) == 0 else [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
        )
    return out


def percentile(xs: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0-100) of ``xs``: the smallest value with at least
    ``q`` % of the sample at or below it; None when ``xs`` is empty."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def finite(obj: Any) -> Any:
    """``obj`` with NaN and infinite floats replaced by None (for JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj
