'use strict';
// Leader election: one leader at a time, failover within the TTL when the leader is SIGKILLed,
// prompt hand-off on resign/stop, strictly increasing epochs, and no unhandled 'error' events.
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { startRedis } = require('./helpers/redis');
const { uniqueNs, forkFixture, within, sleep, useRedis } = require('./helpers/common');

let server;
let Lock;
const electors = [];
const children = [];
const { newLock, locks } = useRedis({
  cleanup: async () => {
    await Promise.allSettled(children.map((c) => c.ensureDead()));
    await Promise.allSettled(electors.map((e) => e.stop()));
  },
  ready: (s, L) => {
    server = s;
    Lock = L;
  },
});

function elect(lock, name, options) {
  const elector = lock.elect(name, options);
  electors.push(elector);
  return elector;
}

function spawnElector(args) {
  const child = forkFixture('elector', { url: server.url, ...args });
  children.push(child);
  return child;
}

/**
 * Like events.once, but without the 'error' listener events.once adds (which would change what the
 * elector does: it emits 'error' only when somebody listens). Resolves with the listener's arguments.
 */
function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

/** Resolves with the first of `electors` to be elected (and its term). */
function firstElected(list, ms = 10000) {
  return within(Promise.race(list.map((e) => once(e, 'elected').then(([term]) => ({ elector: e, term })))), ms, 'election');
}

function leadersOf(list) {
  return list.filter((e) => e.isLeader);
}

