"""Code survival: how much of an accepted suggestion is still in the document later.

After an accept the tracker (:mod:`tactful.feedback.tracker`) schedules checks at
``SURVIVAL_CHECKPOINTS_S`` (:func:`schedule`); :func:`due_checks` turns the checks due by now
into the data of ``survival`` events (the share of the accepted text still near its place, from
:func:`tactful.feedback.matching.survival_fraction`). At shutdown or when the document closes the
remaining checks are made at once, marked ``early``. Plain functions; the tracker logs.
"""

from __future__ import annotations

from typing import Any

from tactful.feedback.matching import survival_fraction
from tactful.feedback.outcomes import Pending

SURVIVAL_CHECKPOINTS_S = (30.0, 120.0, 600.0)
#: Characters before the insertion point kept to find it again after edits above it.
ANCHOR_CHARS = 40


def schedule(p: Pending, now: float) -> None:
    """Start the survival checks of ``p``, accepted at ``now``."""
    p.accepted_at = now
    p.anchor = p.before[-ANCHOR_CHARS:]
    p.survival_due = [now + s for s in SURVIVAL_CHECKPOINTS_S]


def due_checks(p: Pending, doc: str | None, now: float, final: bool) -> list[dict[str, Any]]:
    """The data of the ``survival`` events due by ``now`` (all that remain when ``final``),
    taken off ``p.survival_due``; ``doc`` None: the document is closed."""
    out: list[dict[str, Any]] = []
    while p.survival_due and (final or now >= p.survival_due[0]):
        due = p.survival_due.pop(0)
        after = round(due - (p.accepted_at or due), 1)
        if doc is None:
            out.append({"after_s": after, "survived": None, "reason": "closed"})
            continue
        frac = survival_fraction(p.accepted_text, doc, p.req.offset, p.anchor)
        out.append({"after_s": after, "survived": round(frac, 4), "early": final and now < due})
    return out
