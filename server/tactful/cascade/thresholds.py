"""Fitting the cascade's thresholds (training only; the run-time side is :mod:`tactful.cascade.model`).

:func:`fit_thresholds` is the paper's constrained grid search (``CDHF.fit``), exhaustive over
the observed probabilities: minimise ``lambda * P(defer) + (1 - lambda) * (1 - P(hide))``
subject to the one-sided Clopper-Pearson lower bound of accuracy when hiding being at least
the target (or, with ``confidence=None``, the point estimate, as before issue 25).
:func:`cascade_metrics` gives the paper's figures for thresholds on given predictions.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from tactful.cascade.model import (
    BOUND_CONFIDENCE,
    DEFAULT_LAMBDA,
    DEFAULT_TARGET,
    Thresholds,
    apply_thresholds,
    entropy,
)


def cascade_metrics(
    p1: np.ndarray, p2: np.ndarray, y: np.ndarray, th: Thresholds
) -> dict[str, float]:
    """The paper's metrics; ``y`` is 1 for rejected."""
    hide, by1 = apply_thresholds(p1, p2, th)
    n = max(len(y), 1)
    rejected = max(int(y.sum()), 1)
    return {
        "n": float(len(y)),
        "hidden": float(hide.mean()) if len(y) else 0.0,
        "hidden_count": float(hide.sum()),
        "correct_count": float((hide & (y == 1)).sum()),
        "accuracy_when_hiding": float(y[hide].mean()) if hide.any() else float("nan"),
        "rejected_hidden": float((hide & (y == 1)).sum() / rejected),
        "accepted_hidden": float((hide & (y == 0)).sum() / max(int((y == 0).sum()), 1)),
        "decided_by_stage1": float(by1.mean()) if len(y) else 0.0,
        "skipped_by_stage1": float((hide & by1).sum() / n),
        "accuracy": float((hide == (y == 1)).mean()) if len(y) else 0.0,
    }


@lru_cache(maxsize=64)
def _min_correct(n_max: int, target: float, confidence: float | None) -> np.ndarray:
    """For each hidden count h (0..n_max), the fewest correct hides that meet the target: by
    the Clopper-Pearson lower bound, or by the point estimate when ``confidence`` is None.
    ``h + 1`` where no count does."""
    need = np.zeros(n_max + 1)
    for h in range(1, n_max + 1):
        k = np.arange(h + 1, dtype=float)
        if confidence is None:
            ok = k / h >= target
        else:
            from scipy.stats import beta

            with np.errstate(invalid="ignore"):
                lb = np.nan_to_num(beta.ppf(1 - confidence, k, h - k + 1), nan=0.0)
            ok = lb >= target
        need[h] = int(np.argmax(ok)) if ok.any() else h + 1
    return need


def _best_for_split(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds over ``p`` (hide when p >= t) with hidden and correctly hidden counts."""
    cands = np.concatenate(([1.01], np.unique(p)[::-1]))
    ps, ys = p[np.argsort(-p, kind="stable")], y[np.argsort(-p, kind="stable")]
    hidden = np.searchsorted(-ps, -cands, side="right")
    correct = np.concatenate(([0], np.cumsum(ys)))[hidden]
    return cands, hidden.astype(float), correct.astype(float)


def _entropy_cuts(h: np.ndarray, stage1_share: float | None, steps: int) -> list[float]:
    if stage1_share is None:
        return sorted({*np.quantile(h, np.linspace(0, 1, steps)).tolist(), 0.0, 1.01})
    if stage1_share <= 0:
        return [0.0]
    return [float(np.quantile(h, stage1_share)) + (1e-12 if stage1_share >= 1 else 0.0)]


def fit_thresholds(
    p1: np.ndarray,
    p2: np.ndarray,
    y: np.ndarray,
    target: float = DEFAULT_TARGET,
    lam: float = DEFAULT_LAMBDA,
    stage1_share: float | None = None,
    entropy_steps: int = 101,
    confidence: float | None = BOUND_CONFIDENCE,
) -> Thresholds:
    """Grid search of (entropy, stage1, stage2) as in CDHF.fit, exhaustive over the observed
    probabilities, keeping the Clopper-Pearson lower bound (``confidence``; None: the point
    estimate) of accuracy when hiding at or above ``target``. ``stage1_share`` fixes the share
    of requests stage 1 decides alone (the paper's R). Hides nothing when no split can."""
    p1, p2, y = np.asarray(p1, float), np.asarray(p2, float), np.asarray(y, float)
    n = len(y)
    if n == 0:
        return Thresholds()
    need = _min_correct(n, round(target, 6), confidence)
    h = entropy(p1)
    empty = (np.array([1.01]), np.zeros(1), np.zeros(1))
    best: tuple[float, float, Thresholds] | None = None
    for r in _entropy_cuts(h, stage1_share, entropy_steps):
        by1 = h < r
        c1, h1, k1 = _best_for_split(p1[by1], y[by1]) if by1.any() else empty
        c2, h2, k2 = _best_for_split(p2[~by1], y[~by1]) if (~by1).any() else empty
        hid = h1[:, None] + h2[None, :]
        cor = k1[:, None] + k2[None, :]
        ok = (cor >= need[hid.astype(int)]) | (hid == 0)
        loss = np.where(ok, lam * (1 - by1.mean()) + (1 - lam) * (1 - hid / n), np.inf)
        i, j = np.unravel_index(int(np.argmin(loss)), loss.shape)
        cand = (float(loss[i, j]), -float(hid[i, j]), Thresholds(float(r), c1[i], c2[j]))
        if best is None or cand[:2] < best[:2]:
            best = cand
    assert best is not None
    th = best[2]
    return Thresholds(float(th.entropy), float(th.stage1), float(th.stage2))
