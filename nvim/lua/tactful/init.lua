-- tactful for Neovim: configures the tactful language server with vim.lsp.config/vim.lsp.enable,
-- turns on ghost-text inline completion (Neovim 0.12+, vim.lsp.inline_completion) or list
-- completion (0.11, vim.lsp.completion), maps the accept / accept-word / accept-line / dismiss /
-- cycle keys, and adds the :Tactful* commands. Everything the server learns from comes over LSP:
-- accepting runs the item's `tactful.accept` command, a partial accept runs it with the accepted
-- length, and dismissing runs `tactful.reject`. Neovim sends no show events; the server infers them.
--
--   require('tactful').setup({ cmd = { 'tactful', 'serve' }, settings = { completion = { ... } } })

local protocol = require('tactful.protocol')

local api = vim.api
local M = {}

M.name = 'tactful'

---@class tactful.Keymaps
---@field accept string|false       accept the whole suggestion (falls back to the key itself)
---@field accept_word string|false  accept the next word of the suggestion
---@field accept_line string|false  accept the rest of the current line of the suggestion
---@field dismiss string|false      hide the suggestion and tell the server it was rejected
---@field next string|false         show the next suggestion
---@field prev string|false         show the previous suggestion
---@field suggest string|false      ask for a suggestion now (list completion, Neovim 0.11)

