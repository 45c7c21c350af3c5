"""``tactful bench flag``: how well and how fast line flags find known bugs.

On ConDefects Python (real AtCoder programs with one known fault line; the held-out half of the
tasks by default) and on any files given as ``PATH:LINE``, it reports in one run, for tactful's
two-stage flagger, for naive FLAG (regenerate every line, rank by normalised edit distance) and
for a random ranking of the same lines (exact expectation):

* recall at the budget: the bug line is among the flags when at most ``budget`` of the lines are;
* top-1 and top-3 hit rates of the ranking;
* seconds per 100 lines;

and the time to flag a 300-line file. Figures are printed (and written as JSON with ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from tactful.flags import features as ff
from tactful.flags.job import FlagJob
from tactful.flags.memo import WindowMemo
from tactful.flags.model import FlagModel
from tactful.flags.plan import REGEN_EXTRA, RegenOptions
from tactful.flags.result import FlagResult

#: ``--regen-extra``: lines regenerated beyond the number that can be flagged (None: the default).
REGEN_EXTRA_OVERRIDE: int | None = None
#: Lines naive FLAG regenerates per model call (``--naive-batch``).
NAIVE_BATCH = 1


class Row(NamedTuple):
    """One program's figures: hits of the ranking's first and first three lines and of the
    flags at the budget (or their random expectation), seconds, lines, share of lines flagged."""

    top1: float
    top3: float
    recall: float
    seconds: float
    lines: int
    flagged_share: float


@dataclass
class Tally:
    """The rows of the programs run so far, and their means."""

    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.rows)

    def summary(self) -> dict[str, Any]:
        n = max(1, self.n)
        seconds, lines = self.seconds, sum(r.lines for r in self.rows)
        return {
            "programs": self.n,
            "recall_at_budget": round(sum(r.recall for r in self.rows) / n, 4),
            "top1": round(sum(r.top1 for r in self.rows) / n, 4),
            "top3": round(sum(r.top3 for r in self.rows) / n, 4),
            "seconds_per_100_lines": round(100 * seconds / max(1, lines), 2) if seconds else None,
            "mean_flagged_share": round(sum(r.flagged_share for r in self.rows) / n, 4),
        }


@dataclass
class Shown:
    """The flags the editor would show at one threshold: how often the bug is among them, and
    the share of lines they flag."""

    hits: float = 0.0
    share: float = 0.0

    def add(self, shown: Sequence[int], bug: int, lines: int) -> None:
        self.hits += float(bug in shown)
        self.share += len(shown) / max(1, lines)

    def summary(self, programs: int) -> dict[str, float]:
        return {
            "recall": round(self.hits / programs, 4),
            "mean_flagged_share": round(self.share / programs, 4),
        }


def _run(
    backend: Any,
    text: str,
    model: FlagModel,
    budget: float,
    naive: bool,
    memo: WindowMemo | None = None,
) -> tuple[FlagJob, FlagResult, float]:
    job = FlagJob(
        text,
        "python",
        memo=memo,
        budget=budget,
        model=model,
        key="bench",
        options=RegenOptions(
            regenerate_all=naive,
            speculative=not naive,
            batch=NAIVE_BATCH if naive else RegenOptions().batch,
            regen_extra=REGEN_EXTRA_OVERRIDE if REGEN_EXTRA_OVERRIDE is not None else REGEN_EXTRA,
        ),
    )
    t0 = time.perf_counter()
    res = job.run(backend)
    return job, res, time.perf_counter() - t0


def _naive_ranking(job: FlagJob) -> list[int]:
    """Naive FLAG: every considered line regenerated, ranked by normalised character edit distance."""
    scored = []
    for x in job.info.values():
        if x.regen is None:
            continue
        ed = x.regen[ff.REGEN_FEATURES.index("ed_char")]
        scored.append((-ed, x.index))
    return [i for _s, i in sorted(scored)]


def _rows(job: FlagJob, res: FlagResult, secs: float, bug: int) -> tuple[Row, Row]:
    """tactful's (top-1, top-3, recall, seconds, lines, flagged share) for one program, and the
    random ranking's expectation for the same considered lines and number of flags."""
    # The flags as shown (best first), then every other considered line by its score.
    flagged = {f.line for f in res.flags}
    rest = sorted(
        (-(s or 0.0), i) for i, s in enumerate(res.scores) if s is not None and i not in flagged
    )
    ranked = [f.line for f in res.flags] + [i for _s, i in rest]
    c = len(job.considered)
    kmax = job.max_flags
    ours = Row(
        float(bug in ranked[:1]),
        float(bug in ranked[:3]),
        float(bug in flagged),
        secs,
        res.lines,
        len(flagged) / max(1, res.lines),
    )
    considered = bug in set(job.considered)
    rand = Row(
        (min(1, c) / c if considered else 0.0) if c else 0.0,
        (min(3, c) / c if considered else 0.0) if c else 0.0,
        (min(kmax, c) / c if considered else 0.0) if c else 0.0,
        0.0,
        res.lines,
        min(kmax, c) / max(1, res.lines),
    )
    return ours, rand


