"""Models with sliding-window attention layers (Gemma 3 here, random weights, no download): the
backend's KV cache keeps every position, so it can be cut back and reused like any other."""

from __future__ import annotations

import torch
from tests.unit.test_fast_decode import _tiny

from tactful.backend.model import crop, full_cache


def _tiny_gemma3() -> torch.nn.Module:
    return _tiny(
        "gemma3_text",
        torch.float32,
        head_dim=16,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention"],
    )


def _logits(model: torch.nn.Module, ids: list[int], cache: object) -> torch.Tensor:
    out = model(input_ids=torch.tensor([ids]), cache=cache, use_cache=True)
    return out.logits[0].float()


def test_a_cache_past_the_window_is_cut_back_and_reused() -> None:
    from transformers import DynamicCache

    model = _tiny_gemma3()
    ids = list(range(10, 30))
    with torch.inference_mode():
        reference = _logits(model, ids, DynamicCache(config=model.config))
        # The model's own cache drops what leaves a window and then cannot be cut back, which
        # the backend's prefix reuse and forks need; the backend's keeps every position.
        cache = full_cache(model.config)
        assert not any(cache.is_sliding)
        _logits(model, ids[:12], cache)
        crop(cache, 8)  # back to 8 of 12 positions, far past the window of 4
        assert cache.get_seq_length() == 8
        rest = _logits(model, ids[8:], cache)
    # The sliding window still applies: the same logits as one pass over the whole text.
    assert torch.allclose(rest, reference[8:], atol=1e-4), (rest - reference[8:]).abs().max()
