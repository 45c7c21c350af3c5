-- Neovim 0.11 (no inline completion): the plugin turns on list completion (vim.lsp.completion);
-- the model's suggestion comes as a completion item, <C-y> accepts it, the buffer holds it and
-- Neovim runs the item's `tactful.accept` command.
local H = require('harness')
local tactful = require('tactful')
local P = require('tactful.protocol')
local api = vim.api

H.run(function()
  local buf = api.nvim_get_current_buf()
  local client = H.ready_client(H.record_commands)
  if not client then
    return
  end
  H.check('no-inline-api', not tactful.has_inline())
  H.check('suggest-keymap', vim.fn.maparg('<M-\\>', 'i', false, true).desc == 'tactful: suggest')

  local row = H.row_of(buf, 'return fib')
  local before = api.nvim_buf_get_lines(buf, row - 1, row, false)[1]
  api.nvim_win_set_cursor(0, { row, 0 })
  local t = H.ms()
  H.feed('A<M-\\>') -- the plugin's "suggest now" key: vim.lsp.completion.get()
  local info = H.wait_until(function()
    local ci = vim.fn.complete_info({ 'items', 'selected' })
    return #ci.items > 0 and ci
  end, 300000)
  H.info('item_ms', H.ms() - t)
  if not H.check('completion-item-arrives', info ~= nil, { line = before }) then
    return
  end
  local item = info.items[1]
  H.info('item', item.word)
  local lsp_item = vim.tbl_get(item, 'user_data', 'nvim', 'lsp', 'completion_item') or {}
  H.check('item-carries-accept-command', lsp_item.command and lsp_item.command.command == P.CMD_ACCEPT, lsp_item.command)
  H.feed('<C-y>')
  local line = H.wait_until(function()
    local l = api.nvim_buf_get_lines(buf, row - 1, row, false)[1]
    return l ~= before and l
  end, 3000)
  H.info('accepted_line', line)
  H.check('accepted-into-buffer', line and vim.endswith(line, item.word), { line = line, word = item.word })
  -- the whole suggestion, not just up to its first space (tactful.convert_item)
  local new_text = vim.tbl_get(lsp_item, 'textEdit', 'newText') or ''
  H.check('whole-suggestion-inserted', line == before:sub(1, #before - 3) .. new_text, { line = line, new_text = new_text })
  local st1 = H.wait_until(function()
    local s = H.exec(client, P.CMD_STATUS, {})
    return s and (s.accepted or 0) >= 1 and s
  end, 5000)
  H.check('server-counts-accept', st1 ~= nil, H.exec(client, P.CMD_STATUS, {}))
  H.feed('<Esc>')
  H.sleep(50)
  vim.cmd('write')
end, 840000)
