"""The small interface between tactful and a language model, as plain data.

This is the only backend module the LSP layer imports; it must not import torch or transformers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol


class ModelError(Exception):
    """A model could not be loaded or run; the message is meant for a person."""


@dataclass
class GenerateRequest:
    """Generate a continuation of ``prefix`` (and, for FIM models, before ``suffix``)."""

    prefix: str
    suffix: str = ""
    max_new_tokens: int = 24
    #: Stop at the first newline that follows generated non-whitespace text.
    single_line: bool = True
    #: Extra stop strings (the generated text is cut before them).
    stop: tuple[str, ...] = ()
    #: Key of the KV cache slot to reuse (usually the document URI); None: no reuse.
    cache_key: str | None = None
    #: Set from another thread to stop generation within one decoding step.
    cancel: threading.Event = field(default_factory=threading.Event)
    #: Asked on the model worker between decoding steps and between the decoder layers of each
    #: prompt chunk: True when the generation must give the worker to other work (another
    #: document's request, see ``ModelRunner.give_way``). It then stops where it is: the whole
    #: prompt chunks prefilled stay in the ``cache_key`` slot, the text written so far is kept,
    #: and the result is marked ``preempted``. None: never.
    give_way: Callable[[], bool] | None = field(default=None, compare=False)
    #: Repository context that starts the prompt, before the prefix (and before the FIM
    #: template's first token): see ``tactful.workspace``.
    preamble: str = ""
    #: Name-guided decoding (``backend.names``): steer an identifier the model writes towards
    #: the names of the preamble and the file. Only with a preamble.
    guide_names: bool = False
    #: Use the suffix through the model's FIM template when it has one.
    use_fim: bool = True
    #: Optional per-step check on the text so far; returning True stops generation
    #: (used to cut multi-line completions at the end of the block).
    should_stop: object | None = None
    #: Generate from a copy of the ``cache_key`` slot's cache and leave the slot as it was, so
    #: that many lines of one scored text can be regenerated without prefilling it again
    #: (used by line flags after ``score_into_slot``).
    keep_slot: bool = False
    #: Progress of the generation, for readers on other threads (the completion deadline shows
    #: the words written so far): see ``publish``, ``partial`` and ``watch``.
    _partial: Generation | None = field(default=None, init=False, repr=False, compare=False)
    _watchers: list[Callable[[], None]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def publish(self, gen: Generation) -> None:
        """Backend (the model worker): the generation in progress has started or grown. A copy
        is kept, so readers never see it half-updated; watchers are called on this thread."""
        snapshot = replace(gen, tokens=list(gen.tokens), token_logprobs=list(gen.token_logprobs))
        with self._lock:
            self._partial = snapshot
            watchers = list(self._watchers)
        for fn in watchers:
            fn()

    @property
    def partial(self) -> Generation | None:
        """The generation as last published (a copy nobody changes), or None before it starts."""
        with self._lock:
            return self._partial

    @partial.setter
    def partial(self, gen: Generation | None) -> None:
        if gen is None:
            with self._lock:
                self._partial = None
        else:
            self.publish(gen)

    def watch(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn()`` (on the model worker: it must be quick and must not raise) after each
        ``publish``; returns the function that stops it."""
        with self._lock:
            self._watchers.append(fn)

        def stop() -> None:
            with self._lock:
                if fn in self._watchers:
                    self._watchers.remove(fn)

        return stop


@dataclass
class Generation:
    """A generated continuation with per-token log-probabilities."""

    text: str
    token_logprobs: list[float] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    #: Prompt tokens served from the KV cache instead of being prefilled.
    reused_tokens: int = 0
    cancelled: bool = False
    seconds: float = 0.0
    #: The generation was cut because the model emitted an end token or a stop rule fired.
    stopped: bool = False
    #: The generation gave the model worker to other work (``GenerateRequest.give_way``) before
    #: it ended: ``text`` is what it had written by then (possibly nothing).
    preempted: bool = False


@dataclass
class LineScores:
    """Teacher-forced token log-probabilities of a text, grouped by line (0-based)."""

    #: For each line: the log-probabilities of the tokens that start on that line.
    line_logprobs: list[list[float]]
    #: For each line: the entropy (nats) of the model's distribution at those tokens.
    line_entropy: list[list[float]]
    tokens: int = 0
    #: ``score_into_slot`` only: each token's start (code points into the text) and whether it
    #: was the model's own greedy choice there (the first token: False). Greedy regeneration of a
    #: line repeats the written text up to its first non-greedy token, so it can start there.
    token_starts: list[int] = field(default_factory=list)
    token_greedy: list[bool] = field(default_factory=list)


class Backend(Protocol):
    """What tactful needs from a model.

    A backend may also offer ``generate_many(reqs) -> list[Generation]``: several ``keep_slot``
    regenerations of one scored slot decoded together (``TransformersBackend`` does); line
    flags use it where it exists and call ``generate`` once per line otherwise."""

    name: str
    #: True when the model has fill-in-the-middle tokens and a template for them.
    fim: bool

    def generate(self, req: GenerateRequest) -> Generation:
        """Greedy continuation, reusing the KV cache slot ``req.cache_key`` when given. Calls
        ``req.publish(gen)`` when it starts and after each token (the completion deadline shows
        the words written so far) and stops within one step once ``req.cancel`` is set."""
        ...

    def score(self, text: str, cancel: threading.Event | None = None) -> LineScores:
        """Per-line token log-probabilities of ``text`` in one teacher-forced pass."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text``."""
        ...

    def log_prob(self, prefix: str, continuation: str, suffix: str = "") -> float:
        """Total log-probability of ``continuation`` after ``prefix`` (before ``suffix`` with FIM)."""
        ...

    def score_into_slot(
        self, text: str, cache_key: str, cancel: threading.Event | None = None
    ) -> LineScores:
        """Like ``score``, but without a leading BOS token and keeping the KV cache of ``text``
        in the slot ``cache_key``, so that ``generate(..., keep_slot=True)`` of any prefix of
        ``text`` prefills nothing (or the few tokens that tokenise differently at the cut).
        The first token of the text has no log-probability."""
        ...

    def drop_cache(self, cache_key: str) -> None:
        """Forget the KV cache slot of a closed document."""
        ...
