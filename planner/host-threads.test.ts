import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostThreadsPerRank } from './host-threads.ts';

test('GPU ranks leave one core each to their kernel-launching thread; CPU ranks compute on all of their share', () => {
  assert.equal(hostThreadsPerRank(32, 2, true), 15);
  assert.equal(hostThreadsPerRank(32, 2, false), 16);
  assert.equal(hostThreadsPerRank(64, 4, true), 15);
  assert.equal(hostThreadsPerRank(2, 2, true), 1); // never below one
  assert.equal(hostThreadsPerRank(8, 0, false), 8);
});
