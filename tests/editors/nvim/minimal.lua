-- The README's minimal setup, exactly: require('tactful').setup({ cmd = ... }) with nothing else
-- (run with TACTFUL_SETUP=0, so init.lua does not call setup). A Python file is opened, the
-- server starts and loads its model; nothing may be printed on the way: no vim.notify, no
-- window/showMessage, nothing in :messages (the settings went out as a JSON object, not a list).
local H = require('harness')
local api = vim.api

H.run(function()
  vim.cmd('messages clear')
  require('tactful').setup({
    cmd = vim.json.decode(vim.env.TACTFUL_CMD),
  })
  vim.cmd('silent edit ' .. vim.fn.fnameescape(vim.env.TACTFUL_OPEN))
  local client = H.client(60000)
  if not client then
    return
  end
  H.model_ready(client, 240000)
  -- A flag pass runs on open; give late messages (a settings warning comes right after
  -- initialize, a flags failure later) a moment to arrive.
  H.sleep(3000)
  local messages = vim.trim(vim.fn.execute('messages'))
  H.info('messages', messages)
  H.info('notes', H.notes)
  H.check('nothing-in-messages', messages == '', messages)
  H.check('no-notifications', #H.notes == 0, H.notes)
  H.check('ghost-hl-in-window', (not require('tactful').has_inline()
    or vim.wo[api.nvim_get_current_win()].winhighlight:find('ComplHint:TactfulGhostText', 1, true) ~= nil),
    vim.wo[api.nvim_get_current_win()].winhighlight)
end, 300000)
