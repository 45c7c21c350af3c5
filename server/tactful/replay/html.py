"""The self-contained HTML replay report: plain text, tables and inline SVG plots; no script, no
network, no external file, so that it reads the same in a browser and in VS Code's webview.

:func:`render` turns a :func:`tactful.replay.report.build_report` dict into one page with

* a plain-language summary per policy (:func:`summary`): what it would have hidden, how much of
  that the model was never asked for (stage 1), how many accepted suggestions would have been
  lost, each with its 95% bootstrap interval over users;
* warnings (:func:`warnings`): a small log, figures that are in-sample for a policy's model,
  figures the log cannot give;
* the per-policy table, each row explained;
* the plots of :mod:`tactful.replay.plots`: accuracy when hiding against the share hidden as each
  model's stage-2 threshold moves (``svg#sweep``) and per-user bars of the share hidden
  (``svg#users``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from tactful.replay.plots import about_of as _about
from tactful.replay.plots import esc as _e
from tactful.replay.plots import model_name as _model_name
from tactful.replay.plots import pct as _pct
from tactful.replay.plots import sweep_svg, users_svg

#: Below this many decisions the report warns that its rates and AUCs are rough.
SMALL_LOG = 200
#: Below this many users the intervals over users are themselves unreliable.
FEW_USERS = 5


def _num(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _ci(ci: Any) -> str:
    """``29.3–43.8%`` for a [lo, hi] pair of shares, '' when there is none."""
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}%"


def _ci_of(pol: Mapping[str, Any], key: str) -> str:
    return _ci((pol.get("ci95_over_users") or {}).get(key))


def _rich(text: str) -> str:
    """Escaped text with ``**bold**`` spans."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", _e(text))


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --- text --------------------------------------------------------------------------------------


def describe(name: str, pol: Mapping[str, Any]) -> str:
    """One phrase: what the policy is."""
    a = _about(pol)
    kind = a.get("kind")
    if name == "show-all" or kind == "baseline":
        return "shows every suggestion, as the log recorded them (the baseline)"
    if kind == "threshold":
        return (
            f"the {_model_name(pol)}'s stage 2 alone, hiding a generated suggestion when its P(reject) ≥ "
            f"{a.get('stage2_threshold'):g}; it never skips a model call"
        )
    if kind == "cascade":
        where = "the shipped cascade" if a.get("shipped") else f"the cascade in {a.get('model')}"
        return f"{where} with its fitted thresholds (stage 1 before generation, stage 2 after)"
    return "a show/hide policy"


def _capitalized(text: str) -> str:
    return f"{text[0].upper()}{text[1:]}"


