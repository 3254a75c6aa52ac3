'use strict';
// Fenced writes through the user's own Redis client: a lower token never overwrites a higher one.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { createClient } = require('redis');
const { startRedis } = require('./helpers/redis');
const { loadLock, uniqueNs, rejectsWithCode } = require('./helpers/common');

let server;
let Lock;
let nodeRedis;

before(async () => {
  Lock = loadLock();
  server = await startRedis();
  nodeRedis = createClient({ url: server.url });
  nodeRedis.on('error', () => {});
  await nodeRedis.connect();
});

after(async () => {
  if (nodeRedis) await nodeRedis.quit().catch(() => {});
  if (server) await server.cleanup();
});

const clients = {
  ioredis: () => server.redis,
  'node-redis 4': () => nodeRedis,
  'a function': () => (args) => server.redis.call(...args),
};

for (const [kind, client] of Object.entries(clients)) {
  describe(`Fence with ${kind}`, () => {
    it('accepts equal and higher tokens, refuses lower ones, and keeps the highest', async () => {
      const fence = new Lock.Fence(client());
      const key = `${uniqueNs('fence')}:report`;
      assert.deepEqual(await fence.set(key, 7, 'v7'), { accepted: true, token: 7 });
      assert.deepEqual(await fence.set(key, 6, 'v6'), { accepted: false, token: 7 });
      assert.equal(await server.command('GET', key), 'v7');
      assert.deepEqual(await fence.set(key, 7, 'v7 again'), { accepted: true, token: 7 });
      assert.deepEqual(await fence.set(key, 12, 'v12'), { accepted: true, token: 12 });
      assert.deepEqual(await fence.set(key, 8, 'v8'), { accepted: false, token: 12 });
      assert.deepEqual(await fence.get(key), { value: 'v12', token: 12 });
      assert.equal(await server.command('GET', `${key}:fence`), '12');
    });

    it('takes the token from a lock result and writes with a TTL', async () => {
      const ns = uniqueNs('fence');
      const lock = new Lock({ redis: server.url, namespace: ns });
      try {
        const first = await lock.acquireLock('res', 10000);
        await lock.releaseLock(first);
        const second = await lock.acquireLock('res', 10000);
        const key = `${ns}:data`;
        assert.equal((await Lock.fencedSet(client(), key, second, 'new', { ttlMs: 60000 })).accepted, true);
        // The paused ex-holder wakes up with its old index.
        assert.deepEqual(await Lock.fencedSet(client(), key, first, 'stale'), { accepted: false, token: second.index });
        assert.equal(await server.command('GET', key), 'new');
        const pttl = await server.command('PTTL', key);
        assert.ok(pttl > 50000 && pttl <= 60000, `PTTL ${pttl}`);
        await lock.releaseLock(second);
      } finally {
        await lock.close();
      }
    });
  });
}

describe('Fence details', () => {
  it('keys and values with quotes, brackets and newlines are data, never script', async () => {
    const fence = new Lock.Fence(server.redis);
    const key = `${uniqueNs('inj')}:"]]); redis.call("FLUSHALL") --\n`;
    const value = '"); redis.call("FLUSHALL"); --\n\0binary';
    assert.equal((await fence.set(key, 1, value)).accepted, true);
    assert.equal(await server.command('GET', key), value);
    assert.ok((await server.keys()).length >= 2);
  });

  it('reloads the script after SCRIPT FLUSH (NOSCRIPT falls back to EVAL)', async () => {
    const fence = new Lock.Fence(nodeRedis);
    const key = `${uniqueNs('flush')}:k`;
    await fence.set(key, 1, 'a');
    await server.command('SCRIPT', 'FLUSH');
    assert.deepEqual(await fence.set(key, 2, 'b'), { accepted: true, token: 2 });
  });

  it('uses a custom fence key or suffix (hash tags keep both keys in one cluster slot)', async () => {
    const ns = uniqueNs('custom');
    const a = new Lock.Fence(server.redis, { suffix: '#highest' });
    await a.set(`{${ns}}v`, 3, 'x');
    assert.equal(await server.command('GET', `{${ns}}v#highest`), '3');
    await a.set(`{${ns}}w`, 4, 'y', { fenceKey: `{${ns}}shared` });
    assert.equal(await server.command('GET', `{${ns}}shared`), '4');
    assert.deepEqual(await a.get(`{${ns}}w`, { fenceKey: `{${ns}}shared` }), { value: 'y', token: 4 });
    assert.deepEqual(await a.get(`{${ns}}nothing`), { value: null, token: null });
  });

  it('rejects bad tokens, keys, values and clients before touching Redis', async () => {
    const fence = new Lock.Fence(server.redis);
    for (const token of [-1, 1.5, NaN, '3', null, undefined, 2 ** 53]) {
      await rejectsWithCode(fence.set('k', token, 'v'), 'ERR_INVALID_ARG', TypeError);
    }
    await rejectsWithCode(fence.set('', 1, 'v'), 'ERR_INVALID_ARG', TypeError);
    await rejectsWithCode(fence.set('k', 1, { not: 'a string' }), 'ERR_INVALID_ARG', TypeError);
    await rejectsWithCode(fence.set('k', 1, 'v', { ttlMs: 0 }), 'ERR_INVALID_ARG', TypeError);
    await rejectsWithCode(Lock.fencedSet({}, 'k', 1, 'v'), 'ERR_INVALID_ARG', TypeError);
    assert.throws(
      () => new Lock.Fence(42),
      (err) => err.code === 'ERR_INVALID_ARG',
    );
  });

  it('a Redis error is an ERR_REDIS LockError with the cause', async () => {
    const key = `${uniqueNs('wrongtype')}:k`;
    await server.command('HSET', `${key}:fence`, 'f', 'v');
    const err = await rejectsWithCode(Lock.fencedSet(server.redis, key, 1, 'v'), 'ERR_REDIS', Lock.LockError);
    assert.ok(err.cause);
  });

  it('concurrent writers: the highest token wins whatever the arrival order', async () => {
    const fence = new Lock.Fence(server.redis);
    const key = `${uniqueNs('race')}:k`;
    const tokens = Array.from({ length: 50 }, (_, i) => i + 1).sort(() => Math.random() - 0.5);
    await Promise.all(tokens.map((t) => fence.set(key, t, `v${t}`)));
    assert.deepEqual(await fence.get(key), { value: 'v50', token: 50 });
  });
});
