"""The cascade's run-time guard: does it keep its promise for the person using it? (issue 25)

The cascade promises that what it hides would have been rejected (``target`` of the time, 95 %
by default). Its thresholds were fitted on other people. The guard estimates accuracy when
hiding on *this* user from evidence the server sees:

* **exploration** (``cdhf.exploreRate``) and **back-off** shows: a suggestion the cascade would
  have skipped or hidden is shown anyway; the user's accept or reject is its label;
* **typed next** (:func:`typed_outcome`): a hidden suggestion that the user then types
  themselves (a close match at its place on the server's copy of the document, within
  :data:`TYPED_WINDOW_S`) would have been accepted; one whose place the user fills with
  something else would have been rejected.

The estimate combines the evidence of the last :data:`WINDOW` decisions with a prior: what
held-out users saw in training (``cascade.json``'s ``guard``), whose weight fades as this user's
evidence grows. When the one-sided Clopper-Pearson lower bound (90 %) drops below the target,
the guard backs off one level: ``hiding`` -> ``stricter`` (hide only the more confident half
of the range above each threshold) -> ``off`` (hide nothing). While backed off, every
suggestion the cascade would have hidden is shown, so evidence keeps coming, and the guard
returns as soon as the bound allows. Each change of state is announced once.

Plain data, no locks (the gate holds one), no I/O.
"""

from __future__ import annotations

import difflib
import re
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from tactful import stats

LEVELS = ("hiding", "stricter", "off")
#: The guard judges on the evidence of this many most recent would-hide decisions.
WINDOW = 200
#: A stricter threshold moves this share of the way from the threshold to 1.
STRICTER = 0.5
#: A hidden suggestion that the user types within this many seconds would have been accepted.
TYPED_WINDOW_S = 20.0
#: A typed text this similar to the suggestion (difflib ratio, whitespace collapsed) matches it.
CLOSE_MATCH = 0.8


def stricter(threshold: float) -> float:
    return threshold + (1.0 - threshold) * STRICTER if threshold <= 1.0 else threshold


@dataclass
class Evidence:
    """One would-hide decision whose outcome is known."""

    #: Hiding it was right: the user rejected it (or did not type it).
    correct: bool
    #: "explored", "backed_off" (shown because the guard backed off) or "typed".
    source: str
    stage: int
    p: float
    threshold: float
    t: float = 0.0
    rid: str = ""


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def typed_outcome(before: str, after: str, suggestion: str, doc: str) -> bool | None:
    """What the document says about a suggestion that was not shown at ``before|after``: True
    when the user typed it (a close match of it, or of its first line when it has several),
    False when they typed something else there, None while it is undecided (nothing or a
    prefix of it typed yet) or when the place cannot be found any more."""
    if not doc.startswith(before):
        return None
    rest = doc[len(before) :]
    if after:
        if not rest.endswith(after):
            return None
        rest = rest[: len(rest) - len(after)]
    typed, want = _norm(rest), _norm(suggestion)
    if not typed or not want:
        return None
    first = _norm(suggestion.strip("\n").split("\n")[0])
    goals = [want] + ([first] if first and first != want and len(first) >= 4 else [])
    for goal in goals:
        if typed.startswith(goal):
            return True
        if len(typed) >= len(goal) and _similar(typed[: len(goal)], goal):
            return True
    if want.startswith(typed) or _similar(typed, want[: len(typed)]):
        return None  # still typing along it
    return False


