"""Training the CDHF cascade from feedback logs (``tactful train``); not used at run time.

Thresholds (entropy, stage-1 and stage-2 P(reject)) are fitted as in the paper's code
(``CDHF.fit``): minimise ``lambda * P(defer) + (1 - lambda) * (1 - P(hide))``, but subject to a
**lower confidence bound** of accuracy when hiding meeting the target: the one-sided
Clopper-Pearson bound at :data:`~tactful.cascade.model.BOUND_CONFIDENCE` (90 %) over
out-of-user predictions, not the point estimate (issue 25). The figure a new user should expect
comes from a nested evaluation: for each held-out fold of users, thresholds are fitted on inner
out-of-fold predictions of the training users only and applied to the held-out ones. When the
data cannot support the target (no threshold meets the bound, or the held-out users get less
than the target), the command writes a cascade that hides nothing and says so with the figures.

Default options are those that transfer across users: context and suggestion features, no
telemetry (docs/cdhf.md). ``--telemetry`` is opt-in; the model card says what it risks.

Bad input (one user without ``--personal``, one outcome, too few decisions, features of another
version) is refused with a clear message before anything is written; the previous model folder
is replaced only when the new one is complete.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tactful import stats
from tactful.cascade import features as F
from tactful.cascade.card import HIDING_RATIOS, headline, model_card
from tactful.cascade.data import (
    MIN_DECISIONS,
    Dataset,
    dataset,
    dataset_from_rows,
    feature_sets,
    load_rows,
    log_files,
    log_labels,
)
from tactful.cascade.model import (
    BOUND_CONFIDENCE,
    DEFAULT_LAMBDA,
    DEFAULT_TARGET,
    FORMAT_VERSION,
    CdhfError,
    Thresholds,
    apply_thresholds,
    user_model_dir,
)
from tactful.cascade.thresholds import cascade_metrics, fit_thresholds

__all__ = [
    "MIN_DECISIONS",
    "Dataset",
    "TrainResult",
    "cascade_metrics",
    "dataset",
    "dataset_from_rows",
    "feature_sets",
    "fit_thresholds",
    "load_rows",
    "log_files",
    "log_labels",
    "main",
    "model_card",
    "train",
]

LGB_PARAMS: dict[str, Any] = {
    "objective": "binary",
    # Stumps (an additive model): with a few hundred decisions from a dozen people, deeper
    # trees fit individual users and do worse on held-out ones (docs/cdhf.md).
    "learning_rate": 0.05,
    "num_leaves": 2,
    "max_depth": 1,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "seed": 7,
    "deterministic": True,
    "num_threads": 1,
}
NUM_ROUNDS = 300
#: Bootstrap resamples (of whole held-out users, sessions or time blocks) behind the intervals.
BOOTSTRAP_REPS = 2000
CURVE_TARGETS = (0.80, 0.85, 0.90, 0.95)


# --- models ------------------------------------------------------------------------------------


def _fit(x: np.ndarray, y: np.ndarray, names: Sequence[str]) -> Any:
    import lightgbm as lgb

    cats = [i for i, n in enumerate(names) if n in F.CATEGORICAL]
    ds = lgb.Dataset(
        x,
        label=y,
        feature_name=list(names),
        categorical_feature=cats,
        free_raw_data=True,
        params={"verbose": -1},
    )
    params = dict(LGB_PARAMS)
    params["min_data_in_leaf"] = max(3, min(LGB_PARAMS["min_data_in_leaf"], len(y) // 10))
    params["min_data_per_group"] = max(3, min(100, len(y) // 10))
    params["cat_smooth"] = 10.0
    return lgb.train(params, ds, num_boost_round=NUM_ROUNDS)


def _folds(groups: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import GroupKFold

    k = min(k, len(np.unique(groups)))
    if k < 2:
        raise CdhfError("need at least two users, sessions or time blocks to hold out")
    return list(GroupKFold(n_splits=k).split(np.zeros(len(groups)), groups=groups))


def _oof(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, names: Sequence[str], k: int
) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold predictions (GroupKFold) and the per-fold AUCs."""
    p = np.zeros(len(y))
    aucs: list[float] = []
    for tr, te in _folds(groups, k):
        if len(np.unique(y[tr])) < 2:
            p[te] = y[tr].mean()
            continue
        p[te] = _fit(x[tr], y[tr], names).predict(x[te])
        a = stats.auc(y[te], p[te])
        if a is not None:
            aucs.append(a)
    return p, aucs


