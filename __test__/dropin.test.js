'use strict';
// What a program written for redfour or ioredfour relies on, checked in our own words (issue 13):
// any index is an answer, not an error (as redfour's scripts compare it with `tonumber`);
// renewing a missing lock; waits timed as the peers' suites time them (1.5 s); Locks built from
// existing node-redis 2, node-redis 4 and ioredis clients and ioredfour's `redisConnection`;
// the constructor's error without Redis; ERR_REDIS naming the endpoint; the addon loader's advice.
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const IORedis = require('ioredis');
const nodeRedis = require('redis');
const IoRedfourLock = require('ioredfour');
const { startRedis, freePort } = require('./helpers/redis');
const { it, ROOT, uniqueNs, sleep, within, viaCallback, rejectsWithCode } = require('./helpers/common');
const { usePeers } = require('./helpers/peers');

const peers = usePeers('dropin');
const { ours, redfour } = peers;

/** The real ioredfour on the same server. */
function ioredfour(namespace) {
  const lock = new IoRedfourLock({ redis: peers.server.url, namespace });
  lock._redisConnection.on('error', () => {});
  lock._redisSubscriber.on('error', () => {});
  peers.defer(() => {
    lock._redisConnection.disconnect();
    lock._redisSubscriber.disconnect();
  });
  return lock;
}

describe('any index is an answer, as in redfour', () => {
  it("releasing under an index that is not the lock's answers exactly as redfour@1.0.5 does, lock held or gone", async () => {
    const ns = uniqueNs('idx');
    const me = ours(ns);
    const rf = redfour(ns);
    const held = await me.acquireLock('held', 60000);
    assert.equal(held.success, true);
    const others = [-10, -1, 0, 1.5, held.index + 1, String(held.index + 1), '-10', ' 0 ', '2.5', '1e9'];
    for (const index of others) {
      for (const id of ['held', 'gone']) {
        const mine = await me.releaseLock({ id, index });
        const theirs = await rf.releaseLock({ id, index });
        assert.deepEqual(mine, theirs, `release { id: ${id}, index: ${JSON.stringify(index)} }`);
        if (id === 'held') {
          assert.deepEqual(mine, { id, success: false, result: 'conflict', index: held.index });
        } else {
          assert.deepEqual(mine, { id, success: true, result: 'expired', index: 'expired' });
        }
      }
    }
    assert.equal(await peers.server.command('HGET', `${ns}:held`, 'index'), String(held.index), 'a wrong index released the lock');
    assert.equal((await me.releaseLock(held)).result, 'released');
  });

  it('releasing the result of a failed acquisition (index -1): conflict while held, expired once free', async () => {
    const ns = uniqueNs('failed');
    const me = ours(ns);
    const rf = redfour(ns);
    const held = await me.acquireLock('f', 60000);
    const failed = await me.acquireLock('f', 60000);
    assert.equal(failed.success, false);
    assert.equal(failed.index, -1);
    // The everyday `finally { releaseLock(lock) }` with a lock that was never obtained.
    const whileHeld = await me.releaseLock(failed);
    assert.deepEqual(whileHeld, { id: 'f', success: false, result: 'conflict', index: held.index });
    assert.deepEqual(await rf.releaseLock(failed), whileHeld);
    assert.equal(await peers.server.command('EXISTS', `${ns}:f`), 1, "the holder's lock must survive");
    await me.releaseLock(held);
    const whenFree = await viaCallback(me, 'releaseLock', failed);
    assert.deepEqual(whenFree, { id: 'f', success: true, result: 'expired', index: 'expired' });
    assert.deepEqual(await rf.releaseLock(failed), whenFree);
  });

  it("a numeric-string index (redfour's index.d.ts types it as a string) renews, extends and releases like the number", async () => {
    const me = ours();
    const held = await me.acquireLock('s', 5000);
    const text = String(held.index);
    assert.deepEqual(await me.renewLock({ id: 's', index: text }, 60000), { id: 's', success: true, result: 'renewed', index: held.index });
    assert.ok((await peers.server.command('PTTL', `${me.namespace}:s`)) > 50000);
    const ext = await me.extendLock({ id: 's', index: text }, 30000);
    assert.equal(ext.success, true);
    assert.equal(ext.index, held.index);
    assert.deepEqual(await me.releaseLock({ id: 's', index: text }), { id: 's', success: true, result: 'released', index: held.index });
  });

  it('renewing a lock that does not exist: success false, result missing, index -1 (any index)', async () => {
    const me = ours();
    for (const index of [0, -1, '0', 7, 2.5]) {
      const r = await me.renewLock({ id: 'non-existent-lock', index }, 6000);
      assert.deepEqual(r, { id: 'non-existent-lock', success: false, result: 'missing', index: -1 }, `index ${JSON.stringify(index)}`);
    }
    assert.equal(await peers.server.command('EXISTS', `${me.namespace}:non-existent-lock`), 0, 'renewing must not create the lock');
    const cb = await viaCallback(me, 'renewLock', { id: 'non-existent-lock', index: 0 }, 6000);
    assert.equal(cb.result, 'missing');
  });

  it('renewing under another index: conflict with index -1, and releasing that result answers conflict', async () => {
    const me = ours();
    const held = await me.acquireLock('c', 6000);
    const renewed = await me.renewLock({ id: 'c', index: held.index + 1 }, 6000);
    assert.deepEqual(renewed, { id: 'c', success: false, result: 'conflict', index: -1 });
    const rel = await me.releaseLock(renewed);
    assert.deepEqual(rel, { id: 'c', success: false, result: 'conflict', index: held.index });
    assert.equal((await me.releaseLock(held)).result, 'released');
  });

  it('ioredfour gives the same success and result for a wrong index and a missing lock', async () => {
    const ns = uniqueNs('io-idx');
    const me = ours(ns);
    const io = ioredfour(ns);
    const held = await me.acquireLock('i', 60000);
    for (const index of [-10, -1, 0]) {
      const mine = await me.releaseLock({ id: 'i', index });
      const theirs = await io.releaseLock({ id: 'i', index });
      assert.deepEqual([mine.success, mine.result, mine.index], [theirs.success, theirs.result, theirs.index], `index ${index}`);
      const mineExt = await me.extendLock({ id: 'gone', index }, 1000);
      const theirsExt = await io.extendLock({ id: 'gone', index }, 1000);
      assert.equal(mineExt.success, theirsExt.success);
      assert.equal(mineExt.success, false);
    }
    await me.releaseLock(held);
    // Gone: both say expired (ioredfour's index is 0 there, redfour's and ours 'expired').
    const mine = await me.releaseLock({ id: 'i', index: -10 });
    const theirs = await io.releaseLock({ id: 'i', index: -10 });
    assert.deepEqual([mine.success, mine.result], [theirs.success, theirs.result]);
  });
});

