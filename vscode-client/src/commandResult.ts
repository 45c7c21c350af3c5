/**
 * Reading the results of the server's workspace/executeCommand commands. The server answers a
 * command that could not do its job with a normal result that carries `error` (and often
 * `ok: false`), e.g. `{"ok": false, "error": "line flags are off (tactful.flags.enable)"}`.
 * Plain function, no `vscode` import; unit-tested with node:test.
 */

/** The failure a command result reports, or undefined when it succeeded. */
export function commandError(result: unknown): string | undefined {
  if (typeof result !== 'object' || result === null) return undefined;
  const r = result as { error?: unknown; ok?: unknown };
  if (typeof r.error === 'string' && r.error.trim()) return r.error;
  if (r.ok === false) return 'the server could not do it (it gave no reason)';
  return undefined;
}
