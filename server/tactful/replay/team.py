"""``tactful replay team``: a team-trained cascade against a personal one, on the same held-out
decisions (issue 25, item 4).

For each user of the logs (several logs are pooled with their users kept apart, as
``tactful train --log A --log B`` pools them), the later :data:`~tactful.cascade.adapt.HOLDOUT_SHARE`
of the user's decisions in time order are held out, and two cascades are trained without them:

* **team**: every other user's decisions plus this user's earlier ones, users held out for the
  thresholds (``tactful train --log A --log B ...``);
* **personal**: this user's earlier decisions only (``tactful train --personal``: sessions or
  time held out). A user whose earlier decisions ``tactful train`` would refuse (too few, one
  outcome, fewer rejected than the bound needs) gets no personal model; the line says why, and
  that user hides nothing with it.

Both are fitted as :mod:`tactful.cascade.fit` fits them (thresholds as ``tactful train`` fits
them, without its nested verdict) and replayed on the same held-out decisions. Per user and
pooled: hidden, the hiding rate and accuracy when hiding, with two-sided 95 % Clopper-Pearson
intervals.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tactful import stats
from tactful.cascade.model import DEFAULT_LAMBDA, CdhfError, apply_thresholds
from tactful.replay.adapt import hiding_summary

POLICIES = ("team", "personal")


def _held_out(ds: Any, cascade: Any, idx: np.ndarray) -> dict[str, int]:
    if cascade is None:
        return {"hidden": 0, "correct": 0}
    p1, p2 = cascade.stage1_model.predict(ds.x1[idx]), cascade.stage2_model.predict(ds.x2[idx])
    hide, _ = apply_thresholds(p1, p2, cascade.thresholds)
    return {"hidden": int(hide.sum()), "correct": int((hide & (ds.y[idx] == 1)).sum())}


def compare_user(
    rows: Sequence[Any],
    ds: Any,
    g: int,
    targets: Sequence[float],
    holdout: float,
    lam: float = DEFAULT_LAMBDA,
) -> dict[str, Any]:
    """Team and personal cascades for user ``g`` of ``ds`` (``rows`` in the same order), per
    target, on the user's later decisions."""
    from tactful.cascade.data import dataset_from_rows
    from tactful.cascade.fit import fold_models

    own = np.flatnonzero(ds.groups == g)
    cut = len(own) - max(1, math.ceil(holdout * len(own)))
    earlier, later = own[:cut], own[cut:]
    team = fold_models(ds, np.concatenate([np.flatnonzero(ds.groups != g), earlier]))
    user = ds.group_names[g]
    out: dict[str, Any] = {"user": user, "held_out": len(later), "trained_on_own": cut}
    for t in targets:
        res: dict[str, Any] = {"team": _held_out(ds, team.cascade(t, lam), later)}
        try:
            pds = dataset_from_rows(
                [rows[i] for i in earlier], f"{user}'s earlier decisions", personal=True, target=t
            )
            personal = fold_models(pds, np.arange(len(pds.y))).cascade(t, lam)
            res["personal"] = _held_out(ds, personal, later)
        except CdhfError as exc:
            res["personal"] = {"hidden": 0, "correct": 0, "refused": str(exc)}
        out[str(t)] = res
    return out