def _naive_row(
    backend: Any, text: str, model: FlagModel, budget: float, kmax: int, bug: int
) -> Row:
    njob, nres, nsecs = _run(backend, text, model, budget, naive=True)
    nrank = _naive_ranking(njob)
    return Row(
        float(bug in nrank[:1]),
        float(bug in nrank[:3]),
        float(bug in nrank[:kmax]),
        nsecs,
        nres.lines,
        min(kmax, len(nrank)) / max(1, nres.lines),
    )


def shown_at(model: Any, res: Any, min_probability: float) -> list[int]:
    """The lines of ``res``'s flags the editor shows at ``min_probability`` (and no score
    threshold), as flags/result.py decides."""
    return [f.line for f in res.flags if model.shows(f.score, res.lines, 0.0, min_probability)]


def evaluate(
    backend: Any,
    programs: Sequence[tuple[str, str, int]],
    model: FlagModel,
    budget: float,
    naive_n: int,
    log: Any = sys.stderr,
    min_score: float | None = None,
) -> dict[str, Any]:
    """Evaluate on ``(id, text, bug_line_0based)``; naive FLAG on the first ``naive_n`` programs.

    Flags are ranked at the budget (no score threshold). With ``min_score``, the same run also
    reports what the editor shows with that threshold: recall and the share of lines flagged."""
    from tactful.config import FlagSettings

    ours, rand, naive, ours_on_naive, rand_on_naive = Tally(), Tally(), Tally(), Tally(), Tally()
    at_score, at_probability = Shown(), Shown()
    floor = FlagSettings().min_probability
    for k, (pid, text, bug) in enumerate(programs):
        job, res, secs = _run(backend, text, model, budget, naive=False)
        if min_score is not None:
            at_score.add([f.line for f in res.flags if f.score >= min_score], bug, res.lines)
        # What the editor shows at the default flags.minProbability.
        at_probability.add(shown_at(model, res, floor), bug, res.lines)
        row, r = _rows(job, res, secs, bug)
        ours.add(row)
        rand.add(r)
        line = (
            f"[{k + 1}/{len(programs)}] {pid}: ours {'hit' if row.recall else 'miss'} ({secs:.1f}s)"
        )
        if k < naive_n:
            nrow = _naive_row(backend, text, model, budget, job.max_flags, bug)
            naive.add(nrow)
            ours_on_naive.add(row)
            rand_on_naive.add(r)
            line += f", naive {'hit' if nrow.recall else 'miss'} ({nrow.seconds:.1f}s)"
        print(line, file=log, flush=True)
    out: dict[str, Any] = {"budget": budget, "tactful": ours.summary(), "random": rand.summary()}
    if min_score is not None and programs:
        out["tactful_min_score"] = {"min_score": min_score, **at_score.summary(len(programs))}
    if programs:
        out["tactful_min_probability"] = {
            "min_probability": floor,
            **at_probability.summary(len(programs)),
        }
    if naive.n:
        out["same_programs_as_naive"] = {
            "tactful": ours_on_naive.summary(),
            "naive_flag": naive.summary(),
            "random": rand_on_naive.summary(),
            "speedup_vs_naive": round(naive.seconds / ours_on_naive.seconds, 2)
            if ours_on_naive.seconds
            else None,
            "naive_lines_per_call": NAIVE_BATCH,
        }
    return out


