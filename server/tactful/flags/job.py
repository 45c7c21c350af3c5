"""Line anomaly flags (FLAG, made cheaper): find the lines of a document that look wrong.

Owns the flagging pipeline as plain logic over a ``Backend`` and the ``tactful flag`` command.

1. The document is cut into windows of lines (bounded characters). Each window is scored in one
   teacher-forced pass that also keeps its KV cache (``Backend.score_into_slot``).
2. A first classifier ranks the window's lines from cheap features (token log-probabilities,
   entropy, line kind, distance to comments...). Only the top lines are regenerated, each from
   a copy of the kept cache (no prefill; with a FIM model, with the following lines as suffix).
3. A second classifier scores the regenerated lines with the comparison features (normalised
   edit distance on characters and tokens, whitespace-normalised match, log-probability of the
   written vs the regenerated line). At most ``budget`` of the file's lines are flagged, highest
   score first; a flag always carries a different alternative line.

Work is cut into short units (one window's scoring, one line's regeneration) so that the LSP
layer can run them on the shared model one at a time and let completions go first
(:class:`FlagJob`); :func:`flag_document` runs them all in a row for the CLI and benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import math
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tactful.backend.types import Backend, GenerateRequest, Generation, LineScores
from tactful.config import FlagSettings
from tactful.flags import features as ff

if TYPE_CHECKING:
    from tactful.cache import JsonCache

log = logging.getLogger(__name__)

#: Characters of owned lines per scoring window (about 1,000-1,500 tokens).
WINDOW_CHARS = 4000
WINDOW_MAX_LINES = 160
#: Lines before a window that the model sees as context (scored but owned by the previous window).
CONTEXT_LINES = 24
CONTEXT_CHARS = 1500
#: Longer lines are cut to ``LONG_LINE_KEEP`` characters for the model and never flagged.
MAX_LINE_CHARS = 400
LONG_LINE_KEEP = 120
#: Regenerate this many more lines than can be flagged, and never more than MAX_REGEN per file.
REGEN_EXTRA = 2
#: Lines of one window regenerated together (one decoding pass per token for all of them).
REGEN_BATCH = 8
MAX_REGEN = 64
#: Lines of a FIM model's suffix.
FIM_SUFFIX_LINES = 12
NOT_CONSIDERED = ("blank", "comment")


class FlagCancelled(Exception):
    """The document changed (or the caller gave up) before flagging finished."""


class FlagInterrupted(Exception):
    """A unit gave way to more urgent model work; run the same unit again later."""


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

    @property
    def message(self) -> str:
        return (
            f"Unusual line (score {self.score:.2f}); the model expected: {self.suggestion.strip()}"
        )


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
            flags=[
                {
                    "line": f.line + 1,
                    "score": round(f.score, 4),
                    "text": f.text,
                    "suggestion": f.suggestion,
                    "message": f.message,
                }
                for f in flags
            ],
        )
        return out


# --- classifiers ---------------------------------------------------------------------------------
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
    ) -> None:
        self._stage1 = stage1
        self._final = final
        #: The prior classifier (line text and place only), or None: ``prior`` stays NaN.
        self._prior = prior
        self.meta = meta or {}
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
        return cls(stage1, final, meta, prior)

    def fill_prior(self, rows: Sequence[list[float]]) -> None:
        """Set the ``prior`` feature of cheap feature rows (in place) from the prior classifier."""
        if self._prior is None or not rows:
            return
        k = ff.CHEAP_FEATURES.index("prior")
        for row, p in zip(rows, prior_scores(self._prior, rows), strict=True):
            row[k] = p

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


# --- the job -------------------------------------------------------------------------------------
def skip_reason(text: str, max_lines: int) -> str | None:
    """Why a text is not flagged at all (None: it is flagged)."""
    if "\x00" in text:
        return "binary content (NUL characters)"
    sample = text[:20000]
    if sample:
        ctrl = sum(1 for c in sample if ord(c) < 32 and c not in "\n\r\t\f\v")
        if ctrl / len(sample) > 0.01 or sample.count("\ufffd") / len(sample) > 0.01:
            return "binary content (control characters)"
    n = text.count("\n") + 1
    if n > max_lines:
        return f"{n} lines is more than flags.maxLines ({max_lines})"
    lines = text.split("\n")
    long_chars = sum(len(ln) for ln in lines if len(ln) > MAX_LINE_CHARS)
    if len(text) > 2000 and long_chars > len(text) / 2:
        return "minified or generated text (most of it is in lines over 400 characters)"
    if not any(ln.strip() for ln in lines):
        return "empty document"
    return None


@dataclass
class _Window:
    ctx_start: int  # first line the model sees
    start: int  # first owned line
    end: int  # one past the last owned line


@dataclass
class _WindowRecord:
    """What the model gave for one window's text: its scoring pass, and the regenerations done
    so far (by the line's place in the window: suggestion, regeneration features, kept tokens)."""

    scores: LineScores
    regens: dict[int, tuple[str, list[float], int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        s = self.scores
        return {
            "lp": s.line_logprobs,
            "ent": s.line_entropy,
            "tokens": s.tokens,
            "starts": s.token_starts,
            "greedy": "".join("1" if g else "0" for g in s.token_greedy),
            "regens": {str(k): [t, f, kept] for k, (t, f, kept) in self.regens.items()},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> _WindowRecord:
        """The record ``to_json`` wrote; ValueError (or KeyError, TypeError) on anything else."""
        lp, ent = d["lp"], d["ent"]
        if not isinstance(lp, list) or not isinstance(ent, list) or len(lp) != len(ent):
            raise ValueError("a window record needs as many entropy rows as log-probability rows")
        scores = LineScores(
            [[float(x) for x in row] for row in lp],
            [[float(x) for x in row] for row in ent],
            int(d["tokens"]),
            token_starts=[int(x) for x in d["starts"]],
            token_greedy=[c == "1" for c in str(d["greedy"])],
        )
        regens = {
            int(k): (str(t), [float(x) for x in f], int(kept))
            for k, (t, f, kept) in dict(d["regens"]).items()
        }
        return cls(scores, regens)


#: The persistent flag cache's folder in the cache directory.
STORE_FOLDER = "flag-windows"
#: The modules whose code computes a window record: a stored record is read only by the same code.
_RECORD_CODE = (
    "flags/job.py",
    "flags/features.py",
    "backend/hf.py",
    "backend/fast.py",
    "backend/types.py",
)


@functools.cache
def _record_code_version() -> str:
    """A fingerprint of the code that computes window records, and of the torch it runs on."""
    import hashlib
    from importlib import metadata

    from tactful import __version__

    h = hashlib.sha256(f"flag-window-record/{__version__}\x1f".encode())
    here = Path(__file__).resolve().parent.parent
    for name in _RECORD_CODE:
        try:
            h.update((here / name).read_bytes())
        except OSError:  # installed without its sources: the version stands for them
            h.update(name.encode())
    with contextlib.suppress(metadata.PackageNotFoundError):
        h.update(metadata.version("torch").encode())
    return h.hexdigest()


class WindowMemo:
    """Model results of recently flagged windows, by the window's text (and the model's name,
    dtype and decoding path): flagging a document again after an edit redoes only the windows
    whose text changed. A window's results depend only on its text, so they are the ones a fresh
    run computes (a regeneration done in another batch can differ at a bfloat16 tie, as batching
    can). Keep one per backend and :meth:`clear` it when the model changes.

    With a ``store`` (a :class:`tactful.cache.JsonCache`), the records also go to disk, so a
    restarted server, or another ``tactful flag`` run, flags an unchanged window without model
    work. Disk keys hash the memo key with a fingerprint of the code that computes the records
    and the torch version (``_record_code_version``); a record that cannot be read is a miss."""

    def __init__(self, windows: int = 64, store: JsonCache | None = None) -> None:
        self.windows = windows
        self._records: OrderedDict[tuple[str, str], _WindowRecord] = OrderedDict()
        #: Jobs use it on the model thread; the LSP layer clears it from the event loop.
        self._lock = threading.Lock()
        self.store = store
        #: Records read from the store.
        self.loaded = 0

    @staticmethod
    def _disk_key(key: tuple[str, str]) -> str:
        from tactful.cache import hash_key

        return hash_key(_record_code_version(), *key)

    def get(self, key: tuple[str, str]) -> _WindowRecord | None:
        with self._lock:
            rec = self._records.get(key)
            if rec is not None:
                self._records.move_to_end(key)
                return rec
        store = self.store
        if store is None:
            return None
        raw = store.get(self._disk_key(key))
        if raw is None:
            return None
        try:
            rec = _WindowRecord.from_json(raw)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("flags: a stored window record is unreadable, recomputing it: %s", exc)
            return None
        self.loaded += 1
        self._remember(key, rec)
        return rec

    def put(self, key: tuple[str, str], rec: _WindowRecord) -> None:
        self._remember(key, rec)
        self.save(key, rec)

    def save(self, key: tuple[str, str], rec: _WindowRecord) -> None:
        """Write ``rec`` to the store (again, once regenerations were added to it)."""
        store = self.store
        if store is not None:
            store.put(self._disk_key(key), rec.to_json())

    def _remember(self, key: tuple[str, str], rec: _WindowRecord) -> None:
        with self._lock:
            self._records[key] = rec
            self._records.move_to_end(key)
            while len(self._records) > self.windows:
                self._records.popitem(last=False)

    def clear(self) -> None:
        """Forget the records held in memory (the store keeps its own: its keys name the model)."""
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        return len(self._records)


@dataclass
class _Line:
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
        max_regen: int = MAX_REGEN,
        key: str = "flag",
        cancel: threading.Event | None = None,
        regenerate_all: bool = False,
        regen_extra: int = REGEN_EXTRA,
        force: Sequence[int] = (),
        speculative: bool = True,
        min_score: float = 0.0,
        batch: int | None = None,
        memo: WindowMemo | None = None,
    ) -> None:
        self.t0 = time.perf_counter()
        #: Model results of earlier runs, reused for windows whose text is unchanged.
        self.memo = memo
        self._rec: _WindowRecord | None = None
        self._rec_key: tuple[str, str] = ("", "")
        #: The window whose KV cache the backend slot holds (None: none of this job's yet).
        self._slot_window: int | None = None
        #: Windows and regenerations this job took from the memo.
        self.reused = {"windows": 0, "regenerations": 0}
        #: Lines of one window regenerated together (default ``REGEN_BATCH``; 1: one at a time).
        self.batch = max(1, batch if batch is not None else REGEN_BATCH)
        #: Flags scoring below this are not shown (0: fill the budget).
        self.min_score = min_score
        self.seconds = 0.0
        self.text = text
        self.language_id = language_id
        self.budget = budget
        self.model = model or default_model()
        self.key = f"flag:{key}"
        self.cancel = cancel or threading.Event()
        #: Set by the caller (per unit) to make the running unit give way: FlagInterrupted.
        self.interrupt: threading.Event | None = None
        self.regenerate_all = regenerate_all
        #: Lines regenerated whatever the first stage says (training data: the injected bug).
        self.force = set(force)
        #: Start each regeneration at the line's first non-greedy token (same text, less work).
        self.speculative = speculative
        #: Lines whose regeneration needed no model call (every token was the model's choice).
        self.shortcuts = 0
        self._starts: list[int] = []
        self._greedy: list[bool] = []
        self._lp: list[list[float]] = []
        self._lp_off = 0
        self.lines = ff.document_lines(text)
        self.skipped = skip_reason(text, max_lines)
        self.info: dict[int, _Line] = {}
        self.windows: list[_Window] = []
        #: Windows whose units have all run (``steps`` counts them as it hands out units): the
        #: lines before ``windows[windows_done].start`` have all their model results, so
        #: :meth:`result` can already show their flags.
        self.windows_done = 0
        n = len(self.lines)
        self.max_flags = math.floor(budget * n + 1e-9)
        if self.skipped is not None:
            self.kinds: list[str] = []
            self.considered: list[int] = []
            self.n_regen = 0
            return
        facts = ff.syntax_facts("\n".join(self.lines), self.lines, language_id)
        self.facts = facts
        self.kinds = ff.line_kinds(self.lines, facts)
        self.considered = [
            i
            for i, k in enumerate(self.kinds)
            if k not in NOT_CONSIDERED and len(self.lines[i]) <= MAX_LINE_CHARS
        ]
        if regenerate_all:
            self.n_regen = len(self.considered)
        else:
            self.n_regen = min(
                max_regen,
                len(self.considered),
                self.max_flags + regen_extra if self.max_flags else 0,
            )
        self.windows = self._plan()
        self.model_lines = [
            ln if len(ln) <= MAX_LINE_CHARS else ln[:LONG_LINE_KEEP] for ln in self.lines
        ]

    def _plan(self) -> list[_Window]:
        out: list[_Window] = []
        n = len(self.lines)
        start = 0
        while start < n:
            end, chars = start, 0
            while end < n and (
                end == start or (chars < WINDOW_CHARS and end - start < WINDOW_MAX_LINES)
            ):
                chars += min(len(self.lines[end]), MAX_LINE_CHARS) + 1
                end += 1
            ctx, cchars = start, 0
            while ctx > 0 and start - ctx < CONTEXT_LINES and cchars < CONTEXT_CHARS:
                ctx -= 1
                cchars += min(len(self.lines[ctx]), MAX_LINE_CHARS) + 1
            out.append(_Window(ctx, start, end))
            start = end
        return out

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
        if self.skipped is not None or not self.considered or self.n_regen == 0:
            return  # nothing can be flagged (e.g. a budget below one line): no model work
        total = len(self.considered)
        owned_considered = {
            id(w): [i for i in self.considered if w.start <= i < w.end] for w in self.windows
        }
        quota_left = self.n_regen
        for wi, w in enumerate(self.windows):
            self.windows_done = wi
            mine = owned_considered[id(w)]
            if not mine:
                continue
            yield functools.partial(self._score_window, w=w)
            if self.regenerate_all:
                k = len(mine)
            elif wi == len(self.windows) - 1:
                k = quota_left
            else:
                k = min(quota_left, math.ceil(self.n_regen * len(mine) / total))
            quota_left -= k
            top = sorted(mine, key=lambda i: -self.info[i].p1)[:k]
            chosen = sorted(set(top) | (self.force & set(mine)))
            # A batch decodes until its longest line ends: batch lines of like length.
            chosen.sort(key=lambda i: len(self._orig_lp(i)))
            for b in range(0, len(chosen), self.batch):
                part = chosen[b : b + self.batch]
                yield functools.partial(self._regenerate_batch, w=w, lines=part)
        self.windows_done = len(self.windows)

    def _window_text(self, w: _Window) -> str:
        """The text the model sees for window ``w``: its context lines, then its own."""
        return "\n".join(self.model_lines[w.ctx_start : w.end])

    def _memo_key(self, backend: Backend, w: _Window) -> tuple[str, str]:
        dtype = getattr(getattr(backend, "model", None), "dtype", "")
        path = "fast" if getattr(backend, "fast", None) is not None else "stock"
        name = getattr(backend, "name", type(backend).__name__)
        return f"{name}:{dtype}:{path}", self._window_text(w)

    def _score_into_slot(self, backend: Backend, w: _Window) -> LineScores:
        try:
            scores = backend.score_into_slot(self._window_text(w), self.key, self._event())
        except InterruptedError:
            self._check()
            raise FlagCancelled() from None
        self._slot_window = w.start
        return scores

    def _score_window(self, backend: Backend, w: _Window) -> None:
        self._check()
        rec = None
        if self.memo is not None:
            key = self._memo_key(backend, w)
            self._rec_key = key
            rec = self.memo.get(key)
            if rec is not None:
                self.reused["windows"] += 1
            else:
                rec = _WindowRecord(self._score_into_slot(backend, w))
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
            self.info[i] = _Line(i, rows[i - w.start], p)
        self._lp = lp
        self._lp_off = off
        self._starts = scores.token_starts
        self._greedy = scores.token_greedy

    def _cut(self, w: _Window, i: int) -> tuple[int, int, int | None]:
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

    def _request(self, backend: Backend, w: _Window, i: int) -> tuple[GenerateRequest, str] | None:
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

    def _from_memo(self, backend: Backend, w: _Window, lines: Sequence[int]) -> list[int]:
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

    def _regenerate(self, backend: Backend, w: _Window, i: int) -> None:
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

    def _regenerate_batch(self, backend: Backend, w: _Window, lines: Sequence[int]) -> None:
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

    def _regenerate_lines(self, backend: Backend, w: _Window, lines: Sequence[int]) -> None:
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

    def _cut_plain(self, w: _Window, i: int) -> tuple[int, int, int | None]:
        ls = sum(len(ln) + 1 for ln in self.model_lines[w.ctx_start : i])
        line = self.model_lines[i]
        content = ls + len(line) - len(line.lstrip())
        return content, 0, content

    # -- result -------------------------------------------------------------------------------
    def result(self) -> FlagResult:
        """Scores and flags from the units run so far (all of them, normally)."""
        res = FlagResult(
            lines=len(self.lines),
            considered=len(self.considered),
            skipped=self.skipped,
            classifier=self.model.name,
            windows=len(self.windows),
            windows_reused=self.reused["windows"],
        )
        res.scores = [None] * len(self.lines)
        if self.skipped is not None:
            res.seconds = time.perf_counter() - self.t0
            return res
        regen = [x for x in self.info.values() if x.regen is not None]
        probs = self.model.final([x.cheap + (x.regen or []) for x in regen])
        for x, p in zip(regen, probs, strict=True):
            x.p = p
        res.regenerated = len(regen)
        # Ranking: regenerated lines by the final score above the rest by the first stage's.
        for x in self.info.values():
            res.scores[x.index] = 1.0 + x.p if x.p is not None else x.p1
        eligible = [
            x
            for x in regen
            if x.suggestion.strip()
            and ff.ws_normal(x.suggestion) != ff.ws_normal(self.lines[x.index])
            and (x.p or 0.0) >= self.min_score
        ]
        eligible.sort(key=lambda x: -(x.p or 0.0))
        for x in eligible[: self.max_flags]:
            line = self.lines[x.index]
            start = len(line) - len(line.lstrip())
            res.flags.append(
                Flag(
                    x.index,
                    float(x.p or 0.0),
                    line,
                    x.suggestion.strip(),
                    start,
                    len(line.rstrip()),
                )
            )
        res.flags.sort(key=lambda f: -f.score)
        res.seconds = time.perf_counter() - self.t0
        return res

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
    should_yield: Callable[[], bool] | None = None,
    model: FlagModel | None = None,
    max_lines: int = 5000,
    max_regen: int = MAX_REGEN,
    key: str = "flag",
    min_score: float = 0.0,
    memo: WindowMemo | None = None,
) -> FlagResult:
    """Flag ``text`` now, on the calling thread. ``should_yield`` is polled between units: while
    it returns True the job waits (for callers that share the model with urgent work);
    ``cancel`` stops it with :class:`FlagCancelled`; ``memo`` gives earlier results of
    unchanged windows."""
    job = FlagJob(
        text,
        language_id,
        budget=budget,
        model=model,
        max_lines=max_lines,
        max_regen=max_regen,
        key=key,
        cancel=cancel,
        min_score=min_score,
        memo=memo,
    )
    for unit in job.steps():
        while should_yield is not None and should_yield() and not job.cancel.is_set():
            time.sleep(0.005)
        unit(backend)
    return job.result()


def open_store(cache_dir: Path, size_mb: int | None = None) -> JsonCache | None:
    """The persistent flag cache in ``cache_dir`` (what the server uses with the same
    ``cacheDir``); None, with a warning, where it cannot be opened."""
    from tactful.cache import JsonCache

    folder = cache_dir / STORE_FOLDER
    try:
        return JsonCache(folder, size_mb or FlagSettings().cache_size_mb)
    except Exception as exc:  # a read-only or broken cache folder: flags work without it
        log.warning("flags: the flag cache in %s is unavailable: %s", folder, exc)
        return None


# --- CLI -----------------------------------------------------------------------------------------
def read_source(path: str) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason) for a file given on the command line."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    if b"\x00" in data[:65536]:
        return None, "binary content (NUL bytes)"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, "not UTF-8 text"


def main(argv: Sequence[str]) -> int:
    """``tactful flag FILE... [--json] [--budget F]``: print the lines that look wrong."""
    ap = argparse.ArgumentParser(
        prog="tactful flag", description="Print the lines of files that look wrong."
    )
    ap.add_argument("files", nargs="+", metavar="FILE")
    ap.add_argument("--json", action="store_true", help="one JSON object per file")
    ap.add_argument(
        "--budget",
        type=float,
        default=0.15,
        help="flag at most this fraction of lines (default 0.15)",
    )
    ap.add_argument(
        "--min-score",
        type=float,
        default=FlagSettings().min_score,
        help="show only flags scoring at least this "
        f"(default {FlagSettings().min_score}, as the editor; 0: fill the budget)",
    )
    ap.add_argument("--max-lines", type=int, default=5000, help="skip longer files (default 5000)")
    ap.add_argument(
        "--max-regen",
        type=int,
        default=MAX_REGEN,
        help="regenerate at most this many lines per file",
    )
    ap.add_argument(
        "--language", default=None, help="LSP language id (default: from the file extension)"
    )
    ap.add_argument(
        "--model", default=None, help="model folder or hub id (default: the embedded model)"
    )
    ap.add_argument("--classifier", default=None, help="folder of a trained flag classifier")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads (default 0: one less than the cores, as the server; all cores are "
        "faster on an otherwise idle machine and much slower on a busy one)",
    )
    ap.add_argument(
        "--no-cache",
        action="store_true",
        help="neither read nor write the flag cache (the model's results for windows flagged "
        "before, shared with the server)",
    )
    args = ap.parse_args(list(argv))
    if not 0.0 <= args.budget <= 1.0:
        ap.error("--budget must be between 0 and 1")
    if not 0.0 <= args.min_score <= 1.0:
        ap.error("--min-score must be between 0 and 1")
    from tactful import paths
    from tactful.backend.hf import TransformersBackend
    from tactful.backend.types import ModelError
    from tactful.syntax import language_from_path

    try:
        classifier = FlagModel.load(args.classifier) if args.classifier else default_model()
        backend = TransformersBackend.load(
            args.model,
            cache_dir=paths.cache_dir(),
            device=args.device,
            dtype=args.dtype,
            threads=args.threads,
        )
    except (ModelError, ValueError, OSError) as exc:
        print(f"tactful flag: {exc}", file=sys.stderr)
        return 1
    memo = WindowMemo(store=None if args.no_cache else open_store(paths.cache_dir()))
    status = 0
    for path in args.files:
        text, why = read_source(path)
        if text is None:
            res = FlagResult(skipped=why)
        else:
            lang = args.language or language_from_path(path)
            res = flag_document(
                backend,
                text,
                lang,
                args.budget,
                model=classifier,
                max_lines=args.max_lines,
                max_regen=args.max_regen,
                key=path,
                min_score=args.min_score,
                memo=memo,
            )
        if args.json:
            print(json.dumps(res.to_json(path), ensure_ascii=False), flush=True)
        elif res.skipped:
            print(f"{path}: skipped: {res.skipped}", file=sys.stderr)
        else:
            for f in sorted(res.flags, key=lambda f: f.line):
                print(f"{path}:{f.line + 1}: {f.score:.2f}: {f.message}", flush=True)
        if text is None and why and why.startswith("cannot read"):
            status = 1
    return status


def flag_to_dict(f: Flag) -> dict[str, Any]:
    return asdict(f)
