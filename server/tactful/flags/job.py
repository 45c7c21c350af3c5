"""Line anomaly flags (FLAG, made cheaper): the flagging job, as short units of model work.

1. The document is cut into windows of lines (bounded characters; :mod:`tactful.flags.plan`).
   Each window is scored in one teacher-forced pass that also keeps its KV cache
   (``Backend.score_into_slot``).
2. A first classifier ranks the window's lines from cheap features (token log-probabilities,
   entropy, line kind, distance to comments...). Only the top lines are regenerated, each from
   a copy of the kept cache (no prefill; with a FIM model, with the following lines as suffix).
   Lines changed in this editing session go first (``Focus``).
3. A second classifier scores the regenerated lines with the comparison features
   (:mod:`tactful.flags.result` picks the flags and their quick fixes).

Work is cut into short units (one window's scoring, one batch of regenerations) so that the LSP
layer can run them on the shared model one at a time and let completions go first
(:class:`FlagJob`); :func:`flag_document` runs them all in a row for the CLI and benchmarks.
This module computes what the flag cache stores (its source is part of the cache's keys): keep
selection, thresholds and delivery out of it.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from tactful.backend.types import Backend, GenerateRequest, Generation, LineScores
from tactful.flags import features as ff
from tactful.flags import plan
from tactful.flags.memo import WindowMemo, WindowRecord
from tactful.flags.model import FlagModel, default_model
from tactful.flags.plan import Focus, RegenOptions, Window
from tactful.flags.result import FlagResult, build_result

#: Lines of a FIM model's suffix.
FIM_SUFFIX_LINES = 12


class FlagCancelled(Exception):
    """The document changed (or the caller gave up) before flagging finished."""


class FlagInterrupted(Exception):
    """A unit gave way to more urgent model work; run the same unit again later."""


@dataclass
class LineState:
    """What the job knows about one considered line."""

    index: int
    cheap: list[float]
    p1: float = 0.0
    regen: list[float] | None = None
    suggestion: str = ""
    p: float | None = None
    #: Tokens of the written line that its regeneration starts with (see ``FlagJob._cut``).
    kept: int = 0


class FlagJob:
    """Flagging one document, as a sequence of short model units (see :meth:`steps`)."""

    def __init__(
        self,
        text: str,
        language_id: str,
        *,
        budget: float = 0.15,
        model: FlagModel | None = None,
        max_lines: int = 5000,
        key: str = "flag",
        cancel: threading.Event | None = None,
        min_score: float = 0.0,
        min_probability: float = 0.0,
        memo: WindowMemo | None = None,
        focus: Focus | None = None,
        options: RegenOptions | None = None,
    ) -> None:
        self.t0 = time.perf_counter()
        self.text = text
        self.language_id = language_id
        self.budget = budget
        self.model = model or default_model()
        self.key = f"flag:{key}"
        self.cancel = cancel or threading.Event()
        #: Set by the caller (per unit) to make the running unit give way: FlagInterrupted.
        self.interrupt: threading.Event | None = None
        #: Flags scoring below this, or whose calibrated probability is below
        #: ``min_probability``, are not shown (0 and 0: fill the budget).
        self.min_score = min_score
        self.min_probability = min_probability
        self.focus = focus or Focus()
        self.options = options or RegenOptions()
        self.speculative = self.options.speculative
        self.batch = max(1, self.options.batch)
        self.force = set(self.options.force)
        #: Model results of earlier runs, reused for windows whose text is unchanged.
        self.memo = memo
        self._init_model_state()
        self.lines = ff.document_lines(text)
        #: Why the document is not flagged at all (None: it is).
        self.skipped = plan.skip_reason(text, max_lines)
        #: The reason is no news (an empty document, nothing changed, a budget too small).
        self.skip_routine = self.skipped == plan.EMPTY
        self.info: dict[int, LineState] = {}
        self.windows: list[Window] = []
        #: Windows whose units have all run (``steps`` counts them as it hands out units): the
        #: lines before ``windows[windows_done].start`` have all their model results, so
        #: :meth:`result` can already show their flags.
        self.windows_done = 0
        self.max_flags = plan.max_flags(budget, len(self.lines))
        self.kinds: list[str] = []
        self.considered: list[int] = []
        self.n_regen = 0
        if self.skipped is None:
            self._prepare()
            none = plan.nothing_to_flag(
                self.lines, self.kinds, self.considered, self.n_regen, self.focus
            )
            if none is not None:
                self.skipped, self.skip_routine = none

    def _init_model_state(self) -> None:
        """What the units keep between them: the memo record and the scoring pass of the
        current window, the window whose KV cache the backend slot holds, and counters."""
        self._rec: WindowRecord | None = None
        self._rec_key: tuple[str, str] = ("", "")
        #: The window whose KV cache the backend slot holds (None: none of this job's yet).
        self._slot_window: int | None = None
        #: Windows and regenerations this job took from the memo.
        self.reused = {"windows": 0, "regenerations": 0}
        #: Lines whose regeneration needed no model call (every token was the model's choice).
        self.shortcuts = 0
        self._starts: list[int] = []
        self._greedy: list[bool] = []
        self._lp: list[list[float]] = []
        self._lp_off = 0

    def _prepare(self) -> None:
        """Line kinds, the lines that can be flagged, and the scoring windows."""
        self.facts = ff.syntax_facts("\n".join(self.lines), self.lines, self.language_id)
        self.kinds = ff.line_kinds(self.lines, self.facts)
        self.considered = plan.considered_lines(self.lines, self.kinds, self.focus)
        self.n_regen = plan.regen_count(len(self.considered), self.max_flags, self.options)
        self.windows = plan.plan_windows(self.lines)
        self.model_lines = [
            ln if len(ln) <= plan.MAX_LINE_CHARS else ln[: plan.LONG_LINE_KEEP] for ln in self.lines
        ]

    def _check(self) -> None:
        if self.cancel.is_set():
            raise FlagCancelled()
        if self.interrupt is not None and self.interrupt.is_set():
            raise FlagInterrupted()

    def _event(self) -> threading.Event:
        """What model calls watch: the unit's interrupt (set on cancel too), else the cancel."""
        return self.interrupt if self.interrupt is not None else self.cancel

    # -- units --------------------------------------------------------------------------------
    def steps(self) -> Iterator[Callable[[Backend], None]]:
        """Units of model work, each short; run each before asking for the next."""
        if self.skipped is not None:
            return  # nothing can be flagged (e.g. a budget below one line): no model work
        total = len(self.considered)
        considered = set(self.considered)
        quota_left = self.n_regen
        for wi, w in enumerate(self.windows):
            self.windows_done = wi
            mine = [i for i in range(w.start, w.end) if i in considered]
            if not mine:
                continue
            yield functools.partial(self._score_window, w=w)
            if self.options.regenerate_all:
                k = len(mine)
            elif wi == len(self.windows) - 1:
                k = quota_left
            else:
                k = min(quota_left, math.ceil(self.n_regen * len(mine) / total))
            quota_left -= k
            yield from self._regen_units(w, mine, k)
        self.windows_done = len(self.windows)

    def _regen_units(
        self, w: Window, mine: Sequence[int], k: int
    ) -> Iterator[Callable[[Backend], None]]:
        """The regeneration units of window ``w``: its ``k`` top lines (changed lines first)."""
        changed = self.focus.changed
        top = sorted(mine, key=lambda i: (i not in changed, -self.info[i].p1))[:k]
        chosen = sorted(set(top) | (self.force & set(mine)))
        # A batch decodes until its longest line ends: batch lines of like length.
        chosen.sort(key=lambda i: len(self._orig_lp(i)))
        for b in range(0, len(chosen), self.batch):
            part = chosen[b : b + self.batch]
            yield functools.partial(self._regenerate_batch, w=w, lines=part)

    def _window_text(self, w: Window) -> str:
        """The text the model sees for window ``w``: its context lines, then its own."""
        return "\n".join(self.model_lines[w.ctx_start : w.end])

    def _memo_key(self, backend: Backend, w: Window) -> tuple[str, str]:
        dtype = getattr(getattr(backend, "model", None), "dtype", "")
        path = "fast" if getattr(backend, "fast", None) is not None else "stock"
        name = getattr(backend, "name", type(backend).__name__)
        return f"{name}:{dtype}:{path}", self._window_text(w)

    def _score_into_slot(self, backend: Backend, w: Window) -> LineScores:
        try:
            scores = backend.score_into_slot(self._window_text(w), self.key, self._event())
        except InterruptedError:
            self._check()
            raise FlagCancelled() from None
        self._slot_window = w.start
        return scores

    def _score_window(self, backend: Backend, w: Window) -> None:
        self._check()
        rec = None
        if self.memo is not None:
            key = self._memo_key(backend, w)
            self._rec_key = key
            rec = self.memo.get(key)
            if rec is not None:
                self.reused["windows"] += 1
            else:
                rec = WindowRecord(self._score_into_slot(backend, w))
                self.memo.put(key, rec)
            scores = rec.scores
        else:
            scores = self._score_into_slot(backend, w)
        self._rec = rec
        off = w.ctx_start
        lp = scores.line_logprobs
        ent = scores.line_entropy
        # Features over the owned lines (rank and z-score within the window).
        own = range(w.start, w.end)
        rows = ff.cheap_features(
            [self.lines[i] for i in own],
            [self.kinds[i] for i in own],
            ff.Syntax(
                [self.facts.comment[i] for i in own],
                [self.facts.string[i] for i in own],
                [self.facts.imports[i] for i in own],
                [self.facts.error[i] for i in own],
                self.facts.parsed,
            ),
            [lp[i - off] if i - off < len(lp) else [] for i in own],
            [ent[i - off] if i - off < len(ent) else [] for i in own],
        )
        n = len(self.lines)
        for j, i in enumerate(own):
            rows[j][ff.CHEAP_FEATURES.index("rel_pos")] = i / max(1, n - 1)
            rows[j][ff.CHEAP_FEATURES.index("log_lines")] = math.log(n + 1)
        self.model.fill_prior(rows)
        considered = set(self.considered)
        mine = [i for i in own if i in considered]
        p1 = self.model.stage1([rows[i - w.start] for i in mine])
        for i, p in zip(mine, p1, strict=True):
            self.info[i] = LineState(i, rows[i - w.start], p)
        self._lp = lp
        self._lp_off = off
        self._starts = scores.token_starts
        self._greedy = scores.token_greedy

    def _cut(self, w: Window, i: int) -> tuple[int, int, int | None]:
        """(content start, tokens kept, cut) for line ``i`` in its window's text.

        Greedy regeneration repeats the written text up to its first token that was not the
        model's own choice; generation starts there (``cut``). None: every token of the line and
        its line end were the model's choice, so the regeneration is the line itself."""
        ls = sum(len(ln) + 1 for ln in self.model_lines[w.ctx_start : i])
        line = self.model_lines[i]
        content = ls + len(line) - len(line.lstrip())
        le = ls + len(line)
        if not self.speculative or not self._starts:
            return content, 0, content
        kept = 0
        saw_end = False
        for start, greedy in zip(self._starts, self._greedy, strict=False):
            if start < ls:
                continue
            if start > le:
                break
            saw_end = saw_end or start == le
            if not greedy:
                if start < content:
                    return content, 0, content
                return content, kept, min(start, le)
            if start >= content:
                kept += 1
        return (content, kept, None) if saw_end else (content, kept, le)

    def _request(self, backend: Backend, w: Window, i: int) -> tuple[GenerateRequest, str] | None:
        """The regeneration request of line ``i`` and the written text it starts with; None
        when the line needs no model call (recorded at once)."""
        line = self.lines[i]
        orig_lp = self._orig_lp(i)
        fim = bool(getattr(backend, "fim", False))
        window_text = self._window_text(w)
        content, kept, cut = self._cut(w, i) if not fim else self._cut_plain(w, i)
        info = self.info[i]
        if cut is None:  # the model would write this very line
            info.suggestion = line.strip()
            info.regen = ff.regen_features(line, line, orig_lp, orig_lp)
            self.shortcuts += 1
            return None
        suffix = "\n" + "\n".join(self.model_lines[i + 1 : i + 1 + FIM_SUFFIX_LINES]) if fim else ""
        req = GenerateRequest(
            prefix=window_text[:cut],
            suffix=suffix,
            max_new_tokens=min(40, max(4, len(orig_lp) - kept + 6)),
            single_line=True,
            cache_key=None if fim else self.key,
            cancel=self._event(),
            use_fim=fim,
            keep_slot=not fim,
        )
        info.kept = kept
        return req, window_text[content:cut]

    def _orig_lp(self, i: int) -> list[float]:
        return self._lp[i - self._lp_off] if i - self._lp_off < len(self._lp) else []

    def _record(self, i: int, head: str, gen: Generation) -> None:
        info = self.info[i]
        tail = "" if gen.text.startswith("\n") else gen.text.split("\n")[0]
        generated = (head + tail).rstrip()
        info.suggestion = generated
        orig_lp = self._orig_lp(i)
        info.regen = ff.regen_features(
            self.lines[i], generated, orig_lp, list(orig_lp[: info.kept]) + gen.token_logprobs
        )
        if self._rec is not None:
            self._rec.regens[i - self._lp_off] = (info.suggestion, info.regen, info.kept)

    def _from_memo(self, backend: Backend, w: Window, lines: Sequence[int]) -> list[int]:
        """Take the regenerations the memo holds for ``lines``; returns the lines still to do,
        after loading the window into the backend's slot when its scores came from the memo."""
        if self._rec is None:
            return list(lines)
        todo = []
        for i in lines:
            got = self._rec.regens.get(i - w.ctx_start)
            if got is None:
                todo.append(i)
                continue
            info = self.info[i]
            info.suggestion, info.regen, info.kept = got[0], list(got[1]), got[2]
            self.reused["regenerations"] += 1
        if todo and self._slot_window != w.start and not getattr(backend, "fim", False):
            self._score_into_slot(backend, w)  # the generations continue its KV cache
        return todo

    def _regenerate(self, backend: Backend, w: Window, i: int) -> None:
        self._check()
        planned = self._request(backend, w, i)
        if planned is None:
            return
        req, head = planned
        gen = backend.generate(req)
        if gen.cancelled:
            self._check()
            raise FlagCancelled()
        self._record(i, head, gen)

    def _regenerate_batch(self, backend: Backend, w: Window, lines: Sequence[int]) -> None:
        """Regenerate several lines of one window together (``Backend.generate_many``); a
        unit that gives way keeps the lines it finished, and its retry does the rest. The
        window's record goes to the memo's store again when it gained regenerations."""
        rec = self._rec
        before = len(rec.regens) if rec is not None else 0
        try:
            self._regenerate_lines(backend, w, lines)
        finally:
            if rec is not None and self.memo is not None and len(rec.regens) > before:
                self.memo.save(self._rec_key, rec)

    def _regenerate_lines(self, backend: Backend, w: Window, lines: Sequence[int]) -> None:
        self._check()
        many = getattr(backend, "generate_many", None)
        todo = self._from_memo(backend, w, [i for i in lines if self.info[i].regen is None])
        if many is None or len(todo) < 2:
            for i in todo:
                self._regenerate(backend, w, i)
            return
        planned = [(i, self._request(backend, w, i)) for i in todo]
        calls = [(i, p) for i, p in planned if p is not None]
        if not calls:
            return
        gens = many([req for _i, (req, _head) in calls])
        stopped = False
        for (i, (_req, head)), gen in zip(calls, gens, strict=True):
            if gen.cancelled:
                stopped = True
            else:
                self._record(i, head, gen)
        if stopped:
            self._check()
            raise FlagCancelled()

    def _cut_plain(self, w: Window, i: int) -> tuple[int, int, int | None]:
        ls = sum(len(ln) + 1 for ln in self.model_lines[w.ctx_start : i])
        line = self.model_lines[i]
        content = ls + len(line) - len(line.lstrip())
        return content, 0, content

    # -- result -------------------------------------------------------------------------------
    def result(self) -> FlagResult:
        """Scores and flags from the units run so far (all of them, normally)."""
        return build_result(self)

    def run(self, backend: Backend) -> FlagResult:
        """Run every unit now, on the calling thread, and return the result (the command line,
        the benchmarks and the dataset build; the editor runs the units on the model worker)."""
        for unit in self.steps():
            unit(backend)
        return self.result()

    def rows(self) -> list[tuple[int, list[float], list[float] | None, float]]:
        """(line, cheap features, regeneration features or None, stage-1 score) per considered line."""
        return [
            (x.index, x.cheap, x.regen, x.p1)
            for x in sorted(self.info.values(), key=lambda x: x.index)
        ]


def flag_document(
    backend: Backend,
    text: str,
    language_id: str,
    budget: float = 0.15,
    *,
    cancel: threading.Event | None = None,
    model: FlagModel | None = None,
    max_lines: int = 5000,
    max_regen: int = plan.MAX_REGEN,
    key: str = "flag",
    min_score: float = 0.0,
    min_probability: float = 0.0,
    memo: WindowMemo | None = None,
) -> FlagResult:
    """Flag ``text`` now, on the calling thread (the CLI and benchmarks; the editor runs the
    units on the shared model instead). ``cancel`` stops it with :class:`FlagCancelled`;
    ``memo`` gives earlier results of unchanged windows."""
    job = FlagJob(
        text,
        language_id,
        budget=budget,
        model=model,
        max_lines=max_lines,
        key=key,
        cancel=cancel,
        min_score=min_score,
        min_probability=min_probability,
        memo=memo,
        options=RegenOptions(max_regen=max_regen),
    )
    return job.run(backend)
