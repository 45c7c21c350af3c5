"""The language server: the server object, its composition, and ``tactful serve``.

:class:`TactfulServer` holds the state every feature shares (settings, documents, the model
runner, the completion engine) in typed attributes, and each feature's service in a typed slot
(``feedback``, ``flags``). :func:`create_server` builds one and registers the handler modules,
one per feature: :mod:`~tactful.lsp.lifecycle` (initialize, shutdown, documents),
:mod:`~tactful.lsp.completion`, :mod:`~tactful.lsp.feedback`, :mod:`~tactful.lsp.flags`,
:mod:`~tactful.lsp.replay` and :mod:`~tactful.lsp.workspace`. Importing this module does no
work: nothing is built, no thread starts. Loading the model is :mod:`~tactful.lsp.loading`; the
wire in front of pygls is :mod:`~tactful.lsp.hardened` with :mod:`~tactful.lsp.transport`
(stdio) and :mod:`~tactful.lsp.tcp`.

Concurrency: handlers run on pygls' asyncio event loop and never run model code; model work
goes through :class:`~tactful.backend.runner.ModelRunner` (one worker thread), and blocking file
work (training, replay) through ``asyncio.to_thread``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from tactful import __version__, memory
from tactful.backend.runner import READY, ModelRunner
from tactful.cascade.hooks import NullHooks, SuggestionHooks
from tactful.completion.engine import CompletionEngine
from tactful.config import Settings, apply_settings
from tactful.documents import Documents
from tactful.lsp import protocol, tcp, transport
from tactful.lsp.hardened import HardenedServer
from tactful.lsp.loading import ModelLoad
from tactful.lsp.notices import notice

if TYPE_CHECKING:
    from tactful.lsp.feedback import FeedbackHub
    from tactful.lsp.flags import FlagService
    from tactful.workspace.service import WorkspaceService

log = logging.getLogger("tactful")
_SHOW_ALL = NullHooks()

#: Called with (old, new) settings after every successful change.
SettingsListener = Callable[[Settings, Settings], None]
#: Called with (event, uri), event in open/change/save/close, after a document changed.
DocumentListener = Callable[[str, str], None]


class TactfulServer(HardenedServer):
    """pygls server holding tactful's state: settings, documents, model runner, engine, hooks."""

    def __init__(self) -> None:
        super().__init__("tactful", __version__)
        self.settings = Settings()
        self.documents = Documents()
        self.runner = ModelRunner()
        self.engine = CompletionEngine(self.runner, lambda: self.settings, lambda: self.hooks)
        self.client_pull_diagnostics = False
        self.client_work_done_progress = False
        #: The model error last shown to the user (each distinct error is shown once).
        self.load_failure_shown: str | None = None
        self._closed = False
        #: Feature modules subscribe to settings changes and document events.
        self.settings_listeners: list[SettingsListener] = []
        self.document_listeners: list[DocumentListener] = []
        #: Called with no arguments after ``initialized`` (the workspace index starts there).
        self.initialized_listeners: list[Callable[[], None]] = []
        #: The feature services, set by their modules' ``register`` (None: not registered).
        self.feedback: FeedbackHub | None = None
        self.flags: FlagService | None = None
        self.workspace_index: WorkspaceService | None = None

    @property
    def hooks(self) -> SuggestionHooks:
        """What the completion engine tells about each request: the feedback hub's show/hide
        gate, or hooks that show everything when the feedback module is not registered."""
        return self.feedback.hooks if self.feedback is not None else _SHOW_ALL

    def close(self) -> None:
        """Stop cleanly: write what the feedback log still holds (the final survival records).
        Called on ``shutdown`` and when the connection ends; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self.feedback is not None:
            try:
                self.feedback.close()
            except Exception:
                log.exception("closing the feedback log failed")

    # --- settings ------------------------------------------------------------------------------
    def update_settings(self, raw: Any) -> list[str]:
        """Validate and apply a (partial) settings payload; errors are shown to the user."""
        old = self.settings
        new, errors, unknown = apply_settings(old, raw)
        self.settings = new
        self.documents.max_bytes = new.open_documents_mb << 20
        for err in errors:
            log.warning("%s", err)
            # once per setting and session: a client repeating a bad value is not a popup storm
            notice(self, f"setting {err.split(':')[0]}", err, types.MessageType.Error)
        if unknown:
            log.info("ignoring unknown settings: %s", ", ".join(unknown))
        if new != old:
            for listener in list(self.settings_listeners):
                try:
                    listener(old, new)
                except Exception:
                    log.exception("settings listener failed")
        return errors

    def document_event(self, event: str, uri: str) -> None:
        for listener in list(self.document_listeners):
            try:
                listener(event, uri)
            except Exception:
                log.exception("document listener failed")

    def use_document(self, uri: str) -> None:
        """``uri`` was just edited, saved or asked for a completion: wake it if it was dormant,
        and put the least recently used documents to sleep while the awake ones are over
        ``openDocumentsMb`` (tactful.documents): their derived state goes as on a close."""
        if self.documents.use(uri):
            log.info("document awake again: %s", uri)
            self.document_event("open", uri)
        asleep = self.documents.over_budget()
        for u in asleep:
            self.engine.forget(u)
            self.document_event("close", u)
        if asleep:
            log.info("documents dormant (over openDocumentsMb): %s", ", ".join(asleep))
            notice(
                self,
                "dormant documents",
                f"more than {self.settings.open_documents_mb} MB of documents are open "
                "(openDocumentsMb): the least recently used ones get no flags or repository "
                "context until they are edited or completed in again.",
                types.MessageType.Info,
            )

    def show_message(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        try:
            self.window_show_message(
                types.ShowMessageParams(type=kind, message=f"tactful: {message}")
            )
        except Exception:  # no client attached yet (unit tests), or the stream is gone
            log.debug("could not show message: %s", message)

    # --- model ---------------------------------------------------------------------------------
    def start_model(self) -> None:
        """(Re)load the configured model in the background, reporting progress."""
        load = ModelLoad(self)
        self._load_task = load.loop.create_task(load.run())

    def engine_message(self, message: str) -> None:
        """An inference engine's news (down, back, cannot score): shown once, logged, and the
        status item updated."""
        log.warning("%s", message)
        self.show_message(message, types.MessageType.Warning)
        self.send_status()

    def status(self) -> dict[str, Any]:
        st = self.runner.status()
        # This session's acceptance, counted as training and `tactful log stats` count it:
        # accepted decisions / shown suggestions with an outcome.
        acc = self.feedback.acceptance() if self.feedback is not None else None
        st.update(
            enabled=self.settings.enable,
            shown=acc["decisions"] if acc else 0,
            accepted=acc["accepted"] if acc else 0,
            acceptanceRate=acc["acceptanceRate"] if acc else None,
            stats=self.engine.stats.as_dict(),
            modelLatency=self.engine.latency_summary(),
            backend=getattr(self.runner.backend, "stats", {}),
            cascadeGuard=self.feedback.guard_status() if self.feedback is not None else None,
            problems=dict(self.problems),
            documents={
                "open": len(self.documents),
                "dormant": len(self.documents.dormant_uris()),
            },
        )
        engine_status = getattr(self.runner.backend, "engine_status", None)
        if callable(engine_status):  # serving from an inference engine (docs/engines.md)
            st["engine"] = eng = engine_status()
            st["model"] = getattr(self.runner.backend, "name", st["model"])
            if not eng["healthy"] and not st.get("message"):  # the clients show the message
                then = (
                    "embedded model serving" if eng["serving"] == "fallback" else "no suggestions"
                )
                st["message"] = f"engine down ({then}): {eng['error']}"
        if self.workspace_index is not None:
            st["workspace"] = self.workspace_index.status()
        if not self.settings.enable and st["state"] == READY:
            st["state"] = "disabled"
        return st

    def send_status(self) -> None:
        try:
            self.protocol.notify(protocol.STATUS, self.status())
        except Exception:
            log.debug("could not send status")


#: pygls warnings about states that are normal for an LSP server: a client cancels a request
#: that was answered a moment before (editors do this on every keystroke), or sends a
#: notification that tactful does not handle. Logged at DEBUG, not as problems.
BENIGN_PYGLS_WARNINGS = (
    "Cancel notification for unknown message id",
    "Ignoring notification for unknown method",
)


def demote_benign_records(record: logging.LogRecord) -> bool:
    """A logging filter: pygls' benign warnings become DEBUG records (dropped below ``-vv``)."""
    if record.name.startswith("pygls") and record.levelno == logging.WARNING:
        message = str(record.msg)
        if message.startswith(BENIGN_PYGLS_WARNINGS):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
    return True


