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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
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
) -> tuple[str, int]:
    """A legend of ``(series, label, swatch svg)``, one a row from (x0, y0); returns svg, height."""
    parts = ['<g class="legend">']
    for k, (series, label, swatch) in enumerate(entries):
        parts.append(
            f'<g class="legend-entry" data-series="{esc(series)}" transform="translate({x0:.0f},{y0 + 20 * k + 8:.0f})">'
            f'{swatch}<text x="26" y="0" font-size="{FONT}" dominant-baseline="central">{esc(label)}</text></g>'
        )
    parts.append("</g>")
    return "".join(parts), 20 * len(entries)


def _colors(policies: Mapping[str, Any]) -> dict[str, str]:
    """Each policy's colour, by its place in the report (the same in every plot)."""
    return {name: COLORS[i % len(COLORS)] for i, name in enumerate(policies)}


@dataclass(frozen=True)
class _Frame:
    """The plot area in px (``left``, ``top``, ``width``, ``height``) and the data ranges it
    shows along x (``x0``..``x1``) and y (``y0``..``y1``, drawn upwards)."""

    left: int
    top: int
    width: int
    height: int
    x0: float
    x1: float
    y0: float = 0.0
    y1: float = 1.0

    def x(self, v: float) -> float:
        return self.left + (v - self.x0) / (self.x1 - self.x0) * self.width

    def y(self, v: float) -> float:
        return self.top + self.height - (v - self.y0) / (self.y1 - self.y0) * self.height


def _tick_values(lo: float, hi: float, step: float) -> Iterator[float]:
    """``lo``, ``lo + step``, ... up to ``hi`` (with a little slack for rounding)."""
    k = 0
    while lo + k * step <= hi + 1e-9:
        yield lo + k * step
        k += 1


def _x_grid(f: _Frame, step: float) -> list[str]:
    """Vertical grid lines with their tick labels under the plot, one per x step."""
    bottom = f.top + f.height
    return [
        f'<line x1="{f.x(v):.1f}" y1="{f.top}" x2="{f.x(v):.1f}" y2="{bottom}" stroke="#e2e2e2"/>'
        f'<text class="tick" x="{f.x(v):.1f}" y="{bottom + 17}" font-size="{FONT}" text-anchor="middle">{_tick_label(v, step)}</text>'
        for v in _tick_values(f.x0, f.x1, step)
    ]


def _y_grid(f: _Frame, step: float) -> list[str]:
    """Horizontal grid lines with their tick labels left of the plot, one per y step."""
    return [
        f'<line x1="{f.left}" y1="{f.y(v):.1f}" x2="{f.left + f.width}" y2="{f.y(v):.1f}" stroke="#e2e2e2"/>'
        f'<text class="tick" x="{f.left - 6}" y="{f.y(v) + 4:.1f}" font-size="{FONT}" text-anchor="end">{_tick_label(v, step)}</text>'
        for v in _tick_values(f.y0, f.y1, step)
    ]


# --- the threshold sweep ----------------------------------------------------------------------

#: One line of the sweep: the policies drawn by it (the one whose sweep is drawn first) and its
#: (hidden rate, accuracy when hiding) points.
Curve = tuple[list[str], list[tuple[float, float]]]


def _sweep_curves(policies: Mapping[str, Any]) -> list[Curve]:
    """One line per model: policies on the same model folder (default, threshold-T) share it.
    Their sweeps differ only by the replayed history features; a fixed-threshold policy's is the
    pure stage-2 sweep, so it is the one drawn."""
    groups: dict[str, list[str]] = {}
    for name, pol in policies.items():
        if any(r.get("accuracy_when_hiding") is not None for r in pol.get("sweep_stage2") or []):
            key = str(about_of(pol).get("model") or f"policy:{name}")
            groups.setdefault(key, []).append(name)
    curves: list[Curve] = []
    for names in groups.values():
        rep = next((n for n in names if about_of(policies[n]).get("kind") == "threshold"), names[0])
        pts = sorted(
            (float(r["hidden_rate"]), float(r["accuracy_when_hiding"]))
            for r in policies[rep].get("sweep_stage2") or []
            if r.get("accuracy_when_hiding") is not None
        )
        curves.append(([rep] + [n for n in names if n != rep], pts))
    return curves