describe("waits timed as the peers' suites time them", () => {
  it('a wait for a lock that stays held ends after its 1.5 s with success:false, not an error (both styles)', async () => {
    const lock = ours();
    const held = await lock.acquireLock('w', 60000);
    for (const style of ['promise', 'callback']) {
      const started = Date.now();
      const r =
        style === 'promise' ? await lock.waitAcquireLock('w', 60000, 1500) : await viaCallback(lock, 'waitAcquireLock', 'w', 60000, 1500);
      const elapsed = Date.now() - started;
      assert.equal(r.success, false, style);
      assert.equal(r.index, -1);
      assert.equal(r.immediate, false);
      assert.ok(elapsed >= 1450 && elapsed < 3000, `${style}: gave up after ${elapsed} ms`);
    }
    assert.equal((await lock.releaseLock(held)).result, 'released');
  });

  it('a free lock is taken at once (immediate: true); a lock released after 1.5 s is taken then (immediate: false)', async () => {
    const lock = ours();
    const first = await lock.waitAcquireLock('r', 60000, 1500);
    assert.equal(first.success, true);
    assert.equal(first.immediate, true);
    const started = Date.now();
    setTimeout(() => {
      lock.releaseLock(first).catch(() => {});
    }, 1500);
    const second = await lock.waitAcquireLock('r', 6000, 3000);
    const elapsed = Date.now() - started;
    assert.equal(second.success, true);
    assert.equal(second.immediate, false);
    assert.ok(second.index > first.index);
    assert.ok(elapsed >= 1450 && elapsed < 2500, `taken after ${elapsed} ms`);
    assert.equal((await lock.releaseLock(second)).result, 'released');
  });

  it('a lock whose 1.5 s lease runs out is taken by a waiter then', async () => {
    const lock = ours();
    const first = await lock.acquireLock('e', 1500);
    const started = Date.now();
    const second = await lock.waitAcquireLock('e', 6000, 3000);
    const elapsed = Date.now() - started;
    assert.equal(second.success, true);
    assert.ok(elapsed >= 1450 && elapsed < 2500, `taken after ${elapsed} ms`);
    assert.ok(second.index > first.index);
    await lock.releaseLock(second);
  });

  it('a lock extended at 0.5 s and released at 1.5 s is taken at its release, not at its first expiry (callbacks)', async () => {
    const lock = ours();
    const first = await viaCallback(lock, 'acquireLock', 'x', 1000);
    setTimeout(() => lock.extendLock(first, 10000, (err) => assert.ifError(err)), 500);
    setTimeout(() => lock.releaseLock(first, (err) => assert.ifError(err)), 1500);
    const started = Date.now();
    const second = await viaCallback(lock, 'waitAcquireLock', 'x', 6000, 3000);
    const elapsed = Date.now() - started;
    assert.equal(second.success, true);
    assert.ok(elapsed >= 1450 && elapsed < 2500, `taken after ${elapsed} ms`);
    await viaCallback(lock, 'releaseLock', second);
  });
});