def long_file_seconds(
    backend: Any, model: FlagModel, budget: float, min_score: float | None = None
) -> dict[str, Any]:
    """Flag the first 300 lines of the standard library's ``textwrap.py``; flag it again after a
    restart, from the flag cache on disk alone (``after_restart``); then after one line near
    its end is edited, with the window memo the editor keeps (``after_edit``: only the edited
    window is scored again). The flag cache is a new, temporary one."""
    import tempfile

    from tactful.cache import JsonCache

    lines = Path(textwrap.__file__).read_text().split("\n")[:300]
    text = "\n".join(lines) + "\n"
    store_dir = tempfile.TemporaryDirectory(prefix="tactful-bench-flag-")
    stores = [JsonCache(Path(store_dir.name), 64) for _ in range(2)]
    memo = WindowMemo(store=stores[0])
    job, res, secs = _run(backend, text, model, budget, naive=False, memo=memo)
    out: dict[str, Any] = {
        "file": "textwrap.py[:300]",
        "lines": res.lines,
        "seconds": round(secs, 2),
        "regenerated": res.regenerated,
        "flags": len(res.flags),
    }
    if min_score is not None:
        out["flags_at_min_score"] = sum(f.score >= min_score for f in res.flags)
    # Correct code (the standard library): the flags the editor shows at flags.minProbability.
    from tactful.config import FlagSettings

    floor = FlagSettings().min_probability
    out["flags_at_min_probability"] = {
        "min_probability": floor,
        "flags": len(shown_at(model, res, floor)),
    }
    restarted = WindowMemo(store=stores[1])
    job, again, secs = _run(backend, text, model, budget, naive=False, memo=restarted)
    out["after_restart"] = {
        "seconds": round(secs, 3),
        "windows_reused": job.reused["windows"],
        "same_flags": [(f.line, f.score) for f in again.flags]
        == [(f.line, f.score) for f in res.flags],
    }
    # The edit: a code line about 80 % down gets a longer right-hand side, as when typing.
    at = next(i for i in range(240, len(lines)) if " = " in lines[i] and "#" not in lines[i])
    lines[at] = lines[at] + " or None"
    job, res, secs = _run(backend, "\n".join(lines) + "\n", model, budget, naive=False, memo=memo)
    out["after_edit"] = {
        "edited_line": at + 1,
        "seconds": round(secs, 2),
        "windows": len(job.windows),
        "windows_scored": len(job.windows) - job.reused["windows"],
        "regenerations_reused": job.reused["regenerations"],
        "regenerated": res.regenerated,
    }
    for store in stores:
        store.close()
    store_dir.cleanup()
    return out


def _parse_files(specs: Sequence[str]) -> list[tuple[str, str, int]]:
    out = []
    for spec in specs:
        path, _, line = spec.rpartition(":")
        if not path or not line.isdigit() or int(line) < 1:
            raise SystemExit(f"tactful bench flag: --files wants PATH:LINE (1-based), got {spec!r}")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SystemExit(f"tactful bench flag: cannot read {path}: {exc}") from None
        if int(line) > len(text.splitlines()):
            raise SystemExit(f"tactful bench flag: {path} has no line {line}")
        out.append((spec, text, int(line) - 1))
    return out


