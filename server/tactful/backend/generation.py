"""Greedy generation on the model worker: the prompt's prefill (reusing the document's KV-cache
slot), token healing, the stop rules, cancellation within one decoding step, giving way to other
work (``GenerateRequest.give_way``: between decoding steps, and inside a prompt chunk between two
decoder layers), and the progress each token publishes (``GenerateRequest.publish``).
``Continuation`` picks the tokens; the batched decoder (``batched``) shares it, so both choose the
same tokens from the same logits."""

from __future__ import annotations

import time
from typing import Any

from tactful.backend import stops
from tactful.backend.model import LoadedModel, Preempted, crop
from tactful.backend.prompt import build_prompt
from tactful.backend.slots import Slot, Slots, common_prefix
from tactful.backend.types import GenerateRequest, Generation, ModelError

#: Prefill long prompts in chunks so that a cancel is seen between chunks.
PREFILL_CHUNK = 256


class Continuation:
    """One greedy continuation: picks each token (healing the prompt's end back first) and
    applies the stop rules."""

    def __init__(self, m: LoadedModel, req: GenerateRequest, heal: str, gen: Generation) -> None:
        self.m = m
        self.req = req
        self.heal = heal
        self.heal_left = heal
        self.gen = gen
        self.ids: list[int] = []
        self.text = ""
        self.steps = 0
        self.limit = req.max_new_tokens + (4 if heal else 0)
        self.guide = (
            # Not the cursor's line: the identifier being typed there is no name to guide to.
            m.name_guide(req.preamble, req.prefix[: max(req.prefix.rfind("\n"), 0)] + req.suffix)
            if req.guide_names and req.preamble
            else None
        )
        self.line = req.prefix[req.prefix.rfind("\n") + 1 :]

    @property
    def exhausted(self) -> bool:
        return self.steps >= self.limit

    def step(self, logits: Any) -> int | None:
        """Take the next token from ``logits``; returns it when the continuation goes on (the
        caller runs it through the model), None when it has ended."""
        m, req, gen = self.m, self.req, self.gen
        torch = m.torch
        self.steps += 1
        logp = torch.log_softmax(logits, dim=-1)
        if self.heal_left:
            idx = m.heal_index().allowed(self.heal_left)
            if not len(idx):
                return None
            best = int(idx[int(torch.argmax(logp[idx]))])
        else:
            best = self._guided(int(torch.argmax(logp)), logp)
        if best in m.stop_ids:
            gen.stopped = True
            return None
        self.ids.append(best)
        gen.token_logprobs.append(float(logp[best]))
        piece = m.tok.decode([best])
        gen.tokens.append(piece)
        m.stats["generated"] += 1
        if self.heal_left:
            if piece.startswith(self.heal_left):
                self.text += piece[len(self.heal_left) :]
                self.heal_left = ""
            else:
                self.heal_left = self.heal_left[len(piece) :]
        else:
            decoded = m.tok.decode(self.ids)
            self.text = decoded[len(self.heal) :] if self.heal else decoded
        gen.text = self.text
        req.publish(gen)
        if stops.should_stop(self.text, req):
            gen.stopped = True
            return None
        if len(gen.tokens) >= self.limit:
            return None
        return best

    def _guided(self, best: int, logp: Any) -> int:
        """The greedy token, or where the name guide steers this step, the best token after its
        bonus (the log-probabilities stay the model's own)."""
        if self.guide is None:
            return best
        line = self.line + self.text
        ids, bonus = self.guide.bonus_ids(line[line.rfind("\n") + 1 :], self.m.tok.decode([best]))
        if not ids:
            return best
        torch = self.m.torch
        boosted = logp.clone()
        idx = torch.tensor(ids, dtype=torch.long)
        boosted[idx] += bonus
        return int(torch.argmax(boosted))


def prompt_of(m: LoadedModel, req: GenerateRequest) -> tuple[str, str]:
    """The prompt and its healed-away end, with this model's template and tokenizer."""
    return build_prompt(req, m.fim_template, m.last_token)


def finish(gen: Generation, t0: float) -> Generation:
    gen.seconds = time.perf_counter() - t0
    return gen


