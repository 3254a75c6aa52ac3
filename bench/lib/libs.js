'use strict';
// One uniform face over every library in the benchmark:
//   acquire(id, ttlMs)            -> handle | null   (one attempt)
//   release(handle)               -> void
//   wait(id, ttlMs, waitMs)       -> handle | null   (waits until free, or null on timeout)
//   close()
// Each adapter uses its library the way its README does; waiting uses the library's own
// mechanism (pub/sub for redfour-native/redfour/ioredfour, its own retry loop for the pollers).

const path = require('node:path');
const { promisify } = require('node:util');

const ROOT = path.resolve(__dirname, '..', '..');
const NAMESPACE = 'bench';

// Retry options for the libraries that wait by polling. redis-semaphore's own default is 10 ms;
// redlock's default (200 ms ± 100 ms, 10 tries) would time out under contention, so it gets the
// same 10 ms (± 5 ms jitter) and unlimited tries.
const POLL_MS = 10;

// In the order of the tables. `floor` is not a lock: two EVALSHA round trips of a trivial script.
const LIBS = ['redfour-native', 'redfour', 'ioredfour', 'redlock', 'redis-semaphore'];
const PEERS = LIBS.filter((l) => l !== 'redfour-native');
const WAITERS = LIBS; // every lock can wait

function requireIoredis() {
  return require(path.join(ROOT, 'node_modules', 'ioredis'));
}

/**
 * The napi class without the JS facade (index.js), to isolate the facade's cost, and its no-op
 * call (a round trip through the native runtime without Redis) to isolate the boundary's. The
 * native object is the one the facade itself constructs (its private `_native`, with `_calls`
 * for call numbers and batched completions), so the benchmark follows the binding as it changes.
 */
function openNapi(url) {
  const Lock = require(ROOT);
  const facade = new Lock({ redis: url, namespace: NAMESPACE });
  const n = facade._native;
  const calls = facade._calls;
  if (!n || !calls) throw new Error('the facade has no _native/_calls: the napi-only layer cannot be measured');
  const run = (id, fn) => {
    const { call, promise } = calls.start(id);
    fn(call);
    return promise;
  };
  return {
    async acquire(id, ttl) {
      const r = await run(id, (c) => n.acquire(c, String(id), ttl));
      return r.success ? { id: String(id), index: r.index } : null;
    },
    async release(h) {
      await run(h.id, (c) => n.release(c, h.id, h.index));
    },
    async wait(id, ttl, waitMs) {
      const r = await run(id, (c) => n.waitAcquire(c, String(id), ttl, waitMs));
      return r.success ? { id: String(id), index: r.index } : null;
    },
    noop: typeof n.noop === 'function' ? () => run(0, (c) => n.noop(c)) : null,
    async close() {
      await facade.close();
    },
  };
}

async function openNative(url, { facade = true, root = ROOT } = {}) {
  if (!facade) return openNapi(url);
  const Lock = require(root);
  const lock = new Lock({ redis: url, namespace: NAMESPACE });
  return {
    async acquire(id, ttl) {
      const r = await lock.acquireLock(id, ttl);
      return r.success ? r : null;
    },
    async release(h) {
      await lock.releaseLock(h);
    },
    async wait(id, ttl, waitMs) {
      const r = await lock.waitAcquireLock(id, ttl, waitMs);
      return r.success ? r : null;
    },
    async close() {
      await lock.close();
    },
  };
}

async function openRedfour(url) {
  const Lock = require(path.join(ROOT, 'node_modules', 'redfour'));
  const lock = new Lock({ redis: url, namespace: NAMESPACE });
  const acquire = promisify(lock.acquireLock.bind(lock));
  const release = promisify(lock.releaseLock.bind(lock));
  const wait = promisify(lock.waitAcquireLock.bind(lock));
  await new Promise((resolve) => lock._redisSubscriber.once('subscribe', resolve));
  return {
    async acquire(id, ttl) {
      const r = await acquire(id, ttl);
      return r.success ? r : null;
    },
    async release(h) {
      await release(h);
    },
    async wait(id, ttl, waitMs) {
      const r = await wait(id, ttl, waitMs);
      return r.success ? r : null;
    },
    async close() {
      lock._redisConnection.quit();
      lock._redisSubscriber.quit();
    },
  };
}

async function openIoredfour(url) {
  const Lock = require(path.join(ROOT, 'node_modules', 'ioredfour'));
  const lock = new Lock({ redis: url, namespace: NAMESPACE });
  await new Promise((resolve) => lock._redisSubscriber.once('ready', resolve));
  return {
    async acquire(id, ttl) {
      const r = await lock.acquireLock(id, ttl);
      return r.success ? r : null;
    },
    async release(h) {
      await lock.releaseLock(h);
    },
    async wait(id, ttl, waitMs) {
      const r = await lock.waitAcquireLock(id, ttl, waitMs);
      return r.success ? r : null;
    },
    async close() {
      lock._redisConnection.disconnect();
      lock._redisSubscriber.disconnect();
    },
  };
}