def summary(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Per policy ``(name, sentences)``: the result in plain language, with intervals."""
    pols: Mapping[str, Any] = report["policies"]
    base = pols.get("show-all")
    out: list[tuple[str, str]] = []
    for name, pol in pols.items():
        if int(pol.get("hidden") or 0) == 0:
            out.append((name, _hides_nothing(name, pol)))
        else:
            out.append((name, _hides_some(name, pol, base)))
    return out


def _hides_nothing(name: str, pol: Mapping[str, Any]) -> str:
    """The summary of a policy that hides nothing: the baseline's counts, or why it hid nothing."""
    what = _capitalized(describe(name, pol))
    if _about(pol).get("kind") == "baseline" or name == "show-all":
        n, acc = int(pol.get("decisions") or 0), int(pol.get("accepted") or 0)
        return (
            f"{what}: {n} decisions, {acc} accepted "
            f"({_pct(pol.get('acceptance_rate_shown'))} of those shown)."
        )
    text = f"{what}. It would have hidden nothing on this log: every suggestion shown, as with show-all."
    verdict = _about(pol).get("verdict")
    if verdict:
        text += f" Its training says why: {verdict}."
    return text


def _where_hidden(pol: Mapping[str, Any], hidden: int, skipped: int) -> str:
    """How the hidden suggestions divide between before and after generation ('' when the
    policy is no cascade and skips nothing)."""
    if skipped == hidden:
        return ", all of them skipped before generation (the model would not even have been called)"
    if skipped:
        return f", {skipped} of them skipped before generation (no model call) and {hidden - skipped} hidden after generation"
    if _about(pol).get("kind") in ("threshold", "cascade"):
        return ", all after generation (the model would still have run)"
    return ""


def _hides_some(name: str, pol: Mapping[str, Any], base: Mapping[str, Any] | None) -> str:
    """The summary of a policy that hides: how many, how accurately, the accepted ones lost and
    what is still shown."""
    n = int(pol.get("decisions") or 0)
    hidden = int(pol.get("hidden") or 0)
    acc = int(pol.get("accepted") or 0)
    lost = int(pol.get("accepted_hidden") or 0)
    rej_h = int(pol.get("rejected_hidden") or 0)
    skipped = int(pol.get("skipped_before_generation") or 0)
    parts = [f"{_capitalized(describe(name, pol))}."]
    ci = _ci_of(pol, "hidden_rate")
    parts.append(
        f"It would have hidden **{hidden} of {n} suggestions** ({_pct(pol.get('hidden_rate'))}"
        + (f"; interval {ci}" if ci else "")
        + ")"
        + _where_hidden(pol, hidden, skipped)
        + "."
    )
    ci = _ci_of(pol, "accuracy_when_hiding")
    parts.append(
        f"{'All' if rej_h == hidden else rej_h} of the hidden ones had been rejected anyway: accuracy when hiding "
        f"{_pct(pol.get('accuracy_when_hiding'))}" + (f" (interval {ci})" if ci else "") + "."
    )
    ci = _ci_of(pol, "accepted_lost_share")
    parts.append(
        f"**{lost} of the {acc} accepted suggestions would have been lost** "
        f"({_pct(pol.get('accepted_lost_share'))}" + (f"; interval {ci}" if ci else "") + ")."
    )
    if base is not None and pol.get("acceptance_rate_shown") is not None:
        parts.append(
            f"Of what is still shown, {_pct(pol.get('acceptance_rate_shown'))} would be accepted "
            f"(show-all: {_pct(base.get('acceptance_rate_shown'))})."
        )
    elif hidden == n:
        parts.append("**It would have shown nothing at all.**")
    return " ".join(parts)


def warnings(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(kind, text)`` for what a reader must know before trusting the figures."""
    pols: Mapping[str, Any] = report["policies"]
    out = _size_warnings(int(report.get("decisions") or 0), list(report.get("users") or []))
    out += [("in-sample", text) for text in _in_sample_warnings(pols)]
    if _seconds_row_missing(pols):
        out.append(
            (
                "no-seconds",
                "Model time saved is not shown: this log records no generation times (imported "
                "CUPS events have none), so the time that skipping requests before generation "
                "would save cannot be computed; the table counts the skipped requests instead.",
            )
        )
    problems = report.get("problems") or []
    if problems:
        out.append(
            (
                "skipped-lines",
                f"{_plural(len(problems), 'log line')} could not be read and were skipped (listed at the end).",
            )
        )
    return out


def _size_warnings(n: int, users: Sequence[str]) -> list[tuple[str, str]]:
    """Warnings about a log too small to trust: few decisions, one user or few users."""
    out: list[tuple[str, str]] = []
    if n < SMALL_LOG:
        out.append(
            (
                "small-log",
                f"Small log: {n} decisions (fewer than {SMALL_LOG}). Rates and AUCs computed from "
                "so few are rough; a few decisions either way move them by several points. "
                "Read the intervals, and replay again when the log has grown.",
            )
        )
    if len(users) < 2:
        out.append(
            (
                "one-user",
                "The log holds one user, so no interval over users can be computed; the figures "
                "say nothing about how they vary from person to person.",
            )
        )
    elif len(users) < FEW_USERS:
        out.append(
            (
                "few-users",
                f"Only {len(users)} users: the intervals resample so few people that they "
                "understate how much another group could differ.",
            )
        )
    return out


def _in_sample_warnings(pols: Mapping[str, Any]) -> list[str]:
    """One warning per reason a model has seen this log, naming the policies that use it."""
    in_sample: dict[str, list[str]] = {}
    for name, pol in pols.items():
        why = _about(pol).get("in_sample_why")
        if _about(pol).get("in_sample") and why:
            in_sample.setdefault(str(why), []).append(name)
    return [_in_sample_text(why, names, pols) for why, names in in_sample.items()]


def _in_sample_text(why: str, names: Sequence[str], pols: Mapping[str, Any]) -> str:
    """The in-sample warning: the figures here against those with groups held out in training,
    and what a new user should expect from a cascade's fitted thresholds."""
    pol = pols[names[0]]
    held = _about(pol).get("held_out") or {}
    aucs = [
        f"{k.replace('auc_', '').replace('stage', 'stage ')} {pol.get(k):.2f}"
        for k in ("auc_stage1", "auc_stage2")
        if pol.get(k) is not None
    ]
    text = (
        f"In-sample: the model behind {_and(names)} has seen these decisions — {why}. "
        "Its figures here (marked †) are optimistic"
        + (f": AUC {', '.join(aucs)} here" if aucs else "")
    )
    ho = [
        f"stage {i} {held[k]:.2f}"
        for i, k in ((1, "auc_stage1"), (2, "auc_stage2"))
        if isinstance(held.get(k), int | float)
    ]
    if ho:
        text += f", against {', '.join(ho)} with {held.get('by') or 'group'}s held out"
    if isinstance(held.get("hidden_rate"), int | float) and any(
        _about(pols[x]).get("kind") == "cascade" for x in names
    ):
        text += _held_out_expectation(held)
    return text + ". Replay a log the model was not trained on for a fair figure."


def _held_out_expectation(held: Mapping[str, Any]) -> str:
    """What a new user (or the held-out group) should expect from the fitted thresholds."""
    who = held.get("by") or "user"
    if not held["hidden_rate"] > 0:
        return f"; its fitted thresholds hid nothing for {who}s held out"
    return (
        f"; with its fitted thresholds a new {who} should expect about "
        f"{_pct(held['hidden_rate'])} hidden"
        + (
            f" at {_pct(held['accuracy_when_hiding'])} accuracy when hiding"
            if held.get("accuracy_when_hiding") is not None
            else ""
        )
    )


def _seconds_row_missing(pols: Mapping[str, Any]) -> bool:
    return all(p.get("model_seconds_saved") is None for p in pols.values())


# --- table -------------------------------------------------------------------------------------

#: (label, explanation, key or None for a computed cell, interval key or None, format)
ROWS: tuple[tuple[str, str, str, str | None, str], ...] = (
    (
        "decisions",
        "shown suggestions with an accept or reject in the log (the same for every policy)",
        "decisions",
        None,
        "n",
    ),
    ("shown", "the user would still have seen these", "shown", None, "n"),
    (
        "hidden",
        "the user would not have seen these: skipped before generation plus hidden after generation",
        "hidden",
        None,
        "n",
    ),
    (
        "  skipped before generation",
        "stage 1 judged the request from the context alone and the model was never called (no model time spent)",
        "skipped_before_generation",
        None,
        "n",
    ),
    (
        "  hidden after generation",
        "the model wrote the suggestion, then stage 2 judged it and hid it (model time spent, nothing shown)",
        "_stage2_hidden",
        None,
        "n",
    ),
    (
        "rejected suggestions hidden",
        "hidden ones the user had rejected: the gain",
        "rejected_hidden",
        None,
        "n",
    ),
    (
        "accepted suggestions lost",
        "hidden ones the user had accepted: the cost",
        "accepted_hidden",
        None,
        "n",
    ),
    (
        "model seconds saved",
        "logged generation time of the requests stage 1 skips (* partly estimated at the log's median)",
        "model_seconds_saved",
        None,
        "s",
    ),
    ("hiding rate", "hidden / decisions", "hidden_rate", "hidden_rate", "%"),
    (
        "accuracy when hiding",
        "share of the hidden ones that had been rejected",
        "accuracy_when_hiding",
        "accuracy_when_hiding",
        "%",
    ),
    (
        "accepted lost share",
        "accepted suggestions lost / all accepted",
        "accepted_lost_share",
        "accepted_lost_share",
        "%",
    ),
    (
        "acceptance rate among shown",
        "accepted / shown, counting only what the policy still shows",
        "acceptance_rate_shown",
        "acceptance_rate_shown",
        "%",
    ),
    (
        "AUC stage 1",
        "how well stage 1's P(reject) ranks rejected above accepted suggestions (0.5 chance, 1 perfect)",
        "auc_stage1",
        None,
        "f",
    ),
    (
        "AUC stage 2",
        "the same for stage 2, which also sees the suggestion",
        "auc_stage2",
        None,
        "f",
    ),
)
IN_SAMPLE_KEYS = {
    "auc_stage1",
    "auc_stage2",
    "hidden_rate",
    "accuracy_when_hiding",
    "accepted_lost_share",
    "acceptance_rate_shown",
}


def _cell(pol: Mapping[str, Any], key: str, ci_key: str | None, fmt: str) -> str:
    v = (
        pol.get(key)
        if key != "_stage2_hidden"
        else int(pol.get("hidden") or 0) - int(pol.get("skipped_before_generation") or 0)
    )
    if fmt == "%":
        txt = _pct(v)
        ci = _ci_of(pol, ci_key) if ci_key else ""
        if ci and v is not None:
            txt += f'<br><span class="ci">{_e(ci)}</span>'
    elif fmt == "s":
        txt = (
            "–"
            if v is None
            else f"{float(v):.1f} s" + ("*" if pol.get("model_seconds_estimated") else "")
        )
    else:
        txt = _e(_num(v))
    if (
        _about(pol).get("in_sample")
        and key in IN_SAMPLE_KEYS
        and v is not None
        and (key.startswith("auc") or int(pol.get("hidden") or 0) > 0)
    ):
        txt += '<span class="mark" title="in-sample">†</span>'
    return txt


def table_html(report: Mapping[str, Any]) -> str:
    pols: Mapping[str, Any] = report["policies"]
    names = list(pols)
    head = "".join(f'<th scope="col">{_e(n)}</th>' for n in names)
    body = []
    for label, why, key, ci_key, fmt in ROWS:
        if key == "model_seconds_saved" and _seconds_row_missing(pols):
            continue
        if key.startswith("auc") and all(pols[n].get(key) is None for n in names):
            continue
        cls = ' class="sub"' if label.startswith("  ") else ""
        body.append(
            f'<tr data-row="{_e(key)}"{cls}><th scope="row">{_e(label.strip())}'
            f'<span class="why">{_e(why)}</span></th>'
            + "".join(f"<td>{_cell(pols[n], key, ci_key, fmt)}</td>" for n in names)
            + "</tr>"
        )
    return f'<table id="policies"><tr><th></th>{head}</tr>{"".join(body)}</table>'


# --- page --------------------------------------------------------------------------------------

CSS = """
html,body{background:#fff;color:#1e1e1e;color-scheme:light}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:1.2em 1.5em;max-width:980px}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.2em;margin:1.4em 0 .4em}
code{color:#1e1e1e;background:#f2f2f2;padding:0 3px;border-radius:3px}
#summary{border:1px solid #b9d3ee;background:#f2f8fe;padding:.4em 1.2em;border-radius:4px}
#summary li{margin:.35em 0}
#warnings{border:1px solid #e4c26b;background:#fff8e1;padding:.4em 1.2em;border-radius:4px}
#warnings li{margin:.35em 0}
table{border-collapse:collapse;margin:.4em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top}
th{text-align:left;background:#f4f4f4;font-weight:600}
th .why{display:block;font-weight:normal;color:#555;font-size:12px;max-width:26em}
tr.sub th{padding-left:1.6em}
.ci{color:#555;font-size:12px}
.mark{color:#b15c00;font-weight:bold;margin-left:2px}
.note{color:#444;font-size:13px}figure{margin:.6em 0}figcaption{color:#444;font-size:13px;max-width:720px}
svg{max-width:100%;height:auto}
"""


def _summary_items(report: Mapping[str, Any]) -> str:
    """The summary's list items, one per policy."""
    return "".join(
        f'<li data-policy="{_e(n)}"><strong>{_e(n)}</strong>: {_rich(t)}</li>'
        for n, t in summary(report)
    )


def _warnings_section(report: Mapping[str, Any]) -> str:
    """The warnings' section ('' when there is none)."""
    warn = warnings(report)
    if not warn:
        return ""
    return (
        '<section id="warnings"><h2>Before you trust these figures</h2><ul>'
        + "".join(f'<li class="warning" data-kind="{_e(k)}">{_e(t)}</li>' for k, t in warn)
        + "</ul></section>"
    )


def _problems_html(report: Mapping[str, Any]) -> str:
    """The log lines that could not be read (the first 200), '' when none."""
    problems = report.get("problems") or []
    if not problems:
        return ""
    items = "".join(f"<li>{_e(p)}</li>" for p in problems[:200])
    return f"<h2>Skipped log lines ({len(problems)})</h2><ul>{items}</ul>"


def _regenerate_html(report: Mapping[str, Any]) -> str:
    """The ``--regenerate`` comparison's table, '' without one."""
    regen = report.get("regenerate")
    if not regen:
        return ""
    return (
        "<h2>Regenerated suggestions</h2><table><tr><th></th><th>n</th><th>exact match</th><th>edit similarity</th></tr>"
        + "".join(
            f"<tr><th>vs {k[3:]}</th><td>{regen[k]['n']}</td><td>{_pct(regen[k]['exact_match'])}</td><td>{_num(regen[k]['edit_similarity'])}</td></tr>"
            for k in ("vs_shown", "vs_accepted", "vs_rejected")
        )
        + f"</table><p>{regen['without_context']} shown suggestions had no logged context.</p>"
    )


def _guard_html(report: Mapping[str, Any]) -> str:
    """The guarded twins' record (``tactful replay --guard``), '' without one: per policy, what
    it hid without and with the guard, how close the guard's estimate came, and where it ended."""
    rows = []
    for name, pol in report["policies"].items():
        g = pol.get("guard")
        if not g:
            continue
        p = g["pooled"]
        states = ", ".join(f"{n} {s}" for s, n in p["final_states"].items() if n)
        rows.append(
            f"<tr><th>{_e(name)}</th><td>{p['unguarded_hidden']} ({_pct(p['unguarded_accuracy_when_hiding'])})</td>"
            f"<td>{p['guarded_hidden']} ({_pct(p['guarded_accuracy_when_hiding'])})</td>"
            f"<td>{_e(p['estimate_within_0.10'])} (median error {_num(p['estimate_abs_error_median'])})</td>"
            f"<td>{_e(states)}</td></tr>"
        )
    if not rows:
        return ""
    return (
        "<h2>The guard</h2><p>Each guarded policy replays its cascade with the run-time guard: "
        "it labels what it would hide from exploration and from what the user typed next, and backs "
        "off when the lower bound of its accuracy when hiding falls below the target.</p>"
        "<table><tr><th></th><th>hidden without the guard (accuracy)</th><th>hidden with it (accuracy)</th>"
        "<th>users whose estimate came within ±0.10</th><th>state at the end (users)</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _users_figure(report: Mapping[str, Any]) -> str:
    """The per-user bars with their caption, or why there are none."""
    pols: Mapping[str, Any] = report["policies"]
    if not any(int(p.get("hidden") or 0) > 0 for p in pols.values()):
        return "<p>No policy hides anything on this log, so there are no per-user bars.</p>"
    return (
        f"<figure>{users_svg(pols, list(report.get('users', [])))}<figcaption>One bar per user and "
        "policy that hides anything; the number after each user is their decisions. A user far from the "
        "others is where a policy behaves differently.</figcaption></figure>"
    )


def render(report: Mapping[str, Any]) -> str:
    """The whole page of a :func:`tactful.replay.report.build_report` dict."""
    pols: Mapping[str, Any] = report["policies"]
    n_users = len(report.get("users", []))
    sweep_note = "Show-all hides nothing and has no line or dot." if "show-all" in pols else ""
    interval_note = (
        "Intervals: 95% bootstrap intervals over users (1000 resamples of whole users): the range "
        "to expect for another group of people like these."
        if n_users >= 2
        else "No intervals: the log holds one user."
    )
    any_mark = any(_about(p).get("in_sample") for p in pols.values())
    ci_text = (
        "Grey ranges under a rate are 95% bootstrap intervals over users (1000 resamples of whole users)."
        if n_users >= 2
        else "One user: no intervals."
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>tactful replay report</title>
<style>{CSS}</style>
</head><body>
<h1>tactful replay report</h1>
<p>Log: <code>{_e(report.get("log", ""))}</code> ({_e(report.get("format", ""))}): {report.get("requests", 0)} requests, {report.get("decisions", 0)} decisions (shown suggestions with an accept or reject), {_plural(n_users, "user")}. Each policy below is replayed over the same requests in time order, as the server would have decided them.</p>
<section id="summary"><h2>What this says</h2><ul>{_summary_items(report)}</ul><p class="note">{_e(interval_note)}</p></section>
{_warnings_section(report)}
<h2>Policies</h2>
<p>Hidden means the user would not have seen the suggestion. A cascade hides in two ways: <strong>skipped before generation</strong> (stage 1 looks at the context only, and the model is never called, which also saves its time) and <strong>hidden after generation</strong> (stage 2 also looks at the suggestion the model wrote, so the model's time is spent). {_e(ci_text)}{" † marks figures that are in-sample for the policy's model (see above)." if any_mark else ""}</p>
{table_html(report)}
<h2>Hiding more or less</h2>
<figure>{sweep_svg(pols)}<figcaption>Each line moves one model's stage-2 threshold from 0 (hide everything) to 1 (hide nothing) over all decisions; left is cautious, right hides more. The small circles mark thresholds 0.9, 0.8, …: read off the one that keeps accuracy where you need it. Policies that use the same model share a line. A dot marks each policy as configured; a dot off its line hides with stage 1 too. {_e(sweep_note)}</figcaption></figure>
<h2>Per user</h2>
{_users_figure(report)}
{_guard_html(report)}{_regenerate_html(report)}{_problems_html(report)}
</body></html>
"""
