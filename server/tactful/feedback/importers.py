"""Importers of other tools' logs into tactful's feedback log.

Owns the CUPS importer (:func:`import_cups`): the Copilot user-study events
(``cups_events.jsonl[.gz]``) become requested/generated/shown events whose features are computed
from each ``Shown`` row alone, followed by the decision that the next ``Accepted``/``Rejected`` row
records. Must not decide anything about training: it writes events, as the server would.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from tactful.cascade import features as F
from tactful.feedback.jsonl import json_lines, open_text
from tactful.feedback.logfile import json_safe
from tactful.feedback.store import FeedbackError, FeedbackLog

#: One event to write: (kind, suggestion id, data, extra columns).
Row = tuple[str, str | None, Mapping[str, Any], dict[str, Any]]


def parse_time(s: str) -> float:
    """A CUPS ISO timestamp (``...Z``) as seconds since the epoch."""
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _cups_prefix(prompt: str | None) -> tuple[str | None, str]:
    """The document prefix inside a Copilot prompt (the ``# Path:`` header removed) and the path."""
    if prompt is None:
        return None, "file.py"
    lines = prompt.split("\n")
    for i, line in enumerate(lines[:3]):
        if line.startswith("# Path: "):
            return "\n".join(lines[i + 1 :]), line[len("# Path: ") :].strip() or "file.py"
    return prompt, "file.py"


def _num(m: Mapping[str, Any], key: str) -> float | None:
    v = m.get(key)
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v)):
        return float(v)
    return None


def read_cups_events(src: Path) -> list[dict[str, Any]]:
    """The CUPS events of ``src``; a line that is not a CUPS event is an error with its number."""
    events: list[dict[str, Any]] = []
    try:
        with open_text(src) as fh:
            for n, e, error in json_lines(fh):
                if error is not None:
                    raise FeedbackError(f"{src}:{n}: not JSON: {error}")
                if not isinstance(e, dict) or "state_name" not in e or "session_index" not in e:
                    raise FeedbackError(
                        f"{src}:{n}: not a CUPS event (needs state_name, session_index)"
                    )
                events.append(e)
    except (OSError, EOFError) as exc:
        raise FeedbackError(f"cannot read {src}: {exc}") from exc
    return events


def _context_features(prefix: str | None, m: Mapping[str, Any]) -> dict[str, float | None]:
    """The request's context features from the prompt prefix and Copilot's measurements."""
    doc_len = _num(m, "documentLength")
    offset = _num(m, "promptEndPos")
    ctx: dict[str, float | None]
    if prefix is not None:
        ctx = F.context_features(
            prefix, None, "python", doc_len=int(doc_len) if doc_len is not None else None
        )
    else:
        ctx = dict.fromkeys(F.CONTEXT_FEATURES)
        ctx["language"] = float(F.language_code("python"))
    if doc_len is not None and offset is not None:
        ctx["doc_len"], ctx["offset"] = doc_len, offset
        ctx["offset_frac"] = offset / doc_len if doc_len > 0 else 1.0
        ctx["ws_after_cursor"] = 1.0 if offset >= doc_len else None
    return ctx


