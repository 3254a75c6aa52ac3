'use strict';
// Calls made at the same moment share script calls (src/core/batch.rs), and each still gets
// exactly its own result, in both call styles.
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { it, uniqueNs, viaCallback, rejectsWithCode, useRedis } = require('./helpers/common');

let server;
const { newLock } = useRedis({
  tag: 'batch',
  ready: (s) => {
    server = s;
  },
});

describe('batched script calls', () => {
  it('64 concurrent loops share script calls, and every call gets its own result', async () => {
    const ns = uniqueNs('loops');
    const lock = newLock(ns);
    await lock.releaseLock(await lock.acquireLock('warm-up', 1000));
    const before = await server.scriptCalls();
    const indexes = new Set();
    let calls = 0;
    await Promise.all(
      Array.from({ length: 64 }, async (_, loop) => {
        for (let i = 0; i < 10; i++) {
          const id = `l${loop}-${i}`;
          // Every other loop uses callbacks: both styles go through the same batches.
          const held = loop % 2 ? await viaCallback(lock, 'acquireLock', id, 10000) : await lock.acquireLock(id, 10000);
          assert.equal(held.success, true, id);
          assert.equal(held.id, id);
          indexes.add(held.index);
          const second = await lock.acquireLock(id, 10000);
          assert.equal(second.success, false, `${id} is held`);
          const released = loop % 2 ? await viaCallback(lock, 'releaseLock', held) : await lock.releaseLock(held);
          assert.deepEqual(released, { id, success: true, result: 'released', index: held.index });
          calls += 3;
        }
      }),
    );
    assert.equal(indexes.size, 640, 'every grant has its own index');
    const used = (await server.scriptCalls()) - before;
    assert.ok(used < calls / 2, `${calls} calls took ${used} script calls`);
    assert.deepEqual(await server.keys(`${ns}:*`), [], 'nothing left behind');
  });

  it("one call's error does not fail the calls batched with it", async () => {
    const ns = uniqueNs('err');
    const lock = newLock(ns);
    // Not a hash: releasing it makes the release script's HGET fail with WRONGTYPE.
    await server.command('SET', `${ns}:not-a-lock`, 'x');
    const held = await Promise.all(Array.from({ length: 20 }, (_, i) => lock.acquireLock(`id${i}`, 10000)));
    const before = await server.scriptCalls();
    const releases = held.map((h) => lock.releaseLock(h));
    const bad = lock.releaseLock({ id: 'not-a-lock', index: 1 });
    const error = await rejectsWithCode(bad, 'ERR_REDIS');
    assert.match(error.message, /WRONGTYPE/);
    for (const released of await Promise.all(releases)) assert.equal(released.result, 'released');
    assert.ok((await server.scriptCalls()) - before < 21, 'the calls were batched');
  });
});
