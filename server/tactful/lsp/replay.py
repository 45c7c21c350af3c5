"""The ``tactful.replayReport`` command: write the replay report of the user's own feedback log.

arguments: ``[htmlPath?: str]`` -> ``{"html": str, "decisions": int, "policies": [...]}`` or
``{"html": None, "error": str}``. ``htmlPath`` must lie in the data folder (relative paths are
taken from there): a client cannot make the server write anywhere else. The replay itself is :mod:`tactful.replay.report`; this module only
picks the log and the policies (show-all, the shipped default, the cascade the server uses when it
is another one) from the server's settings and runs the replay off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tactful import memory
from tactful.config import Settings
from tactful.lsp import protocol

if TYPE_CHECKING:
    from tactful.lsp.server import TactfulServer

log = logging.getLogger(__name__)
REPORT_NAME = "replay-report.html"


def report_for_settings(
    settings: Settings, html_path: str | None, log_path: Path | None = None
) -> dict[str, Any]:
    """Replay the log of ``settings`` (or ``log_path``) and write the HTML report (plain data in/out)."""
    from tactful import paths
    from tactful.cascade import model as cdhf
    from tactful.feedback.store import default_log_path
    from tactful.replay import report as replay

    data_dir = settings.data_dir
    src = log_path or default_log_path(data_dir)
    base = paths.data_dir(data_dir)
    out = paths.inside(base, html_path) if html_path else base / REPORT_NAME
    policies = replay.make_policies()
    live = cdhf.resolve_model_dir(settings.cdhf.model_dir, data_dir)
    if live.resolve() != cdhf.default_model_dir().resolve():
        policies.append(replay.load_policy("in-use", live))
    report, _loaded, _units = replay.run(src, policies)
    replay.write_html(report, out)
    return {
        "html": str(out),
        "decisions": report["decisions"],
        "policies": list(report["policies"]),
    }


def register(server: TactfulServer) -> None:
    """Register ``tactful.replayReport`` on ``server``."""

    @server.command(protocol.CMD_REPLAY_REPORT)
    async def cmd_replay_report(ls: Any, *args: Any) -> dict[str, Any]:
        from tactful.cascade import model as cdhf
        from tactful.feedback import store as feedback
        from tactful.replay import report as replay

        html_path = args[0] if args else None
        if html_path is not None and (not isinstance(html_path, str) or not html_path):
            return {
                "html": None,
                "error": f"{protocol.CMD_REPLAY_REPORT}: expected [htmlPath?: str], got {list(args)!r}",
            }
        lp = ls.feedback.log_path() if ls.feedback is not None else None
        try:
            return await asyncio.to_thread(report_for_settings, ls.settings, html_path, lp)
        except (replay.ReplayError, cdhf.CdhfError, feedback.FeedbackError, OSError) as exc:
            msg = f"replay report failed: {exc}"
            log.warning(msg)
            return {"html": None, "error": msg}
        finally:
            memory.trim()  # the policies' models and the log's rows were freed just now
