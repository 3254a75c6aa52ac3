'use strict';
// An existing client as `redis`: ioredis, node-redis v4, node-redis 2.x (redfour's own, with
// `.address`). On a password-protected server every connection we open must authenticate
// (redfour builds its subscriber from `.address` alone and loses the password).
const { describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const IORedis = require('ioredis');
const nodeRedis = require('redis');
const { startRedis } = require('./helpers/redis');
const { it, loadLock, uniqueNs, sleep, within } = require('./helpers/common');

const PASSWORD = 'p@ss:w/rd "x"';
let open; // no password
let secured; // --requirepass
let Lock;
const locks = [];
const userClients = [];

before(async () => {
  Lock = loadLock();
  open = await startRedis();
  secured = await startRedis({ password: PASSWORD });
});

after(async () => {
  await Promise.allSettled(locks.map((l) => l.close()));
  for (const c of userClients) {
    try {
      await c();
    } catch {
      /* best effort */
    }
  }
  if (open) await open.cleanup();
  if (secured) await secured.cleanup();
});

/** Full cycle on a Lock: acquire, contend, wake a waiter through pub/sub, release. */
async function exercise(lock, server) {
  const ns = lock.namespace;
  const other = lock; // same instance: waits are still woken through the subscriber
  const held = await lock.acquireLock('c', 20000);
  assert.equal(held.success, true);
  assert.equal(await server.command('HGET', `${ns}:c`, 'index'), String(held.index));
  const pending = other.waitAcquireLock('c', 5000, 0);
  await sleep(200);
  const releasedAt = Date.now();
  assert.equal((await lock.releaseLock(held)).result, 'released');
  const got = await within(pending, 10000, 'waiter woken by release');
  assert.equal(got.success, true);
  assert.ok(Date.now() - releasedAt < 5000, 'wake-up took too long (subscriber not working?)');
  assert.equal((await lock.renewLock(got, 9000)).result, 'renewed');
  assert.equal((await lock.releaseLock(got)).result, 'released');
}

function ioredisClient(server, extra = {}) {
  const c = new IORedis({ host: '127.0.0.1', port: server.port, password: server.password, lazyConnect: true, ...extra });
  c.on('error', () => {});
  userClients.push(() => c.disconnect());
  return c;
}

async function nodeRedisV4(options) {
  const c = nodeRedis.createClient(options);
  c.on('error', () => {});
  await c.connect();
  userClients.push(() => c.disconnect());
  return c;
}

describe('existing client instances', () => {
  it('ioredis client', async () => {
    const client = ioredisClient(open);
    const lock = new Lock({ redis: client, namespace: uniqueNs('io') });
    locks.push(lock);
    await exercise(lock, open);
  });

  it('ioredis client created from a URL string', async () => {
    const client = new IORedis(`redis://127.0.0.1:${open.port}/0`, { lazyConnect: true });
    client.on('error', () => {});
    userClients.push(() => client.disconnect());
    const lock = new Lock({ redis: client, namespace: uniqueNs('iourl') });
    locks.push(lock);
    await exercise(lock, open);
  });

  it('node-redis v4 client ({url})', async () => {
    const client = await nodeRedisV4({ url: `redis://127.0.0.1:${open.port}` });
    const lock = new Lock({ redis: client, namespace: uniqueNs('nr4') });
    locks.push(lock);
    await exercise(lock, open);
    // The user's client is still theirs and still works.
    assert.equal(await client.ping(), 'PONG');
  });

  it('options object {host, port} instead of a URL', async () => {
    const lock = new Lock({ redis: { host: '127.0.0.1', port: open.port }, namespace: uniqueNs('opts') });
    locks.push(lock);
    await exercise(lock, open);
  });
});

describe('password-protected server (--requirepass)', () => {
  it('the server really requires the password', async () => {
    const noAuth = new Lock({ redis: `redis://127.0.0.1:${secured.port}`, namespace: uniqueNs('noauth'), connectTimeout: 1000 });
    locks.push(noAuth);
    await assert.rejects(noAuth.acquireLock('x', 1000), (e) => e.code === 'ERR_REDIS');
  });

  it('URL with password', async () => {
    const lock = new Lock({ redis: secured.url, namespace: uniqueNs('pwurl') });
    locks.push(lock);
    await exercise(lock, secured);
  });

  it('ioredis client with password: our Lock (and its subscriber) authenticates', async () => {
    const client = ioredisClient(secured);
    const lock = new Lock({ redis: client, namespace: uniqueNs('iopw') });
    locks.push(lock);
    await exercise(lock, secured);
  });

  it('node-redis v4 client with {url} containing the password', async () => {
    const client = await nodeRedisV4({ url: secured.url });
    const lock = new Lock({ redis: client, namespace: uniqueNs('nr4pw') });
    locks.push(lock);
    await exercise(lock, secured);
  });

  it('node-redis v4 client with {socket, password}', async () => {
    const client = await nodeRedisV4({ socket: { host: '127.0.0.1', port: secured.port }, password: PASSWORD });
    const lock = new Lock({ redis: client, namespace: uniqueNs('nr4sock') });
    locks.push(lock);
    await exercise(lock, secured);
  });

  it('a wrong password and the right one on the same host:port are never mixed up (either order)', async () => {
    for (const order of ['wrong-first', 'right-first']) {
      const make = (pw) => {
        const l = new Lock({
          redis: `redis://:${encodeURIComponent(pw)}@127.0.0.1:${secured.port}`,
          namespace: uniqueNs(`mix-${order}`),
          connectTimeout: 1000,
        });
        locks.push(l);
        return l;
      };
      const [wrong, right] = order === 'wrong-first' ? [make('not-the-password'), make(PASSWORD)] : [null, make(PASSWORD)];
      const rightResult = await right.acquireLock('m', 5000);
      assert.equal(rightResult.success, true);
      const wrongLock = wrong || make('not-the-password');
      await assert.rejects(
        wrongLock.acquireLock('m2', 5000),
        (e) => e.code === 'ERR_REDIS',
        `${order}: a Lock with a wrong password must not ride on an authenticated connection`,
      );
      assert.equal(await secured.command('EXISTS', `${wrongLock.namespace}:m2`), 0);
      await right.releaseLock(rightResult);
    }
  });

  it('ioredis client with a database number: keys go to that database', async () => {
    const client = ioredisClient(secured, { db: 3 });
    const lock = new Lock({ redis: client, namespace: uniqueNs('db3') });
    locks.push(lock);
    const r = await lock.acquireLock('d', 5000);
    assert.equal(r.success, true);
    const db3 = secured.client({ db: 3 });
    assert.equal(await db3.hget(`${lock.namespace}:d`, 'index'), String(r.index));
    assert.equal(await secured.command('EXISTS', `${lock.namespace}:d`), 0, 'written to db 0 instead of db 3');
    const pending = lock.waitAcquireLock('d', 5000, 0);
    await sleep(100);
    await lock.releaseLock(r);
    assert.equal((await within(pending, 5000, 'waiter in db 3')).success, true);
  });

  it("node-redis 2.x client (redfour's own, detected by .address) with password", async () => {
    let legacy;
    try {
      legacy = require('redfour/node_modules/redis');
    } catch {
      return; // layout differs: nothing to test
    }
    const client = legacy.createClient({ host: '127.0.0.1', port: secured.port, password: PASSWORD });
    client.on('error', () => {});
    userClients.push(() => client.quit());
    await new Promise((resolve, reject) => {
      client.once('ready', resolve);
      setTimeout(() => reject(new Error('legacy client not ready')), 5000);
    });
    assert.equal(typeof client.address, 'string');
    const lock = new Lock({ redis: client, namespace: uniqueNs('nr2pw') });
    locks.push(lock);
    await exercise(lock, secured);
  });
});
