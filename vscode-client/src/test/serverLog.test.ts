/** Unit tests of serverLog.ts: the server's stderr lines keep their own levels. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { levelOf, levelsOf } from '../serverLog';

test('a log line is read at its own level', () => {
  assert.equal(levelOf('2026-12-07 10:40:37,941 WARNING tactful.flags: skipped a file'), 'warn');
  assert.equal(levelOf('2026-12-07 10:40:37,941 INFO pygls.server: Shutting down the server'), 'info');
  assert.equal(levelOf('2026-12-07 10:40:37,941 DEBUG pygls.protocol: Cancel notification'), 'debug');
  assert.equal(levelOf('2026-12-07 10:40:37,941 ERROR tactful.backend.runner: model load failed'), 'error');
  assert.equal(levelOf('2026-12-07 10:40:37,941 CRITICAL tactful: out of memory'), 'error');
  assert.equal(levelOf('Traceback (most recent call last):'), undefined);
  assert.equal(levelOf('a WARNING in the middle of a line'), undefined);
});

test('a traceback keeps the level of the line that began it', () => {
  assert.deepEqual(
    levelsOf([
      'Python startup noise',
      '2026-12-07 10:40:37,941 INFO tactful: ready',
      '2026-12-07 10:40:38,000 ERROR tactful.lsp: handler failed',
      'Traceback (most recent call last):',
      '  File "x.py", line 1',
      '2026-12-07 10:40:39,000 WARNING tactful: slow',
    ]),
    ['error', 'info', 'error', 'error', 'error', 'warn'],
  );
});