def pooled(users: Sequence[Mapping[str, Any]], target: str) -> dict[str, Any]:
    """Both cascades pooled over ``users``; ``with_personal``: the same over the users who
    got a personal model."""

    def over(us: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        n = sum(int(u["held_out"]) for u in us)
        out: dict[str, Any] = {"users": len(us), "held_out": n}
        for pol in POLICIES:
            h = sum(u[target][pol]["hidden"] for u in us)
            c = sum(u[target][pol]["correct"] for u in us)
            out[pol] = hiding_summary(h, c, n)
        return out

    out = over(users)
    out["personal_refused"] = sum(1 for u in users if "refused" in u[target]["personal"])
    out["with_personal"] = over([u for u in users if "refused" not in u[target]["personal"]])
    return out


def run(
    logs: Sequence[str | Path],
    targets: Sequence[float],
    holdout: float,
    only: Sequence[str] = (),
    progress: bool = True,
    lam: float = DEFAULT_LAMBDA,
) -> dict[str, Any]:
    """The comparison (module doc) for every user of the logs, or those in ``only``."""
    from tactful.cascade.data import dataset_from_rows, load_rows

    rows = load_rows(logs)
    ds = dataset_from_rows(rows, ", ".join(str(p) for p in logs), target=min(min(targets), 0.9))
    unknown = sorted(set(only) - set(ds.group_names))
    if unknown:
        raise CdhfError(f"no such user(s) in the logs: {', '.join(unknown)}")
    users = []
    for g, name in enumerate(ds.group_names):
        if only and name not in only:
            continue
        users.append(compare_user(rows, ds, g, targets, holdout, lam))
        if progress:
            print(f"replay team: {name} ({g + 1}/{len(ds.group_names)})", file=sys.stderr)
    return {
        "decisions": len(ds.y),
        "holdout": holdout,
        "lambda": lam,
        "per_user": users,
        "pooled": {str(t): pooled(users, str(t)) for t in targets},
    }


def _cell(r: Mapping[str, Any]) -> str:
    if "refused" in r:
        return "no model"
    acc = "n/a" if not r["hidden"] else f"{100 * r['correct'] / r['hidden']:.0f}%"
    return f"{r['hidden']} ({acc})"


def _iv(iv: Sequence[float] | None) -> str:
    return "" if not iv else f" [{100 * iv[0]:.1f}–{100 * iv[1]:.1f}%]"


def _pooled_line(label: str, p: Mapping[str, Any]) -> str:
    cells = []
    for pol in POLICIES:
        q = p[pol]
        acc = q["accuracy_when_hiding"]
        cells.append(
            f"{q['hidden']} = {100 * (q['hidden_rate'] or 0):.1f}%{_iv(q['hidden_rate_cp95'])}, "
            f"accuracy {'n/a' if acc is None else f'{100 * acc:.1f}%'}{_iv(q['accuracy_cp95'])}"
        )
    return f"| {label} | {p['held_out']} | {cells[0]} | {cells[1]} |"


def table(report: Mapping[str, Any]) -> str:
    """Markdown, per target: one line per user, the pooled line, then why personal models
    were refused."""
    lines: list[str] = []
    for t, p in report["pooled"].items():
        lines += [
            f"target {float(t):.2f}: later {report['holdout']:.0%} of each user's decisions held "
            "out; hidden (accuracy when hiding)",
            "",
            "| user | held out | team | personal |",
            "|---|---|---|---|",
        ]
        reasons: dict[str, str] = {}
        for u in report["per_user"]:
            lines.append(
                f"| {u['user']} | {u['held_out']} | {_cell(u[t]['team'])} | {_cell(u[t]['personal'])} |"
            )
            if "refused" in u[t]["personal"]:
                reasons[u["user"]] = u[t]["personal"]["refused"]
        lines.append(_pooled_line(f"**all {p['users']}**", p))
        if 0 < p["with_personal"]["users"] < p["users"]:
            w = p["with_personal"]
            lines.append(_pooled_line(f"**the {w['users']} with a personal model**", w))
        lines.append("")
        lines += [f"- {u}: no personal model: {why}" for u, why in reasons.items()]
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``tactful replay team --log A [--log B ...] [--target T ...] [--user U ...]``."""
    from tactful.cascade.adapt import HOLDOUT_SHARE
    from tactful.feedback.store import FeedbackError
    from tactful.replay.adapt import decision_logs
    from tactful.replay.load import ReplayError

    ap = argparse.ArgumentParser(
        prog="tactful replay team",
        description="A team-trained cascade against a personal one on each user's later decisions.",
    )
    ap.add_argument(
        "--log",
        action="append",
        required=True,
        help="a log, a folder of logs or CUPS events; repeat",
    )
    ap.add_argument("--target", type=float, action="append", help="default: 0.95")
    ap.add_argument("--user", action="append", default=[], help="only this user (repeatable)")
    ap.add_argument("--holdout", type=float, default=HOLDOUT_SHARE, help="later share held out")
    ap.add_argument("--lam", type=float, default=DEFAULT_LAMBDA, help="as tactful train --lam")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = ap.parse_args(list(argv) if argv is not None else None)
    targets = args.target or [0.95]
    if not 0 < args.holdout < 1 or any(not 0.5 <= t < 1 for t in targets):
        print("tactful replay team: --holdout in (0, 1), --target in [0.5, 1)", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory() as tmp:
            logs = decision_logs(args.log, Path(tmp))
            report = run(logs, targets, args.holdout, args.user, lam=args.lam)
    except (CdhfError, FeedbackError, ReplayError) as exc:
        print(f"tactful replay team: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(stats.finite(report), indent=2) if args.json else table(report))
    return 0
