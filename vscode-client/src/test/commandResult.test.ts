/** Unit tests of commandResult.ts: failures reported inside command results. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { commandError } from '../commandResult';

test('results with an error or ok=false are failures', () => {
  assert.equal(commandError({ ok: false, error: 'line flags are off (tactful.flags.enable)' }), 'line flags are off (tactful.flags.enable)');
  assert.equal(commandError({ html: null, error: 'replay report failed: empty log' }), 'replay report failed: empty log');
  assert.match(commandError({ ok: false }) ?? '', /gave no reason/);
});

test('normal results, empty errors and non-objects are not failures', () => {
  assert.equal(commandError({ ok: true, flags: [] }), undefined);
  assert.equal(commandError({ enabled: false }), undefined);
  assert.equal(commandError({ html: '/tmp/r.html', error: '' }), undefined);
  assert.equal(commandError(null), undefined);
  assert.equal(commandError(undefined), undefined);
  assert.equal(commandError('done'), undefined);
});
