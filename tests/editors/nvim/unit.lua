-- No server: the plugin's setup() result and its pure helpers (partial accept text, UTF-16
-- lengths, status formatting). Run with no file open, so no server starts.
local H = require('harness')
local tactful = require('tactful')

H.run(function()
  local cfg = vim.lsp.config['tactful']
  local want_cmd = vim.json.decode(vim.env.TACTFUL_CMD)
  H.check('config-cmd', cfg and vim.deep_equal(cfg.cmd, want_cmd), cfg and cfg.cmd)
  H.check('config-settings', cfg and cfg.settings and cfg.settings.tactful ~= nil and cfg.init_options ~= nil, cfg and cfg.settings)
  H.check('config-enabled', vim.lsp.is_enabled('tactful'))
  H.check('config-status-handler', cfg and cfg.handlers and cfg.handlers['tactful/status'] ~= nil)
  for _, name in ipairs({ 'TactfulToggle', 'TactfulFlag', 'TactfulStatus', 'TactfulLog', 'TactfulTrain', 'TactfulReplayReport' }) do
    H.check('command-' .. name, vim.fn.exists(':' .. name) == 2)
  end
  H.check('no-server-without-file', #vim.lsp.get_clients({ name = 'tactful' }) == 0)

  -- setup() again replaces (not merges) the config
  tactful.setup({ cmd = { 'other-tactful', 'serve' }, filetypes = { 'python' } })
  tactful.setup({ cmd = want_cmd })
  cfg = vim.lsp.config['tactful']
  H.check('setup-again-replaces', vim.deep_equal(cfg.cmd, want_cmd) and cfg.filetypes == nil, { cmd = cfg.cmd, filetypes = cfg.filetypes })
  H.check('setup-bad-cmd-errors', not pcall(tactful.setup, { cmd = 'tactful serve' }))
  local ok, err = pcall(tactful.setup, { settings = 'x' })
  H.check('setup-bad-settings-errors', not ok and tostring(err):find("'settings' must be a table", 1, true) ~= nil, err)
  H.check('setup-bad-keymaps-errors', not pcall(tactful.setup, { keymaps = 'yes' }))
  H.check('setup-bad-filetypes-errors', not pcall(tactful.setup, { filetypes = 'python' }))
  H.check('bad-setup-keeps-config', vim.deep_equal(vim.lsp.config['tactful'].cmd, want_cmd))
  tactful.setup({ cmd = want_cmd })

  -- next word / next line
  local cases = {
    { tactful.next_word('fibonacci(n - 1)'), 'fibonacci' },
    { tactful.next_word('(n - 1)'), '(' },
    { tactful.next_word('  + fib'), '  +' },
    { tactful.next_word('\n    return x'), '\n    return' },
    { tactful.next_word('   '), '   ' },
    { tactful.next_line('a = 1\nb = 2'), 'a = 1' },
    { tactful.next_line('\n    b = 2\n    c'), '\n    b = 2' },
    { tactful.next_line('last'), 'last' },
  }
  local bad = {}
  for i, c in ipairs(cases) do
    if c[1] ~= c[2] then
      bad[#bad + 1] = { i = i, got = c[1], want = c[2] }
    end
  end
  H.check('next-word-line', #bad == 0, bad)

  -- partial_text: typed prefix kept, nil when the piece is the whole rest or the prefix differs
  H.check('partial-word', tactful.partial_text('return fib(n)', 'ret', 'word') == 'return')
  H.check('partial-word-next', tactful.partial_text('return fib(n)', 'return', 'word') == 'return fib')
  H.check('partial-line', tactful.partial_text('x = 1\ny = 2', '', 'line') == 'x = 1')
  H.check('partial-whole-is-nil', tactful.partial_text('return x', 'return ', 'word') == nil)
  H.check('partial-mismatch-is-nil', tactful.partial_text('return x', 'yield', 'word') == nil)

  -- UTF-16 lengths (acceptedLength): astral characters count 2, BMP ones 1
  H.check('utf16-len', tactful.utf16_len('héllo😀') == 7 and tactful.utf16_len('') == 0, tactful.utf16_len('héllo😀'))

  H.check('format-status', tactful.format_status({
    state = 'ready', model = 'm', enabled = true, shown = 4, accepted = 1, acceptanceRate = 0.25,
  }) == 'ready, m, 4 shown, 1 accepted (25%)', tactful.format_status({ state = 'ready', model = 'm', shown = 4, accepted = 1, acceptanceRate = 0.25 }))
  H.check('statusline-no-client', tactful.statusline() == '')
  vim.cmd('TactfulStatus')
  H.check('command-without-server-explains', H.wait_note('the server is not running', 1000) ~= nil, H.notes)
  pcall(vim.cmd, 'TactfulToggle maybe') -- an error message, which makes :command itself fail
  H.check('toggle-bad-arg', H.wait_note('usage: :TactfulToggle', 1000) ~= nil, H.notes)
end, 10000)
