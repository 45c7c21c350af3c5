"""The replay report's plots as inline SVG (no script, no outside file): hiding rate against
accuracy when hiding as a stage-2 threshold moves (:func:`sweep_svg`) and per-user bars of the
share hidden (:func:`users_svg`), for :mod:`tactful.replay.html`.

Every plot is at least :data:`MIN_WIDTH` px wide (scaled down by the page in a narrower window)
with :data:`FONT` px text, a title, axis titles and axes fitted to the data; its legend lists
exactly the series drawn (``data-series`` on the legend entries and on the marks).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")
LOST_COLOR = "#222222"
FONT = 13
MIN_WIDTH = 640
PLOT_WIDTH = 720


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def pct(v: Any, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * float(v):.{digits}f}%"


def about_of(pol: Mapping[str, Any]) -> Mapping[str, Any]:
    a = pol.get("about")
    return a if isinstance(a, Mapping) else {}


def model_name(pol: Mapping[str, Any]) -> str:
    model = str(about_of(pol).get("model") or "")
    if about_of(pol).get("shipped"):
        return "shipped model"
    return f"model {model.rstrip('/').rsplit('/', 1)[-1]}" if model else "model"


# --- axes and legends -------------------------------------------------------------------------


def nice_scale(lo: float, hi: float, ticks: int = 5) -> tuple[float, float, float]:
    """An axis ``(lo, hi, step)`` covering [lo, hi] with about ``ticks`` round steps."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 0.1
    raw = (hi - lo) / max(ticks, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw - 1e-12)
    return math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step, step


def _tick_label(v: float, step: float) -> str:
    """A percentage with as many decimals as the step needs."""
    ps = 100 * step
    digits = next((d for d in (0, 1, 2) if abs(ps * 10**d - round(ps * 10**d)) < 1e-6), 3)
    return f"{100 * v:.{digits}f}%"


def _svg_open(id_: str, w: int, h: int, title: str, desc: str) -> str:
    return (
        f'<svg id="{id_}" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" font-family="sans-serif" font-size="{FONT}">'
        f"<title>{esc(title)}</title><desc>{esc(desc)}</desc>"
        f'<rect width="{w}" height="{h}" fill="#fff"/>'
        f'<text class="plot-title" x="{w / 2:.0f}" y="20" font-size="16" font-weight="bold" '
        f'text-anchor="middle">{esc(title)}</text>'
    )


def _legend(
    entries: Sequence[tuple[str, str, str]], x0: float, y0: float, w: float
) -> tuple[str, float]:
    """A legend of ``(series, label, swatch svg)``, one a row from (x0, y0); returns svg, height."""
    parts = ['<g class="legend">']
    for k, (series, label, swatch) in enumerate(entries):
        parts.append(
            f'<g class="legend-entry" data-series="{esc(series)}" transform="translate({x0:.0f},{y0 + 20 * k + 8:.0f})">'
            f'{swatch}<text x="26" y="0" font-size="{FONT}" dominant-baseline="central">{esc(label)}</text></g>'
        )
    parts.append("</g>")
    return "".join(parts), 20 * len(entries)


