'use strict';
// Observability: node:diagnostics_channel messages (lib/diagnostics.js, src/core/events.rs) and
// NODE_DEBUG=redfour-native logging, against private redis-servers and the TCP fault proxy.
const { describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const dc = require('node:diagnostics_channel');
const util = require('node:util');
const { execFile } = require('node:child_process');
const { it, uniqueNs, rejectsWithCode, loadLock, ROOT } = require('./helpers/common');
const { startRedis, freePort, sleep } = require('./helpers/redis');
const { FaultProxy } = require('./helpers/proxy');

const PASSWORD = 's3cr3t-Pa55word-for-diagnostics';

let Lock;
let server; // plain
let guarded; // requirepass PASSWORD
const locks = [];
const proxies = [];

before(async () => {
  Lock = loadLock();
  [server, guarded] = await Promise.all([startRedis(), startRedis({ password: PASSWORD })]);
});

after(async () => {
  await Promise.allSettled(locks.map((l) => l.close()));
  await Promise.allSettled(proxies.map((p) => p.close()));
  await Promise.allSettled([server, guarded].filter(Boolean).map((s) => s.cleanup()));
});

function newLock(options) {
  const lock = new Lock({ namespace: uniqueNs('diag'), ...options });
  locks.push(lock);
  return lock;
}

/**
 * Records every message of the named channels (all of them by default) until `stop()`.
 * `wait(pred, ms)` resolves with the first recorded [name, message] matching.
 */
function record(names = Object.keys(Lock.channels)) {
  const seen = [];
  const waiters = new Set();
  const handlers = names.map((name) => {
    const handler = (message) => {
      seen.push([name, message]);
      for (const w of waiters) w();
    };
    dc.subscribe(Lock.channels[name], handler);
    return [name, handler];
  });
  return {
    seen,
    of: (name, pred = () => true) => seen.filter(([n, m]) => n === name && pred(m)).map(([, m]) => m),
    wait(pred, ms = 10000, what = 'a message') {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = seen.find(([n, m]) => pred(n, m));
          if (found) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(found[1]);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `no ${what} within ${ms} ms; seen: ${util.inspect(
                seen.map(([n, m]) => [n, m]),
                { depth: 1 },
              )}`,
            ),
          );
        }, ms);
        waiters.add(check);
        check();
      });
    },
    stop() {
      for (const [name, handler] of handlers) dc.unsubscribe(Lock.channels[name], handler);
    },
  };
}

describe('channel names', () => {
  it('are exported, frozen, and prefixed with the package name', () => {
    assert.ok(Object.isFrozen(Lock.channels));
    assert.equal(Lock.channels, require(ROOT).channels);
    for (const name of Object.values(Lock.channels)) assert.match(name, /^redfour-native:[a-z]+(:[a-z]+)?$/);
    assert.equal(Lock.channels.waitEnd, 'redfour-native:wait:end');
  });
});

