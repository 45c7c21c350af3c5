"""The server-side life of every suggestion: its state from request to outcome, and the log.

:class:`SuggestionTracker` is the recorder behind the show/hide gate
(:class:`tactful.cascade.gate.Gate`, which the completion engine calls): the gate hands it each
request with the cascade's decision (``requested``/``skipped``), each generated, hidden and
shown suggestion, and the guard's evidence (``guard``); the tracker logs them, keyed by the
request's id. It does not decide anything and computes no features. The LSP layer
(:mod:`tactful.lsp.feedback`) reports accepts, partial accepts, shows and explicit rejects. The
tracker infers the other rejections with the rules of :mod:`tactful.feedback.outcomes`:

* a newer request that does not type along the pending suggestion (``new_request``), or a
  request in another place with only the cursor moved (``cursor_left``);
* an edit that diverges from the suggestion (``diverged``), or the document closing;
* no accept within ``feedback.rejectTimeoutS`` (``timeout``; ``typed_through`` when the whole
  suggestion was typed by hand).

Each decided outcome is reported to ``on_outcome`` (the gate's telemetry and guard). After an
accept it measures code survival (:mod:`tactful.feedback.survival`) on the server's copy of the
document: the share of the accepted text still there after 30 s, 2 min and 10 min.

Timers run on one daemon thread that calls :meth:`SuggestionTracker.poll`; tests call
``poll(now)`` themselves with a fake clock. Everything is guarded by one lock; no method raises
into the server (errors are logged).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, ParamSpec

from tactful.cascade.hooks import Decision, Judged, RequestInfo
from tactful.feedback import outcomes, survival
from tactful.feedback.matching import survival_fraction
from tactful.feedback.outcomes import Pending
from tactful.feedback.queries import DecisionTally
from tactful.feedback.survival import SURVIVAL_CHECKPOINTS_S

__all__ = ["CONTEXT_CHARS", "SURVIVAL_CHECKPOINTS_S", "SuggestionTracker", "survival_fraction"]

log = logging.getLogger(__name__)

#: Characters of context before the cursor kept with each request in the log.
CONTEXT_CHARS = 4000

_P = ParamSpec("_P")


def _never_raises(fn: Callable[_P, None]) -> Callable[_P, None]:
    """The tracker's calls from the completion path and the documents never raise into the
    server: a failure is logged."""

    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            log.exception("tracker: %s failed", fn.__name__)

    return run


class SuggestionTracker:
    """Suggestion hooks that log, learn and decide. See the module docstring."""

    def __init__(
        self,
        log_store: Any | None = None,
        *,
        reject_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        start_timer: bool = True,
        on_decision: Callable[[], None] | None = None,
        on_outcome: Callable[[str, str, bool, str], None] | None = None,
    ) -> None:
        self.log = log_store
        self.reject_timeout_s = reject_timeout_s
        self.clock = clock
        self.on_decision = on_decision
        #: Told (request id, uri, accepted, text) when a shown suggestion's outcome is decided:
        #: the cascade's telemetry and guard (:meth:`tactful.cascade.gate.Gate.on_outcome`).
        self.on_outcome = on_outcome
        self._lock = threading.RLock()
        self._by_req: dict[str, Pending] = {}
        self._by_item: dict[str, Pending] = {}
        self._pending: dict[str, Pending] = {}  # rid -> shown and undecided
        self._accepted: dict[str, Pending] = {}  # rid -> survival checks due
        self._docs: dict[str, str] = {}
        self.counts = dict.fromkeys(
            ("requested", "skipped", "hidden", "shown", "accepted", "rejected"), 0
        )
        #: This session's decisions, counted as training counts them (the status's figure).
        self.tally = DecisionTally()
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        if start_timer:
            self._thread = threading.Thread(
                target=self._run_timer, name="tactful-tracker", daemon=True
            )
            self._thread.start()

    # --- plumbing ------------------------------------------------------------------------------
    def _record(
        self,
        kind: str,
        p: Pending | None,
        data: dict[str, Any],
        t: float | None = None,
        sid: str | None = None,
    ) -> None:
        sid = sid or (p.req.rid if p else None)
        t = self.clock() if t is None else t
        self.tally.add(kind, sid, t, data)
        if self.log is None:
            return
        try:
            self.log.record(
                kind,
                sid,
                data,
                uri=p.req.uri if p else None,
                language=p.req.language_id if p else None,
                t=t,
            )
        except Exception:
            log.exception("feedback log: could not record a %s event", kind)

    def _run_timer(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.poll()
            except Exception:
                log.exception("tracker timer failed")

    def close(self) -> None:
        """Stop the timer, record the survival of accepted text as it is now (marked
        ``early``), and close the log. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            now = self.clock()
            with self._lock:
                for p in list(self._accepted.values()):
                    self._check_survival(p, now, final=True)
        except Exception:
            log.exception("tracker: final survival checks failed")
        self.swap_log(None)

    # --- from the gate: the completion path ---------------------------------------------------
    @_never_raises
    def new_request(self, req: RequestInfo) -> None:
        """A request is coming: settle what it says about pending suggestions."""
        now = self.clock()
        with self._lock:
            self._docs[req.uri] = req.text
            for p in list(self._pending.values()):
                reason = outcomes.on_request(p, req)
                if reason is not None:
                    self._reject(p, reason, now)

    @_never_raises
    def requested(
        self, req: RequestInfo, feats: dict[str, Any], stage1: Decision, explored: bool
    ) -> None:
        now = self.clock()
        p = Pending(req, now)
        with self._lock:
            self._prune(now)
            self._by_req[req.rid] = p
            self.counts["requested"] += 1
            self._record(
                "requested",
                p,
                {
                    "features": feats,
                    "trigger": req.trigger,
                    "engine_context_class": req.context_class,
                    "line": req.line,
                    "character": req.character,
                    "p1": stage1.p_reject,
                    "stage1": _decision_json(stage1),
                    "explored": explored,
                    # The context the model saw (bounded), so that `tactful replay --regenerate`
                    # can judge another model on it; hashed when feedback.storeText is "hash".
                    "prefix": p.before[-CONTEXT_CHARS:],
                    "suffix": p.after[: CONTEXT_CHARS // 4],
                },
                t=now,
            )

    @_never_raises
    def skipped(self, req: RequestInfo, stage1: Decision) -> None:
        with self._lock:
            p = self._by_req.pop(req.rid, None)
            self.counts["skipped"] += 1
            if p is not None:
                self._record("skipped", p, {"p1": stage1.p_reject, "stage": 1})

    @_never_raises
    def generated(self, judged: Judged, sf: dict[str, Any]) -> None:
        sugg, stage2 = judged.sugg, judged.stage2
        with self._lock:
            p = self._by_req.get(judged.req.rid)
            if p is None:
                return
            self._record(
                "generated",
                p,
                {
                    "features": sf,
                    "source": sugg.source,
                    "model": sugg.model,
                    "seconds": round(sugg.seconds, 4),
                    "p1": judged.stage1.p_reject,
                    "p2": stage2.p_reject,
                    "stage2": _decision_json(stage2),
                },
            )

    @_never_raises
    def hidden(self, judged: Judged) -> None:
        with self._lock:
            p = self._by_req.pop(judged.req.rid, None)
            self.counts["hidden"] += 1
            if p is not None:
                p1, p2 = judged.stage1.p_reject, judged.stage2.p_reject
                data = {"p1": p1, "p2": p2, "stage": 2, "text": judged.sugg.text}
                self._record("hidden", p, data)

    @_never_raises
    def shown(self, judged: Judged, suggestion_id: str, explored: bool = False) -> None:
        now = self.clock()
        sugg = judged.sugg
        with self._lock:
            p = self._by_req.pop(judged.req.rid, None)
            if p is None:
                return
            # A newer suggestion in the same document replaces an undecided older one.
            for old in list(self._pending.values()):
                if old.req.uri == p.req.uri:
                    self._reject(old, "new_request", now)
            p.item_id = suggestion_id
            p.text = sugg.text
            p.shown_at = now
            p.deadline = now + self.reject_timeout_s
            self._pending[p.req.rid] = p
            self._by_item[suggestion_id] = p
            self.counts["shown"] += 1
            self._record(
                "shown",
                p,
                {
                    "item_id": suggestion_id,
                    "text": sugg.text,
                    "source": sugg.source,
                    "p1": judged.stage1.p_reject,
                    "p2": judged.stage2.p_reject,
                    "explored": explored,
                },
                t=now,
            )

    def guard_event(self, rid: str, data: dict[str, Any]) -> None:
        """The cascade's guard took a piece of evidence (logged for audit)."""
        with self._lock:
            self._record("guard", None, data, sid=rid or None)

    @_never_raises
    def extended(self, suggestion_id: str, text: str) -> None:
        with self._lock:
            p = self._by_item.get(suggestion_id)
            # An accepted part may still grow (type-along serves the rest under the same id); a
            # rejected suggestion is done with.
            if p is None or p.outcome == "rejected" or not text.startswith(p.text):
                return
            shown_chars = len(p.text)
            # Typing along, accepting and survival are judged on the whole suggestion from now
            # on; the shown event keeps what was on screen when the decision features were taken.
            p.text = text
            if p.shown_chars is None:
                p.shown_chars = shown_chars
            self._record(
                "extended", p, {"item_id": suggestion_id, "text": text, "shown_chars": shown_chars}
            )

    # --- hooks: documents ----------------------------------------------------------------------
    @_never_raises
    def document_changed(self, uri: str, text: str, version: int | None) -> None:
        now = self.clock()
        with self._lock:
            self._docs[uri] = text
            for p in list(self._pending.values()):
                verdict = outcomes.on_edit(p, text) if p.req.uri == uri else None
                if verdict == "diverged":
                    self._reject(p, "diverged", now)
                elif verdict == "inserted":
                    p.inserted = True

    @_never_raises
    def document_closed(self, uri: str) -> None:
        now = self.clock()
        with self._lock:
            for p in list(self._pending.values()):
                if p.req.uri == uri:
                    self._reject(p, "closed", now)
            for p in list(self._accepted.values()):
                if p.req.uri == uri:
                    self._check_survival(p, now, final=True)
            self._docs.pop(uri, None)

    # --- client signals ------------------------------------------------------------------------
    def accept(
        self, item_id: str, accepted_length: int | None = None, via: str = "command"
    ) -> bool:
        """The client accepted (all of, or ``accepted_length`` characters of) an item."""
        now = self.clock()
        with self._lock:
            p = self._by_item.get(item_id)
            if p is None:
                # Unknown here (another server process, or after a restart): still log it.
                data = {
                    "item_id": item_id,
                    "accepted_length": accepted_length,
                    "full": accepted_length is None,
                    "via": via,
                    "unknown": True,
                }
                self._record("accepted", None, data, sid=item_id)
                return False
            took = outcomes.taken(p, accepted_length, self._docs.get(p.req.uri, ""))
            data = {
                "item_id": item_id,
                "accepted_length": took.length,
                "full": took.full,
                "via": via,
                "typed_before": took.typed,
            }
            self._record("accepted", p, data, t=now)
            first = p.outcome != "accepted"
            if first:
                self._mark_accepted(p, now)
            if len(took.text) >= len(p.accepted_text):
                p.accepted_text = took.text
            self._pending.pop(p.req.rid, None)
            self._accepted[p.req.rid] = p
            if first:
                self._notify_decision()
            return first

    def _mark_accepted(self, p: Pending, now: float) -> None:
        if p.outcome is None:
            self._tell_outcome(p, True)
        else:  # an inferred rejection raced the accept: the accept wins
            self.counts["rejected"] -= 1
        self.counts["accepted"] += 1
        p.outcome = "accepted"
        survival.schedule(p, now)

    def reject(self, item_id: str, reason: str = "explicit") -> bool:
        now = self.clock()
        with self._lock:
            p = self._by_item.get(item_id)
            if p is None:
                self._record(
                    "rejected",
                    None,
                    {"item_id": item_id, "reason": reason, "unknown": True},
                    sid=item_id,
                )
                return False
            if p.outcome is not None:
                return False
            self._reject(p, reason, now)
            return True

    def did_show(self, item_id: str) -> None:
        """The client reports that it displayed the item (Copilot-style didShowCompletion).

        Logged once per item, also when the outcome got here first: a client may send the
        report and the accept together and the server may read them in either order, and an
        inferred rejection (a newer request at the same place) can race an item the editor
        still shows. Each report restarts an undecided item's reject clock."""
        now = self.clock()
        with self._lock:
            p = self._by_item.get(item_id)
            if p is None:
                return
            if p.outcome is None:
                p.deadline = now + self.reject_timeout_s  # the reject clock starts at display
            if p.client_shown:
                return
            p.client_shown = True
            data: dict[str, Any] = {"item_id": item_id, "client_reported": True}
            if p.outcome is not None:
                data["after_outcome"] = p.outcome
            self._record("shown", p, data, t=now)

    # --- inference -----------------------------------------------------------------------------
    def _reject(self, p: Pending, reason: str, now: float) -> None:
        if p.outcome is not None:
            return
        p.outcome = "rejected"
        self._pending.pop(p.req.rid, None)
        self._tell_outcome(p, False)
        self.counts["rejected"] += 1
        self._record("rejected", p, {"item_id": p.item_id, "reason": reason}, t=now)
        self._notify_decision()

    def _tell_outcome(self, p: Pending, accepted: bool) -> None:
        if self.on_outcome is not None:
            try:
                self.on_outcome(p.req.rid, p.req.uri, accepted, p.text)
            except Exception:
                log.exception("tracker: on_outcome failed")

    def _notify_decision(self) -> None:
        if self.on_decision is not None:
            try:
                self.on_decision()
            except Exception:
                log.exception("tracker: on_decision failed")

    def poll(self, now: float | None = None) -> None:
        """Fire due timers: reject timeouts and survival checks."""
        now = self.clock() if now is None else now
        with self._lock:
            for p in list(self._pending.values()):
                if p.deadline is not None and now >= p.deadline:
                    self._reject(p, outcomes.on_timeout(p), now)
            for p in list(self._accepted.values()):
                self._check_survival(p, now)
            self._prune(now)

    def _check_survival(self, p: Pending, now: float, final: bool = False) -> None:
        for data in survival.due_checks(p, self._docs.get(p.req.uri), now, final):
            self._record("survival", p, data, t=now)
        if not p.survival_due:
            self._accepted.pop(p.req.rid, None)

    def _prune(self, now: float) -> None:
        # Requests whose generation never reported back (cancelled, superseded).
        for key, p in list(self._by_req.items()):
            if now - p.requested_at > 120:
                del self._by_req[key]
        if len(self._by_item) > 2000:
            for item, p in list(self._by_item.items())[:500]:
                if p.outcome is not None and p.req.rid not in self._accepted:
                    del self._by_item[item]

    def swap_log(self, log_store: Any | None) -> None:
        """Close the current log and write to ``log_store`` from now on (no event is being
        written meanwhile)."""
        with self._lock:
            if self.log is not None:
                try:
                    self.log.close()
                except Exception:
                    log.exception("feedback log: close failed")
            self.log = log_store

    def accepted_text(self, item_id: str) -> tuple[str, str] | None:
        """(uri, the text taken) of an accepted item shown by this server; None otherwise."""
        with self._lock:
            p = self._by_item.get(item_id)
            if p is None or p.outcome != "accepted":
                return None
            return p.req.uri, p.accepted_text or p.text

    def knows(self, item_id: str) -> bool:
        """Whether this server showed the item (its outcome can be tracked)."""
        with self._lock:
            return item_id in self._by_item

    # --- status --------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self.counts,
                "pending": len(self._pending),
                "log": str(getattr(self.log, "path", "")) or None,
            }


def _decision_json(d: Decision) -> dict[str, Any]:
    return {"show": d.show, "p_reject": d.p_reject, "stage": d.stage, "deferred": d.deferred}


# --- construction from settings ----------------------------------------------------------------


def build(settings: Any, **kw: Any) -> SuggestionTracker | None:
    """A tracker for the settings, or None when both the log and the cascade are off (the
    cascade needs outcomes even when nothing is logged)."""
    if not settings.feedback.enable and not settings.cdhf.enable:
        return None
    from tactful.feedback.store import open_configured

    return SuggestionTracker(
        open_configured(settings), reject_timeout_s=settings.feedback.reject_timeout_s, **kw
    )