def bootstrap_ci(
    hide: np.ndarray, y: np.ndarray, groups: np.ndarray, reps: int = BOOTSTRAP_REPS
) -> dict[str, list[float] | None]:
    """95 % percentile intervals of the pooled held-out hiding figures, resampling whole groups
    (users) with replacement (:func:`tactful.stats.bootstrap_groups`)."""
    hide, y, groups = np.asarray(hide, bool), np.asarray(y, float), np.asarray(groups)
    per: dict[str, dict[str, float]] = {}
    for g in np.unique(groups):
        m = groups == g
        per[str(g)] = {
            "n": float(m.sum()),
            "hidden": float((hide & m).sum()),
            "correct": float((hide & m & (y == 1)).sum()),
            "rejected": float((m & (y == 1)).sum()),
        }
    out = stats.bootstrap_groups(per, HIDING_RATIOS, samples=reps)
    return out or {k: None for k in HIDING_RATIOS}


def evaluate(
    ds: Dataset,
    target: float,
    lam: float,
    k: int = 5,
    stage1_share: float | None = None,
    confidence: float | None = BOUND_CONFIDENCE,
) -> dict[str, Any]:
    """Nested, held-out evaluation of the whole cascade: for each outer fold, thresholds are
    fitted on inner out-of-fold predictions of the training groups only."""
    hide = np.zeros(len(ds.y), dtype=bool)
    by1 = np.zeros(len(ds.y), dtype=bool)
    folds: list[dict[str, float]] = []
    for tr, te in _folds(ds.groups, k):
        ytr = ds.y[tr]
        if len(np.unique(ytr)) < 2 or len(np.unique(ds.groups[tr])) < 2:
            continue
        inner = k - 1 if k > 2 else 2
        ip1, _ = _oof(ds.x1[tr], ytr, ds.groups[tr], ds.s1_names, inner)
        ip2, _ = _oof(ds.x2[tr], ytr, ds.groups[tr], ds.s2_names, inner)
        th = fit_thresholds(ip1, ip2, ytr, target, lam, stage1_share, confidence=confidence)
        p1 = _fit(ds.x1[tr], ytr, ds.s1_names).predict(ds.x1[te])
        p2 = _fit(ds.x2[tr], ytr, ds.s2_names).predict(ds.x2[te])
        hide[te], by1[te] = apply_thresholds(p1, p2, th)
        folds.append(cascade_metrics(p1, p2, ds.y[te], th))
    y = ds.y
    n_hid, n_cor = int(hide.sum()), int((hide & (y == 1)).sum())
    pooled = {
        "hidden": float(hide.mean()),
        "hidden_count": float(n_hid),
        "correct_count": float(n_cor),
        "accuracy_when_hiding": n_cor / n_hid if n_hid else float("nan"),
        "accuracy_lower90": stats.cp_lower(n_cor, n_hid, BOUND_CONFIDENCE) if n_hid else None,
        "rejected_hidden": float(n_cor / max(int(y.sum()), 1)),
        "decided_by_stage1": float(by1.mean()),
        "skipped_by_stage1": float((hide & by1).mean()),
    }
    return {
        "target": target,
        "lambda": lam,
        "stage1_share": stage1_share,
        "bound": "point" if confidence is None else f"clopper-pearson {confidence:.0%}",
        "pooled": pooled,
        "ci95": bootstrap_ci(hide, y, ds.groups),
        "folds": folds,
    }


# --- training ----------------------------------------------------------------------------------


@dataclass
class TrainResult:
    out: Path
    metrics: dict[str, Any]
    thresholds: Thresholds
    #: Whether the data supports hiding at the target (else the thresholds hide nothing).
    supported: bool = False
    verdict: str = ""


def _verdict(
    th: Thresholds, ho: Mapping[str, Any], target: float, stage2_only: Mapping[str, float]
) -> tuple[bool, str]:
    """Whether the fitted thresholds may be written, and why (a sentence for a person)."""
    p = ho["pooled"]
    acc, hid = p["accuracy_when_hiding"], int(p["hidden_count"])
    if th.hides_nothing() and stage2_only["hidden_count"] > 0:
        return False, (
            f"stage 2 alone could hide {stage2_only['hidden']:.1%} of suggestions within the "
            f"{BOUND_CONFIDENCE:.0%} lower bound, but at this --lam deciding at stage 1 without "
            "hiding costs less; this cascade hides nothing (a lower --lam weighs hiding more)"
        )
    if th.hides_nothing():
        return False, (
            f"the data cannot support {target:.0%} accuracy when hiding: no threshold keeps the "
            f"{BOUND_CONFIDENCE:.0%} lower bound at the target on out-of-user predictions, so this "
            "cascade hides nothing"
        )
    if hid == 0:
        return False, (
            "thresholds fitted without the held-out users hid nothing for them, so the data "
            "cannot show what hiding would cost a new user; this cascade hides nothing"
        )
    if not acc >= target:
        return False, (
            f"held-out users got {acc:.1%} accuracy when hiding ({hid} hidden), below the "
            f"{target:.0%} target; this cascade hides nothing"
        )
    return True, (
        f"held-out users got {acc:.1%} accuracy when hiding ({hid} hidden), lower bound "
        f"{p['accuracy_lower90']:.1%}; the thresholds are kept"
    )


