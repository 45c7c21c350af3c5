-- Line flags: the server's FLAG diagnostics (source "tactful", code "line-anomaly") reach the
-- buffer once each (pull or push, never both), :TactfulFlag re-flags the file, and the code
-- action "Replace with suggested line" is offered for a flagged line.
local H = require('harness')
local P = require('tactful.protocol')
local api = vim.api

local function tactful_diags(buf)
  return vim.tbl_filter(function(d)
    return d.source == P.DIAGNOSTIC_SOURCE
  end, vim.diagnostic.get(buf))
end

H.run(function()
  local buf = api.nvim_get_current_buf()
  local client = H.ready_client()
  if not client then
    return
  end
  local t = H.ms()
  local diags = H.wait_until(function()
    local d = tactful_diags(buf)
    return #d > 0 and d
  end, 300000, 100)
  H.info('flags_ms', H.ms() - t)
  if not H.check('flags-arrive-as-diagnostics', diags ~= nil) then
    return
  end
  H.sleep(1500) -- a duplicate (push + pull) would arrive in this time
  diags = tactful_diags(buf)
  local seen, dup = {}, {}
  for _, d in ipairs(diags) do
    local key = d.lnum .. ':' .. d.message
    if seen[key] then
      dup[#dup + 1] = key
    end
    seen[key] = true
  end
  H.check('flags-not-duplicated', #dup == 0, dup)
  H.info('flags', vim.tbl_map(function(d)
    return { lnum = d.lnum, message = d.message, code = d.code, ns = vim.diagnostic.get_namespace(d.namespace).name }
  end, diags))
  local d = diags[1]
  H.check('flag-code', d.code == P.DIAGNOSTIC_CODE, d.code)
  H.check('flag-message', type(d.message) == 'string' and d.message ~= '', d.message)
  local lines = #api.nvim_buf_get_lines(buf, 0, -1, false)
  H.check('flag-budget', #diags <= math.max(1, math.ceil(lines * 0.15)), #diags)

  -- the code action on a flagged line that has a quick fix (a replacement that would break the
  -- file has none: data.fix is null)
  for _, x in ipairs(diags) do
    local data = x.user_data and x.user_data.lsp and x.user_data.lsp.data
    if data and type(data.fix) == 'string' then
      d = x
      break
    end
  end
  local params = {
    textDocument = vim.lsp.util.make_text_document_params(buf),
    range = { start = { line = d.lnum, character = 0 }, ['end'] = { line = d.lnum, character = 0 } },
    context = { diagnostics = { d.user_data and d.user_data.lsp or d } },
  }
  local r = client:request_sync('textDocument/codeAction', params, 30000, buf)
  local titles = vim.tbl_map(function(a)
    return a.title
  end, (r and r.result) or {})
  local function ours(title)
    return vim.startswith(title, P.CODE_ACTION_TITLE .. ': ')
  end
  H.check('code-action-offered', #vim.tbl_filter(ours, titles) > 0, titles)
  -- applying it puts the model's line in place of the flagged one
  local action
  for _, a in ipairs((r and r.result) or {}) do
    if ours(a.title) then
      action = a
    end
  end
  if action and action.edit then
    vim.lsp.util.apply_workspace_edit(action.edit, client.offset_encoding)
    local expected = d.message:match('expected: (.*)$')
    local line = api.nvim_buf_get_lines(buf, d.lnum, d.lnum + 1, false)[1]
    H.check('code-action-replaces-line', expected and vim.trim(line) == vim.trim(expected), { line = line, message = d.message })
    vim.cmd('undo')
  else
    H.check('code-action-has-edit', false, action)
  end

  -- :TactfulFlag flags the file again on demand (tactful.flagDocument) and says how many lines.
  -- A whole second flagging pass: done on one Neovim version only, to keep the suite short.
  if vim.env.TACTFUL_REFLAG ~= '1' then
    return
  end
  local t2 = H.ms()
  vim.cmd('TactfulFlag')
  local note = H.wait_note('line(s) flagged', 300000)
  H.info('flag_command_ms', H.ms() - t2)
  local n = note and tonumber(note:match('(%d+) line%(s%) flagged'))
  H.check('flag-user-command', n and n >= 1, H.notes)
end, 840000)
