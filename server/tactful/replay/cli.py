"""``tactful replay`` (:func:`main`): the command line and its terminal table."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tactful.replay.load import ReplayError
from tactful.replay.regenerate import embedded_completer, regenerate
from tactful.replay.report import make_policies, parse_threshold, run, write_html


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{100 * v:.1f}%" if pct else f"{v:.3f}"
    return str(v)


def table(report: Mapping[str, Any]) -> str:
    """The terminal table: one column per policy."""
    names = list(report["policies"])
    rows: list[tuple[str, str, bool]] = [
        ("decisions", "decisions", False),
        ("shown", "shown", False),
        ("hidden", "hidden", False),
        ("rejected hidden", "rejected_hidden", False),
        ("accepted lost", "accepted_hidden", False),
        ("skipped before gen.", "skipped_before_generation", False),
        ("model s saved", "model_seconds_saved", False),
        ("hiding rate", "hidden_rate", True),
        ("accept rate (shown)", "acceptance_rate_shown", True),
        ("accuracy when hiding", "accuracy_when_hiding", True),
        ("accepted lost share", "accepted_lost_share", True),
        ("AUC stage 1", "auc_stage1", False),
        ("AUC stage 2", "auc_stage2", False),
    ]
    w = max(12, *(len(n) + 2 for n in names))
    out = [f"{'':<22}" + "".join(f"{n:>{w}}" for n in names)]
    for label, key, pct in rows:
        out.append(
            f"{label:<22}"
            + "".join(f"{_fmt(report['policies'][n].get(key), pct):>{w}}" for n in names)
        )
    for key in ("hidden_rate", "accuracy_when_hiding"):
        cells = []
        for n in names:
            ci = report["policies"][n].get("ci95_over_users", {}).get(key)
            cells.append("-" if not ci else f"{100 * ci[0]:.0f}-{100 * ci[1]:.0f}%")
        out.append(f"{key.replace('_', ' ') + ' CI':<22}" + "".join(f"{c:>{w}}" for c in cells))
    return "\n".join(out)


def json_report(report: Mapping[str, Any], per_user: bool = True) -> dict[str, Any]:
    """The report with NaN-free values; per-user details optional."""
    from tactful.feedback.store import _clean

    rep = dict(report)
    if not per_user:
        rep["policies"] = {
            k: {kk: vv for kk, vv in v.items() if kk != "per_user"}
            for k, v in rep["policies"].items()
        }
    cleaned: dict[str, Any] = _clean(rep)
    return cleaned


def _progress_printer(label: str) -> Callable[[int, int], None]:
    """Progress on stderr in 10% steps (one updating line on a terminal, else one line each)."""
    last = [-1]
    tty = sys.stderr.isatty()

    def show(done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if pct // 10 != last[0] or done == total:
            last[0] = pct // 10
            if tty:
                end = "\n" if done == total else ""
                print(f"\r{label}: {done}/{total} ({pct}%)", end=end, file=sys.stderr, flush=True)
            else:
                print(f"{label}: {done}/{total} ({pct}%)", file=sys.stderr, flush=True)

    return show


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="tactful replay",
        description="Replay logged sessions through show/hide policies and report what each would have hidden.",
    )
    ap.add_argument(
        "--log",
        help="feedback log (.sqlite3), its JSON Lines export, or CUPS events (.jsonl[.gz]); default: your own log",
    )
    ap.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="DIR",
        help="a trained cascade folder (repeatable)",
    )
    ap.add_argument(
        "--threshold",
        action="append",
        default=[],
        type=parse_threshold,
        metavar="T",
        help="a fixed policy: hide when the shipped model's stage-2 P(reject) >= T (repeatable)",
    )
    ap.add_argument(
        "--no-default", action="store_true", help="leave out the shipped default cascade"
    )
    ap.add_argument(
        "--guard",
        action="store_true",
        help="also replay each cascade with the run-time guard (exploration, typed-next evidence, back-off)",
    )
    ap.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the table"
    )
    ap.add_argument("--per-user", action="store_true", help="include per-user figures in --json")
    ap.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    ap.add_argument(
        "--regenerate",
        action="store_true",
        help="re-run the completion model on logged contexts and compare",
    )
    ap.add_argument(
        "--model", default=None, help="model for --regenerate (default: the embedded one)"
    )
    ap.add_argument(
        "--limit", type=int, default=None, help="--regenerate at most this many suggestions"
    )
    ap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return ap


#: ``tactful replay NAME ...``: the cascade's comparisons with users held out (their own modules).
SUBCOMMANDS = {"adapt": "tactful.replay.adapt", "team": "tactful.replay.team"}


def main(argv: Sequence[str] | None = None) -> int:
    """``tactful replay --log LOG [--policy DIR]... [--threshold T]... [--json] [--html FILE] [--regenerate]``,
    or ``tactful replay adapt|team ...`` (:data:`SUBCOMMANDS`)."""
    argv = list(argv) if argv is not None else sys.argv[1:]
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        return int(importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:]))
    args = _parser().parse_args(argv)
    if args.log is None:
        from tactful.feedback.store import default_log_path

        args.log = str(default_log_path())
    try:
        pols = make_policies(args.policy, args.threshold, include_default=not args.no_default)
        if args.guard:
            from tactful.replay.guard import guarded_twins

            pols += guarded_twins(pols)
        report, loaded, units = run(
            args.log, pols, None if args.quiet else _progress_printer("replay")
        )
        for msg in loaded.problems:
            print(f"tactful replay: {msg}", file=sys.stderr)
        if args.regenerate:
            complete = embedded_completer(args.model)
            report["regenerate"] = regenerate(
                units,
                loaded.contexts,
                complete,
                args.limit,
                None if args.quiet else _progress_printer("regenerate"),
            )
        if args.html:
            p = write_html(report, args.html)
            print(f"tactful replay: wrote {p}", file=sys.stderr)
        if args.json:
            print(json.dumps(json_report(report, args.per_user), indent=2, allow_nan=False))
        else:
            print(
                f"{report['log']} ({report['format']}): {report['requests']} requests, "
                f"{report['decisions']} decisions, {len(report['users'])} users"
            )
            print(table(report))
            for name, pol in report["policies"].items():
                if "guard" in pol:
                    print(f"{name}: guard {json.dumps(pol['guard']['pooled'])}")
            rg = report.get("regenerate")
            if rg:
                print(
                    f"regenerate: {rg['compared']} compared ({rg['without_context']} without context); "
                    f"exact {_fmt(rg['vs_shown']['exact_match'], True)}, "
                    f"edit similarity {_fmt(rg['vs_shown']['edit_similarity'])} vs shown; "
                    f"{_fmt(rg['vs_accepted']['edit_similarity'])} vs accepted"
                )
    except ReplayError as exc:
        print(f"tactful replay: {exc}", file=sys.stderr)
        return 1
    return 0
