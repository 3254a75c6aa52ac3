'use strict';
// The plain calls' own connection (lib/plain-calls.js, lib/redis-connection.js): acquireLock,
// releaseLock, renewLock and extendLock of a single-server Lock go from the JavaScript thread on
// a socket of their own. What can go wrong on that path, judged from Redis (HGET, PTTL, the
// counter, INFO commandstats) and from the caller's clock, with the fault proxy between the Lock
// and its private redis-server:
//
// 1. A reply lost with its connection: the call is sent once more and finds its own grant (one
//    grant, one index, the key's TTL no longer than asked).
// 2. A connection the server closed while idle: the next call reconnects without an error.
// 3. A black-holed connection: the call fails with ERR_REDIS within its command timeout, the
//    process is not held open, and the next call works on a fresh connection.
// 4. Scripts flushed from the server: calls keep working (EVAL again), in order.
// 5. A refused AUTH: ERR_REDIS naming the refusal, at once, with nothing left behind.
// 6. Many calls in one turn share script calls, and their results are each their own.
// 7. A JavaScript thread blocked past the command timeout does not fail a call whose reply came
//    in meanwhile (timers run before I/O when the loop resumes), nor a connect that completed.
// 8. A unix socket, with a database and a password: the keys land where the server says.

const { describe } = require('node:test');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const assert = require('node:assert/strict');
const { startRedis } = require('./helpers/redis');
const { FaultProxy } = require('./helpers/proxy');
const { it, loadLock, uniqueNs, sleep, rejectsWithCode, within } = require('./helpers/common');

const Lock = loadLock();

async function setup(t, { proxy = true, serverOptions } = {}) {
  const server = await startRedis(serverOptions);
  const ctx = { server, ns: uniqueNs('plain'), locks: [], proxy: proxy ? await FaultProxy.start({ port: server.port }) : null };
  ctx.lock = (options = {}) => {
    const lock = new Lock({ redis: ctx.proxy ? ctx.proxy.url : server.url, namespace: ctx.ns, ...options });
    ctx.locks.push(lock);
    return lock;
  };
  ctx.key = (id) => `${ctx.ns}:${id}`;
  t.after(async () => {
    await Promise.allSettled(ctx.locks.map((l) => l.close()));
    if (ctx.proxy) await ctx.proxy.close();
    await server.cleanup();
  });
  return ctx;
}

