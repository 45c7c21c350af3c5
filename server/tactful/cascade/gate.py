"""The show/hide gate: the completion engine's stage 1 and stage 2, with exploration and the guard.

:class:`Gate` implements :class:`tactful.cascade.hooks.SuggestionHooks`. For each request it
computes the cascade's features (context, telemetry, then the suggestion's), asks the cascade
(:class:`tactful.cascade.model.Cascade`) whether to skip generation or hide the suggestion,
shows a share of those anyway (``cdhf.exploreRate``, one exploration rule for both stages),
and lets the :class:`~tactful.cascade.guard.Guard` hold hiding back when the cascade does not
keep its promise for this user. What happened is handed to a :class:`Recorder` (the feedback
tracker, :mod:`tactful.feedback.tracker`), which logs it and infers outcomes; the tracker
reports outcomes back (:meth:`Gate.on_outcome`) for the telemetry features and the guard.

Requests are keyed by :attr:`RequestInfo.rid`. One lock guards the gate's state; the gate
never calls the recorder while holding it (the recorder calls back into the gate under its
own lock). Nothing here raises into the completion path: a failing model shows the suggestion.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tactful.cascade import features as F
from tactful.cascade.guard import TYPED_WINDOW_S, Evidence, Guard, typed_outcome
from tactful.cascade.hooks import Decision, Judged, RequestInfo, SuggestionInfo

log = logging.getLogger(__name__)

#: Requests whose generation never reported back (cancelled, superseded) are dropped after this.
STALE_REQUEST_S = 120.0
#: Hidden suggestions watched for what is typed next at most (the oldest give way).
MAX_WATCHES = 200


class Recorder(Protocol):
    """What the gate hands on (implemented by :class:`tactful.feedback.tracker.SuggestionTracker`)."""

    def new_request(self, req: RequestInfo) -> None: ...
    def requested(
        self, req: RequestInfo, feats: dict[str, Any], stage1: Decision, explored: bool
    ) -> None: ...
    def skipped(self, req: RequestInfo, stage1: Decision) -> None: ...
    def generated(self, judged: Judged, sf: dict[str, Any]) -> None: ...
    def hidden(self, judged: Judged) -> None: ...
    def shown(self, judged: Judged, suggestion_id: str, explored: bool) -> None: ...
    def extended(self, suggestion_id: str, text: str) -> None: ...
    def document_changed(self, uri: str, text: str, version: int | None) -> None: ...
    def document_closed(self, uri: str) -> None: ...
    def guard_event(self, rid: str, data: dict[str, Any]) -> None: ...


@dataclass
class _Req:
    feats: dict[str, Any]
    t: float
    #: Why a would-hide decision was shown: "explored" or "backed_off" ('' when not).
    shown_because: str = ""
    would_hide: Decision | None = None


@dataclass
class _Watch:
    """A hidden suggestion whose place is watched for what the user types next."""

    rid: str
    uri: str
    before: str
    after: str
    text: str
    decision: Decision
    deadline: float


@dataclass
class Gate:
    """Stage 1 and stage 2 with exploration and the guard. See the module docstring."""

    recorder: Recorder | None
    cascade: Any | None
    explore_rate: float = 0.0
    clock: Callable[[], float] = time.time
    guard: Guard | None = None
    #: Told once per change of the guard's state (a sentence for the user).
    on_message: Callable[[str], None] | None = None
    seed: int = 1234
    telemetry: F.Telemetry = field(default_factory=F.Telemetry)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)
        self._reqs: dict[str, _Req] = {}
        self._awaiting: dict[str, tuple[str, Decision]] = {}  # rid -> (why shown, would-hide)
        self._watches: list[_Watch] = []

    # --- decisions -----------------------------------------------------------------------------
    def guarded(self, base: Decision) -> tuple[Decision, str]:
        """The decision to act on, and why a would-hide one is shown ('' when it is not)."""
        if base.show:
            return base, ""
        if self.guard is not None and not self.guard.allows(base.p_reject, base.threshold):
            why = "backed_off"
        elif self.explore_rate > 0 and self._rng.random() < self.explore_rate:
            why = "explored"
        else:
            return base, ""
        return Decision(True, base.p_reject, base.stage, base.deferred, base.threshold), why

    def _ask(self, stage: int, feats: dict[str, Any], stage1: Decision | None) -> Decision:
        if self.cascade is None:
            return Decision()
        try:
            d: Decision = (
                self.cascade.stage1(feats) if stage1 is None else self.cascade.stage2(feats, stage1)
            )
            return d
        except Exception:
            log.exception("stage %d model failed; showing", stage)
            return Decision()

    def before_generation(self, req: RequestInfo) -> Decision:
        try:
            return self._before_generation(req)
        except Exception:
            log.exception("stage 1 failed; showing")
            return Decision()

    def _before_generation(self, req: RequestInfo) -> Decision:
        if self.recorder is not None:
            self.recorder.new_request(req)  # outcomes of what was pending first
        now = self.clock()
        with self._lock:
            feats: dict[str, Any] = F.context_features(
                req.text[: req.offset], req.text[req.offset :], req.language_id
            )
            feats.update(self.telemetry.on_request(now, req.uri, len(req.text)))
            feats["features_version"] = F.FEATURES_VERSION
        base = self._ask(1, feats, None)
        with self._lock:
            decision, why = self.guarded(base)
            self._reqs[req.rid] = _Req(feats, now, why, base if why else None)
            self._prune(now)
        if self.recorder is not None:
            self.recorder.requested(req, feats, decision, why == "explored")
        return decision

    def after_generation(
        self, req: RequestInfo, sugg: SuggestionInfo, stage1: Decision
    ) -> Decision:
        try:
            return self._after_generation(req, sugg, stage1)
        except Exception:
            log.exception("stage 2 failed; showing")
            return Decision()

    def _after_generation(
        self, req: RequestInfo, sugg: SuggestionInfo, stage1: Decision
    ) -> Decision:
        with self._lock:
            r = self._reqs.get(req.rid)
            if r is None:
                return Decision()
            sf = F.suggestion_features(
                sugg.text,
                req.text[: req.offset],
                req.text[req.offset :],
                req.language_id,
                token_logprobs=sugg.token_logprobs or None,
                n_tokens=len(sugg.tokens) if sugg.tokens else None,
                history=self.telemetry.history(sugg.text),
            )
            feats = {**r.feats, **sf}
        base = self._ask(2, feats, stage1)
        with self._lock:
            decision, why = self.guarded(base)
            if why:
                r.shown_because, r.would_hide = why, base
        if self.recorder is not None:
            self.recorder.generated(Judged(req, sugg, stage1, decision), sf)
        return decision

    # --- what happened -------------------------------------------------------------------------
    def skipped(self, req: RequestInfo, stage1: Decision) -> None:
        with self._lock:
            self._reqs.pop(req.rid, None)
        if self.recorder is not None:
            self.recorder.skipped(req, stage1)

    def hidden(self, judged: Judged) -> None:
        req, text = judged.req, judged.sugg.text
        with self._lock:
            self._reqs.pop(req.rid, None)
            if self.guard is not None and text.strip():
                del self._watches[: max(0, len(self._watches) - MAX_WATCHES + 1)]
                before, after = req.text[: req.offset], req.text[req.offset :]
                deadline = self.clock() + TYPED_WINDOW_S
                self._watches.append(
                    _Watch(req.rid, req.uri, before, after, text, judged.stage2, deadline)
                )
        if self.recorder is not None:
            self.recorder.hidden(judged)

    def shown(self, judged: Judged, suggestion_id: str) -> None:
        rid = judged.req.rid
        with self._lock:
            r = self._reqs.pop(rid, None)
            self.telemetry.on_shown(self.clock(), judged.req.uri)
            if r is not None and r.would_hide is not None:
                self._awaiting[rid] = (r.shown_because, r.would_hide)
        if self.recorder is not None:
            why = r.shown_because if r is not None else ""
            self.recorder.shown(judged, suggestion_id, why == "explored")

    def extended(self, suggestion_id: str, text: str) -> None:
        if self.recorder is not None:
            self.recorder.extended(suggestion_id, text)

    def document_changed(self, uri: str, text: str, version: int | None) -> None:
        if self.recorder is not None:
            self.recorder.document_changed(uri, text, version)
        try:
            self._check_watches(uri, text)
        except Exception:
            log.exception("guard: typed-next check failed")

    def document_closed(self, uri: str) -> None:
        with self._lock:
            self._watches = [w for w in self._watches if w.uri != uri]
        if self.recorder is not None:
            self.recorder.document_closed(uri)

    def on_outcome(self, rid: str, uri: str, accepted: bool, text: str) -> None:
        """The tracker decided a shown suggestion's outcome (telemetry; the guard's evidence
        when it was one the cascade would have hidden)."""
        now = self.clock()
        with self._lock:
            self.telemetry.on_outcome(now, uri, accepted, text)
            waiting = self._awaiting.pop(rid, None)
        if waiting is not None:
            why, d = waiting
            self._evidence(
                Evidence(not accepted, why, d.stage, _f(d.p_reject), _f(d.threshold), now, rid)
            )

    # --- the guard -----------------------------------------------------------------------------
    def _check_watches(self, uri: str, text: str) -> None:
        now = self.clock()
        found: list[Evidence] = []
        with self._lock:
            keep: list[_Watch] = []
            for w in self._watches:
                verdict = typed_outcome(w.before, w.after, w.text, text) if w.uri == uri else None
                if verdict is not None:
                    d = w.decision
                    found.append(
                        Evidence(
                            not verdict,
                            "typed",
                            d.stage,
                            _f(d.p_reject),
                            _f(d.threshold),
                            now,
                            w.rid,
                        )
                    )
                elif now < w.deadline:
                    keep.append(w)
            self._watches = keep
        for ev in found:
            self._evidence(ev)

    def _evidence(self, ev: Evidence) -> None:
        from tactful.cascade.guard import evidence_json

        with self._lock:
            if self.guard is None:
                return
            message = self.guard.add(ev)
            data = evidence_json(ev, self.guard)
        data["message"] = message
        if self.recorder is not None:
            self.recorder.guard_event(ev.rid, data)
        if message is not None:
            log.warning("%s", message)
            if self.on_message is not None:
                try:
                    self.on_message(message)
                except Exception:
                    log.exception("guard: could not tell the user")

    def status(self) -> dict[str, Any] | None:
        """The guard's state for the status payload (None without a guard)."""
        with self._lock:
            return None if self.guard is None else self.guard.state()

    def _prune(self, now: float) -> None:
        for rid, r in list(self._reqs.items()):
            if now - r.t > STALE_REQUEST_S:
                del self._reqs[rid]
        if len(self._awaiting) > 2000:
            for rid in list(self._awaiting)[:500]:
                del self._awaiting[rid]


