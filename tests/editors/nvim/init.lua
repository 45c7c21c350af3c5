-- Minimal, reproducible init for the headless scenarios: only $VIMRUNTIME and the plugin under
-- test (nvim/ of this checkout), no user config, no swap or shada. The server command and the
-- settings come from the environment that tests/editors/test_neovim.py sets.
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h')
local repo = vim.fn.fnamemodify(here, ':h:h:h')
vim.opt.runtimepath = { vim.env.VIMRUNTIME, repo .. '/nvim' }
package.path = here .. '/?.lua;' .. package.path
vim.g.loaded_netrwPlugin = 1
vim.opt.swapfile = false
vim.opt.shadafile = 'NONE'
vim.opt.showmode = false
vim.opt.shortmess:append('c')
vim.opt.expandtab = true
vim.opt.shiftwidth = 4

if vim.env.TACTFUL_SETUP ~= '0' then
  require('tactful').setup({
    cmd = vim.json.decode((assert(vim.env.TACTFUL_CMD, 'TACTFUL_CMD not set'))),
    settings = vim.env.TACTFUL_SETTINGS and vim.json.decode(vim.env.TACTFUL_SETTINGS) or {},
    health_timeout_ms = 120000,
  })
end

if vim.env.TACTFUL_NVIM_LOG then
  vim.lsp.log.set_level(vim.env.TACTFUL_NVIM_LOG)
end
