/** Unit tests of status.ts: the status bar's text for each server state. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import type { Status } from '../protocol';
import { formatRate, guardLine, shortModelName, shortRate, statusView } from '../status';

const base: Status = { state: 'ready', model: '/home/u/.cache/tactful/models/smollm2-135m-instruct-bf16', message: '', enabled: true, shown: 0, accepted: 0, acceptanceRate: null };

test('model names are shortened to the last path component', () => {
  assert.equal(shortModelName('/a/b/smollm2-135m-instruct-bf16/'), 'smollm2-135m-instruct-bf16');
  assert.equal(shortModelName('HuggingFaceTB/SmolLM2-360M'), 'SmolLM2-360M');
});

test('loading, ready, off and failed states read differently', () => {
  assert.match(statusView('running', { ...base, state: 'loading' }).text, /loading smollm2/);
  assert.match(statusView('running', { ...base, state: 'loading' }, '50%').text, /loading smollm2-135m-instruct-bf16 50%$/);
  assert.doesNotMatch(statusView('running', base, '50%').text, /50%/, 'progress only while loading');
  assert.equal(statusView('running', base).text, '$(sparkle) tactful: smollm2-135m-instruct-bf16');
  assert.match(statusView('running', { ...base, enabled: false }).text, /tactful: off/);
  const failed = statusView('running', { ...base, state: 'failed', message: 'out of memory' });
  assert.equal(failed.severity, 'error');
  assert.match(failed.tooltip, /out of memory/);
  assert.equal(statusView('startFailed', undefined).severity, 'error');
  assert.match(statusView('starting', undefined).text, /starting/);
  assert.match(statusView('running', { ...base, state: 'idle', model: '' }).text, /tactful: starting$/);
});

test('the acceptance rate of the session is shown with its counts once something was shown', () => {
  const v = statusView('running', { ...base, shown: 8, accepted: 3, acceptanceRate: 0.375 });
  assert.match(v.text, / 38% \(3\/8\)$/);
  assert.match(v.tooltip, /38% accepted \(3\/8\)/);
  assert.equal(formatRate(base), 'no suggestions shown yet');
  assert.equal(shortRate({ shown: 33, accepted: 4, acceptanceRate: 4 / 33 }), '12% (4/33)');
  // What the payload gives: no counts, no counts shown; no rate, nothing.
  assert.equal(shortRate({ acceptanceRate: 0.5 } as unknown as Status), '50%');
  assert.equal(shortRate({ shown: 3, accepted: 0, acceptanceRate: null }), undefined);
});

test('the show/hide guard is in the tooltip, in words, with its record', () => {
  const ready: Status = { ...base, shown: 4, accepted: 1, acceptanceRate: 0.25 };
  assert.equal(guardLine({ cascadeGuard: null }), undefined);
  const hiding = { state: 'hiding', target: 0.95, accuracyWhenHiding: 0.9, lowerBound: 0.7, evidence: 20, correct: 18 } as const;
  assert.equal(
    guardLine({ cascadeGuard: hiding }),
    'Show/hide filter: hiding suggestions it expects you to reject; right 18 of 20 times it hid (90%, target 95%)',
  );
  const off = { ...hiding, state: 'off', accuracyWhenHiding: null, evidence: 0, correct: 0 } as const;
  assert.match(guardLine({ cascadeGuard: off }) ?? '', /backed off: hiding nothing.*no evidence on you yet \(target 95%\)/);
  assert.match(statusView('running', { ...ready, cascadeGuard: hiding }).tooltip, /Show\/hide filter: hiding/);
  assert.doesNotMatch(statusView('running', ready).tooltip, /Show\/hide filter/);
});
