"""``tactful complete FILE LINE COL`` (:func:`main`): one completion of a file at one position,
printed, with no server, no cache and no cascade (:func:`complete_text`, also for scripts). Must
not hold the server's stages (they are :mod:`tactful.completion.engine`'s)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from tactful.backend.types import Backend, ModelError
from tactful.completion import postprocess as pp
from tactful.completion.context import build_context
from tactful.completion.request import make_generate_request
from tactful.config import Settings


def complete_text(
    backend: Backend, text: str, offset: int, language_id: str, settings: Settings | None = None
) -> str | None:
    """One-shot completion of ``text`` at ``offset`` (no server, no cache): for scripts and tests."""
    settings = settings or Settings()
    ctx = build_context(
        text,
        offset,
        language_id,
        context_tokens=settings.completion.context_tokens,
        multiline_enabled=settings.completion.multiline,
        fim=backend.fim,
    )
    gen = backend.generate(make_generate_request(ctx, settings, None, backend.fim))
    return pp.postprocess(gen.text, ctx)


def main(argv: Sequence[str]) -> int:
    """``tactful complete FILE LINE COL``: print the suggestion at a 1-based position."""
    from pathlib import Path

    from tactful import paths, syntax
    from tactful.backend.hf import TransformersBackend
    from tactful.documents import Document

    parser = argparse.ArgumentParser(prog="tactful complete")
    parser.add_argument("file")
    parser.add_argument("line", type=int, help="1-based line")
    parser.add_argument(
        "column", type=int, help="1-based column (UTF-16 units); past the end = end of line"
    )
    parser.add_argument("--model", default=None)
    parser.add_argument("--language", default=None)
    args = parser.parse_args(list(argv))
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"tactful complete: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    doc = Document("file://" + args.file, text)
    offset = doc.offset_at(args.line - 1, args.column - 1)
    try:
        backend = TransformersBackend.load(args.model, cache_dir=paths.cache_dir())
    except ModelError as exc:
        print(f"tactful complete: {exc}", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    out = complete_text(
        backend, text, offset, args.language or syntax.language_from_path(args.file)
    )
    print(out if out is not None else "", end="\n" if out else "")
    print(f"[{time.perf_counter() - t0:.2f} s]", file=sys.stderr)
    return 0
