/** Unit tests of listPolicy.ts: when list items are offered, and which ones are dropped. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { listMode, offerListItems, repeatsTyped } from '../listPolicy';

test('auto offers list items only without inline suggestions', () => {
  assert.equal(offerListItems('auto', true), false);
  assert.equal(offerListItems('auto', false), true);
  assert.equal(offerListItems('always', true), true);
  assert.equal(offerListItems('off', false), false);
});

test('unknown setting values fall back to auto', () => {
  assert.equal(listMode('always'), 'always');
  assert.equal(listMode('off'), 'off');
  assert.equal(listMode(undefined), 'auto');
  assert.equal(listMode(true), 'auto');
  assert.equal(listMode('ALWAYS'), 'auto');
});

test('items that only repeat the typed word (or are empty) are dropped', () => {
  assert.equal(repeatsTyped('total', 'total'), true);
  assert.equal(repeatsTyped('total  ', 'total'), true);
  assert.equal(repeatsTyped('', 'x'), true);
  assert.equal(repeatsTyped('\n', ''), true);
  assert.equal(repeatsTyped('total_sum(values)', 'total'), false);
  assert.equal(repeatsTyped('return a + b', ''), false);
});