def _slot_for(m: LoadedModel, slots: Slots, req: GenerateRequest, ids: list[int]) -> Slot:
    """The KV-cache slot to generate in: the document's, or (``keep_slot``) a copy of the part
    of it the prompt shares, so that the slot keeps the scored text for the next line."""
    slot = slots.take(req.cache_key)
    if slot.cache is None:
        slot.cache = m.new_cache()
        slot.ids = []
    if req.keep_slot and slot.ids:
        shared = min(common_prefix(slot.ids, ids), len(ids) - 1)
        slot = Slot(ids=slot.ids[:shared], cache=m.fork(slot.cache, shared))
    return slot


def _prefill(
    m: LoadedModel, req: GenerateRequest, slot: Slot, ids: list[int], pos: int, gen: Generation
) -> Any:
    """Run the prompt from ``pos`` on; the logits after its last token, or None when the
    request was cancelled or gave way (``gen.preempted``) meanwhile.

    All prompt tokens but the last take the stock path and stay in the document's cache. The
    last one goes through the decoder like a generated token, cold and warm alike (so a warm run
    still equals a cold one): typing mid-word heals back to the same prompt, and then the whole
    prefill is one decoder step, not a stock forward."""
    last = len(ids) - 1
    logits = None
    give_way = req.give_way
    while pos <= last:
        if req.cancel.is_set():
            return None
        if give_way is not None and give_way():
            gen.preempted = True
            return None
        if pos < last:
            chunk = ids[pos : min(pos + PREFILL_CHUNK, last)]
            # A chunk runs to its end even when the request is cancelled meanwhile: the next
            # request for the document shares these tokens, and cutting chunks part way would
            # lose the prefill of each keystroke's prompt to the next keystroke. Only giving way
            # (another document's work waits) stops it part way, between two decoder layers:
            # the chunk is taken back out of the cache, the chunks before it stay.
            try:
                m.forward(chunk, slot.cache, stop=give_way)
            except Preempted:
                gen.preempted = True
                return None
            pos += len(chunk)
            slot.ids = ids[:pos]
        else:
            chunk = ids[last:]
            logits = m.forward(chunk, slot.cache, decode=True)
            pos += 1
        m.stats["prefilled"] += len(chunk)
    return logits


def generate(m: LoadedModel, slots: Slots, req: GenerateRequest) -> Generation:
    """Greedy continuation of ``req``, reusing the KV-cache slot ``req.cache_key`` when given."""
    t0 = time.perf_counter()
    if req.cancel.is_set():  # superseded while queued: not even the prompt is needed
        m.stats["cancelled"] += 1
        return finish(Generation(text="", cancelled=True), t0)
    prompt, heal = prompt_of(m, req)
    ids = m.encode(prompt) or [m.bos()]
    m.stats["calls"] += 1
    slot = _slot_for(m, slots, req, ids)
    keep = min(common_prefix(slot.ids, ids), len(ids) - 1)
    crop(slot.cache, keep)
    slot.ids = ids[:keep]
    gen = Generation(text="", prompt_tokens=len(ids), reused_tokens=keep)
    req.partial = gen
    m.stats["reused"] += keep
    try:
        logits = _prefill(m, req, slot, ids, keep, gen)
        if logits is None:  # cancelled, or gave way
            gen.cancelled = req.cancel.is_set() or not gen.preempted
            m.stats["preempted" if gen.preempted else "cancelled"] += 1
            return finish(gen, t0)
        dec = Continuation(m, req, heal, gen)
        while not dec.exhausted:
            if req.cancel.is_set():
                gen.cancelled = True
                m.stats["cancelled"] += 1
                break
            if req.give_way is not None and req.give_way():
                gen.preempted = True  # what is written so far is the answer
                m.stats["preempted"] += 1
                break
            best = dec.step(logits)
            if best is None:
                break
            logits = m.forward([best], slot.cache, decode=True)
        # Keep only the stock-computed prompt in the document's cache: the last prompt token and
        # the generated ones come from the packed-weight decoder, and a later prompt must see
        # exactly what a cold run sees.
        crop(slot.cache, len(slot.ids))
        gen.text = stops.cut(dec.text, req)
        if not gen.cancelled:
            m.stats["finished"] += 1
    except (RuntimeError, MemoryError) as exc:
        if req.cache_key is not None:
            slots.drop(req.cache_key)
        if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
            if m.device == "cuda":
                m.torch.cuda.empty_cache()
            raise ModelError(
                "The model ran out of memory while generating; try a shorter context or a smaller model"
            ) from exc
        raise
    return finish(gen, t0)