def _f(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def guard_for(cascade: Any | None) -> Guard | None:
    """A guard for a cascade's fitted thresholds; None without a cascade, when it hides nothing,
    or with explicit thresholds from settings (the user's own choice is not second-guessed)."""
    if (
        cascade is None
        or cascade.stage1_override is not None
        or cascade.stage2_override is not None
    ):
        return None
    if cascade.thresholds.hides_nothing():
        return None
    from tactful.cascade.model import BOUND_CONFIDENCE, DEFAULT_TARGET

    g = cascade.meta.get("guard") or {}
    return Guard(
        float(g.get("target", cascade.meta.get("target", DEFAULT_TARGET))),
        float(g.get("prior_hidden", 0.0)),
        float(g.get("prior_correct", 0.0)),
        confidence=float(cascade.meta.get("bound_confidence", BOUND_CONFIDENCE)),
    )


# --- construction from settings ----------------------------------------------------------------


def load_cascade(settings: Any) -> Any | None:
    """The cascade the settings ask for, or None (off, or it cannot be loaded: logged)."""
    from tactful.cascade import model as cdhf

    if not settings.cdhf.enable:
        return None
    path = cdhf.resolve_model_dir(settings.cdhf.model_dir, settings.data_dir)
    try:
        c = cdhf.Cascade.load(path)
    except cdhf.CdhfError as exc:
        log.warning("CDHF cascade off: %s", exc)
        return None
    c.stage1_override = settings.cdhf.stage1_threshold
    c.stage2_override = settings.cdhf.stage2_threshold
    return c


def build(
    settings: Any, recorder: Any | None, on_message: Callable[[str], None] | None = None
) -> Gate:
    """The gate for the settings, in front of ``recorder`` (whose outcomes it then hears)."""
    cascade = load_cascade(settings)
    gate = Gate(
        recorder,
        cascade,
        explore_rate=settings.cdhf.explore_rate,
        guard=guard_for(cascade),
        on_message=on_message,
    )
    if recorder is not None:
        recorder.on_outcome = gate.on_outcome
    return gate


def reconfigure(gate: Gate, settings: Any) -> None:
    """New ``cdhf.*`` settings: reload the cascade, a fresh guard for it, the explore rate."""
    cascade = load_cascade(settings)
    guard = guard_for(cascade)
    with gate._lock:
        gate.cascade, gate.guard = cascade, guard
        gate.explore_rate = settings.cdhf.explore_rate
