"""``tactful bench flag --realfix N``: precision on correct code and recall on real bugs.

On ``shared/data/realfix`` (real one-line bug fixes from the history of 12 Python projects, each
file before and after the fix), every sampled file is flagged twice at the budget with no
threshold: the **fixed** version (correct code) and the **buggy** one. The flags' final scores
then give, for any threshold on the calibrated probability, without running the model again:

* flags per 100 lines on the fixed versions (what a user sees on correct code);
* recall on the buggy versions (the changed line is among the flags shown), next to the random
  expectation for the same number of flags (``shown / considered`` per file);
* the curve of both over the threshold, and a leave-project-out choice: for each project, the
  calibration and the threshold (the lowest that keeps the other projects' correct files at or
  under ``--max-flags-per-100``) are fitted on the other projects only, then applied to it.

Also counted: quick fixes offered, and how many of them leave the file compiling (``compile``).
Runs use the persistent flag cache, so a second run costs no model work for unchanged code.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tactful.flags.calibration import Calibration, fit_platt
from tactful.flags.fixes import python_compiles
from tactful.flags.job import FlagJob
from tactful.flags.memo import WindowMemo
from tactful.flags.model import FlagModel
from tactful.flags.realfix import REALFIX, by_repo, in_turn, read

#: The final-score grid (finer below 0.07, where a classifier that saw long project files puts
#: most of its scores).
THRESHOLDS = (
    0.0,
    0.01,
    0.015,
    0.02,
    0.025,
    0.03,
    0.035,
    0.04,
    0.045,
    0.05,
    0.06,
    0.07,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.35,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
)


def load_rows(n: int, max_lines: int = 300, path: Path = REALFIX) -> list[dict[str, Any]]:
    """``n`` rows: Python 3 files (both versions compile), not version bumps, at most
    ``max_lines`` lines; sorted by id within each repository and taken in turn from each, so
    that every project is sampled."""
    return in_turn(by_repo(read(path), max_lines))[:n]


def _flag_run(
    backend: Any, text: str, model: FlagModel, budget: float, memo: WindowMemo | None
) -> dict[str, Any]:
    job = FlagJob(text, "python", budget=budget, model=model, key="realfix", memo=memo)
    res = job.run(backend)
    lines = job.lines
    fixes = [f for f in res.flags if f.fix is not None]
    compiling = 0
    for f in fixes:
        edited = list(lines)
        edited[f.line] = f.fix or ""
        compiling += python_compiles("\n".join(edited) + "\n")
    return {
        "lines": res.lines,
        "considered": sorted(job.considered),
        "flags": [[f.line, round(f.score, 6)] for f in res.flags],
        "fixes_offered": len(fixes),
        "fixes_compile": compiling,
        "no_fix": res.no_fix,
        "seconds": round(res.seconds, 2),
        "windows_reused": res.windows_reused,
    }


def run(
    backend: Any,
    rows: Sequence[dict[str, Any]],
    model: FlagModel,
    budget: float,
    memo: WindowMemo | None,
    log: Any = sys.stderr,
    journal: Path | None = None,
) -> list[dict[str, Any]]:
    """Flag the fixed, then the buggy version of each row (at the budget, no threshold).
    With a ``journal``, each row's record is appended to it as a JSON line as soon as it is
    done, and rows already there are taken from it (an interrupted run resumes)."""
    done = {r["id"]: r for r in read_records(journal)} if journal and journal.exists() else {}
    out = []
    for k, r in enumerate(rows):
        if r["id"] in done:
            out.append(done[r["id"]])
            continue
        rec: dict[str, Any] = {"id": r["id"], "repo": r["repo"], "bug": r["buggy_line"] - 1}
        for version in ("fixed", "buggy"):
            rec[version] = _flag_run(backend, r[f"{version}_code"], model, budget, memo)
        hit = rec["bug"] in {ln for ln, _s in rec["buggy"]["flags"]}
        print(
            f"[realfix {k + 1}/{len(rows)}] {r['id']} ({r['n_lines']} lines): bug "
            f"{'flagged' if hit else 'missed'}, {len(rec['fixed']['flags'])} flags on the fixed "
            f"file ({rec['fixed']['seconds'] + rec['buggy']['seconds']:.1f}s)",
            file=log,
            flush=True,
        )
        out.append(rec)
        if journal is not None:
            with journal.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
    return out


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records from an ``--out`` JSON file or from a journal (one JSON record per line)."""
    text = path.read_text(encoding="utf-8")
    try:
        whole = json.loads(text)
    except ValueError:  # several JSON lines
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return list(whole["records"]) if "records" in whole else [whole]


