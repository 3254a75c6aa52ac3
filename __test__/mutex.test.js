'use strict';
// Mutual exclusion across processes: each child increments a Redis counter non-atomically
// (GET, sleep, SET) under the lock; no increment may be lost.
const { describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startRedis } = require('./helpers/redis');
const { it, uniqueNs, forkFixture, within, loadLock } = require('./helpers/common');

let server;
const children = [];

before(async () => {
  loadLock(); // fail early, in this process, if the addon cannot be loaded
  server = await startRedis();
});

after(async () => {
  await Promise.allSettled(children.map((c) => c.ensureDead()));
  if (server) await server.cleanup();
});

describe('mutual exclusion', () => {
  it('4 processes × 25 non-atomic increments under the lock = 100', async () => {
    const ns = uniqueNs('mutex');
    const counterKey = `${ns}-counter`;
    const PROCS = 4;
    const ITER = 25;
    for (let i = 0; i < PROCS; i++) {
      children.push(forkFixture('counter', { url: server.url, namespace: ns, id: 'critical', iterations: ITER, counterKey }));
    }
    const results = await within(
      Promise.all(children.map((c) => c.waitFor((m) => m.type === 'done' || m.type === 'error', 90000))),
      95000,
      'all counter children',
    );
    for (const r of results) assert.equal(r.type, 'done', JSON.stringify(r));
    assert.equal(await server.command('GET', counterKey), String(PROCS * ITER));
    for (const r of results) assert.deepEqual(r.conflicts, [], 'every release found its own lock');
    const all = results.flatMap((r) => r.indexes);
    assert.equal(new Set(all).size, all.length, 'fencing indexes are unique');
    const exits = await within(Promise.all(children.map((c) => c.exit)), 15000, 'children exit');
    for (const e of exits) assert.deepEqual(e, { code: 0, signal: null });
    assert.deepEqual(await server.keys(`${ns}:*`), [], 'no lock left behind');
  });
});
