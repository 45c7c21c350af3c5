"""Teacher-forced scoring on the model worker: the log-probability and entropy of each token of
a text, grouped by line (line flags), optionally keeping the text's KV cache in a slot for the
regenerations that follow (``score_into_slot``), and the log-probability of a continuation.
Runs on the model worker only; must not generate (``generation`` does)."""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tactful.backend.model import LoadedModel, Preempted
from tactful.backend.slots import Slot, Slots
from tactful.backend.types import LineScores, ModelError

#: Tokens per forward pass of ``score_into_slot``: a cancel (a completion waiting) is seen
#: between chunks, so they are kept short (and between two decoder layers inside each: see
#: ``LoadedModel.stoppable``).
SCORE_CHUNK = 128
#: The scoring pass turns logits into log-probabilities this many positions at a time.
SCORE_ROWS = 8
#: Vocabulary rows per product of the scoring pass's output layer on the CPU: a 49k-row product
#: runs at about 39 GFLOP/s on an AVX2 core, blocks of 512 rows at about 56 (the same sums).
HEAD_BLOCK = 512
#: ``score`` restarts its context every this many tokens (very long files).
SCORE_WINDOW = 2048


def row_blocks(rows: int) -> list[tuple[int, int]]:
    """Row ranges of about ``SCORE_ROWS`` that cover ``rows`` rows of a scoring chunk's logits. A
    lone last row joins the block before it: torch splits a reduction with a single output
    across threads, which would change the order of its sum (``token_scores``)."""
    bounds = [*range(0, rows, SCORE_ROWS), rows]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    return list(itertools.pairwise(bounds))


def token_scores(
    torch: Any, logits: Any, targets: Any
) -> tuple[list[float], list[float], list[bool]]:
    """For each of the first ``len(targets)`` rows of ``logits`` (positions, vocabulary): the
    log-probability of the next token ``targets[i]``, the entropy of the distribution, and
    whether the next token is the most likely one.

    The rows are taken a few at a time (``row_blocks``), so that their float32 log-probabilities
    stay in the CPU cache: about 1.6x faster than the whole chunk at once, and the same
    arithmetic row by row, so the results are identical to it bit for bit (tested)."""
    n = len(targets)
    lp: list[float] = []
    ent: list[float] = []
    greedy: list[bool] = []
    for lo, hi in row_blocks(logits.shape[0]):
        logp = torch.log_softmax(logits[lo:hi].float(), dim=-1)
        k = max(0, min(hi, n) - lo)  # rows with a next token to score
        want = targets[lo : lo + k]
        ent.extend((-(logp.exp() * logp).sum(-1))[:k].tolist())
        lp.extend(logp[torch.arange(k), want].tolist())
        greedy.extend((logp[:k].argmax(-1) == want).tolist())
    return lp, ent, greedy


def all_logits(m: LoadedModel, ids: list[int], cache: Any) -> Any:
    """Logits of every position of ``ids`` after ``cache`` (the scoring pass), the stock
    forward's. With the CPU fast path (Llama/Qwen2-style models, whose logits are the output
    layer's product) the output layer runs in blocks of ``HEAD_BLOCK`` vocabulary rows."""
    torch = m.torch
    inp = torch.tensor([ids], device=m.device)
    if m.fast is None:
        return m.model(input_ids=inp, cache=cache, use_cache=True).logits[0]
    hidden = m.model.model(input_ids=inp, cache=cache, use_cache=True).last_hidden_state[0]
    weight = m.model.lm_head.weight
    out = hidden.new_empty((hidden.shape[0], weight.shape[0]))
    for i in range(0, weight.shape[0], HEAD_BLOCK):
        out[:, i : i + HEAD_BLOCK] = torch.nn.functional.linear(hidden, weight[i : i + HEAD_BLOCK])
    return out


class _Lines:
    """Token scores collected per line of a text: a token belongs to the line it starts on (a
    token that starts with the newline, to the line it ends)."""

    def __init__(self, text: str, offsets: Any) -> None:
        self.text = text
        self.offsets = offsets
        self.starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
        self.lp: list[list[float]] = [[] for _ in self.starts]
        self.ent: list[list[float]] = [[] for _ in self.starts]

    def add(self, tok_index: int, lp: float, ent: float) -> None:
        start, end = self.offsets[tok_index][0], self.offsets[tok_index][1]
        piece = self.text[start:end]
        anchor = start + (len(piece) - len(piece.lstrip("\n")) if piece.strip() else 0)
        last = len(self.text) - 1 if self.text else 0
        line = bisect.bisect_right(self.starts, min(anchor, last)) - 1
        self.lp[line].append(lp)
        self.ent[line].append(ent)


def _encode_with_offsets(m: LoadedModel, text: str) -> tuple[list[int], Any]:
    enc = m.tok(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), enc["offset_mapping"]


