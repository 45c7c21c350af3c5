"""Messages to the user: at most one ``window/showMessage`` per kind of problem per session, sent
from whatever thread noticed the problem (writers are not thread-safe, so it goes through the
server's event loop)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lsprotocol import types

if TYPE_CHECKING:
    from tactful.lsp.hardened import HardenedServer

log = logging.getLogger(__name__)

ERROR = types.MessageType.Error


def call_in_loop(server: HardenedServer, fn: Callable[[], Any]) -> None:
    """Run ``fn`` on the server's event loop (now when already there): writers are not
    thread-safe."""
    loop = server.loop
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if loop is not None and loop.is_running() and here is not loop:
        loop.call_soon_threadsafe(fn)
        return
    try:
        fn()
    except Exception:
        log.debug("call_in_loop: %r failed", fn, exc_info=True)


def notice(
    server: HardenedServer,
    kind: str,
    message: str,
    level: types.MessageType = types.MessageType.Warning,
) -> bool:
    """Show ``message`` to the user unless a message of this kind was shown this session."""
    if kind in server.notices_shown:
        return False
    server.notices_shown.add(kind)
    params = types.ShowMessageParams(type=level, message=f"tactful: {message}")
    call_in_loop(server, lambda: server.window_show_message(params))
    return True
