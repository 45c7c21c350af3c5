"""The server-side life of every suggestion: outcomes, survival, the log.

:class:`SuggestionTracker` is the recorder behind the show/hide gate
(:class:`tactful.cascade.gate.Gate`, which the completion engine calls): the gate hands it each
request with the cascade's decision (``requested``/``skipped``), each generated, hidden and
shown suggestion, and the guard's evidence (``guard``); the tracker logs them, keyed by the
request's id. It does not decide anything and computes no features. The LSP layer (:mod:`tactful.lsp.feedback`) reports accepts, partial accepts, shows
and explicit rejects. The tracker infers the other rejections itself:

* a newer request that does not type along the pending suggestion (``new_request``), or a
  request in another place with only the cursor moved (``cursor_left``);
* an edit that diverges from the suggestion (``diverged``), or the document closing;
* no accept within ``feedback.rejectTimeoutS`` (``timeout``; ``typed_through`` when the whole
  suggestion was typed by hand).

Each decided outcome is reported to ``on_outcome`` (the gate's telemetry and guard). After an
accept it measures code survival on the server's copy of the document: the share of
the accepted text still there after 30 s, 2 min and 10 min (``survival`` events).

Timers run on one daemon thread that calls :meth:`SuggestionTracker.poll`; tests call
``poll(now)`` themselves with a fake clock. Everything is guarded by one lock; no method raises
into the server (errors are logged).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tactful.cascade.hooks import Decision, RequestInfo, SuggestionInfo
from tactful.feedback.matching import survival_fraction, typed_prefix, typed_state
from tactful.feedback.queries import DecisionTally

log = logging.getLogger(__name__)

#: Characters of context before the cursor kept with each request in the log.
CONTEXT_CHARS = 4000

SURVIVAL_CHECKPOINTS_S = (30.0, 120.0, 600.0)


@dataclass
class _Pending:
    """One suggestion from request to outcome (and survival checks after an accept)."""

    rid: str
    uri: str
    language: str
    offset: int
    before: str
    after: str
    requested_at: float
    item_id: str | None = None
    text: str = ""
    #: Characters shown at first when ``text`` was extended later (the completion deadline).
    shown_chars: int | None = None
    shown_at: float | None = None
    deadline: float | None = None
    outcome: str | None = None  # "accepted" | "rejected"
    client_shown: bool = False  # the client reported it displayed (didShowCompletion)
    inserted: bool = False
    accepted_text: str = ""
    anchor: str = ""
    survival_due: list[float] = field(default_factory=list)
    accepted_at: float | None = None


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
        self._by_req: dict[str, _Pending] = {}
        self._by_item: dict[str, _Pending] = {}
        self._pending: dict[str, _Pending] = {}  # rid -> shown and undecided
        self._accepted: dict[str, _Pending] = {}  # rid -> survival checks due
        self._docs: dict[str, str] = {}
        self.counts = {
            "requested": 0,
            "skipped": 0,
            "hidden": 0,
            "shown": 0,
            "accepted": 0,
            "rejected": 0,
        }
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
        p: _Pending | None,
        data: dict[str, Any],
        t: float | None = None,
        sid: str | None = None,
    ) -> None:
        sid = sid or (p.rid if p else None)
        t = self.clock() if t is None else t
        self.tally.add(kind, sid, t, data)
        if self.log is None:
            return
        try:
            self.log.record(
                kind,
                sid,
                data,
                uri=p.uri if p else None,
                language=p.language if p else None,
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
        if self.log is not None:
            try:
                self.log.close()
            except Exception:
                log.exception("feedback log: close failed")

    # --- from the gate: the completion path ---------------------------------------------------
    def new_request(self, req: RequestInfo) -> None:
        """A request is coming: settle what it says about pending suggestions."""
        try:
            now = self.clock()
            with self._lock:
                self._docs[req.uri] = req.text
                self._infer_on_request(req, now)
        except Exception:
            log.exception("tracker: new_request failed")

    def requested(
        self, req: RequestInfo, feats: dict[str, Any], stage1: Decision, explored: bool
    ) -> None:
        try:
            self._requested(req, feats, stage1, explored)
        except Exception:
            log.exception("tracker: requested failed")

    def _requested(
        self, req: RequestInfo, feats: dict[str, Any], stage1: Decision, explored: bool
    ) -> None:
        now = self.clock()
        prefix, suffix = req.text[: req.offset], req.text[req.offset :]
        p = _Pending(
            rid=req.rid,
            uri=req.uri,
            language=req.language_id,
            offset=req.offset,
            before=prefix,
            after=suffix,
            requested_at=now,
        )
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
                    "prefix": prefix[-CONTEXT_CHARS:],
                    "suffix": suffix[: CONTEXT_CHARS // 4],
                },
                t=now,
            )

    def skipped(self, req: RequestInfo, stage1: Decision) -> None:
        with self._lock:
            p = self._by_req.pop(req.rid, None)
            self.counts["skipped"] += 1
            if p is not None:
                self._record("skipped", p, {"p1": stage1.p_reject, "stage": 1})

    def generated(
        self,
        req: RequestInfo,
        sugg: SuggestionInfo,
        sf: dict[str, Any],
        stage1: Decision,
        stage2: Decision,
    ) -> None:
        with self._lock:
            p = self._by_req.get(req.rid)
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
                    "p1": stage1.p_reject,
                    "p2": stage2.p_reject,
                    "stage2": _decision_json(stage2),
                },
            )

    def hidden(
        self, req: RequestInfo, sugg: SuggestionInfo, stage1: Decision, stage2: Decision
    ) -> None:
        with self._lock:
            p = self._by_req.pop(req.rid, None)
            self.counts["hidden"] += 1
            if p is not None:
                self._record(
                    "hidden",
                    p,
                    {"p1": stage1.p_reject, "p2": stage2.p_reject, "stage": 2, "text": sugg.text},
                )

    def shown(
        self,
        req: RequestInfo,
        sugg: SuggestionInfo,
        suggestion_id: str,
        stage1: Decision,
        stage2: Decision,
        explored: bool = False,
    ) -> None:
        try:
            self._shown(req, sugg, suggestion_id, stage1, stage2, explored)
        except Exception:
            log.exception("tracker: shown failed")

    def _shown(
        self,
        req: RequestInfo,
        sugg: SuggestionInfo,
        suggestion_id: str,
        stage1: Decision,
        stage2: Decision,
        explored: bool,
    ) -> None:
        now = self.clock()
        with self._lock:
            p = self._by_req.pop(req.rid, None)
            if p is None:
                return
            # A newer suggestion in the same document replaces an undecided older one.
            for old in list(self._pending.values()):
                if old.uri == p.uri:
                    self._reject(old, "new_request", now)
            p.item_id = suggestion_id
            p.text = sugg.text
            p.shown_at = now
            p.deadline = now + self.reject_timeout_s
            self._pending[p.rid] = p
            self._by_item[suggestion_id] = p
            self.counts["shown"] += 1
            self._record(
                "shown",
                p,
                {
                    "item_id": suggestion_id,
                    "text": sugg.text,
                    "source": sugg.source,
                    "p1": stage1.p_reject,
                    "p2": stage2.p_reject,
                    "explored": explored,
                },
                t=now,
            )

    def guard_event(self, rid: str, data: dict[str, Any]) -> None:
        """The cascade's guard took a piece of evidence (logged for audit)."""
        with self._lock:
            self._record("guard", None, data, sid=rid or None)

    def extended(self, suggestion_id: str, text: str) -> None:
        try:
            self._extended(suggestion_id, text)
        except Exception:
            log.exception("tracker: extended failed")

    def _extended(self, suggestion_id: str, text: str) -> None:
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
    def document_changed(self, uri: str, text: str, version: int | None) -> None:
        try:
            now = self.clock()
            with self._lock:
                self._docs[uri] = text
                for p in list(self._pending.values()):
                    if p.uri != uri:
                        continue
                    state = typed_state(p, text)
                    if state == "diverged":
                        self._reject(p, "diverged", now)
                    elif state == "inserted":
                        p.inserted = True
        except Exception:
            log.exception("tracker: document_changed failed")

    def document_closed(self, uri: str) -> None:
        try:
            now = self.clock()
            with self._lock:
                for p in list(self._pending.values()):
                    if p.uri == uri:
                        self._reject(p, "closed", now)
                for p in list(self._accepted.values()):
                    if p.uri == uri:
                        self._check_survival(p, now, final=True)
                self._docs.pop(uri, None)
        except Exception:
            log.exception("tracker: document_closed failed")

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
                self._record(
                    "accepted",
                    None,
                    {
                        "item_id": item_id,
                        "accepted_length": accepted_length,
                        "full": accepted_length is None,
                        "via": via,
                        "unknown": True,
                    },
                    sid=item_id,
                )
                return False
            acc_text, accepted_length, full, typed = self._taken(p, accepted_length)
            self._record(
                "accepted",
                p,
                {
                    "item_id": item_id,
                    "accepted_length": len(p.text)
                    if accepted_length is None
                    else int(accepted_length),
                    "full": full,
                    "via": via,
                    "typed_before": typed,
                },
                t=now,
            )
            first = p.outcome != "accepted"
            if first:
                self._mark_accepted(p, now)
            p.accepted_text = acc_text if len(acc_text) >= len(p.accepted_text) else p.accepted_text
            self._pending.pop(p.rid, None)
            self._accepted[p.rid] = p
            if first:
                self._notify_decision()
            return first

    def _taken(self, p: _Pending, accepted_length: int | None) -> tuple[str, int | None, bool, int]:
        """(accepted text, accepted length, full, characters typed before) of an accept."""
        typed = len(typed_prefix(p, self._docs.get(p.uri, "")))
        if accepted_length is None and p.shown_chars is not None:
            # An accept of "all" of an extended suggestion takes what was on screen: the part
            # shown at first, or more if the document holds more of it.
            accepted_length = len(p.text) if typed >= len(p.text) else max(typed, p.shown_chars)
        full = accepted_length is None or accepted_length >= len(p.text)
        if full:
            return p.text, accepted_length, True, typed
        # Clients apply the accepted text before they report it, so the document usually holds
        # it already (``typed``); VS Code reports a cumulative length, others the length taken
        # from the remainder on screen. The larger of the two is what the document can confirm
        # without counting any text twice.
        n = min(len(p.text), max(typed, int(accepted_length or 0)))
        return p.text[:n], accepted_length, False, typed

    def _mark_accepted(self, p: _Pending, now: float) -> None:
        if p.outcome is None:
            self._tell_outcome(p, True)
        else:  # an inferred rejection raced the accept: the accept wins
            self.counts["rejected"] -= 1
        self.counts["accepted"] += 1
        p.outcome = "accepted"
        p.accepted_at = now
        p.anchor = p.before[-40:]
        p.survival_due = [now + s for s in SURVIVAL_CHECKPOINTS_S]

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
    def _reject(self, p: _Pending, reason: str, now: float) -> None:
        if p.outcome is not None:
            return
        p.outcome = "rejected"
        self._pending.pop(p.rid, None)
        self._tell_outcome(p, False)
        self.counts["rejected"] += 1
        self._record("rejected", p, {"item_id": p.item_id, "reason": reason}, t=now)
        self._notify_decision()

    def _tell_outcome(self, p: _Pending, accepted: bool) -> None:
        if self.on_outcome is not None:
            try:
                self.on_outcome(p.rid, p.uri, accepted, p.text)
            except Exception:
                log.exception("tracker: on_outcome failed")

    def _notify_decision(self) -> None:
        if self.on_decision is not None:
            try:
                self.on_decision()
            except Exception:
                log.exception("tracker: on_decision failed")

    def _infer_on_request(self, req: RequestInfo, now: float) -> None:
        for p in list(self._pending.values()):
            if p.uri != req.uri:
                self._reject(p, "cursor_left", now)
                continue
            state = typed_state(p, req.text)
            if state in ("typing", "inserted") and req.offset == p.offset + len(
                typed_prefix(p, req.text)
            ):
                continue  # typing along: still on screen
            moved = req.text == p.before + p.after and req.offset != p.offset
            self._reject(p, "cursor_left" if moved else "new_request", now)

    def poll(self, now: float | None = None) -> None:
        """Fire due timers: reject timeouts and survival checks."""
        now = self.clock() if now is None else now
        with self._lock:
            for p in list(self._pending.values()):
                if p.deadline is not None and now >= p.deadline:
                    self._reject(p, "typed_through" if p.inserted else "timeout", now)
            for p in list(self._accepted.values()):
                self._check_survival(p, now)
            self._prune(now)

    def _check_survival(self, p: _Pending, now: float, final: bool = False) -> None:
        doc = self._docs.get(p.uri)
        while p.survival_due and (final or now >= p.survival_due[0]):
            due = p.survival_due.pop(0)
            after = round(due - (p.accepted_at or due), 1)
            if doc is None:
                self._record(
                    "survival", p, {"after_s": after, "survived": None, "reason": "closed"}, t=now
                )
                continue
            frac = survival_fraction(p.accepted_text, doc, p.offset, p.anchor)
            self._record(
                "survival",
                p,
                {"after_s": after, "survived": round(frac, 4), "early": final and now < due},
                t=now,
            )
        if not p.survival_due:
            self._accepted.pop(p.rid, None)

    def _prune(self, now: float) -> None:
        # Requests whose generation never reported back (cancelled, superseded).
        for key, p in list(self._by_req.items()):
            if now - p.requested_at > 120:
                del self._by_req[key]
        if len(self._by_item) > 2000:
            for item, p in list(self._by_item.items())[:500]:
                if p.outcome is not None and p.rid not in self._accepted:
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
            return p.uri, p.accepted_text or p.text

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


def open_log(settings: Any) -> Any | None:
    """The feedback log the settings ask for, or None (off, or it cannot be opened: logged)."""
    from tactful.feedback import store as feedback

    if not settings.feedback.enable:
        return None
    path = (
        Path(settings.feedback.log_path).expanduser()
        if settings.feedback.log_path
        else feedback.default_log_path(settings.data_dir)
    )
    try:
        return feedback.FeedbackLog(path, store_text=settings.feedback.store_text)
    except (feedback.FeedbackError, OSError) as exc:
        log.error("feedback log off: %s", exc)
        return None


def build(settings: Any, **kw: Any) -> SuggestionTracker | None:
    """A tracker for the settings, or None when both the log and the cascade are off (the
    cascade needs outcomes even when nothing is logged)."""
    if not settings.feedback.enable and not settings.cdhf.enable:
        return None
    return SuggestionTracker(
        open_log(settings), reject_timeout_s=settings.feedback.reject_timeout_s, **kw
    )
