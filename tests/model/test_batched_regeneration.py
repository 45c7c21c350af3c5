"""Regenerating several lines of one scored window together (real embedded model).

``Decoder.forward_batch`` runs one token of several continuations of one shared KV cache in one
pass; ``TransformersBackend.generate_many`` decodes line regenerations that way, and ``FlagJob``
regenerates the lines of a window in batches. The batched pass does the same arithmetic as the
one-at-a-time decoder in another order, so its logits agree up to rounding (the packed products
round their outputs to bfloat16, about 0.125 at the size of these logits)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tactful import paths
from tactful.backend.types import GenerateRequest
from tactful.flags import job as flag
from tactful.flags.plan import REGEN_BATCH, RegenOptions

pytestmark = pytest.mark.model

CODE = '''import sys


def mean(values):
    """The arithmetic mean of a non-empty list."""
    total = 0
    for v in values:
        total += v
    return total / len(values)


def main():
    data = [int(x) for x in sys.stdin.read().split()]
    if not data:
        print("no data")
        return
    print(mean(data))
    print(max(data) - min(data))


if __name__ == "__main__":
    main()
'''


@pytest.fixture(scope="module")
def backend():  # type: ignore[no-untyped-def]
    from tactful.backend.hf import TransformersBackend

    b = TransformersBackend.load(None, cache_dir=paths.cache_dir())
    if b.fast is None:
        pytest.skip("the fast decoder does not apply on this machine")
    return b


def test_forward_batch_matches_one_continuation_at_a_time(backend: Any) -> None:
    import torch

    from tactful.backend import fast

    ids = backend.encode(CODE)
    with torch.inference_mode():
        cache = backend._new_cache()
        backend._forward(ids[:-1], cache)
        shared = [20, 57, len(ids) - 2]
        batch = fast.Batch(cache, shared, 3)
        steps = [[ids[s] for s in shared], [ids[s + 1] for s in shared]]
        together = [backend.fast.forward_batch(tokens, batch) for tokens in steps]
        for row, s in enumerate(shared):
            alone = backend._fork(cache, s)
            for step, tokens in enumerate(steps):
                logits = backend.fast.forward([tokens[row]], alone)
                diff = float((logits - together[step][row]).abs().max())
                assert diff <= 0.75, (s, step, diff)
                top2 = torch.topk(logits, 2).values
                if float(top2[0] - top2[1]) > 1.0:
                    assert int(logits.argmax()) == int(together[step][row].argmax())
    assert cache.get_seq_length() == len(ids) - 1, "the shared cache is read, never written"


def _requests(backend: Any, key: str) -> list[GenerateRequest]:
    backend.score_into_slot(CODE, key)
    cuts = [CODE.index(s) for s in ("total = 0", "return total", "print(mean", "print(max")]
    return [
        GenerateRequest(
            prefix=CODE[:c], max_new_tokens=12, single_line=True, cache_key=key, keep_slot=True
        )
        for c in cuts
    ]


def test_generate_many_gives_what_generate_gives(backend: Any) -> None:
    many = backend.generate_many(_requests(backend, "flag:many"))
    one = [backend.generate(r) for r in _requests(backend, "flag:one")]
    assert len(many) == 4
    assert all(g.token_logprobs and not g.cancelled for g in many)
    same = sum(a.text == b.text for a, b in zip(many, one, strict=True))
    assert same >= 3, [(a.text, b.text) for a, b in zip(many, one, strict=True)]
    # The slot still holds the scored text: a later regeneration prefills (almost) nothing.
    again = backend.generate(_requests(backend, "flag:many")[0])
    assert again.reused_tokens >= again.prompt_tokens - 1


def test_a_cancelled_batch_stops_and_reports_it(backend: Any) -> None:
    reqs = _requests(backend, "flag:cancel")
    stop = threading.Event()
    stop.set()
    for r in reqs:
        r.cancel = stop
    out = backend.generate_many(reqs)
    assert [g.cancelled for g in out] == [True] * 4


def _job(batch: int = REGEN_BATCH) -> flag.FlagJob:
    return flag.FlagJob(CODE * 3, "python", budget=0.3, options=RegenOptions(batch=batch))


def _run(job: flag.FlagJob, backend: Any) -> dict[int, str]:
    for unit in job.steps():
        unit(backend)
    return {i: x.suggestion for i, x in job.info.items() if x.regen is not None}


def test_flag_job_regenerates_in_batches_like_one_at_a_time(backend: Any, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[int] = []
    real = backend.generate_many

    def counted(reqs: list[GenerateRequest]) -> Any:
        calls.append(len(reqs))
        return real(reqs)

    monkeypatch.setattr(backend, "generate_many", counted)
    batched = _run(_job(), backend)
    assert calls and max(calls) > 1 and max(calls) <= REGEN_BATCH
    single = _run(_job(batch=1), backend)
    assert batched.keys() == single.keys() and len(batched) >= 10
    same = sum(batched[i] == single[i] for i in batched)
    assert same >= 0.8 * len(batched), (same, len(batched))


def test_an_interrupted_batch_keeps_what_it_finished(backend: Any, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A unit that gives way (a completion is waiting) keeps the lines it finished; its retry
    regenerates only the others."""
    job = _job()
    real = backend.generate_many
    seen: list[int] = []

    def half(reqs: list[GenerateRequest]) -> Any:
        seen.append(len(reqs))
        out = real(reqs)
        if len(seen) == 1:  # the first batch: pretend a completion stopped its second half
            for g in out[len(out) // 2 :]:
                g.cancelled = True
            job.interrupt = threading.Event()
            job.interrupt.set()
        return out

    monkeypatch.setattr(backend, "generate_many", half)
    units = job.steps()
    next(units)(backend)  # the first window's scoring pass
    unit = next(units)
    with pytest.raises(flag.FlagInterrupted):
        unit(backend)
    done = sum(x.regen is not None for x in job.info.values())
    assert done >= seen[0] // 2
    job.interrupt = None
    unit(backend)  # the retry of the same unit
    assert seen[1] == seen[0] - seen[0] // 2


def test_the_blocked_output_layer_scores_exactly_like_the_stock_forward(backend: Any) -> None:
    """The scoring pass runs the CPU output layer in vocabulary blocks (``scoring.HEAD_BLOCK``); the
    log-probabilities, entropies and greedy marks are those of the whole output layer in one
    product (the stock forward's ``lm_head``), bit for bit.

    (Turning the fast path off would not do for the comparison: the stock path then keeps a
    bfloat16 KV cache instead of the float32 one, which changes the results of a bfloat16
    model.)"""
    from tactful.backend import scoring

    if backend.fast is None:
        pytest.skip("the blocked output layer belongs to the fast path, off on this machine")
    text = CODE * 2
    blocked = backend.score_into_slot(text, "flag:head")
    block = scoring.HEAD_BLOCK
    scoring.HEAD_BLOCK = backend.model.lm_head.weight.shape[0]  # one block: the stock product
    try:
        stock = backend.score_into_slot(text, "flag:head")
    finally:
        scoring.HEAD_BLOCK = block
    assert blocked.tokens == stock.tokens > 128  # more than one chunk
    assert blocked.line_logprobs == stock.line_logprobs
    assert blocked.line_entropy == stock.line_entropy
    assert blocked.token_greedy == stock.token_greedy
