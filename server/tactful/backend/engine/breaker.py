"""The circuit breaker in front of an engine: whether to ask it now, from its recent failures,
and when to probe it again while it is away.

Plain state behind a lock, with an injectable clock. Must not send requests or tell anyone:
the router (``routing.py``) runs the probes and says what changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tactful.backend.engine.errors import OPEN_AT_ONCE


class Breaker:
    """Closed: the engine serves. Open: it does not, until a health probe succeeds; probes are
    spaced ``cooldown`` seconds, doubling up to ``max_cooldown`` while they fail. Unreachable,
    timed-out, refused (401) and wrong-model answers open it at once, other failures after
    ``threshold`` in a row."""

    def __init__(
        self,
        *,
        threshold: int = 3,
        cooldown: float = 1.0,
        max_cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.clock = clock
        self.open = False
        self.failures = 0
        self.cooldown = cooldown
        self.next_probe = 0.0
        self.probing = False
        self._lock = threading.Lock()

    def failure(self, kind: str) -> bool:
        """Count a failure; True when it opened the breaker."""
        with self._lock:
            self.failures += 1
            if not self.open and (kind in OPEN_AT_ONCE or self.failures >= self.threshold):
                self.open = True
                self.cooldown = self.base_cooldown
                self.next_probe = self.clock() + self.cooldown
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self.failures = 0

    def probe_due(self) -> bool:
        """True (once) when it is open and a probe should run now."""
        with self._lock:
            if not self.open or self.probing or self.clock() < self.next_probe:
                return False
            self.probing = True
            return True

    def probed(self, ok: bool) -> bool:
        """Record a probe's result; True when it closed the breaker."""
        with self._lock:
            self.probing = False
            if ok:
                self.open, self.failures, self.cooldown = False, 0, self.base_cooldown
                return True
            self.cooldown = min(self.max_cooldown, self.cooldown * 2)
            self.next_probe = self.clock() + self.cooldown
            return False
