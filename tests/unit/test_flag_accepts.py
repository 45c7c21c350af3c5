"""A suggestion the user accepted from tactful reaches the line flags through the feedback hub,
and its lines are not flagged while unedited (the real server object, not started; no model)."""

from __future__ import annotations

import asyncio

from tactful.config import apply_settings
from tactful.lsp.server import create_server


def test_an_accepted_suggestion_is_left_out_until_edited() -> None:
    server = create_server()
    new, errors, _unknown = apply_settings(
        server.settings, {"feedback": {"enable": False}, "cdhf": {"enable": False}}
    )
    assert not errors
    server.settings = new
    hub, flags = server.feedback, server.flags
    assert hub is not None and flags is not None
    uri = "file:///tmp/accepts/a.py"
    before = "def total(items):\n    "
    accepted = "return sum(item.price for item in items)"

    async def scenario() -> None:
        server.documents.open(uri, before, "python", 1)
        flags.document_event("open", uri)  # the baseline: the text as opened
        hub.offered("s1", uri, accepted)  # what lsp.completion does when it answers
        hub.accepted("s1", None)
        hub.accepted("unknown-id", None)  # nothing known: nothing left out
        state = flags.docs[uri]
        lines = ["def total(items):", "    " + accepted, "x = 1"]
        focus = flags._focus(state, lines)
        assert focus.changed == {1, 2} and focus.exclude == {1}
        # Edited after the accept: a candidate again.
        lines[1] = "    return sum(item.price for item in items) + 1"
        assert flags._focus(state, lines).exclude == frozenset()
        flags.document_event("close", uri)

    asyncio.run(scenario())
