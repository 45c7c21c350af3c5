"""The flag rate guard: notice when a codebase gets more flags than the product promises, and
back off.

The thresholds (``flags.minScore``, ``flags.minProbability``) were chosen so that correct code
of projects the classifier never saw gets at most 2 flags per 100 lines (docs/flags.md). That
holds on average, not on every project: held out, one of the realfix projects (scrapy) gets
4.7 per 100 lines at the threshold chosen on the other projects. Most of the lines of a codebase are correct (a real bug is about
one line in 300), so the flags shown per 100 lines flagged is an upper bound of the rate on
correct code that the product can see without any label. Once the files flagged in a session
hold enough lines for the rate to mean something (as many as would allow ``MIN_EXPECTED``
flags at the promised rate), and their flags exceed the promise, only the best-scoring flags
that fit the promise are shown: :meth:`RateGuard.min_score` is the score a flag then needs.

Plain data, no model: used by the LSP flag service (files flagged in this server session) and
``tactful flag FILE...`` (the files of one run), and replayed on recorded flags by
``python -m tactful.flags.train lpo`` (:func:`simulate`).
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

#: The guard acts once the flagged lines would allow this many flags at the promised rate.
MIN_EXPECTED = 6
#: Files remembered (the least recently flagged are forgotten first).
MAX_FILES = 5000


@dataclass(frozen=True)
class GuardState:
    """What the guard sees: lines flagged, flags shown by the thresholds, and the score a flag
    needs now (0: the guard does not act)."""

    files: int
    lines: int
    flags: int
    min_score: float

    @property
    def per_100_lines(self) -> float:
        return 100.0 * self.flags / self.lines if self.lines else 0.0

    def to_json(self) -> dict[str, float | int]:
        return {
            "files": self.files,
            "lines": self.lines,
            "flags": self.flags,
            "per_100_lines": round(self.per_100_lines, 2),
            "min_score": round(self.min_score, 6),
        }


class _Scored(Protocol):
    @property
    def score(self) -> float: ...


F = TypeVar("F", bound=_Scored)


def target(max_per_100_lines: float, min_probability: float) -> float:
    """The rate the guard holds flags to at these settings: off (0) when the budget is filled
    (the probability threshold at 0), as the short-file floor is."""
    return max_per_100_lines if min_probability > 0 else 0.0


def min_lines(max_per_100_lines: float) -> int:
    """Lines flagged before the guard acts at this promise (0: never)."""
    if max_per_100_lines <= 0:
        return 0
    return round(100.0 * MIN_EXPECTED / max_per_100_lines)


def cut(files: Iterable[tuple[int, Sequence[float]]], max_per_100_lines: float) -> float:
    """The least score a flag needs so that the flags of ``files`` ((lines, scores of the flags
    the thresholds show) each) fit ``max_per_100_lines``; 0 when they fit already, when there
    are too few lines to tell (:func:`min_lines`) or when the guard is off (0)."""
    files = list(files)
    lines = sum(n for n, _ in files)
    if max_per_100_lines <= 0 or lines < min_lines(max_per_100_lines):
        return 0.0
    scores = sorted((s for _, ss in files for s in ss), reverse=True)
    allowed = int(max_per_100_lines * lines / 100.0 + 1e-9)
    if len(scores) <= allowed:
        return 0.0
    # Strictly above the best score that does not fit (ties with it do not fit either).
    return _above(scores[allowed])


def _above(x: float) -> float:
    return x + max(1e-9, abs(x) * 1e-9)


class RateGuard:
    """The flags of the files flagged so far (the last run of each) and the score a flag needs
    for them to fit the promised rate. Thread-safe."""

    def __init__(self) -> None:
        self._files: OrderedDict[str, tuple[int, tuple[float, ...]]] = OrderedDict()
        self._lock = threading.Lock()
        #: The last state computed and the rate it was for (every diagnostic and code action
        #: asks; it changes only when a file is recorded).
        self._state: tuple[float, GuardState] | None = None

    def record(
        self, key: str, lines: int, scores: Iterable[float], max_per_100_lines: float
    ) -> GuardState | None:
        """The last whole-file run of ``key``: its lines and the scores of the flags the
        thresholds showed (before the guard). Returns the new state when the score a flag needs
        changed (None: it did not)."""
        before = self.min_score(max_per_100_lines)
        with self._lock:
            self._files.pop(key, None)
            self._files[key] = (max(0, int(lines)), tuple(float(s) for s in scores))
            while len(self._files) > MAX_FILES:
                self._files.popitem(last=False)
            self._state = None
        after = self.state(max_per_100_lines)
        return after if after.min_score != before else None

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
            self._state = None

    def state(self, max_per_100_lines: float) -> GuardState:
        with self._lock:
            if self._state is not None and self._state[0] == max_per_100_lines:
                return self._state[1]
            files = list(self._files.values())
            state = GuardState(
                files=len(files),
                lines=sum(n for n, _ in files),
                flags=sum(len(s) for _, s in files),
                min_score=cut(files, max_per_100_lines),
            )
            self._state = (max_per_100_lines, state)
            return state

    def min_score(self, max_per_100_lines: float) -> float:
        return self.state(max_per_100_lines).min_score

    def passing(self, flags: Iterable[F], max_per_100_lines: float) -> list[F]:
        """The flags (anything with a ``score``) that the guard lets through now."""
        need = self.min_score(max_per_100_lines)
        return [f for f in flags if f.score >= need]


def describe(state: GuardState, max_per_100_lines: float) -> str:
    """The log line of a change of the guard's cut."""
    seen = (
        f"{state.flags} flags in the {state.lines} lines of the {state.files} files flagged"
        f" so far ({state.per_100_lines:.1f} per 100 lines)"
    )
    if state.min_score <= 0:
        return f"{seen}: within flags.maxPerHundredLines ({max_per_100_lines:g}); all are shown"
    return (
        f"{seen}: more than flags.maxPerHundredLines ({max_per_100_lines:g}), so only flags"
        f" scoring at least {state.min_score:.3f} are shown"
    )


