"""``tactful log stats|export|import-cups|path``: the feedback log from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tactful.feedback.importers import import_cups
from tactful.feedback.store import FeedbackError, default_log_path, export_jsonl, stats


def _log_path(arg: str | None) -> Path:
    return Path(arg).expanduser() if arg else default_log_path()


def main(argv: Sequence[str] | None = None) -> int:
    """``tactful log stats|export|import-cups|path``."""
    ap = argparse.ArgumentParser(
        prog="tactful log",
        description="The local feedback log of shown, accepted and rejected suggestions.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("stats", help="counts of events, decisions and the acceptance rate")
    p.add_argument("--log", help="log file (default: feedback.sqlite3 in the data directory)")
    p = sub.add_parser("export", help="write the log as JSON Lines")
    p.add_argument("--log", help="log file (default: feedback.sqlite3 in the data directory)")
    p.add_argument("--out", default="-", help="output file (default: stdout)")
    p = sub.add_parser(
        "import-cups", help="convert CUPS study events (cups_events.jsonl.gz) into a log"
    )
    p.add_argument("file")
    p.add_argument("--out", required=True, help="the new log file to write")
    p.add_argument(
        "--hash-text", action="store_true", help="store SHA-256 hashes instead of suggestion text"
    )
    sub.add_parser("path", help="print where the log is")
    args = ap.parse_args(list(argv) if argv is not None else None)
    try:
        if args.cmd == "path":
            print(default_log_path())
        elif args.cmd == "stats":
            print(json.dumps(stats(_log_path(args.log)), indent=2))
        elif args.cmd == "export":
            if args.out == "-":
                n = export_jsonl(_log_path(args.log), sys.stdout)
            else:
                with open(args.out, "w", encoding="utf-8") as fh:
                    n = export_jsonl(_log_path(args.log), fh)
            print(f"exported {n} events", file=sys.stderr)
        elif args.cmd == "import-cups":
            counts = import_cups(
                args.file, args.out, store_text="hash" if args.hash_text else "text"
            )
            print(json.dumps({"out": args.out, **counts}))
    except FeedbackError as exc:
        print(f"tactful log: {exc}", file=sys.stderr)
        return 1
    return 0