def create_server() -> TactfulServer:
    """A server with every feature's handlers registered (nothing runs until it is started)."""
    from tactful.lsp import completion, feedback, flags, lifecycle, replay, workspace

    server = TactfulServer()
    lifecycle.register(server)
    completion.register(server)
    feedback.register(server)
    flags.register(server)
    replay.register(server)
    workspace.register(server)
    return server


# --- entry point -------------------------------------------------------------------------------
def main(argv: Sequence[str] = ()) -> int:
    """``tactful serve [--tcp HOST:PORT] [--log-file F] [-v]``."""
    parser = argparse.ArgumentParser(prog="tactful serve")
    parser.add_argument(
        "--stdio", action="store_true", help="speak LSP over stdin/stdout (default)"
    )
    parser.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        help="listen on TCP instead (loopback unless HOST says otherwise)",
    )
    parser.add_argument(
        "--token-file",
        default=None,
        help="with --tcp: the file holding the token clients must send (default: serve-token in "
        "the data folder, created owner-only when missing)",
    )
    parser.add_argument("--log-file", default=None, help="write logs here (default: stderr)")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(list(argv))
    level = logging.WARNING - 10 * min(args.verbose, 2)
    handler: logging.Handler = (
        logging.FileHandler(args.log_file) if args.log_file else logging.StreamHandler(sys.stderr)
    )
    handler.addFilter(demote_benign_records)
    logging.basicConfig(
        level=level, handlers=[handler], format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    memory.limit_malloc_arenas()  # before any thread starts: see tactful.memory
    server = create_server()
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not port.isdigit():
            print(f"tactful serve: --tcp wants HOST:PORT, got {args.tcp!r}", file=sys.stderr)
            return 2
        token_file = Path(args.token_file) if args.token_file else tcp.token_path()
        token = tcp.ensure_token(token_file)
        print(f"tactful serve: clients must send the token in {token_file}", file=sys.stderr)
        tcp.serve_tcp(server, host or "127.0.0.1", int(port), token)
    else:
        transport.serve_stdio(server)
    server.close()  # a client that left without ``shutdown``: the final records still go out
    # Leave without running interpreter teardown: the model thread may be inside torch, and
    # everything worth keeping (the feedback log) is committed as it is recorded.
    # (pygls may have closed stdout already: flushing it then raises.)
    logging.shutdown()
    with contextlib.suppress(ValueError, OSError):
        sys.stdout.flush()
    os._exit(0)
