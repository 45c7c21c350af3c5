/**
 * Contract tests of package.json for workspaces the user did not write (issue: a repository's
 * .vscode/settings.json must not choose what the extension runs).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { serverSettingKeys } from '../settings';

const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
const props: Record<string, { scope?: string }> = pkg.contributes.configuration.properties;

/** Settings that choose what runs: the program, its arguments, its environment. */
const EXECUTION = ['tactful.server.command', 'tactful.server.pythonPath', 'tactful.server.extraArgs', 'tactful.server.env'];
/** Settings that choose which model files are read or where tactful writes. */
const PATHS = ['tactful.model', 'tactful.cacheDir', 'tactful.dataDir', 'tactful.feedback.logPath', 'tactful.cdhf.modelDir'];

test('settings that choose what runs are machine-scoped (never from a workspace)', () => {
  for (const key of EXECUTION) assert.equal(props[key]?.scope, 'machine', key);
  // Every server.* setting, including ones added later.
  for (const key of Object.keys(props).filter((k) => k.startsWith('tactful.server.'))) assert.equal(props[key].scope, 'machine', key);
});

test('settings that choose paths cannot be set by an untrusted workspace', () => {
  for (const key of PATHS) assert.ok(['machine', 'machine-overridable'].includes(props[key]?.scope ?? ''), key);
});

test('the extension declares limited support for untrusted workspaces, listing its restricted settings', () => {
  const untrusted = pkg.capabilities?.untrustedWorkspaces;
  assert.equal(untrusted?.supported, 'limited');
  assert.ok(typeof untrusted.description === 'string' && untrusted.description.length > 20);
  const restricted: string[] = untrusted.restrictedConfigurations;
  for (const key of [...EXECUTION, ...PATHS]) assert.ok(restricted.includes(key), key);
  for (const key of restricted) assert.ok(key in props, `restricted ${key} is not a contributed setting`);
  // Anything scoped to the machine is listed.
  for (const [key, v] of Object.entries(props)) if (v.scope === 'machine' || v.scope === 'machine-overridable') assert.ok(restricted.includes(key), key);
});

test('tactful.listCompletions is the extension\'s own setting, not sent to the server', () => {
  assert.equal((props['tactful.listCompletions'] as { default?: unknown }).default, 'auto');
  assert.ok(!serverSettingKeys(props).includes('listCompletions'));
});