class _CupsSession:
    """Turns one CUPS session's events, in order, into feedback-log rows."""

    def __init__(self, sess: int, first: Mapping[str, Any], counts: dict[str, int]) -> None:
        self.sess = sess
        self.user = f"cups-{first.get('user_id', sess)}"
        self.session = f"cups-{sess}"
        self.counts = counts
        self.tel = F.Telemetry()
        self.rows: list[Row] = []
        #: The suggestion on screen: (suggestion id, shown time, uri, text).
        self.pending: tuple[str, float, str, str] | None = None

    def extra(self, t: float, uri: str) -> dict[str, Any]:
        return {
            "t": t,
            "session": self.session,
            "user": self.user,
            "uri": uri,
            "language": "python",
        }

    def add(self, e: Mapping[str, Any]) -> None:
        state = e["state_name"]
        if state == "Shown":
            self.shown(e, parse_time(e["time_generated"]))
        elif state in ("Accepted", "Rejected"):
            self.decided(e, parse_time(e["time_generated"]), state == "Accepted")

    def shown(self, e: Mapping[str, Any], t: float) -> None:
        m = e.get("measurements") or {}
        prefix, fname = _cups_prefix(e.get("prompt"))
        uri = f"cups://session-{self.sess}/{fname}"
        extra = self.extra(t, uri)
        if self.pending is not None:  # replaced before any decision: no training label
            reason = {"reason": "superseded", "imported_label": False}
            self.rows.append(("rejected", self.pending[0], reason, self.extra(t, self.pending[2])))
            self.counts["superseded"] += 1
        sid = f"cups-{self.sess}-{e.get('event_index')}"
        doc_len = _num(m, "documentLength")
        issued = _num(m, "timeSinceIssuedMs")
        t_req = t - (issued / 1000.0 if issued is not None and issued < 60000 else 0.0)
        ctx = _context_features(prefix, m)
        tele = self.tel.on_request(t_req, uri, int(doc_len) if doc_len is not None else 0)
        sugg = str(e.get("suggestion") or "")
        sf = F.suggestion_features(
            sugg,
            prefix or "",
            None,
            "python" if prefix is not None else "none",
            n_tokens=int(_num(m, "numTokens") or 0) or None,
            mean_logprob=_num(m, "meanLogProb"),
            history=self.tel.history(sugg),
        )
        requested = {
            "features": json_safe({**ctx, **tele, "features_version": F.FEATURES_VERSION}),
            "trigger": "automatic",
            "source": "cups",
        }
        generated = {"features": json_safe(sf), "source": "model", "model": "copilot-codex"}
        cups = {k: e.get(k) for k in ("labeled_state", "task", "hidden_state")}
        self.rows.append(("requested", sid, requested, {**extra, "t": t_req}))
        self.rows.append(("generated", sid, generated, extra))
        self.rows.append(("shown", sid, {"text": sugg, "cups": cups}, extra))
        self.tel.on_shown(t, uri)
        self.pending = (sid, t, uri, sugg)
        self.counts["shown"] += 1

    def decided(self, e: Mapping[str, Any], t: float, accepted: bool) -> None:
        if self.pending is None:
            self.counts["unmatched_decisions"] += 1
            return
        sid, _ts, uri, shown_text = self.pending
        extra = self.extra(t, uri)
        if accepted:
            sugg = str(e.get("suggestion") or "")
            data = {"accepted_length": len(sugg), "full": True, "via": "cups"}
            self.rows.append(("accepted", sid, data, extra))
            for i, ep in enumerate(e.get("edit_percentage") or []):
                if isinstance(ep, int | float) and math.isfinite(float(ep)):
                    survived = {"checkpoint": i, "after_s": None, "survived": max(0.0, 1.0 - ep)}
                    self.rows.append(("survival", sid, survived, extra))
            self.counts["accepted"] += 1
        else:
            self.rows.append(("rejected", sid, {"reason": "explicit"}, extra))
            self.counts["rejected"] += 1
        self.tel.on_outcome(t, uri, accepted, shown_text)
        self.pending = None


def import_cups(src: str | Path, out: str | Path, store_text: str = "text") -> dict[str, int]:
    """Convert CUPS study events (``cups_events.jsonl[.gz]``) into a feedback log at ``out``.

    Each Shown event becomes requested/generated/shown events whose features are computed from
    that Shown row only (prompt prefix and its measurements); the following Accepted/Rejected
    row only adds the outcome and its time. Replay rows (the same suggestion re-shown) and
    Browsing rows are skipped; a Shown suggestion replaced by another Shown one before any
    decision is logged as rejected with reason ``superseded`` and is not a training decision
    (``load_decisions`` keeps it, so the importer marks it ``imported_label: false``).
    """
    events = read_cups_events(Path(src))
    out = Path(out)
    if out.exists():
        raise FeedbackError(
            f"{out} exists; importing appends to no existing log, choose a new path"
        )
    store = FeedbackLog(out, session="cups", user="cups", store_text=store_text)
    counts = {"shown": 0, "accepted": 0, "rejected": 0, "unmatched_decisions": 0, "superseded": 0}
    by_session: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        by_session.setdefault(int(e["session_index"]), []).append(e)
    rows: list[Row] = []
    for sess, evs in sorted(by_session.items()):
        evs.sort(key=lambda e: int(e.get("event_index", 0)))
        session = _CupsSession(sess, evs[0], counts)
        for e in evs:
            session.add(e)
        rows.extend(session.rows)
    store.record_many(rows)
    store.close()
    return counts
