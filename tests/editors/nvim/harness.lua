-- Shared helpers for the headless Neovim scenarios run by tests/editors/test_neovim.py.
--
-- A scenario is a function run as a coroutine: `H.sleep` / `H.wait_until` give control back to
-- Neovim's main loop, so typed keys, insert mode, autocmds and LSP messages are all processed.
-- Checks are collected and written as JSON to $TACTFUL_RESULT; Neovim then exits 0 (all passed)
-- or 1. A watchdog ends a hung scenario.

local api = vim.api
local H = {}

local t0 = vim.uv.hrtime()
local result = { nvim = tostring(vim.version()), checks = {}, info = {} }
local failures = 0
local finished = false
local co

function H.ms()
  return math.floor((vim.uv.hrtime() - t0) / 1e6)
end

--- Record a check; `detail` is kept for the failure message.
function H.check(name, ok, detail)
  result.checks[#result.checks + 1] = { name = name, ok = ok and true or false, t_ms = H.ms(), detail = detail }
  if not ok then
    failures = failures + 1
  end
  return ok
end

--- Keep a measured value or observation in the result file.
function H.info(key, value)
  result.info[key] = value
end

--- Write the result file now (atomically: the test may be polling for it).
function H.write_result()
  result.total_ms = H.ms()
  local path = assert(os.getenv('TACTFUL_RESULT'), 'TACTFUL_RESULT not set')
  local f = assert(io.open(path .. '.tmp', 'w'))
  f:write(vim.json.encode(result))
  f:close()
  assert(os.rename(path .. '.tmp', path))
end

function H.finish()
  if finished then
    return
  end
  finished = true
  H.write_result()
  vim.cmd(failures == 0 and 'qa!' or 'cquit 1')
end

function H.sleep(msec)
  vim.defer_fn(function()
    local ok, err = coroutine.resume(co)
    if not ok then
      H.check('lua-error', false, debug.traceback(co, err))
      H.finish()
    end
  end, msec)
  coroutine.yield()
end

--- Poll `pred` until it returns a truthy value (returned) or `timeout` ms pass (nil).
function H.wait_until(pred, timeout, step)
  local deadline = H.ms() + (timeout or 5000)
  while H.ms() < deadline do
    local ok, v = pcall(pred)
    if ok and v then
      return v
    end
    H.sleep(step or 25)
  end
  return nil
end

--- Type keys as the user would (mappings apply).
function H.feed(keys)
  api.nvim_feedkeys(api.nvim_replace_termcodes(keys, true, false, true), 'mt', false)
end

--- The tactful client once it is initialized, checked as 'client-initialized' (nil when it is
--- not within `timeout` ms: the scenario should stop).
function H.client(timeout)
  local client = H.wait_until(function()
    local c = require('tactful').client()
    return c and c.initialized and c
  end, timeout or 60000)
  H.check('client-initialized', client ~= nil)
  return client
end

--- Row (1-based) of the first line of `buf` from row `from` on that contains `text`, or nil.
function H.row_of(buf, text, from)
  for i, line in ipairs(api.nvim_buf_get_lines(buf, 0, -1, false)) do
    if i >= (from or 1) and line:find(text, 1, true) then
      return i
    end
  end
end

--- Messages shown with vim.notify, in order (the plugin's command results land here).
H.notes = {}
local orig_notify = vim.notify
vim.notify = function(msg, level, opts)
  H.notes[#H.notes + 1] = msg
  return orig_notify(msg, level, opts)
end

--- Wait for a vim.notify message containing `needle`; returns it.
function H.wait_note(needle, timeout)
  return H.wait_until(function()
    for _, m in ipairs(H.notes) do
      if m:find(needle, 1, true) then
        return m
      end
    end
  end, timeout or 5000)
end

--- Record every workspace/executeCommand the client sends (into the result's info.commands).
function H.record_commands(client)
  local sent = {}
  H.info('commands', sent)
  local orig = client.exec_cmd
  client.exec_cmd = function(self, command, ctx, handler)
    sent[#sent + 1] = { command = command.command, arguments = command.arguments or {} }
    return orig(self, command, ctx, handler)
  end
  return sent
end

--- Wait for the server's model (tactful/status notification) to be ready, failed or disabled;
--- checked as 'model-ready', the time kept as info.ready_ms. Returns whether it is ready (if
--- not, the scenario should stop).
function H.model_ready(client, timeout)
  local st = H.wait_until(function()
    local s = require('tactful').status[client.id]
    return s and (s.state == 'ready' or s.state == 'failed' or s.state == 'disabled') and s
  end, timeout or 120000, 100)
  H.info('ready_ms', H.ms())
  return H.check('model-ready', st and st.state == 'ready', st)
end

--- The usual start of a scenario: the tactful client, initialized (60 s at most) and its model
--- ready (240 s at most), with the checks and info of H.client and H.model_ready.
--- `with_client(client)`, if given, runs once the client is initialized, before the wait for the
--- model. Returns the client, or nil when a check failed (the scenario should stop).
function H.ready_client(with_client)
  local client = H.client(60000)
  if not client then
    return nil
  end
  if with_client then
    with_client(client)
  end
  if not H.model_ready(client, 240000) then
    return nil
  end
  return client
end

--- Run a tactful server command synchronously (from inside the coroutine).
function H.exec(client, command, arguments, timeout)
  local done, res, err = false, nil, nil
  client:exec_cmd({ title = command, command = command, arguments = arguments or {} }, { bufnr = 0 }, function(e, r)
    done, err, res = true, e, r
  end)
  H.wait_until(function()
    return done
  end, timeout or 10000)
  return res, err
end

--- Ghost text currently drawn by vim.lsp.inline_completion in `buf` (nil when none).
function H.ghost(buf)
  local ns = api.nvim_create_namespace('nvim.lsp.inline_completion')
  local marks = api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true })
  if #marks == 0 then
    return nil
  end
  local d = marks[1][4]
  local parts = {}
  for _, chunk in ipairs(d.virt_text or {}) do
    parts[#parts + 1] = chunk[1]
  end
  local text = table.concat(parts)
  for _, line in ipairs(d.virt_lines or {}) do
    local lp = {}
    for _, chunk in ipairs(line) do
      lp[#lp + 1] = chunk[1]
    end
    text = text .. '\n' .. table.concat(lp)
  end
  return text
end

--- Start `scenario` (a function) as the coroutine, with a watchdog of `timeout_ms`.
function H.run(scenario, timeout_ms, keep_open)
  vim.defer_fn(function()
    H.check('watchdog', false, ('scenario still running after %d ms'):format(timeout_ms))
    H.finish()
  end, timeout_ms)
  co = coroutine.create(function()
    scenario()
    if keep_open then
      H.write_result() -- the test drives the editor from here on
    else
      H.finish()
    end
  end)
  vim.schedule(function()
    local ok, err = coroutine.resume(co)
    if not ok then
      H.check('lua-error', false, debug.traceback(co, err))
      H.finish()
    end
  end)
end

return H