def _condefects_programs(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """``(id, text, bug_line_0based)`` of the first ``-n`` ConDefects programs of the split, by
    id, of ``--min-lines`` to ``--max-lines`` lines."""
    from tactful.flags.datasets import condefects

    if not args.n:
        return []
    rows = [
        r
        for r in condefects(args.split, max_lines=args.max_lines)
        if r["n_lines"] >= args.min_lines
    ]
    return [
        (r["id"], r["faulty_code"].replace("\r\n", "\n"), r["fault_lines"][0] - 1)
        for r in rows[: args.n]
    ]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tactful bench flag", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--split",
        choices=["heldout", "dev"],
        default="heldout",
        help="ConDefects half (default heldout)",
    )
    ap.add_argument("-n", type=int, default=60, help="ConDefects programs (default 60; 0: none)")
    ap.add_argument(
        "--max-lines", type=int, default=40, help="only programs this short (default 40)"
    )
    ap.add_argument(
        "--min-lines",
        type=int,
        default=10,
        help="only programs this long (default 10: at 15 %% a shorter file gets no flag at all)",
    )
    ap.add_argument(
        "--naive", type=int, default=20, help="run naive FLAG on the first N programs (default 20)"
    )
    ap.add_argument(
        "--files",
        nargs="*",
        default=[],
        metavar="PATH:LINE",
        help="more programs with their bug line",
    )
    ap.add_argument("--budget", type=float, default=0.15)
    ap.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="also report recall and flags with this score threshold "
        "(default: the editor's flags.minScore)",
    )
    ap.add_argument(
        "--classifier", default=None, help="folder of a flag classifier (default: shipped)"
    )
    ap.add_argument("--no-long", action="store_true", help="skip the 300-line timing")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    ap.add_argument("--regen-extra", type=int, default=None, help="override flag.REGEN_EXTRA")
    ap.add_argument(
        "--naive-batch",
        type=int,
        default=1,
        help="lines naive FLAG regenerates per model call (default 1: one call per line, as "
        "FLAG does; 8: the batching tactful uses)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    _realfix_args(ap)
    return ap


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    files = _parse_files(args.files)  # before loading the model: a bad spec fails at once

    from tactful import paths

    global REGEN_EXTRA_OVERRIDE, NAIVE_BATCH
    REGEN_EXTRA_OVERRIDE = args.regen_extra
    NAIVE_BATCH = max(1, args.naive_batch)
    from tactful.backend.hf import TransformersBackend
    from tactful.flags.datasets import set_threads

    model = FlagModel.load(args.classifier)
    if args.realfix_records:  # figures from saved records: no model needed
        return _realfix(args, None, model)
    backend = TransformersBackend.load(None, cache_dir=paths.cache_dir())
    set_threads(args.threads)
    if args.realfix:
        return _realfix(args, backend, model)
    programs = _condefects_programs(args) + files
    t0 = time.time()
    from tactful.config import FlagSettings

    min_score = args.min_score if args.min_score is not None else FlagSettings().min_score
    result = evaluate(
        backend, programs, model, args.budget, args.naive, min_score=min_score or None
    )
    result["set"] = (
        f"ConDefects python {args.split}, {args.min_lines} <= n_lines <= {args.max_lines}, "
        f"first {args.n} by id" + (f" + {len(args.files)} files" if args.files else "")
    )
    result["classifier"] = model.name
    if not args.no_long:
        result["long_file"] = long_file_seconds(
            backend, model, args.budget, min_score=min_score or None
        )
    result["wall_seconds"] = round(time.time() - t0, 1)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    tr, rn = result["tactful"], result["random"]
    if not tr["programs"]:
        return 0  # the 300-line timing only: no recall to compare
    for name, a, b in (
        ("recall@budget", tr["recall_at_budget"], rn["recall_at_budget"]),
        ("top-3", tr["top3"], rn["top3"]),
    ):
        print(f"{name}: tactful {a:.3f} vs random {b:.3f} ({(a / b if b else math.inf):.2f}x)")
    return 0


def _realfix_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("realfix (precision on correct code, recall on real bugs)")
    g.add_argument(
        "--realfix",
        type=int,
        default=0,
        metavar="N",
        help="flag N realfix files, fixed and buggy versions, instead of ConDefects",
    )
    g.add_argument("--realfix-max-lines", type=int, default=300, help="only files this short")
    g.add_argument(
        "--realfix-records",
        default=None,
        metavar="JSON",
        help="compute the figures from the records of an earlier --out (no model work)",
    )
    g.add_argument(
        "--realfix-journal",
        default=None,
        metavar="JSONL",
        help="append each file's record here as it is done; a rerun resumes from it",
    )
    g.add_argument(
        "--max-flags-per-100",
        type=float,
        default=2.0,
        help="the threshold chosen keeps correct files at or under this (default 2)",
    )
    g.add_argument(
        "--min-project-files", type=int, default=4, help="macro-average projects this big"
    )
    g.add_argument(
        "--write-calibration",
        default=None,
        metavar="PATH",
        help="write the calibration fitted on all sampled projects here (calibration.json)",
    )
    g.add_argument("--no-cache", action="store_true", help="do not use the persistent flag cache")


def _realfix(args: argparse.Namespace, backend: Any, model: FlagModel) -> int:
    from tactful import paths
    from tactful.flags.memo import open_store
    from tactful.tools.bench import flag_realfix as rf

    if args.realfix_records:
        records = rf.read_records(Path(args.realfix_records))
    else:
        rows = rf.load_rows(args.realfix, args.realfix_max_lines)
        memo = WindowMemo(store=None if args.no_cache else open_store(paths.cache_dir()))
        journal = Path(args.realfix_journal) if args.realfix_journal else None
        records = rf.run(backend, rows, model, args.budget, memo, journal=journal)
    result = rf.report(records, args.max_flags_per_100, args.min_project_files)
    result["set"] = (
        f"realfix, Python 3, not version bumps, n_lines <= {args.realfix_max_lines}, "
        f"{len(records)} files taken in turn from each project (sorted by id)"
    )
    result["classifier"] = model.name
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "records": records}, indent=2) + "\n")
    if args.write_calibration:
        cal = rf.calibrate(records)
        fitted = {
            **cal.fitted_on,
            "data": result["set"],
            "score_threshold": result["score_threshold_all"],
            "min_probability": result["min_probability_all"],
            "max_flags_per_100_lines": args.max_flags_per_100,
        }
        doc = {**cal.to_json(), "fitted_on": fitted}
        Path(args.write_calibration).write_text(json.dumps(doc, indent=2) + "\n")
    lpo = result["leave_project_out"]
    macro, pooled = lpo["macro_all_projects"], lpo["pooled"]
    print(
        f"leave-project-out: {macro['fixed_flags_per_100_lines']} flags/100 lines on correct "
        f"files (macro over {macro['projects']} projects), {pooled['bugs_flagged']} of "
        f"{pooled['files']} bugs flagged vs {pooled['random_expectation']} by chance "
        f"({pooled['ratio']}x)"
    )
    return 0
