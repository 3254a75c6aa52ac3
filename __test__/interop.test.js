'use strict';
// Rolling upgrade: the real redfour@1.0.5 (callback style) and ioredfour share a Redis with us.
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { it, uniqueNs, sleep, within } = require('./helpers/common');
const { usePeers } = require('./helpers/peers');

const peers = usePeers('interop');
const { ours, redfour: theirs } = peers;

/** Lets redfour's subscriber connect and SUBSCRIBE before we rely on its wake-ups. */
async function subscribed(ns) {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const [, count] = await peers.server.command('PUBSUB', 'NUMSUB', `${ns}-release`);
    if (count > 0) return count;
    await sleep(20);
  }
  throw new Error(`nobody subscribed to ${ns}-release`);
}

describe('interop with redfour@1.0.5', () => {
  it("redfour holds → we fail with its PTTL; our waiter is woken by redfour's release", async () => {
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

  it("we hold → redfour fails; redfour's waitAcquireLock is woken by our release", async () => {
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
    const got = await within(pending, 10000, "redfour's waitAcquireLock after our release");
    const waited = Date.now() - started;
    assert.equal(got.success, true);
    assert.ok(got.index > held.index);
    assert.ok(waited < 5000, `redfour woken after ${waited} ms; the TTL was 20 s (its fallback poll)`);
    // We can release redfour's lock with the object redfour gave back, and vice versa.
    const rel2 = await me.releaseLock(got);
    assert.equal(rel2.result, 'released');
  });

  it("mixed waiters: our release publishes the key, and both libraries' waiters compete for it", async () => {
    const ns = uniqueNs('rf-mixed');
    const rf = theirs(ns);
    const holder = ours(ns);
    const waiter = ours(ns);
    await subscribed(ns);
    const held = await holder.acquireLock('shared', 20000);
    const theirsPending = rf.waitAcquireLock('shared', 5000, 0);
    const oursPending = waiter.waitAcquireLock('shared', 5000, 0);
    await sleep(200);
    const sub = peers.server.client();
    const heard = new Promise((resolve) => sub.on('message', (channel, message) => resolve(message)));
    await sub.subscribe(`${ns}-release`);
    assert.equal((await holder.releaseLock(held)).result, 'released');
    assert.equal(await within(heard, 5000, 'the release message'), `${ns}:shared`, 'the key, as redfour publishes it');
    sub.disconnect();
    // One of the two wins at once; the other gets the lock when the winner releases it.
    const first = await within(
      Promise.race([oursPending.then((r) => ({ r, lib: 'ours' })), theirsPending.then((r) => ({ r, lib: 'theirs' }))]),
      5000,
      'the first waiter after the release',
    );
    assert.equal(first.r.success, true);
    assert.ok(first.r.index > held.index);
    const winner = first.lib === 'ours' ? waiter : rf;
    // Hold a moment, as real work would: redfour re-arms its wait only after its failed attempt's
    // reply, so a release published while that reply is in flight is lost to it (its own race,
    // which our waiters do not have: a message heard mid-attempt makes them try again).
    await sleep(100);
    assert.equal((await winner.releaseLock(first.r)).result, 'released');
    const second = await within(first.lib === 'ours' ? theirsPending : oursPending, 5000, 'the other waiter');
    assert.equal(second.success, true);
    assert.ok(second.index > first.r.index);
    const other = first.lib === 'ours' ? rf : waiter;
    assert.equal((await other.releaseLock(second)).result, 'released');
  });

  /**
   * A rolling upgrade: `loops` endpoints of one library loop wait + 20 ms hold + release on one
   * id, while one waiter of the other library waits up to 10 s: it must get the lock.
   */
  async function mixedFleet(loopsLib, waiterLib) {
    const ns = uniqueNs(`fleet-${loopsLib}`);
    // Distinct connect timeouts give each of our Locks its own connections and waiter queue,
    // as separate processes would have.
    const make = (lib, i) =>
      lib === 'ours'
        ? (() => {
            const lock = new peers.Lock({ redis: peers.server.url, namespace: ns, connectTimeout: 5000 + i });
            peers.defer(() => lock.close());
            return lock;
          })()
        : theirs(ns);
    const loopers = [0, 1, 2, 3].map((i) => make(loopsLib, i));
    const lone = make(waiterLib, 9);
    if (loopsLib === 'theirs' || waiterLib === 'theirs') await subscribed(ns);
    let running = true;
    let sections = 0;
    const loops = loopers.map(async (lock) => {
      while (running) {
        const r = await lock.waitAcquireLock('hot', 1000, 2000);
        if (!r.success) continue;
        sections += 1;
        await sleep(20);
        await lock.releaseLock(r);
      }
    });
    await sleep(300); // the loops are taking turns
    const started = Date.now();
    const got = await lone.waitAcquireLock('hot', 1000, 10000);
    const waited = Date.now() - started;
    if (got.success) await lone.releaseLock(got);
    running = false;
    await Promise.all(loops);
    assert.ok(sections > 0, 'the loops ran');
    assert.equal(got.success, true, `the ${waiterLib} waiter never got the lock in 10 s (${sections} sections by the ${loopsLib} loops)`);
    return waited;
  }

  it('mixed fleet: a redfour waiter gets the lock while four of our loops take turns', async () => {
    await mixedFleet('ours', 'theirs');
  });

  it('mixed fleet: our waiter gets the lock while four redfour loops take turns', async () => {
    await mixedFleet('theirs', 'ours');
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
    assert.equal(await peers.server.command('GET', `${ns}index`), String(last));
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
    const l = new IoRedfour({ redis: peers.server.url, namespace });
    l._redisConnection.on('error', () => {});
    l._redisSubscriber.on('error', () => {});
    peers.defer(() => {
      l._redisConnection.disconnect();
      l._redisSubscriber.disconnect();
    });
    return l;
  }

  it(
    "ioredfour and we exclude each other, wake each other, share the counter, extend each other's locks",
    { skip: !IoRedfour && 'ioredfour not installed' },
    async () => {
      const ns = uniqueNs('io');
      const other = io(ns);
      const me = ours(ns);
      await subscribed(ns);

      const theirs1 = await other.acquireLock('j', 20000);
      assert.equal(theirs1.success, true);
      assert.equal((await me.acquireLock('j', 1000)).success, false);
      const ext = await me.extendLock(theirs1, 30000);
      assert.equal(ext.success, true);
      assert.ok((await peers.server.command('PTTL', `${ns}:j`)) > 25000);

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
    },
  );
});
