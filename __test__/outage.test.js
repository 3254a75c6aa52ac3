'use strict';
// Redis going away: operations fail fast with ERR_REDIS, waiters never hang, and the Lock
// recovers once the server is back.
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { startRedis } = require('./helpers/redis');
const { it, uniqueNs, rejectsWithCode, within, sleep, settledWithin, useRedis } = require('./helpers/common');

let server;
let Lock;
const { newLock, locks } = useRedis({
  tag: 'out',
  lockOptions: { connectTimeout: 500, commandTimeout: 1000 },
  cleanup: async () => {
    if (server && !server.running) await server.start().catch(() => {});
  },
  ready: (s, L) => {
    server = s;
    Lock = L;
  },
});

/** Retries `fn` until it resolves (Lock reconnecting after an outage), up to `ms`. */
async function eventually(fn, ms = 10000) {
  const deadline = Date.now() + ms;
  let lastErr;
  while (Date.now() < deadline) {
    try {
      return await fn();
    } catch (err) {
      lastErr = err;
      await sleep(100);
    }
  }
  throw lastErr;
}

describe('Redis outage', () => {
  it('a server that is not there: acquireLock rejects promptly with ERR_REDIS', async () => {
    const ns = uniqueNs('nothere');
    const dead = await startRedis();
    const url = dead.url;
    await dead.cleanup(); // a port where nothing listens any more
    const lock = new Lock({ redis: url, namespace: ns, connectTimeout: 500 });
    locks.push(lock);
    const started = Date.now();
    await within(rejectsWithCode(lock.acquireLock('x', 1000), 'ERR_REDIS'), 8000, 'acquire against a dead port');
    assert.ok(Date.now() - started < 8000);
    // A bounded wait keeps trying through the outage until its waitTtl, then fails with the Redis error.
    await within(
      rejectsWithCode(lock.waitAcquireLock('x', 1000, 1500), 'ERR_REDIS'),
      10000,
      'waitAcquire (waitTtl 1500) against a dead port',
    );
    await within(rejectsWithCode(lock.releaseLock({ id: 'x', index: 1 }), 'ERR_REDIS'), 8000, 'release against a dead port');
    const cbErr = await within(
      new Promise((resolve) => lock.renewLock({ id: 'x', index: 1 }, 1000, (e) => resolve(e))),
      8000,
      'renew (callback)',
    );
    assert.equal(cbErr && cbErr.code, 'ERR_REDIS');
  });

  it(
    'a server that is not there: waitAcquireLock with waitTtl 0 still ends (ERR_REDIS) instead of waiting forever',
    { timeout: 90000 },
    async () => {
      // redfour gives up at the first Redis error; redfour-native retries an unbounded wait through
      // an outage for a while (30 s in src/core/lock.rs) so that a restart does not fail it.
      const dead = await startRedis();
      const url = dead.url;
      await dead.cleanup();
      const lock = new Lock({ redis: url, namespace: uniqueNs('nothere0'), connectTimeout: 500 });
      locks.push(lock);
      await within(rejectsWithCode(lock.waitAcquireLock('x', 1000, 0), 'ERR_REDIS'), 50000, 'waitAcquire (waitTtl 0) against a dead port');
    },
  );

  it('server killed while connected: calls reject with ERR_REDIS; after restart the same Lock works again', async () => {
    const ns = uniqueNs('killed');
    const lock = newLock(ns);
    const r = await lock.acquireLock('k', 5000);
    assert.equal(r.success, true);
    await server.kill();
    try {
      await within(rejectsWithCode(lock.acquireLock('k2', 1000), 'ERR_REDIS'), 8000, 'acquire while Redis is down');
      await within(rejectsWithCode(lock.releaseLock(r), 'ERR_REDIS'), 8000, 'release while Redis is down');
    } finally {
      await server.start();
    }
    const again = await eventually(() => lock.acquireLock('k3', 5000));
    assert.equal(again.success, true);
    // Keys were lost with the restart (no persistence): the counter starts over.
    assert.equal(await server.command('HGET', `${ns}:k3`, 'index'), String(again.index));
  });

  it('paused (frozen) server: a command times out with ERR_REDIS instead of hanging', async () => {
    const ns = uniqueNs('paused');
    const lock = newLock(ns, { commandTimeout: 500 });
    await lock.releaseLock(await lock.acquireLock('p', 1000));
    server.pause();
    let outcome;
    try {
      outcome = await settledWithin(lock.acquireLock('p', 1000), 8000);
    } finally {
      server.resume();
    }
    assert.equal(outcome.settled, true, 'acquire against a frozen server did not settle within 8 s (commandTimeout 500)');
    assert.ok(outcome.error, `expected a rejection, got ${JSON.stringify(outcome.value)}`);
    assert.equal(outcome.error.code, 'ERR_REDIS', outcome.error.message);
    const after = await eventually(() => lock.acquireLock('p2', 1000));
    assert.equal(after.success, true);
  });

  for (const waitTtl of [6000, 0]) {
    it(`waiter (waitTtl ${waitTtl}) while Redis restarts: gets the lock after restart or settles by its waitTtl, never hangs`, async () => {
      const ns = uniqueNs('restartwait');
      const holder = newLock(ns);
      const waiter = newLock(ns);
      const held = await holder.acquireLock('w', 3000);
      assert.equal(held.success, true);
      const started = Date.now();
      const pending = waiter.waitAcquireLock('w', 5000, waitTtl);
      await sleep(300);
      await server.kill();
      await sleep(700);
      await server.start();
      // waitTtl 6 s, or the holder's 3 s TTL: generous bound either way.
      const outcome = await settledWithin(pending, 20000);
      const elapsed = Date.now() - started;
      assert.equal(outcome.settled, true, `waiter hung: still pending after ${elapsed} ms`);
      if (outcome.error) {
        assert.equal(outcome.error.code, 'ERR_REDIS', outcome.error.message);
      } else if (outcome.value.success) {
        // It really holds the lock in the restarted server.
        assert.equal(await server.command('HGET', `${ns}:w`, 'index'), String(outcome.value.index));
        await waiter.releaseLock(outcome.value);
      } else {
        assert.ok(waitTtl > 0, 'waitTtl 0 must not give up with success:false');
        assert.ok(elapsed >= waitTtl - 100, `gave up after ${elapsed} ms, before waitTtl ${waitTtl}`);
      }
      // Whatever happened, the Lock is usable again.
      const again = await eventually(() => waiter.acquireLock(`after-${waitTtl}`, 1000));
      assert.equal(again.success, true);
    });
  }

  it('a waiter parked on pub/sub is still woken after the server restarted (resubscribe)', async () => {
    const ns = uniqueNs('resub');
    const holder = newLock(ns);
    const waiter = newLock(ns);
    // Make sure both have connected, then bounce the server.
    await holder.releaseLock(await holder.acquireLock('warm', 1000));
    await waiter.releaseLock(await waiter.acquireLock('warm', 1000));
    await server.restart({ hard: true });
    const held = await eventually(() => holder.acquireLock('r', 20000));
    assert.equal(held.success, true);
    const pending = waiter.waitAcquireLock('r', 5000, 0);
    await sleep(500);
    const releasedAt = Date.now();
    await eventually(() => holder.releaseLock(held));
    const got = await within(pending, 15000, 'waiter after release (TTL was 20 s)');
    assert.equal(got.success, true);
    assert.ok(Date.now() - releasedAt < 5000, `woken ${Date.now() - releasedAt} ms after the release; the subscription was not restored`);
  });
});
