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
  }) == 'ready, m, 25% accepted (1/4)', tactful.format_status({ state = 'ready', model = 'm', shown = 4, accepted = 1, acceptanceRate = 0.25 }))
  H.check('format-guard-hiding', tactful.format_guard({ state = 'hiding', target = 0.95, accuracyWhenHiding = 0.9, evidence = 20, correct = 18 })
    == 'show/hide filter hiding (right 18 of 20 times, target 95%)')
  H.check('format-guard-off', tactful.format_guard({ state = 'off', target = 0.95, accuracyWhenHiding = vim.NIL, evidence = 0, correct = 0 })
    == 'show/hide filter backed off (hiding nothing) (no evidence on you yet, target 95%)')
  H.check('format-guard-none', tactful.format_guard(vim.NIL) == nil)
  H.check('format-status-nothing-shown', tactful.format_status({ state = 'ready', model = 'm', shown = 0, accepted = 0, acceptanceRate = vim.NIL }) == 'ready, m, no suggestions shown yet')
  H.check('format-rate', tactful.format_rate({ shown = 33, accepted = 4, acceptanceRate = 4 / 33 }) == '12% (4/33)'
    and tactful.format_rate({ acceptanceRate = 0.5 }) == '50%' and tactful.format_rate({ shown = 0, acceptanceRate = vim.NIL }) == nil,
    tactful.format_rate({ shown = 33, accepted = 4, acceptanceRate = 4 / 33 }))

  -- The README's minimal setup: empty settings go out as JSON objects, not lists.
  tactful.setup({ cmd = want_cmd })
  cfg = vim.lsp.config['tactful']
  H.check('empty-settings-are-objects', vim.json.encode(cfg.init_options) == '{}' and vim.json.encode(cfg.settings) == '{"tactful":{}}',
    { init_options = vim.json.encode(cfg.init_options), settings = vim.json.encode(cfg.settings) })
  local nested = vim.json.encode(tactful.json_object({ completion = {}, languages = { python = true }, model = vim.NIL }))
  H.check('nested-empty-settings-are-objects', vim.deep_equal(vim.json.decode(nested, { luanil = { object = true } }), { completion = {}, languages = { python = true } })
    and nested:find('"completion":{}', 1, true) ~= nil, nested)

  -- Ghost text highlight: its own group with cterm and gui attributes, a default that the
  -- user's or a colorscheme's definition overrides, defined again after :colorscheme.
  local function hl()
    return vim.api.nvim_get_hl(0, { name = 'TactfulGhostText', link = false })
  end
  local g = hl()
  H.check('ghost-hl-cterm', g.ctermfg == 8 and g.cterm and g.cterm.italic == true, g)
  H.check('ghost-hl-gui', type(g.fg) == 'number' and g.italic == true, g)
  H.check('ghost-hl-differs-from-normal', g.ctermfg ~= vim.api.nvim_get_hl(0, { name = 'Normal' }).ctermfg, g)
  vim.cmd('colorscheme vim')
  H.check('ghost-hl-after-colorscheme', hl().ctermfg == 8 and hl().cterm and hl().cterm.italic == true, hl())
  vim.cmd('colorscheme default')
  vim.api.nvim_set_hl(0, 'TactfulGhostText', { ctermfg = 3, fg = '#ffaa00' })
  tactful.define_highlights()
  H.check('ghost-hl-user-override-kept', hl().ctermfg == 3 and hl().fg == 0xffaa00, hl())
  vim.api.nvim_set_hl(0, 'TactfulGhostText', {})
  tactful.define_highlights()
  local win = vim.api.nvim_get_current_win()
  vim.wo[win].winhighlight = 'Normal:Pmenu'
  tactful.apply_ghost_hl(win)
  H.check('ghost-hl-winhighlight', vim.wo[win].winhighlight == 'Normal:Pmenu,ComplHint:TactfulGhostText', vim.wo[win].winhighlight)
  tactful.apply_ghost_hl(win)
  H.check('ghost-hl-winhighlight-once', vim.wo[win].winhighlight == 'Normal:Pmenu,ComplHint:TactfulGhostText', vim.wo[win].winhighlight)
  vim.wo[win].winhighlight = 'ComplHint:MyGhost'
  tactful.apply_ghost_hl(win)
  H.check('ghost-hl-user-winhighlight-kept', vim.wo[win].winhighlight == 'ComplHint:MyGhost', vim.wo[win].winhighlight)
  vim.wo[win].winhighlight = ''
  H.check('setup-bad-ghost-hl-errors', not pcall(tactful.setup, { cmd = want_cmd, ghost_hl = 1 }))
  tactful.setup({ cmd = want_cmd })
  H.check('statusline-no-client', tactful.statusline() == '')
  vim.cmd('TactfulStatus')
  H.check('command-without-server-explains', H.wait_note('the server is not running', 1000) ~= nil, H.notes)
  pcall(vim.cmd, 'TactfulToggle maybe') -- an error message, which makes :command itself fail
  H.check('toggle-bad-arg', H.wait_note('usage: :TactfulToggle', 1000) ~= nil, H.notes)
end, 10000)
