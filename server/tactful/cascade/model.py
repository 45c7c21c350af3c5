"""The CDHF cascade ("When to Show a Suggestion?", Mozannar et al.): training and run time.

Stage 1 predicts P(reject) from context and telemetry before anything is generated and can
skip the model call; stage 2 predicts P(reject) with the suggestion in hand and can hide it.
Stage 1 decides alone when its binary entropy is below ``entropy`` and defers to stage 2
otherwise. The three thresholds are fitted as in the paper's code (``CDHF.fit``): minimise
``lambda * P(defer) + (1 - lambda) * (1 - P(hide))`` subject to at least ``target`` (default
0.95) of hidden suggestions being truly rejected.

This module owns

* :func:`train` - LightGBM models for both stages from a feedback log, evaluated with users
  (or sessions) held out: GroupKFold for the AUCs and a nested GroupKFold for the thresholds,
  so that the reported hiding rates are those of thresholds fitted without the test users;
* :func:`fit_thresholds` - the constrained grid search;
* the model folder format (``stage1.txt`` / ``stage2.txt`` LightGBM text models,
  ``cascade.json`` with feature lists, thresholds and metrics, ``MODEL_CARD.md``) - never
  pickle;
* :class:`Cascade` - loads a model folder and decides at run time;
* ``tactful train --log LOG --out DIR`` (:func:`main`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tactful.cascade import features as F
from tactful.cascade.hooks import Decision

FORMAT_VERSION = 1
DEFAULT_TARGET = 0.95
DEFAULT_LAMBDA = 0.5
#: Fewest labelled decisions (with both outcomes present) that training accepts.
MIN_DECISIONS = 30
#: Decisions in the user's own log before a model trained on it replaces the default.
OWN_LOG_MIN_DECISIONS = 300

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
#: Bootstrap resamples (of whole held-out users, sessions or time blocks) behind the intervals
#: reported for the held-out hiding figures.
BOOTSTRAP_REPS = 2000


class CdhfError(Exception):
    """A cascade cannot be trained or loaded; the message is meant for a person."""


def entropy(p: Any) -> Any:
    """Binary entropy in bits (works on floats and numpy arrays)."""
    q = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
    out = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    return float(out) if out.ndim == 0 else out


# --- thresholds --------------------------------------------------------------------------------


@dataclass
class Thresholds:
    """Stage 1 decides alone when H(p1) < ``entropy``: it skips generation when p1 >= ``stage1``
    (and shows otherwise); deferred requests are hidden when p2 >= ``stage2``."""

    entropy: float = 0.0
    stage1: float = 1.01
    stage2: float = 1.01


def apply_thresholds(
    p1: np.ndarray, p2: np.ndarray, th: Thresholds
) -> tuple[np.ndarray, np.ndarray]:
    """(hide, decided_by_stage1) boolean arrays."""
    by1 = entropy(p1) < th.entropy
    hide = np.where(by1, p1 >= th.stage1, p2 >= th.stage2)
    return hide, by1


def cascade_metrics(
    p1: np.ndarray, p2: np.ndarray, y: np.ndarray, th: Thresholds
) -> dict[str, float]:
    """The paper's metrics; ``y`` is 1 for rejected."""
    hide, by1 = apply_thresholds(p1, p2, th)
    n = max(len(y), 1)
    rejected = max(int(y.sum()), 1)
    return {
        "n": float(len(y)),
        "hidden": float(hide.mean()) if len(y) else 0.0,
        "accuracy_when_hiding": float(y[hide].mean()) if hide.any() else float("nan"),
        "rejected_hidden": float((hide & (y == 1)).sum() / rejected),
        "accepted_hidden": float((hide & (y == 0)).sum() / max(int((y == 0).sum()), 1)),
        "decided_by_stage1": float(by1.mean()) if len(y) else 0.0,
        "skipped_by_stage1": float((hide & by1).sum() / n),
        "accuracy": float((hide == (y == 1)).mean()) if len(y) else 0.0,
    }