describe('acquire, wait and release messages', () => {
  it('a wait publishes start and end (the same object) with its outcome and duration', async () => {
    const rec = record(['waitStart', 'waitEnd']);
    try {
      const lock = newLock({ redis: server.url });
      const ns = lock.namespace;
      const holder = await lock.acquireLock('job', 10_000);
      assert.equal(holder.success, true);
      const waiting = lock.waitAcquireLock('job', 5_000, 10_000);
      const start = await rec.wait((n, m) => n === 'waitStart' && m.namespace === ns, 5000, 'wait:start');
      assert.equal(start.operation, 'waitAcquireLock');
      assert.equal(start.id, 'job');
      assert.equal(start.ttl, 5_000);
      assert.equal(start.waitTtl, 10_000);
      assert.equal(start.outcome, undefined, 'the start message has no outcome yet');
      await sleep(100);
      await lock.releaseLock(holder);
      const got = await waiting;
      assert.equal(got.success, true);
      const end = rec.of('waitEnd', (m) => m.namespace === ns)[0];
      assert.ok(end, 'wait:end published before the caller got its result');
      assert.equal(end, start, 'start and end are one object');
      assert.equal(end.outcome, 'acquired');
      assert.equal(end.index, got.index);
      assert.equal(end.immediate, false);
      assert.equal(end.result, got);
      assert.equal(typeof end.durationMs, 'number');
      assert.ok(end.durationMs > 0);
      await lock.releaseLock(got);

      // A wait that runs out, and one that is aborted.
      const again = await lock.acquireLock('job', 10_000);
      const timedOut = await lock.waitAcquireLock('job', 1_000, 100);
      assert.equal(timedOut.success, false);
      const controller = new AbortController();
      const aborted = lock.waitAcquireLock('job', 1_000, 10_000, { signal: controller.signal });
      setTimeout(() => controller.abort(), 50);
      await rejectsWithCode(aborted, 'ERR_ABORTED');
      const ends = rec.of('waitEnd', (m) => m.namespace === ns);
      assert.deepEqual(
        ends.map((m) => m.outcome),
        ['acquired', 'timed-out', 'aborted'],
      );
      assert.equal(ends[1].index, -1);
      assert.equal(ends[2].code, 'ERR_ABORTED');
      assert.equal(ends[2].error.code, 'ERR_ABORTED');
      await lock.releaseLock(again);
    } finally {
      rec.stop();
    }
  });

  it('acquireLock and releaseLock publish their outcomes; acquire() and using() are waits', async () => {
    const rec = record(['acquireStart', 'acquireEnd', 'release', 'waitStart', 'waitEnd']);
    try {
      const lock = newLock({ redis: server.url });
      const ns = lock.namespace;
      const got = await lock.acquireLock(7, 5_000);
      const refused = await lock.acquireLock(7, 5_000);
      assert.equal(refused.success, false);
      const released = await lock.releaseLock(got);
      const expired = await lock.releaseLock(got);
      assert.equal(expired.result, 'expired');

      const starts = rec.of('acquireStart', (m) => m.namespace === ns);
      const ends = rec.of('acquireEnd', (m) => m.namespace === ns);
      assert.equal(starts.length, 2);
      assert.deepEqual(
        ends.map((m) => [m.operation, m.id, m.ttl, m.outcome, m.index]),
        [
          ['acquireLock', 7, 5_000, 'acquired', got.index],
          ['acquireLock', 7, 5_000, 'not-acquired', -1],
        ],
      );
      assert.ok(ends.every((m) => m.durationMs > 0));
      const releases = rec.of('release', (m) => m.namespace === ns);
      assert.deepEqual(
        releases.map((m) => [m.id, m.index, m.result, m.success]),
        [
          [7, got.index, released.result, true],
          [7, got.index, 'expired', true],
        ],
      );

      const value = await lock.using('u', 5_000, async (signal, held) => held.index, { waitMs: 1_000 });
      const held = await lock.acquire('a', 5_000);
      await held.release();
      const waits = rec.of('waitEnd', (m) => m.namespace === ns);
      assert.deepEqual(
        waits.map((m) => [m.operation, m.outcome, m.immediate, m.waitTtl]),
        [
          ['using', 'acquired', true, 1_000],
          ['acquire', 'acquired', true, 0],
        ],
      );
      assert.equal(waits[0].index, value);
      assert.equal(waits[1].index, held.index);
      // HeldLock#release goes through releaseLock.
      assert.equal(rec.of('release', (m) => m.namespace === ns && m.id === 'a')[0].result, 'released');

      // acquire() that does not get the lock in time: timed out, ERR_NOT_ACQUIRED.
      const blocker = await lock.acquireLock('b', 5_000);
      await rejectsWithCode(lock.acquire('b', 5_000, { waitMs: 100 }), 'ERR_NOT_ACQUIRED');
      const last = rec.of('waitEnd', (m) => m.namespace === ns).at(-1);
      assert.deepEqual([last.operation, last.outcome, last.code], ['acquire', 'timed-out', 'ERR_NOT_ACQUIRED']);
      await lock.releaseLock(blocker);
    } finally {
      rec.stop();
    }
  });

  it('calls made while nobody subscribes publish nothing later (no stray end messages)', async () => {
    const lock = newLock({ redis: server.url });
    const pending = lock.waitAcquireLock('x', 1_000, 1_000);
    const rec = record(['waitEnd']); // subscribed after the wait started
    try {
      assert.equal((await pending).success, true);
      assert.equal(rec.of('waitEnd', (m) => m.namespace === lock.namespace).length, 0);
    } finally {
      rec.stop();
    }
  });
});

