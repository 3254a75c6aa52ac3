'use strict';
// Every method in both calling styles, with the exact result shapes of the redfour contract.
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { it, uniqueNs, viaCallback, sleep, useRedis } = require('./helpers/common');

let server;
const { newLock } = useRedis({
  tag: 'api',
  ready: (s) => {
    server = s;
  },
});

function isPositiveInt(n) {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0;
}

for (const style of ['promise', 'callback']) {
  // call(lock, 'acquireLock', id, ttl) in the chosen style
  const call = (lock, method, ...args) => {
    if (style === 'callback') return viaCallback(lock, method, ...args);
    const ret = lock[method](...args);
    assert.ok(ret instanceof Promise, `${method} without a callback must return a Promise`);
    return ret;
  };

  describe(`${style} style`, () => {
    it('acquireLock: success shape {id, success, index, ttl}', async () => {
      const lock = newLock();
      const r = await call(lock, 'acquireLock', 'a', 3000);
      assert.deepEqual(Object.keys(r).sort(), ['id', 'index', 'success', 'ttl']);
      assert.equal(r.id, 'a');
      assert.equal(r.success, true);
      assert.ok(isPositiveInt(r.index), `index ${r.index}`);
      assert.equal(r.ttl, 3000);
      const pttl = await server.command('PTTL', `${lock.namespace}:a`);
      assert.ok(pttl > 0 && pttl <= 3000, `PTTL ${pttl}`);
    });

    it('acquireLock: held by another → success:false, index:-1, ttl = holder PTTL', async () => {
      const ns = uniqueNs('held');
      const holder = newLock(ns);
      const other = newLock(ns);
      const held = await call(holder, 'acquireLock', 'x', 20000);
      assert.equal(held.success, true);
      const before = await server.command('PTTL', `${ns}:x`);
      const r = await call(other, 'acquireLock', 'x', 5000);
      const afterPttl = await server.command('PTTL', `${ns}:x`);
      assert.deepEqual(Object.keys(r).sort(), ['id', 'index', 'success', 'ttl']);
      assert.equal(r.id, 'x');
      assert.equal(r.success, false);
      assert.equal(r.index, -1);
      assert.equal(typeof r.ttl, 'number');
      // The holder's remaining TTL (20 s lease), not our requested 5 s.
      assert.ok(r.ttl <= before && r.ttl >= afterPttl, `ttl ${r.ttl} should be between ${afterPttl} and ${before}`);
      assert.ok(r.ttl > 5000, `ttl ${r.ttl} should be the holder's PTTL, not the requested TTL`);
      // The same Lock instance also sees its own lock as held.
      const again = await call(holder, 'acquireLock', 'x', 5000);
      assert.equal(again.success, false);
      assert.equal(again.index, -1);
    });

    it('acquireLock: numeric id is returned as given (not stringified)', async () => {
      const lock = newLock();
      const r = await call(lock, 'acquireLock', 42, 1000);
      assert.equal(r.id, 42);
      assert.equal(r.success, true);
      const rel = await call(lock, 'releaseLock', r);
      assert.equal(rel.id, 42);
      assert.equal(rel.result, 'released');
    });

    it('waitAcquireLock: immediate grant adds immediate:true', async () => {
      const lock = newLock();
      const r = await call(lock, 'waitAcquireLock', 'w', 2000, 1000);
      assert.deepEqual(Object.keys(r).sort(), ['id', 'immediate', 'index', 'success', 'ttl']);
      assert.equal(r.id, 'w');
      assert.equal(r.success, true);
      assert.equal(r.immediate, true);
      assert.ok(isPositiveInt(r.index));
      // what is left of the 2000 ms lease when the result arrives
      assert.ok(r.ttl <= 2000 && r.ttl > 1500, `ttl ${r.ttl}`);
    });

    it('waitAcquireLock: after a wait, immediate:false', async () => {
      const ns = uniqueNs('wait');
      const holder = newLock(ns);
      const waiter = newLock(ns);
      const held = await call(holder, 'acquireLock', 'w', 20000);
      const pending = call(waiter, 'waitAcquireLock', 'w', 3000, 15000);
      await sleep(200);
      const rel = await call(holder, 'releaseLock', held);
      assert.equal(rel.result, 'released');
      const r = await pending;
      assert.equal(r.success, true);
      assert.equal(r.immediate, false);
      assert.ok(r.ttl <= 3000 && r.ttl > 2500, `ttl ${r.ttl}: what is left of the lease`);
      assert.ok(r.index > held.index, `index ${r.index} must exceed ${held.index}`);
    });

    it('waitAcquireLock: waitTtl timeout resolves success:false (not an error)', async () => {
      const ns = uniqueNs('timeout');
      const holder = newLock(ns);
      const waiter = newLock(ns);
      await call(holder, 'acquireLock', 't', 30000);
      const started = Date.now();
      const r = await call(waiter, 'waitAcquireLock', 't', 1000, 300);
      const elapsed = Date.now() - started;
      assert.equal(r.success, false);
      assert.equal(r.index, -1);
      assert.equal(r.immediate, false);
      assert.equal(r.id, 't');
      assert.ok(r.ttl > 1000 && r.ttl <= 30000, `ttl ${r.ttl} should be the holder's PTTL`);
      assert.ok(elapsed >= 250, `gave up after ${elapsed} ms, before waitTtl 300`);
      assert.ok(elapsed < 10000, `gave up only after ${elapsed} ms`);
    });

    it('releaseLock: released', async () => {
      const lock = newLock();
      const held = await call(lock, 'acquireLock', 'r', 5000);
      const rel = await call(lock, 'releaseLock', held);
      assert.deepEqual(rel, { id: 'r', success: true, result: 'released', index: held.index });
      assert.equal(await server.command('EXISTS', `${lock.namespace}:r`), 0);
    });

    it('releaseLock: conflict (wrong index) leaves the lock alone', async () => {
      const lock = newLock();
      const held = await call(lock, 'acquireLock', 'c', 5000);
      const rel = await call(lock, 'releaseLock', { id: 'c', index: held.index + 1000 });
      assert.equal(rel.id, 'c');
      assert.equal(rel.success, false);
      assert.equal(rel.result, 'conflict');
      // redfour reports the index currently stored in Redis.
      assert.equal(rel.index, held.index);
      assert.equal(await server.command('HGET', `${lock.namespace}:c`, 'index'), String(held.index));
    });

    it('releaseLock: expired → success:true, index:"expired"', async () => {
      const lock = newLock();
      const held = await call(lock, 'acquireLock', 'e', 50);
      await sleep(150);
      const rel = await call(lock, 'releaseLock', held);
      assert.deepEqual(rel, { id: 'e', success: true, result: 'expired', index: 'expired' });
    });

    it('releaseLock: stale holder after expiry + re-grant gets conflict', async () => {
      const ns = uniqueNs('stale');
      const a = newLock(ns);
      const b = newLock(ns);
      const first = await call(a, 'acquireLock', 's', 50);
      await sleep(150);
      const second = await call(b, 'acquireLock', 's', 5000);
      assert.equal(second.success, true);
      assert.ok(second.index > first.index);
      const rel = await call(a, 'releaseLock', first);
      assert.equal(rel.success, false);
      assert.equal(rel.result, 'conflict');
      assert.equal(await server.command('HGET', `${ns}:s`, 'index'), String(second.index));
    });

    it('renewLock: renewed / conflict / missing', async () => {
      const lock = newLock();
      const key = `${lock.namespace}:n`;
      const held = await call(lock, 'acquireLock', 'n', 1000);
      const ren = await call(lock, 'renewLock', held, 60000);
      assert.deepEqual(ren, { id: 'n', success: true, result: 'renewed', index: held.index });
      const pttl = await server.command('PTTL', key);
      assert.ok(pttl > 50000 && pttl <= 60000, `PTTL after renew ${pttl}`);

      const conflict = await call(lock, 'renewLock', { id: 'n', index: held.index + 7 }, 60000);
      assert.deepEqual(conflict, { id: 'n', success: false, result: 'conflict', index: -1 });

      await call(lock, 'releaseLock', held);
      const missing = await call(lock, 'renewLock', held, 60000);
      assert.deepEqual(missing, { id: 'n', success: false, result: 'missing', index: -1 });
      assert.equal(await server.command('EXISTS', key), 0, 'renewing a missing lock must not create it');
    });

    it('extendLock: {id, success, index, ttl}', async () => {
      const lock = newLock();
      const key = `${lock.namespace}:x`;
      const held = await call(lock, 'acquireLock', 'x', 1000);
      const ext = await call(lock, 'extendLock', held, 45000);
      assert.deepEqual(ext, { id: 'x', success: true, index: held.index, ttl: 45000 });
      const pttl = await server.command('PTTL', key);
      assert.ok(pttl > 40000 && pttl <= 45000, `PTTL after extend ${pttl}`);

      const bad = await call(lock, 'extendLock', { id: 'x', index: held.index + 1 }, 45000);
      assert.equal(bad.id, 'x');
      assert.equal(bad.success, false);
      assert.equal(bad.index, -1);
      assert.deepEqual(Object.keys(bad).sort(), ['id', 'index', 'success', 'ttl']);

      await call(lock, 'releaseLock', held);
      const gone = await call(lock, 'extendLock', held, 45000);
      assert.equal(gone.success, false);
      assert.equal(await server.command('EXISTS', key), 0, 'extending a missing lock must not create it');
    });

    it('index is strictly increasing per namespace (across ids and instances)', async () => {
      const ns = uniqueNs('idx');
      const a = newLock(ns);
      const b = newLock(ns);
      let last = 0;
      for (let i = 0; i < 20; i++) {
        const lock = i % 2 ? a : b;
        const r = await call(lock, 'acquireLock', `id${i % 3}`, 5000);
        assert.equal(r.success, true);
        assert.ok(r.index > last, `index ${r.index} after ${last}`);
        last = r.index;
        await call(lock, 'releaseLock', r);
      }
      assert.equal(await server.command('GET', `${ns}index`), String(last));
    });
  });
}

describe('concurrency', () => {
  it('only one of many concurrent acquireLock calls wins', async () => {
    const ns = uniqueNs('race');
    const instances = [newLock(ns), newLock(ns), newLock(ns)];
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => instances[i % 3].acquireLock('race', 10000)));
    const winners = results.filter((r) => r.success);
    assert.equal(winners.length, 1);
    for (const r of results.filter((x) => !x.success)) assert.equal(r.index, -1);
    // Failed attempts must not bump the counter.
    assert.equal(await server.command('GET', `${ns}index`), String(winners[0].index));
  });

  it('different ids do not block each other', async () => {
    const lock = newLock();
    const results = await Promise.all(['p', 'q', 'r', 's'].map((id) => lock.acquireLock(id, 5000)));
    assert.ok(results.every((r) => r.success));
    const indexes = results.map((r) => r.index);
    assert.equal(new Set(indexes).size, 4);
  });
});
