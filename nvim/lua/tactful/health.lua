-- :checkhealth tactful -- whether this Neovim can show tactful's suggestions, whether the server
-- starts, and whether its model is ready. Starts a temporary server (not attached to any
-- buffer) when none is running, and stops it again afterwards.

local M = {}

local function server_status(client, timeout_ms)
  local protocol = require('tactful.protocol')
  local tactful = require('tactful')
  local st
  local deadline = vim.uv.now() + timeout_ms
  repeat
    local res = client:request_sync('workspace/executeCommand', { command = protocol.CMD_STATUS, arguments = {} }, 5000)
    if res and res.err then
      return nil, res.err.message or vim.inspect(res.err)
    end
    st = (res and res.result) or tactful.status[client.id]
    if st and st.state ~= 'loading' and st.state ~= 'idle' then
      return st
    end
    vim.wait(250)
  until vim.uv.now() >= deadline
  return st, nil
end

function M.check()
  local health = vim.health
  local tactful = require('tactful')
  local protocol = require('tactful.protocol')

  health.start('tactful: Neovim')
  local v = vim.version()
  if not vim.lsp.config then
    health.error(('Neovim %s is too old: tactful needs 0.11 or newer'):format(tostring(v)))
    return
  end
  if tactful.has_inline() then
    health.ok(('Neovim %s: ghost-text inline completion (vim.lsp.inline_completion)'):format(tostring(v)))
  else
    health.warn(
      ('Neovim %s has no inline completion: suggestions come as list completion (vim.lsp.completion)'):format(tostring(v)),
      { 'Neovim 0.12 or newer shows suggestions as ghost text' }
    )
  end
  if not vim.lsp.is_enabled or not vim.lsp.is_enabled(tactful.name) then
    health.warn("require('tactful').setup() has not been called: the server is not enabled")
  end

  health.start('tactful: server')
  local cfg = tactful.lsp_config()
  local exe = cfg.cmd[1]
  if vim.fn.executable(exe) ~= 1 then
    health.error(('server command not found: %s'):format(exe), {
      'install tactful (pip install tactful) or pass the full path: setup({ cmd = { "/path/to/tactful", "serve" } })',
    })
    return
  end
  health.ok('server command: ' .. table.concat(cfg.cmd, ' '))

  local client = tactful.client()
  local temporary = false
  if client then
    health.ok(('server running (client id %d)'):format(client.id))
  else
    local id = vim.lsp.start(cfg, { attach = false })
    client = id and vim.lsp.get_client_by_id(id)
    temporary = true
    local started = client
      and vim.wait(30000, function()
        return client.initialized or client:is_stopped()
      end, 50)
    if not started or not client or not client.initialized then
      health.error('the server did not start: ' .. table.concat(cfg.cmd, ' '), {
        'run the command in a terminal to see its error',
        'see :LspLog',
      })
      if client then
        client:stop(true)
      end
      return
    end
    local info = client.server_info or {}
    health.ok(('server starts: %s %s'):format(info.name or 'tactful', info.version or ''))
  end

  local st, err = server_status(client, tactful.options.health_timeout_ms or 60000)
  if err then
    health.error('status request failed: ' .. err)
  elseif not st then
    health.warn('the server sent no status')
  elseif st.state == 'ready' or st.state == 'disabled' then
    health.ok('model ready: ' .. tactful.format_status(st))
    if st.enabled == false then
      health.warn('completions are turned off (:TactfulToggle on)')
    end
  elseif st.state == 'loading' or st.state == 'idle' then
    health.warn('model still loading: ' .. tactful.format_status(st), { 'run :checkhealth tactful again in a moment' })
  else
    health.error('model not ready: ' .. tactful.format_status(st), { 'see the message above and :LspLog' })
  end

  local res = client:request_sync('workspace/executeCommand', { command = protocol.CMD_LOG_LOCATION, arguments = {} }, 5000)
  local loc = res and res.result
  if type(loc) == 'table' then
    if loc.enabled == false or not loc.path then
      health.info('feedback log: off')
    else
      health.info('feedback log: ' .. loc.path)
    end
  end

  if temporary then
    client:stop()
  end
end

return M