def sweep_svg(policies: Mapping[str, Any], w: int = PLOT_WIDTH, plot_h: int = 320) -> str:
    """Hiding rate (x) vs accuracy when hiding (y) as each distinct stage-2 model's threshold moves
    from 0 to 1 (one line per model, policies sharing a model share it), a dot per policy's own
    operating point, and the accuracy target when the models have one."""
    # One line per model: policies on the same model folder (default, threshold-T) share it. Their
    # sweeps differ only by the replayed history features; a fixed-threshold policy's is the pure
    # stage-2 sweep, so it is the one drawn.
    groups: dict[str, list[str]] = {}
    for name, pol in policies.items():
        if any(r.get("accuracy_when_hiding") is not None for r in pol.get("sweep_stage2") or []):
            key = str(about_of(pol).get("model") or f"policy:{name}")
            groups.setdefault(key, []).append(name)
    curves: list[tuple[list[str], list[tuple[float, float]]]] = []
    for names in groups.values():
        rep = next((n for n in names if about_of(policies[n]).get("kind") == "threshold"), names[0])
        pts = sorted(
            (float(r["hidden_rate"]), float(r["accuracy_when_hiding"]))
            for r in policies[rep].get("sweep_stage2") or []
            if r.get("accuracy_when_hiding") is not None
        )
        curves.append(([rep] + [n for n in names if n != rep], pts))
    dots = [
        (name, float(pol["hidden_rate"]), float(pol["accuracy_when_hiding"]))
        for name, pol in policies.items()
        if pol.get("hidden") and pol.get("accuracy_when_hiding") is not None
    ]
    targets = sorted(
        {
            float(t)
            for p in policies.values()
            if isinstance(t := about_of(p).get("target"), int | float) and 0 < t < 1
        }
    )
    color = {name: COLORS[i % len(COLORS)] for i, name in enumerate(policies)}
    entries: list[tuple[str, str, str]] = []
    for names, _pts in curves:
        c = color[names[0]]
        entries.append(
            (
                f"curve:{names[0]}",
                f"{model_name(policies[names[0]])}: stage-2 threshold 0→1, marks at 0.1 steps (used by {', '.join(names)})",
                f'<line x1="0" y1="0" x2="18" y2="0" stroke="{c}" stroke-width="2.5"/>',
            )
        )
    for name, _x, _y in dots:
        entries.append(
            (
                f"point:{name}",
                f"{name} as configured",
                f'<circle cx="9" cy="0" r="5.5" fill="{color[name]}" stroke="#000"/>',
            )
        )
    for t in targets:
        entries.append(
            (
                f"target:{t:g}",
                f"the cascade's target: {pct(t, 0)} accuracy when hiding",
                '<line x1="0" y1="0" x2="18" y2="0" stroke="#555" stroke-dasharray="4 3"/>',
            )
        )
    ml, mr, mb = 70, 24, 56
    legend, lh = _legend(entries, ml, 36, w - ml - mr)
    mt = 36 + lh + 14
    ph = plot_h
    h = int(mt + ph + mb)
    pw = w - ml - mr
    ys = [y for _n, pts in curves for _x, y in pts] + [y for _n, _x, y in dots] + targets
    xs = [x for _n, pts in curves for x, _y in pts] + [x for _n, x, _y in dots]
    x0, x1, xstep = nice_scale(0.0, max(xs, default=1.0) or 1.0)
    y0, y1, ystep = nice_scale(min(ys, default=0.0), 1.0)
    y0, y1 = max(0.0, y0), min(1.0, y1)

    def X(v: float) -> float:
        return ml + (v - x0) / (x1 - x0) * pw

    def Y(v: float) -> float:
        return mt + ph - (v - y0) / (y1 - y0) * ph

    title = "Accuracy when hiding against the share hidden"
    parts = [
        _svg_open(
            "sweep",
            w,
            h,
            title,
            "Each line moves one model's stage-2 threshold from 0 to 1 over all decisions; dots mark each policy as configured.",
        ),
        f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
    ]
    k = 0
    while x0 + k * xstep <= x1 + 1e-9:
        v = x0 + k * xstep
        parts.append(
            f'<line x1="{X(v):.1f}" y1="{mt}" x2="{X(v):.1f}" y2="{mt + ph}" stroke="#e2e2e2"/>'
            f'<text class="tick" x="{X(v):.1f}" y="{mt + ph + 17}" font-size="{FONT}" text-anchor="middle">{_tick_label(v, xstep)}</text>'
        )
        k += 1
    k = 0
    while y0 + k * ystep <= y1 + 1e-9:
        v = y0 + k * ystep
        parts.append(
            f'<line x1="{ml}" y1="{Y(v):.1f}" x2="{ml + pw}" y2="{Y(v):.1f}" stroke="#e2e2e2"/>'
            f'<text class="tick" x="{ml - 6}" y="{Y(v) + 4:.1f}" font-size="{FONT}" text-anchor="end">{_tick_label(v, ystep)}</text>'
        )
        k += 1
    parts.append(
        f'<text class="axis-title" x="{ml + pw / 2:.0f}" y="{mt + ph + 38}" font-size="14" text-anchor="middle">share of decisions hidden</text>'
        f'<text class="axis-title" x="16" y="{mt + ph / 2:.0f}" font-size="14" text-anchor="middle" transform="rotate(-90 16 {mt + ph / 2:.0f})">accuracy when hiding</text>'
    )
    for t in targets:
        parts.append(
            f'<line class="target" data-series="target:{t:g}" x1="{ml}" y1="{Y(t):.1f}" x2="{ml + pw}" y2="{Y(t):.1f}" stroke="#555" stroke-dasharray="4 3"/>'
        )
    for names, pts in curves:
        path = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
        parts.append(
            f'<polyline class="curve" data-series="curve:{esc(names[0])}" data-policy="{esc(", ".join(names))}" points="{path}" fill="none" stroke="{color[names[0]]}" stroke-width="2.5"/>'
        )
        # Where some thresholds fall on the line, to read off the one that gives an accuracy.
        last_x = -1e9
        for r in sorted(
            policies[names[0]].get("sweep_stage2") or [], key=lambda r: -float(r["threshold"])
        ):
            t = float(r["threshold"])
            if r.get("accuracy_when_hiding") is None or round(10 * t) != 10 * t or not 0 < t < 1:
                continue
            x, y = X(float(r["hidden_rate"])), Y(float(r["accuracy_when_hiding"]))
            if x - last_x < 34:  # labels would overlap
                continue
            last_x = x
            parts.append(
                f'<circle class="threshold-mark" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#fff" stroke="{color[names[0]]}" stroke-width="1.5"/>'
                f'<text class="threshold-label" x="{x:.1f}" y="{y + 17:.1f}" font-size="12" text-anchor="middle" fill="#333">{t:.1f}</text>'
            )
    for name, x, y in dots:
        parts.append(
            f'<circle class="operating-point" data-series="point:{esc(name)}" data-policy="{esc(name)}" cx="{X(x):.1f}" cy="{Y(y):.1f}" r="5.5" fill="{color[name]}" stroke="#000">'
            f"<title>{esc(name)}: hides {pct(x)}, accuracy when hiding {pct(y)}</title></circle>"
        )
    parts.append(legend)
    parts.append("</svg>")
    return "".join(parts)


