"""The completion deadline (``completion.deadlineMs``): when the model is still writing after
that long, the request is answered with the whole words written so far, and the generation goes
on; its end extends the suggestion on screen (``Continuing`` keeps those generations, ``extends``
says whether the end goes on from the part on screen; the engine does the rest).

Runs on the event loop; it only reads what the model worker has written (``GenerateRequest
.partial``) and never calls the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from dataclasses import dataclass
from typing import Any

from tactful.backend.types import GenerateRequest, Generation
from tactful.completion import postprocess as pp
from tactful.completion.context import CompletionContext
from tactful.completion.typealong import Shown

#: Longest wait, after the user typed all of a part on screen, for the model to end the rest.
WAIT_FOR_REST_S = 3.0


@dataclass
class Writing:
    """A generation that goes on writing a suggestion shown in part at the deadline."""

    future: asyncio.Future[Generation]
    request: GenerateRequest


class Continuing:
    """The generations still writing suggestions shown in part, with their documents' URIs."""

    def __init__(self) -> None:
        self._uri: dict[threading.Event, str] = {}

    def add(self, greq: GenerateRequest, uri: str) -> None:
        self._uri[greq.cancel] = uri

    def discard(self, greq: GenerateRequest) -> None:
        self._uri.pop(greq.cancel, None)

    def make_room(self, uri: str) -> None:
        """A new model call is about to need the one model thread: a suggestion shown in part
        in another document stays as it is instead of holding it up. (The list channel of the
        same document waits: editors ask for both at once.)"""
        for cancel, where in list(self._uri.items()):
            if where != uri:
                cancel.set()
                del self._uri[cancel]


def extends(shown: Shown, text: str) -> bool:
    """True when ``text``, the end of the generation behind a suggestion shown in part, goes on
    from what is on screen (and so replaces it, for type-along and the accept)."""
    part = shown.suggestion.text
    return len(text) > len(part) and text.startswith(part)


#: The last word (it may still grow), with a character whose bytes are still being written.
_TRAILING_WORD = re.compile(r"[\w\ufffd]+\Z")


def partial_text(written: str, ctx: CompletionContext) -> str | None:
    """What can be shown of a generation that is still running: its text up to the last word
    boundary (the last word may still grow), post-processed; None when nothing is left."""
    cut = _TRAILING_WORD.sub("", written)
    if not cut.strip():
        return None
    return pp.postprocess(cut, ctx)


async def until_deadline(
    fut: asyncio.Future[Generation],
    greq: GenerateRequest,
    ctx: CompletionContext,
    deadline: float,
) -> str | None:
    """Wait for the generation up to ``deadline`` seconds; if it is still running then, the
    whole words written so far as soon as there are any. None: it ended (or was cancelled)
    first, and ``fut`` holds its result.

    No polling: past the deadline, each token the model worker publishes wakes this wait
    (``GenerateRequest.watch``) through the event loop's thread-safe call."""
    done, _ = await asyncio.wait({fut}, timeout=deadline)
    if done:
        return None
    loop = asyncio.get_running_loop()
    grew = asyncio.Event()

    def wake() -> None:  # on the model worker
        # RuntimeError: the event loop is closed (the server is exiting), so nobody waits.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(grew.set)

    stop_watching = greq.watch(wake)
    try:
        while not fut.done():
            grew.clear()  # before reading: a token published after the read sets it again
            written = greq.partial
            part = partial_text(written.text, ctx) if written is not None else None
            if part is not None:
                return part
            waiter = asyncio.ensure_future(grew.wait())
            either: set[asyncio.Future[Any]] = {fut, waiter}
            try:
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
    finally:
        stop_watching()
    return None
