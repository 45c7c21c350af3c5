"""The cascade's model card and the headline ``tactful train`` prints (what a new user should
expect, with intervals, then the verdict). Training only."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tactful.cascade import features as F

#: The held-out hiding figures, as (numerator, denominator) of pooled counts.
HIDING_RATIOS: dict[str, tuple[str, str]] = {
    "hidden": ("hidden", "n"),
    "accuracy_when_hiding": ("correct", "hidden"),
    "rejected_hidden": ("correct", "rejected"),
}


def _pct(x: Any) -> str:
    return (
        "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:.1f}%"
    )


def _ci(iv: Any) -> str:
    if not iv or any(v is None for v in iv):
        return "n/a"
    return f"{_pct(iv[0])}–{_pct(iv[1])}"


def headline(meta: Mapping[str, Any]) -> list[str]:
    """What a new user should expect, with intervals (the model card's and the command's lead)."""
    m = meta["metrics"]
    ho, ci = m["held_out"]["pooled"], m["held_out"].get("ci95") or {}
    who = "a new user" if m["held_out_by"] == "user" else f"a held-out {m['held_out_by']}"
    return [
        f"What {who} should expect (thresholds fitted without them, {m['held_out_by']}s held out): "
        f"hides {_pct(ho['hidden'])} of suggestions [{_ci(ci.get('hidden'))}], "
        f"accuracy when hiding {_pct(ho['accuracy_when_hiding'])} [{_ci(ci.get('accuracy_when_hiding'))}] "
        f"({int(ho['correct_count'])} of {int(ho['hidden_count'])} hidden were rejected; "
        f"{_pct(ho['rejected_hidden'])} of rejected suggestions hidden). "
        "Brackets: 95% intervals resampling held-out groups.",
        f"Verdict at target {meta['target']:.0%}: {meta['verdict']}.",
    ]


def model_card(meta: Mapping[str, Any], m2: Any | None = None) -> str:
    """A Markdown model card: the held-out figure first, then data, features, thresholds."""
    m, th, tr = meta["metrics"], meta["thresholds"], meta["trained"]
    tele = any(f in F.TELEMETRY_FEATURES for f in meta["stage1_features"])
    lines = ["# CDHF cascade model card", "", *headline(meta), ""]
    lines += [
        f"Trained {tr['at']} from {', '.join(f'`{x}`' for x in tr['logs'])}"
        + (f" with `{tr['command']}`." if tr.get("command") else "."),
        "",
        "## Data",
        f"- {m['decisions']} shown suggestions with an accept/reject outcome ({_pct(m['rejected_share'])} rejected), "
        f"{m['users']} users, {m['sessions']} sessions.",
        f"- Evaluation holds out whole {m['held_out_by']}s: GroupKFold with {m['folds']} folds.",
        "",
        "## Models",
        f"- Features version {meta['features_version']} (`tactful.cascade.features`; "
        "a tactful that computes another version refuses this model).",
        f"- Stage 1: LightGBM, {len(meta['stage1_features'])} "
        + ("context and telemetry" if tele else "context (telemetry left out)")
        + " features: "
        + ", ".join(f"`{f}`" for f in meta["stage1_features"]),
        f"- Stage 2: stage 1's features plus {len(meta['stage2_features']) - len(meta['stage1_features'])} suggestion features.",
        f"- Stage 1 AUC {m['stage1_auc'] or float('nan'):.3f}, stage 2 AUC {m['stage2_auc'] or float('nan'):.3f} (out of fold).",
    ]
    if tele:
        lines.append(
            "- Risk: telemetry features (opt-in) did not transfer to unseen users in CUPS "
            "(docs/cdhf.md); the held-out figure above is the one to trust."
        )
    if tr.get("personal"):
        lines.append(
            "- Personal model (--personal): evaluated on this person's held-out time; it says nothing about other people."
        )
    lines += [
        "",
        f"## Thresholds (fitted on all out-of-fold predictions, {meta['bound_confidence']:.0%} Clopper–Pearson lower bound ≥ target)",
        f"- Stage 1 decides alone when its entropy < {th['entropy']:.4f} bits and skips generation when P(reject) >= {th['stage1']:.4f}.",
        f"- Stage 2 hides when P(reject) >= {th['stage2']:.4f}.",
        "",
    ]
    lines += _curve_lines(m)
    lines += _importance_lines(m2)
    return "\n".join(lines)


def _curve_lines(m: Mapping[str, Any]) -> list[str]:
    if not m.get("curve"):
        return []
    lines = [
        "## Hiding rate against accuracy when hiding (held out, bound-fitted thresholds)",
        "",
        "| target | stage-1 share | hidden | accuracy when hiding | rejected hidden | decided by stage 1 |",
        "|---|---|---|---|---|---|",
    ]
    for r in m["curve"]:
        share = "fitted" if r["stage1_share"] is None else f"{r['stage1_share']:.2f}"
        rci = r.get("ci95") or {}
        cells = [_pct(r[k]) + (f" [{_ci(rci[k])}]" if rci.get(k) else "") for k in HIDING_RATIOS]
        lines.append(
            f"| {r['target']:.2f} | {share} | {' | '.join(cells)} | {_pct(r['decided_by_stage1'])} |"
        )
    return [*lines, ""]


def _importance_lines(m2: Any | None) -> list[str]:
    if m2 is None:
        return []
    gains = m2.feature_importance(importance_type="gain")
    top = sorted(zip(m2.feature_name(), gains, strict=False), key=lambda x: -x[1])[:10]
    return ["## Stage 2 feature importance (gain, top 10)", ""] + [
        f"- `{n}`: {g:.1f}" for n, g in top
    ]