describe('lease messages', () => {
  it('renewals are published, and a lease lost behind its back says why', async () => {
    const rec = record(['leaseRenewed', 'leaseLost']);
    try {
      const lock = newLock({ redis: server.url });
      const ns = lock.namespace;
      const held = await lock.acquire('lease', 600, { renewEveryMs: 100 });
      const renewed = await rec.wait((n, m) => n === 'leaseRenewed' && m.namespace === ns, 5000, 'lease:renewed');
      assert.equal(renewed.id, 'lease');
      assert.equal(renewed.index, held.index);
      assert.ok(renewed.remainingMs > 0 && renewed.remainingMs <= 600, `remainingMs ${renewed.remainingMs}`);

      await server.command('DEL', `${ns}:lease`); // the key vanishes behind the holder's back
      const lost = await rec.wait((n, m) => n === 'leaseLost' && m.namespace === ns, 5000, 'lease:lost');
      assert.deepEqual({ ...lost }, { namespace: ns, id: 'lease', index: held.index, reason: 'missing' });
      assert.equal(held.signal.aborted, true);
      assert.equal(held.signal.reason.reason, 'missing');
      const before = rec.of('leaseRenewed', (m) => m.namespace === ns).length;
      await sleep(300);
      assert.equal(rec.of('leaseRenewed', (m) => m.namespace === ns).length, before, 'no renewals after the loss');
    } finally {
      rec.stop();
    }
  });
});

describe('connection messages', () => {
  it('a cut subscriber connection is reported lost, then reconnected, naming the proxy', async () => {
    const proxy = await FaultProxy.start({ port: server.port });
    proxies.push(proxy);
    const rec = record(['connected', 'connectionLost', 'connectFailed']);
    try {
      const endpoint = `127.0.0.1:${proxy.port}`;
      const lock = newLock({ redis: proxy.url });
      // The wait opens the engine's connections, the release the plain calls' connection.
      const first = await lock.waitAcquireLock('c', 1_000, 1_000);
      await lock.releaseLock(first);
      await rec.wait((n, m) => n === 'connected' && m.endpoint === endpoint && m.connection === 'subscriber', 5000, 'subscriber connected');
      const opened = rec.of('connected', (m) => m.endpoint === endpoint);
      assert.deepEqual(opened.map((m) => [m.connection, m.reconnect]).sort(), [
        ['calls', false],
        ['commands', false],
        ['subscriber', false],
      ]);

      proxy.cut('subscriber');
      const lost = await rec.wait(
        (n, m) => n === 'connectionLost' && m.endpoint === endpoint && m.connection === 'subscriber',
        10000,
        'subscriber lost',
      );
      assert.equal(typeof lost.reason, 'string');
      const back = await rec.wait(
        (n, m) => n === 'connected' && m.endpoint === endpoint && m.connection === 'subscriber' && m.reconnect,
        10000,
        'subscriber reconnected',
      );
      assert.deepEqual({ ...back }, { endpoint, connection: 'subscriber', reconnect: true });

      // Both command connections (the plain calls' and the engine's): cut, the next call on each
      // fails or is retried, a later one works.
      proxy.cut('command');
      for (const [connection, call] of [
        ['calls', (i) => lock.acquireLock(`after-cut-${i}`, 1_000)],
        ['commands', (i) => lock.waitAcquireLock(`after-cut-wait-${i}`, 1_000, 100)],
      ]) {
        for (let i = 0; i < 20; i++) {
          const answer = await call(i).catch((err) => err);
          if (!(answer instanceof Error)) break;
          await sleep(50);
        }
        await rec.wait(
          (n, m) => n === 'connectionLost' && m.endpoint === endpoint && m.connection === connection,
          5000,
          `${connection} lost`,
        );
        await rec.wait(
          (n, m) => n === 'connected' && m.endpoint === endpoint && m.connection === connection && m.reconnect,
          5000,
          `${connection} reconnected`,
        );
      }
    } finally {
      rec.stop();
    }
  });

  it('a server that cannot be reached is reported as a failed connect', async () => {
    const port = await freePort(); // nothing listens there
    const rec = record(['connectFailed']);
    try {
      const lock = newLock({ redis: `redis://127.0.0.1:${port}`, connectTimeout: 500 });
      await rejectsWithCode(lock.acquireLock('x', 1_000), 'ERR_REDIS');
      const failed = await rec.wait((n, m) => m.endpoint === `127.0.0.1:${port}`, 5000, 'connection:failed');
      assert.equal(failed.connection, 'calls');
      assert.equal(typeof failed.error, 'string');
    } finally {
      rec.stop();
    }
  });
});

