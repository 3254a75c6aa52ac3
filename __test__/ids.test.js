'use strict';
// Key names are exactly JavaScript's `${namespace}:${id}`, for any id and namespace, with no
// Lua injection through the namespace (redfour pastes it into its release script).
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { it, uniqueNs, sleep, within, useRedis } = require('./helpers/common');

let server;
const { newLock } = useRedis({
  ready: (s) => {
    server = s;
  },
});

/** Acquire, verify the exact key bytes and a conflicting acquire, release, verify gone. */
async function roundTrip(lock, id) {
  const ns = lock.namespace;
  const key = `${ns}:${id}`;
  const held = await lock.acquireLock(id, 10000);
  assert.equal(held.success, true, `acquire ${JSON.stringify(String(id))}`);
  assert.equal(held.id, id);
  const keys = await server.redis.keysBuffer(`${ns.replace(/[*?[\]\\]/g, '\\$&')}:*`);
  assert.deepEqual(
    keys.map((k) => k.toString('utf8')),
    [key],
    `key for id ${JSON.stringify(String(id))}`,
  );
  assert.ok(Buffer.from(key, 'utf8').equals(keys[0]), 'key bytes are the UTF-8 of the JS template string');
  assert.equal(await server.command('HGET', key, 'index'), String(held.index));
  const again = await lock.acquireLock(id, 10000);
  assert.equal(again.success, false, 'second acquire of the same id must fail');
  const rel = await lock.releaseLock(held);
  assert.equal(rel.result, 'released');
  assert.equal(await server.command('EXISTS', key), 0);
  return held;
}

describe('ids', () => {
  const numeric = [1, 0, -5, 1.5, 0.1 + 0.2, 1e21, 1e-7, 123456789012345680000, Number.MAX_SAFE_INTEGER, 2 ** 53 + 2, -1e-300];
  for (const id of numeric) {
    it(`number ${String(id)} → key uses String(id)`, async () => {
      await roundTrip(newLock(uniqueNs('num')), id);
    });
  }

  it('-0 → key "ns:0" (String(-0) is "0"), and it is the same lock as 0', async () => {
    const lock = newLock(uniqueNs('negzero'));
    const held = await lock.acquireLock(-0, 10000);
    assert.equal(held.success, true);
    assert.equal(await server.command('EXISTS', `${lock.namespace}:0`), 1);
    const other = await lock.acquireLock(0, 10000);
    assert.equal(other.success, false);
    const alsoString = await lock.acquireLock('0', 10000);
    assert.equal(alsoString.success, false);
    await lock.releaseLock(held);
  });

  it('Math.random() ids (as in the redfour blog) work', async () => {
    const lock = newLock(uniqueNs('random'));
    for (let i = 0; i < 5; i++) await roundTrip(lock, Math.random());
  });

  const strings = [
    ['unicode', 'ключ-🔒-日本語'],
    ['combining accent', 'e\u0301'],
    ['colons', 'a:b:c'],
    ['double quote', 'say "hi"'],
    ['single quote', "it's"],
    ['spaces', '  spaced  id  '],
    ['newline', 'line1\nline2'],
    ['CRLF', 'a\r\nb'],
    ['tab', 'a\tb'],
    ['backslash', 'back\\slash'],
    ['lua long bracket', ']]..redis.call("FLUSHALL")..[['],
    ['glob chars', '*?[x]'],
    ['percent and braces', '%s{tag}'],
    ['long id (10k chars)', 'x'.repeat(10000)],
  ];
  for (const [title, id] of strings) {
    it(`string id with ${title}`, async () => {
      await roundTrip(newLock(uniqueNs('str')), id);
    });
  }

  it('string id with a NUL character', async () => {
    await roundTrip(newLock(uniqueNs('nul')), 'a\u0000b');
  });

  it('ids "1" and 1 name the same lock; "1.0" does not', async () => {
    const lock = newLock(uniqueNs('same'));
    const held = await lock.acquireLock('1', 10000);
    assert.equal((await lock.acquireLock(1, 10000)).success, false);
    assert.equal((await lock.acquireLock('1.0', 10000)).success, true);
    await lock.releaseLock(held);
  });
});

describe('namespaces (no Lua injection)', () => {
  const namespaces = [
    ['double quote', 'ns"quoted'],
    ['quote breaking out of a Lua string', 'x", "y'],
    ['backslash', 'ns\\back'],
    ['trailing backslash', 'ns\\'],
    ['lua long bracket', 'ns]]--'],
    ['lua code', '"); redis.call("FLUSHALL"); --'],
    ['single quote', "ns'q"],
    ['newline', 'ns\nnl'],
    ['unicode', 'ns-ключ-🔒'],
    ['colon and spaces', 'my app: locks'],
  ];
  for (const [title, base] of namespaces) {
    it(`namespace with ${title}: exact redfour key/counter/channel names, wake-up works`, async () => {
      const ns = `${base}-${uniqueNs('inj')}`;
      await server.command('SET', 'canary', '1');
      const holder = newLock(ns);
      const waiter = newLock(ns);
      const sub = server.client();
      const channel = `${ns}-release`;
      const messages = [];
      sub.on('message', (ch, msg) => messages.push([ch, msg]));
      await sub.subscribe(channel);
      try {
        const held = await holder.acquireLock('item', 20000);
        assert.equal(held.success, true);
        assert.equal(await server.command('HGET', `${ns}:item`, 'index'), String(held.index));
        assert.equal(await server.command('GET', `${ns}index`), String(held.index));
        const pending = waiter.waitAcquireLock('item', 5000, 0);
        await sleep(100);
        const rel = await holder.releaseLock(held);
        assert.equal(rel.result, 'released');
        const got = await within(pending, 5000, 'waiter in an odd namespace');
        assert.equal(got.success, true);
        await waiter.releaseLock(got);
        await sleep(100);
        // Both releases (the holder's, which woke the waiter, and the waiter's) published the key.
        assert.deepEqual(messages[0], [channel, `${ns}:item`]);
        assert.deepEqual(messages[1], [channel, `${ns}:item`]);
        assert.equal(await server.command('GET', 'canary'), '1', 'the namespace ran as Lua code');
        const renew = await waiter.acquireLock('r', 1000);
        assert.equal((await waiter.renewLock(renew, 9000)).result, 'renewed');
        assert.equal((await waiter.extendLock(renew, 9000)).success, true);
        assert.equal((await waiter.releaseLock(renew)).result, 'released');
      } finally {
        sub.disconnect();
      }
    });
  }
});
