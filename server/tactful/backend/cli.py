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
    info.add_argument(
        "--engine",
        metavar="URL",
        default=None,
        help="describe what an inference engine serves instead, e.g. http://127.0.0.1:8000/v1",
    )
    info.add_argument("--engine-model", default=None, help="served model name (default: the first)")
    info.add_argument(
        "--api-key-env", default=None, help="NAME of the environment variable holding the API key"
    )
    info.add_argument(
        "--template", default="auto", help="prompt template family (see docs/engines.md)"
    )
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
        if args.engine:
            return engine_info(args)
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


def engine_info(args: argparse.Namespace) -> int:
    """Connect to an engine, try a completion and a scoring pass, print what serves."""
    from tactful.backend.engine import EngineBackend, EngineError
    from tactful.backend.fim import FAMILIES
    from tactful.backend.types import GenerateRequest
    from tactful.config import ENGINE_TEMPLATES

    if args.template not in ENGINE_TEMPLATES:
        raise ModelError(f"--template: one of {', '.join(ENGINE_TEMPLATES)}")
    assert set(FAMILIES) | {"auto"} == set(ENGINE_TEMPLATES)
    b = EngineBackend(
        args.engine, model=args.engine_model, api_key_env=args.api_key_env, template=args.template
    )
    try:
        b.connect()
        out: dict[str, object] = {
            "url": b.base,
            "model": b.model,
            "name": b.name,
            "template": b.fim_template.family if b.fim_template else "prefix-only",
        }
        gen = b.generate(GenerateRequest(prefix="def add(a, b):\n    return", max_new_tokens=8))
        out["completion"] = {
            "text": gen.text,
            "seconds": round(gen.seconds, 3),
            "logprobs": bool(gen.token_logprobs),
        }
        try:
            b.score_into_slot("x = 1\ny = x + 1\n", "info")
            out["canScore"] = True
        except EngineError as exc:
            out["canScore"] = False
            out["scoreError"] = str(exc)
        out["healthy"] = True
        out["notes"] = b.notes
        print(json.dumps(out, indent=2))
        return 0
    finally:
        b.close()
