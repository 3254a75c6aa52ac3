'use strict';
// A benchmark child process. The parent (run.js) forks one per library and scenario, so every
// library runs in a fresh V8 with its own connections. Times are taken with
// process.hrtime.bigint(), which on Linux reads CLOCK_MONOTONIC: one clock for the whole machine,
// so timestamps of different processes can be subtracted (run.js checks this before using it).

const fs = require('node:fs');
// First, so that the threads it finds alive are Node's own, before any library is loaded.
const openloop = require('./lib/openloop');
const libs = require('./lib/libs');

const now = () => process.hrtime.bigint();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const send = (msg) => new Promise((resolve) => process.send(msg, resolve));

let lock = null;
const handlers = {};

process.on('message', async (msg) => {
  try {
    const handler = handlers[msg.cmd];
    if (!handler) throw new Error(`unknown command ${msg.cmd}`);
    const reply = await handler(msg);
    await send({ re: msg.seq, ok: true, ...reply });
  } catch (err) {
    await send({ re: msg.seq, ok: false, error: String((err && err.stack) || err) });
  }
});
process.on('disconnect', () => process.exit(0));

handlers.open = async ({ lib, url, options }) => {
  lock = await libs.open(lib, url, options);
  // One round trip so the connections are up before anything is timed.
  const h = await lock.acquire(`warm:${process.pid}`, 1000);
  if (h) await lock.release(h);
  if (lock.prepare) await lock.prepare();
  return {};
};

handlers.close = async () => {
  if (lock) await lock.close();
  lock = null;
  return {};
};

handlers.clock = async () => ({ t: String(now()) });

// 1. Latency: sequential acquire + release of distinct ids.
handlers.latency = async ({ warmup, count }) => {
  const prefix = `lat:${process.pid}:`;
  for (let i = 0; i < warmup; i++) {
    const h = await lock.acquire(`${prefix}w${i}`, 10000);
    await lock.release(h);
  }
  const samples = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const t0 = now();
    const h = await lock.acquire(`${prefix}${i}`, 10000);
    if (!h) throw new Error('acquire of a free id failed');
    await lock.release(h);
    samples[i] = Number(now() - t0) / 1000; // µs
  }
  return { samples: Array.from(samples) };
};

// 8. Open loop: Poisson arrivals at `rate` pairs/s from a generator process (lib/openloop.js).
handlers.openloop = async ({ rate, warmupMs, durationMs, seed, redisPid }) =>
  openloop.run(lock, { rate, warmupMs, durationMs, seed, redisPid });

// 6. The boundary alone: no-op calls through the native runtime and back, no Redis.
handlers.boundary = async ({ warmup, count, loops, durationMs }) => {
  if (!lock.noop) return { unsupported: true };
  for (let i = 0; i < warmup; i++) await lock.noop();
  const samples = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const t0 = now();
    await lock.noop();
    samples[i] = Number(now() - t0) / 1000;
  }
  let calls = 0;
  let stop = false;
  const t0 = now();
  setTimeout(() => {
    stop = true;
  }, durationMs);
  await Promise.all(
    Array.from({ length: loops }, async () => {
      while (!stop) {
        await lock.noop();
        calls++;
      }
    }),
  );
  return { samples: Array.from(samples), callsPerSec: calls / (Number(now() - t0) / 1e9) };
};

// 2. Throughput: `loops` concurrent acquire + release loops on distinct ids.
handlers.throughput = async ({ loops, warmupMs, durationMs }) => {
  let phase = 'warmup';
  let pairs = 0;
  let total = 0;
  const samples = [];
  const prefix = `tp:${process.pid}:`;
  async function loop(k) {
    let i = 0;
    while (phase !== 'stop') {
      const t0 = now();
      const h = await lock.acquire(`${prefix}${k}:${i++}`, 10000);
      if (!h) throw new Error('acquire of a free id failed');
      await lock.release(h);
      total++;
      if (phase === 'measure') {
        pairs++;
        if (samples.length < 200000) samples.push(Number(now() - t0) / 1000);
      }
    }
  }
  const running = Array.from({ length: loops }, (_, k) => loop(k));
  await sleep(warmupMs);
  phase = 'measure';
  const t0 = now();
  await sleep(durationMs);
  const elapsed = Number(now() - t0) / 1e9;
  const counted = pairs;
  phase = 'stop';
  await Promise.all(running);
  return { pairs: counted, total, seconds: elapsed, samples };
};

