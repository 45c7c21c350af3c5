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
#: An explicitly invoked request waits this long for the whole suggestion before it, too, is
#: answered with the part written so far (a slow machine, a long prompt).
INVOKED_WAIT_S = 10.0


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
    """What can be shown of a generation that is still running: its text up to the last place a
    person would stop (:func:`stop_point`: whole words, brackets and strings balanced, no
    trailing operator), post-processed; None when nothing is left."""
    cut = _TRAILING_WORD.sub("", written)  # the last word may still grow
    end = stop_point(cut)
    if not cut[:end].strip():
        return None
    return pp.postprocess(cut[:end], ctx)


_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = frozenset(")]}")
#: A text ending in one of these is cut mid-expression.
_DANGLING = frozenset("+-*/%=<>&|^~!,.:;([{@\\")
#: Keywords that need what follows them.
_LEAD_WORDS = frozenset(
    [
        "if",
        "elif",
        "while",
        "for",
        "in",
        "and",
        "or",
        "not",
        "is",
        "lambda",
        "with",
        "as",
        "from",
        "import",
        "def",
        "class",
        "assert",
        "del",
        "raise",
        "global",
        "nonlocal",
        "await",
        "async",
        "yield",
        "else",
        "try",
        "except",
        "finally",
        "case",
        "match",
    ]
)
_LAST_WORD = re.compile(r"(\w+)\s*\Z")


def stop_point(text: str) -> int:
    """The end of the longest prefix of ``text`` that a person could stop at: outside strings
    and comments' starts, every bracket it opens closed (closers of brackets opened before the
    suggestion are fine), and not ending in an operator, a comma or a keyword that needs more.
    Once a line is complete, a cut in the next, unfinished one goes back to that line's end.
    0 when there is none."""
    best = 0
    line_end = 0  # the best stop at the end of a complete line
    depth = 0
    quote: str | None = None
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quote is not None:
            if ch == "\\":
                i += 2
                continue
            if text.startswith(quote, i):
                i += len(quote)
                quote = None
                if depth == 0:
                    best = max(best, _candidate(text, i))
                continue
            if ch == "\n" and len(quote) == 1:
                quote = None  # an unclosed one-line string: the line is broken anyway
                return best
            i += 1
            continue
        if ch in "\"'":
            quote = ch * 3 if text.startswith(ch * 3, i) else ch
            i += len(quote)
            continue
        if ch == "#":  # a comment: the code before it is the candidate
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if ch == "\n" and depth == 0 and best and text[:i].rstrip() == text[:best]:
            line_end = best
        if ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth = max(0, depth - 1)
        i += 1
        if depth == 0 and (i == n or not (text[i].isalnum() or text[i] in "_'\"")):
            best = max(best, _candidate(text, i))
    return line_end if line_end and "\n" in text[line_end:best] else best


def _candidate(text: str, end: int) -> int:
    """``end`` when ``text[:end]`` ends where a person could stop, else 0."""
    head = text[:end].rstrip()
    if not head or head[-1] in _DANGLING:
        return 0
    m = _LAST_WORD.search(head)
    if m is not None and m.group(1) in _LEAD_WORDS:
        return 0
    return len(head)


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