async function until(what, pred, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe('plain calls on their own connection', () => {
  it('an acquire whose reply was lost with its connection is sent again and finds its own grant', async (t) => {
    const ctx = await setup(t);
    const lock = ctx.lock();
    await lock.releaseLock(await lock.acquireLock('warm', 1000)); // the connection is up
    const counterBefore = Number(await ctx.server.command('GET', `${ctx.ns}index`));
    ctx.proxy.hold('command');
    const pending = lock.acquireLock('lost-reply', 5000);
    // Redis ran the acquire: the lock is granted, its reply held in the proxy.
    await until('the grant', async () => (await ctx.server.command('EXISTS', ctx.key('lost-reply'))) === 1);
    ctx.proxy.cut('command');
    const got = await within(pending, 5000, 'the repeated acquire');
    assert.equal(got.success, true, 'the repeated attempt recognised its own grant');
    assert.equal(got.index, Number(await ctx.server.command('HGET', ctx.key('lost-reply'), 'index')));
    assert.equal(Number(await ctx.server.command('GET', `${ctx.ns}index`)), counterBefore + 1, 'exactly one grant');
    assert.ok(got.ttl <= 5000 && got.ttl > 0, `ttl ${got.ttl}`);
    assert.ok((await ctx.server.command('PTTL', ctx.key('lost-reply'))) <= got.ttl, 'no more time claimed than Redis keeps');
    assert.equal((await lock.releaseLock(got)).result, 'released');
  });

  it('a connection the server closed while idle is replaced by the next call', async (t) => {
    const ctx = await setup(t);
    const lock = ctx.lock();
    await lock.releaseLock(await lock.acquireLock('a', 1000));
    ctx.proxy.cut('command');
    await sleep(50);
    const got = await lock.acquireLock('b', 1000);
    assert.equal(got.success, true);
    assert.equal((await lock.releaseLock(got)).result, 'released');
  });

  it('a black-holed connection fails the call within its command timeout, and the next call reconnects', async (t) => {
    const ctx = await setup(t);
    const lock = ctx.lock({ commandTimeout: 300 });
    await lock.releaseLock(await lock.acquireLock('warm', 1000));
    ctx.proxy.blackhole('command');
    const started = Date.now();
    const err = await rejectsWithCode(within(lock.acquireLock('x', 1000), 5000, 'the timed-out acquire'), 'ERR_REDIS');
    const took = Date.now() - started;
    assert.match(err.message, /no reply within 300 ms/);
    assert.match(err.message, /127\.0\.0\.1:\d+/, 'the message names the endpoint');
    assert.ok(took < 3000, `failed after ${took} ms`);
    ctx.proxy.heal();
    const got = await within(lock.acquireLock('y', 1000), 5000, 'the acquire after heal');
    assert.equal(got.success, true);
  });

  it('scripts flushed from the server are loaded again, and calls keep their order', async (t) => {
    const ctx = await setup(t, { proxy: false });
    const lock = ctx.lock();
    await lock.releaseLock(await lock.acquireLock('before', 1000));
    await ctx.server.command('SCRIPT', 'FLUSH');
    // Sequential calls after the flush, and a burst in one turn: each answers as if nothing happened.
    const held = await lock.acquireLock('after', 5000);
    assert.equal(held.success, true);
    assert.equal((await lock.renewLock(held, 6000)).result, 'renewed');
    await ctx.server.command('SCRIPT', 'FLUSH');
    const burst = await Promise.all([lock.acquireLock('after', 5000), lock.releaseLock(held), lock.acquireLock('after', 5000)]);
    assert.deepEqual(
      burst.map((r) => r.success),
      [false, true, true],
      'acquire (held), release, acquire: in the order made',
    );
    assert.equal((await lock.releaseLock(burst[2])).result, 'released');
  });

  it('a refused AUTH fails the call with ERR_REDIS at once, and nothing is left behind', async (t) => {
    const ctx = await setup(t, { proxy: false, serverOptions: { password: 'right' } });
    const url = new URL(ctx.server.url);
    url.password = 'hunter2';
    const lock = new Lock({ redis: url.toString(), namespace: ctx.ns });
    ctx.locks.push(lock);
    const err = await rejectsWithCode(within(lock.acquireLock('x', 1000), 5000, 'the refused acquire'), 'ERR_REDIS');
    assert.match(err.message, /WRONGPASS|invalid password|AUTH/i);
    assert.doesNotMatch(err.message, /hunter2/, 'no password in the message');
    assert.deepEqual(await ctx.server.keys(`${ctx.ns}*`), []);
  });

  it('calls made in one turn share script calls and each gets its own answer', async (t) => {
    const ctx = await setup(t, { proxy: false });
    const lock = ctx.lock();
    await lock.releaseLock(await lock.acquireLock('warm', 1000));
    const before = await ctx.server.scriptCalls();
    // The first goes at once, the other 99 in batches of at most 32. Each id twice:
    const ids = Array.from({ length: 100 }, (_, i) => `id${i % 50}`);
    const results = await Promise.all(ids.map((id) => lock.acquireLock(id, 5000)));
    const used = (await ctx.server.scriptCalls()) - before;
    assert.ok(used <= 5, `100 calls took ${used} script calls`);
    for (let i = 0; i < 50; i++) {
      assert.equal(results[i].success, true, `first acquire of id${i}`);
      assert.equal(results[i + 50].success, false, `second acquire of id${i}`);
      assert.equal(results[i].index, Number(await ctx.server.command('HGET', ctx.key(`id${i}`), 'index')));
    }
    const released = await Promise.all(results.slice(0, 50).map((r) => lock.releaseLock(r)));
    assert.ok(released.every((r) => r.result === 'released'));
    assert.deepEqual(await ctx.server.keys(`${ctx.ns}:*`), []);
  });

  it('a reply that arrived while the JavaScript thread was blocked past the timeout is not a timeout', async (t) => {
    const ctx = await setup(t, { proxy: false });
    const block = (ms) => {
      const end = Date.now() + ms;
      while (Date.now() < end);
    };
    // The connect itself completes while the thread is blocked.
    const lock = ctx.lock({ commandTimeout: 100, connectTimeout: 100 });
    const tick = () => new Promise((resolve) => process.nextTick(resolve));
    const first = lock.acquireLock('blocked', 5000);
    await tick(); // the call's turn ended: its request is written (the connect started)
    block(400);
    assert.equal((await first).success, true, 'the first call (connect included) was not failed by its timers');
    const second = lock.renewLock(await first, 5000);
    await tick();
    block(400);
    assert.equal((await second).result, 'renewed');
  });

  it('a unix socket with a database and a password', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'redfour-native-unix-'));
    const socket = path.join(dir, 'redis.sock');
    const ctx = await setup(t, {
      proxy: false,
      serverOptions: { password: 'pw', args: ['--unixsocket', socket, '--unixsocketperm', '700'] },
    });
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const lock = ctx.lock({ redis: { path: socket, password: 'pw', db: 2 } });
    const held = await lock.acquireLock('u', 5000);
    assert.equal(held.success, true);
    await ctx.server.command('SELECT', '2');
    assert.equal(await ctx.server.command('HGET', ctx.key('u'), 'index'), String(held.index));
    const waiting = lock.waitAcquireLock('u', 5000, 5000); // the core's connections over the same socket
    await sleep(50);
    assert.equal((await lock.releaseLock(held)).result, 'released');
    assert.equal((await waiting).success, true);
  });
});
