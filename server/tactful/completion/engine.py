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

import argparse
import asyncio
import logging
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
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
        key = uri if channel == "inline" else f"{uri}#{channel}"
        seq = self._begin(key)
        # Type-along: the user typed the start of what is on screen; no model call.
        enabled = settings.language_enabled(language_id)
        answered, along = await self._type_along(key, seq, text, offset, settings, enabled)
        if answered or not enabled:
            return along
        # Context.
        backend = self.runner.ready_backend()
        if backend is None:
            return None
        ctx = self._context(backend, text, offset, language_id, settings, single_line)
        if self.repo_context is not None and len(text) <= MAX_PARSE_CHARS:
            ctx.preamble = self.repo_context(
                uri, text, offset, language_id, ctx.prefix_start, backend
            )
        req = RequestInfo(
            uri, language_id, text, offset, line, character, version, trigger,
            ctx.context_class, ctx.multiline,
        )  # fmt: skip
        # Stage 1: show a suggestion here at all?
        hooks = self._hooks()
        stage1 = hooks.before_generation(req)
        if not stage1.show:
            self.stats.skipped_stage1 += 1
            hooks.skipped(req, stage1)
            return None
        if not await self._debounced(key, seq, settings):
            return None
        # The model (or the cache), post-processed.
        gen = await self._generate(backend, ctx, settings, uri, key, trigger)
        if gen is None:
            return None
        if not self.is_latest(key, seq) or _edited(version, current_version):
            self.stats.superseded += 1
            self._stop_writing(key, gen.going_on)
            return None
        # Stage 2: show this suggestion?
        stage2 = hooks.after_generation(req, gen.info, stage1)
        if not stage2.show:
            self.stats.hidden_stage2 += 1
            hooks.hidden(Judged(req, gen.info, stage1, stage2))
            self._stop_writing(key, gen.going_on)
            return None
        # The item.
        shown = self._shown[key] = self._item(text, offset, ctx, gen)
        sugg = shown.suggestion
        hooks.shown(Judged(req, gen.info, stage1, stage2), sugg.id)
        self.stats.answered += 1
        if gen.info.source == "model":
            self.model_answer_ms.append((time.perf_counter() - t0) * 1000)
        if gen.going_on is not None:
            self._keep_writing(key, uri, shown, gen.going_on, ctx, backend, settings)
        return sugg

    # --- the stages ----------------------------------------------------------------------------
    def _begin(self, key: str) -> int:
        """Count the request; its sequence number, which makes it the latest for ``key``."""
        self.stats.requests += 1
        self._seq += 1
        self._latest[key] = self._seq
        return self._seq

    def _still_latest(self, key: str, seq: int) -> bool:
        """False (counted as superseded) when a newer request for ``key`` has arrived."""
        if self.is_latest(key, seq):
            return True
        self.stats.superseded += 1
        return False

    async def _type_along(
        self, key: str, seq: int, text: str, offset: int, settings: Settings, enabled: bool
    ) -> tuple[bool, Suggestion | None]:
        """(True, the rest of the suggestion on screen) when the user typed its start; (True,
        None) when a newer request came meanwhile; (False, None): go on to the model."""
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

    @staticmethod
    def _context(
        backend: Backend,
        text: str,
        offset: int,
        language_id: str,
        settings: Settings,
        single_line: bool,
    ) -> CompletionContext:
        parse_text = text if len(text) <= MAX_PARSE_CHARS else ""
        return build_context(
            text if parse_text else text[max(0, offset - 20000) : offset + 4000],
            offset if parse_text else min(offset, 20000),
            language_id if parse_text else "plaintext",
            context_tokens=settings.completion.context_tokens,
            multiline_enabled=settings.completion.multiline and not single_line,
            fim=backend.fim,
        )

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
        self._continuing.make_room(uri)
        # Likewise a request still waiting for its first words in another document (a long
        # prompt's prefill): it is answered with nothing, and what it prefilled stays in that
        # document's KV cache for its next request (one cursor, one model thread).
        for other, pending in list(self._inflight.items()):
            if other not in (uri, f"{uri}#list"):
                pending.set()
        self.stats.model_calls += 1
        t0 = time.perf_counter()
        try:
            fut = asyncio.wrap_future(
                self.runner.start(lambda b: b.generate(greq), PRIORITY_COMPLETION)
            )
        except ModelError as exc:
            self.stats.errors += 1
            log.warning("completion failed: %s", exc)
            return None
        self._inflight[channel_key] = greq.cancel
        going_on = False
        try:
            # Ghost text only: type-along brings the rest of a part there; a list item is
            # picked whole from a menu, so the list channel waits for the whole suggestion.
            # A user who asked (Alt+\\) waits for the whole suggestion too, within a bound.
            deadline = settings.completion.deadline_ms / 1000 if channel_key == uri else 0.0
            if deadline and trigger == "invoked":
                deadline = max(deadline, INVOKED_WAIT_S)
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
        raw = result.text
        if not result.stopped:  # the token cap ended it: end where a person would stop
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
        text = pp.postprocess(result.text, ctx)
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


def _edited(version: int | None, current_version: Callable[[], int | None] | None) -> bool:
    """True when the document is no longer at the version the request was made for."""
    return current_version is not None and version is not None and current_version() != version


def complete_text(
    backend: Backend, text: str, offset: int, language_id: str, settings: Settings | None = None
) -> str | None:
    """One-shot completion of ``text`` at ``offset`` (no server, no cache): for scripts and tests."""
    settings = settings or Settings()
    ctx = build_context(
        text,
        offset,
        language_id,
        context_tokens=settings.completion.context_tokens,
        multiline_enabled=settings.completion.multiline,
        fim=backend.fim,
    )
    gen = backend.generate(make_generate_request(ctx, settings, None, backend.fim))
    return pp.postprocess(gen.text, ctx)


def main(argv: Sequence[str]) -> int:
    """``tactful complete FILE LINE COL``: print the suggestion at a 1-based position."""
    from pathlib import Path

    from tactful import paths, syntax
    from tactful.backend.hf import TransformersBackend
    from tactful.documents import Document

    parser = argparse.ArgumentParser(prog="tactful complete")
    parser.add_argument("file")
    parser.add_argument("line", type=int, help="1-based line")
    parser.add_argument(
        "column", type=int, help="1-based column (UTF-16 units); past the end = end of line"
    )
    parser.add_argument("--model", default=None)
    parser.add_argument("--language", default=None)
    args = parser.parse_args(list(argv))
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"tactful complete: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    doc = Document("file://" + args.file, text)
    offset = doc.offset_at(args.line - 1, args.column - 1)
    try:
        backend = TransformersBackend.load(args.model, cache_dir=paths.cache_dir())
    except ModelError as exc:
        print(f"tactful complete: {exc}", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    out = complete_text(
        backend, text, offset, args.language or syntax.language_from_path(args.file)
    )
    print(out if out is not None else "", end="\n" if out else "")
    print(f"[{time.perf_counter() - t0:.2f} s]", file=sys.stderr)
    return 0


__all__ = ["CompletionEngine", "Decision", "Suggestion", "complete_text", "type_along"]