def _metrics(
    ds: Dataset, k: int, target: float, lam: float, curve: bool
) -> tuple[dict[str, Any], Thresholds]:
    """The held-out figures, and the thresholds fitted on all out-of-fold predictions."""
    p1, auc1_folds = _oof(ds.x1, ds.y, ds.groups, ds.s1_names, k)
    p2, auc2_folds = _oof(ds.x2, ds.y, ds.groups, ds.s2_names, k)
    th = fit_thresholds(p1, p2, ds.y, target, lam)
    curve_rows: list[dict[str, Any]] = []
    if curve:
        for tgt in CURVE_TARGETS:
            for share in (0.0, None):
                ev = evaluate(ds, tgt, lam, k, stage1_share=share)
                curve_rows.append(
                    {"target": tgt, "stage1_share": share, **ev["pooled"], "ci95": ev["ci95"]}
                )
    metrics = {
        "decisions": len(ds.y),
        "rejected_share": float(ds.y.mean()),
        "users": ds.users,
        "sessions": ds.sessions,
        "held_out_by": ds.group_kind,
        "folds": len(_folds(ds.groups, k)),
        "stage1_auc": stats.auc(ds.y, p1),
        "stage1_auc_folds": auc1_folds,
        "stage2_auc": stats.auc(ds.y, p2),
        "stage2_auc_folds": auc2_folds,
        "in_sample_threshold_fit": cascade_metrics(p1, p2, ds.y, th),
        # The same bound with stage 2 alone deciding (whether --lam is what keeps it from hiding).
        "stage2_only_fit": cascade_metrics(
            p1, p2, ds.y, fit_thresholds(p1, p2, ds.y, target, lam, stage1_share=0.0)
        ),
        "held_out": evaluate(ds, target, lam, k),
        "curve": curve_rows,
    }
    return metrics, th


def _meta(
    ds: Dataset, th: Thresholds, metrics: dict[str, Any], opts: Mapping[str, Any]
) -> dict[str, Any]:
    ho = metrics["held_out"]["pooled"]
    return {
        "format": FORMAT_VERSION,
        "features_version": F.FEATURES_VERSION,
        "stage1_features": list(ds.s1_names),
        "stage2_features": list(ds.s2_names),
        "categorical": sorted(F.CATEGORICAL),
        "vocabularies": {
            "char": list(F.CHAR_CLASSES),
            "language": list(F.LANGUAGES),
            "context_class": list(F.CONTEXT_CLASSES),
        },
        "thresholds": asdict(th),
        "target": opts["target"],
        "lambda": opts["lam"],
        "bound_confidence": BOUND_CONFIDENCE,
        "supported": opts["supported"],
        "verdict": opts["verdict"],
        # The run-time guard's prior: what held-out people saw with thresholds fitted without
        # them (cascade/guard.py).
        "guard": {
            "target": opts["target"],
            "prior_hidden": ho["hidden_count"] if opts["supported"] else 0.0,
            "prior_correct": ho["correct_count"] if opts["supported"] else 0.0,
        },
        "trained": {
            "logs": opts["logs"],
            "command": opts["command"],
            "telemetry": opts["telemetry"],
            "personal": opts["personal"],
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "lightgbm_params": LGB_PARAMS,
            "rounds": NUM_ROUNDS,
        },
        "metrics": stats.finite(metrics),
    }


