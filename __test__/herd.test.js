'use strict';
// Thundering herd bound: a release should wake about one waiter, not all of them.
// redfour@1.0.5 re-runs the acquire script in every waiter on every release (≈ N/2 per
// critical section); we count EVAL/EVALSHA calls with INFO commandstats.
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { it, uniqueNs, sleep, within, useRedis } = require('./helpers/common');

let server;
let Lock;
const { locks } = useRedis({
  ready: (s, L) => {
    server = s;
    Lock = L;
  },
});

describe('herd', () => {
  it('50 waiters, 10 hand-offs: about 2 script calls per release (the release, the woken head acquiring), far below N/2 per release', async () => {
    const ns = uniqueNs('herd');
    const holderLock = new Lock({ redis: server.url, namespace: ns });
    const waiterLocks = [new Lock({ redis: server.url, namespace: ns }), new Lock({ redis: server.url, namespace: ns })];
    locks.push(holderLock, ...waiterLocks);
    // Warm up connections and script caches outside the measured window.
    const warm = await holderLock.acquireLock('warm', 1000);
    await holderLock.releaseLock(warm);
    for (const l of waiterLocks) await l.releaseLock(await l.acquireLock('warm', 1000));

    const N = 50;
    const HANDOFFS = 10;
    const held = await holderLock.acquireLock('herd', 60000);
    assert.equal(held.success, true);
    await sleep(100);
    await server.resetStats();

    let grants = 0;
    let allGranted;
    const tenth = new Promise((resolve) => {
      allGranted = resolve;
    });
    const waits = [];
    for (let i = 0; i < N; i++) {
      const lock = waiterLocks[i % waiterLocks.length];
      waits.push(
        lock.waitAcquireLock('herd', 60000, 0).then(
          async (r) => {
            assert.equal(r.success, true);
            grants += 1;
            if (grants < HANDOFFS) {
              await sleep(2);
              const rel = await lock.releaseLock(r);
              assert.equal(rel.result, 'released');
            } else if (grants === HANDOFFS) {
              allGranted();
            }
            return r;
          },
          (err) => {
            if (err.code !== 'ERR_CLOSED') throw err;
            return null;
          },
        ),
      );
    }
    await sleep(500); // every waiter has made its first attempt and is parked
    await holderLock.releaseLock(held);
    await within(tenth, 20000, `${HANDOFFS} hand-offs`);
    await sleep(500); // let any straggling wake-ups run before counting
    const calls = await server.scriptCalls();
    const stats = await server.commandStats();

    const releases = HANDOFFS; // the holder's + 9 waiters'
    // Only the process's queue head talks to Redis: each release (1 script) woke the head alone,
    // whose acquire (1 script) took the lock; the next head waits for the next release.
    const bound = 2 * releases + 5;
    const redfourLike = N + releases * (N / 2);
    // Sanity: every grant and every release runs a script (waiters' first attempts may be
    // coalesced per key, so they are not part of the lower bound).
    assert.ok(calls >= 2 * releases, `only ${calls} script calls counted; stats ${JSON.stringify(stats)} (does the core use scripts?)`);
    assert.ok(
      calls <= bound,
      `${calls} EVAL/EVALSHA calls for ${N} waiters and ${releases} releases; bound ${bound} (redfour-like herd ≈ ${redfourLike}); stats ${JSON.stringify(stats)}`,
    );
    assert.equal(grants, HANDOFFS, 'exactly one grant per release');

    // Tear down: the 40 remaining waiters reject with ERR_CLOSED.
    await Promise.all(waiterLocks.map((l) => l.close()));
    const outcomes = await within(Promise.all(waits), 10000, 'remaining waiters after close');
    assert.equal(outcomes.filter(Boolean).length, HANDOFFS);
  });
});
