'use strict';
// Fuzzing the public JavaScript API (the short CI version of chaos/fuzz.js, which makes 100,000+
// calls): random types, sizes, unicode, huge and negative numbers, throwing getters, Proxies, calls
// after close and callbacks that throw, in a child process. No crash, no hang, no unhandled
// rejection, every error with a documented code; no violation is excused. The tests after it
// reproduce bugs the fuzzer found (fixed; regression tests).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { runFuzz } = require('../chaos/fuzz');
const { startRedis } = require('./helpers/redis');
const { loadLock, uniqueNs } = require('./helpers/common');

const SEED = Number(process.env.FUZZ_SEED || 20261124);

describe('fuzzing the public API', () => {
  it(`5,000 random calls (seed ${SEED}): no crash, hang, unhandled rejection or undocumented error`, { timeout: 60000 }, async () => {
    // Includes Locks with TLS to the plain-text port (their handshake never completes): since the
    // fix of bug 1 their calls fail within one connect timeout.
    const result = await runFuzz({ calls: 5000, seed: SEED, tls: true, roundSize: 250, timeoutMs: 50000 });
    const s = result.report && result.report.stats;
    assert.ok(
      result.ok,
      `fuzz failed (seed ${SEED}): ${JSON.stringify(result.problems || result.problem)}\n${JSON.stringify((result.violations || []).slice(0, 10), null, 1)}\n${result.output || ''}`,
    );
    assert.equal(result.exit.signal, null);
    assert.ok(s.calls >= 5000);
    // The fuzzer really reached Redis, and really exercised the error paths.
    assert.ok(s.resolved > 500, `only ${s.resolved} calls resolved`);
    assert.ok(s.rejected.ERR_INVALID_ARG > 500, JSON.stringify(s.rejected));
    assert.ok(s.rejected.ERR_CLOSED > 0, JSON.stringify(s.rejected));
    assert.ok(s.callbackThrows > 50);
    // Every throwing callback surfaced exactly once as an uncaughtException, nothing else did.
    assert.equal(s.uncaughtCallbackBooms, s.callbackThrows);
  });
});

describe('bugs the fuzzer found (fixed)', () => {
  let Lock;
  let server;
  const locks = [];
  before(async () => {
    Lock = loadLock();
    server = await startRedis();
  });
  after(async () => {
    await Promise.allSettled(locks.map((l) => l.close()));
    await server.cleanup();
  });

  it('a Symbol or null-prototype object as host/port/db is ERR_INVALID_ARG', {}, () => {
    const bad = [
      { host: '127.0.0.1', port: Symbol('port') },
      { host: Object.create(null), port: server.port },
      { host: '127.0.0.1', port: server.port, db: Symbol('db') },
      { url: server.url, db: Symbol('db') },
      { host: '127.0.0.1', port: [Object.create(null)] },
    ];
    for (const redis of bad) {
      assert.throws(
        () => new Lock({ redis }),
        (err) => err.code === 'ERR_INVALID_ARG',
        `options.redis ${require('node:util').inspect(redis)}`,
      );
    }
  });

  it(
    'concurrent calls to a server that accepts but never answers all fail within one connect timeout',
    {
      timeout: 20000,
    },
    async () => {
      const sockets = [];
      const silent = net.createServer((s) => {
        sockets.push(s);
        s.on('error', () => {});
      });
      await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve));
      try {
        const lock = new Lock({
          redis: `redis://127.0.0.1:${silent.address().port}`,
          namespace: uniqueNs('silent'),
          connectTimeout: 300,
          commandTimeout: 300,
        });
        locks.push(lock);
        const started = Date.now();
        const took = await Promise.all(
          [1, 2, 3, 4, 5, 6].map((i) =>
            lock.acquireLock(`k${i}`, 1000).then(
              () => {
                throw new Error('acquired from a silent server');
              },
              (err) => {
                assert.equal(err.code, 'ERR_REDIS');
                return Date.now() - started;
              },
            ),
          ),
        );
        // Bound: 2 x connectTimeout (the outer connect limit) + slack.
        assert.ok(Math.max(...took) < 1500, `settled after ${took.join(', ')} ms`);
      } finally {
        for (const s of sockets) s.destroy();
        silent.close();
      }
    },
  );

  it("an error thrown by the caller's own getter is not reported as ERR_INTERNAL", {}, async () => {
    const lock = new Lock({ redis: server.url, namespace: uniqueNs('getter') });
    locks.push(lock);
    const mine = new Error('from my getter');
    const hostile = {
      get id() {
        throw mine;
      },
      index: 1,
    };
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    const outcomes = await Promise.allSettled([
      lock.releaseLock(hostile),
      lock.renewLock(hostile, 1000),
      lock.acquire('a', 1000, proxy),
      lock.releaseLock(proxy),
    ]);
    for (const outcome of outcomes) {
      assert.equal(outcome.status, 'rejected');
      const err = outcome.reason;
      assert.ok(
        err === mine || err.code === 'ERR_INVALID_ARG' || (err instanceof TypeError && !err.code),
        `got ${err.code}: ${err.message}`,
      );
    }
  });

  it('a TLS ca/cert/key array with an empty element is ERR_INVALID_ARG', {}, () => {
    for (const tls of [{ ca: [undefined] }, { cert: [null, 'x'] }, { key: [[]] }]) {
      assert.throws(
        () => new Lock({ redis: 'rediss://127.0.0.1:1', tls }),
        (err) => err.code === 'ERR_INVALID_ARG',
        JSON.stringify(tls),
      );
    }
  });

  it('acquire()/using() with a signal whose getters or addEventListener throw is not ERR_INTERNAL', {}, async () => {
    const lock = new Lock({ redis: server.url, namespace: uniqueNs('signal') });
    locks.push(lock);
    const mine = new Error('from my signal');
    const signals = [
      {
        aborted: false,
        addEventListener() {
          throw mine;
        },
      },
      {
        get aborted() {
          throw mine;
        },
        addEventListener() {},
      },
    ];
    const outcomes = await Promise.allSettled(
      signals.flatMap((signal) => [lock.acquire('a', 1000, { signal }), lock.using('b', 1000, () => 1, { signal })]),
    );
    for (const outcome of outcomes) {
      assert.equal(outcome.status, 'rejected');
      const err = outcome.reason;
      assert.ok(err === mine || err.code === 'ERR_INVALID_ARG', `got ${err.code}: ${err.message}`);
    }
  });
});
