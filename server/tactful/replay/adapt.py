"""``tactful replay adapt``: does learning this user pay? (issue 25, item 3)

Users held out, one at a time: for each user of the logs (CUPS: 14 programmers), the prior is a
cascade trained on the other users (:func:`tactful.cascade.fit.fold_models`, thresholds fitted
for each target as ``tactful train`` fits them). The user's decisions are replayed in time order
through two policies:

* **static**: the prior's thresholds throughout (what a user gets with
  ``cdhf.retrainOnOwnLog`` off);
* **adaptive**: every :data:`~tactful.cascade.adapt.EVERY` decisions,
  :func:`tactful.cascade.adapt.propose` on the decisions the adaptive policy has seen so far
  (those it showed, and the explored share ``--explore`` of those it hid: the server learns no
  outcome of a hidden suggestion otherwise); an adopted candidate replaces the thresholds.

Pooled over users, per target: suggestions hidden, the hiding rate, accuracy when hiding with
two-sided 95 % Clopper-Pearson intervals (decisions treated as independent) and 95 % intervals
resampling users, and what adaptation changed (hidden only by the adaptive policy, and how many
of those were rejected). docs/cdhf.md holds the figures on CUPS and why
``cdhf.retrainOnOwnLog`` defaults to what it does.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tactful import stats
from tactful.cascade.model import DEFAULT_LAMBDA, Thresholds, apply_thresholds

DEFAULT_TARGETS = (0.95, 0.90, 0.80)


def decision_logs(paths: Sequence[str], tmp: Path) -> list[Path]:
    """The logs as ``tactful train`` reads them: CUPS events are imported into ``tmp`` first;
    folders are kept (``tactful train`` expands them)."""
    from tactful.feedback import importers
    from tactful.replay.load import load_log

    out: list[Path] = []
    for i, raw in enumerate(paths):
        p = Path(raw).expanduser()
        if p.is_file() and load_log(p).fmt == "cups":
            db = tmp / f"{p.name.split('.')[0]}-{i}.sqlite3"
            importers.import_cups(p, db)
            out.append(db)
        else:
            out.append(p)
    return out


def simulate_user(
    p1: np.ndarray,
    p2: np.ndarray,
    y: np.ndarray,
    prior: Thresholds,
    target: float,
    lam: float,
    every: int,
    explore: float,
    seed: int = 1234,
    check: bool = True,
) -> dict[str, Any]:
    """One user's decisions (time order; the prior's scores, ``y`` 1 = rejected) through the
    static and the adaptive policy (``check=False``: the ablation without the check)."""
    from tactful.cascade.adapt import propose

    rng = random.Random(seed)
    th = prior
    seen: list[int] = []
    static = np.zeros(len(y), dtype=bool)
    adaptive = np.zeros(len(y), dtype=bool)
    adoptions: list[int] = []
    last_reason = ""
    for i in range(len(y)):
        if i and i % every == 0:
            s = np.array(seen, dtype=int)
            prop = propose(p1[s], p2[s], y[s], target, lam, check=check)
            last_reason = prop.reason
            if prop.adopted and prop.thresholds is not None:
                th = prop.thresholds
                adoptions.append(i)
        one1, one2 = p1[i : i + 1], p2[i : i + 1]
        static[i] = bool(apply_thresholds(one1, one2, prior)[0][0])
        adaptive[i] = bool(apply_thresholds(one1, one2, th)[0][0])
        if not adaptive[i] or rng.random() < explore:
            seen.append(i)
    rej = y == 1
    return {
        "decisions": len(y),
        "rejected": int(rej.sum()),
        "static_hidden": int(static.sum()),
        "static_correct": int((static & rej).sum()),
        "adaptive_hidden": int(adaptive.sum()),
        "adaptive_correct": int((adaptive & rej).sum()),
        "added_hidden": int((adaptive & ~static).sum()),
        "added_correct": int((adaptive & ~static & rej).sum()),
        "dropped_hidden": int((static & ~adaptive).sum()),
        "dropped_correct": int((static & ~adaptive & rej).sum()),
        "adoptions": adoptions,
        "last_reason": last_reason,
        "labelled_seen": len(seen),
    }


def hiding_summary(hidden: int, correct: int, n: int) -> dict[str, Any]:
    """Hidden of ``n`` decisions, ``correct`` of them rejected: the hiding rate and accuracy
    when hiding with two-sided 95 % Clopper-Pearson intervals (None where undefined)."""
    h, c = hidden, correct
    return {
        "hidden": h,
        "correct": c,
        "hidden_rate": h / n if n else None,
        "hidden_rate_cp95": list(stats.clopper_pearson(h, n, 0.975)) if n else None,
        "accuracy_when_hiding": c / h if h else None,
        "accuracy_cp95": list(stats.clopper_pearson(c, h, 0.975)) if h else None,
    }


def pooled(per_user: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Both policies pooled over users, with intervals (module doc)."""
    keys = [k for k, v in next(iter(per_user.values())).items() if isinstance(v, int)]
    tot = {k: sum(int(r[k]) for r in per_user.values()) for k in keys}
    out: dict[str, Any] = {"users": len(per_user), **tot}
    per = {u: {k: float(r[k]) for k in keys} for u, r in per_user.items()}
    for pol in ("static", "adaptive"):
        h, c, n = tot[f"{pol}_hidden"], tot[f"{pol}_correct"], tot["decisions"]
        ratios = {
            "hidden_rate": (f"{pol}_hidden", "decisions"),
            "accuracy_when_hiding": (f"{pol}_correct", f"{pol}_hidden"),
        }
        boot = stats.bootstrap_groups(per, ratios)
        out[pol] = {**hiding_summary(h, c, n), "ci95_over_users": boot}
    out["users_adopting"] = sum(1 for r in per_user.values() if r["adoptions"])
    return out


