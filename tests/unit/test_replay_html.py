"""The HTML replay report (tactful.replay.html, .plots): the plain-language summary, the warnings (small
log, few users, in-sample model), the explained rows, and plots that are readable by their SVG
attributes (width, font sizes, titles, fitted axes, a legend of exactly what is drawn)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_replay import CUPS, RulePolicy, write_log

from tactful.replay import html as rhtml
from tactful.replay import plots
from tactful.replay import report as replay

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def small_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    log = write_log(tmp_path_factory.mktemp("replay-html") / "feedback.sqlite3")
    pols = [replay.ShowAll(), RulePolicy(), *replay.make_policies(thresholds=[0.5])[1:]]
    report, _loaded, _units = replay.run(log, pols)
    return report


@pytest.fixture(scope="module")
def cups_report() -> dict[str, Any]:
    if not CUPS.exists():
        pytest.skip(f"no CUPS data at {CUPS}")
    report, _loaded, _units = replay.run(CUPS, replay.make_policies(thresholds=[0.8]))
    return report


def svgs(page: str) -> dict[str, ET.Element]:
    """Each inline ``<svg id=...>`` of the page, parsed."""
    out = {}
    for m in re.finditer(r"<svg .*?</svg>", page, re.S):
        el = ET.fromstring(m.group(0))
        out[el.get("id", "")] = el
    return out


def ticks(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter(f"{SVG}text") if t.get("class") == "tick"]


def check_readable(svg: ET.Element) -> None:
    """At least 640 px wide, every text at least 12 px, a title and axis titles, and a legend
    whose entries are exactly the series drawn."""
    assert int(svg.get("width", "0")) >= plots.MIN_WIDTH
    assert svg.get("viewBox") == f"0 0 {svg.get('width')} {svg.get('height')}"
    for t in svg.iter(f"{SVG}text"):
        size = t.get("font-size") or svg.get("font-size")
        assert size is not None and float(size) >= 12, ET.tostring(t)
    classes = [t.get("class") for t in svg.iter(f"{SVG}text")]
    assert classes.count("plot-title") == 1 and classes.count("axis-title") >= 2
    assert svg.find(f"{SVG}title") is not None
    legend = {g.get("data-series") for g in svg.iter(f"{SVG}g") if g.get("class") == "legend-entry"}
    drawn = {
        el.get("data-series")
        for el in svg.iter()
        if el.get("data-series") and el.get("class") != "legend-entry"
    }
    assert legend and legend == drawn


def test_summary_per_policy_in_plain_language(small_report: dict[str, Any]) -> None:
    s = dict(rhtml.summary(small_report))
    assert list(s) == list(small_report["policies"])
    assert "4 accepted" in s["show-all"] and "the baseline" in s["show-all"]
    # rule: 5 of 9 hidden (2 by stage 1 before generation, 3 by stage 2), 2 of 4 accepted lost
    rule = s["rule"]
    assert "**5 of 9 suggestions**" in rule
    assert "2 of them skipped before generation" in rule and "3 hidden after generation" in rule
    assert "**2 of the 4 accepted suggestions would have been lost**" in rule
    ci = small_report["policies"]["rule"]["ci95_over_users"]["accepted_lost_share"]
    assert f"interval {100 * ci[0]:.1f}–{100 * ci[1]:.1f}%" in rule
    assert "It would have hidden nothing" in s["default"]
    page = rhtml.render(small_report)
    assert '<section id="summary">' in page
    assert "<strong>2 of the 4 accepted suggestions would have been lost</strong>" in page


def test_small_log_and_few_users_warned(small_report: dict[str, Any]) -> None:
    kinds = dict(rhtml.warnings(small_report))
    assert "Small log: 9 decisions (fewer than 200)" in kinds["small-log"]
    assert "Only 2 users" in kinds["few-users"]
    assert "in-sample" not in kinds  # the shipped model was not trained on u1/u2
    page = rhtml.render(small_report)
    assert 'data-kind="small-log"' in page and 'data-kind="few-users"' in page


def test_rows_explained_and_seconds_computed(small_report: dict[str, Any]) -> None:
    page = rhtml.render(small_report)
    table = re.search(r'<table id="policies">.*?</table>', page, re.S)
    assert table is not None
    rows = re.findall(r'<tr data-row="([^"]+)"', table.group(0))
    assert rows[:5] == [
        "decisions",
        "shown",
        "hidden",
        "skipped_before_generation",
        "_stage2_hidden",
    ]
    assert table.group(0).count('<span class="why">') == len(rows)
    rule_col = list(small_report["policies"]).index("rule")

    def cells(key: str) -> list[str]:
        row = re.search(rf'<tr data-row="{key}".*?</tr>', table.group(0), re.S)
        assert row is not None
        return re.findall(r"<td>(.*?)</td>", row.group(0))

    assert cells("_stage2_hidden")[rule_col] == "3"
    # the log has generation times: 0.4 + 0.2 + 1.0 logged and one at the median, estimated
    assert cells("model_seconds_saved")[rule_col] == "1.9 s*"


def test_plots_readable_with_legends_matching_what_is_drawn(small_report: dict[str, Any]) -> None:
    figs = svgs(rhtml.render(small_report))
    assert set(figs) == {"sweep", "users"}
    for svg in figs.values():
        check_readable(svg)
    legend = {
        g.get("data-series")
        for g in figs["users"].iter(f"{SVG}g")
        if g.get("class") == "legend-entry"
    }
    # show-all and default hide nothing here: no bars, so not in the legend
    assert legend == {"policy:rule", "policy:threshold-0.5", "lost"}


def test_cups_warns_in_sample_and_fits_axes(cups_report: dict[str, Any]) -> None:
    kinds = rhtml.warnings(cups_report)
    in_sample = [t for k, t in kinds if k == "in-sample"]
    assert len(in_sample) == 1  # one warning for the one model behind both policies
    text = in_sample[0]
    assert "the model behind default and threshold-0.8" in text
    d = cups_report["policies"]["default"]
    about = d["about"]
    assert about["in_sample"] and cups_report["policies"]["threshold-0.8"]["about"]["in_sample"]
    assert about["shipped"] and about["kind"] == "cascade"
    summ = dict(rhtml.summary(cups_report))
    assert summ["default"].startswith("The shipped cascade with its fitted thresholds")
    assert summ["threshold-0.8"].startswith("The shipped model's stage 2 alone")
    assert f"stage 2 {d['auc_stage2']:.2f} here" in text
    assert f"stage 2 {about['held_out']['auc_stage2']:.2f} with users held out" in text
    assert not any(k == "small-log" for k, _t in kinds)
    # CUPS has no generation times: the row of dashes is gone and the reason given
    assert any(k == "no-seconds" for k, _t in kinds)
    page = rhtml.render(cups_report)
    assert 'data-row="model_seconds_saved"' not in page
    assert page.count('<span class="mark" title="in-sample">†</span>') >= 4
    figs = svgs(page)
    for svg in figs.values():
        check_readable(svg)
    # per-user bars: the axis ends just past the largest share, not at 100%
    top = max(
        pu["hidden_rate"]
        for p in cups_report["policies"].values()
        for pu in p["per_user"].values()
        if pu["hidden_rate"] is not None
    )
    last = float(ticks(figs["users"])[-1].rstrip("%")) / 100
    assert top <= last < min(1.0, top + 0.25)
    # sweep: the accuracy axis starts just below the lowest accuracy drawn, not at 0
    low = min(
        r["accuracy_when_hiding"]
        for p in cups_report["policies"].values()
        for r in p["sweep_stage2"]
        if r["accuracy_when_hiding"] is not None
    )
    y_ticks = [
        float((t.text or "").rstrip("%")) / 100
        for t in figs["sweep"].iter(f"{SVG}text")
        if t.get("class") == "tick" and t.get("text-anchor") == "end"
    ]
    assert low - 0.1 <= y_ticks[0] <= low and y_ticks[-1] == 1.0
    # the two policies on the shipped model share one line; each has its dot
    curves = [el for el in figs["sweep"].iter() if el.get("class") == "curve"]
    dots = [el for el in figs["sweep"].iter() if el.get("class") == "operating-point"]
    assert len(curves) == 1 and curves[0].get("data-policy") == "threshold-0.8, default"
    # thresholds marked along the line, falling from left to right
    marks = [
        (float(t.get("x", "0")), float(t.text or "0"))
        for t in figs["sweep"].iter(f"{SVG}text")
        if t.get("class") == "threshold-label"
    ]
    assert 0.8 in [t for _x, t in marks] and marks == sorted(marks, key=lambda m: (m[0], -m[1]))
    assert [t for _x, t in marks] == sorted((t for _x, t in marks), reverse=True)
    hiding = {n for n, p in cups_report["policies"].items() if p["hidden"]}
    assert {el.get("data-policy") for el in dots} == hiding and "threshold-0.8" in hiding


def test_users_axis_fitted_to_small_shares() -> None:
    """Per-user shares of 0-8% get an axis that ends at 8%, not 100% (issue 24)."""
    per_user = {
        f"u{i}": {"decisions": 50, "hidden": i, "hidden_rate": i / 50, "accepted_hidden": 0}
        for i in range(5)
    }
    pols = {"p": {"hidden": 10, "per_user": per_user}}
    svg = ET.fromstring(plots.users_svg(pols, list(per_user)))
    check_readable(svg)
    assert ticks(svg)[-1] == "8%"
    assert plots.nice_scale(0.0, 0.08) == pytest.approx((0.0, 0.08, 0.02))
    assert plots.nice_scale(0.66, 1.0) == pytest.approx((0.6, 1.0, 0.1))


def test_in_sample_when_the_model_was_trained_on_this_log(tmp_path: Path) -> None:
    log = tmp_path / "mine.sqlite3"
    meta = {"trained": {"logs": [str(log)]}, "metrics": {"users": 3, "stage2_auc": 0.7}}
    pol = replay.CascadePolicy(
        "mine", SimpleNamespace(meta=meta, path=tmp_path, stage2_override=None)
    )
    a = replay.describe_policy(pol, str(log), ["a", "b", "c"], 300)
    assert a["in_sample"] and "trained on this log" in a["in_sample_why"]
    assert a["held_out"]["auc_stage2"] == 0.7 and a["kind"] == "cascade" and not a["shipped"]
    b = replay.describe_policy(pol, str(tmp_path / "other.sqlite3"), ["a", "b", "c"], 300)
    assert not b["in_sample"]
    # a bare file name (as older models record it) counts only with the same decisions and users
    meta2 = {"trained": {"log": "mine.sqlite3"}, "metrics": {"users": 3, "decisions": 300}}
    pol2 = replay.CascadePolicy(
        "old", SimpleNamespace(meta=meta2, path=tmp_path, stage2_override=0.8)
    )
    c = replay.describe_policy(pol2, str(log), ["a", "b", "c"], 300)
    assert (
        c["in_sample"]
        and "trained on mine.sqlite3 with 300 decisions of 3 users" in c["in_sample_why"]
    )
    assert not replay.describe_policy(pol2, str(log), ["a", "b", "c"], 299)["in_sample"]
    assert replay.describe_policy(pol2, str(log), ["a"], 300)["kind"] == "threshold"
    assert replay.describe_policy(replay.ShowAll(), str(log), ["a"]) == {"kind": "baseline"}


def test_one_user_log_has_no_intervals_and_says_so(tmp_path: Path) -> None:
    """A new user's own log: one person, a few dozen decisions (issue 24's 38-decision log)."""
    log = write_log(tmp_path / "feedback.sqlite3")
    units = [u for u in replay.build_units(replay.load_log(log).events) if u.user == "u1"]
    pols = [replay.ShowAll(), RulePolicy()]
    report = replay.build_report(units, replay.replay(units, pols), str(log), described=pols)
    assert report["users"] == ["u1"] and report["policies"]["rule"]["ci95_over_users"] == {}
    kinds = dict(rhtml.warnings(report))
    assert "small-log" in kinds and "one-user" in kinds and "few-users" not in kinds
    rule = dict(rhtml.summary(report))["rule"]
    assert "**4 of 5 suggestions**" in rule and "interval" not in rule
    page = rhtml.render(report)
    assert "No intervals: the log holds one user." in page
    for svg in svgs(page).values():
        check_readable(svg)


def test_reports_without_about_and_odd_names_render(small_report: dict[str, Any]) -> None:
    """A report written before ``about`` existed, and a policy folder named like markup."""
    pols = {
        ("<b>x</b> & y" if n == "rule" else n): {k: v for k, v in p.items() if k != "about"}
        for n, p in small_report["policies"].items()
    }
    page = rhtml.render({**small_report, "policies": pols})
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt; &amp; y" in page
    assert "in-sample" not in dict(rhtml.warnings({**small_report, "policies": pols}))
    for svg in svgs(page).values():
        check_readable(svg)