@contextmanager
def _cancellable(m: LoadedModel, cancel: threading.Event) -> Iterator[None]:
    """A scoring pass that stops between two decoder layers once ``cancel`` is set (a flag
    unit's ``GiveWay``: a completion waits), as ``InterruptedError``. Its cache is thrown away
    by the caller (a unit that gave way scores again from the start)."""
    try:
        with m.stoppable(cancel.is_set):
            yield
    except Preempted:
        raise InterruptedError("scoring cancelled") from None


def score(m: LoadedModel, text: str, cancel: threading.Event) -> LineScores:
    """Per-line token log-probabilities of ``text`` in one teacher-forced pass (after a BOS)."""
    torch = m.torch
    lines = _Lines(text, None)
    ids, lines.offsets = _encode_with_offsets(m, text)
    if not ids:
        return LineScores(lines.lp, lines.ent, 0)
    bos = m.tok.bos_token_id if m.tok.bos_token_id is not None else m.tok.eos_token_id
    seq = [bos, *ids] if bos is not None else ids
    shift = 1 if bos is not None else 0
    window = SCORE_WINDOW
    cache = m.new_cache()
    pos = 0
    while pos < len(seq) - 1:
        if cancel.is_set():
            raise InterruptedError("scoring cancelled")
        if pos and pos % window == 0:
            cache = m.new_cache()  # restart context on very long files
        chunk = seq[pos : min(pos + 256, len(seq) - 1, (pos // window + 1) * window)]
        with _cancellable(m, cancel):
            out = m.model(input_ids=torch.tensor([chunk]), cache=cache, use_cache=True)
        logp = torch.log_softmax(out.logits[0].float(), dim=-1)  # (chunk, vocab)
        entropy = -(logp.exp() * logp).sum(-1)
        for j in range(len(chunk)):
            target_pos = pos + j + 1  # index in seq of the predicted token
            tok_index = target_pos - shift
            if 0 <= tok_index < len(ids):
                lines.add(tok_index, float(logp[j, seq[target_pos]]), float(entropy[j]))
        pos += len(chunk)
    return LineScores(lines.lp, lines.ent, len(ids))


def score_into_slot(
    m: LoadedModel, slots: Slots, text: str, cache_key: str, cancel: threading.Event
) -> LineScores:
    """Like ``score``, without a BOS, keeping the KV cache of ``text`` in the slot ``cache_key``
    for the regenerations that follow; also each token's start and greedy mark."""
    torch = m.torch
    lines = _Lines(text, None)
    ids, lines.offsets = _encode_with_offsets(m, text)
    slots.drop(cache_key)
    if not ids:
        return LineScores(lines.lp, lines.ent, 0)
    slot = Slot(ids=[], cache=m.new_cache())
    greedy: list[bool] = [False]
    pos = 0
    try:
        while pos < len(ids):
            if cancel.is_set():
                raise InterruptedError("scoring cancelled")
            chunk = ids[pos : pos + SCORE_CHUNK]
            with _cancellable(m, cancel):
                logits = all_logits(m, chunk, slot.cache)
            targets = torch.tensor(
                ids[pos + 1 : pos + len(chunk) + 1], dtype=torch.long, device=m.device
            )
            tok_lp, tok_ent, tok_greedy = token_scores(torch, logits, targets)
            greedy.extend(tok_greedy)
            for j in range(len(targets)):
                lines.add(pos + j + 1, tok_lp[j], tok_ent[j])
            pos += len(chunk)
            slot.ids = ids[:pos]
            m.stats["prefilled"] += len(chunk)
    except (RuntimeError, MemoryError) as exc:
        if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
            raise ModelError(
                "The model ran out of memory while scoring; the text is too long"
            ) from exc
        raise
    slots.put(cache_key, slot)
    starts = [int(o[0]) for o in lines.offsets]
    return LineScores(
        lines.lp, lines.ent, len(ids), token_starts=starts, token_greedy=greedy[: len(ids)]
    )


def log_prob(m: LoadedModel, prefix: str, continuation: str, suffix: str = "") -> float:
    """Total log-probability of ``continuation`` after ``prefix`` (before ``suffix`` with FIM)."""
    torch = m.torch
    if suffix and m.fim_template is not None:
        ctx = m.encode(m.fim_template.render(prefix, suffix))
    else:
        ctx = m.encode(prefix)
    cont = m.encode(continuation)
    if not cont:
        return 0.0
    if not ctx:
        ctx = [m.tok.bos_token_id if m.tok.bos_token_id is not None else m.tok.eos_token_id]
    seq = ctx + cont
    out = m.model(input_ids=torch.tensor([seq]), logits_to_keep=len(cont) + 1)
    logp = torch.log_softmax(out.logits[0, :-1].float(), dim=-1)  # predicts cont tokens
    total = sum(float(logp[i, t]) for i, t in enumerate(cont))
    return total if math.isfinite(total) else -1e9
