"""The flag memo: the model's results per scoring window, in memory and in the persistent flag
cache on disk, so that an unchanged window is flagged again without model work.

Owns ``WindowRecord`` (one window's scoring pass and regenerations, as JSON), ``WindowMemo`` and
``open_store``; must not run the model (jobs fill it).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tactful.backend.types import LineScores
from tactful.config import FlagSettings

if TYPE_CHECKING:
    from tactful.cache import JsonCache

log = logging.getLogger(__name__)


@dataclass
class WindowRecord:
    """What the model gave for one window's text: its scoring pass, and the regenerations done
    so far (by the line's place in the window: suggestion, regeneration features, kept tokens)."""

    scores: LineScores
    regens: dict[int, tuple[str, list[float], int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        s = self.scores
        return {
            "lp": s.line_logprobs,
            "ent": s.line_entropy,
            "tokens": s.tokens,
            "starts": s.token_starts,
            "greedy": "".join("1" if g else "0" for g in s.token_greedy),
            "regens": {str(k): [t, f, kept] for k, (t, f, kept) in self.regens.items()},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WindowRecord:
        """The record ``to_json`` wrote; ValueError (or KeyError, TypeError) on anything else."""
        lp, ent = d["lp"], d["ent"]
        if not isinstance(lp, list) or not isinstance(ent, list) or len(lp) != len(ent):
            raise ValueError("a window record needs as many entropy rows as log-probability rows")
        scores = LineScores(
            [[float(x) for x in row] for row in lp],
            [[float(x) for x in row] for row in ent],
            int(d["tokens"]),
            token_starts=[int(x) for x in d["starts"]],
            token_greedy=[c == "1" for c in str(d["greedy"])],
        )
        regens = {
            int(k): (str(t), [float(x) for x in f], int(kept))
            for k, (t, f, kept) in dict(d["regens"]).items()
        }
        return cls(scores, regens)


#: The persistent flag cache's folder in the cache directory.
STORE_FOLDER = "flag-windows"
#: The modules whose code computes a window record: a stored record is read only by the same code.
_RECORD_CODE = (
    "flags/job.py",
    "flags/memo.py",
    "flags/features.py",
    "backend/hf.py",
    "backend/model.py",
    "backend/prompt.py",
    "backend/healing.py",
    "backend/slots.py",
    "backend/stops.py",
    "backend/generation.py",
    "backend/batched.py",
    "backend/scoring.py",
    "backend/fast.py",
    "backend/types.py",
)


@functools.cache
def _record_code_version() -> str:
    """A fingerprint of the code that computes window records, and of the torch it runs on."""
    import hashlib
    from importlib import metadata

    from tactful import __version__

    h = hashlib.sha256(f"flag-window-record/{__version__}\x1f".encode())
    here = Path(__file__).resolve().parent.parent
    for name in _RECORD_CODE:
        try:
            h.update((here / name).read_bytes())
        except OSError:  # installed without its sources: the version stands for them
            h.update(name.encode())
    with contextlib.suppress(metadata.PackageNotFoundError):
        h.update(metadata.version("torch").encode())
    return h.hexdigest()


class WindowMemo:
    """Model results of recently flagged windows, by the window's text (and the model's name,
    dtype and decoding path): flagging a document again after an edit redoes only the windows
    whose text changed. A window's results depend only on its text, so they are the ones a fresh
    run computes (a regeneration done in another batch can differ at a bfloat16 tie, as batching
    can). Keep one per backend and :meth:`clear` it when the model changes.

    With a ``store`` (a :class:`tactful.cache.JsonCache`), the records also go to disk, so a
    restarted server, or another ``tactful flag`` run, flags an unchanged window without model
    work. Disk keys hash the memo key with a fingerprint of the code that computes the records
    and the torch version (``_record_code_version``); a record that cannot be read is a miss."""

    def __init__(self, windows: int = 64, store: JsonCache | None = None) -> None:
        self.windows = windows
        self._records: OrderedDict[tuple[str, str], WindowRecord] = OrderedDict()
        #: Jobs use it on the model thread; the LSP layer clears it from the event loop.
        self._lock = threading.Lock()
        self.store = store
        #: Records read from the store.
        self.loaded = 0

    @staticmethod
    def _disk_key(key: tuple[str, str]) -> str:
        from tactful.cache import hash_key

        return hash_key(_record_code_version(), *key)

    def get(self, key: tuple[str, str]) -> WindowRecord | None:
        with self._lock:
            rec = self._records.get(key)
            if rec is not None:
                self._records.move_to_end(key)
                return rec
        store = self.store
        if store is None:
            return None
        raw = store.get(self._disk_key(key))
        if raw is None:
            return None
        try:
            rec = WindowRecord.from_json(raw)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("flags: a stored window record is unreadable, recomputing it: %s", exc)
            return None
        self.loaded += 1
        self._remember(key, rec)
        return rec

    def put(self, key: tuple[str, str], rec: WindowRecord) -> None:
        self._remember(key, rec)
        self.save(key, rec)

    def save(self, key: tuple[str, str], rec: WindowRecord) -> None:
        """Write ``rec`` to the store (again, once regenerations were added to it)."""
        store = self.store
        if store is not None:
            store.put(self._disk_key(key), rec.to_json())

    def _remember(self, key: tuple[str, str], rec: WindowRecord) -> None:
        with self._lock:
            self._records[key] = rec
            self._records.move_to_end(key)
            while len(self._records) > self.windows:
                self._records.popitem(last=False)

    def clear(self) -> None:
        """Forget the records held in memory (the store keeps its own: its keys name the model)."""
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        return len(self._records)


def open_store(cache_dir: Path, size_mb: int | None = None) -> JsonCache | None:
    """The persistent flag cache in ``cache_dir`` (what the server uses with the same
    ``cacheDir``); None, with a warning, where it cannot be opened."""
    from tactful.cache import JsonCache

    folder = cache_dir / STORE_FOLDER
    try:
        return JsonCache(folder, size_mb or FlagSettings().cache_size_mb)
    except Exception as exc:  # a read-only or broken cache folder: flags work without it
        log.warning("flags: the flag cache in %s is unavailable: %s", folder, exc)
        return None
