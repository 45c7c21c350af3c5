"""LSP surface of the feedback log and the cascade: thin handlers over :mod:`tactful.feedback.tracker`
and :mod:`tactful.cascade.gate`.

:func:`register` installs, on the server,

* ``server.feedback``: a :class:`FeedbackHub` whose :attr:`~FeedbackHub.hooks` (what
  ``server.hooks`` and so the completion engine call) is the show/hide gate
  (:class:`~tactful.cascade.gate.Gate`, what the completion engine's calls reach) in front of the
  :class:`~tactful.feedback.tracker.SuggestionTracker` from the settings on first use, and
  reconfigures them when ``feedback.*``, ``cdhf.*`` or ``dataDir`` change (NullHooks behaviour
  when both the log and the cascade are off);
* the commands ``tactful.accept`` [id, acceptedLength?, via?], ``tactful.reject`` [id],
  ``tactful.logLocation`` and ``tactful.train``;
* the Copilot-style notifications ``textDocument/didShowCompletion`` {item} and
  ``textDocument/didPartiallyAcceptCompletion`` {item, acceptedLength}.

Bad arguments are logged and answered with a clear error; nothing here raises into pygls'
notification path.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from tactful.cascade.hooks import NullHooks, SuggestionHooks
from tactful.lsp import protocol

if TYPE_CHECKING:
    from tactful.lsp.server import TactfulServer

log = logging.getLogger(__name__)

#: Check the log size for automatic adaptation (cdhf.retrainOnOwnLog) every this many decisions.
RETRAIN_CHECK_EVERY = 20


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def item_id(item: Any) -> str | None:
    """The suggestion id in an inline item's accept command (``command.arguments[0]``)."""
    cmd = _get(item, "command")
    args = _get(cmd, "arguments") if cmd is not None else None
    if isinstance(args, list | tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


class FeedbackHub:
    """The feedback log and the show/hide gate of one server: built from the current settings
    on first use, rebuilt in part when they change. The completion engine calls :attr:`hooks`."""

    def __init__(self, server: TactfulServer) -> None:
        self.server = server
        self._tracker: Any = None
        self._gate: Any = None  # tactful.cascade.gate.Gate in front of the tracker
        self._loop: asyncio.AbstractEventLoop | None = None
        self._built = False
        self._lock = threading.Lock()
        self._null = NullHooks()
        self._decisions = 0
        self._trained_at: int | None = None
        self._training: threading.Thread | None = None
        #: Called with (uri, accepted text) after an accept (line flags skip those lines).
        self.accept_listeners: list[Callable[[str, str], None]] = []
        self._offered: dict[str, tuple[str, str]] = {}  # id -> (uri, text), the last 256

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def tracker(self) -> Any:
        if not self._built:
            with self._lock:
                if not self._built:
                    from tactful.cascade import gate
                    from tactful.feedback import tracker

                    self._tracker = tracker.build(
                        self.server.settings, on_decision=self._on_decision
                    )
                    try:  # the loop messages go through (built from a handler)
                        self._loop = asyncio.get_running_loop()
                    except RuntimeError:
                        self._loop = None
                    if self._tracker is not None:
                        self._gate = gate.build(
                            self.server.settings, self._tracker, self._tell_soon
                        )
                    self._built = True
                    if self._tracker is not None:
                        self._watch(self._tracker.log)
                    self._report_problems()
        return self._tracker

    def _tell_soon(self, message: str) -> None:
        """Show a message from any thread (the guard can speak from the tracker's timer)."""
        loop = self._loop
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if loop is not None and not on_loop and loop.is_running():
            loop.call_soon_threadsafe(_show, self.server, message)
        else:
            _show(self.server, message)

    def _watch(self, store: Any) -> None:
        """Write problems of the log (disk full, damaged file) reach the user once, and the
        status carries them while they last."""
        if store is None:
            return
        from tactful.lsp import notices

        server = self.server

        def on_fault(kind: str, message: str) -> None:
            if message:
                server.problems["feedbackLog"] = message
            else:
                server.problems.pop("feedbackLog", None)
            if message:
                notices.notice(server, f"feedback-{kind}", message, notices.ERROR)
            notices.call_in_loop(server, server.send_status)

        store.watch(on_fault)

    def _report_problems(self) -> None:
        """Tell the user when the log or the cascade they asked for could not be opened."""
        s, t = self.server.settings, self._tracker
        if t is None:
            return
        if s.feedback.enable and t.log is None:
            _show(
                self.server,
                "could not open the feedback log; logging is off (details in the server log)",
            )
        if s.cdhf.enable and (self._gate is None or self._gate.cascade is None):
            _show(
                self.server,
                "could not load the show/hide cascade; every suggestion is shown (details in the server log)",
            )

    def settings_changed(self, old: Any, new: Any) -> None:
        if (old.feedback, old.cdhf, old.data_dir) == (
            new.feedback,
            new.cdhf,
            new.data_dir,
        ) or not self._built:
            return
        from tactful.cascade import gate
        from tactful.feedback import store

        with self._lock:
            t = self._tracker
            if t is None:
                self._built = False  # built on next use
                return
            if not new.feedback.enable and not new.cdhf.enable:
                t.close()
                self._tracker = self._gate = None
                return
            if (
                old.feedback.enable,
                old.feedback.log_path,
                old.feedback.store_text,
                old.data_dir,
            ) != (
                new.feedback.enable,
                new.feedback.log_path,
                new.feedback.store_text,
                new.data_dir,
            ):
                t.swap_log(store.open_configured(new))
                self._watch(t.log)
            t.reject_timeout_s = new.feedback.reject_timeout_s
            if self._gate is not None:
                gate.reconfigure(self._gate, new)
        self._report_problems()

    def close(self) -> None:
        """Write the final survival records and close the log (the server's ``shutdown``)."""
        if self._tracker is not None:
            self._tracker.close()

    # --- what the completion engine calls --------------------------------------------------
    @property
    def hooks(self) -> SuggestionHooks:
        """The show/hide gate in front of the tracker (built on first use), or hooks that show
        everything and record nothing when both the log and the cascade are off."""
        t = self.tracker
        return self._null if t is None or self._gate is None else self._gate  # type: ignore[no-any-return]

    @property
    def gate(self) -> Any:
        """The show/hide gate the completion engine calls (None when the tracker is off)."""
        return self._gate if self.tracker is not None else None

    def acceptance(self) -> dict[str, Any] | None:
        """This session's ``{"decisions", "accepted", "acceptanceRate"}``, counted as training
        counts them (None: neither the log nor the cascade is on)."""
        t = self._tracker if self._built else None
        return None if t is None else t.tally.summary()  # type: ignore[no-any-return]

    def guard_status(self) -> dict[str, Any] | None:
        """The cascade guard's state for the status payload (None: no guard)."""
        g = self._gate if self._built else None
        return None if g is None else g.status()

    def offered(self, suggestion_id: str, uri: str, text: str) -> None:
        """A suggestion went to the client (kept for the last 256, also with the log off)."""
        self._offered[suggestion_id] = (uri, text)
        if len(self._offered) > 256:
            self._offered.pop(next(iter(self._offered)))

    def accepted(self, suggestion_id: str, length: int | None) -> None:
        """Tell the accept listeners what was accepted where (nothing for unknown ids): the
        tracker's account of the text taken when it has one, else the offered text."""
        t = self._tracker if self._built else None
        taken = t.accepted_text(suggestion_id) if t is not None else None
        if taken is None and suggestion_id in self._offered:
            uri, text = self._offered[suggestion_id]
            taken = (uri, text if length is None else text[:length])
        if taken is not None:
            for listener in self.accept_listeners:
                listener(*taken)

    # --- retraining ----------------------------------------------------------------------------
    def log_path(self) -> Path | None:
        t = self.tracker
        return None if t is None or t.log is None else Path(t.log.path)

    def _on_decision(self) -> None:
        self._decisions += 1
        s = self.server.settings
        if (
            not s.cdhf.retrain_on_own_log
            or s.cdhf.model_dir
            or self._decisions % RETRAIN_CHECK_EVERY
        ):
            return
        t = self._tracker
        if t is None or t.log is None or (self._training is not None and self._training.is_alive()):
            return
        from tactful.cascade import adapt

        n = t.log.decisions_count()
        if n - (self._trained_at or 0) < adapt.EVERY:
            return
        self._trained_at = n
        self._training = threading.Thread(
            target=self._retrain_quietly, name="tactful-retrain", daemon=True
        )
        self._training.start()

    def _retrain_quietly(self) -> None:
        from tactful.cascade import model as cdhf

        try:
            res = self.adapt()
        except cdhf.NotEnoughData as exc:
            log.info("automatic adaptation: %s", exc.progress())
        except cdhf.CdhfError as exc:  # busy, a model the user trained: expected, said quietly
            log.info("automatic adaptation skipped: %s", exc)
        except Exception as exc:
            log.warning("automatic adaptation failed: %s", exc)
        else:
            log.info("automatic adaptation: %s", res.message())

    def adapt(self) -> Any:
        """Adapt the shipped cascade to the user's own log (:mod:`tactful.cascade.adapt`); the
        user model folder is replaced, and used, only when the adapted thresholds pass their
        check on the user's later decisions."""
        from tactful.cascade import adapt, gate
        from tactful.cascade import model as cdhf

        path = self.log_path()
        if path is None:
            raise cdhf.CdhfError("the feedback log is off (feedback.enable)")
        res = adapt.adapt_log(path, cdhf.user_model_dir(self.server.settings.data_dir))
        g = self._gate
        if res.written and g is not None and not self.server.settings.cdhf.model_dir:
            gate.reconfigure(g, self.server.settings)
        return res

    def train(self) -> dict[str, Any]:
        """Train the cascade from the user's own log into the user model folder and use it."""
        from tactful.cascade import gate
        from tactful.cascade import model as cdhf
        from tactful.cascade import train as cdhf_train

        path = self.log_path()
        if path is None:
            raise cdhf.CdhfError(
                "the feedback log is off (feedback.enable), so there is nothing to train from"
            )
        out = cdhf.user_model_dir(self.server.settings.data_dir)
        res = cdhf_train.train(
            path, out, curve=False, command="tactful.train (server)", personal=True
        )
        g = self._gate
        if g is not None and not self.server.settings.cdhf.model_dir:
            gate.reconfigure(g, self.server.settings)
        m = res.metrics
        in_use = g is not None and g.cascade is not None and Path(g.cascade.path) == Path(res.out)
        return {
            "modelDir": str(res.out),
            # False while the log is below cdhf.OWN_LOG_MIN_DECISIONS (the default stays in use;
            # set cdhf.modelDir to this folder to use it anyway).
            "inUse": in_use,
            "decisions": m["decisions"],
            "stage1Auc": m["stage1_auc"],
            "stage2Auc": m["stage2_auc"],
            "heldOut": m["held_out"]["pooled"],
        }


def accept_via(args: tuple[Any, ...]) -> str:
    """How an accept command's item was taken, for the log: ``"list"`` when its third argument
    says so (list items carry it), else ``"command"`` (an inline item's command, e.g. Tab). An
    unknown value is logged and counted as ``"command"``: the accept itself is kept."""
    if len(args) < 3 or args[2] is None:
        return "command"
    if args[2] == protocol.ACCEPT_VIA_LIST:
        return "list"
    log.warning("%s: unknown via %r, recorded as 'command'", protocol.CMD_ACCEPT, args[2])
    return "command"


def register(server: TactfulServer) -> FeedbackHub:
    """Install the hub as ``server.feedback`` (its hooks become ``server.hooks``), and register
    the feedback commands and notifications."""
    hub = FeedbackHub(server)
    server.feedback = hub
    server.settings_listeners.append(hub.settings_changed)
    server.command(protocol.CMD_ACCEPT)(cmd_accept)
    server.command(protocol.CMD_REJECT)(cmd_reject)
    server.command(protocol.CMD_LOG_LOCATION)(cmd_log_location)
    server.command(protocol.CMD_TRAIN)(cmd_train)
    server.feature(protocol.DID_SHOW_COMPLETION)(on_did_show)
    server.feature(protocol.DID_PARTIALLY_ACCEPT_COMPLETION)(on_partial_accept)
    return hub


# Handlers: each takes the server as ``ls`` (annotated Any: pygls resolves a command handler's
# type hints when it is called) and delegates to the hub registered on it.
def _hub(ls: Any) -> FeedbackHub:
    hub = ls.feedback
    assert isinstance(hub, FeedbackHub), "lsp.feedback.register was not called on this server"
    return hub


def accept(hub: FeedbackHub, args: tuple[Any, ...], via: str) -> dict[str, Any]:
    """An accept of ``[suggestionId, acceptedLength?]``, validated, recorded and passed on."""
    if not args or not isinstance(args[0], str) or not args[0]:
        msg = f"{protocol.CMD_ACCEPT}: expected [suggestionId: str, acceptedLength?: int], got {list(args)!r}"
        log.warning(msg)
        return {"ok": False, "error": msg}
    length = args[1] if len(args) > 1 else None
    if length is not None and (
        isinstance(length, bool)
        or not isinstance(length, int | float)
        or not math.isfinite(length)
        or length < 0
    ):
        msg = (
            f"{protocol.CMD_ACCEPT}: acceptedLength must be a non-negative integer, got {length!r}"
        )
        log.warning(msg)
        return {"ok": False, "error": msg}
    taken = None if length is None else int(length)
    t = hub.tracker
    first = t.accept(args[0], taken, via=via) if t is not None else True
    hub.accepted(args[0], taken)
    return {"ok": True, "known": bool(first) or (t is not None and t.knows(args[0]))}


def cmd_accept(ls: Any, *args: Any) -> dict[str, Any]:
    return accept(_hub(ls), args[:2], accept_via(args))


def cmd_reject(ls: Any, *args: Any) -> dict[str, Any]:
    if not args or not isinstance(args[0], str) or not args[0]:
        msg = f"{protocol.CMD_REJECT}: expected [suggestionId: str], got {list(args)!r}"
        log.warning(msg)
        return {"ok": False, "error": msg}
    t = _hub(ls).tracker
    return {"ok": True, "recorded": bool(t.reject(args[0], "explicit")) if t is not None else False}


def cmd_log_location(ls: Any, *args: Any) -> dict[str, Any]:
    p = _hub(ls).log_path()
    return {"path": None if p is None else str(p), "enabled": p is not None}


async def cmd_train(ls: Any, *args: Any) -> dict[str, Any]:
    from tactful.cascade import model as cdhf
    from tactful.feedback import store as feedback

    try:
        result = await asyncio.to_thread(_hub(ls).train)
    except cdhf.NotEnoughData as exc:  # a fresh log: progress, not a failure
        _show(ls, exc.progress())
        return {
            "modelDir": None,
            "message": exc.progress(),
            "learning": {"have": exc.have, "need": exc.need, "what": exc.what},
        }
    except (cdhf.CdhfError, feedback.FeedbackError) as exc:
        msg = f"training failed: {exc}"
        _show(ls, msg, types.MessageType.Warning)
        return {"modelDir": None, "error": msg}
    kept = (
        ""
        if result["inUse"]
        else f"; the default model stays in use until your log has {cdhf.OWN_LOG_MIN_DECISIONS} "
        "decisions (or set cdhf.modelDir to this model)"
    )
    _show(
        ls,
        f"trained the show/hide cascade on {result['decisions']} decisions "
        f"(stage-2 AUC {result['stage2Auc']:.2f}){kept}",
    )
    return result


def on_did_show(ls: Any, params: Any) -> None:
    sid = item_id(_get(params, "item"))
    if sid is None:
        log.warning(
            "%s without an item carrying a tactful.accept command: %r",
            protocol.DID_SHOW_COMPLETION,
            params,
        )
        return
    t = _hub(ls).tracker
    if t is not None:
        t.did_show(sid)


def on_partial_accept(ls: Any, params: Any) -> None:
    sid = item_id(_get(params, "item"))
    length = _get(params, "acceptedLength")
    if (
        sid is None
        or isinstance(length, bool)
        or not isinstance(length, int | float)
        or not math.isfinite(length)
    ):
        log.warning(
            "%s: expected {item, acceptedLength}, got %r",
            protocol.DID_PARTIALLY_ACCEPT_COMPLETION,
            params,
        )
        return
    accept(_hub(ls), (sid, int(length)), "notification")


def _show(
    ls: TactfulServer, message: str, kind: types.MessageType = types.MessageType.Info
) -> None:
    ls.show_message(message, kind)
