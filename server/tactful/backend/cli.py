"""``tactful model install|info``: convert the embedded model once, or describe a model."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from tactful import paths
from tactful.backend import embedded
from tactful.backend.types import ModelError


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="tactful model")
    sub = parser.add_subparsers(dest="cmd", required=True)
    inst = sub.add_parser("install", help="convert the embedded model to bf16 safetensors (once)")
    inst.add_argument("--cache-dir", default=None)
    info = sub.add_parser("info", help="load a model and print what tactful sees")
    info.add_argument("model", nargs="?", default=None, help="folder or hub id; default: embedded")
    info.add_argument("--cache-dir", default=None)
    args = parser.parse_args(list(argv))
    cache = paths.cache_dir(args.cache_dir)
    try:
        if args.cmd == "install":
            was = embedded.is_converted(cache)
            out = embedded.ensure_converted(
                cache, lambda msg, pct: print(f"[{pct:3d}%] {msg}", file=sys.stderr)
            )
            print(f"{'already installed' if was else 'installed'}: {out}")
            return 0
        from tactful.backend.hf import TransformersBackend

        b = TransformersBackend.load(args.model, cache_dir=cache)
        print(
            json.dumps(
                {
                    "name": b.name,
                    "device": b.device,
                    "fim": b.fim_template.family if b.fim_template else None,
                    "dtype": str(b.model.dtype).removeprefix("torch."),
                    "vocab": len(b.tok),
                    "fastDecode": b.fast.counts() if b.fast is not None else None,
                },
                indent=2,
            )
        )
        return 0
    except ModelError as exc:
        print(f"tactful model: {exc}", file=sys.stderr)
        return 1
