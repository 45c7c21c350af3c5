-- :checkhealth tactful with no server running: it starts one, reports the model ready, stops it.
local H = require('harness')
local api = vim.api

H.run(function()
  H.check('no-server-before', #vim.lsp.get_clients({ name = 'tactful' }) == 0)
  local t = H.ms()
  vim.cmd('checkhealth tactful')
  H.info('health_ms', H.ms() - t)
  local text = table.concat(api.nvim_buf_get_lines(0, 0, -1, false), '\n')
  H.info('report', text)
  H.check('health-neovim-section', text:find('tactful: Neovim', 1, true) ~= nil)
  H.check('health-server-starts', text:find('OK server starts', 1, true) ~= nil)
  H.check('health-model-ready', text:find('OK model ready: ready', 1, true) ~= nil)
  H.check('health-no-errors', text:find('ERROR', 1, true) == nil)
  H.check('temporary-server-stopped', H.wait_until(function()
    return #vim.lsp.get_clients({ name = 'tactful' }) == 0
  end, 10000))
end, 300000)
