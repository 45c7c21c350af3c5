/** Unit tests of serverCommand.ts: resolving `tactful serve` and explaining start failures. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { diagnoseStderr, resolveServer, startFailureMessage, TailBuffer, which } from '../serverCommand';

function tempBin(names: string[], mode = 0o755): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tactful-bin-'));
  for (const n of names) {
    fs.writeFileSync(path.join(dir, n), '#!/bin/sh\n');
    fs.chmodSync(path.join(dir, n), mode);
  }
  return dir;
}

test('which finds an executable on PATH and skips non-executables', () => {
  const a = tempBin(['tactful'], 0o644);
  const b = tempBin(['tactful']);
  assert.equal(which('tactful', [a, b].join(path.delimiter)), path.join(b, 'tactful'));
  assert.equal(which('tactful', a), undefined);
  assert.equal(which('tactful', undefined), undefined);
});

test('resolveServer runs `tactful serve` from PATH with extra args', () => {
  const dir = tempBin(['tactful']);
  const r = resolveServer({ command: 'tactful', pythonPath: '', extraArgs: ['--log-level', 'debug'] }, dir);
  assert.ok(r.ok);
  assert.equal(r.launch.command, path.join(dir, 'tactful'));
  assert.deepEqual(r.launch.args, ['serve', '--log-level', 'debug']);
  assert.match(r.launch.origin, /tactful\.server\.command/);
});

test('resolveServer prefers pythonPath and runs the CLI module', () => {
  const dir = tempBin(['python3']);
  const r = resolveServer({ command: 'tactful', pythonPath: path.join(dir, 'python3'), extraArgs: [] }, '');
  assert.ok(r.ok);
  assert.deepEqual(r.launch.args, ['-m', 'tactful.cli', 'serve']);
});

test('resolveServer explains a command missing from PATH and how to fix it', () => {
  const r = resolveServer({ command: 'tactful', pythonPath: '', extraArgs: [] }, tempBin([]));
  assert.ok(!r.ok);
  assert.match(r.problem, /"tactful".*was not found on PATH/);
  assert.match(r.fix, /pip install tactful/);
  assert.match(r.fix, /tactful\.server\.command/);
});

test('resolveServer explains a missing explicit path and a bad python', () => {
  const r = resolveServer({ command: '/nonexistent/tactful', pythonPath: '', extraArgs: [] }, '');
  assert.ok(!r.ok);
  assert.match(r.problem, /does not exist or is not executable/);
  const p = resolveServer({ command: 'tactful', pythonPath: '/nonexistent/python', extraArgs: [] }, '');
  assert.ok(!p.ok);
  assert.match(p.problem, /tactful\.server\.pythonPath/);
});

test('TailBuffer keeps the last characters and non-empty lines', () => {
  const t = new TailBuffer(30);
  t.push('first line\n');
  t.push('\nsecond\nthird line is long\n');
  assert.deepEqual(t.lines(2), ['second', 'third line is long']);
  assert.deepEqual(t.lines(5), ['ne', 'second', 'third line is long'], 'only the last 30 characters are kept');
});

test('start failures name the command, the stderr and a fix', () => {
  assert.match(diagnoseStderr(["/usr/bin/python3: No module named tactful"]) ?? '', /does not have tactful installed/);
  assert.match(diagnoseStderr(["tactful: unknown command 'serve'"]) ?? '', /not the tactful language server/);
  assert.equal(diagnoseStderr(['all good']), undefined);
  const msg = startFailureMessage(
    { command: '/usr/bin/python3', args: ['-m', 'tactful.cli', 'serve'], origin: 'tactful.server.pythonPath = "python3"' },
    'Connection closed',
    ['/usr/bin/python3: No module named tactful'],
  );
  assert.match(msg, /\/usr\/bin\/python3 -m tactful\.cli serve/);
  assert.match(msg, /Connection closed/);
  assert.match(msg, /No module named tactful/);
  assert.match(msg, /pip install tactful/);
});
