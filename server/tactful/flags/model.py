"""The flag classifiers: loading the shipped LightGBM files, the heuristic stand-in, the prior,
and the calibration that turns a final score into a probability that the line is the bug.

Owns ``FlagModel`` and ``default_model``; must not run the language model or know about LSP.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tactful.flags import features as ff
from tactful.flags.calibration import Calibration

log = logging.getLogger(__name__)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, x))))


class FlagModel:
    """The two classifiers: ``stage1`` (cheap features, picks lines to regenerate) and ``final``.

    Stored as LightGBM text model files plus ``meta.json`` under ``models/flag/``; without them a
    documented heuristic stands in (used to build the first training set)."""

    def __init__(
        self,
        stage1: Any = None,
        final: Any = None,
        meta: dict[str, Any] | None = None,
        prior: Any = None,
        calibration: Calibration | None = None,
    ) -> None:
        self._stage1 = stage1
        self._final = final
        #: The prior classifier (line text and place only), or None: ``prior`` stays NaN.
        self._prior = prior
        self.meta = meta or {}
        #: Turns a final score into the probability that the line is the bug (None: the score).
        self.calibration = calibration
        self.name = self.meta.get("name", "heuristic") if stage1 is not None else "heuristic"

    @classmethod
    def load(cls, folder: str | Path | None = None) -> FlagModel:
        """The trained classifiers in ``folder`` (default: the shipped ``models/flag``)."""
        if folder is None:
            from tactful.paths import repo_models_dir

            folder = repo_models_dir() / "flag"
        folder = Path(folder)
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            log.warning("no trained flag classifier in %s; using the heuristic", folder)
            return cls()
        import lightgbm as lgb

        meta = json.loads(meta_path.read_text())
        if list(meta.get("cheap_features", [])) != list(ff.CHEAP_FEATURES) or list(
            meta.get("all_features", [])
        ) != list(ff.ALL_FEATURES):
            raise ValueError(f"{folder}: the classifier was trained on other features; retrain it")
        stage1 = lgb.Booster(model_str=(folder / meta["stage1"]).read_text())
        final = lgb.Booster(model_str=(folder / meta["final"]).read_text())
        prior = None
        if meta.get("prior"):
            if list(meta.get("prior_inputs", [])) != list(ff.PRIOR_INPUTS):
                raise ValueError(f"{folder}: the prior was trained on other features; retrain it")
            prior = lgb.Booster(model_str=(folder / meta["prior"]).read_text())
        return cls(stage1, final, meta, prior, Calibration.load(folder / "calibration.json"))

    def fill_prior(self, rows: Sequence[list[float]]) -> None:
        """Set the ``prior`` feature of cheap feature rows (in place) from the prior classifier."""
        if self._prior is None or not rows:
            return
        k = ff.CHEAP_FEATURES.index("prior")
        for row, p in zip(rows, prior_scores(self._prior, rows), strict=True):
            row[k] = p

    def probability(self, score: float) -> float:
        """The calibrated probability that a line with this final score is the bug (the score
        itself where the classifier has no calibration)."""
        return score if self.calibration is None else self.calibration.probability(score)

    def score_floor(self, lines: int) -> float:
        """The least final score a shown flag needs in a file of ``lines`` lines (0 without a
        calibration): short files' floor, see :class:`Calibration`."""
        return 0.0 if self.calibration is None else self.calibration.score_floor(lines)

    def shows(self, score: float, lines: int, min_score: float, min_probability: float) -> bool:
        """Whether a flag with this final score, in a file of ``lines`` lines, is shown at these
        thresholds: its score clears ``min_score`` and, with the probability threshold on, the
        short-file floor; its calibrated probability clears ``min_probability`` (both 0: every
        flag of the budget)."""
        floor = self.score_floor(lines) if min_probability > 0 else 0.0
        return score >= max(min_score, floor) and self.probability(score) >= min_probability

    def stage1(self, rows: Sequence[Sequence[float]]) -> list[float]:
        if not rows:
            return []
        if self._stage1 is None:
            i_min, i_surp = ff.CHEAP_FEATURES.index("lp_min"), ff.CHEAP_FEATURES.index("surp_max")
            return [
                _sigmoid(-(_nz(r[i_min], 0.0) + 6.0) / 2.0 + 0.1 * _nz(r[i_surp], 0.0))
                for r in rows
            ]
        import numpy as np

        return [float(x) for x in self._stage1.predict(np.asarray(rows, dtype=float))]

    def final(self, rows: Sequence[Sequence[float]]) -> list[float]:
        if not rows:
            return []
        if self._final is None:
            i_ed = ff.ALL_FEATURES.index("ed_tok")
            i_gap = ff.ALL_FEATURES.index("gen_minus_orig")
            i_min = ff.ALL_FEATURES.index("lp_min")
            return [
                _sigmoid(
                    3.0 * _nz(r[i_ed], 0.0)
                    + 0.15 * _nz(r[i_gap], 0.0)
                    - 0.2 * (_nz(r[i_min], 0.0) + 6.0)
                    - 1.5
                )
                for r in rows
            ]
        import numpy as np

        return [float(x) for x in self._final.predict(np.asarray(rows, dtype=float))]


def prior_scores(booster: Any, rows: Sequence[Sequence[float]]) -> list[float]:
    """The prior classifier's score of cheap feature rows (reads ``ff.PRIOR_INPUTS`` only)."""
    import numpy as np

    if not rows:
        return []
    idx = [ff.CHEAP_FEATURES.index(n) for n in ff.PRIOR_INPUTS]
    x = np.asarray([[r[i] for i in idx] for r in rows], dtype=float)
    return [float(v) for v in booster.predict(x)]


def _nz(x: float, default: float) -> float:
    return default if math.isnan(x) else x


_DEFAULT_MODEL: FlagModel | None = None
_MODEL_LOCK = threading.Lock()


def default_model() -> FlagModel:
    """The shipped classifier, loaded once."""
    global _DEFAULT_MODEL
    with _MODEL_LOCK:
        if _DEFAULT_MODEL is None:
            _DEFAULT_MODEL = FlagModel.load()
        return _DEFAULT_MODEL
