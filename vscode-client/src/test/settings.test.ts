/** Unit tests of settings.ts: flat VS Code settings to the server's nested payload. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { nestSettings, serverSettingKeys } from '../settings';

const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
const props: Record<string, { default?: unknown }> = pkg.contributes.configuration.properties;

test('client-only settings are not sent to the server', () => {
  const keys = serverSettingKeys(props);
  assert.ok(keys.includes('completion.maxNewTokens'));
  assert.ok(keys.includes('enable'));
  assert.ok(!keys.some((k) => k.startsWith('server.') || k.startsWith('trace.')));
});

test('nestSettings builds nested camelCase objects and keeps nulls', () => {
  const values: Record<string, unknown> = { enable: true, model: null, 'completion.maxNewTokens': 32, 'completion.cache': false, 'flags.severity': 'hint' };
  const out = nestSettings(Object.keys(values).concat(['absent']), (k) => values[k]);
  assert.deepEqual(out, { enable: true, model: null, completion: { maxNewTokens: 32, cache: false }, flags: { severity: 'hint' } });
});

test('the package.json defaults nest into a complete server payload', () => {
  const keys = serverSettingKeys(props);
  const out = nestSettings(keys, (k) => props[`tactful.${k}`].default) as Record<string, Record<string, unknown>>;
  assert.equal(out.completion.maxNewTokens, 48);
  assert.deepEqual(out.languages, { plaintext: false, markdown: false, log: false });
  assert.equal(out.feedback.logPath, null);
});
