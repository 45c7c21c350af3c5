"""Loading the configured model from the language server: one :class:`ModelLoad` per (re)load.

The loader runs on the model worker (:meth:`~tactful.backend.runner.ModelRunner.load`): it closes
the backend being replaced, then loads the embedded/local model, or routes to an inference engine
(docs/engines.md) when ``engine.url`` is set. On the event loop, the load reports ``$/progress``
where the client supports it, sends the status, and shows a failure once per distinct error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from tactful import paths

if TYPE_CHECKING:
    from tactful.lsp.server import TactfulServer

log = logging.getLogger("tactful")

#: The model name shown while the default model loads.
EMBEDDED_NAME = "SmolLM2-135M-Instruct (embedded)"


class ModelLoad:
    """One load of the model the server's settings name (the settings as they were when it
    started)."""

    def __init__(self, server: TactfulServer) -> None:
        from tactful.backend.hf import TransformersBackend

        self.server = server
        self.settings = server.settings
        self.local_backend = TransformersBackend
        self.loop = asyncio.get_running_loop()
        self.token = f"tactful-load-{id(object())}"
        #: Whether the client shows ``$/progress`` (turned off when it refuses the token).
        self.progress_ok = server.client_work_done_progress
        self.previous = server.runner.backend

    # --- on the model worker -------------------------------------------------------------------
    def report(self, message: str, pct: int) -> None:
        """Loading progress, from the loader's thread."""
        if self.progress_ok:
            self.loop.call_soon_threadsafe(
                self.server.work_done_progress.report,
                self.token,
                types.WorkDoneProgressReport(message=message, percentage=pct),
            )

    def _local(self) -> Any:
        s = self.settings
        return self.local_backend.load(
            s.model,
            cache_dir=paths.cache_dir(s.cache_dir),
            device=s.device,
            dtype=s.dtype,
            threads=s.threads,
            fast_decode=s.fast_decode,
            progress=self.report,
        )

    def _engine_message(self, message: str) -> None:  # from the engine's threads
        self.loop.call_soon_threadsafe(self.server.engine_message, message)

    def loader(self) -> Any:
        """The new backend: the local model, or an engine routed in front of it."""
        close = getattr(self.previous, "close", None)
        if callable(close):  # the engine backend being replaced: its connections and thread
            with contextlib.suppress(Exception):
                close()
        if not self.settings.engine.url:
            return self._local()
        from tactful.backend.engine import load_routing

        return load_routing(
            self.settings.engine, self._local, notify=self._engine_message, progress=self.report
        )

    # --- on the event loop ---------------------------------------------------------------------
    async def run(self) -> None:
        """Load, with progress from begin to end and the status sent before and after."""
        server, s = self.server, self.settings
        await self._begin_progress()
        fut = server.runner.load(
            self.loader, s.engine.model or s.engine.url or s.model or EMBEDDED_NAME
        )
        server.send_status()
        try:
            await asyncio.wrap_future(fut)
            msg = f"{server.runner.model_name} ready"
        except Exception:
            msg = self._failed()
        if self.progress_ok:
            with contextlib.suppress(Exception):
                server.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=msg))
        server.send_status()

    async def _begin_progress(self) -> None:
        if not self.progress_ok:
            return
        progress = self.server.work_done_progress
        try:
            await progress.create_async(self.token)
            progress.begin(
                self.token,
                types.WorkDoneProgressBegin(title="tactful: loading model", percentage=0),
            )
        except Exception as exc:  # the client refused the token: no progress shown
            log.debug("no load progress: %s", exc)
            self.progress_ok = False

    def _failed(self) -> str:
        """Show the failure (once per distinct error) and say it for the progress' end."""
        server, error = self.server, self.server.runner.error
        if server.load_failure_shown != error:
            server.load_failure_shown = error
            server.show_message(
                f"could not load the model: {error}. Completions are off until the "
                + (
                    "`model` setting points at a valid model."
                    if self.settings.model
                    else "embedded model loads: run `tactful model install` and restart."
                ),
                types.MessageType.Error,
            )
        return f"model failed: {error}"