def users_svg(policies: Mapping[str, Any], users: Sequence[str], w: int = PLOT_WIDTH) -> str:
    """Per user, one bar per policy that hides anything: the share of that user's decisions
    hidden, its accepted-lost part drawn dark; the x axis fitted to the largest share."""
    names = [n for n, p in policies.items() if int(p.get("hidden") or 0) > 0]
    color = {name: COLORS[i % len(COLORS)] for i, name in enumerate(policies)}
    entries = [
        (
            f"policy:{n}",
            f"{n}: hidden",
            f'<rect x="0" y="-6" width="18" height="12" fill="{color[n]}"/>',
        )
        for n in names
    ]
    lost_any = any(
        int(((policies[n].get("per_user") or {}).get(u) or {}).get("accepted_hidden") or 0)
        for n in names
        for u in users
    )
    if lost_any:
        entries.append(
            (
                "lost",
                "accepted suggestions lost (part of the bar)",
                f'<rect x="0" y="-6" width="18" height="12" fill="{LOST_COLOR}"/>',
            )
        )
    bar_h, gap = 14, 10
    group = max(1, len(names)) * (bar_h + 2) + gap
    ml, mr = 150, 70
    pw = w - ml - mr
    legend, lh = _legend(entries, ml, 36, pw)
    mt = 36 + lh + 30
    ph = group * max(1, len(users))
    h = int(mt + ph + 56)
    top = max(
        (
            float(((policies[n].get("per_user") or {}).get(u) or {}).get("hidden_rate") or 0.0)
            for n in names
            for u in users
        ),
        default=0.0,
    )
    _lo, x1, step = nice_scale(0.0, top or 0.1)

    def X(v: float) -> float:
        return ml + v / x1 * pw

    parts = [
        _svg_open(
            "users",
            w,
            h,
            "Share of each user's decisions hidden",
            "One bar per user and policy that hides anything; the dark end is the accepted suggestions lost.",
        )
    ]
    k = 0
    while k * step <= x1 + 1e-9:
        v = k * step
        parts.append(
            f'<line x1="{X(v):.1f}" y1="{mt}" x2="{X(v):.1f}" y2="{mt + ph}" stroke="#e2e2e2"/>'
            f'<text class="tick" x="{X(v):.1f}" y="{mt + ph + 17}" font-size="{FONT}" text-anchor="middle">{_tick_label(v, step)}</text>'
        )
        k += 1
    parts.append(
        f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{mt + ph}" stroke="#999"/>'
        f'<text class="axis-title" x="{ml + pw / 2:.0f}" y="{mt + ph + 38}" font-size="14" text-anchor="middle">share of the user\'s decisions hidden</text>'
        f'<text class="axis-title" x="{ml - 8}" y="{mt - 8}" font-size="14" text-anchor="end">user (decisions)</text>'
    )
    for ui, user in enumerate(users):
        y0 = mt + ui * group + gap / 2
        n_dec = (
            int(((policies[names[0]].get("per_user") or {}).get(user) or {}).get("decisions") or 0)
            if names
            else 0
        )
        parts.append(
            f'<text class="user" x="{ml - 8}" y="{y0 + (group - gap) / 2 + 4:.1f}" font-size="{FONT}" text-anchor="end">{esc(user)} ({n_dec})</text>'
        )
        for j, name in enumerate(names):
            pu = (policies[name].get("per_user") or {}).get(user) or {}
            n = int(pu.get("decisions") or 0)
            hid, lost = int(pu.get("hidden") or 0), int(pu.get("accepted_hidden") or 0)
            rate = hid / n if n else 0.0
            y = y0 + j * (bar_h + 2)
            tip = f"{name} / {user}: hidden {hid} of {n}, accepted lost {lost}"
            parts.append(
                f'<rect class="bar" data-series="policy:{esc(name)}" x="{ml}" y="{y:.1f}" width="{max(X(rate) - ml, 0.0):.1f}" height="{bar_h}" fill="{color[name]}"><title>{esc(tip)}</title></rect>'
            )
            if lost and n:
                lw = lost / n / x1 * pw
                parts.append(
                    f'<rect class="bar-lost" data-series="lost" x="{X(rate) - lw:.1f}" y="{y:.1f}" width="{lw:.1f}" height="{bar_h}" fill="{LOST_COLOR}"><title>{esc(tip)}</title></rect>'
                )
            parts.append(
                f'<text class="value" x="{X(rate) + 4:.1f}" y="{y + bar_h - 3:.1f}" font-size="{FONT}" fill="{"#333" if hid else "#888"}">{pct(rate, 0)}</text>'
            )
    parts.append(legend)
    parts.append("</svg>")
    return "".join(parts)
