"""The self-contained HTML replay report: tables and inline SVG plots, no script, no network.

:func:`render` turns a :func:`tactful.replay.report.build_report` dict into one HTML page with

* the per-policy table (with 95% bootstrap intervals over users),
* a line plot of hiding rate vs accuracy when hiding as each model policy's stage-2 threshold
  moves (``svg#sweep``), and
* per-user bars of the hiding rate and accepted-lost share per policy (``svg#users``).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}%"


def _num(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def sweep_svg(policies: Mapping[str, Any], w: int = 560, h: int = 360) -> str:
    ml, mr, mt, mb = 56, 150, 16, 44
    pw, ph = w - ml - mr, h - mt - mb
    parts = [
        f'<svg id="sweep" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">',
        f'<title>Hiding rate vs accuracy when hiding</title><rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
    ]
    for k in range(6):
        f = k / 5
        x, y = ml + f * pw, mt + ph - f * ph
        parts.append(
            f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{mt + ph}" stroke="#ddd"/>'
            f'<text x="{x:.1f}" y="{mt + ph + 16}" font-size="11" text-anchor="middle">{int(100 * f)}%</text>'
            f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + pw}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{ml - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{int(100 * f)}%</text>'
        )
    parts.append(
        f'<text x="{ml + pw / 2}" y="{h - 6}" font-size="12" text-anchor="middle">share of decisions hidden</text>'
        f'<text x="14" y="{mt + ph / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 14 {mt + ph / 2})">accuracy when hiding</text>'
    )
    for i, (name, pol) in enumerate(policies.items()):
        pts = [
            (r["hidden_rate"], r["accuracy_when_hiding"])
            for r in pol.get("sweep_stage2") or []
            if r.get("accuracy_when_hiding") is not None
        ]
        color = COLORS[i % len(COLORS)]
        if pts:
            path = " ".join(f"{ml + x * pw:.1f},{mt + ph - y * ph:.1f}" for x, y in sorted(pts))
            parts.append(
                f'<polyline class="curve" data-policy="{_e(name)}" points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        hr, acc = pol.get("hidden_rate"), pol.get("accuracy_when_hiding")
        if hr is not None and acc is not None:
            parts.append(
                f'<circle class="operating-point" data-policy="{_e(name)}" cx="{ml + hr * pw:.1f}" cy="{mt + ph - acc * ph:.1f}" r="5" fill="{color}" stroke="#000"/>'
            )
        parts.append(
            f'<rect x="{ml + pw + 12}" y="{mt + 8 + 18 * i}" width="12" height="12" fill="{color}"/>'
            f'<text x="{ml + pw + 30}" y="{mt + 18 + 18 * i}" font-size="12">{_e(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def users_svg(policies: Mapping[str, Any], users: Sequence[str], w: int = 760) -> str:
    names = list(policies)
    bar_h, gap = 7, 8
    group = max(1, len(names)) * bar_h + gap
    ml, mt, mr = 110, 24, 20
    h = mt + group * max(1, len(users)) + 30
    pw = w - ml - mr
    parts = [
        f'<svg id="users" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">',
        "<title>Hiding rate per user and policy</title>",
    ]
    for k in range(6):
        x = ml + k / 5 * pw
        parts.append(
            f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{h - 30}" stroke="#ddd"/>'
            f'<text x="{x:.1f}" y="{h - 14}" font-size="11" text-anchor="middle">{20 * k}%</text>'
        )
    for j, name in enumerate(names):
        parts.append(
            f'<rect x="{ml + 140 * j}" y="4" width="10" height="10" fill="{COLORS[j % len(COLORS)]}"/>'
            f'<text x="{ml + 140 * j + 14}" y="13" font-size="11">{_e(name)}</text>'
        )
    for ui, user in enumerate(users):
        y0 = mt + ui * group
        parts.append(
            f'<text x="{ml - 6}" y="{y0 + group / 2 + 3:.1f}" font-size="11" text-anchor="end">{_e(user)}</text>'
        )
        for j, name in enumerate(names):
            pu = (policies[name].get("per_user") or {}).get(user) or {}
            rate = pu.get("hidden_rate") or 0.0
            title = f"{name} / {user}: hidden {pu.get('hidden', 0)} of {pu.get('decisions', 0)}, accepted lost {pu.get('accepted_hidden', 0)}"
            parts.append(
                f'<rect class="bar" x="{ml}" y="{y0 + j * bar_h}" width="{max(rate * pw, 0.5):.1f}" height="{bar_h - 1}" fill="{COLORS[j % len(COLORS)]}"><title>{_e(title)}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)


ROWS = (
    ("decisions", "decisions", _num),
    ("shown", "shown", _num),
    ("hidden", "hidden", _num),
    ("rejected suggestions hidden", "rejected_hidden", _num),
    ("accepted suggestions lost", "accepted_hidden", _num),
    ("skipped before generation", "skipped_before_generation", _num),
    ("model seconds saved", "model_seconds_saved", _num),
    ("hiding rate", "hidden_rate", _pct),
    ("acceptance rate among shown", "acceptance_rate_shown", _pct),
    ("accuracy when hiding", "accuracy_when_hiding", _pct),
    ("AUC stage 1", "auc_stage1", _num),
    ("AUC stage 2", "auc_stage2", _num),
)


def render(report: Mapping[str, Any]) -> str:
    pols: Mapping[str, Any] = report["policies"]
    names = list(pols)
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    body = []
    for label, key, f in ROWS:
        body.append(
            f"<tr><th>{_e(label)}</th>"
            + "".join(f"<td>{_e(f(pols[n].get(key)))}</td>" for n in names)
            + "</tr>"
        )
    for key in ("hidden_rate", "accuracy_when_hiding", "accepted_lost_share"):
        cells = []
        for n in names:
            ci = (pols[n].get("ci95_over_users") or {}).get(key)
            cells.append("-" if not ci else f"{_pct(ci[0])} – {_pct(ci[1])}")
        body.append(
            f"<tr><th>{_e(key.replace('_', ' '))} (95% CI over users)</th>"
            + "".join(f"<td>{_e(c)}</td>" for c in cells)
            + "</tr>"
        )
    problems = report.get("problems") or []
    prob_html = ""
    if problems:
        items = "".join(f"<li>{_e(p)}</li>" for p in problems[:200])
        prob_html = f"<h2>Skipped log lines ({len(problems)})</h2><ul>{items}</ul>"
    regen = report.get("regenerate")
    regen_html = ""
    if regen:
        regen_html = (
            "<h2>Regenerated suggestions</h2><table><tr><th></th><th>n</th><th>exact match</th><th>edit similarity</th></tr>"
            + "".join(
                f"<tr><th>vs {k[3:]}</th><td>{regen[k]['n']}</td><td>{_pct(regen[k]['exact_match'])}</td><td>{_num(regen[k]['edit_similarity'])}</td></tr>"
                for k in ("vs_shown", "vs_accepted", "vs_rejected")
            )
            + f"</table><p>{regen['without_context']} shown suggestions had no logged context.</p>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tactful replay report</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{text-align:left;background:#f4f4f4}}</style>
</head><body>
<h1>tactful replay report</h1>
<p>Log: <code>{_e(report.get("log", ""))}</code> ({_e(report.get("format", ""))}) — {report.get("requests", 0)} requests, {report.get("decisions", 0)} decisions (shown suggestions with an accept or reject), {len(report.get("users", []))} users.</p>
<h2>Policies</h2>
<table><tr><th></th>{head}</tr>{"".join(body)}</table>
<h2>Hiding rate vs accuracy when hiding</h2>
<p>Each line moves one model's stage-2 threshold from 0 to 1 over all decisions; dots mark the policy as configured.</p>
{sweep_svg(pols)}
<h2>Hiding rate per user</h2>
{users_svg(pols, list(report.get("users", [])))}
{regen_html}{prob_html}
</body></html>
"""
