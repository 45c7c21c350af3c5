"""Loading a transformers model: the embedded default, a local folder or a hub id; the device,
dtype and thread count. torch and transformers are imported here, lazily (the LSP layer never
imports this module). Must never trust remote code or read pickled weights (safetensors only)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tactful.backend import embedded
from tactful.backend.model import LoadedModel
from tactful.backend.types import ModelError

log = logging.getLogger(__name__)

Progress = Callable[[str, int], None]


def cpu_has_bf16() -> bool:
    """True where bfloat16 matmuls are fast on this CPU (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass
class Loaded:
    """A model and tokenizer in memory, with what they were loaded as."""

    model: Any
    tokenizer: Any
    name: str
    device: str
    torch_dtype: Any


def _import_torch() -> Any:
    try:
        import torch
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelError(
            f"torch/transformers are not installed: {exc}. Run scripts/setup.sh."
        ) from exc
    return torch


def _resolve(spec: str | None, cache_dir: Path, report: Progress) -> tuple[str, str]:
    """The path (or hub id) to load ``spec`` from, and the model's name."""
    if spec is None:
        return str(embedded.ensure_converted(cache_dir, report)), embedded.MODEL_NAME
    expanded = Path(spec).expanduser()
    looks_local = spec.startswith((".", "/", "~")) or expanded.exists()
    if looks_local:
        if not expanded.is_dir():
            raise ModelError(f"Model folder not found: {expanded}")
        if not (expanded / "config.json").is_file():
            raise ModelError(f"{expanded} is not a Hugging Face model folder (no config.json)")
    return (str(expanded), expanded.name) if looks_local else (spec, spec)


def _from_pretrained(path: str, name: str, torch_dtype: Any) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
        archs = getattr(config, "architectures", None) or []
        if archs and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
            raise ModelError(
                f"{name} is not a causal language model (architectures: {', '.join(archs)})"
            )
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype, trust_remote_code=False, use_safetensors=True
        )
    except ModelError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"Could not load model {name!r}: {msg}") from exc
    return model, tokenizer


def load(
    spec: str | None,
    *,
    cache_dir: Path,
    device: str = "auto",
    dtype: str = "auto",
    threads: int = 0,
    report: Progress,
) -> Loaded:
    """Load ``spec`` (None: the embedded model; a folder; or a hub id) onto ``device``."""
    report("Loading torch", 2)
    torch = _import_torch()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device != "cpu" or cpu_has_bf16() else "float32"
    torch_dtype = getattr(torch, dtype)
    path, name = _resolve(spec, cache_dir, report)
    report(f"Loading {name}", 50)
    model, tokenizer = _from_pretrained(path, name, torch_dtype)
    model.to(device).eval()
    if device == "cpu":
        # Leave a core free by default: with every core busy, torch's threads spin against
        # the editor and other processes and each decoding step gets several times slower.
        torch.set_num_threads(threads or max(1, (os.cpu_count() or 2) - 1))
    return Loaded(model, tokenizer, name, device, torch_dtype)


def enable_fast(m: LoadedModel, loaded: Loaded) -> None:
    """Turn the fast CPU decoder on where it fits: float32 takes it (bfloat16 activations into
    the packed products) only where it was chosen for lack of fast bfloat16, not where the user
    asked for float32 instead."""
    torch = m.torch
    fast_dtypes = (torch.bfloat16,) if cpu_has_bf16() else (torch.bfloat16, torch.float32)
    if loaded.device != "cpu" or loaded.torch_dtype not in fast_dtypes:
        return
    from tactful.backend import fast

    try:
        m.fast = fast.enable(loaded.model)
    except Exception as exc:  # a model or torch build the packing does not handle: stock path
        log.warning("fast decoding off for %s: %s", loaded.name, exc)
        m.fast = None
