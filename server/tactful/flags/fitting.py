"""Fitting the two LightGBM flag classifiers on recorded dataset samples, and the K-fold
cross-validation by task that gives the honest figure for real bugs. Training only.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

from tactful.flags import features as ff
from tactful.flags.datasets import PARAMS, ROUNDS, cross_fitted, dev_folds, fit_prior, task_of
from tactful.flags.simulate import pool, simulate, summary_line


def _matrix(
    samples: Sequence[dict[str, Any]], regen: bool, weights: Sequence[float] | None = None
) -> tuple[list[list[float]], list[int], list[float]]:
    """(features, labels, weights) of every row of ``samples``: the cheap features alone, or
    with ``regen`` the cheap and regeneration features of the rows that were regenerated."""
    x, y, w = [], [], []
    for k, s in enumerate(samples):
        for r in s["rows"]:
            if regen and r["regen"] is None:
                continue
            x.append(r["cheap"] + (r["regen"] if regen else []))
            y.append(r["y"])
            w.append(weights[k] if weights is not None else 1.0)
    return x, y, w


def fit(
    samples: Sequence[dict[str, Any]],
    rounds: int = ROUNDS,
    params: dict[str, Any] | None = None,
    weights: Sequence[float] | None = None,
    drop: Sequence[str] = (),
) -> tuple[Any, Any]:
    """Train the two LightGBM classifiers on dataset samples.

    ``weights``: one per sample, given to each of its rows. ``drop``: features hidden from both
    classifiers (set to NaN; for ablations only, never for a shipped model)."""
    import lightgbm as lgb
    import numpy as np

    p = {**PARAMS, **(params or {})}
    kind = ff.CHEAP_FEATURES.index("kind")
    boosters = []
    for regen, names in ((False, ff.CHEAP_FEATURES), (True, ff.ALL_FEATURES)):
        x, y, w = _matrix(samples, regen, weights)
        xa = np.asarray(x, dtype=float)
        for name in drop:
            if name in names:  # a regeneration feature is not among the first stage's
                xa[:, names.index(name)] = np.nan
        data = lgb.Dataset(
            xa,
            np.asarray(y),
            weight=np.asarray(w, dtype=float),
            feature_name=list(names),
            categorical_feature=[kind],
        )
        boosters.append(lgb.train(p, data, rounds))
    return boosters[0], boosters[1]


class Masked:
    """A model whose inputs have ``drop`` features set to NaN (the ablation of :func:`fit`)."""

    def __init__(self, model: Any, drop: Sequence[str]) -> None:
        self.model = model
        self.cheap = [ff.CHEAP_FEATURES.index(n) for n in drop if n in ff.CHEAP_FEATURES]
        self.all = [ff.ALL_FEATURES.index(n) for n in drop]

    def stage1(self, rows: Sequence[Sequence[float]]) -> list[float]:
        return list(self.model.stage1([_mask(r, self.cheap) for r in rows]))

    def final(self, rows: Sequence[Sequence[float]]) -> list[float]:
        return list(self.model.final([_mask(r, self.all) for r in rows]))


def _mask(row: Sequence[float], idx: Sequence[int]) -> list[float]:
    out = list(row)
    for i in idx:
        out[i] = math.nan
    return out


def training_weights(
    samples: Sequence[dict[str, Any]], real: set[str], mut_weight: float, dev_weight: float
) -> list[float]:
    """One weight per sample: ``dev_weight`` for the real bugs (ids in ``real``), ``mut_weight``
    for the mutations."""
    return [dev_weight if s["id"] in real else mut_weight for s in samples]


def cross_validate(
    dev: Sequence[dict[str, Any]],
    others: Sequence[dict[str, Any]],
    k: int,
    *,
    folds: dict[str, int] | None = None,
    corpus: Sequence[tuple[str, list[list[float]], list[int]]] | None = None,
    rounds: int = ROUNDS,
    params: dict[str, Any] | None = None,
    mut_weight: float = 1.0,
    dev_weight: float = 1.0,
    drop: Sequence[str] = (),
    scored: set[str] | None = None,
    regen_mins: Sequence[float] = (),
    log: Any = sys.stdout,
) -> dict[str, float]:
    """K-fold cross-validation on the real ConDefects dev bugs, folds by task (``folds``, default
    :func:`dev_folds`): each fold's classifier is trained on the other folds' real bugs plus
    ``others`` (the mutations), leaving out every mutation of a test-fold task (the accepted
    program of a task is the fix of its faulty one). With a prior ``corpus``, the prior is
    cross-fitted inside the training folds and never sees a test-fold task. ``scored``: the ids
    of the dev programs the figures count (default all; see :func:`bench_ids`). Prints each fold
    and the pooled figures; returns the pooled ones. ``regen_mins``: also print the pooled figures
    with each of these first-stage thresholds for regeneration (see :func:`simulate`)."""
    from tactful.flags.model import FlagModel

    folds = dev_folds(k) if folds is None else folds
    real = {s["id"] for s in dev}
    parts = []
    swept: dict[float, list[dict[str, float]]] = {t: [] for t in regen_mins}
    for f in range(k):
        test = [
            s
            for s in dev
            if folds.get(task_of(s["id"])) == f and (scored is None or s["id"] in scored)
        ]
        train = [s for s in list(dev) + list(others) if folds.get(task_of(s["id"])) != f]
        if corpus is not None:
            excluded: list[set[int]] = [{f}] + [{f, g} for g in range(k) if g != f]
            priors = {frozenset(e): fit_prior(corpus, folds, e) for e in excluded}
            test = cross_fitted(test, folds, priors, {f})
            train = cross_fitted(train, folds, priors, {f})
        weights = training_weights(train, real, mut_weight, dev_weight)
        s1, f1 = fit(train, rounds, params, weights, drop)
        model: Any = FlagModel(s1, f1, {})
        if drop:
            model = Masked(model, drop)
        m = simulate(test, model)
        parts.append(m)
        for t in regen_mins:
            swept[t].append(simulate(test, model, regen_min=t))
        print(summary_line(f"  fold {f + 1}/{k}", m), file=log, flush=True)
    pooled = pool(parts)
    print(summary_line(f"  pooled ({k} folds by task)", pooled), file=log, flush=True)
    for t, ms in swept.items():
        print(summary_line(f"  pooled, regenerating only at stage 1 >= {t:g}", pool(ms)), file=log)
    return pooled
