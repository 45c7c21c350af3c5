"""KV-cache slots: one per document (the ``cache_key``), kept least-recently-used first, so that
the next keystroke's prompt prefills only what changed. Each slot holds the token ids its cache
covers. Touched only on the model worker (``runner``)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

#: Documents whose KV caches are kept (least recently used is dropped).
MAX_SLOTS = 4


@dataclass
class Slot:
    ids: list[int] = field(default_factory=list)
    cache: Any = None


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading ids ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Slots:
    """The documents' slots, at most ``MAX_SLOTS``."""

    def __init__(self) -> None:
        self._slots: OrderedDict[str, Slot] = OrderedDict()

    def take(self, key: str | None) -> Slot:
        """The slot of ``key`` (a new one when there is none), now the most recently used; a
        fresh slot that is not kept when ``key`` is None."""
        if key is None:
            return Slot()
        slot = self._slots.pop(key, None) or Slot()
        self.put(key, slot)
        return slot

    def get(self, key: str) -> Slot | None:
        """The slot of ``key`` if there is one (marked as in use: the last to be dropped)."""
        slot = self._slots.get(key)
        if slot is not None:
            self._slots.move_to_end(key)
        return slot

    def put(self, key: str, slot: Slot) -> None:
        self._slots[key] = slot
        while len(self._slots) > MAX_SLOTS:
            self._slots.popitem(last=False)

    def drop(self, key: str) -> None:
        self._slots.pop(key, None)
