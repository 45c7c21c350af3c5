"""The prompt of a generation, as plain strings (no torch): the fill-in-the-middle template when
the model has one and there is a suffix, else the prefix with its end healed back.

Token healing: the prompt ends before trailing whitespace and, with a tokenizer, before a
trailing partial word ("ret" -> the model may write "return"); the generation then starts with
a token that begins with the healed text, which is dropped from the answer. Used by the
in-process backend (``hf``); a backend that cannot constrain its first token (an inference
engine) calls it without ``last_token`` and gets the prefix unhealed.
"""

from __future__ import annotations

from collections.abc import Callable

from tactful.backend.fim import FimTemplate
from tactful.backend.types import GenerateRequest

#: Characters healed away from the end of a prompt.
HEAL_CHARS = " \t\n\r"


def build_prompt(
    req: GenerateRequest,
    template: FimTemplate | None,
    last_token: Callable[[str], str] | None = None,
) -> tuple[str, str]:
    """The prompt text and the text healed away from its end (regenerated, then dropped).

    ``last_token(text)``: the text of the last token of ``text`` as the model's tokenizer cuts
    it (empty when there is none); without it, only trailing whitespace could be healed, so
    nothing is (the prompt is the prefix as written). ``req.preamble`` (repository context)
    starts the prompt in every case, before the FIM template's first token."""
    if req.use_fim and template is not None and req.suffix:
        return req.preamble + template.render(req.prefix, req.suffix), ""
    if last_token is None:
        return req.preamble + req.prefix, ""
    base = req.prefix.rstrip(HEAL_CHARS)
    heal = req.prefix[len(base) :]
    if not heal and base:
        # Back off a trailing partial word too ("ret" -> allow "return").
        last = last_token(base)
        if (
            last
            and last.strip()
            and (last[-1].isalnum() or last[-1] == "_")
            and len(last) < len(base)
        ):
            base, heal = base[: -len(last)], last
    return req.preamble + base, heal
