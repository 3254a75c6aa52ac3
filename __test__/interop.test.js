'use strict';
// Rolling upgrade: the real redfour@1.0.5 (callback style) and ioredfour share a Redis with us.
const { describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { promisify } = require('node:util');
const { startRedis } = require('./helpers/redis');
const { it, loadLock, uniqueNs, sleep, within } = require('./helpers/common');

const RedfourLock = require('redfour');

let server;
let Lock;
const cleanups = [];

before(async () => {
  Lock = loadLock();
  server = await startRedis();
});

after(async () => {
  for (const fn of cleanups.reverse()) {
    try { await fn(); } catch { /* best effort */ }
  }
  if (server) await server.cleanup();
});

function ours(namespace) {
  const lock = new Lock({ redis: server.url, namespace });
  cleanups.push(() => lock.close());
  return lock;
}

/** A real redfour@1.0.5 instance, promisified for convenience (it is callback style). */
function theirs(namespace) {
  const rf = new RedfourLock({ redis: server.url, namespace });
  rf._redisConnection.on('error', () => {});
  rf._redisSubscriber.on('error', () => {});
  cleanups.push(() => {
    rf._redisConnection.quit();
    rf._redisSubscriber.quit();
  });
  return {
    raw: rf,
    acquireLock: promisify(rf.acquireLock.bind(rf)),
    waitAcquireLock: promisify(rf.waitAcquireLock.bind(rf)),
    releaseLock: promisify(rf.releaseLock.bind(rf)),
  };
}

/** Lets redfour's subscriber connect and SUBSCRIBE before we rely on its wake-ups. */
async function subscribed(ns) {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const [, count] = await server.command('PUBSUB', 'NUMSUB', `${ns}-release`);
    if (count > 0) return count;
    await sleep(20);
  }
  throw new Error(`nobody subscribed to ${ns}-release`);
}

describe('interop with redfour@1.0.5', () => {
  it('redfour holds → we fail with its PTTL; our waiter is woken by redfour\'s release', async () => {
    const ns = uniqueNs('rf1');
    const rf = theirs(ns);
    const me = ours(ns);
    const held = await rf.acquireLock('shared', 20000);
    assert.equal(held.success, true);
    const probe = await me.acquireLock('shared', 5000);
    assert.equal(probe.success, false);
    assert.equal(probe.index, -1);
    assert.ok(probe.ttl > 15000 && probe.ttl <= 20000, `ttl ${probe.ttl}`);

    const started = Date.now();
    const pending = me.waitAcquireLock('shared', 5000, 0);
    await sleep(300);
    const rel = await rf.releaseLock(held);
    assert.equal(rel.result, 'released');
    const got = await within(pending, 10000, 'our waitAcquireLock after redfour released');
    const waited = Date.now() - started;
    assert.equal(got.success, true);
    assert.ok(got.index > held.index);
    assert.ok(waited < 5000, `woken after ${waited} ms; the holder's TTL was 20 s`);
    await me.releaseLock(got);
  });

  it('we hold → redfour fails; redfour\'s waitAcquireLock is woken by our release', async () => {
    const ns = uniqueNs('rf2');
    const rf = theirs(ns);
    const me = ours(ns);
    await subscribed(ns);
    const held = await me.acquireLock('shared', 20000);
    assert.equal(held.success, true);
    const probe = await rf.acquireLock('shared', 5000);
    assert.equal(probe.success, false);
    assert.equal(probe.index, -1);
    assert.ok(probe.ttl > 15000, `redfour sees PTTL ${probe.ttl}`);

    const started = Date.now();
    const pending = rf.waitAcquireLock('shared', 5000, 0);
    await sleep(300);
    const rel = await me.releaseLock(held);
    assert.equal(rel.result, 'released');
    const got = await within(pending, 10000, 'redfour\'s waitAcquireLock after our release');
    const waited = Date.now() - started;
    assert.equal(got.success, true);
    assert.ok(got.index > held.index);
    assert.ok(waited < 5000, `redfour woken after ${waited} ms; the TTL was 20 s (its fallback poll)`);
    // We can release redfour's lock with the object redfour gave back, and vice versa.
    const rel2 = await me.releaseLock(got);
    assert.equal(rel2.result, 'released');
  });

  it('mixed waiters: our release grants to our seated waiter, then the key is published for redfour\'s', async () => {
    const ns = uniqueNs('rf-mixed');
    const rf = theirs(ns);
    const holder = ours(ns);
    const waiter = ours(ns);
    await subscribed(ns);
    const held = await holder.acquireLock('shared', 20000);
    const theirsPending = rf.waitAcquireLock('shared', 5000, 0);
    const oursPending = waiter.waitAcquireLock('shared', 5000, 0);
    // Our waiter sits in the lock's hash (fields redfour never reads).
    const deadline = Date.now() + 5000;
    while (!(await server.command('HGET', `${ns}:shared`, 'q1')) && Date.now() < deadline) await sleep(10);
    assert.ok(await server.command('HGET', `${ns}:shared`, 'q1'), 'our waiter took a seat');
    assert.equal((await holder.releaseLock(held)).result, 'released');
    const mine = await within(oursPending, 5000, 'our seated waiter');
    assert.equal(mine.success, true);
    assert.ok(mine.index > held.index);
    // redfour's waiter saw no key message (the lock stayed held) and is still waiting.
    const early = await Promise.race([theirsPending.then(() => 'got it'), sleep(300).then(() => 'waiting')]);
    assert.equal(early, 'waiting');
    // Nobody of ours is seated now: our release deletes the key and publishes it, as redfour's does.
    assert.equal((await waiter.releaseLock(mine)).result, 'released');
    const theirsGot = await within(theirsPending, 5000, 'redfour\'s waiter after the queue emptied');
    assert.equal(theirsGot.success, true);
    assert.ok(theirsGot.index > mine.index);
    assert.equal((await rf.releaseLock(theirsGot)).result, 'released');
  });

  it('counters are shared: indexes keep increasing across both libraries', async () => {
    const ns = uniqueNs('rf3');
    const rf = theirs(ns);
    const me = ours(ns);
    let last = 0;
    for (let i = 0; i < 10; i++) {
      const lib = i % 2 ? rf : me;
      const other = i % 2 ? me : rf;
      const r = await lib.acquireLock('c', 5000);
      assert.equal(r.success, true, `round ${i}`);
      assert.ok(r.index > last, `round ${i}: index ${r.index} after ${last}`);
      last = r.index;
      const rel = await other.releaseLock({ id: 'c', index: r.index });
      assert.equal(rel.result, 'released');
    }
    assert.equal(await server.command('GET', `${ns}index`), String(last));
  });

  it('release results agree with redfour for conflict and expired', async () => {
    const ns = uniqueNs('rf4');
    const rf = theirs(ns);
    const me = ours(ns);
    const held = await me.acquireLock('z', 60000);
    const theirsConflict = await rf.releaseLock({ id: 'z', index: held.index + 1 });
    const oursConflict = await me.releaseLock({ id: 'z', index: held.index + 1 });
    assert.deepEqual(oursConflict, theirsConflict);
    await me.releaseLock(held);
    const theirsExpired = await rf.releaseLock(held);
    const oursExpired = await me.releaseLock(held);
    assert.deepEqual(oursExpired, theirsExpired);
  });
});