---@class tactful.Opts
---@field cmd? string[]              server command (default: { 'tactful', 'serve' })
---@field filetypes? string[]        filetypes to attach to (default: any file buffer)
---@field root_markers? string[]     (default: { '.git' })
---@field settings? table            tactful settings, nested camelCase (see docs/neovim.md)
---@field inline? boolean            ghost text on 0.12+ (default: true)
---@field list? boolean              list completion via vim.lsp.completion (default: true)
---@field autotrigger? boolean       the list pops up on the server's trigger characters (default: only without ghost text)
---@field keymaps? tactful.Keymaps|false
---@field ghost_hl? string|false     highlight group of the ghost text (default: 'TactfulGhostText'; false: Neovim's ComplHint)
---@field health_timeout_ms? integer how long :checkhealth waits for the model (default: 60000)

---@type tactful.Opts
M.defaults = {
  cmd = nil,
  filetypes = nil,
  root_markers = { '.git' },
  settings = {},
  inline = true,
  list = true,
  autotrigger = nil,
  keymaps = {
    accept = '<Tab>',
    accept_word = '<M-Right>',
    accept_line = '<M-C-Right>',
    dismiss = '<C-]>',
    next = '<M-]>',
    prev = '<M-[>',
    suggest = '<M-\\>',
  },
  ghost_hl = 'TactfulGhostText',
  health_timeout_ms = 60000,
}

---@type tactful.Opts
M.options = vim.deepcopy(M.defaults)

--- The last `tactful/status` payload per client id: {state, model, message, enabled, shown, accepted, acceptanceRate}.
---@type table<integer, table>
M.status = {}

--- Whether this Neovim has built-in LSP inline completion (0.12+).
function M.has_inline()
  return vim.lsp.inline_completion ~= nil
end

local function default_cmd()
  return { 'tactful', 'serve' }
end

local function notify(msg, level)
  vim.notify('tactful: ' .. msg, level or vim.log.levels.INFO)
end

--- The running tactful client for a buffer (or any buffer), if there is one.
---@param bufnr? integer
---@return vim.lsp.Client?
function M.client(bufnr)
  local clients = vim.lsp.get_clients({ name = M.name, bufnr = bufnr })
  if #clients == 0 and bufnr then
    clients = vim.lsp.get_clients({ name = M.name })
  end
  return clients[1]
end

-- --- partial accept: pure text helpers ---------------------------------------------------------

--- The next word of `s`: leading white space (newlines included) plus a run of word characters,
--- or else a run of other non-space characters; all of `s` when it is only white space.
---@param s string
---@return string
function M.next_word(s)
  return s:match('^%s*[%w_]+') or s:match('^%s*[^%w_%s]+') or s
end

--- The rest of the current line of `s`: up to (not including) the first newline; when `s`
--- starts with a newline, that newline plus the whole next line.
---@param s string
---@return string
function M.next_line(s)
  if s:sub(1, 1) == '\n' then
    return '\n' .. (s:sub(2):match('^[^\n]*') or '')
  end
  return s:match('^[^\n]*') or s
end

--- Length of `s` in UTF-16 code units (LSP's default position encoding; `acceptedLength` uses it).
---@param s string
---@return integer
function M.utf16_len(s)
  if s == '' then
    return 0
  end
  local ok, n = pcall(vim.str_utfindex, s, 'utf-16')
  if ok and type(n) == 'number' then
    return n
  end
  local _, n16 = vim.str_utfindex(s) -- Neovim < 0.11 signature
  return n16
end

--- Cut an inline item down to its next word or line, given the text already typed in its range.
--- Returns the accepted text (from the start of insertText) or nil when the whole item is taken.
---@param insert_text string
---@param typed string  the part of the item's range before the cursor (already in the buffer)
---@param unit 'word'|'line'
---@return string?
function M.partial_text(insert_text, typed, unit)
  if not vim.startswith(insert_text, typed) then
    return nil
  end
  local rest = insert_text:sub(#typed + 1)
  local piece = unit == 'word' and M.next_word(rest) or M.next_line(rest)
  if #piece >= #rest then
    return nil
  end
  return typed .. piece
end

-- --- inline completion (0.12+) --------------------------------------------------------------

local function suggestion_id(item)
  local cmd = item and item.command
  if cmd and cmd.command == protocol.CMD_ACCEPT and type(cmd.arguments) == 'table' then
    return cmd.arguments[1]
  end
  return nil
end

--- Accept the whole ghost-text suggestion. Returns false when there was none.
---@return boolean
function M.accept()
  if not M.has_inline() then
    return false
  end
  return vim.lsp.inline_completion.get()
end

--- Accept the next word ('word') or the rest of the line ('line') of the ghost text; the server
--- gets `tactful.accept` with [suggestionId, acceptedLength]. Returns false when there was none.
---@param unit 'word'|'line'
---@return boolean
function M.accept_partial(unit)
  if not M.has_inline() then
    return false
  end
  local bufnr = api.nvim_get_current_buf()
  local win = api.nvim_get_current_win()
  return vim.lsp.inline_completion.get({
    on_accept = function(item)
      local text = item.insert_text
      if type(text) ~= 'string' then
        return item -- a snippet: take it whole
      end
      local cursor = api.nvim_win_get_cursor(win)
      local crow, ccol = cursor[1] - 1, cursor[2]
      local typed, range = '', nil
      local r = item.range
      if r then
        if r.start_row ~= crow or r.start_col > ccol then
          return item
        end
        local line = api.nvim_buf_get_lines(bufnr, crow, crow + 1, false)[1] or ''
        typed = line:sub(r.start_col + 1, ccol)
        -- Replace only up to the cursor: what lies after it stays the user's.
        range = vim.range(bufnr, r.start_row, r.start_col, crow, ccol)
      end
      local accepted = M.partial_text(text, typed, unit)
      if not accepted then
        return item
      end
      local id = suggestion_id(item)
      local partial = vim.deepcopy(item)
      partial.insert_text = accepted
      partial.range = range
      partial.command = id
          and {
            title = item.command.title,
            command = protocol.CMD_ACCEPT,
            arguments = { id, M.utf16_len(accepted) },
          }
        or nil
      return partial
    end,
  })
end

--- Hide the ghost text and tell the server the suggestion was rejected. False when there was none.
---@return boolean
function M.dismiss()
  if not M.has_inline() then
    return false
  end
  local bufnr = api.nvim_get_current_buf()
  return vim.lsp.inline_completion.get({
    on_accept = function(item)
      local id = suggestion_id(item)
      local client = vim.lsp.get_client_by_id(item.client_id)
      if id and client then
        client:exec_cmd({ title = 'Reject suggestion', command = protocol.CMD_REJECT, arguments = { id } }, { bufnr = bufnr })
      end
      return nil -- apply nothing
    end,
  })
end

--- Show the next (count > 0) or previous (count < 0) suggestion.
---@param count integer
function M.cycle(count)
  if M.has_inline() then
    vim.lsp.inline_completion.select({ count = count })
  end
end

-- --- server commands -----------------------------------------------------------------------

--- Run a tactful server command; `on_result(result)` gets the result, errors are reported.
---@param command string
---@param arguments table
---@param on_result? fun(result: any)
---@param bufnr? integer
function M.exec(command, arguments, on_result, bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local client = M.client(bufnr)
  if not client then
    notify('the server is not running for this buffer (see :checkhealth tactful)', vim.log.levels.WARN)
    return
  end
  client:exec_cmd({ title = command, command = command, arguments = arguments }, { bufnr = bufnr }, function(err, result)
    if err then
      notify(command .. ' failed: ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
    elseif on_result then
      on_result(result)
    end
  end)
end

--- The acceptance rate of a status payload with its counts, e.g. '12% (4/33)'; nil when the
--- payload has no rate (nothing shown yet). The figures are the server's own.
---@param st table?
---@return string?
function M.format_rate(st)
  local rate = st and st.acceptanceRate
  if type(rate) ~= 'number' then
    return nil
  end
  local pct = ('%.0f%%'):format(rate * 100)
  if type(st.accepted) == 'number' and type(st.shown) == 'number' then
    return ('%s (%d/%d)'):format(pct, st.accepted, st.shown)
  end
  return pct
end

--- Format a status payload for humans.
---@param st table?
---@return string
function M.format_status(st)
  if not st then
    return 'no status yet'
  end
  local parts = { st.state or '?' }
  if st.model and st.model ~= '' then
    parts[#parts + 1] = st.model
  end
  if st.enabled == false then
    parts[#parts + 1] = 'completions off'
  end
  local rate = M.format_rate(st)
  if rate then
    -- '25% accepted (1/4)'
    parts[#parts + 1] = (rate:gsub('^(%S+)', '%1 accepted', 1))
  elseif st.shown then
    parts[#parts + 1] = 'no suggestions shown yet'
  end
  if st.message and st.message ~= '' then
    parts[#parts + 1] = st.message
  end
  local guard = M.format_guard(st.cascadeGuard)
  if guard then
    parts[#parts + 1] = guard
  end
  return table.concat(parts, ', ')
end

--- The show/hide filter's guard in words, or nil without one: e.g.
--- 'show/hide filter hiding (right 18 of 20 times, target 95%)'.
function M.format_guard(g)
  if type(g) ~= 'table' or type(g.state) ~= 'string' then
    return nil
  end
  local state = ({ hiding = 'hiding', stricter = 'backed off (stricter)', off = 'backed off (hiding nothing)' })[g.state]
    or g.state
  local target = string.format('target %d%%', math.floor((tonumber(g.target) or 0) * 100 + 0.5))
  local record
  if type(g.accuracyWhenHiding) == 'number' and (tonumber(g.evidence) or 0) > 0 then
    record = string.format('right %d of %d times, %s', g.correct, g.evidence, target)
  else
    record = 'no evidence on you yet, ' .. target
  end
  return string.format('show/hide filter %s (%s)', state, record)
end

--- A short string for the status line: '' when no server runs for the current buffer; the
--- session's acceptance rate with its counts once something was shown, e.g. 'tactful 12% (4/33)'.
---@return string
function M.statusline()
  local client = M.client(api.nvim_get_current_buf())
  if not client then
    return ''
  end
  local st = M.status[client.id]
  if not st then
    return 'tactful: starting'
  end
  if st.state == 'ready' or st.state == 'disabled' then
    if st.enabled == false then
      return 'tactful: off'
    end
    local rate = M.format_rate(st)
    return rate and ('tactful ' .. rate) or 'tactful'
  end
  return 'tactful: ' .. (st.state or '?')
end

local function create_commands()
  local cmd = api.nvim_create_user_command
  cmd('TactfulToggle', function(o)
    local arg = o.args
    local args = {}
    if arg == 'on' then
      args = { true }
    elseif arg == 'off' then
      args = { false }
    elseif arg ~= '' then
      notify('usage: :TactfulToggle [on|off]', vim.log.levels.ERROR)
      return
    end
    M.exec(protocol.CMD_TOGGLE, args, function(result)
      notify('completions ' .. ((result and result.enabled) and 'on' or 'off'))
    end)
  end, {
    nargs = '?',
    complete = function()
      return { 'on', 'off' }
    end,
    desc = 'tactful: turn completions on/off',
  })
  cmd('TactfulFlag', function()
    local bufnr = api.nvim_get_current_buf()
    M.exec(protocol.CMD_FLAG, { vim.uri_from_bufnr(bufnr) }, function(result)
      local flags = result and result.flags or {}
      notify(('%d line(s) flagged'):format(#flags))
    end, bufnr)
  end, { desc = 'tactful: flag unusual lines of the current file now' })
  cmd('TactfulStatus', function()
    M.exec(protocol.CMD_STATUS, {}, function(result)
      notify(M.format_status(result))
    end)
  end, { desc = 'tactful: server and model status' })
  cmd('TactfulLog', function()
    M.exec(protocol.CMD_LOG_LOCATION, {}, function(result)
      if result and result.path then
        notify('feedback log: ' .. result.path .. (result.enabled == false and ' (logging off)' or ''))
      else
        notify('feedback logging is off')
      end
    end)
  end, { desc = 'tactful: where the feedback log is' })
  cmd('TactfulTrain', function()
    notify('training the show/hide cascade from your log...')
    M.exec(protocol.CMD_TRAIN, {}, function(result)
      if type(result) == 'table' and type(result.message) == 'string' then
        notify(result.message) -- e.g. "learning: 16 of 30 decisions needed to train"
      else
        notify('trained: ' .. vim.inspect(result, { newline = ' ', indent = '' }))
      end
    end)
  end, { desc = 'tactful: train the show/hide cascade from your own feedback log' })
  cmd('TactfulReplayReport', function(o)
    local args = o.args ~= '' and { vim.fn.fnamemodify(o.args, ':p') } or {}
    M.exec(protocol.CMD_REPLAY_REPORT, args, function(result)
      notify('replay report: ' .. tostring(result and result.html))
    end)
  end, { nargs = '?', complete = 'file', desc = 'tactful: write the replay report of your feedback log' })
end

-- --- ghost text highlight ---------------------------------------------------------------------

--- Define TactfulGhostText (as a default: a colorscheme's or the user's own definition wins):
--- grey italic, with cterm attributes so that it stays distinct from code without
--- 'termguicolors' (8/16/256-colour terminals, tmux) as well as with it.
function M.define_highlights()
  api.nvim_set_hl(0, 'TactfulGhostText', {
    default = true,
    fg = '#808080',
    italic = true,
    ctermfg = 8,
    cterm = { italic = true },
  })
end

--- Neovim draws inline completions with ComplHint; in windows that show a tactful buffer,
--- 'winhighlight' maps it to the ghost text group (M.options.ghost_hl). An existing ComplHint
--- mapping in 'winhighlight' (the user's) is kept.
---@param win integer
function M.apply_ghost_hl(win)
  local group = M.options.ghost_hl
  if not group or not api.nvim_win_is_valid(win) then
    return
  end
  local cur = api.nvim_get_option_value('winhighlight', { win = win })
  for pair in vim.gsplit(cur, ',', { plain = true, trimempty = true }) do
    if vim.startswith(pair, 'ComplHint:') then
      return
    end
  end
  local new = (cur == '' and '' or cur .. ',') .. 'ComplHint:' .. group
  api.nvim_set_option_value('winhighlight', new, { scope = 'local', win = win })
end

--- `value` for JSON with every empty table as an object (`{}`), not a list (`[]`): Neovim encodes
--- an empty Lua table as a list, and the server expects objects for its settings.
---@param value any
---@return any
function M.json_object(value)
  if type(value) ~= 'table' or getmetatable(value) ~= nil then
    return value
  end
  if next(value) == nil then
    return vim.empty_dict()
  end
  local out = {}
  for k, v in pairs(value) do
    out[k] = M.json_object(v)
  end
  return out
end

-- --- keymaps and attach ----------------------------------------------------------------------

local function map_keys(bufnr, inline)
  local keys = M.options.keymaps
  if not keys then
    return
  end
  local function imap(lhs, fn, desc)
    if lhs then
      vim.keymap.set('i', lhs, fn, { buffer = bufnr, expr = true, silent = true, desc = 'tactful: ' .. desc })
    end
  end
  -- Each falls back to the key's own meaning when there is no suggestion on screen.
  local function or_key(fn, lhs)
    return function()
      if fn() then
        return ''
      end
      return lhs
    end
  end
  if inline then
    imap(keys.accept, or_key(M.accept, keys.accept), 'accept suggestion')
    imap(keys.accept_word, or_key(function()
      return M.accept_partial('word')
    end, keys.accept_word), 'accept next word')
    imap(keys.accept_line, or_key(function()
      return M.accept_partial('line')
    end, keys.accept_line), 'accept line')
    imap(keys.dismiss, or_key(M.dismiss, keys.dismiss), 'dismiss suggestion')
    imap(keys.next, function()
      M.cycle(1)
      return ''
    end, 'next suggestion')
    imap(keys.prev, function()
      M.cycle(-1)
      return ''
    end, 'previous suggestion')
  end
  if keys.suggest and M.options.list and vim.lsp.completion then
    vim.keymap.set('i', keys.suggest, function()
      vim.lsp.completion.get()
    end, { buffer = bufnr, silent = true, desc = 'tactful: suggest' })
  end
end


--- vim.lsp.completion's `convert`: Neovim inserts a plain-text item's textEdit only up to its
--- first white space ("fibonacci(n - 1)" would insert "fibonacci(n"); tactful's items (known by
--- their accept command) insert their whole first line instead. Other servers' items are unchanged.
---@param item lsp.CompletionItem
---@return table
function M.convert_item(item)
  local cmd = item.command
  if not (cmd and cmd.command == protocol.CMD_ACCEPT) or item.insertTextFormat == 2 then
    return {}
  end
  local text = (item.textEdit and item.textEdit.newText) or item.insertText
  if type(text) ~= 'string' or text == '' then
    return {}
  end
  return { word = text:match('^[^\n]*') }
end

---@param client vim.lsp.Client
---@param bufnr integer
function M.on_attach(client, bufnr)
  local inline = M.options.inline and M.has_inline()
  if inline then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
    if M.options.ghost_hl then
      for _, win in ipairs(vim.fn.win_findbuf(bufnr)) do
        M.apply_ghost_hl(win)
      end
      api.nvim_create_autocmd('BufWinEnter', {
        group = api.nvim_create_augroup('tactful.ghost_hl.' .. bufnr, { clear = true }),
        buffer = bufnr,
        callback = function()
          M.apply_ghost_hl(api.nvim_get_current_win())
        end,
      })
    end
  end
  if M.options.list and vim.lsp.completion then
    -- With ghost text on, the list is there for <C-x><C-o> only; without it, it opens by itself.
    local autotrigger = M.options.autotrigger
    if autotrigger == nil then
      autotrigger = not inline
    end
    vim.lsp.completion.enable(true, client.id, bufnr, { autotrigger = autotrigger, convert = M.convert_item })
  end
  map_keys(bufnr, inline)
end

--- The vim.lsp.config table for the server.
---@return vim.lsp.Config
function M.lsp_config()
  local o = M.options
  -- An empty table (the README's minimal setup) must go out as a JSON object.
  local settings = M.json_object(o.settings or {})
  return {
    name = M.name,
    cmd = o.cmd or default_cmd(),
    filetypes = o.filetypes,
    root_markers = o.root_markers,
    init_options = settings,
    settings = { tactful = settings },
    handlers = {
      [protocol.STATUS] = function(_, params, ctx)
        if type(params) == 'table' then
          M.status[ctx.client_id] = params
          api.nvim_exec_autocmds('User', { pattern = 'TactfulStatus', data = { client_id = ctx.client_id, status = params } })
        end
      end,
    },
    on_attach = function(client, bufnr)
      M.on_attach(client, bufnr)
    end,
    on_exit = function(_, _, client_id)
      M.status[client_id] = nil
    end,
  }
end

local did_setup = false

--- Configure and enable the tactful server. Calling it again updates running servers' settings.
---@param opts? tactful.Opts
function M.setup(opts)
  vim.validate('opts', opts, 'table', true)
  opts = opts or {}
  if opts.cmd ~= nil and (type(opts.cmd) ~= 'table' or type(opts.cmd[1]) ~= 'string') then
    error("tactful.setup: 'cmd' must be a list of strings, e.g. { 'tactful', 'serve' }")
  end
  if opts.settings ~= nil and type(opts.settings) ~= 'table' then
    error("tactful.setup: 'settings' must be a table of tactful settings, e.g. { completion = { maxNewTokens = 32 } }")
  end
  if opts.keymaps ~= nil and opts.keymaps ~= false and type(opts.keymaps) ~= 'table' then
    error("tactful.setup: 'keymaps' must be a table of keys or false")
  end
  if opts.ghost_hl ~= nil and opts.ghost_hl ~= false and type(opts.ghost_hl) ~= 'string' then
    error("tactful.setup: 'ghost_hl' must be a highlight group name or false")
  end
  if opts.filetypes ~= nil and type(opts.filetypes) ~= 'table' then
    error("tactful.setup: 'filetypes' must be a list of filetypes or nil (any file)")
  end
  M.options = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts)
  if opts.keymaps == false then
    M.options.keymaps = false
  end
  if not vim.lsp.config then
    notify('needs Neovim 0.11 or newer (vim.lsp.config)', vim.log.levels.ERROR)
    return
  end
  local cfg = M.lsp_config()
  -- Assign rather than call vim.lsp.config(): calling merges, and a new setup() must replace the
  -- old one (e.g. filetypes = nil, "any file", must not keep an earlier list).
  vim.lsp.config[M.name] = cfg
  vim.lsp.enable(M.name)
  for _, client in ipairs(vim.lsp.get_clients({ name = M.name })) do
    client.settings = cfg.settings
    client:notify('workspace/didChangeConfiguration', { settings = cfg.settings })
  end
  if not did_setup then
    create_commands()
    M.define_highlights()
    -- :colorscheme clears every highlight group first: define ours again after it.
    api.nvim_create_autocmd('ColorScheme', {
      group = api.nvim_create_augroup('tactful.highlights', { clear = true }),
      callback = M.define_highlights,
    })
    did_setup = true
  end
end

return M
