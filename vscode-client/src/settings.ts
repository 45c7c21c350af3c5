/**
 * The server's settings as VS Code holds them (flat `tactful.completion.maxNewTokens` keys
 * contributed in package.json) turned into the nested camelCase object the server takes in
 * initializationOptions and workspace/didChangeConfiguration. Plain functions, no `vscode` import.
 */

/** Settings of the extension itself, never sent to the server. */
export const CLIENT_ONLY_PREFIXES = ['server.', 'trace.', 'listCompletions'];

/** Server setting names (`completion.maxNewTokens`) from package.json's contributed properties. */
export function serverSettingKeys(contributedProperties: Record<string, unknown>): string[] {
  return Object.keys(contributedProperties)
    .filter((k) => k.startsWith('tactful.'))
    .map((k) => k.slice('tactful.'.length))
    .filter((k) => !CLIENT_ONLY_PREFIXES.some((p) => k.startsWith(p)));
}

/** `{"completion": {"maxNewTokens": 48}, ...}` from keys and a getter of their current values. */
export function nestSettings(keys: string[], get: (key: string) => unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const value = get(key);
    if (value === undefined) continue;
    const parts = key.split('.');
    let node = out;
    for (const part of parts.slice(0, -1)) {
      const next = node[part];
      if (typeof next !== 'object' || next === null) node[part] = {};
      node = node[part] as Record<string, unknown>;
    }
    node[parts[parts.length - 1]] = value;
  }
  return out;
}