@dataclass
class Point:
    """What the flags shown at one threshold give on a set of files."""

    threshold: float
    files: int = 0
    fixed_lines: int = 0
    fixed_flags: int = 0
    hits: float = 0.0
    random: float = 0.0
    shown_on_buggy: int = 0

    @property
    def flags_per_100(self) -> float:
        return 100.0 * self.fixed_flags / max(1, self.fixed_lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "files": self.files,
            "fixed_flags_per_100_lines": round(self.flags_per_100, 2),
            "buggy_recall": round(self.hits / max(1, self.files), 4),
            "random_recall": round(self.random / max(1, self.files), 4),
            "ratio": round(self.hits / self.random, 2) if self.random else None,
            "buggy_flags_shown": self.shown_on_buggy,
        }


def point(records: Iterable[dict[str, Any]], cal: Calibration | None, t: float) -> Point:
    """The flags with calibrated probability at least ``t`` (raw score without ``cal``)."""

    def shown(run: dict[str, Any]) -> list[int]:
        return [ln for ln, s in run["flags"] if (cal.probability(s) if cal is not None else s) >= t]

    p = Point(t)
    for rec in records:
        p.files += 1
        fixed, buggy = rec["fixed"], rec["buggy"]
        p.fixed_lines += fixed["lines"]
        p.fixed_flags += len(shown(fixed))
        on_buggy = shown(buggy)
        p.shown_on_buggy += len(on_buggy)
        p.hits += float(rec["bug"] in on_buggy)
        c = len(buggy["considered"])
        if c and rec["bug"] in set(buggy["considered"]):
            p.random += len(on_buggy) / c
    return p


def calibrate(records: Iterable[dict[str, Any]]) -> Calibration:
    """Platt scaling of the final score on the buggy versions' flag candidates."""
    scores, labels = [], []
    for rec in records:
        for ln, s in rec["buggy"]["flags"]:
            scores.append(s)
            labels.append(int(ln == rec["bug"]))
    return fit_platt(scores, labels)


def choose_threshold(
    records: Sequence[dict[str, Any]], max_per_100: float, grid: Sequence[float] = THRESHOLDS
) -> float:
    """The lowest final-score threshold of ``grid`` whose flags per 100 lines of correct files
    is at most ``max_per_100`` (the calibration is monotone: a score threshold is a probability
    threshold)."""
    for t in grid:
        if point(records, None, t).flags_per_100 <= max_per_100:
            return t
    return grid[-1]


def calibrated(records: Sequence[dict[str, Any]]) -> Calibration | None:
    try:
        return calibrate(records)
    except ValueError:  # no bug among the candidates
        return None


def leave_project_out(
    records: Sequence[dict[str, Any]], max_per_100: float, min_files: int
) -> dict[str, Any]:
    """Per project: the threshold (and the calibration that expresses it as a probability)
    chosen on the other projects only, applied to it."""
    per: dict[str, Any] = {}
    for repo in sorted({r["repo"] for r in records}):
        train = [r for r in records if r["repo"] != repo]
        test = [r for r in records if r["repo"] == repo]
        t = choose_threshold(train, max_per_100)
        cal = calibrated(train)
        per[repo] = {
            "score_threshold": t,
            "min_probability": round(cal.probability(t), 4) if cal is not None and t else 0.0,
            **point(test, None, t).to_json(),
            "at_budget": point(test, None, 0.0).to_json(),
        }
    big = [v for v in per.values() if v["files"] >= min_files]
    return {
        "per_project": per,
        f"macro_projects_with_{min_files}_files": _summary(big),
        "macro_all_projects": _summary(list(per.values())),
        "pooled": _pooled(list(per.values())),
    }


