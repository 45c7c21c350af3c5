"""Persistent caches on disk, bounded in size: JSON objects by a hashed key.

Two use it: the completion cache (exact context -> suggestion; keys hash the model, the
generation settings and the exact prompt window, so a hit is what the model would have said) and
the line-flag window cache (``flag.WindowMemo``). Values are plain strings (JSON): the caches
never store or load pickles.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _text_only_disk() -> Any:
    import diskcache

    class TextOnlyDisk(diskcache.Disk):  # type: ignore[misc]
        """diskcache storage that refuses to unpickle: str values only."""

        def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
            if not isinstance(value, str):
                raise TypeError("the cache stores strings only")
            return super().store(value, read, key=key)

        def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
            if mode == diskcache.core.MODE_PICKLE:
                raise ValueError("refusing to unpickle a cache entry")
            return super().fetch(mode, filename, value, read)

    return TextOnlyDisk


def hash_key(*parts: str) -> str:
    """A cache key: the SHA-256 of ``parts``, each ended by a separator."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.hexdigest()


def cache_key(model: str, settings: str, prefix: str, suffix: str, multiline: bool) -> str:
    return hash_key(model, settings, prefix, "\x00", suffix, "M" if multiline else "S")


class JsonCache:
    """diskcache-backed, size-bounded, string-only; a read that fails is a miss."""

    def __init__(self, directory: Path, size_mb: int) -> None:
        import diskcache

        directory.mkdir(parents=True, exist_ok=True)
        try:  # what it holds is derived from the user's code: readable by its owner only
            directory.chmod(0o700)
            for f in directory.iterdir():  # files an older version wrote 0644
                if f.is_file() and not f.is_symlink() and f.stat().st_mode & 0o077:
                    f.chmod(0o600)
        except OSError as exc:
            log.debug("cache folder %s: cannot restrict its permissions: %s", directory, exc)
        self.directory = directory
        self._cache = diskcache.Cache(
            str(directory),
            size_limit=size_mb * 1024 * 1024,
            disk=_text_only_disk(),
            eviction_policy="least-recently-used",
        )
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            raw = self._cache.get(key)
        except Exception as exc:  # corrupt entry or locked database: a miss, never an error
            log.warning("cache read failed (%s): %s", self.directory, exc)
            raw = None
        if not isinstance(raw, str):
            self.misses += 1
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            self.misses += 1
            return None
        self.hits += 1
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        try:
            self._cache.set(key, json.dumps(value))
        except Exception as exc:
            log.warning("cache write failed (%s): %s", self.directory, exc)

    def close(self) -> None:
        self._cache.close()
