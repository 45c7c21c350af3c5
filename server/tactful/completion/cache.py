"""The completion cache: finished suggestions by model, generation settings and context, so that
the same prompt is answered without the model (``completion.cache``). Backed by the persistent
``tactful.cache.JsonCache``; what is stored is the suggestion text and its token scores. Must
not change the key's parts without a new version tag (old entries would answer new settings)."""

from __future__ import annotations

from tactful.backend.types import Backend
from tactful.cache import JsonCache, cache_key
from tactful.cascade.hooks import SuggestionInfo
from tactful.completion.context import CompletionContext
from tactful.config import Settings


def _gen_settings(settings: Settings) -> str:
    cs = settings.completion
    # The decoding path can change the text (packed weights), so it is part of the key.
    return (
        f"{cs.max_new_tokens}:{cs.single_line_max_tokens}:{cs.multiline}:"
        f"{settings.dtype}:{settings.fast_decode}:v4"
        + (":names" if settings.context.guided_names else "")
    )


def key_for(
    store: JsonCache | None, backend: Backend, ctx: CompletionContext, settings: Settings
) -> str | None:
    """The cache key of a context, or None when the cache is off."""
    if store is None or not settings.completion.cache:
        return None
    return cache_key(
        backend.name,
        _gen_settings(settings),
        ctx.preamble + ctx.prefix,
        ctx.suffix if backend.fim else "",
        ctx.multiline,
    )


def lookup(
    store: JsonCache | None, backend: Backend, ctx: CompletionContext, settings: Settings
) -> SuggestionInfo | None:
    """The cached suggestion for a context (source "cache"), or None."""
    key = key_for(store, backend, ctx, settings)
    if key is None or store is None:
        return None
    hit = store.get(key)
    if hit is None or not isinstance(hit.get("text"), str):
        return None
    return SuggestionInfo(
        hit["text"],
        list(hit.get("logprobs", [])),
        list(hit.get("tokens", [])),
        "cache",
        backend.name,
        0.0,
    )


def remember(
    store: JsonCache | None,
    backend: Backend,
    ctx: CompletionContext,
    settings: Settings,
    info: SuggestionInfo,
) -> None:
    """Store a finished suggestion for its context (nothing when the cache is off)."""
    key = key_for(store, backend, ctx, settings)
    if key is not None and store is not None:
        store.put(key, {"text": info.text, "logprobs": info.token_logprobs, "tokens": info.tokens})
