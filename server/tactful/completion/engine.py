"""The completion path, one stage after the other: type-along (``typealong``) -> context
(``context``) -> stage 1 (the cascade's hooks) -> the cache (``cache``) or the model (``request``,
``deadline``) -> post-process (``postprocess``) -> stage 2 -> the item. One ``CompletionEngine``
per server; LSP handlers only translate. This module owns the order of the stages, supersession
and the per-document state; it must not hold the stages' own rules (they live in those modules).

Guarantees: a newer request for a document cancels the older one's generation (within one
decoding step); a result is never returned once a newer request for the same document has
arrived; the event loop never runs model code (``ModelRunner`` does).

Concurrency (the rule is in ``backend/runner.py``): everything here runs on the event loop,
including the callback that extends a suggestion when its generation ends, so the engine's own
state needs no lock; the model worker only runs ``backend.generate`` and publishes its progress.

Deadline (``completion.deadlineMs``): when the model is still writing after that long, the
request is answered with the whole words written so far, and the generation goes on. Requests
that type along the part on screen do not cancel it; when it ends, the shown suggestion is
extended to the whole text, which type-along then serves (and the accept of the part on screen
brings the rest as the next ghost text).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tactful.backend.runner import PRIORITY_COMPLETION, ModelRunner
from tactful.backend.types import Backend, GenerateRequest, Generation, ModelError
from tactful.cache import JsonCache
from tactful.cascade.hooks import (
    Decision,
    Judged,
    NullHooks,
    RequestInfo,
    SuggestionHooks,
    SuggestionInfo,
)
from tactful.completion import cache
from tactful.completion import postprocess as pp
from tactful.completion.context import CompletionContext, build_context
from tactful.completion.deadline import (
    INVOKED_WAIT_S,
    WAIT_FOR_REST_S,
    Continuing,
    Writing,
    extends,
    stop_point,
    until_deadline,
)
from tactful.completion.request import make_generate_request, part_info
from tactful.completion.typealong import Shown, past_the_part, type_along
from tactful.config import Settings

log = logging.getLogger(__name__)

#: Documents larger than this get no tree-sitter pass on each keystroke (line rules instead).
MAX_PARSE_CHARS = 1_000_000


@dataclass
class Suggestion:
    """What the server returns: insert ``text`` at ``offset``; ``id`` goes into the accept command."""

    id: str
    text: str
    offset: int
    source: str
    multiline: bool
    context_class: str = "other"
    info: SuggestionInfo | None = None


@dataclass
class Generated:
    """The model stage's answer: the suggestion's text and info (post-processed), and, when it
    was cut at the deadline, the generation that goes on writing it."""

    text: str
    info: SuggestionInfo
    going_on: Writing | None = None


@dataclass
class EngineStats:
    """Counters since start (the status command's ``stats``)."""

    #: Requests, and those answered with a suggestion.
    requests: int = 0
    answered: int = 0
    #: Answered by type-along / from the completion cache, with no model call.
    type_along: int = 0
    cache_hits: int = 0
    #: Model calls, and those cancelled (a newer request, ``$/cancelRequest``).
    model_calls: int = 0
    cancelled: int = 0
    #: Answers dropped because a newer request or an edit came first.
    superseded: int = 0
    #: Not shown by the cascade: before generation (stage 1) / with the suggestion (stage 2).
    skipped_stage1: int = 0
    hidden_stage2: int = 0
    #: Generations that left nothing after post-processing / failed.
    empty: int = 0
    errors: int = 0
    #: Answered at the deadline with the words written so far / extended when the model ended.
    partial: int = 0
    extended: int = 0
    #: Generations stopped to leave the model to another document's request (what they had
    #: written by then, cut where a person would stop, is their answer).
    preempted: int = 0
    #: Prompt tokens run through the model / served from a document's KV cache.
    prefilled_tokens: int = 0
    reused_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class CompletionEngine:
    """Serves suggestions for documents; owns type-along state, supersession and the cache."""

    def __init__(
        self,
        runner: ModelRunner,
        settings: Callable[[], Settings],
        hooks: Callable[[], SuggestionHooks] | None = None,
        cache: JsonCache | None = None,
    ) -> None:
        self.runner = runner
        self._settings = settings
        self._hooks = hooks or (lambda: NullHooks())
        self.cache = cache
        self.stats = EngineStats()
        #: Milliseconds from request to answer of the recent suggestions the model wrote.
        self.model_answer_ms: deque[float] = deque(maxlen=1000)
        self._latest: dict[str, int] = {}
        self._inflight: dict[str, threading.Event] = {}
        #: Generations writing suggestions shown in part.
        self._continuing = Continuing()
        self._shown: dict[str, Shown] = {}
        self._seq = 0
        #: Repository context (``tactful.workspace``): (uri, text, offset, language id, prompt
        #: start, backend) -> the prompt's preamble; None: only the current file.
        self.repo_context: Callable[[str, str, int, str, int, Backend], str] | None = None

    def latency_summary(self) -> dict[str, float | int | None]:
        """Median and 95th percentile of the recent model-written answers, request to answer."""
        from tactful import stats  # here: it loads numpy, which the server does not need to start

        xs = list(self.model_answer_ms)

        def ms(q: float) -> float | None:
            v = stats.percentile(xs, q)
            return None if v is None else round(v, 1)

        return {"n": len(xs), "p50Ms": ms(50), "p95Ms": ms(95)}

    def forget(self, uri: str) -> None:
        """A document closed: drop its state and KV cache."""
        for key in (uri, f"{uri}#list"):
            self._shown.pop(key, None)
            ev = self._inflight.pop(key, None)
            if ev is not None:
                ev.set()
            self._latest.pop(key, None)
        backend = self.runner.backend
        if backend is not None:
            self.runner.submit(lambda: backend.drop_cache(uri), PRIORITY_COMPLETION)

    def clear_shown(self, uri: str) -> None:
        self._shown.pop(uri, None)

    def is_latest(self, uri: str, seq: int) -> bool:
        return self._latest.get(uri) == seq

    async def complete(
        self,
        *,
        uri: str,
        text: str,
        offset: int,
        language_id: str,
        line: int,
        character: int,
        version: int | None = None,
        trigger: str = "automatic",
        single_line: bool = False,
        channel: str = "inline",
        current_version: Callable[[], int | None] | None = None,
    ) -> Suggestion | None:
        """One suggestion for the cursor at ``offset``, or None: type-along -> context ->
        stage 1 -> model (or cache) -> post-process -> stage 2 -> item.

        Requests supersede each other per ``channel`` ("inline" ghost text, "list" completion):
        an editor asking for both at once gets both answered.
        """
        t0 = time.perf_counter()
        settings = self._settings()
        key, seq = self._begin(uri, channel)
        # Type-along: the user typed the start of what is on screen; no model call.
        answered, along = await self._type_along(key, seq, text, offset, settings, language_id)
        if answered:
            return along
        # Context.
        backend = self.runner.ready_backend()
        if backend is None:
            return None
        ctx = self._context(backend, uri, text, offset, language_id, settings, single_line)
        req = RequestInfo(
            uri, language_id, text, offset, line, character, version, trigger,
            ctx.context_class, ctx.multiline,
        )  # fmt: skip
        # Stage 1: show a suggestion here at all?
        hooks = self._hooks()
        stage1 = self._stage1(hooks, req)
        if not stage1.show or not await self._debounced(key, seq, settings):
            return None
        # The model (or the cache), post-processed.
        gen = await self._generate(backend, ctx, settings, uri, key, trigger)
        if gen is None or self._superseded(key, seq, gen, version, current_version):
            return None
        # Stage 2: show this suggestion?
        stage2 = self._stage2(key, hooks, req, gen, stage1)
        if not stage2.show:
            return None
        # The item.
        shown = self._shown[key] = self._item(text, offset, ctx, gen)
        hooks.shown(Judged(req, gen.info, stage1, stage2), shown.suggestion.id)
        self._count_answer(gen, t0)
        if gen.going_on is not None:
            self._keep_writing(key, uri, shown, gen.going_on, ctx, backend, settings)
        return shown.suggestion

    # --- the stages ----------------------------------------------------------------------------
    def _begin(self, uri: str, channel: str) -> tuple[str, int]:
        """Count the request; its channel's key (the ``uri`` for ghost text) and its sequence
        number, which makes it the latest for that key."""
        key = uri if channel == "inline" else f"{uri}#{channel}"
        self.stats.requests += 1
        self._seq += 1
        self._latest[key] = self._seq
        return key, self._seq

    def _still_latest(self, key: str, seq: int) -> bool:
        """False (counted as superseded) when a newer request for ``key`` has arrived."""
        if self.is_latest(key, seq):
            return True
        self.stats.superseded += 1
        return False

    async def _type_along(
        self, key: str, seq: int, text: str, offset: int, settings: Settings, language_id: str
    ) -> tuple[bool, Suggestion | None]:
        """(True, the rest of the suggestion on screen) when the user typed its start; (True,
        None) when a newer request came meanwhile or completions are off for the language;
        (False, None): go on to the model."""
        enabled = settings.language_enabled(language_id)
        shown = self._shown.get(key)
        along = settings.completion.type_along and enabled
        rest = type_along(shown, text, offset) if along else None
        if rest is None and enabled and shown is not None and past_the_part(shown, text, offset):
            # Accepted or typed all of the part on screen while the model still writes the rest:
            # its end is the quickest answer (a new model call would start from scratch).
            assert shown.writing is not None
            await asyncio.wait({shown.writing}, timeout=WAIT_FOR_REST_S)
            if not self._still_latest(key, seq):
                return True, None
            rest = type_along(shown, text, offset) if along else None
        self._cancel_previous(key, shown, rest)
        if not enabled:
            return True, None
        if rest is not None and shown is not None:
            return True, self._along(shown, rest, offset)
        self._shown.pop(key, None)
        return False, None

    def _cancel_previous(self, key: str, shown: Shown | None, rest: str | None) -> None:
        """Cancel-previous: the older generation stops within one step, unless it is the one
        still writing the suggestion that the user is typing along."""
        previous = self._inflight.get(key)
        if previous is not None and (
            rest is None or shown is None or shown.pending is not previous
        ):
            del self._inflight[key]
            previous.set()

    def _along(self, shown: Shown, rest: str, offset: int) -> Suggestion:
        self.stats.type_along += 1
        self.stats.answered += 1
        s = shown.suggestion
        return Suggestion(s.id, rest, offset, "type_along", s.multiline, s.context_class, s.info)

    def _context(
        self,
        backend: Backend,
        uri: str,
        text: str,
        offset: int,
        language_id: str,
        settings: Settings,
        single_line: bool,
    ) -> CompletionContext:
        """The prompt's context: the document around the cursor (a window of it, without a
        tree-sitter pass, when it is huge) and the repository context's preamble."""
        parse_text = text if len(text) <= MAX_PARSE_CHARS else ""
        ctx = build_context(
            text if parse_text else text[max(0, offset - 20000) : offset + 4000],
            offset if parse_text else min(offset, 20000),
            language_id if parse_text else "plaintext",
            context_tokens=settings.completion.context_tokens,
            multiline_enabled=settings.completion.multiline and not single_line,
            fim=backend.fim,
        )
        if self.repo_context is not None and len(text) <= MAX_PARSE_CHARS:
            ctx.preamble = self.repo_context(
                uri, text, offset, language_id, ctx.prefix_start, backend
            )
        return ctx

    def _stage1(self, hooks: SuggestionHooks, req: RequestInfo) -> Decision:
        """Stage 1, before generation: the cascade's decision from the context alone (a skip is
        counted and told to the hooks)."""
        stage1 = hooks.before_generation(req)
        if not stage1.show:
            self.stats.skipped_stage1 += 1
            hooks.skipped(req, stage1)
        return stage1

    def _superseded(
        self,
        key: str,
        seq: int,
        gen: Generated,
        version: int | None,
        current_version: Callable[[], int | None] | None,
    ) -> bool:
        """True (counted, the generation going on stopped) when a newer request for ``key``
        came or the document was edited while the suggestion was written."""
        if self.is_latest(key, seq) and not _edited(version, current_version):
            return False
        self.stats.superseded += 1
        self._stop_writing(key, gen.going_on)
        return True

    def _stage2(
        self, key: str, hooks: SuggestionHooks, req: RequestInfo, gen: Generated, stage1: Decision
    ) -> Decision:
        """Stage 2, with the suggestion: the cascade's decision (a hidden suggestion is counted
        and told to the hooks, and its generation going on is stopped)."""
        stage2 = hooks.after_generation(req, gen.info, stage1)
        if not stage2.show:
            self.stats.hidden_stage2 += 1
            hooks.hidden(Judged(req, gen.info, stage1, stage2))
            self._stop_writing(key, gen.going_on)
        return stage2

    def _count_answer(self, gen: Generated, t0: float) -> None:
        """An answer shown; for a model-written one, its time from the request (``t0``)."""
        self.stats.answered += 1
        if gen.info.source == "model":
            self.model_answer_ms.append((time.perf_counter() - t0) * 1000)

    async def _debounced(self, key: str, seq: int, settings: Settings) -> bool:
        """Wait ``completion.debounceMs``; False when a newer request came meanwhile."""
        debounce = settings.completion.debounce_ms
        if not debounce:
            return True
        await asyncio.sleep(debounce / 1000)
        return self._still_latest(key, seq)

    async def _generate(
        self,
        backend: Backend,
        ctx: CompletionContext,
        settings: Settings,
        uri: str,
        channel_key: str,
        trigger: str = "automatic",
    ) -> Generated | None:
        """The suggestion from the cache, else from the model (post-processed); None when there
        is none (cancelled, empty, a model error)."""
        hit = cache.lookup(self.cache, backend, ctx, settings)
        if hit is not None:
            self.stats.cache_hits += 1
            return Generated(hit.text, hit)
        greq = make_generate_request(ctx, settings, uri, backend.fim)
        # Fair scheduling: another document's request that waits stops this one (``give_way``).
        greq.give_way = self.runner.give_way
        self._make_room(uri)
        self.stats.model_calls += 1
        t0 = time.perf_counter()
        try:
            fut = asyncio.wrap_future(
                self.runner.start(
                    lambda b: b.generate(greq), PRIORITY_COMPLETION, owner=uri, cancel=greq.cancel
                )
            )
        except ModelError as exc:
            self.stats.errors += 1
            log.warning("completion failed: %s", exc)
            return None
        self._inflight[channel_key] = greq.cancel
        deadline = _deadline_s(settings, channel_key == uri, trigger)
        return await self._await_model(fut, greq, backend, ctx, settings, channel_key, deadline, t0)

    def _make_room(self, uri: str) -> None:
        """Before a model call for ``uri``: generations going on for other documents stop, and
        likewise a request still waiting for its first words in another document (a long
        prompt's prefill): it is answered with nothing, and what it prefilled stays in that
        document's KV cache for its next request (one cursor, one model thread)."""
        self._continuing.make_room(uri)
        for other, pending in list(self._inflight.items()):
            if other not in (uri, f"{uri}#list"):
                pending.set()

    async def _await_model(
        self,
        fut: asyncio.Future[Generation],
        greq: GenerateRequest,
        backend: Backend,
        ctx: CompletionContext,
        settings: Settings,
        channel_key: str,
        deadline: float,
        t0: float,
    ) -> Generated | None:
        """The model's suggestion: the whole of it, or when ``deadline`` (s, 0 for none) passes
        first, the whole words written so far with the generation that goes on writing."""
        going_on = False
        try:
            if deadline:
                part = await until_deadline(fut, greq, ctx, deadline)
                if part is not None:
                    going_on = True
                    info = part_info(part, greq.partial, backend.name, time.perf_counter() - t0)
                    return Generated(part, info, Writing(fut, greq))
            result: Generation = await fut
        except asyncio.CancelledError:
            greq.cancel.set()  # $/cancelRequest: stop the generation too
            self.stats.cancelled += 1
            raise
        except ModelError as exc:
            self.stats.errors += 1
            log.warning("completion failed: %s", exc)
            return None
        finally:
            if not going_on and self._inflight.get(channel_key) is greq.cancel:
                del self._inflight[channel_key]
        return self._generated(result, backend, ctx, settings)

    def _count_tokens(self, result: Generation) -> None:
        self.stats.prefilled_tokens += result.prompt_tokens - result.reused_tokens
        self.stats.reused_tokens += result.reused_tokens

    def _generated(
        self, result: Generation, backend: Backend, ctx: CompletionContext, settings: Settings
    ) -> Generated | None:
        """A finished generation, post-processed and cached; None when cancelled or empty."""
        self._count_tokens(result)
        log.debug(
            "generation: %d prompt tokens (%d reused), %d generated, %.0f ms%s",
            result.prompt_tokens,
            result.reused_tokens,
            len(result.tokens),
            result.seconds * 1000,
            ", cancelled" if result.cancelled else "",
        )
        if result.cancelled:
            self.stats.cancelled += 1
            return None
        self.stats.preempted += result.preempted
        raw = result.text
        if not result.stopped:  # the token cap or giving way ended it: stop where a person would
            raw = raw[: stop_point(raw)]
        text = pp.postprocess(raw, ctx)
        if text is None:
            self.stats.empty += 1
            return None
        info = part_info(text, result, backend.name)
        cache.remember(self.cache, backend, ctx, settings, info)
        return Generated(text, info)

    @staticmethod
    def _item(text: str, offset: int, ctx: CompletionContext, gen: Generated) -> Shown:
        """The suggestion to show, as it stands on screen (for type-along)."""
        sugg = Suggestion(
            uuid.uuid4().hex, gen.text, offset, gen.info.source, ctx.multiline,
            ctx.context_class, gen.info,
        )  # fmt: skip
        return Shown(text[:offset], text[offset:], offset, sugg)

    # --- the deadline continuation -------------------------------------------------------------
    def _keep_writing(
        self,
        key: str,
        uri: str,
        shown: Shown,
        going_on: Writing,
        ctx: CompletionContext,
        backend: Backend,
        settings: Settings,
    ) -> None:
        """A suggestion shown in part: its generation goes on, and its end extends it."""
        fut, greq = going_on.future, going_on.request
        shown.pending, shown.writing = greq.cancel, fut
        self._continuing.add(greq, uri)
        self.stats.partial += 1
        fut.add_done_callback(
            lambda f: self._finished_in_background(f, key, shown, greq, ctx, backend, settings)
        )

    def _finished_in_background(
        self,
        fut: asyncio.Future[Generation],
        key: str,
        shown: Shown,
        greq: GenerateRequest,
        ctx: CompletionContext,
        backend: Backend,
        settings: Settings,
    ) -> None:
        """The generation behind a suggestion shown in part ended: extend the suggestion (for
        type-along and the accept) if it is still the one on screen."""
        shown.pending = shown.writing = None
        self._continuing.discard(greq)
        if self._inflight.get(key) is greq.cancel:
            del self._inflight[key]
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self.stats.errors += 1
            log.warning("completion failed while writing the rest of a suggestion: %s", exc)
            return
        result = fut.result()
        self._count_tokens(result)
        if result.cancelled:
            self.stats.cancelled += 1
            return
        written = result.text[: stop_point(result.text)] if result.preempted else result.text
        text = pp.postprocess(written, ctx)
        if text is None:
            return
        cache.remember(self.cache, backend, ctx, settings, part_info(text, result, backend.name))
        if self._shown.get(key) is not shown or not extends(shown, text):
            return
        shown.suggestion.text = text
        self.stats.extended += 1
        self._hooks().extended(shown.suggestion.id, text)

    def _stop_writing(self, key: str, going_on: Writing | None) -> None:
        if going_on is None:
            return
        greq = going_on.request
        greq.cancel.set()
        self._continuing.discard(greq)
        if self._inflight.get(key) is greq.cancel:
            del self._inflight[key]


def _deadline_s(settings: Settings, ghost_text: bool, trigger: str) -> float:
    """How long a request waits for the whole suggestion before it is answered with a part (0:
    no deadline). Ghost text only: type-along brings the rest of a part there; a list item is
    picked whole from a menu, so the list channel waits for the whole suggestion. A user who
    asked (Alt+\\) waits for the whole suggestion too, within a bound."""
    deadline = settings.completion.deadline_ms / 1000 if ghost_text else 0.0
    if deadline and trigger == "invoked":
        deadline = max(deadline, INVOKED_WAIT_S)
    return deadline


def _edited(version: int | None, current_version: Callable[[], int | None] | None) -> bool:
    """True when the document is no longer at the version the request was made for."""
    return current_version is not None and version is not None and current_version() != version


__all__ = ["CompletionEngine", "Decision", "Suggestion", "type_along"]
