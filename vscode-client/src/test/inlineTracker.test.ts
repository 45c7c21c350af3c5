/** Unit tests of inlineTracker.ts: shown / partially accepted / dismissed bookkeeping. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { CMD_ACCEPT, type LspInlineItem } from '../protocol';
import { InlineTracker, suggestionIdOf } from '../inlineTracker';

const item = (id: string, text = 'return a + b'): LspInlineItem => ({
  insertText: text,
  range: { start: { line: 1, character: 4 }, end: { line: 1, character: 4 } },
  command: { title: 'Accept suggestion', command: CMD_ACCEPT, arguments: [id] },
});

test('suggestion ids come from the accept command only', () => {
  assert.equal(suggestionIdOf(item('s1')), 's1');
  assert.equal(suggestionIdOf({ insertText: 'x' }), undefined);
  assert.equal(suggestionIdOf({ insertText: 'x', command: { title: 't', command: 'other', arguments: ['s1'] } }), undefined);
});

test('an item is reported shown once per suggestion id', () => {
  const t = new InlineTracker(2);
  const a = t.provided('file:///a.py', item('s1'), 19);
  assert.equal(t.markShown(a), true);
  assert.equal(t.markShown(t.provided('file:///a.py', item('s1'), 20)), false);
  assert.equal(t.markShown(t.provided('file:///a.py', item('s2'), 20)), true);
  assert.equal(t.markShown(t.provided('file:///a.py', item('s3'), 20)), true);
  // only the last 2 ids are remembered
  assert.equal(t.markShown(t.provided('file:///a.py', item('s1'), 20)), true);
  assert.equal(t.markShown(t.provided('file:///a.py', { insertText: 'no id' }, 20)), false);
});

test('partial accepts report the growing accepted length, then forget a finished item', () => {
  const t = new InlineTracker();
  t.provided('file:///a.py', item('s1', 'return a + b'), 100);
  assert.equal(t.partiallyAccepted('file:///b.py', 107), undefined);
  assert.deepEqual(t.partiallyAccepted('file:///a.py', 107)?.acceptedLength, 7);
  assert.equal(t.partiallyAccepted('file:///a.py', 107), undefined, 'no growth, no report');
  assert.equal(t.partiallyAccepted('file:///a.py', 109)?.acceptedLength, 9);
  assert.equal(t.partiallyAccepted('file:///a.py', 150)?.acceptedLength, 12, 'clamped to the item');
  assert.equal(t.active, undefined);
});

test('the same suggestion at the same place keeps its accepted length; moved on, it counts anew', () => {
  const t = new InlineTracker();
  t.provided('file:///a.py', item('s1'), 100);
  t.partiallyAccepted('file:///a.py', 107);
  assert.equal(t.provided('file:///a.py', item('s1'), 100).acceptedLength, 7);
  // type-along: the server now sends the rest of s1 from the cursor
  const rest = t.provided('file:///a.py', item('s1', 'a + b'), 107);
  assert.equal(rest.acceptedLength, 0);
  assert.equal(t.partiallyAccepted('file:///a.py', 109)?.acceptedLength, 2);
  assert.equal(t.provided('file:///a.py', item('s2'), 109).acceptedLength, 0);
});

test('dismiss returns the id once; clear forgets by document', () => {
  const t = new InlineTracker();
  t.provided('file:///a.py', item('s1'), 0);
  assert.equal(t.dismissed('file:///b.py'), undefined);
  assert.equal(t.dismissed('file:///a.py'), 's1');
  assert.equal(t.dismissed('file:///a.py'), undefined);
  t.provided('file:///a.py', item('s2'), 0);
  t.clear('file:///b.py');
  assert.notEqual(t.active, undefined);
  t.clear('file:///a.py');
  assert.equal(t.active, undefined);
});

test('an accepted item not yet reported shown is found by its id, even when no longer active', () => {
  const t = new InlineTracker(500, 2);
  const a = t.provided('file:///a.py', item('s1'), 10);
  t.provided('file:///a.py', item('s2'), 10); // a later request at the same place
  assert.equal(t.active?.suggestionId, 's2');
  assert.equal(t.acceptedUnreported(['s1']), a, 'VS Code still showed s1 and Tab accepted it');
  assert.equal(t.acceptedUnreported(['s1']), undefined, 'reported once');
  assert.equal(t.markShown(t.provided('file:///a.py', item('s2'), 10)), true);
  assert.equal(t.acceptedUnreported(['s2']), undefined, 'already reported by the timer');
  assert.equal(t.acceptedUnreported([]), undefined);
  assert.equal(t.acceptedUnreported([{ id: 's2' }]), undefined);
  assert.equal(t.acceptedUnreported(['never-provided']), undefined);
  t.provided('file:///a.py', item('s3'), 10);
  t.provided('file:///a.py', item('s4'), 10);
  assert.equal(t.acceptedUnreported(['s3'])?.suggestionId, 's3');
  t.provided('file:///a.py', item('s5'), 10);
  t.provided('file:///a.py', item('s6'), 10);
  assert.equal(t.acceptedUnreported(['s4']), undefined, 'only the last 2 provided are remembered');
});
