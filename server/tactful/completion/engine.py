"""The completion path: context -> stage 1 -> type-along / cache / model -> post-process ->
stage 2 -> suggestion. One ``CompletionEngine`` per server; LSP handlers only translate.

Guarantees: a newer request for a document cancels the older one's generation (within one
decoding step); a result is never returned once a newer request for the same document has
arrived; the event loop never runs model code (``ModelRunner`` does).

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
import math
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tactful.backend.runner import PRIORITY_COMPLETION, ModelRunner
from tactful.backend.types import Backend, GenerateRequest, Generation, ModelError
from tactful.cache import JsonCache, cache_key
from tactful.cascade.hooks import Decision, NullHooks, RequestInfo, SuggestionHooks, SuggestionInfo
from tactful.completion import postprocess as pp
from tactful.completion.context import CompletionContext, build_context
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
class _Shown:
    """The last suggestion shown for a document, for type-along."""

    before: str
    after: str
    offset: int
    suggestion: Suggestion
    #: The cancel event of the generation still writing this suggestion (shown in part at the
    #: deadline), else None; ``writing`` is that generation's future.
    pending: threading.Event | None = None
    writing: asyncio.Future[Generation] | None = None


@dataclass
class EngineStats:
    requests: int = 0
    answered: int = 0
    type_along: int = 0
    cache_hits: int = 0
    model_calls: int = 0
    cancelled: int = 0
    superseded: int = 0
    skipped_stage1: int = 0
    hidden_stage2: int = 0
    empty: int = 0
    errors: int = 0
    #: Answered at the deadline with the words written so far / extended when the model ended.
    partial: int = 0
    extended: int = 0
    prefilled_tokens: int = 0
    reused_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def make_generate_request(
    ctx: CompletionContext, settings: Settings, uri: str | None, fim: bool
) -> GenerateRequest:
    """The model call for a context (plain function, unit-tested)."""
    cs = settings.completion

    def stop_here(text: str) -> bool:
        if "```" in text:
            return True
        if not ctx.multiline:
            # Only the rest of this line is shown (pp.single_line_only): once the model ends
            # the line, even before writing anything, what it writes next is thrown away.
            return "\n" in text
        if "\n" not in text.strip("\n"):
            return False
        # Only judge complete lines: the last one may still be growing.
        done = text[: text.rfind("\n")]
        return len(pp.cut_block_end(done + "\n", ctx)) < len(done.rstrip())

    return GenerateRequest(
        prefix=ctx.prefix,
        suffix=ctx.suffix if fim else "",
        max_new_tokens=cs.max_new_tokens if ctx.multiline else cs.single_line_max_tokens,
        single_line=not ctx.multiline,
        cache_key=uri if cs.prefix_reuse else None,
        use_fim=fim,
        should_stop=stop_here,
    )


#: The last word (it may still grow), with a character whose bytes are still being written.
_TRAILING_WORD = re.compile(r"[\w\ufffd]+\Z")


def partial_text(written: str, ctx: CompletionContext) -> str | None:
    """What can be shown of a generation that is still running: its text up to the last word
    boundary (the last word may still grow), post-processed; None when nothing is left."""
    cut = _TRAILING_WORD.sub("", written)
    if not cut.strip():
        return None
    return pp.postprocess(cut, ctx)


def past_the_part(shown: _Shown | None, text: str, offset: int) -> bool:
    """True when the user has typed (or accepted) all of a suggestion shown in part whose
    generation is still running, and maybe more: only its end can say what comes next."""
    if shown is None or shown.writing is None or shown.writing.done() or offset < shown.offset:
        return False
    if text[offset:] != shown.after or text[: shown.offset] != shown.before:
        return False
    return text[shown.offset : offset].startswith(shown.suggestion.text)


def type_along(shown: _Shown | None, text: str, offset: int) -> str | None:
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
        #: Generations writing suggestions shown in part: cancel event -> document URI.
        self._continuing: dict[threading.Event, str] = {}
        self._shown: dict[str, _Shown] = {}
        self._seq = 0

    def latency_summary(self) -> dict[str, float | int | None]:
        """Median and 95th percentile of the recent model-written answers, request to answer."""
        xs = sorted(self.model_answer_ms)
        if not xs:
            return {"n": 0, "p50Ms": None, "p95Ms": None}

        def pct(q: float) -> float:
            return round(xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))], 1)

        return {"n": len(xs), "p50Ms": pct(0.5), "p95Ms": pct(0.95)}

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
        """One suggestion for the cursor at ``offset``, or None.

        Requests supersede each other per ``channel`` ("inline" ghost text, "list" completion):
        an editor asking for both at once gets both answered.
        """
        t0 = time.perf_counter()
        settings = self._settings()
        key = uri if channel == "inline" else f"{uri}#{channel}"
        self.stats.requests += 1
        self._seq += 1
        seq = self._latest[key] = self._seq
        enabled = settings.language_enabled(language_id)
        shown = self._shown.get(key)
        # Type-along: the user typed the start of what is on screen; no model call.
        rest = (
            type_along(shown, text, offset) if enabled and settings.completion.type_along else None
        )
        if rest is None and enabled and shown is not None and past_the_part(shown, text, offset):
            # Accepted or typed all of the part on screen while the model still writes the rest:
            # its end is the quickest answer (a new model call would start from scratch).
            assert shown.writing is not None
            await asyncio.wait({shown.writing}, timeout=_WAIT_FOR_REST_S)
            if not self.is_latest(key, seq):
                self.stats.superseded += 1
                return None
            rest = type_along(shown, text, offset) if settings.completion.type_along else None
        previous = self._inflight.get(key)
        if previous is not None and (
            rest is None or shown is None or shown.pending is not previous
        ):
            # cancel-previous: the older generation stops within one step, unless it is the one
            # still writing the suggestion that the user is typing along.
            del self._inflight[key]
            previous.set()
        if not enabled:
            return None

        if rest is not None and shown is not None:
            self.stats.type_along += 1
            self.stats.answered += 1
            return Suggestion(
                shown.suggestion.id,
                rest,
                offset,
                "type_along",
                shown.suggestion.multiline,
                shown.suggestion.context_class,
                shown.suggestion.info,
            )
        self._shown.pop(key, None)

        backend = self.runner.backend
        if backend is None or self.runner.state != "ready":
            return None
        parse_text = text if len(text) <= MAX_PARSE_CHARS else ""
        ctx = build_context(
            text if parse_text else text[max(0, offset - 20000) : offset + 4000],
            offset if parse_text else min(offset, 20000),
            language_id if parse_text else "plaintext",
            context_tokens=settings.completion.context_tokens,
            multiline_enabled=settings.completion.multiline and not single_line,
            fim=backend.fim,
        )
        req = RequestInfo(
            uri,
            language_id,
            text,
            offset,
            line,
            character,
            version,
            trigger,
            ctx.context_class,
            ctx.multiline,
        )
        hooks = self._hooks()
        stage1 = hooks.before_generation(req)
        if not stage1.show:
            self.stats.skipped_stage1 += 1
            hooks.skipped(req, stage1)
            return None

        debounce = settings.completion.debounce_ms
        if debounce:
            await asyncio.sleep(debounce / 1000)
            if not self.is_latest(key, seq):
                self.stats.superseded += 1
                return None

        gen = await self._generate(backend, ctx, settings, uri, key)
        if gen is None:
            return None
        text_out, info, going_on = gen
        if not self.is_latest(key, seq) or (
            current_version is not None and version is not None and current_version() != version
        ):
            self.stats.superseded += 1
            if going_on is not None:
                self._stop_writing(key, going_on[1])
            return None
        stage2 = hooks.after_generation(req, info, stage1)
        if not stage2.show:
            self.stats.hidden_stage2 += 1
            hooks.hidden(req, info, stage1, stage2)
            if going_on is not None:
                self._stop_writing(key, going_on[1])
            return None
        sugg = Suggestion(
            uuid.uuid4().hex, text_out, offset, info.source, ctx.multiline, ctx.context_class, info
        )
        shown = _Shown(text[:offset], text[offset:], offset, sugg)
        self._shown[key] = shown
        hooks.shown(req, info, sugg.id, stage1, stage2)
        self.stats.answered += 1
        if info.source == "model":
            self.model_answer_ms.append((time.perf_counter() - t0) * 1000)
        if going_on is not None:
            fut, greq = going_on
            shown.pending, shown.writing = greq.cancel, fut
            self._continuing[greq.cancel] = uri
            self.stats.partial += 1
            fut.add_done_callback(
                lambda f: self._finished_in_background(f, key, shown, greq, ctx, backend, settings)
            )
        return sugg

    def _finished_in_background(
        self,
        fut: asyncio.Future[Generation],
        key: str,
        shown: _Shown,
        greq: GenerateRequest,
        ctx: CompletionContext,
        backend: Backend,
        settings: Settings,
    ) -> None:
        """The generation behind a suggestion shown in part ended: extend the suggestion (for
        type-along and the accept) if it is still the one on screen."""
        shown.pending = shown.writing = None
        self._continuing.pop(greq.cancel, None)
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
        self.stats.prefilled_tokens += result.prompt_tokens - result.reused_tokens
        self.stats.reused_tokens += result.reused_tokens
        if result.cancelled:
            self.stats.cancelled += 1
            return
        text = pp.postprocess(result.text, ctx)
        if text is None:
            return
        self._cache_put(backend, ctx, settings, part_info(text, result, backend.name))
        part = shown.suggestion.text
        if self._shown.get(key) is not shown or len(text) <= len(part) or not text.startswith(part):
            return
        shown.suggestion.text = text
        self.stats.extended += 1
        self._hooks().extended(shown.suggestion.id, text)

    def _stop_writing(self, key: str, greq: GenerateRequest) -> None:
        greq.cancel.set()
        self._continuing.pop(greq.cancel, None)
        if self._inflight.get(key) is greq.cancel:
            del self._inflight[key]

    async def _generate(
        self,
        backend: Backend,
        ctx: CompletionContext,
        settings: Settings,
        uri: str,
        channel_key: str,
    ) -> (
        tuple[str, SuggestionInfo, tuple[asyncio.Future[Generation], GenerateRequest] | None] | None
    ):
        """The suggestion's text and info, and, when it was cut at the deadline, the generation
        that goes on writing it (its future and request)."""
        key = self._cache_key(backend, ctx, settings)
        if key is not None and self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None and isinstance(hit.get("text"), str):
                self.stats.cache_hits += 1
                return (
                    hit["text"],
                    SuggestionInfo(
                        hit["text"],
                        list(hit.get("logprobs", [])),
                        list(hit.get("tokens", [])),
                        "cache",
                        backend.name,
                        0.0,
                    ),
                    None,
                )
        greq = make_generate_request(ctx, settings, uri, backend.fim)
        # The one model thread is needed here: a suggestion shown in part in another document
        # stays as it is instead of holding this request up. (The list channel of the same
        # document waits: editors ask for both at once.)
        for writing, where in list(self._continuing.items()):
            if where != uri:
                writing.set()
                del self._continuing[writing]
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
            deadline = settings.completion.deadline_ms / 1000 if channel_key == uri else 0.0
            if deadline:
                part = await self._until_deadline(fut, greq, ctx, deadline)
                if part is not None:
                    going_on = True
                    info = part_info(part, greq.partial, backend.name, time.perf_counter() - t0)
                    return part, info, (fut, greq)
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
        self.stats.prefilled_tokens += result.prompt_tokens - result.reused_tokens
        self.stats.reused_tokens += result.reused_tokens
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
        text = pp.postprocess(result.text, ctx)
        if text is None:
            self.stats.empty += 1
            return None
        info = part_info(text, result, backend.name)
        self._cache_put(backend, ctx, settings, info)
        return text, info, None

    @staticmethod
    async def _until_deadline(
        fut: asyncio.Future[Generation],
        greq: GenerateRequest,
        ctx: CompletionContext,
        deadline: float,
    ) -> str | None:
        """Wait for the generation up to ``deadline`` seconds; if it is still running then, the
        whole words written so far as soon as there are any. None: it ended (or was cancelled)
        first, and ``fut`` holds its result."""
        done, _ = await asyncio.wait({fut}, timeout=deadline)
        while not done:
            written = greq.partial
            part = partial_text(written.text, ctx) if written is not None else None
            if part is not None and not fut.done():
                return part
            done, _ = await asyncio.wait({fut}, timeout=_DEADLINE_POLL_S)
        return None

    def _cache_key(
        self, backend: Backend, ctx: CompletionContext, settings: Settings
    ) -> str | None:
        if self.cache is None or not settings.completion.cache:
            return None
        return cache_key(
            backend.name,
            _gen_settings(settings),
            ctx.prefix,
            ctx.suffix if backend.fim else "",
            ctx.multiline,
        )

    def _cache_put(
        self, backend: Backend, ctx: CompletionContext, settings: Settings, info: SuggestionInfo
    ) -> None:
        key = self._cache_key(backend, ctx, settings)
        if key is not None and self.cache is not None:
            self.cache.put(
                key, {"text": info.text, "logprobs": info.token_logprobs, "tokens": info.tokens}
            )


#: How often a request past its deadline looks again for a whole word to show.
_DEADLINE_POLL_S = 0.01
#: Longest wait, after the user typed all of a part on screen, for the model to end the rest.
_WAIT_FOR_REST_S = 3.0


def part_info(
    text: str, gen: Generation | None, model: str, seconds: float | None = None
) -> SuggestionInfo:
    """The suggestion info of ``text`` (post-processed) from the generation it came from, with
    the log-probabilities of the tokens that survived post-processing; ``seconds`` defaults to
    the generation's own time (set when it ends)."""
    tokens = list(gen.tokens) if gen is not None else []
    logprobs = list(gen.token_logprobs) if gen is not None else []
    n = min(len(tokens), len(logprobs))
    kept, acc = 0, 0
    for tok in tokens[:n]:
        if acc >= len(text):
            break
        acc += len(tok)
        kept += 1
    if seconds is None:
        seconds = gen.seconds if gen is not None else 0.0
    return SuggestionInfo(text, logprobs[:kept], tokens[:kept], "model", model, seconds)


def _gen_settings(settings: Settings) -> str:
    cs = settings.completion
    # The decoding path can change the text (packed weights), so it is part of the key.
    return (
        f"{cs.max_new_tokens}:{cs.single_line_max_tokens}:{cs.multiline}:"
        f"{settings.dtype}:{settings.fast_decode}:v4"
    )


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