// 3. Hand-off, holder side.
let held = null;
handlers.hold = async ({ id, ttl }) => {
  held = await lock.acquire(id, ttl);
  if (!held) throw new Error(`could not take ${id}`);
  return {};
};
handlers.releaseHeld = async () => {
  const t0 = now();
  if (lock.signal) await lock.signal(held);
  else await lock.release(held);
  held = null;
  return { t0: String(t0) };
};

// 3. Hand-off, waiter side: starts waiting and answers at once; the outcome comes as a message.
handlers.startWait = async ({ id, ttl, waitMs }) => {
  lock.wait(id, ttl, waitMs).then(
    async (h) => {
      const t1 = now();
      if (h) await lock.release(h);
      process.send({ event: 'acquired', id, t1: String(t1), success: !!h });
    },
    (err) => process.send({ event: 'acquired', id, error: String(err) }),
  );
  return {};
};

/**
 * A critical section of 1 ms, counted from the moment the lock is held (the counter file's
 * reads and writes included). setTimeout cannot sleep 1 ms (libuv's timers have
 * millisecond granularity: a 1 ms timer fires after 1-2 ms), and spinning would take a CPU from
 * Redis and the other processes on a 2-core machine. Atomics.wait sleeps in the kernel (a timed
 * futex wait) to within tens of µs, using no CPU; it holds this process's event loop, like
 * synchronous work would, while the lock's own machinery in the other processes runs freely.
 */
const parked = new Int32Array(new SharedArrayBuffer(4));
/** Works until `end` (an hrtime in ns): the section lasts `ms` from the moment the lock is held. */
async function workUntil(end) {
  for (;;) {
    const left = Number(end - now()) / 1e6;
    if (left <= 0) return;
    Atomics.wait(parked, 0, 0, left);
  }
}

// 4. Contention: this process's share of the waiters on ONE id, each running a 1 ms critical
// section that updates a non-atomic counter in a file (read, mark busy, sleep, write).
let contention = null;
handlers.contend = async ({ id, waiters, sectionMs, ttl, waitMs, counterFile }) => {
  const state = { sections: [], violations: 0, timeouts: 0, errors: 0, done: 0, stopping: false, inSection: false };
  contention = state;
  async function one() {
    const h = await lock.wait(id, ttl, waitMs);
    if (!h) {
      state.timeouts++;
      return;
    }
    if (state.stopping) {
      await lock.release(h);
      return;
    }
    state.inSection = true;
    const start = now();
    const [count, busy] = fs.readFileSync(counterFile, 'utf8').split(',').map(Number);
    if (busy) state.violations++;
    fs.writeFileSync(counterFile, `${count},1`);
    await workUntil(start + BigInt(Math.round(sectionMs * 1e6)));
    const after = fs.readFileSync(counterFile, 'utf8').split(',').map(Number);
    if (after[0] !== count || after[1] !== 1) state.violations++;
    fs.writeFileSync(counterFile, `${count + 1},0`);
    state.inSection = false;
    const end = now();
    state.sections.push([String(start), String(end)]);
    await lock.release(h);
    state.done++;
  }
  const started = Array.from({ length: waiters }, () =>
    one().catch(() => {
      state.errors++;
    }),
  );
  await Promise.all(started);
  return { ...report(state), finished: true };
};
function report(state) {
  return {
    sections: state.sections,
    violations: state.violations,
    timeouts: state.timeouts,
    errors: state.errors,
    done: state.done,
  };
}
// Past the time cap: start no more sections, let a running one finish (so the counter file is
// never left half-written), and report what was done.
handlers.contentionStop = async () => {
  if (!contention) return {};
  contention.stopping = true;
  const until = Date.now() + 2000;
  while (contention.inSection && Date.now() < until) await sleep(1);
  return report(contention);
};

// 7. Topologies: the same lock over quorum / cluster / single server (`spec`, see lib/libs.js).
// Opens `lock` so that the latency and throughput handlers above run unchanged.
handlers.openTopology = async ({ lib, spec }) => {
  lock = await libs.openTopology(lib, spec);
  // Distinct ids land on every shard of a cluster, so every connection is up before timing.
  for (let i = 0; i < 32; i++) {
    const h = await lock.acquire(`warm:${process.pid}:${i}`, 1000);
    if (h) await lock.release(h);
  }
  return {};
};

