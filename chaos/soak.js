#!/usr/bin/env node
'use strict';
// Leak and soak test: one million acquire/release cycles and 100,000 timed-out waits through one
// Lock, at high concurrency, against a private redis-server. Before and after, it measures this
// process (RSS, V8 heap, external memory, open file descriptors and sockets) and Redis (client
// connections, keys, subscribed channels and subscriber counts); everything but memory must return
// exactly to its baseline, and memory must stop growing.
//
//   node chaos/soak.js [--cycles 1000000] [--waits 100000] [--concurrency 256] [--json file]

const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

if (typeof global.gc !== 'function') {
  // Re-run with --expose-gc so the measurements are taken after a full collection.
  const r = spawnSync(process.execPath, ['--expose-gc', __filename, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status === null ? 1 : r.status);
}

const Lock = require('..');
const { RedisServer } = require('../__test__/helpers/redis');
const { redisCall, sleep } = require('./lib');

const argv = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const CYCLES = opt('--cycles', 1_000_000);
const WAITS = opt('--waits', 100_000);
const CONCURRENCY = opt('--concurrency', 256);
const WAIT_CONCURRENCY = opt('--wait-concurrency', 2000);
const jsonOut = argv.includes('--json') ? argv[argv.indexOf('--json') + 1] : null;
const NS = 'soak';

function fds() {
  const list = fs.readdirSync('/proc/self/fd');
  let sockets = 0;
  for (const fd of list) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:')) sockets += 1;
    } catch {
      // closed meanwhile (the readdir handle itself)
    }
  }
  return { fds: list.length, sockets };
}

async function redisState(port) {
  // One connection for all four probes; it is one of the clients listed: subtract it.
  const [list, dbsize, numsub, channels] = await redisCall(port, [
    ['CLIENT', 'LIST'],
    ['DBSIZE'],
    ['PUBSUB', 'NUMSUB', `${NS}-release`],
    ['PUBSUB', 'CHANNELS'],
  ]);
  const clients = String(list).split('\n').filter(Boolean);
  const subs = clients.reduce((n, line) => n + Number((/ sub=(\d+)/.exec(line) || [0, 0])[1]), 0);
  return { clients: clients.length - 1, keys: dbsize, channelSubscribers: numsub[1], channels: channels.length, subscriptions: subs };
}

async function measure(port, label) {
  for (let i = 0; i < 3; i++) {
    global.gc();
    await sleep(50);
  }
  const m = process.memoryUsage();
  return {
    label,
    rssMb: +(m.rss / 1048576).toFixed(1),
    heapUsedMb: +(m.heapUsed / 1048576).toFixed(1),
    externalMb: +(m.external / 1048576).toFixed(2),
    ...fds(),
    redis: await redisState(port),
  };
}

async function cycles(lock, total, onProgress) {
  let done = 0;
  let granted = 0;
  let next = 0;
  const loop = async (i) => {
    const id = `c${i}`; // one id per loop: every attempt is granted
    while (next < total) {
      next += 1;
      // Mostly acquireLock; every 10th cycle through waitAcquireLock (the waiter queue path).
      const r = next % 10 === 0 ? await lock.waitAcquireLock(id, 10000, 1000) : await lock.acquireLock(id, 10000);
      if (r.success) {
        granted += 1;
        const rel = await lock.releaseLock(r);
        if (rel.result !== 'released') throw new Error(`release said ${rel.result}`);
      }
      done += 1;
      if (done % 100000 === 0) await onProgress(done);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => loop(i)));
  return { done, granted };
}

async function timedOutWaits(lock, holder, total, onProgress = async () => {}) {
  const HELD = 500;
  const held = await Promise.all(Array.from({ length: HELD }, (_, i) => holder.acquireLock(`h${i}`, 120000)));
  if (!held.every((r) => r.success)) throw new Error('could not take the held ids');
  let next = 0;
  let timedOut = 0;
  let granted = 0;
  let maxMs = 0;
  const loop = async () => {
    while (next < total) {
      const n = next++;
      const wait = 20 + (n % 31);
      const t = Date.now();
      const r = await lock.waitAcquireLock(`h${n % HELD}`, 1000, wait);
      maxMs = Math.max(maxMs, Date.now() - t - wait);
      if (r.success) granted += 1;
      else timedOut += 1;
      if ((granted + timedOut) % 25000 === 0) await onProgress(granted + timedOut);
    }
  };
  await Promise.all(Array.from({ length: WAIT_CONCURRENCY }, loop));
  await Promise.all(held.map((r) => holder.releaseLock(r)));
  return { timedOut, granted, maxOvershootMs: maxMs };
}

