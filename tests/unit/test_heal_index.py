"""The token-healing index finds exactly the tokens a scan of the vocabulary finds."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from tactful.backend.healing import HealIndex


def _scan(tokens: list[tuple[int, str]], heal: str) -> list[int]:
    return sorted(i for i, s in tokens if heal.startswith(s) or s.startswith(heal))


def test_small_vocabulary() -> None:
    words = ["a", "ab", "abc", "b", " ", "  ", " re", " ret", " return", "ré", "(", "()", "x"]
    tokens = [*enumerate(words), (len(words), "ab")]  # two ids, one text
    index = HealIndex(torch, tokens)
    for heal in ["a", "ab", "abd", " ", "  ", " r", " ret", " returns", "r", "ré", "(", "q"]:
        assert index.allowed(heal).tolist() == _scan(tokens, heal), heal
    assert index.allowed("ab").tolist() == [0, 1, 2, 13]
    assert len(index.allowed("q")) == 0
    again = index.allowed(" ret")  # kept: the same tensor
    assert again is index.allowed(" ret")


@pytest.mark.model
def test_real_vocabulary_matches_a_scan() -> None:
    from tactful import paths
    from tactful.backend.hf import TransformersBackend

    backend = TransformersBackend.load(None, cache_dir=paths.cache_dir())
    index = backend._heal_index()
    tokens = list(zip(index.texts, index.ids, strict=True))
    rng = random.Random(7)
    text = Path(random.__file__).read_text(encoding="utf-8")
    heals = [" ", "    ", "\t", "ret", " ret", "_", "é", "(", "x"] + [
        text[j : j + rng.randint(1, 6)] for j in rng.sample(range(len(text) - 8), 150)
    ]
    for heal in heals:
        assert backend._allowed_for_heal(heal).tolist() == _scan(
            [(i, s) for s, i in tokens], heal
        ), repr(heal)
