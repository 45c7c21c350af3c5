"""Leave-group-out evaluation of the flag classifiers across codebases: real project bugs
(realfix, one group per repository) together with ConDefects dev bugs (one group per fold of
tasks). Each group is flagged by classifiers trained on every other group (the prior
cross-fitted so that it never sees the held-out tasks either), from the recorded rows
(:func:`tactful.flags.simulate.ranking`; no model run). Gives, per group and macro-averaged,
recall at the budget, top-1/top-3 and their random expectation, the same by file length, and
the flag records of both versions of each realfix file for the threshold and the precision on
correct code (:mod:`tactful.tools.bench.flag_realfix`). Training only.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tactful.flags import realfix
from tactful.flags.datasets import ROUNDS, cross_fitted, fit_prior, task_of
from tactful.flags.fitting import fit
from tactful.flags.simulate import pool, ranking, simulate, summary_line

Samples = list[dict[str, Any]]
#: File-length buckets (lines) of the figures by length.
LENGTHS = ((0, 40), (40, 200), (200, 500), (500, 10**9))


@dataclass
class Recipe:
    """What is trained: boosting rounds, LightGBM parameters over the defaults, the weight of a
    realfix sample's rows against a ConDefects one's, whether the fixed (correct) versions
    of the training projects' files are training negatives, and whether a given first stage is
    kept."""

    rounds: int = ROUNDS
    params: dict[str, Any] | None = None
    realfix_weight: float = 1.0
    fixed_negatives: bool = False
    dev_weight: float = 1.0
    #: A first stage kept as it is (a LightGBM booster) instead of the one trained with the
    #: final classifier: the lines it picks are the ones the realfix build regenerated.
    stage1: Any = None


def group_of(sample_id: str, folds: dict[str, int]) -> str:
    """``realfix:<owner/name>`` for a realfix sample, ``condefects:<fold>`` for a ConDefects
    one (its task's fold)."""
    if "@" in sample_id:
        return "realfix:" + realfix.repo_of(sample_id)
    return f"condefects:{folds.get(task_of(sample_id), -1)}"


def training_set(
    samples: Sequence[dict[str, Any]], held_out: str, folds: dict[str, int], recipe: Recipe
) -> tuple[Samples, list[float]]:
    """The samples of every group but ``held_out`` that train (fixed versions only as
    ``recipe.fixed_negatives``) and their weights."""
    train, weights = [], []
    for s in samples:
        if group_of(s["id"], folds) == held_out:
            continue
        if realfix.is_fixed(s["id"]) and not recipe.fixed_negatives:
            continue
        train.append(s)
        weights.append(recipe.realfix_weight if "@" in s["id"] else recipe.dev_weight)
    return train, weights


def _priors(
    corpus: Any,
    folds: dict[str, int],
    k: int,
    held: int | None,
    fitted: dict[frozenset[int], Any],
) -> dict[frozenset[int], Any]:
    """Priors excluding the held-out fold ``held`` (None: a realfix project is held out) and
    each training fold, keyed as :func:`cross_fitted` looks them up (``fitted``: those fitted
    so far, by excluded folds)."""
    base = set() if held is None else {held}
    keys = [frozenset(base)] + [frozenset(base | {g}) for g in range(k) if g != held]
    for key in keys:
        if key not in fitted:
            fitted[key] = fit_prior(corpus, folds, set(key))
    return {key: fitted[key] for key in keys}


def evaluate(
    samples: Sequence[dict[str, Any]],
    folds: dict[str, int],
    recipe: Recipe,
    corpus: Any = None,
    k: int = 5,
    scored: set[str] | None = None,
    log: Any = sys.stdout,
) -> dict[str, Any]:
    """Every group held out in turn: its figures (:func:`tactful.flags.simulate.simulate` on
    the bugs; of ConDefects, only the ids in ``scored`` when given) and, for realfix, one flag
    record per file (both versions)."""
    from tactful.flags.model import FlagModel

    groups = sorted({group_of(s["id"], folds) for s in samples})
    out: dict[str, Any] = {"groups": {}, "records": [], "scored": []}
    fitted: dict[frozenset[int], Any] = {}
    for g in groups:
        held = None if g.startswith("realfix:") else int(g.split(":")[1])
        train, weights = training_set(samples, g, folds, recipe)
        test = [s for s in samples if group_of(s["id"], folds) == g]
        if corpus is not None:
            priors = _priors(corpus, folds, k, held, fitted)
            exclude = set() if held is None else {held}
            train = cross_fitted(train, folds, priors, exclude)
            test = cross_fitted(test, folds, priors, exclude)
        s1, f1 = fit(train, recipe.rounds, recipe.params, weights)
        stage1 = s1 if recipe.stage1 is None else recipe.stage1
        _score_group(out, g, test, FlagModel(stage1, f1, {}), scored, log)
    out["by_length"] = by_length(out["scored"])
    return out


def evaluate_model(
    samples: Sequence[dict[str, Any]],
    folds: dict[str, int],
    model: Any,
    scored: set[str] | None = None,
    log: Any = sys.stdout,
) -> dict[str, Any]:
    """The figures of :func:`evaluate` for one given classifier (the shipped one: realfix is
    out of sample for a classifier that never saw it), each group on its own."""
    out: dict[str, Any] = {"groups": {}, "records": [], "scored": []}
    for g in sorted({group_of(s["id"], folds) for s in samples}):
        test = [s for s in samples if group_of(s["id"], folds) == g]
        _score_group(out, g, test, model, scored, log)
    out["by_length"] = by_length(out["scored"])
    return out


def _score_group(
    out: dict[str, Any],
    g: str,
    test: Sequence[dict[str, Any]],
    model: Any,
    scored: set[str] | None,
    log: Any,
) -> None:
    """Add group ``g``'s figures (its bugs; of ConDefects only the ``scored`` ids), its bugs'
    own figures (for :func:`by_length`) and, for a realfix project, its flag records to
    ``out``."""
    bugs = [
        s
        for s in test
        if not realfix.is_fixed(s["id"])
        and s["rows"]
        and (scored is None or "@" in s["id"] or s["id"] in scored)
    ]
    out["groups"][g] = simulate(bugs, model)
    out["scored"] += [dict(s, score=simulate([s], model)) for s in bugs]
    if g.startswith("realfix:"):
        out["records"] += flag_records(test, model)
    else:  # ConDefects programs whose correct version was recorded too (short correct code)
        recs = [dict(r, repo=g) for r in flag_records(test, model)]  # by task fold
        out["condefects_records"] = out.get("condefects_records", []) + recs
    print(summary_line(g, out["groups"][g]), file=log, flush=True)


def flag_records(test: Sequence[dict[str, Any]], model: Any) -> list[dict[str, Any]]:
    """Records in the format of ``tactful bench flag --realfix`` (flags with their final
    scores, at the budget, no threshold) of each realfix file of ``test`` whose two versions
    were recorded."""
    by_id = {s["id"]: s for s in test}
    out = []
    for sid, s in by_id.items():
        fixed = by_id.get(sid + realfix.FIXED)
        if realfix.is_fixed(sid) or fixed is None:
            continue
        repo = realfix.repo_of(sid) if "@" in sid else "condefects"
        rec: dict[str, Any] = {"id": sid, "repo": repo, "bug": s["bugs"][0]}
        for version, x in (("fixed", fixed), ("buggy", s)):
            r = ranking(x, model, 0.15, _extra())
            rec[version] = {
                "lines": x["lines"],
                "considered": [row["i"] for row in x["rows"]],
                "flags": [[ln, round(score, 6)] for ln, score in r["flags"]],
                "missing": r["missing"],
                "picked": r["picked"],
            }
        out.append(rec)
    return out


def _extra() -> int:
    from tactful.flags.plan import REGEN_EXTRA

    return REGEN_EXTRA


def by_length(scored: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Pooled figures of the bug samples per file-length bucket (realfix and ConDefects
    apart)."""
    buckets: dict[str, list[dict[str, float]]] = defaultdict(list)
    for s in scored:
        lo, hi = next(b for b in LENGTHS if b[0] <= s["lines"] < b[1])
        kind = "realfix" if "@" in s["id"] else "condefects"
        buckets[f"{kind} {lo}-{hi - 1 if hi < 10**9 else ''} lines"].append(s["score"])
    return {k: pool(v) for k, v in sorted(buckets.items())}


def macro(per: dict[str, dict[str, float]], prefix: str, min_n: int = 0) -> dict[str, float]:
    """The mean over the groups named ``prefix...`` with at least ``min_n`` bugs of each
    figure (a group counts once, whatever its size)."""
    rows = [m for g, m in per.items() if g.startswith(prefix) and m["n"] >= min_n]
    if not rows:
        return {"n": 0}
    out = {key: sum(m[key] for m in rows) / len(rows) for key in rows[0] if key != "n"}
    out["n"] = len(rows)
    return out


def report(result: dict[str, Any], max_per_100: float, min_files: int) -> dict[str, Any]:
    """The figures of :func:`evaluate`: bugs per group and macro-averaged (realfix projects
    with at least ``min_files`` bugs, all realfix projects, the ConDefects folds pooled), by
    file length, and precision on correct code from the realfix records: the curve over the
    final-score threshold (with the Platt calibration fitted on all the records) and the
    leave-project-out threshold (chosen on the other projects' records) applied to each
    project."""
    from tactful.tools.bench import flag_realfix as rf

    per = result["groups"]
    records = result["records"]
    cal = rf.calibrated(records)
    folds = [m for g, m in per.items() if g.startswith("condefects:")]
    t_all = rf.choose_threshold(records, max_per_100)
    short = short_floor(result.get("condefects_records") or [], max_per_100)
    held_out = rf.leave_project_out(records, max_per_100, min_files)
    return {
        "realfix_projects": {g.removeprefix("realfix:"): m for g, m in per.items() if "/" in g},
        f"realfix_macro_projects_with_{min_files}_bugs": macro(per, "realfix:", min_files),
        "realfix_macro_all_projects": macro(per, "realfix:"),
        "condefects_pooled": pool(folds) if folds else None,
        "by_length": result["by_length"],
        "missing_picks": _missing(records),
        "calibration": cal.to_json() if cal is not None else None,
        "curve": rf.curve(records, cal),
        "score_threshold_all": t_all,
        "min_probability_all": round(cal.probability(t_all), 4) if cal is not None else None,
        "leave_project_out": held_out,
        "condefects_at_threshold": _short_code(result.get("condefects_records") or [], t_all),
        "short_files": short,
        "rate_guard": rate_guard(
            records,
            {p: v["score_threshold"] for p, v in held_out["per_project"].items()},
            short["min_score"] if short else 0.0,
            max_per_100,
            min_files,
        ),
    }


def rate_guard(
    records: Sequence[dict[str, Any]],
    thresholds: dict[str, float],
    floor: float,
    max_per_100: float,
    min_files: int,
) -> dict[str, Any]:
    """The flag rate guard (:mod:`tactful.flags.guard`) replayed on each held-out project's
    files at its threshold in ``thresholds`` (chosen on the other projects, as a new project
    meets the shipped one; files under ``SHORT_LINES`` lines need the short-file ``floor`` too,
    as in the editor): flags per 100 lines of correct code and bugs flagged, without and with
    the guard, per project and macro-averaged over the projects with at least ``min_files``
    files."""
    from tactful.flags import guard

    def kept(version: dict[str, Any], t: float) -> tuple[tuple[int, float], ...]:
        need = t if version["lines"] >= SHORT_LINES else max(t, floor)
        return tuple((int(ln), float(sc)) for ln, sc in version["flags"] if sc >= need)

    shown = []
    for r in records:
        t = thresholds[r["repo"]]
        shown.append(
            guard.Recorded(
                r["repo"],
                int(r["fixed"]["lines"]),
                kept(r["fixed"], t),
                kept(r["buggy"], t),
                int(r["bug"]),
            )
        )
    per = guard.simulate(shown, max_per_100)
    for repo, m in per.items():
        m["score_threshold"] = thresholds[repo]
    big = [m for m in per.values() if m["files"] >= min_files]
    keys = ("per_100_lines", "per_100_lines_guarded", "recall", "recall_guarded")
    return {
        "max_per_100_lines": max_per_100,
        "per_project": per,
        f"macro_projects_with_{min_files}_files": {
            k: round(sum(m[k] for m in big) / len(big), 4) if big else None for k in keys
        },
    }


#: Files with fewer lines get the short-file score floor (ConDefects programs have at most 40).
SHORT_LINES = 40
#: The grid of the short-file floor (its scores are higher than project files').
SHORT_GRID = tuple(round(0.01 * k, 2) for k in range(0, 61))


def short_floor(records: Sequence[dict[str, Any]], max_per_100: float) -> dict[str, Any] | None:
    """The short-file score floor: chosen on all the ConDefects folds' records (what ships), and
    each fold's figures at the floor chosen on the other folds (what a new user should expect):
    flags per 100 lines of correct short programs, recall on the faulty ones, pooled."""
    from tactful.tools.bench import flag_realfix as rf

    if not records:
        return None
    per, pooled = {}, rf.Point(0.0)
    for fold in sorted({r["repo"] for r in records}):
        t = rf.choose_threshold([r for r in records if r["repo"] != fold], max_per_100, SHORT_GRID)
        pt = rf.point([r for r in records if r["repo"] == fold], None, t)
        per[fold] = pt.to_json()
        for k in ("files", "fixed_lines", "fixed_flags", "shown_on_buggy", "hits", "random"):
            setattr(pooled, k, getattr(pooled, k) + getattr(pt, k))
    return {
        "short_lines": SHORT_LINES,
        "min_score": rf.choose_threshold(records, max_per_100, SHORT_GRID),
        "leave_fold_out": {
            "per_fold": per,
            "pooled": {k: v for k, v in pooled.to_json().items() if k != "threshold"},
        },
    }


def _short_code(records: Sequence[dict[str, Any]], t: float) -> dict[str, Any] | None:
    """Short programs at the threshold chosen on realfix: flags per 100 lines of the correct
    versions of ConDefects programs, and recall on their faulty versions (the ConDefects folds
    held out; None where no correct version was recorded)."""
    from tactful.tools.bench import flag_realfix as rf

    if not records:
        return None
    return {
        **rf.point(records, None, t).to_json(),
        "at_budget": rf.point(records, None, 0.0).to_json(),
        "curve": [rf.point(records, None, x).to_json() for x in rf.THRESHOLDS],
    }


def _missing(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Share of the first stage's picks that the build did not regenerate, per version (their
    flags are unknown: they count as not flagged)."""
    out = {}
    for version in ("fixed", "buggy"):
        picked = sum(r[version]["picked"] for r in records)
        out[version] = round(sum(r[version]["missing"] for r in records) / max(1, picked), 4)
    return out


def calibration_doc(summary: dict[str, Any], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``calibration.json`` from a :func:`report`: the Platt scaling fitted on the held-out
    projects' flag candidates (the scores a classifier gives a project it never saw) and the
    threshold chosen on them, with what it was fitted on."""
    cal = summary["calibration"]
    if cal is None:
        raise ValueError("no bug among the flag candidates: nothing to calibrate")
    bugs = sum(1 for r in records for ln, _s in r["buggy"]["flags"] if ln == r["bug"])
    cal = {k: v for k, v in cal.items() if k != "fitted_on"}
    fitted = {
        "lines": sum(len(r["buggy"]["flags"]) for r in records),
        "bug_lines": bugs,
        "data": f"realfix leave-project-out records: {len(records)} files of "
        f"{len({r['repo'] for r in records})} projects, each flagged by classifiers trained "
        "without its project (flags.train lpo)",
        "score_threshold": summary["score_threshold_all"],
        "min_probability": summary["min_probability_all"],
    }
    short = summary.get("short_files")
    if short is not None:
        fitted["short_files"] = (
            f"the score floor of files under {short['short_lines']} lines: the lowest whose "
            f"flags per 100 lines of {short['leave_fold_out']['pooled']['files']} correct "
            "ConDefects dev programs (each task fold flagged by classifiers trained without it) "
            "stay within the same bound"
        )
        cal = {**cal, "short_lines": short["short_lines"], "short_min_score": short["min_score"]}
    return {**cal, "fitted_on": fitted}
