'use strict';
// The Redis layout must be redfour's, byte for byte: HASH `${ns}:${id}` {index}, PEXPIRE,
// STRING counter `${ns}index`, PUBLISH on `${ns}-release` with the full key as payload.
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { it, uniqueNs, sleep, within, useRedis } = require('./helpers/common');

let server;
let Lock;
const { newLock, locks } = useRedis({
  ready: (s, L) => {
    server = s;
    Lock = L;
  },
});

/** Subscribes a fresh ioredis connection to `channel`; returns {messages, next(ms), quit()}. */
async function listen(channel) {
  const sub = server.client();
  const messages = [];
  let waiter = null;
  sub.on('message', (ch, msg) => {
    messages.push({ channel: ch, message: msg });
    if (waiter) waiter();
  });
  await sub.subscribe(channel);
  return {
    messages,
    async next(ms = 5000) {
      const start = messages.length;
      await within(
        new Promise((resolve) => {
          waiter = () => {
            if (messages.length > start) resolve();
          };
        }),
        ms,
        `a message on ${channel}`,
      );
      waiter = null;
      return messages[messages.length - 1];
    },
    quit: () => sub.disconnect(),
  };
}

describe('wire format', () => {
  it('lock is a HASH `${ns}:${id}` with field index and a PEXPIRE; counter is a STRING `${ns}index` without TTL', async () => {
    const ns = uniqueNs('wire');
    const lock = newLock(ns);
    const held = await lock.acquireLock('res1', 15000);
    assert.equal(held.success, true);
    const key = `${ns}:res1`;
    assert.equal(await server.command('TYPE', key), 'hash');
    // `index` as redfour writes it, and `attempt`, which redfour ignores: it lets an acquire whose
    // reply was lost recognise its own grant when it is sent again.
    assert.deepEqual((await server.command('HKEYS', key)).sort(), ['attempt', 'index']);
    assert.equal(await server.command('HGET', key, 'index'), String(held.index));
    const pttl = await server.command('PTTL', key);
    assert.ok(pttl > 10000 && pttl <= 15000, `PTTL ${pttl}`);
    assert.equal(await server.command('TYPE', `${ns}index`), 'string');
    assert.equal(await server.command('GET', `${ns}index`), String(held.index));
    assert.equal(await server.command('PTTL', `${ns}index`), -1, 'the counter must not expire');
    // Nothing else is written under the namespace.
    assert.deepEqual(await server.keys(`${ns}*`), [`${ns}:res1`, `${ns}index`].sort());
    await lock.releaseLock(held);
    assert.deepEqual(await server.keys(`${ns}*`), [`${ns}index`]);
  });

  it('default namespace is "lock": keys lock:<id> and lockindex', async () => {
    const lock = new Lock({ redis: server.url });
    locks.push(lock);
    const held = await lock.acquireLock('dflt', 5000);
    assert.equal(await server.command('HGET', 'lock:dflt', 'index'), String(held.index));
    assert.equal(await server.command('GET', 'lockindex'), String(held.index));
    await lock.releaseLock(held);
    assert.equal(await server.command('EXISTS', 'lock:dflt'), 0);
  });

  it('release PUBLISHes the full key on `${ns}-release`; conflicts and failed acquires publish nothing', async () => {
    const ns = uniqueNs('pub');
    const lock = newLock(ns);
    const channel = `${ns}-release`;
    const sub = await listen(channel);
    try {
      const held = await lock.acquireLock('item:7', 10000);
      await lock.acquireLock('item:7', 10000); // fails, must not publish
      await lock.releaseLock({ id: 'item:7', index: held.index + 1 }); // conflict, must not publish
      await sleep(200);
      assert.deepEqual(sub.messages, []);
      const got = sub.next();
      await lock.releaseLock(held);
      const msg = await got;
      assert.deepEqual(msg, { channel, message: `${ns}:item:7` });
      // An already-expired release publishes nothing either.
      await lock.releaseLock(held);
      await sleep(200);
      assert.equal(sub.messages.length, 1);
    } finally {
      sub.quit();
    }
  });

  it("a key with no expiry (left by redfour's NaN-TTL bug) reads as held with ttl -1, and a bounded wait gives up", async () => {
    const ns = uniqueNs('immortal');
    const lock = newLock(ns);
    await server.command('HSET', `${ns}:k`, 'index', '7');
    const r = await lock.acquireLock('k', 1000);
    assert.deepEqual(r, { id: 'k', success: false, index: -1, ttl: -1 });
    const w = await within(lock.waitAcquireLock('k', 1000, 400), 10000, 'bounded wait on an immortal key');
    assert.equal(w.success, false);
    assert.equal(w.index, -1);
    // Released by its index (as redfour would), the lock becomes available again.
    assert.equal((await lock.releaseLock({ id: 'k', index: 7 })).result, 'released');
    assert.equal((await lock.acquireLock('k', 1000)).success, true);
  });

  it('Redis errors are ERR_REDIS: a corrupted counter fails the acquire and leaves no lock key', async () => {
    const ns = uniqueNs('corrupt');
    const lock = newLock(ns);
    await server.command('SET', `${ns}index`, 'not-a-number');
    await assert.rejects(lock.acquireLock('c', 5000), (e) => e.code === 'ERR_REDIS' && e instanceof Error);
    await assert.rejects(lock.waitAcquireLock('c', 5000, 1000), (e) => e.code === 'ERR_REDIS');
    assert.equal(await server.command('EXISTS', `${ns}:c`), 0, 'a failed grant left a lock key (possibly without TTL)');
  });

  it('Redis errors are ERR_REDIS: the lock key holding another type (WRONGTYPE) on release/renew', async () => {
    const ns = uniqueNs('wrongtype');
    const lock = newLock(ns);
    await server.command('SET', `${ns}:s`, 'a string, not a hash');
    await assert.rejects(lock.releaseLock({ id: 's', index: 1 }), (e) => e.code === 'ERR_REDIS');
    await assert.rejects(lock.renewLock({ id: 's', index: 1 }, 1000), (e) => e.code === 'ERR_REDIS');
    assert.equal(await server.command('GET', `${ns}:s`), 'a string, not a hash');
  });

  it('TTL boundaries: 1 ms and 2147483647 ms (the documented maximum) are accepted', async () => {
    const ns = uniqueNs('bounds');
    const lock = newLock(ns);
    const long = await lock.acquireLock('long', 2147483647);
    assert.deepEqual({ success: long.success, ttl: long.ttl }, { success: true, ttl: 2147483647 });
    assert.ok((await server.command('PTTL', `${ns}:long`)) > 2147000000);
    const short = await lock.acquireLock('short', 1);
    assert.equal(short.success, true);
    const w = await within(lock.waitAcquireLock('short', 1000, 2147483647), 10000, 'wait behind a 1 ms lease');
    assert.equal(w.success, true);
    assert.equal((await lock.renewLock(long, 2147483647)).result, 'renewed');
    await lock.releaseLock(long);
    await lock.releaseLock(w);
  });

  it('a lock written by hand in redfour layout is honoured (HSET + PEXPIRE, counter INCR)', async () => {
    const ns = uniqueNs('hand');
    const lock = newLock(ns);
    await server.command('SET', `${ns}index`, '41');
    await server.command('HSET', `${ns}:k`, 'index', '41');
    await server.command('PEXPIRE', `${ns}:k`, 20000);
    const r = await lock.acquireLock('k', 1000);
    assert.equal(r.success, false);
    assert.ok(r.ttl > 15000);
    const rel = await lock.releaseLock({ id: 'k', index: 41 });
    assert.equal(rel.result, 'released');
    const again = await lock.acquireLock('k', 1000);
    assert.equal(again.success, true);
    assert.equal(again.index, 42, 'the counter continues from the stored value');
  });
});