def run(
    logs: Sequence[str | Path],
    targets: Sequence[float],
    every: int,
    explore: float,
    stream_users: int = 1,
    progress: bool = True,
    lam: float = DEFAULT_LAMBDA,
    check: bool = True,
) -> dict[str, Any]:
    """The benchmark (module doc): per target, per user (or stream of ``stream_users`` users)
    and pooled."""
    from tactful.cascade.data import dataset
    from tactful.cascade.fit import fold_models

    ds = dataset(logs, target=min(min(targets), 0.9))
    if ds.group_kind != "user":
        raise ValueError("holding users out needs a log with at least 3 users")
    # With stream_users > 1, that many held-out users make one longer stream (one after the other).
    chunk = np.arange(len(ds.group_names)) // stream_users
    streams = [
        "+".join(n for j, n in enumerate(ds.group_names) if chunk[j] == c)
        for c in range(int(chunk.max()) + 1)
    ]
    results: dict[str, Any] = {str(t): {} for t in targets}
    for g, user in enumerate(streams):
        held = np.isin(ds.groups, np.flatnonzero(chunk == g))
        te = np.flatnonzero(held)
        fm = fold_models(ds, np.flatnonzero(~held))
        p1, p2 = fm.scores(te)
        for t in targets:
            prior = fm.cascade(t, lam)
            res = simulate_user(
                p1, p2, ds.y[te], prior.thresholds, t, lam, every, explore, check=check
            )
            results[str(t)][user] = res
        if progress:
            print(f"replay adapt: {user} ({g + 1}/{len(streams)})", file=sys.stderr)
    return {
        "decisions": len(ds.y),
        "users": len(ds.group_names),
        "stream_users": stream_users,
        "lambda": lam,
        "checked": check,
        "every": every,
        "explore": explore,
        "targets": {t: {"pooled": pooled(r), "per_user": r} for t, r in results.items()},
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _iv(iv: Sequence[float] | None) -> str:
    return "" if not iv else f" [{100 * iv[0]:.1f}–{100 * iv[1]:.1f}%]"


def table(report: Mapping[str, Any]) -> str:
    """Markdown: one line per target and policy."""
    lines = [
        f"{report['users']} users held out {report.get('stream_users', 1)} at a time (one stream), "
        f"{report['decisions']} decisions; "
        f"adapting every {report['every']} decisions, exploration {report['explore']:.0%}, "
        f"lambda {report.get('lambda')}"
        + ("" if report.get("checked", True) else ", WITHOUT the check (ablation)"),
        "",
        "| target | policy | hidden | hiding rate | accuracy when hiding | users adopting |",
        "|---|---|---|---|---|---|",
    ]
    for t, r in report["targets"].items():
        p = r["pooled"]
        for pol in ("static", "adaptive"):
            q = p[pol]
            lines.append(
                f"| {float(t):.2f} | {pol} | {q['hidden']} of {p['decisions']} | "
                f"{_pct(q['hidden_rate'])}{_iv(q['hidden_rate_cp95'])} | "
                f"{_pct(q['accuracy_when_hiding'])}{_iv(q['accuracy_cp95'])} | "
                + (f"{p['users_adopting']} of {p['users']} |" if pol == "adaptive" else "- |")
            )
        lines.append(
            f"| {float(t):.2f} | change | +{p['added_hidden']} hidden ({p['added_correct']} "
            f"rejected), -{p['dropped_hidden']} ({p['dropped_correct']} rejected) | | | |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``tactful replay adapt --log LOG [--log LOG2 ...] [--target T ...]``."""
    from tactful.cascade.adapt import EVERY
    from tactful.cascade.model import CdhfError
    from tactful.feedback.store import FeedbackError
    from tactful.replay.load import ReplayError

    ap = argparse.ArgumentParser(
        prog="tactful replay adapt",
        description="Static vs adaptive (learning this user) cascade, users held out one at a time.",
    )
    ap.add_argument("--log", action="append", required=True, help="a log or CUPS events; repeat")
    ap.add_argument("--target", type=float, action="append", help="default: 0.95, 0.90, 0.80")
    ap.add_argument("--every", type=int, default=EVERY, help="adapt every N decisions")
    ap.add_argument("--explore", type=float, default=0.05, help="cdhf.exploreRate")
    ap.add_argument("--lam", type=float, default=DEFAULT_LAMBDA, help="as tactful train --lam")
    ap.add_argument(
        "--stream-users",
        type=int,
        default=1,
        help="hold out N users at a time as one stream, one after the other (longer streams)",
    )
    ap.add_argument(
        "--no-check",
        action="store_true",
        help="ablation: adopt every candidate without the check on later decisions",
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = ap.parse_args(list(argv) if argv is not None else None)
    targets = args.target or list(DEFAULT_TARGETS)
    if (
        args.stream_users < 1
        or args.every < 1
        or not 0 <= args.explore <= 1
        or any(not 0.5 <= t < 1 for t in targets)
    ):
        print(
            "tactful replay adapt: --every and --stream-users >= 1, --explore in [0, 1], "
            "--target in [0.5, 1)",
            file=sys.stderr,
        )
        return 2
    try:
        with tempfile.TemporaryDirectory() as tmp:
            logs = decision_logs(args.log, Path(tmp))
            report = run(
                logs,
                targets,
                args.every,
                args.explore,
                args.stream_users,
                lam=args.lam,
                check=not args.no_check,
            )
    except (CdhfError, FeedbackError, ReplayError, ValueError) as exc:
        print(f"tactful replay adapt: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(stats.finite(report), indent=2) if args.json else table(report))
    return 0