def _best_for_split(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds over ``p`` (hide when p >= t) with hidden and correctly hidden counts."""
    cands = np.unique(p)[::-1]
    cands = np.concatenate(([1.01], cands))
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    # hidden count for threshold t = number of p >= t
    hidden = np.searchsorted(-ps, -cands, side="right")
    cum = np.concatenate(([0], np.cumsum(ys)))
    correct = cum[hidden]
    return cands, hidden.astype(float), correct.astype(float)


def fit_thresholds(
    p1: np.ndarray,
    p2: np.ndarray,
    y: np.ndarray,
    target: float = DEFAULT_TARGET,
    lam: float = DEFAULT_LAMBDA,
    stage1_share: float | None = None,
    entropy_steps: int = 101,
) -> Thresholds:
    """Grid search of (entropy, stage1, stage2) as in CDHF.fit, exhaustive over the observed
    probabilities. ``stage1_share`` fixes the share of requests stage 1 decides alone (the
    paper's R); otherwise it is searched over entropy quantiles."""
    p1, p2, y = np.asarray(p1, float), np.asarray(p2, float), np.asarray(y, float)
    n = len(y)
    if n == 0:
        return Thresholds()
    h = entropy(p1)
    if stage1_share is not None:
        rs = (
            [float(np.quantile(h, stage1_share)) + (1e-12 if stage1_share >= 1 else 0.0)]
            if stage1_share > 0
            else [0.0]
        )
    else:
        rs = sorted({*np.quantile(h, np.linspace(0, 1, entropy_steps)).tolist(), 0.0, 1.01})
    best: tuple[float, float, Thresholds] | None = None
    for r in rs:
        by1 = h < r
        c1, h1, k1 = (
            _best_for_split(p1[by1], y[by1])
            if by1.any()
            else (np.array([1.01]), np.zeros(1), np.zeros(1))
        )
        c2, h2, k2 = (
            _best_for_split(p2[~by1], y[~by1])
            if (~by1).any()
            else (np.array([1.01]), np.zeros(1), np.zeros(1))
        )
        hid = h1[:, None] + h2[None, :]
        cor = k1[:, None] + k2[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.where(hid > 0, cor / np.maximum(hid, 1), 1.0)
        ok = (acc >= target) | (hid == 0)
        loss = lam * (1 - by1.mean()) + (1 - lam) * (1 - hid / n)
        loss = np.where(ok, loss, np.inf)
        i, j = np.unravel_index(int(np.argmin(loss)), loss.shape)
        cand = (
            float(loss[i, j]),
            -float(hid[i, j]),
            Thresholds(float(r), float(c1[i]), float(c2[j])),
        )
        if best is None or cand[:2] < best[:2]:
            best = cand
    assert best is not None
    return best[2]


# --- data --------------------------------------------------------------------------------------


@dataclass
class Dataset:
    x1: np.ndarray
    x2: np.ndarray
    y: np.ndarray  # 1 = rejected
    groups: np.ndarray
    group_kind: str
    users: int
    sessions: int
    s1_names: tuple[str, ...] = F.STAGE1_FEATURES
    s2_names: tuple[str, ...] = F.STAGE2_FEATURES


def feature_sets(telemetry: bool = True) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Stage 1 and stage 2 feature names; ``telemetry=False`` leaves the telemetry features out
    (they carry no signal across users in CUPS: docs/cdhf.md)."""
    if telemetry:
        return F.STAGE1_FEATURES, F.STAGE2_FEATURES
    return F.CONTEXT_FEATURES, F.CONTEXT_FEATURES + F.SUGGESTION_FEATURES


def dataset_from_log(path: str | Path, telemetry: bool = True) -> Dataset:
    from tactful.feedback.store import load_decisions

    rows = load_decisions(path)
    if len(rows) < MIN_DECISIONS:
        raise CdhfError(
            f"{path}: {len(rows)} labelled decisions; training needs at least {MIN_DECISIONS}"
        )
    y = np.array([0 if r.accepted else 1 for r in rows], dtype=float)
    if y.min() == y.max():
        raise CdhfError(
            f"{path}: every decision is {'rejected' if y[0] else 'accepted'}; training needs both outcomes"
        )
    s1_names, s2_names = feature_sets(telemetry)
    x1 = np.array([F.vector(r.features, s1_names) for r in rows], dtype=float)
    x2 = np.array([F.vector(r.features, s2_names) for r in rows], dtype=float)
    users = sorted({r.user for r in rows})
    sessions = sorted({r.session for r in rows})
    if len(users) >= 3:
        groups, kind = np.array([users.index(r.user) for r in rows]), "user"
    elif len(sessions) >= 3:
        groups, kind = np.array([sessions.index(r.session) for r in rows]), "session"
    else:  # one person, one or two sessions: hold out contiguous stretches of time
        k = 5
        groups, kind = (
            np.array([min(k - 1, i * k // len(rows)) for i in range(len(rows))]),
            "time block",
        )
    return Dataset(x1, x2, y, groups, kind, len(users), len(sessions), s1_names, s2_names)


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
    ds_x: np.ndarray, y: np.ndarray, groups: np.ndarray, names: Sequence[str], k: int
) -> tuple[np.ndarray, list[float]]:
    from sklearn.metrics import roc_auc_score

    p = np.zeros(len(y))
    aucs: list[float] = []
    for tr, te in _folds(groups, k):
        if len(np.unique(y[tr])) < 2:
            p[te] = y[tr].mean()
            continue
        m = _fit(ds_x[tr], y[tr], names)
        p[te] = m.predict(ds_x[te])
        if len(np.unique(y[te])) == 2:
            aucs.append(float(roc_auc_score(y[te], p[te])))
    return p, aucs


def bootstrap_ci(
    hide: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    reps: int = BOOTSTRAP_REPS,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, list[float] | None]:
    """Percentile intervals of the pooled held-out hiding figures (``hidden``,
    ``accuracy_when_hiding``, ``rejected_hidden``), resampling whole groups (users) with
    replacement: decisions of one person are not independent. Deterministic (fixed seed).
    An interval is None when no resample has a value (nothing hidden, or nothing rejected)."""
    hide = np.asarray(hide, dtype=bool)
    y = np.asarray(y, dtype=float)
    uniq, idx = np.unique(np.asarray(groups), return_inverse=True)
    g = len(uniq)
    if g == 0 or len(y) == 0:
        return {"hidden": None, "accuracy_when_hiding": None, "rejected_hidden": None}
    n_g = np.bincount(idx, minlength=g).astype(float)
    hid_g = np.bincount(idx, weights=hide.astype(float), minlength=g)
    cor_g = np.bincount(idx, weights=(hide & (y == 1)).astype(float), minlength=g)
    rej_g = np.bincount(idx, weights=(y == 1).astype(float), minlength=g)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(g, np.full(g, 1.0 / g), size=reps).astype(float)  # picks per group
    n, hid, cor, rej = w @ n_g, w @ hid_g, w @ cor_g, w @ rej_g
    with np.errstate(invalid="ignore", divide="ignore"):
        values = {
            "hidden": np.where(n > 0, hid / np.maximum(n, 1), np.nan),
            "accuracy_when_hiding": np.where(hid > 0, cor / np.maximum(hid, 1), np.nan),
            "rejected_hidden": np.where(rej > 0, cor / np.maximum(rej, 1), np.nan),
        }
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out: dict[str, list[float] | None] = {}
    for key, v in values.items():
        v = v[np.isfinite(v)]
        out[key] = [float(np.percentile(v, lo)), float(np.percentile(v, hi))] if len(v) else None
    return out


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def evaluate(
    ds: Dataset, target: float, lam: float, k: int = 5, stage1_share: float | None = None
) -> dict[str, Any]:
    """Nested, held-out evaluation of the whole cascade: for each outer fold, thresholds are
    fitted on inner out-of-fold predictions of the training groups only."""
    p1_all = np.zeros(len(ds.y))
    p2_all = np.zeros(len(ds.y))
    hide_parts: list[dict[str, float]] = []
    hide = np.zeros(len(ds.y), dtype=bool)
    by1 = np.zeros(len(ds.y), dtype=bool)
    for tr, te in _folds(ds.groups, k):
        ytr = ds.y[tr]
        if len(np.unique(ytr)) < 2 or len(np.unique(ds.groups[tr])) < 2:
            continue
        ip1, _ = _oof(ds.x1[tr], ytr, ds.groups[tr], ds.s1_names, k - 1 if k > 2 else 2)
        ip2, _ = _oof(ds.x2[tr], ytr, ds.groups[tr], ds.s2_names, k - 1 if k > 2 else 2)
        th = fit_thresholds(ip1, ip2, ytr, target, lam, stage1_share)
        m1 = _fit(ds.x1[tr], ytr, ds.s1_names)
        m2 = _fit(ds.x2[tr], ytr, ds.s2_names)
        p1, p2 = m1.predict(ds.x1[te]), m2.predict(ds.x2[te])
        p1_all[te], p2_all[te] = p1, p2
        h, b = apply_thresholds(p1, p2, th)
        hide[te], by1[te] = h, b
        hide_parts.append(cascade_metrics(p1, p2, ds.y[te], th))
    y = ds.y
    rejected = max(int(y.sum()), 1)
    pooled = {
        "hidden": float(hide.mean()),
        "accuracy_when_hiding": float(y[hide].mean()) if hide.any() else float("nan"),
        "rejected_hidden": float((hide & (y == 1)).sum() / rejected),
        "decided_by_stage1": float(by1.mean()),
        "skipped_by_stage1": float((hide & by1).mean()),
    }
    return {
        "target": target,
        "lambda": lam,
        "stage1_share": stage1_share,
        "pooled": pooled,
        # 95 % intervals of the pooled figures, resampling held-out groups (users).
        "ci95": bootstrap_ci(hide, y, ds.groups),
        "folds": hide_parts,
    }


@dataclass
class TrainResult:
    out: Path
    metrics: dict[str, Any]
    thresholds: Thresholds


def train(
    log_path: str | Path,
    out: str | Path,
    target: float = DEFAULT_TARGET,
    lam: float = DEFAULT_LAMBDA,
    k: int = 5,
    curve: bool = True,
    source: str | None = None,
    command: str | None = None,
    telemetry: bool = True,
) -> TrainResult:
    """Train both stages from a feedback log into the folder ``out`` and evaluate them."""
    t0 = time.time()
    ds = dataset_from_log(log_path, telemetry)
    p1, auc1_folds = _oof(ds.x1, ds.y, ds.groups, ds.s1_names, k)
    p2, auc2_folds = _oof(ds.x2, ds.y, ds.groups, ds.s2_names, k)
    th = fit_thresholds(p1, p2, ds.y, target, lam)
    held_out = evaluate(ds, target, lam, k)
    curve_rows: list[dict[str, Any]] = []
    if curve:
        for tgt in (0.80, 0.85, 0.90, 0.95, 0.99):
            for share in (0.0, 0.25, 0.5, None):
                ev = evaluate(ds, tgt, lam, k, stage1_share=share)
                curve_rows.append(
                    {"target": tgt, "stage1_share": share, **ev["pooled"], "ci95": ev["ci95"]}
                )
    m1 = _fit(ds.x1, ds.y, ds.s1_names)
    m2 = _fit(ds.x2, ds.y, ds.s2_names)
    metrics = {
        "decisions": len(ds.y),
        "rejected_share": float(ds.y.mean()),
        "users": ds.users,
        "sessions": ds.sessions,
        "held_out_by": ds.group_kind,
        "folds": len(_folds(ds.groups, k)),
        "stage1_auc": _auc(ds.y, p1),
        "stage1_auc_folds": auc1_folds,
        "stage2_auc": _auc(ds.y, p2),
        "stage2_auc_folds": auc2_folds,
        "in_sample_threshold_fit": cascade_metrics(p1, p2, ds.y, th),
        "held_out": held_out,
        "curve": curve_rows,
        "seconds": round(time.time() - t0, 1),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m1.save_model(str(out / "stage1.txt"))
    m2.save_model(str(out / "stage2.txt"))
    meta = {
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
        "target": target,
        "lambda": lam,
        "trained": {
            "log": source or str(log_path),
            "command": command,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "lightgbm_params": LGB_PARAMS,
            "rounds": NUM_ROUNDS,
        },
        "metrics": _finite(metrics),
    }
    (out / "cascade.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(model_card(meta, m2), encoding="utf-8")
    return TrainResult(out, metrics, th)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _pct(x: Any) -> str:
    return (
        "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:.1f}%"
    )


def _ci(iv: Any) -> str:
    if not iv or any(v is None for v in iv):
        return "n/a"
    return f"{_pct(iv[0])}–{_pct(iv[1])}"


def model_card(meta: Mapping[str, Any], m2: Any | None = None) -> str:
    """A Markdown model card: data, features, thresholds, metrics."""
    m = meta["metrics"]
    th = meta["thresholds"]
    ho = m["held_out"]["pooled"]
    lines = [
        "# CDHF cascade model card",
        "",
        f"Trained {meta['trained']['at']} from `{meta['trained']['log']}`"
        + (f" with `{meta['trained']['command']}`." if meta["trained"].get("command") else "."),
        "",
        "## Data",
        f"- {m['decisions']} shown suggestions with an accept/reject outcome ({_pct(m['rejected_share'])} rejected), "
        f"{m['users']} users, {m['sessions']} sessions.",
        f"- Evaluation holds out whole {m['held_out_by']}s: GroupKFold with {m['folds']} folds.",
        "",
        "## Models",
        f"- Stage 1 (before generation): LightGBM, {len(meta['stage1_features'])} "
        + (
            "context and telemetry"
            if any(f in F.TELEMETRY_FEATURES for f in meta["stage1_features"])
            else "context (telemetry left out)"
        )
        + " features: "
        + ", ".join(f"`{f}`" for f in meta["stage1_features"]),
        f"- Stage 2 (after generation): LightGBM, stage 1's features plus {len(meta['stage2_features']) - len(meta['stage1_features'])} suggestion features: "
        + ", ".join(f"`{f}`" for f in meta["stage2_features"][len(meta["stage1_features"]) :]),
        f"- {meta['trained']['rounds']} boosting rounds; saved as LightGBM text models `stage1.txt`, `stage2.txt`.",
        "",
        "## Metrics (held out)",
        f"- Stage 1 AUC {m['stage1_auc']:.3f} (folds: {', '.join(f'{a:.2f}' for a in m['stage1_auc_folds'])}).",
        f"- Stage 2 AUC {m['stage2_auc']:.3f} (folds: {', '.join(f'{a:.2f}' for a in m['stage2_auc_folds'])}).",
        f"- Cascade at target {meta['target']:.2f} accuracy when hiding, lambda {meta['lambda']}: thresholds fitted on inner folds, "
        f"applied to held-out {m['held_out_by']}s: hides {_pct(ho['hidden'])} of suggestions, accuracy when hiding {_pct(ho['accuracy_when_hiding'])}, "
        f"{_pct(ho['rejected_hidden'])} of rejected suggestions hidden, stage 1 decides {_pct(ho['decided_by_stage1'])} of requests alone "
        f"({_pct(ho['skipped_by_stage1'])} skipped before generation).",
    ]
    ci = m["held_out"].get("ci95")
    if ci:
        lines.append(
            f"- 95% intervals, resampling held-out {m['held_out_by']}s (bootstrap): hidden {_ci(ci.get('hidden'))}, "
            f"accuracy when hiding {_ci(ci.get('accuracy_when_hiding'))}, rejected hidden {_ci(ci.get('rejected_hidden'))}."
        )
    lines += [
        "",
        "## Thresholds (fitted on all out-of-fold predictions)",
        f"- Stage 1 decides alone when its entropy < {th['entropy']:.4f} bits; it skips generation when P(reject) >= {th['stage1']:.4f}.",
        f"- Stage 2 hides when P(reject) >= {th['stage2']:.4f}.",
        "",
    ]
    if m.get("curve"):
        lines += [
            "## Hiding rate against accuracy when hiding (held out)",
            "",
            f"Brackets: 95% bootstrap intervals, resampling held-out {m['held_out_by']}s.",
            "",
            "| target | stage-1 share | hidden | accuracy when hiding | rejected hidden | decided by stage 1 |",
            "|---|---|---|---|---|---|",
        ]
        for r in m["curve"]:
            share = "fitted" if r["stage1_share"] is None else f"{r['stage1_share']:.2f}"
            rci = r.get("ci95") or {}

            def cell(key: str, r: Mapping[str, Any] = r, rci: Mapping[str, Any] = rci) -> str:
                return _pct(r[key]) + (f" [{_ci(rci[key])}]" if rci.get(key) else "")

            lines.append(
                f"| {r['target']:.2f} | {share} | {cell('hidden')} | {cell('accuracy_when_hiding')} | {cell('rejected_hidden')} | {_pct(r['decided_by_stage1'])} |"
            )
        lines.append("")
    if m2 is not None:
        try:
            gains = m2.feature_importance(importance_type="gain")
            names = m2.feature_name()
            top = sorted(zip(names, gains, strict=False), key=lambda x: -x[1])[:10]
            lines += (
                ["## Stage 2 feature importance (gain, top 10)", ""]
                + [f"- `{n}`: {g:.1f}" for n, g in top]
                + [""]
            )
        except Exception:
            pass
    return "\n".join(lines)


# --- run time ----------------------------------------------------------------------------------


@dataclass
class Cascade:
    """A trained cascade loaded from a model folder, deciding per request."""

    path: Path
    stage1_model: Any
    stage2_model: Any
    stage1_features: tuple[str, ...]
    stage2_features: tuple[str, ...]
    thresholds: Thresholds
    meta: dict[str, Any] = field(default_factory=dict)
    #: Overrides from settings (cdhf.stage1Threshold / stage2Threshold).
    stage1_override: float | None = None
    stage2_override: float | None = None

    @classmethod
    def load(cls, path: str | Path) -> Cascade:
        import lightgbm as lgb

        p = Path(path).expanduser()
        try:
            meta = json.loads((p / "cascade.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CdhfError(f"{p}: not a cascade model folder (cascade.json: {exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
            raise CdhfError(
                f"{p}: unsupported cascade format {meta.get('format') if isinstance(meta, dict) else meta!r}"
            )
        if meta.get("features_version") != F.FEATURES_VERSION:
            raise CdhfError(
                f"{p}: trained on features version {meta.get('features_version')}, this tactful computes {F.FEATURES_VERSION}; retrain"
            )
        try:
            s1 = tuple(str(x) for x in meta["stage1_features"])
            s2 = tuple(str(x) for x in meta["stage2_features"])
            unknown = [x for x in s2 if x not in F.STAGE2_FEATURES]
            if unknown:
                raise CdhfError(f"{p}: unknown features {unknown}")
            th = Thresholds(**{k: float(v) for k, v in meta["thresholds"].items()})
            m1 = lgb.Booster(model_file=str(p / "stage1.txt"))
            m2 = lgb.Booster(model_file=str(p / "stage2.txt"))
        except CdhfError:
            raise
        except Exception as exc:
            raise CdhfError(f"{p}: cannot load the cascade: {exc}") from exc
        if m1.num_feature() != len(s1) or m2.num_feature() != len(s2):
            raise CdhfError(f"{p}: model files do not match the feature lists in cascade.json")
        return cls(p, m1, m2, s1, s2, th, meta)

    def p_stage1(self, feats: Mapping[str, Any]) -> float:
        x = np.array([F.vector(feats, self.stage1_features)], dtype=float)
        return float(self.stage1_model.predict(x, num_threads=1)[0])

    def p_stage2(self, feats: Mapping[str, Any]) -> float:
        x = np.array([F.vector(feats, self.stage2_features)], dtype=float)
        return float(self.stage2_model.predict(x, num_threads=1)[0])

    def stage1(self, feats: Mapping[str, Any]) -> Decision:
        """Before generation: skip (show=False) or go on; ``deferred`` when stage 2 must judge."""
        p = self.p_stage1(feats)
        if self.stage1_override is not None:
            # An explicit threshold: stage 1 skips every request at or above it, whatever its entropy.
            if p >= self.stage1_override:
                return Decision(show=False, p_reject=p, stage=1)
            return Decision(show=True, p_reject=p, stage=1, deferred=True)
        if entropy(p) < self.thresholds.entropy:
            return Decision(show=p < self.thresholds.stage1, p_reject=p, stage=1, deferred=False)
        return Decision(show=True, p_reject=p, stage=1, deferred=True)

    def stage2(self, feats: Mapping[str, Any], stage1: Decision) -> Decision:
        """After generation: hide (show=False) or show. Without an override, only suggestions
        stage 1 deferred are judged; with ``stage2_override`` every generated one is."""
        if self.stage2_override is None and not stage1.deferred:
            return Decision(show=True, p_reject=None, stage=0)
        p = self.p_stage2(feats)
        t = self.thresholds.stage2 if self.stage2_override is None else self.stage2_override
        return Decision(show=p < t, p_reject=p, stage=2)


def default_model_dir() -> Path:
    from tactful.paths import repo_models_dir

    return repo_models_dir() / "cdhf-default"


def user_model_dir(data_dir: str | None = None) -> Path:
    from tactful.paths import data_dir as _dd

    return _dd(data_dir) / "models" / "cdhf-user"


def own_model_ready(path: Path) -> bool:
    """Whether a user-trained folder was trained on enough decisions to replace the default."""
    try:
        meta = json.loads((path / "cascade.json").read_text(encoding="utf-8"))
        return int(meta["metrics"]["decisions"]) >= OWN_LOG_MIN_DECISIONS
    except (OSError, ValueError, KeyError, TypeError):
        return False


def resolve_model_dir(model_dir: str | None, data_dir: str | None = None) -> Path:
    """The setting's folder; else the user's own trained model once it was trained on at least
    ``OWN_LOG_MIN_DECISIONS`` decisions; else the shipped default."""
    if model_dir:
        return Path(model_dir).expanduser()
    own = user_model_dir(data_dir)
    if own_model_ready(own):
        return own
    return default_model_dir()


# --- CLI ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``tactful train --log LOG --out DIR``."""
    ap = argparse.ArgumentParser(
        prog="tactful train", description="Train the CDHF show/hide cascade from a feedback log."
    )
    ap.add_argument(
        "--log",
        help="feedback log (default: the user's own, feedback.sqlite3 in the data directory)",
    )
    ap.add_argument(
        "--out", help="model folder to write (default: models/cdhf-user in the data directory)"
    )
    ap.add_argument(
        "--target",
        type=float,
        default=DEFAULT_TARGET,
        help="accuracy when hiding to keep (default 0.95)",
    )
    ap.add_argument(
        "--lam",
        type=float,
        default=DEFAULT_LAMBDA,
        help="weight of model calls against hiding (default 0.5)",
    )
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--no-curve", action="store_true", help="skip the hiding-rate curve (faster)")
    ap.add_argument(
        "--no-telemetry",
        action="store_true",
        help="leave the telemetry features out of both stages (the shipped CUPS model does)",
    )
    args = ap.parse_args(list(argv) if argv is not None else None)
    from tactful.feedback.store import FeedbackError, default_log_path

    log_path = Path(args.log).expanduser() if args.log else default_log_path()
    out = Path(args.out).expanduser() if args.out else user_model_dir()
    if not 0.5 <= args.target < 1.0:
        print("tactful train: --target must be in [0.5, 1)", file=sys.stderr)
        return 2
    cmd = "tactful train " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        res = train(
            log_path,
            out,
            args.target,
            args.lam,
            args.folds,
            curve=not args.no_curve,
            source=args.log and Path(args.log).name,
            command=cmd,
            telemetry=not args.no_telemetry,
        )
    except (CdhfError, FeedbackError) as exc:
        print(f"tactful train: {exc}", file=sys.stderr)
        return 1
    m = res.metrics
    ho = m["held_out"]["pooled"]
    print(
        json.dumps(
            {
                "out": str(res.out),
                "decisions": m["decisions"],
                "stage1_auc": round(m["stage1_auc"], 4),
                "stage2_auc": round(m["stage2_auc"], 4),
                "held_out": {k: round(v, 4) for k, v in ho.items()},
                "held_out_ci95": {
                    k: None if v is None else [round(x, 4) for x in v]
                    for k, v in (m["held_out"].get("ci95") or {}).items()
                },
                "thresholds": asdict(res.thresholds),
                "seconds": m["seconds"],
            },
            indent=2,
        )
    )
    return 0
