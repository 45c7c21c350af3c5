"""Where a suggestion's text is in a document: typed along, inserted, diverged, or surviving
after an accept. Plain functions over text, used by the tracker (:mod:`tactful.feedback.tracker`)."""

from __future__ import annotations

import difflib
from typing import Protocol


class Placed(Protocol):
    """A suggestion at its place: the text before and after the cursor, and the suggestion."""

    @property
    def before(self) -> str: ...
    @property
    def after(self) -> str: ...
    @property
    def text(self) -> str: ...


def survival_fraction(accepted: str, doc: str, offset: int, anchor: str = "") -> float:
    """Share (0..1) of ``accepted`` still present near where it was inserted.

    The insertion point is re-found through ``anchor`` (the text just before it) when that
    text still occurs; the accepted text is then matched against a window around it.
    """
    if not accepted:
        return 1.0
    pos = offset
    if anchor:
        hits: list[int] = []
        start = doc.find(anchor)
        while start >= 0 and len(hits) < 50:
            hits.append(start + len(anchor))
            start = doc.find(anchor, start + 1)
        if hits:
            pos = min(hits, key=lambda h: abs(h - offset))
    margin = len(accepted) + 200
    lo, hi = max(0, pos - margin), min(len(doc), pos + len(accepted) + margin)
    sm = difflib.SequenceMatcher(None, accepted, doc[lo:hi], autojunk=False)
    # Runs of at least a few characters: single letters matched far apart are not survival.
    least = min(4, len(accepted))
    matched = sum(b.size for b in sm.get_matching_blocks() if b.size >= least)
    return min(1.0, matched / len(accepted))


def typed_prefix(p: Placed, text: str) -> str:
    """What was typed (or inserted) at the suggestion's position, if the document is still
    ``before + X + after``; '' otherwise."""
    if not text.startswith(p.before):
        return ""
    rest = text[len(p.before) :]
    if p.after:
        if not rest.endswith(p.after):
            return ""
        rest = rest[: len(rest) - len(p.after)]
    return rest


def typed_state(p: Placed, text: str) -> str:
    """ "same", "typing" (a proper prefix of the suggestion typed), "inserted" (all of it), or
    "diverged"."""
    if (
        len(text) < len(p.before) + len(p.after)
        or not text.startswith(p.before)
        or (p.after and not text.endswith(p.after))
    ):
        return "diverged"
    x = text[len(p.before) : len(text) - len(p.after)] if p.after else text[len(p.before) :]
    if not x:
        return "same"
    if p.text and x.startswith(p.text):
        # All of it is in (accepted and then typed on, or typed by hand): the accept command
        # may still come; otherwise the timeout says "typed_through".
        return "inserted"
    if p.text.startswith(x):
        return "typing"
    return "diverged"
