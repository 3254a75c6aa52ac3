'use strict';
// close(): idempotent, fails pending waits and later calls with ERR_CLOSED, leaves other Lock
// instances on the same server working; quit() and Symbol.asyncDispose are aliases.
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { it, uniqueNs, viaCallback, rejectsWithCode, within, sleep, useRedis } = require('./helpers/common');

let server;
let Lock;
const { newLock } = useRedis({
  tag: 'close',
  ready: (s, L) => {
    server = s;
    Lock = L;
  },
});

async function assertAllClosed(lock) {
  const held = { id: 'x', index: 1 };
  await rejectsWithCode(lock.acquireLock('x', 1000), 'ERR_CLOSED');
  await rejectsWithCode(lock.waitAcquireLock('x', 1000, 100), 'ERR_CLOSED');
  await rejectsWithCode(lock.releaseLock(held), 'ERR_CLOSED');
  await rejectsWithCode(lock.renewLock(held, 1000), 'ERR_CLOSED');
  await rejectsWithCode(lock.extendLock(held, 1000), 'ERR_CLOSED');
  const err = await viaCallback(lock, 'acquireLock', 'x', 1000).then(
    () => assert.fail('callback acquire after close succeeded'),
    (e) => e,
  );
  assert.equal(err.code, 'ERR_CLOSED');
}

describe('close()', () => {
  it('is idempotent and returns a Promise', async () => {
    const lock = newLock();
    await lock.acquireLock('a', 1000);
    const p1 = lock.close();
    assert.ok(p1 instanceof Promise);
    await p1;
    await lock.close();
    await lock.close();
    await viaCallback(lock, 'close');
  });

  it('pending waitAcquireLock rejects with ERR_CLOSED; later calls reject with ERR_CLOSED', async () => {
    const ns = uniqueNs('pending');
    const holder = newLock(ns);
    const lock = newLock(ns);
    const held = await holder.acquireLock('p', 30000);
    const pending = lock.waitAcquireLock('p', 1000, 0);
    const pending2 = lock.waitAcquireLock('p', 1000, 20000);
    const cbPending = viaCallback(lock, 'waitAcquireLock', 'p', 1000, 0);
    await sleep(200);
    // Handlers go on before close(): all three rejections may arrive in the same tick.
    const rejected = [
      within(rejectsWithCode(pending, 'ERR_CLOSED'), 5000, 'pending wait (waitTtl 0) after close'),
      within(rejectsWithCode(pending2, 'ERR_CLOSED'), 5000, 'pending wait (waitTtl 20 s) after close'),
      within(rejectsWithCode(cbPending, 'ERR_CLOSED'), 5000, 'pending wait (callback) after close'),
    ];
    await lock.close();
    await Promise.all(rejected);
    await assertAllClosed(lock);
    // The holder is unaffected and the lock it holds is intact.
    assert.equal(await server.command('HGET', `${ns}:p`, 'index'), String(held.index));
    assert.equal((await holder.releaseLock(held)).result, 'released');
  });

  it('closing one Lock leaves another Lock on the same server working, wake-ups included', async () => {
    const ns = uniqueNs('shared');
    const a = newLock(ns);
    const b = newLock(ns);
    const c = newLock(ns);
    await a.acquireLock('warm', 1000);
    await b.acquireLock('warm2', 1000);
    await a.close();
    const held = await c.acquireLock('s', 30000);
    const pending = b.waitAcquireLock('s', 1000, 0);
    await sleep(100);
    await c.releaseLock(held);
    const got = await within(pending, 5000, 'waiter on the surviving Lock');
    assert.equal(got.success, true);
    assert.equal((await b.releaseLock(got)).result, 'released');
    await rejectsWithCode(a.acquireLock('s', 1000), 'ERR_CLOSED');
  });

  it('close() of a Lock that never connected (server unreachable) resolves promptly', async () => {
    const lock = new Lock({ redis: 'redis://127.0.0.1:1', connectTimeout: 500 });
    await within(lock.close(), 3000, 'close of an unconnected Lock');
    await rejectsWithCode(lock.acquireLock('x', 1000), 'ERR_CLOSED');
  });

  it('quit() is an alias', async () => {
    const lock = newLock();
    await lock.acquireLock('q', 1000);
    await lock.quit();
    await lock.quit();
    await assertAllClosed(lock);
  });

  it(
    'Symbol.asyncDispose closes the Lock (when the symbol exists)',
    { skip: typeof Symbol.asyncDispose !== 'symbol' && 'no Symbol.asyncDispose on this Node' },
    async () => {
      const lock = newLock();
      assert.equal(typeof lock[Symbol.asyncDispose], 'function');
      await lock.acquireLock('d', 1000);
      await lock[Symbol.asyncDispose]();
      await assertAllClosed(lock);
    },
  );
});
