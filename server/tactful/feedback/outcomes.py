"""Outcome inference: what the server can tell about a shown suggestion from what it sees.

This module owns :class:`Pending` (one suggestion from request to outcome) and the rules that
read the user's next move: a new request (typing along, or a rejection: ``new_request`` /
``cursor_left``), an edit (``diverged``, or the whole suggestion typed in), the reject clock
(``timeout`` / ``typed_through``) and what an accept took. Plain functions over plain data,
with the text matching of :mod:`tactful.feedback.matching`; the state, the lock and the log
are the tracker's (:mod:`tactful.feedback.tracker`), the checks after an accept
:mod:`tactful.feedback.survival`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from tactful.cascade.hooks import RequestInfo
from tactful.feedback.matching import typed_prefix, typed_state


@dataclass
class Pending:
    """One request's suggestion from request to outcome (and survival checks after an accept)."""

    req: RequestInfo
    requested_at: float
    item_id: str | None = None
    text: str = ""
    #: Characters shown at first when ``text`` was extended later (the completion deadline).
    shown_chars: int | None = None
    shown_at: float | None = None
    deadline: float | None = None
    outcome: str | None = None  # "accepted" | "rejected"
    client_shown: bool = False  # the client reported it displayed (didShowCompletion)
    inserted: bool = False
    accepted_text: str = ""
    anchor: str = ""
    survival_due: list[float] = field(default_factory=list)
    accepted_at: float | None = None

    @property
    def before(self) -> str:
        """The document before the cursor at request time."""
        return self.req.text[: self.req.offset]

    @property
    def after(self) -> str:
        """The document after the cursor at request time."""
        return self.req.text[self.req.offset :]


def on_request(p: Pending, req: RequestInfo) -> str | None:
    """What a new request says about the shown, undecided ``p``: None while the user types
    along it (still on screen), else the rejection reason."""
    if p.req.uri != req.uri:
        return "cursor_left"
    state = typed_state(p, req.text)
    typed = len(typed_prefix(p, req.text))
    if state in ("typing", "inserted") and req.offset == p.req.offset + typed:
        return None
    moved = req.text == p.req.text and req.offset != p.req.offset
    return "cursor_left" if moved else "new_request"


def on_edit(p: Pending, text: str) -> str | None:
    """What an edit of ``p``'s document says: "diverged" (a rejection), "inserted" (the whole
    suggestion is in: an accept may still come), or None (nothing decided)."""
    state = typed_state(p, text)
    return state if state in ("diverged", "inserted") else None


def on_timeout(p: Pending) -> str:
    """The rejection reason when the reject clock runs out."""
    return "typed_through" if p.inserted else "timeout"


class Taken(NamedTuple):
    """What an accept took."""

    text: str
    #: The accepted length to log: what the client said, or all of the suggestion.
    length: int
    full: bool
    #: Characters of the suggestion the document held before (typed or inserted).
    typed: int


def taken(p: Pending, accepted_length: int | None, doc: str) -> Taken:
    """What an accept of ``p`` took (``accepted_length`` None: all of it) with the document now
    ``doc``."""
    typed = len(typed_prefix(p, doc))
    if accepted_length is None and p.shown_chars is not None:
        # An accept of "all" of an extended suggestion takes what was on screen: the part
        # shown at first, or more if the document holds more of it.
        accepted_length = len(p.text) if typed >= len(p.text) else max(typed, p.shown_chars)
    length = len(p.text) if accepted_length is None else int(accepted_length)
    if length >= len(p.text) or accepted_length is None:
        return Taken(p.text, length, True, typed)
    # Clients apply the accepted text before they report it, so the document usually holds
    # it already (``typed``); VS Code reports a cumulative length, others the length taken
    # from the remainder on screen. The larger of the two is what the document can confirm
    # without counting any text twice.
    n = min(len(p.text), max(typed, length))
    return Taken(p.text[:n], length, False, typed)
