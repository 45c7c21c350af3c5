"""Type-along: while the user types the start of the suggestion on screen, the rest of it is
the answer, with no model call. Plain functions of the shown suggestion and the document.

Owns ``Shown`` (the last suggestion shown for a document) and the checks on it; must not call
the model or the cascade (the engine does).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tactful.backend.types import Generation

if TYPE_CHECKING:
    from tactful.completion.engine import Suggestion


@dataclass
class Shown:
    """The last suggestion shown for a document, for type-along."""

    before: str
    after: str
    offset: int
    suggestion: Suggestion
    #: The cancel event of the generation still writing this suggestion (shown in part at the
    #: deadline), else None; ``writing`` is that generation's future.
    pending: threading.Event | None = None
    writing: asyncio.Future[Generation] | None = None


def type_along(shown: Shown | None, text: str, offset: int) -> str | None:
    """The rest of the shown suggestion if the user typed a prefix of it, else None."""
    if shown is None or offset < shown.offset:
        return None
    typed = text[shown.offset : offset]
    sugg = shown.suggestion.text
    if len(typed) >= len(sugg) or not sugg.startswith(typed):
        return None
    if text[offset:] != shown.after or text[: shown.offset] != shown.before:
        return None
    return sugg[len(typed) :]


def past_the_part(shown: Shown | None, text: str, offset: int) -> bool:
    """True when the user has typed (or accepted) all of a suggestion shown in part whose
    generation is still running, and maybe more: only its end can say what comes next."""
    if shown is None or shown.writing is None or shown.writing.done() or offset < shown.offset:
        return False
    if text[offset:] != shown.after or text[: shown.offset] != shown.before:
        return False
    return text[shown.offset : offset].startswith(shown.suggestion.text)
