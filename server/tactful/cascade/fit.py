"""Cascades fitted in memory on part of a dataset, for the replay benchmarks that hold users
or time out (:mod:`tactful.replay.guard`, :mod:`tactful.replay.adapt`, :mod:`tactful.replay.team`).

:func:`fold_models` trains both stages on the chosen decisions the way ``tactful train`` does,
with the inner out-of-fold predictions (groups held out) that thresholds are fitted on;
:meth:`FoldModels.cascade` fits the thresholds for a target (the same Clopper-Pearson rule)
and returns a :class:`~tactful.cascade.model.Cascade` that decides like a loaded folder. The
models are fitted once and the thresholds per target, so a benchmark over several targets
trains each fold once. Nothing is written. Training only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tactful.cascade.data import Dataset
from tactful.cascade.model import BOUND_CONFIDENCE, DEFAULT_LAMBDA, Cascade
from tactful.cascade.thresholds import cascade_metrics, fit_thresholds

#: Inner folds of the out-of-fold predictions thresholds are fitted on (as the nested
#: evaluation of ``tactful train`` with its 5 outer folds).
INNER_FOLDS = 4


@dataclass
class FoldModels:
    """Both stages trained on some decisions, with their inner out-of-fold predictions."""

    ds: Dataset
    m1: Any
    m2: Any
    ip1: np.ndarray
    ip2: np.ndarray
    y: np.ndarray

    def cascade(
        self,
        target: float,
        lam: float = DEFAULT_LAMBDA,
        confidence: float | None = BOUND_CONFIDENCE,
    ) -> Cascade:
        """The cascade with thresholds fitted for ``target`` on the inner out-of-fold
        predictions (``confidence`` None: the point estimate, as before issue 25). Its guard
        prior is what those predictions show for the thresholds."""
        th = fit_thresholds(self.ip1, self.ip2, self.y, target, lam, confidence=confidence)
        ho = cascade_metrics(self.ip1, self.ip2, self.y, th)
        meta = {
            "target": target,
            "lambda": lam,
            "bound_confidence": BOUND_CONFIDENCE,
            "guard": {"prior_hidden": ho["hidden_count"], "prior_correct": ho["correct_count"]},
        }
        return Cascade(None, self.m1, self.m2, self.ds.s1_names, self.ds.s2_names, th, meta)  # type: ignore[arg-type]

    def scores(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both stages' P(reject) on the dataset's decisions ``idx``."""
        return self.m1.predict(self.ds.x1[idx]), self.m2.predict(self.ds.x2[idx])


def fold_models(
    ds: Dataset, idx: np.ndarray, groups: np.ndarray | None = None, k: int = INNER_FOLDS
) -> FoldModels:
    """Both stages trained on the decisions ``idx`` of ``ds``; inner out-of-fold predictions
    hold out ``groups`` (default: the dataset's groups, e.g. users)."""
    from tactful.cascade.train import _fit, _oof

    y = ds.y[idx]
    g = ds.groups[idx] if groups is None else groups
    ip1, _ = _oof(ds.x1[idx], y, g, ds.s1_names, k)
    ip2, _ = _oof(ds.x2[idx], y, g, ds.s2_names, k)
    m1, m2 = _fit(ds.x1[idx], y, ds.s1_names), _fit(ds.x2[idx], y, ds.s2_names)
    return FoldModels(ds, m1, m2, ip1, ip2, y)