describe("existing clients and ioredfour's redisConnection", () => {
  /** Acquire; a waiter (same Lock) is served by a release 300 ms later; release. */
  async function serves(lock) {
    const held = await lock.acquireLock('k', 60000);
    assert.equal(held.success, true);
    assert.equal(await peers.server.command('HGET', `${lock.namespace}:k`, 'index'), String(held.index));
    setTimeout(() => {
      lock.releaseLock(held).catch(() => {});
    }, 300);
    const started = Date.now();
    const got = await within(lock.waitAcquireLock('k', 6000, 3000), 5000, 'waiter');
    assert.equal(got.success, true);
    assert.equal(got.immediate, false);
    assert.ok(Date.now() - started < 2000, 'the waiter was not woken by the release');
    assert.equal((await lock.releaseLock(got)).result, 'released');
  }

  it('a node-redis 4 client', async () => {
    const client = nodeRedis.createClient({ url: peers.server.url });
    client.on('error', () => {});
    await client.connect();
    peers.defer(() => client.disconnect());
    await serves(ours(undefined, { redis: client }));
    assert.equal(await client.ping(), 'PONG', "the caller's client is left alone");
  });

  it('an ioredis client', async () => {
    const client = new IORedis(peers.server.url, { lazyConnect: true });
    client.on('error', () => {});
    peers.defer(() => client.disconnect());
    await serves(ours(undefined, { redis: client }));
  });

  it("a node-redis 2 client (redfour's own, recognised by .address)", async () => {
    const legacy = require('redfour/node_modules/redis');
    const client = legacy.createClient(peers.server.url);
    client.on('error', () => {});
    peers.defer(() => client.quit());
    await within(new Promise((resolve) => client.once('ready', resolve)), 5000, 'node-redis 2 ready');
    assert.equal(client.address, `127.0.0.1:${peers.server.port}`);
    await serves(ours(undefined, { redis: client }));
  });

  it("ioredfour's redisConnection alias (a client or a URL), which wins over redis as in ioredfour", async () => {
    const client = new IORedis(peers.server.url, { lazyConnect: true });
    client.on('error', () => {});
    peers.defer(() => client.disconnect());
    const byClient = new peers.Lock({ redisConnection: client, namespace: uniqueNs('alias') });
    peers.defer(() => byClient.close());
    await serves(byClient);
    const byUrl = new peers.Lock({ redisConnection: peers.server.url, redis: 'redis://127.0.0.1:1', namespace: uniqueNs('alias2') });
    peers.defer(() => byUrl.close());
    await serves(byUrl);
  });
});

describe('constructor without Redis', () => {
  for (const [title, options] of [
    ['only a namespace', { namespace: 'testExistingLock' }],
    ['an empty object', {}],
    ['no options at all', undefined],
    ['redis: undefined', { redis: undefined }],
    ['redis: null', { redis: null }],
    ['redis: empty string', { redis: '' }],
  ]) {
    it(`${title}: throws a TypeError (ERR_INVALID_ARG) matching /must provide a redis/i`, () => {
      assert.throws(
        () => new peers.Lock(options),
        (err) => err instanceof TypeError && err.code === 'ERR_INVALID_ARG' && /must provide a redis/i.test(err.message),
      );
    });
  }
});

