"""``tactful flag FILE...``: print the lines of files that look wrong (the command line).

Owns argument parsing and output; the work is :func:`tactful.flags.job.flag_document`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tactful.backend.types import Backend
from tactful.config import FlagSettings
from tactful.flags.guard import RateGuard, describe, target
from tactful.flags.job import flag_document
from tactful.flags.memo import WindowMemo, open_store
from tactful.flags.model import FlagModel, default_model
from tactful.flags.plan import MAX_REGEN
from tactful.flags.result import FlagResult


def read_source(path: str) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason) for a file given on the command line."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    if b"\x00" in data[:65536]:
        return None, "binary content (NUL bytes)"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, "not UTF-8 text"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="tactful flag", description="Print the lines of files that look wrong."
    )
    ap.add_argument("files", nargs="+", metavar="FILE")
    ap.add_argument("--json", action="store_true", help="one JSON object per file")
    ap.add_argument(
        "--budget",
        type=float,
        default=0.15,
        help="flag at most this fraction of lines (default 0.15)",
    )
    _add_threshold(ap, "--min-score", FlagSettings().min_score, "scoring at least this")
    ap.add_argument("--max-lines", type=int, default=5000, help="skip longer files (default 5000)")
    ap.add_argument(
        "--max-regen",
        type=int,
        default=MAX_REGEN,
        help="regenerate at most this many lines per file",
    )
    ap.add_argument(
        "--language", default=None, help="LSP language id (default: from the file extension)"
    )
    ap.add_argument(
        "--model", default=None, help="model folder or hub id (default: the embedded model)"
    )
    ap.add_argument("--classifier", default=None, help="folder of a trained flag classifier")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads (default 0: one less than the cores, as the server; all cores are "
        "faster on an otherwise idle machine and much slower on a busy one)",
    )
    ap.add_argument(
        "--no-cache",
        action="store_true",
        help="neither read nor write the flag cache (the model's results for windows flagged "
        "before, shared with the server)",
    )
    _add_threshold(
        ap,
        "--min-probability",
        FlagSettings().min_probability,
        "whose calibrated probability of being the bug is at least this",
    )
    ap.add_argument(
        "--max-per-hundred-lines",
        type=float,
        default=FlagSettings().max_per_hundred_lines,
        help="over the files of this run (flagged in order), show at most this many flags per "
        "100 lines: the best-scoring ones (default %(default)s, as the editor; 0: off)",
    )
    return ap


def _add_threshold(ap: argparse.ArgumentParser, option: str, default: float, what: str) -> None:
    """A threshold of the editor's (a float in [0, 1]) with the editor's default."""
    ap.add_argument(
        option,
        type=float,
        default=default,
        help=f"show only flags {what} (default {default}, as the editor; 0: fill the budget)",
    )


def main(argv: Sequence[str]) -> int:
    """``tactful flag FILE... [--json] [--budget F]``: print the lines that look wrong."""
    ap = _parser()
    args = ap.parse_args(list(argv))
    for option, value in (
        ("--budget", args.budget),
        ("--min-score", args.min_score),
        ("--min-probability", args.min_probability),
    ):
        if not 0.0 <= value <= 1.0:
            ap.error(f"{option} must be between 0 and 1")
    if not 0.0 <= args.max_per_hundred_lines <= 100.0:
        ap.error("--max-per-hundred-lines must be between 0 and 100")
    from tactful import paths
    from tactful.backend.hf import TransformersBackend
    from tactful.backend.types import ModelError

    try:
        classifier = FlagModel.load(args.classifier) if args.classifier else default_model()
        backend = TransformersBackend.load(
            args.model,
            cache_dir=paths.cache_dir(),
            device=args.device,
            dtype=args.dtype,
            threads=args.threads,
        )
    except (ModelError, ValueError, OSError) as exc:
        print(f"tactful flag: {exc}", file=sys.stderr)
        return 1
    memo = WindowMemo(store=None if args.no_cache else open_store(paths.cache_dir()))
    return _flag_files(args, backend, classifier, memo)


def _flag_files(
    args: argparse.Namespace, backend: Backend, classifier: FlagModel, memo: WindowMemo
) -> int:
    from tactful.syntax import language_from_path

    status = 0
    guard = RateGuard()
    for path in args.files:
        text, why = read_source(path)
        if text is None:
            res = FlagResult(skipped=why)
        else:
            lang = args.language or language_from_path(path)
            res = flag_document(
                backend,
                text,
                lang,
                args.budget,
                model=classifier,
                max_lines=args.max_lines,
                max_regen=args.max_regen,
                key=path,
                min_score=args.min_score,
                min_probability=args.min_probability,
                memo=memo,
            )
        _apply_guard(guard, path, res, target(args.max_per_hundred_lines, args.min_probability))
        if args.json:
            print(json.dumps(res.to_json(path), ensure_ascii=False), flush=True)
        elif res.skipped:
            print(f"{path}: skipped: {res.skipped}", file=sys.stderr)
        else:
            for f in sorted(res.flags, key=lambda f: f.line):
                print(f"{path}:{f.line + 1}: {f.score:.2f}: {f.message}", flush=True)
        if text is None and why and why.startswith("cannot read"):
            status = 1
    return status


def _apply_guard(guard: RateGuard, path: str, res: FlagResult, rate: float) -> None:
    """Record a file's flags with the rate guard and keep those that fit (as the editor does,
    over the files flagged so far); the others count as held back."""
    if res.skipped is not None:
        return
    changed = guard.record(path, res.lines, [f.score for f in res.flags], rate)
    if changed is not None:
        print(f"tactful flag: {describe(changed, rate)}", file=sys.stderr)
    kept = guard.passing(res.flags, rate)
    res.held_back += len(res.flags) - len(kept)
    res.flags = kept
