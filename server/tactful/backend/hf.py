"""The transformers/torch backend behind tactful's ``Backend`` interface: a thin class that
composes the parts, each in its own module:

* ``loading`` - the embedded default, a local folder or a hub id; device, dtype, threads;
* ``model`` - the model in memory: encoding, forward passes, KV caches, stop tokens;
* ``prompt`` and ``healing`` - the prompt (FIM template or the prefix healed back) and the
  tokens that fit the healed text;
* ``slots`` - the per-document KV caches that the next keystroke reuses;
* ``generation`` and ``batched`` - greedy decoding, cancellation within one step, and
  several regenerations of one scored text decoded together;
* ``scoring`` - teacher-forced token scores per line, and a continuation's log-probability.

Every method runs on the model worker (``runner``) and holds the backend's lock. torch and
transformers are imported lazily, inside ``load``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tactful.backend import batched, generation, loading, scoring
from tactful.backend.healing import HealIndex
from tactful.backend.loading import Progress, cpu_has_bf16
from tactful.backend.model import LoadedModel, crop
from tactful.backend.slots import Slots
from tactful.backend.types import GenerateRequest, Generation, LineScores

if TYPE_CHECKING:
    from tactful.backend.fast import Decoder


class TransformersBackend:
    """A Hugging Face causal LM behind tactful's ``Backend`` interface."""

    def __init__(self, model: Any, tokenizer: Any, name: str, device: str) -> None:
        self.m = LoadedModel(model, tokenizer, device)
        self.model = model
        self.tok = tokenizer
        self.name = name
        self.device = device
        self._torch = self.m.torch
        self.fim_template = self.m.fim_template
        self.fim = self.fim_template is not None
        #: Totals since start, for benchmarks and the status command.
        self.stats = self.m.stats
        self.slots = Slots()
        self._lock = threading.RLock()

    @property
    def fast(self) -> Decoder | None:
        """The fast CPU decoder when it is on (see ``fast.py``), else None."""
        return self.m.fast

    @fast.setter
    def fast(self, decoder: Decoder | None) -> None:
        self.m.fast = decoder

    @classmethod
    def load(
        cls,
        spec: str | None,
        *,
        cache_dir: Path,
        device: str = "auto",
        dtype: str = "auto",
        threads: int = 0,
        fast_decode: bool = True,
        progress: Progress | None = None,
    ) -> TransformersBackend:
        """Load ``spec`` (None: the embedded model; a folder; or a hub id)."""
        report = progress or (lambda _m, _p: None)
        loaded = loading.load(
            spec, cache_dir=cache_dir, device=device, dtype=dtype, threads=threads, report=report
        )
        backend = cls(loaded.model, loaded.tokenizer, loaded.name, loaded.device)
        if fast_decode:
            loading.enable_fast(backend.m, loaded)
        report("Warming up", 90)
        backend.m.heal_index()  # the token-healing index, built once
        backend.generate(GenerateRequest(prefix="def add(a, b):", max_new_tokens=2))
        report(f"{loaded.name} ready", 100)
        return backend

    @contextmanager
    def _using(self) -> Iterator[None]:
        with self._lock, self._torch.inference_mode():
            yield

    # --- the Backend interface -----------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.tok.encode(text, add_special_tokens=False))

    def encode(self, text: str) -> list[int]:
        return self.m.encode(text)

    def drop_cache(self, cache_key: str) -> None:
        with self._lock:
            self.slots.drop(cache_key)

    def generate(self, req: GenerateRequest) -> Generation:
        with self._using():
            return generation.generate(self.m, self.slots, req)

    def generate_many(self, reqs: Sequence[GenerateRequest]) -> list[Generation]:
        """Greedy continuations of several prefixes of one scored text, decoded together
        (``batched``); the texts are what ``generate`` gives one at a time."""
        with self._using():
            return batched.generate_many(self.m, self.slots, reqs)

    def score(self, text: str, cancel: threading.Event | None = None) -> LineScores:
        with self._using():
            return scoring.score(self.m, text, cancel or threading.Event())

    def score_into_slot(
        self, text: str, cache_key: str, cancel: threading.Event | None = None
    ) -> LineScores:
        with self._using():
            return scoring.score_into_slot(
                self.m, self.slots, text, cache_key, cancel or threading.Event()
            )

    def log_prob(self, prefix: str, continuation: str, suffix: str = "") -> float:
        with self._using():
            return scoring.log_prob(self.m, prefix, continuation, suffix)

    # --- the parts, for tests and ``tactful bench decode`` -------------------------------------
    def _heal_index(self) -> HealIndex:
        return self.m.heal_index()

    def _allowed_for_heal(self, heal: str) -> Any:
        """Ids (ascending, a tensor) of the tokens that fit a healed prompt end ``heal``."""
        return self.m.heal_index().allowed(heal)

    def _forward(self, ids: list[int], cache: Any, decode: bool = False) -> Any:
        return self.m.forward(ids, cache, decode)

    def _new_cache(self) -> Any:
        return self.m.new_cache()

    def _fork(self, cache: Any, length: int) -> Any:
        return self.m.fork(cache, length)

    @staticmethod
    def _crop(cache: Any, length: int) -> None:
        crop(cache, length)


__all__ = ["TransformersBackend", "cpu_has_bf16"]
