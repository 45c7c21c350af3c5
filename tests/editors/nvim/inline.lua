-- Neovim 0.12+: ghost text from the real server and the embedded model, accepted with the
-- plugin's keys (whole, next word), dismissed, cycled, and completions toggled off and on.
-- The file opened is a copy of tests/editors/nvim/sample.py.in; rows below refer to it.
local H = require('harness')
local tactful = require('tactful')
local P = require('tactful.protocol')
local api = vim.api

-- Go to the end of `row` in insert mode and wait for ghost text; returns it (or nil).
local function ghost_at(buf, row, timeout)
  H.feed('<Esc>')
  H.sleep(50)
  api.nvim_win_set_cursor(0, { row, 0 })
  H.feed('A')
  return H.wait_until(function()
    return H.ghost(buf)
  end, timeout or 120000)
end

local function status(client)
  return H.exec(client, P.CMD_STATUS, {}) or {}
end

-- Wait (5 s at most) until the plugin's status for `client` says completions are `enabled`.
local function enabled_becomes(client, enabled)
  return H.wait_until(function()
    local s = tactful.status[client.id]
    return s and s.enabled == enabled
  end, 5000)
end

H.run(function()
  local buf = api.nvim_get_current_buf()
  local client = H.ready_client(function(c)
    H.check('server-advertises-inline', c.server_capabilities.inlineCompletionProvider ~= nil)
    H.record_commands(c)
  end)
  if not client then
    return
  end
  H.check('inline-enabled-for-buffer', vim.lsp.inline_completion.is_enabled({ bufnr = buf }))
  H.check('keymap-accept', vim.fn.maparg('<Tab>', 'i', false, true).desc == 'tactful: accept suggestion')

  -- 1. ghost text appears, <Tab> accepts it: the buffer holds it and the server counts an accept
  local row = assert(H.row_of(buf, 'return fib'), 'sample.py changed?')
  local before = api.nvim_buf_get_lines(buf, row - 1, row, false)[1]
  local t = H.ms()
  local ghost = ghost_at(buf, row, 300000)
  H.info('ghost_ms', H.ms() - t)
  H.info('ghost', ghost)
  if not H.check('ghost-text-appears', ghost and ghost ~= '', { line = before }) then
    return
  end
  H.check('mode-insert', api.nvim_get_mode().mode == 'i', api.nvim_get_mode())
  H.feed('<Tab>')
  local want = vim.split(before .. ghost, '\n', { plain = true })
  local got = H.wait_until(function()
    local lines = api.nvim_buf_get_lines(buf, row - 1, row - 1 + #want, false)
    return vim.deep_equal(lines, want) and lines
  end, 3000)
  H.check('tab-accepts-into-buffer', got ~= nil, { want = want, got = api.nvim_buf_get_lines(buf, row - 1, row - 1 + #want, false) })
  local st1 = H.wait_until(function()
    local s = status(client)
    return (s.accepted or 0) >= 1 and s
  end, 5000)
  H.check('server-counts-accept', st1 ~= nil, status(client))
  H.info('accepted_text', ghost)

  -- 2. accept the next word only (<M-Right>): the buffer gets exactly that word
  row = assert(H.row_of(buf, 'def add')) + 2
  before = api.nvim_buf_get_lines(buf, row - 1, row, false)[1]
  ghost = ghost_at(buf, row)
  if H.check('ghost-text-appears-2', ghost and ghost ~= '', { line = before }) then
    local word = tactful.next_word(ghost)
    H.info('word_ghost', ghost)
    H.info('accepted_word', word)
    H.feed('<M-Right>')
    local line = H.wait_until(function()
      local l = api.nvim_buf_get_lines(buf, row - 1, row, false)[1]
      return l ~= before and l
    end, 3000)
    local want_line = vim.split(before .. word, '\n', { plain = true })[1]
    H.check('accept-word-inserts-one-word', line == want_line, { got = line, want = want_line, ghost = ghost })
    -- Neovim asks again at the new cursor position; what the server shows then is informative
    H.info('ghost_after_word', H.wait_until(function()
      return H.ghost(buf)
    end, 10000))
  end

  -- 3. cycle (<M-]>) redraws the suggestion with its index; dismiss (<C-]>) hides it, nothing inserted
  row = assert(H.row_of(buf, 'def cube')) + 2
  before = api.nvim_buf_get_lines(buf, row - 1, row, false)[1]
  ghost = ghost_at(buf, row)
  if H.check('ghost-text-appears-3', ghost and ghost ~= '', { line = before }) then
    H.feed('<M-]>')
    local cycled = H.wait_until(function()
      local g = H.ghost(buf)
      return g and g:find('(1/', 1, true) and g
    end, 2000)
    H.check('cycle-shows-index', cycled ~= nil, H.ghost(buf))
    H.feed('<C-]>')
    local gone = H.wait_until(function()
      return H.ghost(buf) == nil
    end, 2000)
    H.check('dismiss-hides-ghost', gone)
    H.check('dismiss-inserts-nothing', api.nvim_buf_get_lines(buf, row - 1, row, false)[1] == before)
  end
  H.feed('<Esc>')
  H.sleep(100)

  -- 4. :TactfulToggle off -> the server answers with no items; on -> suggestions again
  vim.cmd('TactfulToggle off')
  H.check('toggle-off', enabled_becomes(client, false))
  local params = {
    textDocument = vim.lsp.util.make_text_document_params(buf),
    position = { line = row - 1, character = #before },
    context = { triggerKind = 1 },
  }
  local r = client:request_sync('textDocument/inlineCompletion', params, 30000, buf)
  H.check('toggle-off-no-items', r and r.result and #(r.result.items or r.result) == 0, r)
  -- with nothing to accept, <Tab> is a plain <Tab>
  api.nvim_win_set_cursor(0, { row, 0 })
  H.feed('A')
  H.sleep(600)
  H.check('no-ghost-when-off', H.ghost(buf) == nil, H.ghost(buf))
  H.feed('<Tab>')
  local tabbed = H.wait_until(function()
    local l = api.nvim_buf_get_lines(buf, row - 1, row, false)[1]
    return l ~= before and l
  end, 2000)
  H.check('tab-falls-back-to-indent', tabbed and tabbed:match('^' .. vim.pesc(before) .. '%s+$') ~= nil, tabbed)
  H.feed('<Esc>')
  H.sleep(50)
  vim.cmd('undo')
  vim.cmd('TactfulToggle on')
  H.check('toggle-on', enabled_becomes(client, true))
  -- setup() again with new settings reconfigures the running server (didChangeConfiguration)
  local opts = { cmd = vim.json.decode(vim.env.TACTFUL_CMD), settings = vim.json.decode(vim.env.TACTFUL_SETTINGS) }
  opts.settings.enable = false
  tactful.setup(opts)
  H.check('setup-again-reconfigures', enabled_becomes(client, false))
  H.check('setup-again-same-client', #vim.lsp.get_clients({ name = 'tactful' }) == 1 and tactful.client(buf) == client)
  opts.settings.enable = true
  tactful.setup(opts)
  H.check('setup-again-reconfigures-back', enabled_becomes(client, true))
  -- Suggestions were shown and accepted by now: the rate with its counts, e.g. 'tactful 40% (2/5)'.
  H.check('statusline', tactful.statusline():match('^tactful %d+%% %(%d+/%d+%)$') ~= nil, tactful.statusline())
  vim.cmd('TactfulStatus')
  local note = H.wait_note('tactful: ready')
  H.check('status-command', note and note:find('%d+%% accepted %(%d+/%d+%)') ~= nil, note)
  vim.cmd('TactfulLog')
  note = H.wait_note('feedback log: ')
  H.check('log-command', note and note:find(vim.env.TACTFUL_DATA_DIR, 1, true) ~= nil, note)
  H.info('status', status(client))
  vim.cmd('write')
end, 840000)