describe('errors name the endpoint', () => {
  it('ERR_REDIS says host:port and never the credentials (URL, options object, client; every call style)', async () => {
    const port = await freePort(); // nothing listens there
    const configs = [
      `redis://alice:s3cr3t-pw@127.0.0.1:${port}/2`,
      { host: '127.0.0.1', port, username: 'alice', password: 's3cr3t-pw' },
      new IORedis({ host: '127.0.0.1', port, username: 'alice', password: 's3cr3t-pw', lazyConnect: true }),
    ];
    peers.defer(() => configs[2].disconnect());
    for (const redis of configs) {
      const lock = new peers.Lock({ redis, namespace: uniqueNs('down'), connectTimeout: 300, commandTimeout: 300 });
      peers.defer(() => lock.close());
      const errors = [
        await rejectsWithCode(lock.acquireLock('x', 1000), 'ERR_REDIS'),
        await rejectsWithCode(viaCallback(lock, 'releaseLock', { id: 'x', index: 1 }), 'ERR_REDIS'),
        await rejectsWithCode(lock.acquire('x', 1000, { waitMs: 500 }), 'ERR_REDIS'),
      ];
      for (const err of errors) {
        assert.ok(err.message.includes(`127.0.0.1:${port}`), err.message);
        assert.ok(!err.message.includes('s3cr3t'), err.message);
        assert.ok(!err.message.includes('alice'), err.message);
      }
    }
  });

  it('quorum mode: ERR_NO_QUORUM lists the nodes', async () => {
    const ports = [await freePort(), await freePort(), await freePort()];
    const lock = new peers.Lock({
      redis: ports.map((p) => `redis://:pw@127.0.0.1:${p}`),
      namespace: uniqueNs('q'),
      connectTimeout: 300,
      commandTimeout: 300,
    });
    peers.defer(() => lock.close());
    const err = await rejectsWithCode(lock.acquireLock('x', 1000), 'ERR_NO_QUORUM');
    for (const p of ports) assert.ok(err.message.includes(`127.0.0.1:${p}`), err.message);
  });
});

describe('a wait that never times out, through an outage that does not end', () => {
  it(
    "fails with ERR_REDIS about 30 s after its attempts started failing (the holder's TTL + 30 s), not before, never hangs",
    { timeout: 90000 },
    async () => {
      const own = await startRedis();
      peers.defer(() => own.cleanup());
      const options = { redis: own.url, namespace: uniqueNs('forever'), connectTimeout: 500, commandTimeout: 500 };
      const holder = new peers.Lock(options);
      const waiter = new peers.Lock(options);
      peers.defer(
        () => holder.close(),
        () => waiter.close(),
      );
      const held = await holder.acquireLock('f', 1000);
      assert.equal(held.success, true);
      let settledAt = 0;
      const pending = waiter.waitAcquireLock('f', 1000, 0).finally(() => {
        settledAt = Date.now();
      });
      pending.catch(() => {});
      await sleep(200);
      const killedAt = Date.now();
      await own.kill();
      // The holder's lease would have ended 1 s in: the first failed attempt is then, the last ~30 s later.
      const err = await within(rejectsWithCode(pending, 'ERR_REDIS'), 60000, 'the unbounded wait');
      const after = (settledAt - killedAt) / 1000;
      assert.ok(after >= 29 && after < 40, `failed ${after.toFixed(1)} s after Redis went away; expected about 31 s`);
      assert.ok(err.message.includes(`127.0.0.1:${own.port}`), err.message);
    },
  );
});

describe('loading the addon', () => {
  // A child whose loader refuses every .node file: the prebuilt addon is missing or broken.
  function loadMessage(setup) {
    const script = `
      ${setup}
      require.extensions['.node'] = () => { throw new Error('simulated: cannot open shared object file'); };
      try { require(${JSON.stringify(ROOT)}); console.log('loaded'); } catch (err) { console.log(err.message); }
    `;
    return execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  }

  // The tests run on platforms that have one (package.json's napi.targets).
  it('on a platform with a prebuilt addon, the error names its platform package and says to reinstall with optional dependencies', () => {
    const out = loadMessage('');
    const { platformName } = require('../scripts/build-if-needed');
    const version = require('../package.json').version;
    assert.match(out, new RegExp(`optional dependency redfour-native-${platformName()}@${version.replace(/\./g, '\\.')}`));
    assert.match(out, /reinstall without --omit=optional/);
    assert.match(out, /`npm run build`/, 'in a clone, says how to build it');
    assert.doesNotMatch(out, /npm rebuild/, 'there is no install script to rerun');
    assert.match(out, /simulated: cannot open shared object file/, 'the original reason is kept');
  });

  it('on a platform without one, the error says to build from source with a Rust toolchain', () => {
    const out = loadMessage("Object.defineProperty(process, 'arch', { value: 'mips' });");
    assert.match(out, /no prebuilt addon for \w+-mips/);
    assert.match(
      out,
      /build it from source with a Rust toolchain \(https:\/\/github\.com\/redfour-native\/redfour-native#building-from-source\)/,
    );
    assert.match(out, /Unsupported architecture/, "the loader's reason is kept");
    assert.doesNotMatch(out, /wasi/, 'no noise about WASI builds that do not exist');
  });
});
