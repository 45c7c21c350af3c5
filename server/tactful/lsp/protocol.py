"""tactful's custom LSP surface: every method name, command id and payload shape in one place.

The VS Code client mirrors this file in ``vscode-client/src/protocol.ts`` and the Neovim plugin
in ``nvim/lua/tactful/protocol.lua``; ``tests/unit/test_protocol_mirror.py`` keeps them in sync.
This module must stay import-light (no torch, no pygls).
"""

from __future__ import annotations

# --- workspace/executeCommand ids --------------------------------------------------------------
#: Client -> server, run by the client when an inline or list item is accepted.
#: arguments: [suggestionId: str, acceptedLength?: int | null, via?: str]  (acceptedLength
#: omitted or null = whole item; via: ACCEPT_VIA_LIST in a list item's command, so that the log
#: tells a list accept from a Tab accept of ghost text)
CMD_ACCEPT = "tactful.accept"
#: The ``via`` argument of the accept command that list completion items carry.
ACCEPT_VIA_LIST = "list"
#: Client -> server, an explicit dismissal. arguments: [suggestionId: str]
CMD_REJECT = "tactful.reject"
#: Toggle completions on/off for this server. arguments: [enabled?: bool] -> {"enabled": bool}
CMD_TOGGLE = "tactful.toggle"
#: Flag a document now. arguments: [uri: str] -> {"flags": [...]}  (also refreshes diagnostics)
CMD_FLAG = "tactful.flagDocument"
#: Server status (same payload as the STATUS notification).  arguments: [] -> Status dict
CMD_STATUS = "tactful.status"
#: Where the feedback log lives. arguments: [] -> {"path": str | None, "enabled": bool}
CMD_LOG_LOCATION = "tactful.logLocation"
#: Train the CDHF cascade from the user's own log. arguments: [] -> {"modelDir": str, ...}
CMD_TRAIN = "tactful.train"
#: Write the replay report of the user's own log. arguments: [htmlPath?: str] -> {"html": str}
CMD_REPLAY_REPORT = "tactful.replayReport"

ALL_COMMANDS = (
    CMD_ACCEPT,
    CMD_REJECT,
    CMD_TOGGLE,
    CMD_FLAG,
    CMD_STATUS,
    CMD_LOG_LOCATION,
    CMD_TRAIN,
    CMD_REPLAY_REPORT,
)

# --- notifications -----------------------------------------------------------------------------
#: Server -> client. params: {"state": "idle"|"loading"|"ready"|"failed"|"disabled", "model": str,
#: "message": str, "enabled": bool, "shown": int, "accepted": int, "acceptanceRate": float|None,
#: "problems": {kind: message}}  (problems that last, e.g. "feedbackLog": the disk is full)
#: (``shown``: this session's shown suggestions with an outcome, ``accepted``: those accepted,
#: counted as training and ``tactful log stats`` count them; docs/feedback-log.md)
#: ("idle": before the model load has started, right after ``initialize``.)
STATUS = "tactful/status"
#: Copilot-style, client -> server: an inline item was displayed. params: {"item": InlineCompletionItem}
#: (the item's ``command.arguments[0]`` is the suggestion id).
DID_SHOW_COMPLETION = "textDocument/didShowCompletion"
#: Copilot-style, client -> server: part of an item was accepted.
#: params: {"item": InlineCompletionItem, "acceptedLength": int}
DID_PARTIALLY_ACCEPT_COMPLETION = "textDocument/didPartiallyAcceptCompletion"

# --- diagnostics -------------------------------------------------------------------------------
DIAGNOSTIC_SOURCE = "tactful"
DIAGNOSTIC_CODE = "line-anomaly"
DIAGNOSTIC_IDENTIFIER = "tactful"
CODE_ACTION_TITLE = "Replace with suggested line"