async function main() {
  const server = new RedisServer();
  await server.start();
  const report = { cycles: CYCLES, waits: WAITS, concurrency: CONCURRENCY, waitConcurrency: WAIT_CONCURRENCY, samples: [] };
  try {
    const before = await measure(server.port, 'before any Lock');
    const lock = new Lock({ redis: server.url, namespace: NS });
    const holder = new Lock({ redis: server.url, namespace: NS });
    // Warm up: connections open, scripts loaded, the subscriber running, JIT and allocators settled.
    await cycles(lock, 20000, async () => {});
    await timedOutWaits(lock, holder, 2000);
    await sleep(500);
    const baseline = await measure(server.port, 'baseline (after warm-up)');
    console.error('baseline', JSON.stringify(baseline));

    let t = Date.now();
    const c = await cycles(lock, CYCLES, async (done) => {
      const m = process.memoryUsage();
      report.samples.push({
        phase: 'cycles',
        done,
        rssMb: +(m.rss / 1048576).toFixed(1),
        heapUsedMb: +(m.heapUsed / 1048576).toFixed(1),
        s: (Date.now() - t) / 1000,
      });
      console.error(`cycles ${done}: rss ${(m.rss / 1048576).toFixed(1)} MB`);
    });
    report.cyclePhase = { ...c, seconds: (Date.now() - t) / 1000, perSecond: Math.round(c.done / ((Date.now() - t) / 1000)) };
    await sleep(500);
    const afterCycles = await measure(server.port, `after ${CYCLES} cycles`);
    console.error('after cycles', JSON.stringify(afterCycles));

    t = Date.now();
    const w = await timedOutWaits(lock, holder, WAITS, async (done) => {
      const m = process.memoryUsage();
      report.samples.push({
        phase: 'waits',
        done,
        rssMb: +(m.rss / 1048576).toFixed(1),
        heapUsedMb: +(m.heapUsed / 1048576).toFixed(1),
        s: (Date.now() - t) / 1000,
      });
      console.error(`waits ${done}: rss ${(m.rss / 1048576).toFixed(1)} MB`);
    });
    report.waitPhase = { ...w, seconds: (Date.now() - t) / 1000 };
    await sleep(1000); // the subscriber unsubscribes once no waiter is left
    const afterWaits = await measure(server.port, `after ${WAITS} timed-out waits`);
    console.error('after waits', JSON.stringify(afterWaits));

    await lock.close();
    await holder.close();
    await sleep(500);
    const closed = await measure(server.port, 'after close()');
    report.measurements = [before, baseline, afterCycles, afterWaits, closed];

    // Verdicts: descriptors, sockets, Redis clients, keys and subscriptions exactly at baseline.
    const problems = [];
    for (const m of [afterCycles, afterWaits]) {
      for (const k of ['fds', 'sockets']) if (m[k] !== baseline[k]) problems.push(`${m.label}: ${k} ${baseline[k]} -> ${m[k]}`);
      for (const k of ['clients', 'keys', 'channelSubscribers', 'subscriptions']) {
        if (m.redis[k] !== baseline.redis[k]) problems.push(`${m.label}: redis ${k} ${baseline.redis[k]} -> ${m.redis[k]}`);
      }
    }
    for (const k of ['fds', 'sockets']) if (closed[k] !== before[k]) problems.push(`after close(): ${k} ${before[k]} -> ${closed[k]}`);
    if (closed.redis.clients !== before.redis.clients)
      problems.push(`after close(): redis clients ${before.redis.clients} -> ${closed.redis.clients}`);
    if (c.granted !== CYCLES) problems.push(`only ${c.granted} of ${CYCLES} cycles were granted`);
    if (w.timedOut !== WAITS) problems.push(`${w.granted} of ${WAITS} waits on held ids were granted`);
    // Memory: the second half of the cycle phase must not keep growing (a leak of even 100 bytes
    // per cycle would add 50 MB over 500,000 cycles).
    // The wait phase peaks at WAIT_CONCURRENCY pending waits: RSS rises to that working set, then
    // must stay flat.
    for (const phase of ['cycles', 'waits']) {
      const list = report.samples.filter((x) => x.phase === phase);
      if (list.length < 4) continue;
      const mid = list[Math.floor(list.length / 2) - 1];
      const last = list[list.length - 1];
      const growth = +(last.rssMb - mid.rssMb).toFixed(1);
      report[`${phase}RssGrowthSecondHalfMb`] = growth;
      report[`${phase}BytesPerOpSecondHalf`] = Math.round((growth * 1048576) / (last.done - mid.done));
      if (growth > 20) problems.push(`RSS grew ${growth} MB over the second half of the ${phase}`);
    }
    report.rssDeltaMb = +(afterWaits.rssMb - baseline.rssMb).toFixed(1);
    report.heapDeltaMb = +(afterWaits.heapUsedMb - baseline.heapUsedMb).toFixed(1);
    report.problems = problems;
    report.ok = problems.length === 0;
  } finally {
    await server.cleanup();
  }
  if (jsonOut) fs.writeFileSync(jsonOut, JSON.stringify(report, null, 2));
  console.log(JSON.stringify(report, null, 2));
  if (!report.ok) {
    console.error('SOAK FAILED:', report.problems.join('; '));
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});

void path;
