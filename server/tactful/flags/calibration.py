"""Calibration of the final flag score: ``P(this line is the bug | score)``.

Platt scaling on the score's log-odds, ``p = sigmoid(a * logit(score) + b)``: two numbers, fitted
on lines of buggy files whose faulty line is known, kept in ``models/flag/calibration.json``. It
is monotone, so it never changes the order of flags, only what a threshold on it means.
Plain numbers in, plain numbers out; no model, no LSP.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Scores are clipped to [EPS, 1 - EPS] before taking their log-odds.
EPS = 1e-6


def logit(p: float) -> float:
    p = min(1.0 - EPS, max(EPS, p))
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, x))))


@dataclass(frozen=True)
class Calibration:
    """``probability(score) = sigmoid(a * logit(score) + b)``, fitted on project files; and for
    short files (under ``short_lines`` lines) a score floor, ``short_min_score``.

    The probability is that of a line of a project file. In a short file every line is more
    likely to be the bug (one bug in 25 lines of a short faulty program, one in 300 of a project
    file), so the same probability lets through most of a short correct file's lines; the floor
    is the score that keeps correct short programs at the same flags per 100 lines."""

    a: float = 1.0
    b: float = 0.0
    #: What it was fitted on (free text and counts, for the model card).
    fitted_on: dict[str, Any] = field(default_factory=dict)
    #: Files with fewer lines than this get the score floor (0: no floor).
    short_lines: int = 0
    short_min_score: float = 0.0

    def probability(self, score: float) -> float:
        return sigmoid(self.a * logit(score) + self.b)

    def score_floor(self, lines: int) -> float:
        """The least final score a flag needs in a file of ``lines`` lines (besides the
        probability threshold)."""
        return self.short_min_score if lines < self.short_lines else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"method": "platt", **asdict(self)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Calibration:
        if d.get("method") != "platt":
            raise ValueError(f"unknown calibration method {d.get('method')!r}")
        a, b = float(d["a"]), float(d["b"])
        if not (math.isfinite(a) and math.isfinite(b)) or a <= 0:
            raise ValueError("a calibration needs finite numbers and a positive slope")
        short_lines, short_min = int(d.get("short_lines", 0)), float(d.get("short_min_score", 0.0))
        if short_lines < 0 or not 0.0 <= short_min <= 1.0:
            raise ValueError("a short-file floor needs lines >= 0 and a score in [0, 1]")
        return cls(a, b, dict(d.get("fitted_on", {})), short_lines, short_min)

    @classmethod
    def load(cls, path: Path) -> Calibration | None:
        """The calibration in ``path``; None when there is none."""
        if not path.is_file():
            return None
        return cls.from_json(json.loads(path.read_text()))


def fit_platt(
    scores: Sequence[float], labels: Sequence[int], iterations: int = 100, prior: float = 1.0
) -> Calibration:
    """Platt scaling fitted by Newton's method, with Platt's smoothed targets (so that a handful
    of positives gives a finite fit) and a small ridge ``prior`` on the slope and intercept."""
    xs = [logit(s) for s in scores]
    n_pos = sum(1 for y in labels if y)
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("calibration needs both bug lines and other lines")
    hi, lo = (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0)
    ts = [hi if y else lo for y in labels]
    a, b = 1.0, 0.0
    for _ in range(iterations):
        ga, gb = prior * (a - 1.0), prior * b
        haa, hab, hbb = prior, 0.0, prior
        for x, t in zip(xs, ts, strict=True):
            p = sigmoid(a * x + b)
            d, w = p - t, max(p * (1.0 - p), 1e-12)
            ga += d * x
            gb += d
            haa += w * x * x
            hab += w * x
            hbb += w
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-9:
            break
    return Calibration(max(a, 1e-3), b, {"lines": len(labels), "bug_lines": n_pos})
