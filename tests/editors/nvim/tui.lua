-- Neovim 0.12 in a real terminal (the test runs it in tmux): wait until ghost text is drawn at
-- the end of "return fib", record it, and hand over to the test, which reads the screen and types
-- <Tab>, <Esc> and :wq as keys through the terminal.
local H = require('harness')
local api = vim.api

-- The test picks the colour mode: TACTFUL_TGC=0 draws with cterm attributes only (a 256- or
-- 8-colour terminal without truecolor, e.g. tmux's default).
if vim.env.TACTFUL_TGC then
  vim.o.termguicolors = vim.env.TACTFUL_TGC == '1'
end
-- The status line as the docs suggest it: file name, then tactful's state on the right.
vim.o.laststatus = 2
vim.o.statusline = " %f %m%=%{v:lua.require'tactful'.statusline()}  %l:%c "

H.run(function()
  local buf = api.nvim_get_current_buf()
  local client = H.ready_client()
  if not client then
    return
  end
  local row = H.row_of(buf, 'return fib')
  api.nvim_win_set_cursor(0, { row, 0 })
  H.feed('A')
  local ghost = H.wait_until(function()
    return H.ghost(buf)
  end, 300000)
  H.check('ghost-text-appears', ghost ~= nil)
  H.info('ghost', ghost)
  H.info('line', api.nvim_buf_get_lines(buf, row - 1, row, false)[1])
end, 600000, true)
