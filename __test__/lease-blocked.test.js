'use strict';
// Leases are renewed from Rust timers: a lock taken with using()/acquire() stays ours across many
// TTLs while the JavaScript event loop is blocked in bursts longer than the TTL itself.
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { uniqueNs, forkFixture, sleep, useRedis } = require('./helpers/common');

let server;
let Lock;
const children = [];
const { locks } = useRedis({
  cleanup: async () => {
    await Promise.allSettled(children.map((c) => c.ensureDead()));
  },
  ready: (s, L) => {
    server = s;
    Lock = L;
  },
});

function busy(ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // the event loop is blocked: no JavaScript timer can renew anything now
  }
}

describe('renewal while the event loop is blocked', () => {
  it('using() with a 300 ms TTL keeps the lock for 5x its TTL of 400 ms busy-loop bursts', async () => {
    const ns = uniqueNs('blocked');
    const ttl = 300;
    const lock = new Lock({ redis: server.url, namespace: ns });
    locks.push(lock);
    const thief = forkFixture('lease-thief', { url: server.url, namespace: ns, id: 'job', durationMs: 3500, everyMs: 20 });
    children.push(thief);
    await thief.waitFor((m) => m.type === 'ready', 10000);

    let held;
    let releasedAt;
    const startedAt = Date.now();
    const result = await lock.using('job', ttl, async (signal, h) => {
      held = h;
      for (let burst = 0; burst < 5; burst++) {
        busy(400); // longer than the whole TTL
        await sleep(5);
        assert.equal(signal.aborted, false, `signal aborted after burst ${burst}: ${signal.reason && signal.reason.message}`);
        assert.equal(await server.command('HGET', `${ns}:job`, 'index'), String(h.index), `lock lost after burst ${burst}`);
      }
      assert.ok(Date.now() - startedAt >= 5 * ttl);
      assert.ok(h.remainingMs > 0);
      return 'kept';
    });
    releasedAt = Date.now();
    assert.equal(result, 'kept');
    assert.equal(held.signal.aborted, false);
    assert.equal(await server.command('EXISTS', `${ns}:job`), 0, 'released at the end');

    const report = await thief.waitFor((m) => m.type === 'result' || m.type === 'error', 10000);
    assert.equal(report.type, 'result', JSON.stringify(report));
    // A grant with a higher index than ours, seen before we released, would be a second holder.
    const during = report.successes.filter((s) => s.index > held.index && s.at < releasedAt);
    assert.deepEqual(during, [], 'another process took the lock while it was held');
    assert.ok(report.attempts > 20, `the thief only tried ${report.attempts} times`);
    // And the thief was able to take it, once it was released: the check above is not vacuous.
    assert.ok(
      report.successes.some((s) => s.index > held.index),
      'the thief never got the lock, even after the release',
    );
  });

  it('acquire() keeps a 250 ms lease alive through 1.5 s of blocking, and release() says released', async () => {
    const ns = uniqueNs('acquire');
    const lock = new Lock({ redis: server.url, namespace: ns });
    locks.push(lock);
    const held = await lock.acquire('a', 250);
    for (let i = 0; i < 3; i++) {
      busy(500);
      await sleep(5);
    }
    assert.equal(held.signal.aborted, false);
    const released = await held.release();
    assert.equal(released.result, 'released');
  });
});