describe('leader election in one process', () => {
  it('elects exactly one leader, and hands over on stop() within a second', async () => {
    const ns = uniqueNs('stop');
    const lock = newLock(ns);
    const candidates = [elect(lock, 'L', { ttl: 5000 }), elect(lock, 'L', { ttl: 5000 }), elect(lock, 'L', { ttl: 5000 })];
    const { elector: first, term } = await firstElected(candidates);
    await sleep(100);
    assert.equal(leadersOf(candidates).length, 1);
    assert.equal(first.epoch, term.epoch);
    assert.equal(await server.command('HGET', `${ns}:L`, 'index'), String(term.epoch));

    const others = candidates.filter((e) => e !== first);
    const next = firstElected(others, 1000);
    const revoked = once(first, 'revoked');
    const started = Date.now();
    await first.stop();
    const [info] = await revoked;
    assert.deepEqual(info, { name: 'L', epoch: term.epoch, reason: 'stopped' });
    assert.equal(term.signal.aborted, true);
    assert.equal(term.signal.reason.code, 'ERR_LOCK_LOST');
    const { elector: second, term: term2 } = await next;
    assert.ok(Date.now() - started < 1000, `hand-off took ${Date.now() - started} ms`);
    assert.ok(term2.epoch > term.epoch, `epoch ${term2.epoch} after ${term.epoch}`);
    assert.equal(first.isLeader, false);
    assert.equal(first.stopped, true);
    assert.equal(leadersOf(candidates).length, 1);
    await Promise.all(candidates.map((e) => e.stop()));
    assert.equal(leadersOf(candidates).length, 0);
    assert.equal(second.epoch, null);
    // The leader's release and the third candidate's cancelled campaign race: when the release
    // lands first it grants the lock to the waiting third, whose cancellation then gives it back
    // in the background (a cancelled wait returns at once, even with Redis unreachable). So the
    // key goes within a round trip or two of stop(), not necessarily before it resolves.
    const gone = Date.now() + 1000;
    while ((await server.command('EXISTS', `${ns}:L`)) !== 0 && Date.now() < gone) await sleep(5);
    assert.equal(await server.command('EXISTS', `${ns}:L`), 0, 'the last leader released the lock');
  });

  it('resign() hands over at once and the resigner campaigns again; epochs strictly increase', async () => {
    const lock = newLock(uniqueNs('resign'));
    const candidates = [0, 1, 2].map(() => elect(lock, 'R', { ttl: 5000, rejoinAfterMs: 50 }));
    const epochs = [];
    for (const e of candidates) e.on('elected', (t) => epochs.push(t.epoch));
    await firstElected(candidates);
    for (let round = 0; round < 6; round++) {
      const [leader] = leadersOf(candidates);
      assert.ok(leader, `round ${round}: nobody leads`);
      const next = firstElected(
        candidates.filter((e) => e !== leader),
        1000,
      );
      assert.equal(await leader.resign(), true);
      assert.equal(leader.isLeader, false);
      await next;
    }
    assert.equal(epochs.length, 7);
    for (let i = 1; i < epochs.length; i++) assert.ok(epochs[i] > epochs[i - 1], `epochs ${epochs}`);
    assert.ok(leadersOf(candidates).length <= 1);
    // Not the leader: resign() is a no-op.
    const follower = candidates.find((e) => !e.isLeader);
    assert.equal(await follower.resign(), false);
    await Promise.all(candidates.map((e) => e.stop()));
  });

  it('a lost lease is revoked with its reason, and the elector campaigns again', async () => {
    const ns = uniqueNs('lost');
    const lock = newLock(ns);
    const elector = elect(lock, 'G', { ttl: 3000, renewEveryMs: 100 });
    const [term] = await within(once(elector, 'elected'), 5000, 'elected');
    const revoked = once(elector, 'revoked');
    const reelected = new Promise((resolve) => elector.on('elected', (t) => t.epoch !== term.epoch && resolve(t)));
    await server.command('DEL', `${ns}:G`); // stolen: the next renewal finds the key missing
    const [info] = await within(revoked, 3000, 'revoked');
    assert.equal(info.reason, 'missing');
    assert.equal(info.error.code, 'ERR_LOCK_LOST');
    assert.equal(term.signal.aborted, true);
    const again = await within(reelected, 3000, 're-elected');
    assert.ok(again.epoch > term.epoch);
    await elector.stop();
  });

  it('is async-iterable: one item per term won; leaving the loop stops the elector', async () => {
    const lock = newLock(uniqueNs('iter'));
    const elector = elect(lock, 'I', { ttl: 5000, rejoinAfterMs: 0 });
    const seen = [];
    for await (const term of elector) {
      seen.push(term.epoch);
      assert.equal(term.signal.aborted, false);
      if (seen.length === 3) break;
      await elector.resign();
      assert.equal(term.signal.aborted, true);
    }
    assert.equal(seen.length, 3);
    assert.ok(seen[0] < seen[1] && seen[1] < seen[2]);
    assert.equal(elector.stopped, true);
    assert.equal(elector.isLeader, false);
  });

  it('without an error listener a closed Lock just stops the elector; with one, the error is delivered', async () => {
    const quiet = new Lock({ redis: server.url, namespace: uniqueNs('quiet') });
    const a = elect(quiet, 'Q');
    await once(a, 'elected');
    const b = elect(quiet, 'Q'); // waiting behind a
    await quiet.close();
    await within(once(b, 'stopped'), 5000, 'waiting elector stops');
    await within(a.stop(), 5000, 'leader stops');
    assert.equal(a.isLeader, false);

    const loud = new Lock({ redis: server.url, namespace: uniqueNs('loud') });
    await loud.close();
    const c = elect(loud, 'Q');
    const [err] = await within(once(c, 'error'), 5000, 'error event');
    assert.equal(err.code, 'ERR_CLOSED');
    await c.stop();
  });

  it('options.signal stops the elector; bad arguments throw at once', async () => {
    const lock = newLock(uniqueNs('signal'));
    const controller = new AbortController();
    const elector = elect(lock, 'S', { signal: controller.signal });
    await once(elector, 'elected');
    controller.abort();
    await within(once(elector, 'stopped'), 5000, 'stopped');
    assert.throws(
      () => lock.elect('', {}),
      (err) => err.code === 'ERR_INVALID_ARG',
    );
    assert.throws(
      () => lock.elect('x', { ttl: 0 }),
      (err) => err.code === 'ERR_INVALID_ARG',
    );
    assert.throws(
      () => lock.elect('x', { ttl: 1.5 }),
      (err) => err.code === 'ERR_INVALID_ARG',
    );
  });
});