def _summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def macro(key: str) -> float | None:
        vals = [v[key] for v in rows if v[key] is not None]
        return round(sum(vals) / len(vals), 4) if vals else None

    return {
        "projects": len(rows),
        "fixed_flags_per_100_lines": macro("fixed_flags_per_100_lines"),
        "buggy_recall": macro("buggy_recall"),
        "random_recall": macro("random_recall"),
        "ratio_of_means": _ratio(macro("buggy_recall"), macro("random_recall")),
    }


def _pooled(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    files = sum(v["files"] for v in rows)
    hits = sum(v["buggy_recall"] * v["files"] for v in rows)
    rand = sum(v["random_recall"] * v["files"] for v in rows)
    per_100 = sum(v["fixed_flags_per_100_lines"] * v["files"] for v in rows) / max(1, files)
    return {
        "files": files,
        "bugs_flagged": round(hits),
        "random_expectation": round(rand, 2),
        "fixed_flags_per_100_lines_mean_over_files": round(per_100, 2),
        "ratio": _ratio(hits, rand),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def by_length(records: Sequence[dict[str, Any]], t: float) -> dict[str, Any]:
    """The point at score threshold ``t`` per file length."""
    buckets: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        n = r["buggy"]["lines"]
        buckets["<100" if n < 100 else "100-199" if n < 200 else ">=200"].append(r)
    return {k: point(v, None, t).to_json() for k, v in sorted(buckets.items())}


def curve(records: Sequence[dict[str, Any]], cal: Calibration | None) -> list[dict[str, Any]]:
    """The points of the score grid, each with its calibrated probability."""
    out = []
    for t in THRESHOLDS:
        row = point(records, None, t).to_json()
        row["min_probability"] = round(cal.probability(t), 4) if cal is not None and t else 0.0
        out.append(row)
    return out


def report(records: Sequence[dict[str, Any]], max_per_100: float, min_files: int) -> dict[str, Any]:
    """The figures of a realfix run: the curve, the leave-project-out choice, the shipped
    calibration (fitted on all projects) with its threshold, quick fixes."""
    cal = calibrated(records)
    t = choose_threshold(records, max_per_100)
    runs = [r[v] for r in records for v in ("fixed", "buggy")]
    offered = sum(x["fixes_offered"] for x in runs)
    no_fix: dict[str, int] = defaultdict(int)
    for x in runs:
        for why, k in x["no_fix"].items():
            no_fix[why] += k
    return {
        "files": len(records),
        "projects": dict(sorted(_count(r["repo"] for r in records).items())),
        "calibration_all": cal.to_json() if cal is not None else None,
        "curve": curve(records, cal),
        "score_threshold_all": t,
        "min_probability_all": round(cal.probability(t), 4) if cal is not None and t else 0.0,
        "by_length_at_threshold_all": by_length(records, t),
        "by_length_at_budget": by_length(records, 0.0),
        "leave_project_out": leave_project_out(records, max_per_100, min_files),
        "quick_fixes": {
            "flags": sum(len(x["flags"]) for x in runs),
            "offered": offered,
            "compile": sum(x["fixes_compile"] for x in runs),
            "compile_share": round(sum(x["fixes_compile"] for x in runs) / offered, 4)
            if offered
            else None,
            "no_fix": dict(no_fix),
        },
        "model_seconds": round(sum(x["seconds"] for x in runs), 1),
    }


def _count(xs: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for x in xs:
        out[x] += 1
    return out
