"""The stop rules of a generation, as plain functions of its text so far: shared by the
in-process backend (``hf``) and the inference-engine backend (``engine``), so that both cut a
suggestion at the same place."""

from __future__ import annotations

from tactful.backend.types import GenerateRequest


def should_stop(text: str, req: GenerateRequest) -> bool:
    """True when generation should end after ``text`` (single-line end, a stop string, or the
    request's own check)."""
    if req.single_line:
        stripped = text.lstrip("\n")
        if "\n" in stripped and stripped[: stripped.index("\n")].strip():
            return True
        if text.startswith("\n") and stripped.strip() == "" and len(text) > 200:
            return True
    if any(s in text for s in req.stop):
        return True
    check = req.should_stop
    return bool(check(text)) if callable(check) else False


def cut(text: str, req: GenerateRequest) -> str:
    """``text`` cut before its first stop string and, for single-line requests, at the end of
    its first line with text."""
    for s in req.stop:
        i = text.find(s)
        if i >= 0:
            text = text[:i]
    if req.single_line:
        lead = len(text) - len(text.lstrip("\n"))
        rest = text[lead:]
        if "\n" in rest:
            text = text[: lead + rest.index("\n")]
    return text