/**
 * redlock@4 over `clients` (one for a single server, several for its quorum): acquire once,
 * wait by polling every POLL_MS, release. `close` runs when the adapter is closed.
 */
function redlockAdapter(clients, close) {
  const Redlock = require(path.join(ROOT, 'node_modules', 'redlock'));
  const once = new Redlock(clients, { retryCount: 0 });
  const waiting = new Redlock(clients, { retryCount: -1, retryDelay: POLL_MS, retryJitter: POLL_MS / 2 });
  for (const r of [once, waiting]) r.on('clientError', () => {});
  return {
    async acquire(id, ttl) {
      try {
        return await once.lock(`${NAMESPACE}:${id}`, ttl);
      } catch (err) {
        if (err instanceof Redlock.LockError) return null;
        throw err;
      }
    },
    async release(h) {
      await h.unlock();
    },
    async wait(id, ttl, waitMs) {
      // redlock@4 has no wait deadline, only a retry count: derive it from the wait.
      const count = waitMs > 0 ? Math.ceil(waitMs / POLL_MS) : -1;
      try {
        return await waiting.lockWithOptions(`${NAMESPACE}:${id}`, ttl, { retryCount: count });
      } catch (err) {
        if (err instanceof Redlock.LockError && count >= 0) return null;
        throw err;
      }
    },
    async close() {
      await close();
    },
  };
}

async function openRedlock(url, { client } = {}) {
  const Redis = requireIoredis();
  const own = !client;
  client = client || new Redis(url);
  return redlockAdapter([client], async () => {
    if (own) client.disconnect();
  });
}

async function openSemaphore(url, { client } = {}) {
  const Redis = requireIoredis();
  const { Mutex } = require(path.join(ROOT, 'node_modules', 'redis-semaphore'));
  const own = !client;
  client = client || new Redis(url);
  return {
    async acquire(id, ttl) {
      const m = new Mutex(client, `${NAMESPACE}:${id}`, { lockTimeout: ttl });
      return (await m.tryAcquire()) ? m : null;
    },
    async release(m) {
      await m.release();
    },
    async wait(id, ttl, waitMs) {
      const m = new Mutex(client, `${NAMESPACE}:${id}`, {
        lockTimeout: ttl,
        acquireTimeout: waitMs > 0 ? waitMs : 2147483647,
        retryInterval: POLL_MS,
      });
      return (await m.tryAcquire()) ? m : null;
    },
    async close() {
      if (own) client.disconnect();
    },
  };
}

// The floor: what any lock needs at least, two script round trips from Node on a plain client.
const PUBLISH_FLOOR = 'floor (publish heard)';
const FLOOR_SCRIPT = "return redis.call('EXISTS', KEYS[1])";
// `publishOnly` (the hand-off row "floor (publish heard)"): B holds once it hears the PUBLISH,
// with no round trip after it. That is the least any pub/sub hand-off can take, a grant on
// release included (its waiter holds the lock when the message arrives).
async function openFloor(url, { publishOnly = false } = {}) {
  const Redis = requireIoredis();
  const client = new Redis(url);
  const sha = await client.script('LOAD', FLOOR_SCRIPT);
  // Hand-off floor: one PUBLISH heard by a subscriber, then one script round trip, on bare
  // sockets (bench/lib/raw.js), so no client library's overhead is counted.
  const { RawConnection } = require('./raw');
  const port = Number(new URL(url).port);
  let raw = null;
  const waiting = new Map();
  async function listen() {
    if (raw) return;
    raw = { cmd: new RawConnection(port), sub: new RawConnection(port) };
    await Promise.all([raw.cmd.ready, raw.sub.ready]);
    raw.sub.onPush = (channel, id) => {
      const resolve = waiting.get(id);
      if (!resolve) return;
      waiting.delete(id);
      if (publishOnly) resolve(id);
      else raw.cmd.command('EVALSHA', sha, 1, `${NAMESPACE}:${id}`).then(() => resolve(id));
    };
    await raw.sub.command('SUBSCRIBE', `${NAMESPACE}-floor`);
  }
  return {
    async acquire(id) {
      await client.evalsha(sha, 1, `${NAMESPACE}:${id}`);
      return id;
    },
    async release(id) {
      await client.evalsha(sha, 1, `${NAMESPACE}:${id}`);
    },
    async wait(id) {
      await listen();
      return new Promise((resolve) => waiting.set(String(id), resolve));
    },
    /** Hand-off floor, releasing side: one PUBLISH. */
    async signal(id) {
      await listen();
      await raw.cmd.command('PUBLISH', `${NAMESPACE}-floor`, String(id));
    },
    async prepare() {
      await listen();
    },
    async close() {
      client.disconnect();
      if (raw) {
        raw.cmd.close();
        raw.sub.close();
      }
    },
  };
}

