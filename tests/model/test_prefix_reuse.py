"""KV-cache prefix reuse gives what a cold run gives (real embedded model): the same text in float32, the same up to rounding at a near tie in bfloat16."""

from __future__ import annotations

import pytest
import torch

from tactful import paths
from tactful.backend.types import GenerateRequest

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def backend():  # type: ignore[no-untyped-def]
    from tactful.backend.hf import TransformersBackend

    return TransformersBackend.load(None, cache_dir=paths.cache_dir())


def _same_up_to_rounding(warm, cold, tol: float) -> None:  # type: ignore[no-untyped-def]
    """The two runs choose the same tokens with log-probabilities within ``tol``, up to a first
    differing token that is a near tie in both runs (each chose its token with about the same
    log-probability), where rounding may pick either; after it the texts may go apart."""
    for j, (a, b) in enumerate(zip(warm.tokens, cold.tokens, strict=False)):
        la, lb = warm.token_logprobs[j], cold.token_logprobs[j]
        assert abs(la - lb) <= tol, (j, a, b, la, lb)
        if a != b:
            assert la < -0.3 and lb < -0.3, ("a confident token changed", j, a, b, la, lb)
            return
    assert warm.text == cold.text


def test_reuse_matches_cold_runs(backend) -> None:  # type: ignore[no-untyped-def]
    """In float32 a warm run gives exactly the cold run's text. In bfloat16 the reused cache was
    computed in other products than a cold prompt's, whose rounding moves log-probabilities by up
    to about 0.15: the texts agree except after a near tie."""
    base = 'import os\n\n\ndef read_config(path):\n    """Read a config file."""\n    with open(path) as f:\n        '
    typed = "data = f.read()"
    reused_total = 0
    same = 0
    exact = backend.model.dtype == torch.float32
    for k in range(0, len(typed) + 1, 3):
        prefix = base + typed[:k]
        warm = backend.generate(GenerateRequest(prefix=prefix, max_new_tokens=12, cache_key="doc"))
        cold = backend.generate(GenerateRequest(prefix=prefix, max_new_tokens=12, cache_key=None))
        if exact:
            assert warm.text == cold.text, (k, warm.text, cold.text)
        else:
            _same_up_to_rounding(warm, cold, tol=0.3)
        same += warm.text == cold.text
        assert cold.reused_tokens == 0
        reused_total += warm.reused_tokens
    assert reused_total > 0, "successive prompts must reuse the KV cache"
    assert same >= 5, "all but one of the six prompts give the cold run's text"


def test_cancelled_generation_stops_and_keeps_the_slot_consistent(backend) -> None:  # type: ignore[no-untyped-def]
    req = GenerateRequest(prefix="def f(x):\n    return", max_new_tokens=40, cache_key="c")
    req.cancel.set()
    out = backend.generate(req)
    assert out.cancelled and out.text == ""
    again = backend.generate(
        GenerateRequest(prefix="def f(x):\n    return", max_new_tokens=8, cache_key="c")
    )
    cold = backend.generate(GenerateRequest(prefix="def f(x):\n    return", max_new_tokens=8))
    assert again.text == cold.text


def test_typing_inside_a_word_needs_no_stock_forward(backend) -> None:  # type: ignore[no-untyped-def]
    """Mid-word the healed prompt is the one before: only its last token is run again, through
    the fast decoder (the rule for cold prompts too), so no stock forward of the model runs."""
    if backend.fast is None:
        pytest.skip("the fast decoder does not apply on this machine")
    prefix = (
        "import os\n\n\ndef read_config(path):\n    with open(path) as f:\n        data = f.rea"
    )
    first = backend.generate(GenerateRequest(prefix=prefix, max_new_tokens=4, cache_key="word"))
    stock_calls: list[int] = []
    hook = backend.model.register_forward_pre_hook(lambda *_: stock_calls.append(1))
    try:
        warm = backend.generate(
            GenerateRequest(prefix=prefix + "d", max_new_tokens=4, cache_key="word")
        )
    finally:
        hook.remove()
    assert warm.prompt_tokens == first.prompt_tokens
    assert warm.reused_tokens == warm.prompt_tokens - 1
    assert stock_calls == []
    cold = backend.generate(GenerateRequest(prefix=prefix + "d", max_new_tokens=4))
    assert warm.text == cold.text