describe('quorum messages', () => {
  it('quorum mode reports the majority lost, once, and regained', async () => {
    const nodes = await Promise.all([startRedis(), startRedis(), startRedis()]);
    const rec = record(['quorumLost', 'quorumRegained']);
    try {
      const endpoints = nodes.map((n) => `127.0.0.1:${n.port}`);
      const ours = (m) => m.endpoints.join() === endpoints.join();
      const lock = newLock({ redis: nodes.map((n) => n.url), connectTimeout: 300, commandTimeout: 300 });
      assert.equal((await lock.acquireLock('q', 5_000)).success, true);
      await Promise.all([nodes[0].stop(), nodes[1].stop()]);
      await rejectsWithCode(lock.acquireLock('q2', 5_000), 'ERR_NO_QUORUM');
      await rejectsWithCode(lock.acquireLock('q3', 5_000), 'ERR_NO_QUORUM');
      const lost = await rec.wait((n, m) => n === 'quorumLost' && ours(m), 5000, 'quorum:lost');
      assert.deepEqual({ ...lost }, { endpoints, answered: 1, needed: 2 });
      await nodes[0].start();
      for (let i = 0; i < 100; i++) {
        const answer = await lock.acquireLock(`q4-${i}`, 5_000).catch((err) => err);
        if (!(answer instanceof Error) && answer.success) break;
        await sleep(50);
      }
      const regained = await rec.wait((n, m) => n === 'quorumRegained' && ours(m), 5000, 'quorum:regained');
      assert.deepEqual({ ...regained }, { endpoints, answered: 2, needed: 2 });
      assert.equal(rec.of('quorumLost', ours).length, 1, 'one loss per outage');
    } finally {
      rec.stop();
      await Promise.allSettled(nodes.map((n) => n.cleanup()));
    }
  });
});

