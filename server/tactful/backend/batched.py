"""Batched regeneration for line flags: several ``keep_slot`` continuations of one scored text
decoded together, one token of each per pass of the fast decoder (which costs little more than
one token on a CPU). Each continuation picks its tokens with ``generation.Continuation``, so the
texts are what ``generation.generate`` gives one at a time. Runs on the model worker."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from tactful.backend import stops
from tactful.backend.generation import Continuation, finish, generate, prompt_of
from tactful.backend.model import LoadedModel
from tactful.backend.slots import Slot, Slots, common_prefix
from tactful.backend.types import GenerateRequest, Generation, ModelError

log = logging.getLogger(__name__)

#: A request that joins the batch: its index, itself, its healed-away text, its prompt ids and
#: how many of them the scored slot already holds.
Member = tuple[int, GenerateRequest, str, list[int], int]


def generate_many(
    m: LoadedModel, slots: Slots, reqs: Sequence[GenerateRequest]
) -> list[Generation]:
    """Greedy continuations of several prefixes of one scored text (``keep_slot`` requests on
    one ``cache_key``), decoded together. Requests that cannot join the batch (no fast decoder,
    no scored slot, fill-in-the-middle, a prompt that tokenises differently before its last
    token) are run one at a time."""
    out: list[Generation | None] = [None] * len(reqs)
    key = reqs[0].cache_key if reqs else None
    slot = slots.get(key) if m.fast is not None and key is not None else None
    batch = _members(m, slot, key, reqs)
    if len(batch) > 1 and slot is not None:
        t0 = time.perf_counter()
        gens = _decode_batch(m, slot, batch)
        if gens is not None:  # else all of them run one at a time below
            for (n, *_), gen in zip(batch, gens, strict=True):
                out[n] = finish(gen, t0)
    for n, req in enumerate(reqs):
        if out[n] is None:
            out[n] = generate(m, slots, req)
    return [g for g in out if g is not None]


def _members(
    m: LoadedModel, slot: Slot | None, key: str | None, reqs: Sequence[GenerateRequest]
) -> list[Member]:
    """The requests that can be decoded together from ``slot``."""
    batch: list[Member] = []
    if slot is None or slot.cache is None or not slot.ids:
        return batch
    for n, req in enumerate(reqs):
        if (
            req.cache_key != key
            or not req.keep_slot
            or (req.use_fim and m.fim_template is not None and req.suffix)
            or req.cancel.is_set()
        ):
            continue
        prompt, heal = prompt_of(m, req)
        ids = m.encode(prompt)
        shared = min(common_prefix(slot.ids, ids), len(ids) - 1)
        if ids and shared == len(ids) - 1:
            batch.append((n, req, heal, ids, shared))
    return batch


def _decode_batch(m: LoadedModel, slot: Slot, batch: Sequence[Member]) -> list[Generation] | None:
    """The batch's generations; None where the batched step failed (run them one by one)."""
    from tactful.backend import fast

    assert m.fast is not None
    decs: list[Continuation] = []
    for _n, req, heal, ids, shared in batch:
        gen = Generation(text="", prompt_tokens=len(ids), reused_tokens=shared)
        req.partial = gen
        m.stats["calls"] += 1
        m.stats["reused"] += shared
        m.stats["prefilled"] += 1
        decs.append(Continuation(m, req, heal, gen))
    steps = max(d.limit for d in decs) + 1
    state = fast.Batch(slot.cache, [shared for *_, shared in batch], steps)
    live = list(range(len(decs)))
    tokens = [ids[-1] for *_, ids, _shared in batch]
    try:
        while live:
            logits = m.fast.forward_batch(tokens, state)
            going: list[int] = []
            tokens = []
            for row, d in enumerate(live):
                best = _step(m, decs[d], logits[row])
                if best is not None:
                    going.append(row)
                    tokens.append(best)
            if going and len(going) < len(live):
                state.keep(going)
            live = [live[row] for row in going]
    except (RuntimeError, ValueError, MemoryError) as exc:
        if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
            raise ModelError(
                "The model ran out of memory while regenerating lines; the text is too long"
            ) from exc
        log.warning("batched decoding failed, decoding one at a time: %s", exc)
        for _n, req, *_ in batch:
            req.partial = None
        return None
    return [d.gen for d in decs]


def _step(m: LoadedModel, dec: Continuation, logits: object) -> int | None:
    """One continuation's next token from its row of the batch's logits; None when it ended."""
    best = None
    if dec.req.cancel.is_set():
        dec.gen.cancelled = True
        m.stats["cancelled"] += 1
    elif not dec.exhausted:
        best = dec.step(logits)
    if best is None:
        dec.gen.text = stops.cut(dec.text, dec.req)
        if not dec.gen.cancelled:
            m.stats["finished"] += 1
    return best