// Scenario 8 (open loop): the harness alone.
const HARNESS = 'harness (no lock)';
/** No Redis, no lock: what the open-loop harness itself costs per pair (its baseline). */
async function openHarness() {
  return {
    async acquire(id) {
      return { id };
    },
    async release() {},
    async wait(id) {
      return { id };
    },
    async close() {},
  };
}

// --- Scenario 7: topologies ------------------------------------------------------------------
// `spec` = { urls: [...], cluster: bool }. One url without `cluster` is the single-server mode;
// several are redfour-native's quorum (Redlock) mode over independent masters, or redlock@4 over
// one ioredis client per master; `cluster: true` gives redfour-native the urls as cluster seeds.
// `twin()` opens a second lock in the same process for the in-process hand-off: a second Lock
// instance (redfour-native shares its connections by URL within a process), or a second pair of
// Redlock instances on the same ioredis clients (as an application holding one client per server
// would).

function nativeTopology({ urls, cluster = false }) {
  const Lock = require(ROOT);
  const redis = urls.length === 1 && !cluster ? urls[0] : urls;
  const make = () => {
    const lock = new Lock({ redis, cluster, namespace: NAMESPACE });
    return {
      async acquire(id, ttl) {
        const r = await lock.acquireLock(id, ttl);
        return r.success ? r : null;
      },
      async release(h) {
        await lock.releaseLock(h);
      },
      async wait(id, ttl, waitMs) {
        const r = await lock.waitAcquireLock(id, ttl, waitMs);
        return r.success ? r : null;
      },
      async twin() {
        return make();
      },
      async close() {
        await lock.close();
      },
    };
  };
  return make();
}

function redlockTopology({ urls, cluster = false }) {
  if (cluster) throw new Error('redlock@4 has no Redis Cluster mode');
  const Redis = requireIoredis();
  const clients = urls.map((u) => new Redis(u));
  let opened = 0;
  const make = () => {
    opened++;
    const adapter = redlockAdapter(clients, async () => {
      if (--opened === 0) for (const c of clients) c.disconnect();
    });
    adapter.twin = async () => make();
    return adapter;
  };
  return make();
}

const TOPOLOGY_OPENERS = { 'redfour-native': nativeTopology, redlock: redlockTopology };

async function openTopology(name, spec) {
  const opener = TOPOLOGY_OPENERS[name];
  if (!opener) throw new Error(`no topology adapter for ${name}`);
  return opener(spec);
}

const OPENERS = {
  'redfour-native': openNative,
  'redfour-native (napi only)': (url) => openNative(url, { facade: false }),
  [HARNESS]: openHarness,
  redfour: openRedfour,
  ioredfour: openIoredfour,
  redlock: openRedlock,
  'redis-semaphore': openSemaphore,
  floor: openFloor,
  [PUBLISH_FLOOR]: (url) => openFloor(url, { publishOnly: true }),
};

// `BENCH_BASELINE=/path/to/an/older/checkout` (built) adds the row 'redfour-native (baseline)':
// that checkout's package, measured in the same run, for before/after comparisons.
const BASELINE = 'redfour-native (baseline)';
if (process.env.BENCH_BASELINE) {
  OPENERS[BASELINE] = (url, options) => openNative(url, { ...options, root: process.env.BENCH_BASELINE });
  LIBS.splice(1, 0, BASELINE); // in the tables, right after ours (not a peer: no target counts it)
}

async function open(name, url, options) {
  const opener = OPENERS[name];
  if (!opener) throw new Error(`unknown library ${name}`);
  return opener(url, options);
}

function version(name) {
  const pkg = {
    'redfour-native': path.join(ROOT, 'package.json'),
    redfour: path.join(ROOT, 'node_modules', 'redfour', 'package.json'),
    ioredfour: path.join(ROOT, 'node_modules', 'ioredfour', 'package.json'),
    redlock: path.join(ROOT, 'node_modules', 'redlock', 'package.json'),
    'redis-semaphore': path.join(ROOT, 'node_modules', 'redis-semaphore', 'package.json'),
    ioredis: path.join(ROOT, 'node_modules', 'ioredis', 'package.json'),
  }[name];
  try {
    return require(pkg).version;
  } catch {
    return 'unknown';
  }
}

module.exports = {
  LIBS,
  PEERS,
  WAITERS,
  NAMESPACE,
  POLL_MS,
  open,
  openTopology,
  version,
  requireIoredis,
  FLOOR_SCRIPT,
  PUBLISH_FLOOR,
  HARNESS,
};
