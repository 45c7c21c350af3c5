"""The seam between the completion path and what learns from it (feedback log, CDHF cascade).

The completion engine calls a ``SuggestionHooks`` object at fixed points: the show/hide gate
(:class:`tactful.cascade.gate.Gate`, which hands what happened to the feedback tracker), or
``NullHooks`` (show everything, record nothing) when logging and the cascade are off. Plain data only:
no torch, no pygls.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class RequestInfo:
    """One inline completion request, as the server saw it."""

    uri: str
    language_id: str
    #: The whole document text at request time and the cursor's offset in it (code points).
    text: str
    offset: int
    line: int
    character: int
    version: int | None = None
    #: "automatic" (as the user types) or "invoked" (explicitly asked for).
    trigger: str = "automatic"
    #: Syntactic class of the cursor position from the context module (e.g. "block_start",
    #: "line_end", "mid_line", "comment", "string", "other").
    context_class: str = "other"
    multiline: bool = False
    t: float = field(default_factory=time.time)
    #: The request's id: the key of its events in the log and of its state in the gate.
    rid: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class SuggestionInfo:
    """A candidate suggestion after post-processing."""

    text: str
    token_logprobs: list[float] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    #: Where it came from: "model", "cache" or "type_along".
    source: str = "model"
    model: str = ""
    #: Seconds the model spent on it (0 for cache and type-along).
    seconds: float = 0.0


@dataclass
class Decision:
    """A show/hide decision of one cascade stage."""

    show: bool = True
    #: The stage's predicted probability that the suggestion would be rejected (None: no model).
    p_reject: float | None = None
    #: 1 or 2; 0 when no stage decided.
    stage: int = 0
    #: Stage 1 was unsure and deferred to stage 2.
    deferred: bool = False
    #: The threshold ``p_reject`` was compared with (None: no model, or nothing compared).
    threshold: float | None = None


@dataclass
class Judged:
    """A generated suggestion with both stages' decisions on it: what stage 2 hid, or what the
    client got. The hooks (and the gate's recorder) take it as one argument."""

    req: RequestInfo
    sugg: SuggestionInfo
    stage1: Decision
    stage2: Decision


class SuggestionHooks(Protocol):
    """Called by the completion engine; implementations must be cheap and must not raise."""

    def before_generation(self, req: RequestInfo) -> Decision:
        """Stage 1: decide from context and telemetry whether to call the model at all."""
        ...

    def after_generation(
        self, req: RequestInfo, sugg: SuggestionInfo, stage1: Decision
    ) -> Decision:
        """Stage 2: decide with the suggestion in hand whether to show it."""
        ...

    def skipped(self, req: RequestInfo, stage1: Decision) -> None:
        """Stage 1 skipped generation."""
        ...

    def hidden(self, judged: Judged) -> None:
        """Stage 2 hid a generated suggestion."""
        ...

    def shown(self, judged: Judged, suggestion_id: str) -> None:
        """The suggestion was returned to the client with this id (in its accept command)."""
        ...

    def extended(self, suggestion_id: str, text: str) -> None:
        """A suggestion shown in part (the completion deadline) was generated to its end:
        ``text`` starts with the shown text and is what type-along serves from now on."""
        ...

    def document_changed(self, uri: str, text: str, version: int | None) -> None:
        """The server's copy of a document changed (inferred rejection, code survival)."""
        ...

    def document_closed(self, uri: str) -> None:
        """A document was closed."""
        ...


class NullHooks:
    """Show everything, record nothing."""

    def before_generation(self, req: RequestInfo) -> Decision:
        return Decision()

    def after_generation(
        self, req: RequestInfo, sugg: SuggestionInfo, stage1: Decision
    ) -> Decision:
        return Decision()

    def skipped(self, req: RequestInfo, stage1: Decision) -> None:
        pass

    def hidden(self, judged: Judged) -> None:
        pass

    def shown(self, judged: Judged, suggestion_id: str) -> None:
        pass

    def extended(self, suggestion_id: str, text: str) -> None:
        pass

    def document_changed(self, uri: str, text: str, version: int | None) -> None:
        pass

    def document_closed(self, uri: str) -> None:
        pass