@dataclass(frozen=True)
class Recorded:
    """One file of a project as the thresholds flag it, for :func:`simulate`: its lines and the
    (line, score) of each flag shown in its correct version and in its buggy one, and the bug's
    line (0-based)."""

    group: str
    lines: int
    fixed: tuple[tuple[int, float], ...]
    buggy: tuple[tuple[int, float], ...]
    bug: int


def simulate(
    files: Sequence[Recorded], max_per_100_lines: float, orders: int = 20, seed: int = 0
) -> dict[str, dict[str, float]]:
    """The guard replayed per group: a project whose files are opened one by one (in ``orders``
    random orders) and flagged as the editor does, each with the guard's cut after recording
    it. The files opened before are the correct versions (a codebase is mostly correct code);
    the file opened now is its correct version for the rate and its buggy one for the recall.
    Flags per 100 lines of correct code and the share of bugs flagged, without and with the
    guard."""
    by_group: dict[str, list[Recorded]] = {}
    for f in files:
        by_group.setdefault(f.group, []).append(f)
    out: dict[str, dict[str, float]] = {}
    for group, fs in sorted(by_group.items()):
        flags, hits, lines = [0, 0], [0, 0], 0
        for k in range(orders):
            order = list(fs)
            random.Random(f"{seed}:{group}:{k}").shuffle(order)
            seen: list[tuple[int, list[float]]] = []
            for f in order:
                fixed = [s for _, s in f.fixed]
                need = (
                    cut([*seen, (f.lines, fixed)], max_per_100_lines),
                    cut([*seen, (f.lines, [s for _, s in f.buggy])], max_per_100_lines),
                )
                for i, (m_fixed, m_buggy) in enumerate(((0.0, 0.0), need)):
                    flags[i] += sum(1 for s in fixed if s >= m_fixed)
                    hits[i] += any(ln == f.bug and s >= m_buggy for ln, s in f.buggy)
                lines += f.lines
                seen.append((f.lines, fixed))
        n = len(fs) * orders
        out[group] = {
            "files": len(fs),
            "per_100_lines": round(100.0 * flags[0] / max(1, lines), 3),
            "per_100_lines_guarded": round(100.0 * flags[1] / max(1, lines), 3),
            "recall": round(hits[0] / n, 4),
            "recall_guarded": round(hits[1] / n, 4),
        }
    return out
