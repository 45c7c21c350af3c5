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

test('type-along keeps the accepted length of the same suggestion', () => {
  const t = new InlineTracker();
  t.provided('file:///a.py', item('s1'), 100);
  t.partiallyAccepted('file:///a.py', 107);
  const again = t.provided('file:///a.py', item('s1'), 100);
  assert.equal(again.acceptedLength, 7);
  assert.equal(t.provided('file:///a.py', item('s2'), 100).acceptedLength, 0);
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
