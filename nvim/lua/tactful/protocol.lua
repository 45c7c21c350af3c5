-- tactful's custom LSP surface, mirrored from server/tactful/lsp/protocol.py (the single source of
-- truth; tests/editors/test_neovim.py checks that every constant here matches it).

local M = {}

-- workspace/executeCommand ids
M.CMD_ACCEPT = 'tactful.accept' -- [suggestionId, acceptedLength?, via?]
M.ACCEPT_VIA_LIST = 'list' -- the via argument in a list item's accept command
M.CMD_REJECT = 'tactful.reject' -- [suggestionId]
M.CMD_TOGGLE = 'tactful.toggle' -- [enabled?] -> {enabled}
M.CMD_FLAG = 'tactful.flagDocument' -- [uri] -> {flags}
M.CMD_STATUS = 'tactful.status' -- [] -> status
M.CMD_LOG_LOCATION = 'tactful.logLocation' -- [] -> {path, enabled}
M.CMD_TRAIN = 'tactful.train' -- [] -> {modelDir, ...}
M.CMD_REPLAY_REPORT = 'tactful.replayReport' -- [htmlPath?] -> {html}

-- notifications
M.STATUS = 'tactful/status'
M.DID_SHOW_COMPLETION = 'textDocument/didShowCompletion'
M.DID_PARTIALLY_ACCEPT_COMPLETION = 'textDocument/didPartiallyAcceptCompletion'

-- diagnostics
M.DIAGNOSTIC_SOURCE = 'tactful'
M.DIAGNOSTIC_CODE = 'line-anomaly'
M.DIAGNOSTIC_IDENTIFIER = 'tactful'
M.CODE_ACTION_TITLE = 'Replace with suggested line'

return M