def _operating_points(policies: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """(policy, hidden rate, accuracy when hiding) of each policy that hides, as configured."""
    return [
        (name, float(pol["hidden_rate"]), float(pol["accuracy_when_hiding"]))
        for name, pol in policies.items()
        if pol.get("hidden") and pol.get("accuracy_when_hiding") is not None
    ]


def _accuracy_targets(policies: Mapping[str, Any]) -> list[float]:
    """The distinct accuracy targets (strictly between 0 and 1) the policies' models have."""
    return sorted(
        {
            float(t)
            for p in policies.values()
            if isinstance(t := about_of(p).get("target"), int | float) and 0 < t < 1
        }
    )


def _sweep_legend(
    policies: Mapping[str, Any],
    curves: Sequence[Curve],
    dots: Sequence[tuple[str, float, float]],
    targets: Sequence[float],
    color: Mapping[str, str],
) -> list[tuple[str, str, str]]:
    """The sweep's legend entries: its lines, then its dots, then its target lines."""
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
    return entries


def _threshold_marks(f: _Frame, sweep: Sequence[Mapping[str, Any]], color: str) -> list[str]:
    """Where the thresholds 0.9, 0.8, ... fall on a sweep line (to read off the one that gives an
    accuracy), leaving out a mark whose label would overlap the previous one."""
    parts = []
    last_x = -1e9
    for r in sorted(sweep, key=lambda r: -float(r["threshold"])):
        t = float(r["threshold"])
        if r.get("accuracy_when_hiding") is None or round(10 * t) != 10 * t or not 0 < t < 1:
            continue
        x, y = f.x(float(r["hidden_rate"])), f.y(float(r["accuracy_when_hiding"]))
        if x - last_x < 34:  # labels would overlap
            continue
        last_x = x
        parts.append(
            f'<circle class="threshold-mark" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#fff" stroke="{color}" stroke-width="1.5"/>'
            f'<text class="threshold-label" x="{x:.1f}" y="{y + 17:.1f}" font-size="12" text-anchor="middle" fill="#333">{t:.1f}</text>'
        )
    return parts


def _sweep_marks(
    f: _Frame,
    policies: Mapping[str, Any],
    curves: Sequence[Curve],
    dots: Sequence[tuple[str, float, float]],
    targets: Sequence[float],
    color: Mapping[str, str],
) -> list[str]:
    """What the sweep draws on its axes: target lines, then each line with its threshold marks,
    then the operating points."""
    right = f.left + f.width
    parts = [
        f'<line class="target" data-series="target:{t:g}" x1="{f.left}" y1="{f.y(t):.1f}" x2="{right}" y2="{f.y(t):.1f}" stroke="#555" stroke-dasharray="4 3"/>'
        for t in targets
    ]
    for names, pts in curves:
        path = " ".join(f"{f.x(x):.1f},{f.y(y):.1f}" for x, y in pts)
        parts.append(
            f'<polyline class="curve" data-series="curve:{esc(names[0])}" data-policy="{esc(", ".join(names))}" points="{path}" fill="none" stroke="{color[names[0]]}" stroke-width="2.5"/>'
        )
        sweep = policies[names[0]].get("sweep_stage2") or []
        parts += _threshold_marks(f, sweep, color[names[0]])
    for name, x, y in dots:
        parts.append(
            f'<circle class="operating-point" data-series="point:{esc(name)}" data-policy="{esc(name)}" cx="{f.x(x):.1f}" cy="{f.y(y):.1f}" r="5.5" fill="{color[name]}" stroke="#000">'
            f"<title>{esc(name)}: hides {pct(x)}, accuracy when hiding {pct(y)}</title></circle>"
        )
    return parts


def sweep_svg(policies: Mapping[str, Any], w: int = PLOT_WIDTH, plot_h: int = 320) -> str:
    """Hiding rate (x) vs accuracy when hiding (y) as each distinct stage-2 model's threshold moves
    from 0 to 1 (one line per model, policies sharing a model share it), a dot per policy's own
    operating point, and the accuracy target when the models have one."""
    curves = _sweep_curves(policies)
    dots = _operating_points(policies)
    targets = _accuracy_targets(policies)
    color = _colors(policies)
    ml, mr, mb = 70, 24, 56
    legend, lh = _legend(_sweep_legend(policies, curves, dots, targets, color), ml, 36, w - ml - mr)
    mt = 36 + lh + 14
    ys = [y for _n, pts in curves for _x, y in pts] + [y for _n, _x, y in dots] + targets
    xs = [x for _n, pts in curves for x, _y in pts] + [x for _n, x, _y in dots]
    x0, x1, xstep = nice_scale(0.0, max(xs, default=1.0) or 1.0)
    y0, y1, ystep = nice_scale(min(ys, default=0.0), 1.0)
    f = _Frame(ml, mt, w - ml - mr, plot_h, x0, x1, max(0.0, y0), min(1.0, y1))
    pw, ph = f.width, f.height
    parts = [
        _svg_open(
            "sweep",
            w,
            int(mt + ph + mb),
            "Accuracy when hiding against the share hidden",
            "Each line moves one model's stage-2 threshold from 0 to 1 over all decisions; dots mark each policy as configured.",
        ),
        f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
        *_x_grid(f, xstep),
        *_y_grid(f, ystep),
        f'<text class="axis-title" x="{ml + pw / 2:.0f}" y="{mt + ph + 38}" font-size="14" text-anchor="middle">share of decisions hidden</text>'
        f'<text class="axis-title" x="16" y="{mt + ph / 2:.0f}" font-size="14" text-anchor="middle" transform="rotate(-90 16 {mt + ph / 2:.0f})">accuracy when hiding</text>',
        *_sweep_marks(f, policies, curves, dots, targets, color),
        legend,
        "</svg>",
    ]
    return "".join(parts)


# --- per-user bars ----------------------------------------------------------------------------


#: A bar's height and the gap between two users' groups of bars (px).
_BAR_H = 14
_BAR_GAP = 10


def _user_figures(pol: Mapping[str, Any], user: str) -> Mapping[str, Any]:
    """A policy's figures for one user ({} when it has none)."""
    figures: Mapping[str, Any] = (pol.get("per_user") or {}).get(user) or {}
    return figures


def _users_legend(
    policies: Mapping[str, Any],
    names: Sequence[str],
    users: Sequence[str],
    color: Mapping[str, str],
) -> list[tuple[str, str, str]]:
    """One entry per policy drawn, and the accepted-lost part when some bar has one."""
    entries = [
        (
            f"policy:{n}",
            f"{n}: hidden",
            f'<rect x="0" y="-6" width="18" height="12" fill="{color[n]}"/>',
        )
        for n in names
    ]
    if any(
        int(_user_figures(policies[n], u).get("accepted_hidden") or 0) for n in names for u in users
    ):
        entries.append(
            (
                "lost",
                "accepted suggestions lost (part of the bar)",
                f'<rect x="0" y="-6" width="18" height="12" fill="{LOST_COLOR}"/>',
            )
        )
    return entries


def _user_bar(f: _Frame, name: str, user: str, pu: Mapping[str, Any], y: float, color: str) -> str:
    """One policy's bar for one user at height ``y``: the share hidden, its accepted-lost end
    drawn dark, and the share written after it."""
    n = int(pu.get("decisions") or 0)
    hid, lost = int(pu.get("hidden") or 0), int(pu.get("accepted_hidden") or 0)
    rate = hid / n if n else 0.0
    tip = f"{name} / {user}: hidden {hid} of {n}, accepted lost {lost}"
    out = f'<rect class="bar" data-series="policy:{esc(name)}" x="{f.left}" y="{y:.1f}" width="{max(f.x(rate) - f.left, 0.0):.1f}" height="{_BAR_H}" fill="{color}"><title>{esc(tip)}</title></rect>'
    if lost and n:
        lw = lost / n / f.x1 * f.width
        out += f'<rect class="bar-lost" data-series="lost" x="{f.x(rate) - lw:.1f}" y="{y:.1f}" width="{lw:.1f}" height="{_BAR_H}" fill="{LOST_COLOR}"><title>{esc(tip)}</title></rect>'
    return (
        out
        + f'<text class="value" x="{f.x(rate) + 4:.1f}" y="{y + _BAR_H - 3:.1f}" font-size="{FONT}" fill="{"#333" if hid else "#888"}">{pct(rate, 0)}</text>'
    )


def users_svg(policies: Mapping[str, Any], users: Sequence[str], w: int = PLOT_WIDTH) -> str:
    """Per user, one bar per policy that hides anything: the share of that user's decisions
    hidden, its accepted-lost part drawn dark; the x axis fitted to the largest share."""
    names = [n for n, p in policies.items() if int(p.get("hidden") or 0) > 0]
    color = _colors(policies)
    group = max(1, len(names)) * (_BAR_H + 2) + _BAR_GAP
    ml, mr = 150, 70
    pw = w - ml - mr
    legend, lh = _legend(_users_legend(policies, names, users, color), ml, 36, pw)
    mt = 36 + lh + 30
    ph = group * max(1, len(users))
    top = max(
        (
            float(_user_figures(policies[n], u).get("hidden_rate") or 0.0)
            for n in names
            for u in users
        ),
        default=0.0,
    )
    _lo, x1, step = nice_scale(0.0, top or 0.1)
    f = _Frame(ml, mt, pw, ph, 0.0, x1)
    parts = [
        _svg_open(
            "users",
            w,
            int(mt + ph + 56),
            "Share of each user's decisions hidden",
            "One bar per user and policy that hides anything; the dark end is the accepted suggestions lost.",
        ),
        *_x_grid(f, step),
        f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{mt + ph}" stroke="#999"/>'
        f'<text class="axis-title" x="{ml + pw / 2:.0f}" y="{mt + ph + 38}" font-size="14" text-anchor="middle">share of the user\'s decisions hidden</text>'
        f'<text class="axis-title" x="{ml - 8}" y="{mt - 8}" font-size="14" text-anchor="end">user (decisions)</text>',
    ]
    for ui, user in enumerate(users):
        y0 = mt + ui * group + _BAR_GAP / 2
        n_dec = int(_user_figures(policies[names[0]], user).get("decisions") or 0) if names else 0
        parts.append(
            f'<text class="user" x="{ml - 8}" y="{y0 + (group - _BAR_GAP) / 2 + 4:.1f}" font-size="{FONT}" text-anchor="end">{esc(user)} ({n_dec})</text>'
        )
        for j, name in enumerate(names):
            pu = _user_figures(policies[name], user)
            parts.append(_user_bar(f, name, user, pu, y0 + j * (_BAR_H + 2), color[name]))
    parts.append(legend)
    parts.append("</svg>")
    return "".join(parts)