def _similar(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= CLOSE_MATCH


class Guard:
    """Accuracy when hiding on this user, and the level of hiding it allows."""

    def __init__(
        self,
        target: float,
        prior_hidden: float = 0.0,
        prior_correct: float = 0.0,
        *,
        confidence: float = 0.90,
        window: int = WINDOW,
    ) -> None:
        self.target = target
        self.confidence = confidence
        if prior_hidden <= 0:
            # No held-out figure with the model: assume it just meets the target (the fewest
            # decisions, all correct, whose bound does), so the user's evidence decides fast.
            prior_hidden = prior_correct = float(stats.min_trials(target, confidence))
        self.prior_hidden, self.prior_correct = float(prior_hidden), float(prior_correct)
        self.window = window
        self.evidence: deque[Evidence] = deque(maxlen=window)
        self.seen = 0
        self.level = 0
        self.level = self._best_level()

    # --- decisions -----------------------------------------------------------------------------
    def allows(self, p: float | None, threshold: float | None) -> bool:
        """Whether a decision the cascade would hide (p >= threshold) may be hidden now."""
        if self.level == 0 or p is None or threshold is None:
            return self.level == 0
        return self.level == 1 and p >= stricter(threshold)

    def add(self, ev: Evidence) -> str | None:
        """Take one piece of evidence; a sentence for the user when the state changed."""
        self.evidence.append(ev)
        self.seen += 1
        old, self.level = self.level, self._best_level()
        if self.level == old:
            return None
        est = self.estimate()
        fig = (
            f"estimated accuracy when hiding {est['accuracy']:.1%} (with the model's held-out "
            f"record), lower bound {est['lower']:.1%} "
            f"against the {self.target:.0%} target ({est['correct']} of {est['n']} of your "
            "decisions it would have hidden were rejected)"
        )
        if self.level > old:
            what = "hides only its most confident calls" if self.level == 1 else "hides nothing"
            return f"the show/hide cascade backs off and {what}: {fig}"
        what = "hides again" if self.level == 0 else "hides its most confident calls again"
        return f"the show/hide cascade {what}: {fig}"

    # --- estimates -----------------------------------------------------------------------------
    def _prior_weight(self) -> float:
        return max(0.0, 1.0 - len(self.evidence) / self.window)

    def _counts(self, level: int) -> tuple[float, float, int, int]:
        items = [e for e in self.evidence if level == 0 or e.p >= stricter(e.threshold)]
        c = sum(1 for e in items if e.correct)
        w = self._prior_weight()
        return c + w * self.prior_correct, len(items) + w * self.prior_hidden, c, len(items)

    def lower(self, level: int = 0) -> float:
        k, n, _c, _m = self._counts(level)
        return stats.cp_lower(k, n, self.confidence) if n > 0 else 0.0

    def _best_level(self) -> int:
        for level in (0, 1):
            if self.lower(level) >= self.target:
                return level
        return 2

    def estimate(self, level: int = 0) -> dict[str, Any]:
        """Accuracy when hiding (evidence and fading prior), its lower bound, the raw counts."""
        k, n, c, m = self._counts(level)
        return {
            "accuracy": k / n if n else None,
            "lower": stats.cp_lower(k, n, self.confidence) if n else 0.0,
            # This user's evidence alone (no prior).
            "observed": c / m if m else None,
            "n": m,
            "correct": c,
            "prior_weight": round(self._prior_weight(), 3),
        }

    def state(self) -> dict[str, Any]:
        """For the status payload, ``tactful log stats`` and the replay report."""
        est = self.estimate()
        sources: dict[str, int] = {}
        for e in self.evidence:
            sources[e.source] = sources.get(e.source, 0) + 1
        return {
            "state": LEVELS[self.level],
            "target": self.target,
            # This user's evidence alone: the running estimate shown to the user.
            "accuracyWhenHiding": None if est["observed"] is None else round(est["observed"], 4),
            # With the training prior (fading as evidence grows): what the bound is taken on.
            "estimateWithPrior": None if est["accuracy"] is None else round(est["accuracy"], 4),
            "lowerBound": round(est["lower"], 4),
            "evidence": est["n"],
            "correct": est["correct"],
            "evidenceSeen": self.seen,
            "bySource": sources,
        }


def evidence_json(ev: Evidence, guard: Guard) -> dict[str, Any]:
    """The ``guard`` log event: the evidence and the state after it (for audit)."""
    return {**asdict(ev), **guard.state()}