describe('interop with ioredfour', () => {
  let IoRedfour;
  try {
    IoRedfour = require('ioredfour');
  } catch {
    IoRedfour = null;
  }

  function io(namespace) {
    const l = new IoRedfour({ redis: server.url, namespace });
    l._redisConnection.on('error', () => {});
    l._redisSubscriber.on('error', () => {});
    cleanups.push(() => {
      l._redisConnection.disconnect();
      l._redisSubscriber.disconnect();
    });
    return l;
  }

  it('ioredfour and we exclude each other, wake each other, share the counter, extend each other\'s locks', { skip: !IoRedfour && 'ioredfour not installed' }, async () => {
    const ns = uniqueNs('io');
    const other = io(ns);
    const me = ours(ns);
    await subscribed(ns);

    const theirs1 = await other.acquireLock('j', 20000);
    assert.equal(theirs1.success, true);
    assert.equal((await me.acquireLock('j', 1000)).success, false);
    const ext = await me.extendLock(theirs1, 30000);
    assert.equal(ext.success, true);
    assert.ok((await server.command('PTTL', `${ns}:j`)) > 25000);

    const mine = me.waitAcquireLock('j', 20000, 0);
    await sleep(200);
    await other.releaseLock(theirs1);
    const got = await within(mine, 10000, 'our wait after ioredfour released');
    assert.equal(got.success, true);
    assert.ok(got.index > theirs1.index);

    const theirWait = other.waitAcquireLock('j', 5000, 0);
    await sleep(200);
    await me.releaseLock(got);
    const theirs2 = await within(theirWait, 10000, 'ioredfour wait after we released');
    assert.equal(theirs2.success, true);
    assert.ok(theirs2.index > got.index);
    const ext2 = await other.extendLock({ id: 'j', index: theirs2.index }, 9000);
    assert.equal(ext2.success, true);
    assert.equal((await me.releaseLock(theirs2)).result, 'released');
  });
});