// 7. Hand-off within one process: `lock` releases, a second lock (lock.twin(), another Lock
// instance) waiting in its wait call holds it; t0 before the release call, t1 when the wait
// resolves, both in this process.
handlers.handoffLocal = async ({ iterations, settleMs, tag, warm = 3 }) => {
  const other = await lock.twin();
  try {
    // Warm the waiting path (subscriber connections, every shard) on free ids.
    for (let i = 0; i < 32; i++) {
      const h = await other.wait(`warmwait:${tag}:${i}`, 1000, 1000);
      if (h) await other.release(h);
    }
    const samples = [];
    let failures = 0;
    for (let i = -warm; i < iterations; i++) {
      const id = `hol:${tag}:${i}`;
      const held = await lock.acquire(id, 10000);
      if (!held) throw new Error(`could not take ${id}`);
      let t1 = 0n;
      const waited = other.wait(id, 10000, 5000).then((h) => {
        t1 = now();
        return h;
      });
      await sleep(settleMs);
      const t0 = now();
      await lock.release(held);
      const got = await waited;
      if (!got) {
        if (i >= 0) failures++;
        continue;
      }
      if (i >= 0) samples.push(Number(t1 - t0) / 1e6); // ms
      await other.release(got);
    }
    return { samples, failures };
  } finally {
    await other.close();
  }
};

// 5. Scale: locks held by one process, waited on by another.
let scaleHeld = [];
async function pool(count, concurrency, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await fn(next++);
    }),
  );
}
handlers.holdMany = async ({ count, ttl }) => {
  scaleHeld = new Array(count);
  await pool(count, 64, async (i) => {
    const h = await lock.acquire(`scale:${i}`, ttl);
    if (!h) throw new Error(`scale:${i} is taken`);
    scaleHeld[i] = h;
  });
  return {};
};
handlers.releaseMany = async () => {
  const t0 = now();
  await pool(scaleHeld.length, 64, (i) => lock.release(scaleHeld[i]));
  scaleHeld = [];
  return { t0: String(t0) };
};

function memory() {
  if (global.gc) {
    global.gc();
    global.gc();
  }
  return process.memoryUsage();
}
function rss() {
  return memory().rss;
}

let scaleWait = null;
handlers.baseline = async () => {
  // Warm up the waiting path once so lazily started parts (subscriber) are in the baseline.
  const h = await lock.wait(`scale:warm:${process.pid}`, 1000, 1000);
  if (h) await lock.release(h);
  await sleep(200);
  const m = memory();
  return { rss: m.rss, heap: m.heapUsed + m.external };
};
handlers.waitMany = async ({ count, ttl, waitMs, settleMs }) => {
  const state = { acquired: 0, failed: 0, last: 0n, peak: 0 };
  scaleWait = state;
  state.all = Promise.all(
    Array.from({ length: count }, (_, i) =>
      lock.wait(`scale:${i}`, ttl, waitMs).then(
        (h) => {
          if (h) state.acquired++;
          else state.failed++;
          state.last = now();
        },
        () => {
          state.failed++;
          state.last = now();
        },
      ),
    ),
  );
  const until = Date.now() + settleMs;
  while (Date.now() < until) {
    state.peak = Math.max(state.peak, process.memoryUsage().rss);
    await sleep(100);
  }
  const m = memory();
  return { rss: m.rss, heap: m.heapUsed + m.external, peak: Math.max(state.peak, m.rss), acquiredEarly: state.acquired };
};
handlers.drained = async ({ limitMs }) => {
  const state = scaleWait;
  await Promise.race([state.all, sleep(limitMs)]);
  return { acquired: state.acquired, failed: state.failed, last: String(state.last) };
};

// 5. Scale: many Lock instances on one URL.
let instances = [];
handlers.instances = async ({ lib, url, count, shareClient }) => {
  const base = rss();
  let client = null;
  if (shareClient) {
    const Redis = libs.requireIoredis();
    client = new Redis(url);
  }
  for (let i = 0; i < count; i++) instances.push(await libs.open(lib, url, client ? { client } : undefined));
  // Use every instance once: an acquire/release and a wait, so lazily opened connections open.
  await pool(count, 64, async (i) => {
    const h = await instances[i].acquire(`inst:${i}`, 5000);
    await instances[i].release(h);
    const w = await instances[i].wait(`inst:w:${i}`, 5000, 1000);
    if (w) await instances[i].release(w);
  });
  await sleep(200);
  return { rss: rss() - base };
};
