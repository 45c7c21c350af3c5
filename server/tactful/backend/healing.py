"""Token healing's vocabulary index: which tokens fit the text healed away from a prompt's end
(``prompt.build_prompt``). Needs torch (the ids are a tensor the decoder indexes with)."""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any


class HealIndex:
    """The vocabulary sorted by token text, for token healing: which tokens fit the text healed
    away from a prompt's end. Tokens that start with it lie in one run of the sorted texts (found
    by bisection); tokens that are a prefix of it are looked up by each of its prefixes. A scan
    of the vocabulary took about 13 ms a call; the id tensors of recent heal texts are kept."""

    #: Heal texts whose id tensors are kept.
    KEEP = 256

    def __init__(self, torch: Any, tokens: Iterable[tuple[int, str]]) -> None:
        self._torch = torch
        pairs = sorted((s, i) for i, s in tokens)
        self.texts = [s for s, _ in pairs]
        self.ids = [i for _, i in pairs]
        self.by_text: dict[str, list[int]] = {}
        for s, i in pairs:
            self.by_text.setdefault(s, []).append(i)
        self._recent: OrderedDict[str, Any] = OrderedDict()

    def allowed(self, heal: str) -> Any:
        """Ids (ascending, a tensor) of the tokens that fit a healed prompt end ``heal``: those
        that start with it and those that are a prefix of it."""
        got = self._recent.get(heal)
        if got is not None:
            self._recent.move_to_end(heal)
            return got
        lo = bisect.bisect_left(self.texts, heal)
        hi = bisect.bisect_left(self.texts, heal + "\U0010ffff", lo)
        ids = set(self.ids[lo:hi])
        for k in range(1, len(heal)):
            ids.update(self.by_text.get(heal[:k], ()))
        got = self._torch.tensor(sorted(ids), dtype=self._torch.long)
        self._recent[heal] = got
        while len(self._recent) > self.KEEP:
            self._recent.popitem(last=False)
        return got


def build(torch: Any, tok: Any, stop_ids: set[int]) -> HealIndex:
    """The index of a tokenizer's vocabulary, without special, stop and broken-byte tokens."""
    strings = tok.batch_decode([[i] for i in range(len(tok))], skip_special_tokens=False)
    special = set(getattr(tok, "all_special_ids", []))
    return HealIndex(
        torch,
        (
            (i, s)
            for i, s in enumerate(strings)
            if s and i not in special and i not in stop_ids and "\ufffd" not in s
        ),
    )