describe('no secrets', () => {
  it('no message carries the password, whatever happens', async () => {
    const proxy = await FaultProxy.start({ port: guarded.port });
    proxies.push(proxy);
    const rec = record();
    try {
      const url = `redis://:${PASSWORD}@127.0.0.1:${proxy.port}`;
      const lock = newLock({ redis: url });
      const holder = await lock.acquireLock('s', 5_000);
      const waiting = lock.waitAcquireLock('s', 1_000, 5_000);
      await sleep(50);
      await lock.releaseLock(holder);
      await lock.releaseLock(await waiting);
      const held = await lock.acquire('lease', 300, { renewEveryMs: 50 });
      await sleep(120);
      proxy.cut('all');
      await rec.wait((n, m) => n === 'connected' && m.reconnect && m.connection === 'subscriber', 10000, 'reconnect');
      await guarded.command('DEL', `${lock.namespace}:lease`);
      await rec.wait((n) => n === 'leaseLost', 5000, 'lease:lost');
      await held.release();
      // Wrong password and a server that is not there: errors in messages.
      const wrong = newLock({ redis: `redis://:${PASSWORD}-wrong@127.0.0.1:${guarded.port}`, connectTimeout: 500 });
      await rejectsWithCode(wrong.acquireLock('x', 1_000), 'ERR_REDIS');
      const gone = newLock({ redis: `redis://user:${PASSWORD}@127.0.0.1:${await freePort()}`, connectTimeout: 500 });
      await rejectsWithCode(gone.waitAcquireLock('x', 1_000, 500), 'ERR_REDIS');
      await rec.wait((n, m) => n === 'connectFailed' && m.endpoint === `127.0.0.1:${guarded.port}`, 5000, 'failed AUTH');

      const names = new Set(rec.seen.map(([n]) => n));
      for (const name of [
        'acquireEnd',
        'waitEnd',
        'release',
        'leaseRenewed',
        'leaseLost',
        'connected',
        'connectionLost',
        'connectFailed',
      ]) {
        assert.ok(names.has(name), `saw ${name}`);
      }
      const text = util.inspect(rec.seen, { depth: 6, showHidden: true });
      assert.ok(!text.includes(PASSWORD), 'a message carries the password');
      assert.ok(!text.includes(encodeURIComponent(PASSWORD)));
    } finally {
      rec.stop();
    }
  });
});

describe('NODE_DEBUG=redfour-native', () => {
  function runChild(env, script) {
    return new Promise((resolve) => {
      const childEnv = { ...process.env, ...env };
      delete childEnv.NODE_TEST_CONTEXT;
      execFile(process.execPath, ['-e', script], { env: childEnv, timeout: 30000, cwd: ROOT }, (error, stdout, stderr) => {
        resolve({ error, stdout, stderr });
      });
    });
  }

  const script = `
    const Lock = require(${JSON.stringify(ROOT)});
    (async () => {
      const lock = new Lock({ redis: process.env.URL, namespace: 'dbg' });
      const holder = await lock.acquireLock('job', 5000);
      const waiting = lock.waitAcquireLock('job', 1000, 5000);
      setTimeout(() => lock.releaseLock(holder), 50);
      await lock.releaseLock(await waiting);
      await lock.waitAcquireLock('job', 1000, 100).then((r) => lock.releaseLock(r));
      await lock.close();
      console.log('done');
    })().catch((err) => { console.error('FAILED', err); process.exit(1); });
  `;

  it('logs connections and waits to stderr, without the password', async () => {
    const url = `redis://:${PASSWORD}@127.0.0.1:${guarded.port}`;
    const { error, stdout, stderr } = await runChild({ NODE_DEBUG: 'redfour-native', URL: url }, script);
    assert.equal(error, null, `child failed: ${error}\n${stderr}`);
    assert.match(stdout, /done/);
    assert.match(stderr, new RegExp(`REDFOUR-NATIVE \\d+: connected to 127\\.0\\.0\\.1:${guarded.port} \\(commands connection\\)`));
    assert.match(stderr, /REDFOUR-NATIVE \d+: connected to .* \(subscriber connection\)/);
    assert.match(stderr, /waitAcquireLock: waiting for dbg:job \(ttl 1000 ms, waitTtl 5000 ms\)/);
    assert.match(stderr, /waitAcquireLock: wait for dbg:job ended: acquired \(index \d+\) after [\d.]+ ms/);
    assert.ok(!stderr.includes(PASSWORD), `the log carries the password:\n${stderr}`);
    assert.ok(!/acquireLock: |release/.test(stderr.replace(/waitAcquireLock/g, '')), 'plain acquire/release calls are not logged');
  });

  it('logs nothing without NODE_DEBUG', async () => {
    const { error, stderr } = await runChild({ NODE_DEBUG: '', URL: server.url }, script);
    assert.equal(error, null, `child failed: ${error}\n${stderr}`);
    assert.doesNotMatch(stderr, /REDFOUR-NATIVE/);
  });
});