describe('leader election through a Redis outage', () => {
  it('the leader is revoked when Redis goes away, nothing is thrown, and it is re-elected after', async () => {
    const own = await startRedis();
    try {
      const lock = new Lock({ redis: own.url, namespace: uniqueNs('outage'), connectTimeout: 300, commandTimeout: 300 });
      locks.push(lock);
      const elector = elect(lock, 'O', { ttl: 1000, retryMaxMs: 300 }); // no 'error' listener on purpose
      const [term] = await within(once(elector, 'elected'), 5000, 'elected');
      const revoked = once(elector, 'revoked');
      await own.stop();
      const [info] = await within(revoked, 5000, 'revoked while Redis is down');
      assert.equal(info.reason, 'unreachable');
      assert.equal(term.signal.aborted, true);
      assert.equal(elector.isLeader, false);
      await sleep(500); // campaigning against a dead server: retried quietly
      const again = once(elector, 'elected');
      await own.start();
      const [next] = await within(again, 10000, 're-elected after Redis came back');
      assert.equal(typeof next.epoch, 'number');
      assert.equal(elector.isLeader, true);
      await elector.stop();
    } finally {
      await own.cleanup();
    }
  });
});

describe('leader election across processes', () => {
  it('a SIGKILLed leader is replaced within its TTL', async () => {
    const ns = uniqueNs('kill');
    const ttl = 1500;
    const a = spawnElector({ namespace: ns, name: 'K', ttl });
    const [electedA] = await Promise.all([a.waitFor((m) => m.type === 'elected', 10000)]);
    const b = spawnElector({ namespace: ns, name: 'K', ttl });
    await b.waitFor((m) => m.type === 'ready', 10000);
    await sleep(200); // b is campaigning
    assert.equal(
      b.messages.some((m) => m.type === 'elected'),
      false,
      'two leaders at once',
    );
    const killedAt = Date.now();
    a.kill('SIGKILL');
    const electedB = await b.waitFor((m) => m.type === 'elected', ttl + 5000);
    const took = electedB.at - killedAt;
    assert.ok(took <= ttl + 1000, `failover took ${took} ms with a ${ttl} ms TTL`);
    assert.ok(electedB.epoch > electedA.epoch);
    b.send({ cmd: 'stop' });
    await b.waitFor((m) => m.type === 'stopped', 5000);
    await within(b.exit, 5000, 'child exit');
  });

  it('a leader that stops cleanly is replaced by another process at once', async () => {
    const ns = uniqueNs('clean');
    const a = spawnElector({ namespace: ns, name: 'C', ttl: 30000 });
    const electedA = await a.waitFor((m) => m.type === 'elected', 10000);
    const b = spawnElector({ namespace: ns, name: 'C', ttl: 30000 });
    const c = spawnElector({ namespace: ns, name: 'C', ttl: 30000 });
    await Promise.all([b, c].map((x) => x.waitFor((m) => m.type === 'ready', 10000)));
    await sleep(200);
    a.send({ cmd: 'stop' });
    const stopped = await a.waitFor((m) => m.type === 'stopped', 5000);
    const next = await within(Promise.race([b, c].map((x) => x.waitFor((m) => m.type === 'elected', 5000))), 5000, 'next leader');
    // 30 s TTL: only the release message can explain a take-over this fast.
    assert.ok(next.at - stopped.at < 1000, `hand-off took ${next.at - stopped.at} ms`);
    assert.ok(next.epoch > electedA.epoch);
    await sleep(200);
    const leaders = [b, c].filter((x) => x.messages.some((m) => m.type === 'elected'));
    assert.equal(leaders.length, 1, 'exactly one successor');
    for (const x of [b, c]) x.send({ cmd: 'stop' });
    await Promise.all([b, c].map((x) => within(x.exit, 5000, 'child exit')));
  });
});
