"""Giving the model worker to another document's work (issue 28), with the real embedded model:
a prompt chunk given up between two decoder layers leaves the KV cache as it was before the
chunk, and what follows equals a run that was never stopped; a generation that gives way while
writing keeps the words it wrote."""

from __future__ import annotations

import pytest

from tactful import paths
from tactful.backend.generation import PREFILL_CHUNK
from tactful.backend.model import Preempted
from tactful.backend.types import GenerateRequest

pytestmark = pytest.mark.model

#: A prompt of about 600 tokens (digits: one token each): three prefill chunks.
LONG = "x = " + ("3141592653589793238462643383279502884197" * 15)


@pytest.fixture(scope="module")
def backend():  # type: ignore[no-untyped-def]
    from tactful.backend.hf import TransformersBackend

    return TransformersBackend.load(None, cache_dir=paths.cache_dir())


def _after(n: int):  # type: ignore[no-untyped-def]
    """A ``give_way`` that says yes from its ``n``-th call on (counting its calls)."""
    calls = [0]

    def give_way() -> bool:
        calls[0] += 1
        return calls[0] >= n

    give_way.calls = calls  # type: ignore[attr-defined]
    return give_way


def test_a_pass_given_up_between_layers_leaves_the_cache_as_it_was(backend) -> None:  # type: ignore[no-untyped-def]
    m = backend.m
    assert m.stops_in_pass, "the embedded model's decoder layers must take the check"
    ids = m.encode(LONG)[:200]
    with backend._using():
        stopped, whole = m.new_cache(), m.new_cache()
        m.forward(ids[:100], stopped)
        m.forward(ids[:100], whole)
        stop = _after(5)  # inside the pass: before the fifth decoder layer
        with pytest.raises(Preempted):
            m.forward(ids[100:], stopped, stop=stop)
        assert stop.calls[0] == 5
        assert all(layer.get_seq_length() == 100 for layer in stopped.layers)
        again = m.forward(ids[100:], stopped)
        expected = m.forward(ids[100:], whole)
    assert m.torch.equal(again, expected)


def test_a_prefill_that_gives_way_keeps_its_whole_chunks(backend) -> None:  # type: ignore[no-untyped-def]
    layers = len(backend.model.model.layers)
    # One call before the first chunk, one before each of its layers, one before the second
    # chunk, then a few layers into the second chunk.
    give_way = _after(1 + layers + 1 + 5)
    req = GenerateRequest(prefix=LONG, max_new_tokens=8, cache_key="stopped", give_way=give_way)
    gen = backend.generate(req)
    assert gen.preempted and not gen.cancelled and gen.text == ""
    slot = backend.slots.get("stopped")
    assert slot is not None and len(slot.ids) == PREFILL_CHUNK
    assert all(layer.get_seq_length() == PREFILL_CHUNK for layer in slot.cache.layers)
    # Its next request goes on from the kept chunk and writes what a run never stopped writes.
    resumed = backend.generate(GenerateRequest(prefix=LONG, max_new_tokens=8, cache_key="stopped"))
    never = backend.generate(GenerateRequest(prefix=LONG, max_new_tokens=8, cache_key="never"))
    assert resumed.reused_tokens == PREFILL_CHUNK and never.reused_tokens == 0
    assert not resumed.preempted and resumed.text == never.text and resumed.text
    assert resumed.token_logprobs == never.token_logprobs


def test_a_generation_that_gives_way_while_writing_keeps_what_it_wrote(backend) -> None:  # type: ignore[no-untyped-def]
    prefix = "def fibonacci(n):\n    "
    whole = backend.generate(GenerateRequest(prefix=prefix, max_new_tokens=16, single_line=False))
    assert len(whole.tokens) > 4, whole.tokens
    req = GenerateRequest(prefix=prefix, max_new_tokens=16, single_line=False)
    req.give_way = lambda: req.partial is not None and len(req.partial.tokens) >= 3
    part = backend.generate(req)
    assert part.preempted and not part.cancelled
    assert part.tokens == whole.tokens[:3]
    assert whole.text.startswith(part.text) and part.text


class _SetAfter:
    """An event-like ``cancel`` (a flag unit's ``GiveWay``) that is set from its ``n``-th
    ``is_set`` on."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def is_set(self) -> bool:
        self.calls += 1
        return self.calls >= self.n


def test_a_scoring_pass_gives_way_between_layers(backend) -> None:  # type: ignore[no-untyped-def]
    """A flag unit's scoring chunk stops inside its pass when a completion waits (not at the end
    of the chunk), and scoring again gives what an uninterrupted run gives."""
    text = "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n"
    cancel = _SetAfter(5)  # one check before the chunk, then before each decoder layer
    with pytest.raises(InterruptedError):
        backend.score_into_slot(text, "flag:x", cancel)  # type: ignore[arg-type]
    assert cancel.calls == 5
    assert backend.slots.get("flag:x") is None  # nothing half-scored is kept
    again = backend.score_into_slot(text, "flag:x")
    fresh = backend.score_into_slot(text, "flag:y")
    assert again.line_logprobs == fresh.line_logprobs and again.tokens == fresh.tokens
    with pytest.raises(InterruptedError):
        backend.score(text, _SetAfter(3))  # type: ignore[arg-type]
