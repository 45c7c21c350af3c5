"""A transformers causal LM in memory and the passes every part of the backend shares: encoding,
the forward pass (stock, or the fast CPU decoder for generated tokens), KV caches, the stop
tokens and the token-healing index. Touched only on the model worker (``runner``).

A stock forward pass can be given up between two decoder layers (``stoppable``): a check before
each layer raises ``Preempted`` when the armed ``stop()`` says so, and ``forward`` takes the
layers' partial writes back out of the KV cache. A prompt chunk of 256 tokens is one pass of
about half a second on one CPU thread; this lets other work have the model worker within one
layer (a thirtieth of that) without cutting prompts into smaller, slower passes."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tactful.backend import healing, names
from tactful.backend.fim import FimTemplate, detect_fim

if TYPE_CHECKING:
    from tactful.backend.fast import Decoder

log = logging.getLogger(__name__)


class Preempted(Exception):
    """A stock forward pass was given up between two decoder layers (``LoadedModel.stoppable``)."""


class LoadedModel:
    """The model, its tokenizer, the device, the fast decoder when it is on, and the counters."""

    def __init__(self, model: Any, tokenizer: Any, device: str) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.tok = tokenizer
        self.device = device
        specials = list(getattr(tokenizer, "all_special_tokens", []))
        specials += list(getattr(tokenizer, "additional_special_tokens", []) or [])
        specials += list(tokenizer.get_vocab().keys()) if len(tokenizer) < 300_000 else []
        self.fim_template: FimTemplate | None = detect_fim(t for t in specials if "<" in t)
        self.stop_ids = self._collect_stop_ids()
        self._heal: healing.HealIndex | None = None
        #: The recent preambles' names, for name-guided decoding (``names``).
        self.guide_names = names.GuideCache()
        #: The fast CPU decoder when it is on (see ``fast.py``), else None.
        self.fast: Decoder | None = None
        #: Totals since start, for benchmarks and the status command.
        self.stats = {
            "prefilled": 0,
            "reused": 0,
            "generated": 0,
            "calls": 0,
            "cancelled": 0,
            "finished": 0,
            "preempted": 0,
        }
        #: The check the decoder layers run before each of them (``stoppable``); None: none.
        self._stop: Callable[[], bool] | None = None
        #: True when the decoder layers were found and check ``_stop`` (Llama-style models).
        self.stops_in_pass = self._install_layer_checks()

    def _install_layer_checks(self) -> bool:
        """A pre-hook on each decoder layer that raises ``Preempted`` when the armed stop says
        so (one attribute read when none is armed)."""
        layers = getattr(getattr(self.model, "model", None), "layers", None)
        if layers is None or not hasattr(self.model, "register_forward_pre_hook"):
            return False

        def check(_module: Any, _args: Any) -> None:
            stop = self._stop
            if stop is not None and stop():
                raise Preempted()

        for layer in layers:
            layer.register_forward_pre_hook(check)
        return True

    @contextmanager
    def stoppable(self, stop: Callable[[], bool] | None) -> Iterator[None]:
        """Stock passes run inside may be given up between two decoder layers when ``stop()``
        returns True (it raises ``Preempted`` out of the pass; the caller undoes its cache
        writes, see ``uncommit``). ``stop`` must be quick: it runs before every layer."""
        previous, self._stop = self._stop, stop
        try:
            yield
        finally:
            self._stop = previous

    def _collect_stop_ids(self) -> set[int]:
        ids: set[int] = set()
        eos = self.tok.eos_token_id
        if isinstance(eos, int):
            ids.add(eos)
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for e in gen_eos if isinstance(gen_eos, list) else [gen_eos]:
            if isinstance(e, int):
                ids.add(e)
        names = list(self.fim_template.stop_tokens) if self.fim_template else []
        names += ["<|endoftext|>", "<|im_end|>", "<|im_start|>", "<file_sep>", "<|file_sep|>"]
        vocab = self.tok.get_vocab()
        for n in names:
            for v in (n, "▁" + n):
                if v in vocab:
                    ids.add(vocab[v])
        return ids

    # --- tokens --------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def last_token(self, text: str) -> str:
        """The text of the last token of ``text`` (empty when it has none): for token healing."""
        ids = self.encode(text)
        return self.tok.decode(ids[-1:]) if ids else ""

    def bos(self) -> int:
        """The token a sequence starts with (the end token where there is no BOS)."""
        bos = self.tok.bos_token_id
        return int(bos if bos is not None else self.tok.eos_token_id)

    def heal_index(self) -> healing.HealIndex:
        """The token-healing index, built on first use (``load`` builds it while warming up)."""
        if self._heal is None:
            self._heal = healing.build(self.torch, self.tok, self.stop_ids)
        return self._heal

    def name_guide(self, preamble: str, file_text: str) -> names.Guide:
        """The name guide of a request with repository context ``preamble``."""
        cache = self.guide_names

        def spell(text: str) -> tuple[tuple[int, str], ...]:
            return cache.spelling(text, self.encode, lambda i: self.tok.decode([i]))

        return names.Guide(cache.names(preamble), file_text, self.heal_index().by_text, spell)

    # --- forward passes and KV caches ----------------------------------------------------------
    def forward(
        self,
        ids: list[int],
        cache: Any,
        decode: bool = False,
        stop: Callable[[], bool] | None = None,
    ) -> Any:
        """Logits after ``ids``. Prompt tokens always take the stock path with the model's own
        weights; ``decode`` (generated tokens) may take the fast decoder. A stock pass is given
        up between two layers when ``stop()`` returns True: ``Preempted`` is raised and
        ``cache`` is left as it was before the call."""
        start = cache.get_seq_length()
        if decode and self.fast is not None:
            try:
                return self.fast.forward(ids, cache)
            except RuntimeError as exc:
                if "out of memory" in str(exc).lower():
                    raise
                # Keep serving: undo this step's partial cache writes, use the stock path from now.
                log.warning("fast decoding failed, using the stock path from now: %s", exc)
                self.fast = None
                uncommit(cache, start)
        inp = self.torch.tensor([ids], device=self.device)
        try:
            with self.stoppable(stop):
                out = self.model(input_ids=inp, cache=cache, use_cache=True, logits_to_keep=1)
        except Preempted:
            uncommit(cache, start)
            raise
        return out.logits[0, -1].float()

    def new_cache(self) -> Any:
        if self.fast is not None:
            from tactful.backend import fast

            return fast.new_cache(self.model.config)
        return full_cache(self.model.config)

    def fork(self, cache: Any, length: int) -> Any:
        """A copy of the first ``length`` positions of ``cache``."""
        if self.fast is not None:
            from tactful.backend import fast

            return fast.fork_cache(cache, length, self.model.config)
        out = copy.deepcopy(cache)
        crop(out, length)
        return out


def full_cache(config: Any) -> Any:
    """A ``DynamicCache`` that keeps every position in every layer. A sliding-window layer
    (Gemma 2 and 3, Phi-3, Mistral, Cohere 2 ...) drops what falls out of its window and can
    then not be cut back, which prefix reuse, forks and healing need; kept whole, the model's
    attention mask still applies the window."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=config)
    cache.layers = [
        DynamicLayer() if getattr(layer, "is_sliding", False) else layer for layer in cache.layers
    ]
    return cache


def uncommit(cache: Any, length: int) -> None:
    """Take a pass given up part way back out of ``cache``: the layers it reached hold its
    tokens, the others do not; each is cut back to ``length`` positions."""
    for layer in cache.layers:
        extra = layer.get_seq_length() - length
        if extra > 0:
            layer.crop(-extra)


def crop(cache: Any, length: int) -> None:
    """Keep the first ``length`` positions of ``cache``."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)
