"""What flagging one document found: the flags (with their quick fixes) and the per-line scores.

Owns ``Flag``, ``FlagResult`` and ``build_result``, which picks the flags from a job's model
results: highest final score first, changed lines (``Focus``) ahead of untouched ones, at most
``budget`` of the lines, and only those that clear ``min_score`` and the calibrated
``min_probability``. Must not run the model.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tactful.flags import features as ff
from tactful.flags.fixes import FixChecker

if TYPE_CHECKING:
    from tactful.flags.job import FlagJob, LineState


@dataclass
class Flag:
    """One flagged line."""

    #: 0-based line number.
    line: int
    score: float
    #: The written line (without its line ending).
    text: str
    #: The model's alternative for the line's content (after its indentation).
    suggestion: str
    #: Code-point columns of the written content that the suggestion replaces.
    start_col: int
    end_col: int
    #: The calibrated probability that the line is the bug (the score without a calibration).
    probability: float = 0.0
    #: The whole replacement line of the quick fix (the line's indentation, then the
    #: suggestion); None: no quick fix (it would not parse, or would change nothing).
    fix: str | None = None
    #: The line was changed in this editing session.
    changed: bool = False

    @property
    def message(self) -> str:
        return (
            f"Unusual line (score {self.score:.2f}); the model expected: {self.suggestion.strip()}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line + 1,
            "score": round(self.score, 4),
            "probability": round(self.probability, 4),
            "text": self.text,
            "suggestion": self.suggestion,
            "fix": self.fix,
            "changed": self.changed,
            "message": self.message,
        }


@dataclass
class FlagResult:
    """What flagging one document found."""

    flags: list[Flag] = field(default_factory=list)
    lines: int = 0
    #: Lines that could be flagged (not blank, not comments, not over-long).
    considered: int = 0
    #: Per-line ranking score (None: not considered); for benchmarks.
    scores: list[float | None] = field(default_factory=list)
    regenerated: int = 0
    #: Set when the document was not flagged at all, with the reason.
    skipped: str | None = None
    seconds: float = 0.0
    classifier: str = ""
    #: Scoring windows, and how many of them came from the memo of an earlier run.
    windows: int = 0
    windows_reused: int = 0
    #: Flags the budget allowed that the thresholds (minScore, minProbability) held back.
    held_back: int = 0
    #: Why flags have no quick fix, by reason (e.g. "the file would not parse": 2).
    no_fix: dict[str, int] = field(default_factory=dict)
    #: tree-sitter ERROR/MISSING nodes of the document (quick fixes may not add any).
    parse_errors: int = 0

    def to_json(self, path: str | None = None) -> dict[str, Any]:
        flags = sorted(self.flags, key=lambda f: -f.score)
        out: dict[str, Any] = {"path": path} if path is not None else {}
        out.update(
            lines=self.lines,
            considered=self.considered,
            regenerated=self.regenerated,
            skipped=self.skipped,
            seconds=round(self.seconds, 3),
            classifier=self.classifier,
            windows=self.windows,
            windows_reused=self.windows_reused,
            held_back=self.held_back,
            no_fix=dict(self.no_fix),
            parse_errors=self.parse_errors,
            flags=[f.to_json() for f in flags],
        )
        return out


def _candidates(job: FlagJob) -> list[LineState]:
    """Regenerated lines with an alternative that differs from the written line, best first
    (changed lines ahead of the others)."""
    regen = [x for x in job.info.values() if x.regen is not None]
    out = [
        x
        for x in regen
        if x.suggestion.strip() and ff.ws_normal(x.suggestion) != ff.ws_normal(job.lines[x.index])
    ]
    changed = job.focus.changed
    out.sort(key=lambda x: (x.index not in changed, -(x.p or 0.0)))
    return out


def _flag(job: FlagJob, x: LineState, checker: FixChecker, no_fix: dict[str, int]) -> Flag:
    line = job.lines[x.index]
    score = float(x.p or 0.0)
    suggestion = x.suggestion.strip()
    why = checker.why_not(x.index, suggestion)
    if why is not None:
        no_fix[why] = no_fix.get(why, 0) + 1
    start = len(line) - len(line.lstrip())
    return Flag(
        x.index,
        score,
        line,
        suggestion,
        start,
        len(line.rstrip()),
        probability=job.model.probability(score),
        fix=None if why is not None else checker.fix(x.index, suggestion),
        changed=x.index in job.focus.changed,
    )


#: Each job's quick-fix checker: the job's text is parsed (and compiled) once, and each line's
#: suggestion checked once, however often :func:`build_result` runs (a long document's flags are
#: shown window by window).
_CHECKERS: weakref.WeakKeyDictionary[FlagJob, FixChecker] = weakref.WeakKeyDictionary()
_CHECKERS_LOCK = threading.Lock()


def _checker(job: FlagJob) -> FixChecker:
    with _CHECKERS_LOCK:
        checker = _CHECKERS.get(job)
        if checker is None:
            checker = _CHECKERS[job] = FixChecker(job.lines, job.language_id)
        return checker


def build_result(job: FlagJob) -> FlagResult:
    """Scores and flags from the units of ``job`` run so far (all of them, normally)."""
    res = FlagResult(
        lines=len(job.lines),
        considered=len(job.considered),
        skipped=job.skipped,
        classifier=job.model.name,
        windows=len(job.windows),
        windows_reused=job.reused["windows"],
    )
    res.scores = [None] * len(job.lines)
    if job.skipped is not None:
        res.seconds = time.perf_counter() - job.t0
        return res
    regen = [x for x in job.info.values() if x.regen is not None]
    for x, p in zip(
        regen, job.model.final([x.cheap + (x.regen or []) for x in regen]), strict=True
    ):
        x.p = p
    res.regenerated = len(regen)
    # Ranking: regenerated lines by the final score above the rest by the first stage's.
    for x in job.info.values():
        res.scores[x.index] = 1.0 + x.p if x.p is not None else x.p1
    allowed = _candidates(job)[: job.max_flags]
    shown = [
        x
        for x in allowed
        if job.model.shows(x.p or 0.0, len(job.lines), job.min_score, job.min_probability)
    ]
    res.held_back = len(allowed) - len(shown)
    checker = _checker(job) if shown else None
    if checker is not None:
        res.flags = [_flag(job, x, checker, res.no_fix) for x in shown]
        res.parse_errors = checker.errors
    res.flags.sort(key=lambda f: (not f.changed, -f.score))
    res.seconds = time.perf_counter() - job.t0
    return res