def _write(out: Path, meta: Mapping[str, Any], m1: Any, m2: Any) -> None:
    """Write the folder next to ``out`` and swap it in: a failure keeps the previous model."""
    from tactful.cascade.lock import replace_folder

    def fill(tmp: Path) -> None:
        m1.save_model(str(tmp / "stage1.txt"))
        m2.save_model(str(tmp / "stage2.txt"))
        (tmp / "cascade.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        (tmp / "MODEL_CARD.md").write_text(model_card(meta, m2), encoding="utf-8")

    replace_folder(out, fill)


def train(
    logs: str | Path | Sequence[str | Path],
    out: str | Path,
    target: float = DEFAULT_TARGET,
    lam: float = DEFAULT_LAMBDA,
    k: int = 5,
    curve: bool = True,
    command: str | None = None,
    telemetry: bool = False,
    personal: bool = False,
) -> TrainResult:
    """Train both stages from feedback logs into the folder ``out`` and evaluate them with
    users held out. Raises :class:`CdhfError` (nothing written) on data that cannot be trained
    on; writes a cascade that hides nothing when the data cannot support ``target``."""
    from tactful.cascade.lock import MANUAL_WAIT_S, folder_lock

    paths = [logs] if isinstance(logs, str | Path) else list(logs)
    # One writer per folder: the server's automatic adaptation skips it meanwhile.
    with folder_lock(out, MANUAL_WAIT_S):
        return _train_locked(paths, Path(out), target, lam, k, curve, command, telemetry, personal)


def _train_locked(
    paths: list[str | Path],
    out: Path,
    target: float,
    lam: float,
    k: int,
    curve: bool,
    command: str | None,
    telemetry: bool,
    personal: bool,
) -> TrainResult:
    t0 = time.time()
    ds = dataset(paths, telemetry, personal, target)
    metrics, th = _metrics(ds, k, target, lam, curve)
    supported, verdict = _verdict(th, metrics["held_out"], target, metrics["stage2_only_fit"])
    if not supported:
        th = Thresholds()
    metrics["seconds"] = round(time.time() - t0, 1)
    opts = {
        "target": target,
        "lam": lam,
        "supported": supported,
        "verdict": verdict,
        "logs": [str(p) for p in paths],
        "command": command,
        "telemetry": telemetry,
        "personal": personal,
    }
    meta = _meta(ds, th, metrics, opts)
    m1, m2 = _fit(ds.x1, ds.y, ds.s1_names), _fit(ds.x2, ds.y, ds.s2_names)
    _write(out, meta, m1, m2)
    return TrainResult(out, metrics, th, supported, verdict)


# --- CLI ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="tactful train", description="Train the CDHF show/hide cascade from feedback logs."
    )
    ap.add_argument(
        "--log",
        action="append",
        help="a feedback log or a folder of logs; repeat for several (users kept apart). "
        "Default: your own log",
    )
    ap.add_argument("--out", help="model folder (default: models/cdhf-user in the data directory)")
    ap.add_argument("--target", type=float, default=DEFAULT_TARGET, help="default 0.95")
    ap.add_argument("--lam", type=float, default=DEFAULT_LAMBDA, help="model calls vs hiding")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--no-curve", action="store_true", help="skip the hiding-rate curve")
    ap.add_argument(
        "--telemetry",
        action="store_true",
        help="opt in to the telemetry features (they did not transfer across users in CUPS)",
    )
    ap.add_argument("--no-telemetry", action="store_true", help="the default; kept for scripts")
    ap.add_argument(
        "--personal",
        action="store_true",
        help="allow a one-person log (held-out time instead of held-out users)",
    )
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """``tactful train --log LOG [--log LOG2 | FOLDER] --out DIR``."""
    args = _parser().parse_args(list(argv) if argv is not None else None)
    from tactful.feedback.store import FeedbackError, default_log_path

    logs = args.log or [str(default_log_path())]
    out = Path(args.out).expanduser() if args.out else user_model_dir()
    if not 0.5 <= args.target < 1.0:
        print("tactful train: --target must be in [0.5, 1)", file=sys.stderr)
        return 2
    cmd = "tactful train " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        res = train(
            logs,
            out,
            args.target,
            args.lam,
            args.folds,
            curve=not args.no_curve,
            command=cmd,
            telemetry=args.telemetry and not args.no_telemetry,
            personal=args.personal,
        )
    except (CdhfError, FeedbackError) as exc:
        print(f"tactful train: {exc}; no model written", file=sys.stderr)
        return 1
    meta = json.loads((res.out / "cascade.json").read_text(encoding="utf-8"))
    for line in headline(meta):
        print(line)
    m = meta["metrics"]
    summary = {
        "out": str(res.out),
        "supported": res.supported,
        "held_out": m["held_out"]["pooled"],
        "held_out_ci95": m["held_out"].get("ci95"),
        "decisions": m["decisions"],
        "stage1_auc": m["stage1_auc"],
        "stage2_auc": m["stage2_auc"],
        "thresholds": asdict(res.thresholds),
        "seconds": m["seconds"],
    }
    print(json.dumps(summary, indent=2))
    return 0
