#!/usr/bin/env node
'use strict';
// redfour-native benchmark suite (issue 3): redfour-native side by side with redfour@1.0.5,
// ioredfour, redlock@4, redis-semaphore and a raw-client floor, on one private redis-server;
// scenario 7 (issue 5) adds quorum (3 and 5 masters) and Redis Cluster modes, and redlock@4 on
// the same masters.
//
//   node bench/run.js            full run (under 5 minutes on 2 cores)
//   node bench/run.js --quick    quick run (about 1.5 minutes; fewer samples, N up to 500)
//   --only=latency,throughput,handoff,contention,scale,overhead,topologies,openloop   run some scenarios
//   --libs=redfour-native,redfour                                    run some libraries
//   --rates=200,2000,10000   open-loop arrival rates (pairs/s)
//   --openloop-seconds=S     open-loop measured seconds per rate and library (split over its rounds)
//   --openloop-libs=A,B      open-loop rows (default: redfour-native, redfour, ioredfour,
//                            floor); short names: harness (no lock, the harness's own cost),
//                            baseline (see BENCH_BASELINE below)
//   --no-write   print only (no results/<date>.json, RESULTS.md or chart)
//   --from=FILE  rewrite RESULTS.md and the chart from an earlier results JSON (no measuring)
//   --wait-quiet[=S]  first wait up to S seconds (default 300) for the 1-minute load average to
//                     drop under 1.0 (the machine may be shared with builds and test runs)
//   BENCH_BASELINE=DIR (environment)  adds the library 'redfour-native (baseline)': the built
//                     checkout in DIR, for before/after rows in one run (--libs, --openloop-libs)
//
// Writes bench/results/<YYYY-MM-DD>.json, bench/RESULTS.md and bench/results/<date>-*.png.
// Benchmarks are measurements, never assertions: this exits 0 whether targets are met or not.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const { RedisServer, redisVersion, sleep } = require('./lib/redis-server');
const { Worker, withTimeout } = require('./lib/proc');
const libs = require('./lib/libs');
const { summary, round } = require('./lib/stats');
const report = require('./lib/report');
const rust = require('./lib/rust');
const { addonPath } = require('../scripts/build-if-needed'); // where `npm run build` puts this platform's addon

const args = process.argv.slice(2);
const flag = (name) => args.includes(`--${name}`);
const option = (name) => {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  return a
    ? a
        .slice(name.length + 3)
        .split(',')
        .filter(Boolean)
    : null;
};
const QUICK = flag('quick');
const WRITE = !flag('no-write');
const ONLY = option('only');
const LIBS = option('libs') || libs.LIBS;
const want = (s) => !ONLY || ONLY.includes(s);

const P = QUICK
  ? {
      latency: { rounds: 1, warmup: 200, count: 1500 },
      throughput: { rounds: 1, loops: 64, warmupMs: 200, durationMs: 700 },
      handoff: { rounds: 1, iterations: 30, settleMs: 15 },
      contention: { ns: [10, 100, 500], capMs: 3000 },
      scale: { waiters: 10000, settleMs: 800, drainLimitMs: 3000, instances: 200 },
      topologies: { rounds: 1, warmup: 200, count: 2000, loops: 64, warmupMs: 200, durationMs: 500, handoffs: 100, settleMs: 15 },
      openloop: { rates: [200, 2000, 10000], rounds: 1, warmupMs: 500, durationMs: 1500 },
    }
  : {
      // 6 short rounds rather than 3 long ones: this VM changes speed within seconds (a peer
      // measured 54 µs in one round and 194 µs in the next), and more rounds in alternating order
      // spread those phases more evenly over the libraries.
      latency: { rounds: 6, warmup: 300, count: 7500 },
      throughput: { rounds: 3, loops: 64, warmupMs: 500, durationMs: 1000 },
      handoff: { rounds: 2, iterations: 200, settleMs: 15 },
      contention: { ns: [10, 100, 500, 2000], capMs: 6000 },
      scale: { waiters: 10000, settleMs: 1500, drainLimitMs: 12000, instances: 1000 },
      // About 35 s in all (servers and cluster setup included); quick mode about 30 s.
      topologies: { rounds: 2, warmup: 200, count: 2400, loops: 64, warmupMs: 200, durationMs: 600, handoffs: 120, settleMs: 15 },
      // 5 s measured per rate and library, in 2 rounds of 2.5 s (alternating order), each after
      // 1 s of warm-up at the same rate: about 2 minutes for 5 rows.
      openloop: { rates: [200, 2000, 10000], rounds: 2, warmupMs: 1000, durationMs: 2500 },
    };
if (option('rates'))
  P.openloop.rates = option('rates')
    .map(Number)
    .filter((x) => x > 0);
if (option('openloop-seconds')) P.openloop.durationMs = (Number(option('openloop-seconds')[0]) * 1000) / P.openloop.rounds;
const CONTENTION = { processes: 4, sectionMs: 1, lockTtl: 1000 };
// Worker threads of the tokio runtime in the Rust-side bench: the addon's runtime has 1 (see
// module_init in src/binding.rs); REDFOUR_BENCH_RUST_WORKERS overrides.
const RUST_WORKERS = Number(process.env.REDFOUR_BENCH_RUST_WORKERS || 1);

const T0 = Date.now();
const log = (...a) => console.error(`[${((Date.now() - T0) / 1000).toFixed(0).padStart(3)} s]`, ...a);

function failed(what, err) {
  const first = String(err && err.message ? err.message : err)
    .split('\n')
    .slice(0, 3)
    .join(' | ');
  log(`  ${what}: FAILED: ${first}`);
  return { error: first };
}

function sh(cmd, argv) {
  try {
    return execFileSync(cmd, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

function machine() {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const model = (/^model name\s*:\s*(.+)$/m.exec(cpuinfo) || [])[1] || os.cpus()[0]?.model || 'unknown';
  const mhz = (/^cpu MHz\s*:\s*(.+)$/m.exec(cpuinfo) || [])[1];
  const addon = addonPath();
  return {
    nproc: Number(sh('nproc', [])) || os.cpus().length,
    cpu: model.trim(),
    cpuMHz: mhz ? Number(mhz) : null,
    memoryGiB: round(os.totalmem() / 2 ** 30, 1),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    redis: redisVersion(),
    rustc: sh('rustc', ['--version']) || 'not installed',
    loadAverage: os.loadavg().map((v) => round(v, 2)),
    commit: sh('git', ['-C', path.join(__dirname, '..'), 'rev-parse', '--short', 'HEAD']),
    addonBuilt: fs.existsSync(addon) ? fs.statSync(addon).mtime.toISOString() : null,
    versions: Object.fromEntries(
      ['redfour-native', 'redfour', 'ioredfour', 'redlock', 'redis-semaphore', 'ioredis'].map((n) => [n, libs.version(n)]),
    ),
  };
}

/**
 * What the run measures: the addon's mtime and the uncommitted changes to the library's sources
 * (other sessions may edit and rebuild in this working tree while the bench runs; a build that
 * changes mid-run is recorded, and shown in RESULTS.md, rather than silently mixed in).
 */
function buildState() {
  const root = path.join(__dirname, '..');
  const addon = addonPath();
  const status = sh('git', ['-C', root, 'status', '--porcelain', '--', 'src', 'lib', 'index.js', 'Cargo.toml', 'Cargo.lock', 'build.rs']);
  return {
    addonBuilt: fs.existsSync(addon) ? fs.statSync(addon).mtime.toISOString() : null,
    uncommitted: status
      ? status
          .split('\n')
          .map((l) => l.trim().replace(/^\S+\s+/, ''))
          .filter(Boolean)
      : [],
  };
}

// --- Redis helpers -------------------------------------------------------------------------

let admin;
async function commandStats() {
  const text = await admin.info('commandstats');
  const stats = {};
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) stats[m[1]] = Number(m[2]);
  return stats;
}
function statsDelta(before, after) {
  const delta = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] || 0);
    if (d > 0 && k !== 'info') delta[k] = d;
  }
  const total = Object.values(delta).reduce((a, b) => a + b, 0);
  const scripts = (delta.evalsha || 0) + (delta.eval || 0) + (delta.fcall || 0) + (delta.evalsha_ro || 0) + (delta.eval_ro || 0);
  return { delta, total, scripts };
}
async function clientCount() {
  const list = await admin.client('LIST');
  return list.split('\n').filter((l) => l.trim()).length;
}
async function flush() {
  await admin.flushall();
}

async function withWorkers(n, lib, url, fn, openOptions) {
  const workers = Array.from({ length: n }, () => new Worker());
  try {
    await Promise.all(workers.map((w) => withTimeout(w.call('open', { lib, url, options: openOptions }), 15000, `open ${lib}`)));
    return await fn(workers);
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

// --- 0. The shared clock --------------------------------------------------------------------

async function checkClock() {
  const w = new Worker({ gc: false });
  try {
    let bad = 0;
    let maxSkewUs = 0;
    const rounds = 200;
    for (let i = 0; i < rounds; i++) {
      const t0 = process.hrtime.bigint();
      const { t } = await w.call('clock');
      const t1 = process.hrtime.bigint();
      const tc = BigInt(t);
      if (tc < t0 || tc > t1) {
        bad++;
        maxSkewUs = Math.max(maxSkewUs, Number(tc < t0 ? t0 - tc : tc - t1) / 1000);
      }
    }
    return {
      source: 'process.hrtime.bigint() (libuv uv_hrtime: clock_gettime(CLOCK_MONOTONIC), system-wide on Linux)',
      rounds,
      outOfOrder: bad,
      maxSkewUs,
      verified: bad === 0,
    };
  } finally {
    await w.stop();
  }
}

// --- 1. Latency -----------------------------------------------------------------------------

/**
 * Runs `fn(lib, round)` for every library, `rounds` times, alternating the order (forward, then
 * backward...) so that a change in the machine's load during the run (other processes share
 * it) falls on every library alike. Returns, per library, the list of round results (or the
 * first error).
 */
async function roundRobin(scenario, names, rounds, fn) {
  const parts = Object.fromEntries(names.map((n) => [n, []]));
  const errors = {};
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? names : [...names].reverse();
    for (const lib of order) {
      if (errors[lib]) continue;
      log(`  ${scenario}: ${lib}${rounds > 1 ? ` (round ${round + 1}/${rounds})` : ''}`);
      await flush();
      try {
        parts[lib].push(await fn(lib, round));
      } catch (err) {
        errors[lib] = failed(`${scenario} ${lib}`, err);
      }
    }
  }
  return { parts, errors };
}

async function latency(url, names) {
  const { rounds, count, warmup } = P.latency;
  const per = Math.ceil(count / rounds);
  const { parts, errors } = await roundRobin('latency', names, rounds, (lib) =>
    withWorkers(1, lib, url, async ([w]) => (await withTimeout(w.call('latency', { warmup, count: per }), 120000, 'latency')).samples),
  );
  const out = {};
  for (const lib of names) {
    if (errors[lib]) out[lib] = errors[lib];
    else out[lib] = { ...summary(parts[lib].flat()), roundsP50: parts[lib].map((x) => round(summary(x).p50, 1)) };
  }
  return out;
}

// --- 2. Throughput --------------------------------------------------------------------------

async function throughput(url, names) {
  const { rounds, loops, warmupMs, durationMs } = P.throughput;
  const { parts, errors } = await roundRobin('throughput', names, rounds, (lib) =>
    withWorkers(1, lib, url, async ([w]) => {
      const before = await commandStats();
      const r = await withTimeout(w.call('throughput', { loops, warmupMs, durationMs }), 60000, 'throughput');
      return { ...r, cmds: statsDelta(before, await commandStats()) };
    }),
  );
  const out = {};
  for (const lib of names) {
    if (errors[lib]) {
      out[lib] = errors[lib];
      continue;
    }
    const rs = parts[lib];
    const sum = (f) => rs.reduce((a, r) => a + f(r), 0);
    const s = summary(rs.flatMap((r) => r.samples));
    out[lib] = {
      pairsPerSec: sum((r) => r.pairs) / sum((r) => r.seconds),
      roundsPairsPerSec: rs.map((r) => Math.round(r.pairs / r.seconds)),
      pairs: sum((r) => r.pairs),
      seconds: sum((r) => r.seconds),
      p50: s.p50,
      p99: s.p99,
      commandsPerPair: sum((r) => r.cmds.total) / sum((r) => r.total),
      scriptsPerPair: sum((r) => r.cmds.scripts) / sum((r) => r.total),
    };
  }
  return out;
}

// --- 3. Hand-off ----------------------------------------------------------------------------

async function handoff(url, names) {
  const { rounds, iterations, settleMs } = P.handoff;
  const per = Math.ceil(iterations / rounds);
  const { parts, errors } = await roundRobin('hand-off', names, rounds, (lib, r) =>
    withWorkers(2, lib, url, async ([holder, waiter]) => {
      const samples = [];
      let failures = 0;
      for (let i = 0; i < per; i++) {
        const id = `ho:${r}:${i}`;
        await holder.call('hold', { id, ttl: 10000 });
        const acquired = waiter.next((m) => m.event === 'acquired' && m.id === id);
        await waiter.call('startWait', { id, ttl: 10000, waitMs: 5000 });
        await sleep(settleMs);
        const { t0 } = await holder.call('releaseHeld');
        const got = await withTimeout(acquired, 10000, 'hand-off');
        if (got.success) samples.push(Number(BigInt(got.t1) - BigInt(t0)) / 1e6);
        else failures++;
      }
      return { samples, failures };
    }),
  );
  const out = {};
  for (const lib of names) {
    if (errors[lib]) out[lib] = errors[lib];
    else out[lib] = { ...summary(parts[lib].flatMap((p) => p.samples)), failures: parts[lib].reduce((a, p) => a + p.failures, 0) };
  }
  return out;
}

// --- 0b. What a round trip costs on this machine, hot and after idling -------------------------

async function calibrate() {
  const hot = [];
  const cold = [];
  for (let i = 0; i < 1000; i++) {
    const t = process.hrtime.bigint();
    await admin.ping();
    hot.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  for (let i = 0; i < (QUICK ? 50 : 150); i++) {
    await sleep(P.handoff.settleMs);
    const t = process.hrtime.bigint();
    await admin.ping();
    cold.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  return { pingHot: summary(hot), pingAfterIdle: summary(cold), idleMs: P.handoff.settleMs };
}

// --- 4. Contention --------------------------------------------------------------------------

async function contentionCell(url, lib, n) {
  await flush();
  // On tmpfs when there is one: a disk-backed /tmp makes the four small file operations take
  // 0.4 ms, a tenth of that on /dev/shm.
  const dir = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  const counterFile = path.join(dir, `redfour-bench-counter-${process.pid}`);
  fs.writeFileSync(counterFile, '0,0');
  const { processes, sectionMs, lockTtl } = CONTENTION;
  const capMs = P.contention.capMs;
  try {
    return await withWorkers(processes, lib, url, async (workers) => {
      const shares = workers.map((_, k) => Math.floor(n / processes) + (k < n % processes ? 1 : 0));
      const before = await commandStats();
      const t0 = process.hrtime.bigint();
      const runs = workers.map((w, k) =>
        w.call('contend', { id: `contended:${n}`, waiters: shares[k], sectionMs, ttl: lockTtl, waitMs: capMs + 5000, counterFile }),
      );
      let results;
      let timedOut = false;
      try {
        results = await withTimeout(Promise.all(runs), capMs, 'contention');
      } catch (err) {
        if (!err.timeout) throw err;
        timedOut = true;
      }
      const capAt = process.hrtime.bigint();
      const cmds = statsDelta(before, await commandStats());
      if (timedOut) {
        runs.forEach((r) => r.catch(() => {}));
        results = await Promise.all(
          workers.map((w) =>
            withTimeout(w.call('contentionStop'), 5000, 'report').catch(() => ({
              lost: true,
              sections: [],
              violations: 0,
              timeouts: 0,
              errors: 0,
              done: 0,
            })),
          ),
        );
        workers.forEach((w) => w.kill());
      }
      const sections = results
        .flatMap((r) => r.sections)
        .map(([s, e]) => [BigInt(s), BigInt(e)])
        .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      const done = sections.length;
      const end = timedOut ? capAt : sections.reduce((m, [, e]) => (e > m ? e : m), t0);
      const wallMs = Number(end - t0) / 1e6;
      const gaps = [];
      let overlaps = 0;
      for (let k = 1; k < sections.length; k++) {
        const gap = Number(sections[k][0] - sections[k - 1][1]) / 1e6;
        if (gap < 0) overlaps++;
        gaps.push(gap);
      }
      const lengths = sections.map(([s, e]) => Number(e - s) / 1e6);
      const inSections = lengths.reduce((a, b) => a + b, 0);
      const [counter] = fs.readFileSync(counterFile, 'utf8').split(',').map(Number);
      const gap = summary(gaps);
      return {
        n,
        done,
        timedOut,
        wallMs,
        sectionsPerSec: done / (wallMs / 1000),
        scriptsPerSection: done ? cmds.scripts / done : null,
        commandsPerSection: done ? cmds.total / done : null,
        commands: cmds.delta,
        counter,
        // A worker that could not report leaves the count unknown, not wrong.
        counterOk: results.some((r) => r.lost) ? null : counter === done,
        violations: results.reduce((a, r) => a + r.violations, 0),
        overlaps,
        timeouts: results.reduce((a, r) => a + r.timeouts, 0),
        errors: results.reduce((a, r) => a + r.errors, 0),
        sectionMsMean: lengths.length ? inSections / lengths.length : null,
        floorMs: inSections,
        gapP50: gap.p50,
        gapP99: gap.p99,
      };
    });
  } finally {
    fs.rmSync(counterFile, { force: true });
  }
}

async function contention(url, names) {
  const out = {};
  for (const n of P.contention.ns) {
    out[n] = {};
    for (const lib of names) {
      log(`  contention N=${n}: ${lib}`);
      try {
        out[n][lib] = await contentionCell(url, lib, n);
      } catch (err) {
        out[n][lib] = failed(`contention N=${n} ${lib}`, err);
      }
      await sleep(200);
    }
  }
  return out;
}

// --- 5. Scale -------------------------------------------------------------------------------

async function scaleWaiters(url, lib) {
  await flush();
  const { waiters: count, settleMs, drainLimitMs } = P.scale;
  const holder = new Worker();
  const waiter = new Worker();
  try {
    await Promise.all([holder, waiter].map((w) => withTimeout(w.call('open', { lib, url }), 15000, 'open')));
    await withTimeout(holder.call('holdMany', { count, ttl: 120000 }), 30000, 'holdMany');
    const { rss: base, heap: heapBase } = await waiter.call('baseline');
    const settled = await withTimeout(
      waiter.call('waitMany', { count, ttl: 60000, waitMs: 60000, settleMs }),
      settleMs + 30000,
      'waitMany',
    );
    // Redis load while all of them wait (after their first attempts): pollers keep polling.
    const before = await commandStats();
    const tIdle = process.hrtime.bigint();
    await sleep(QUICK ? 500 : 1000);
    const idle = statsDelta(before, await commandStats());
    const idleSeconds = Number(process.hrtime.bigint() - tIdle) / 1e9;
    const { t0 } = await withTimeout(holder.call('releaseMany'), 60000, 'releaseMany');
    const drained = await withTimeout(waiter.call('drained', { limitMs: drainLimitMs }), drainLimitMs + 10000, 'drained');
    const all = drained.acquired === count;
    return {
      waiters: count,
      rssBaseMB: base / 2 ** 20,
      rssOverBaseMB: (settled.rss - base) / 2 ** 20,
      jsHeapOverBaseMB: (settled.heap - heapBase) / 2 ** 20,
      peakOverBaseMB: (settled.peak - base) / 2 ** 20,
      commandsPerSecWhileWaiting: idle.total / idleSeconds,
      acquired: drained.acquired,
      drainMs: all ? Number(BigInt(drained.last) - BigInt(t0)) / 1e6 : null,
      drainedWithinLimit: all,
    };
  } finally {
    holder.kill();
    waiter.kill();
    await Promise.all([holder.exited, waiter.exited]);
  }
}

async function scaleInstances(url, lib) {
  await flush();
  const w = new Worker();
  try {
    const before = await clientCount();
    const shareClient = lib === 'redlock' || lib === 'redis-semaphore';
    const r = await withTimeout(w.call('instances', { lib, url, count: P.scale.instances, shareClient }), 120000, 'instances');
    const after = await clientCount();
    return { instances: P.scale.instances, sockets: after - before, rssMB: r.rss / 2 ** 20, sharedClient: shareClient };
  } finally {
    w.kill();
    await w.exited;
    await sleep(300);
  }
}

async function scale(url, names) {
  const out = { waiters: {}, instances: {} };
  for (const lib of names) {
    log(`  scale, ${P.scale.waiters} waiters: ${lib}`);
    try {
      out.waiters[lib] = await scaleWaiters(url, lib);
    } catch (err) {
      out.waiters[lib] = failed(`scale waiters ${lib}`, err);
    }
    await sleep(300);
  }
  for (const lib of names) {
    log(`  scale, ${P.scale.instances} instances: ${lib}`);
    try {
      out.instances[lib] = await scaleInstances(url, lib);
    } catch (err) {
      out.instances[lib] = failed(`scale instances ${lib}`, err);
    }
  }
  return out;
}

// --- 6. Native boundary ---------------------------------------------------------------------

const NAPI = 'redfour-native (napi only)';

async function overhead(url, results) {
  const napi = NAPI;
  const node = {
    latency: { [napi]: results.latency?.[napi] ?? (await latency(url, [napi]))[napi] },
    throughput: { [napi]: results.throughput?.[napi] ?? (await throughput(url, [napi]))[napi] },
  };
  node.latency['redfour-native'] = results.latency?.['redfour-native'];
  node.latency.floor = results.latency?.floor;
  node.throughput['redfour-native'] = results.throughput?.['redfour-native'];
  node.throughput.floor = results.throughput?.floor;
  log('  overhead: the boundary alone (no-op native calls)');
  try {
    node.boundary = await withWorkers(1, napi, url, async ([w]) => {
      const r = await withTimeout(
        w.call('boundary', {
          warmup: P.latency.warmup,
          count: P.latency.count,
          loops: 64,
          durationMs: P.throughput.durationMs * P.throughput.rounds,
        }),
        60000,
        'boundary',
      );
      if (r.unsupported) return { skipped: 'this build of the binding has no no-op call' };
      return { ...summary(r.samples), callsPerSec: r.callsPerSec };
    });
  } catch (err) {
    node.boundary = failed('boundary', err);
  }
  log('  overhead: Rust core driven from Rust');
  await flush();
  const fromRust = await rust.run(url, { quick: QUICK, log, workers: RUST_WORKERS });
  return { node, rust: fromRust };
}

// --- 7. Topologies --------------------------------------------------------------------------

// The rows of scenario 7, in the order of the table. `nodes` names the node set they run on.
const TOPOLOGY_ROWS = [
  { key: 'single:redfour-native', mode: 'single server', lib: 'redfour-native', nodes: 'single' },
  { key: 'quorum-3:redfour-native', mode: 'quorum, 3 masters', lib: 'redfour-native', nodes: 'q3' },
  { key: 'quorum-5:redfour-native', mode: 'quorum, 5 masters', lib: 'redfour-native', nodes: 'q5' },
  { key: 'cluster-3:redfour-native', mode: 'Redis Cluster, 3 masters', lib: 'redfour-native', nodes: 'cluster', cluster: true },
  { key: 'quorum-3:redlock', mode: 'quorum, 3 masters', lib: 'redlock', nodes: 'q3' },
  { key: 'quorum-5:redlock', mode: 'quorum, 5 masters', lib: 'redlock', nodes: 'q5' },
];
// Run order within a round (reversed every other round): each redlock row next to ours.
const TOPOLOGY_ORDER = [
  'single:redfour-native',
  'quorum-3:redfour-native',
  'quorum-3:redlock',
  'quorum-5:redfour-native',
  'quorum-5:redlock',
  'cluster-3:redfour-native',
];

async function topologyRow(row, nodes, round) {
  const topo = require('./lib/topologies');
  const prm = P.topologies;
  const per = (n) => Math.ceil(n / prm.rounds);
  await topo.flushAll(nodes);
  const w = new Worker();
  try {
    const spec = { urls: nodes.map((x) => x.url), cluster: !!row.cluster };
    const times = [Date.now()];
    await withTimeout(w.call('openTopology', { lib: row.lib, spec }), 20000, `open ${row.key}`);
    times.push(Date.now());
    const lat = await withTimeout(w.call('latency', { warmup: prm.warmup, count: per(prm.count) }), 120000, 'latency');
    times.push(Date.now());
    const before = await topo.commandStats(nodes);
    const tp = await withTimeout(
      w.call('throughput', { loops: prm.loops, warmupMs: prm.warmupMs, durationMs: prm.durationMs }),
      60000,
      'throughput',
    );
    const cmds = statsDelta(before, await topo.commandStats(nodes));
    times.push(Date.now());
    const ho = await withTimeout(
      w.call('handoffLocal', { iterations: per(prm.handoffs), settleMs: prm.settleMs, tag: `${round}` }),
      120000,
      'hand-off',
    );
    times.push(Date.now());
    // Seconds spent opening, in latency, throughput and hand-off (to keep the section short).
    const phases = times.slice(1).map((t, k) => (t - times[k]) / 1000);
    log(`    open / latency / throughput / hand-off: ${phases.map((x) => x.toFixed(1)).join(' / ')} s`);
    return { latency: lat.samples, throughput: { ...tp, cmds }, handoff: ho, phases };
  } finally {
    await w.stop();
  }
}

async function topologies(mainUrl) {
  const topo = require('./lib/topologies');
  const rows = TOPOLOGY_ROWS.filter((r) => LIBS.includes(r.lib));
  const out = { rows: {}, setup: {} };
  if (!rows.length) return out;
  const t0 = Date.now();
  const sets = {};
  const all = [];
  try {
    sets.single = [new topo.Node(null, mainUrl)];
    all.push(...sets.single);
    if (rows.some((r) => r.nodes === 'q3' || r.nodes === 'q5')) {
      log('  topologies: starting 5 independent redis-servers');
      const masters = await topo.startMasters(5);
      all.push(...masters);
      sets.q3 = masters.slice(0, 3);
      sets.q5 = masters;
      out.setup.masters = masters.map((x) => x.server.port);
    }
    if (rows.some((r) => r.nodes === 'cluster')) {
      log('  topologies: starting a 3-master Redis Cluster');
      try {
        const cluster = await topo.startCluster(3);
        all.push(...cluster);
        sets.cluster = cluster;
        out.setup.cluster = cluster.map((x) => x.server.port);
      } catch (err) {
        out.setup.clusterError = failed('cluster setup', err).error;
      }
    }
    out.setup.seconds = (Date.now() - t0) / 1000;
    const parts = Object.fromEntries(rows.map((r) => [r.key, []]));
    const errors = {};
    const order = TOPOLOGY_ORDER.map((k) => rows.find((r) => r.key === k)).filter(Boolean);
    for (let round = 0; round < P.topologies.rounds; round++) {
      for (const row of round % 2 === 0 ? order : [...order].reverse()) {
        if (errors[row.key]) continue;
        if (!sets[row.nodes]) {
          errors[row.key] = { error: out.setup.clusterError || 'no servers' };
          continue;
        }
        log(`  topologies: ${row.lib}, ${row.mode}${P.topologies.rounds > 1 ? ` (round ${round + 1}/${P.topologies.rounds})` : ''}`);
        try {
          parts[row.key].push(await topologyRow(row, sets[row.nodes], round));
        } catch (err) {
          errors[row.key] = failed(`topologies ${row.key}`, err);
        }
      }
    }
    for (const row of rows) {
      const base = { mode: row.mode, lib: row.lib, nodes: sets[row.nodes]?.length ?? null };
      if (errors[row.key]) {
        out.rows[row.key] = { ...base, ...errors[row.key] };
        continue;
      }
      const rs = parts[row.key];
      const sum = (f) => rs.reduce((a, r) => a + f(r), 0);
      const tps = rs.map((r) => r.throughput);
      const tsum = (f) => tps.reduce((a, r) => a + f(r), 0);
      const t = summary(tps.flatMap((r) => r.samples));
      out.rows[row.key] = {
        ...base,
        latency: summary(rs.flatMap((r) => r.latency)),
        throughput: {
          pairsPerSec: tsum((r) => r.pairs) / tsum((r) => r.seconds),
          roundsPairsPerSec: tps.map((r) => Math.round(r.pairs / r.seconds)),
          pairs: tsum((r) => r.pairs),
          p50: t.p50,
          p99: t.p99,
          commandsPerPair: tsum((r) => r.cmds.total) / tsum((r) => r.total),
          scriptsPerPair: tsum((r) => r.cmds.scripts) / tsum((r) => r.total),
          commands: Object.fromEntries(
            Object.entries(
              tps.reduce((a, r) => {
                for (const [k, v] of Object.entries(r.cmds.delta)) a[k] = (a[k] || 0) + v;
                return a;
              }, {}),
            ).map(([k, v]) => [k, round(v / tsum((r) => r.total), 3)]),
          ),
        },
        handoff: { ...summary(rs.flatMap((r) => r.handoff.samples)), failures: sum((r) => r.handoff.failures) },
        phaseSeconds: rs.map((r) => r.phases),
      };
    }
  } finally {
    await topo.stopAll(all);
  }
  out.seconds = (Date.now() - t0) / 1000;
  log(`  topologies: ${out.seconds.toFixed(0)} s`);
  return out;
}

// --- 8. Open loop (issue 15) ------------------------------------------------------------------

/**
 * Poisson arrivals of acquire + release pairs on fresh ids at fixed rates, one fresh process per
 * library, rate and round (lib/openloop.js; arrivals come from a generator process through a
 * pipe). Every library gets the same arrival schedule (same seed) in the same minutes: for
 * each rate, rounds in alternating library order.
 */
async function openloop(url, names, redisPid) {
  const { rates, rounds, warmupMs, durationMs } = P.openloop;
  const out = { rates: {} };
  let turn = 0;
  for (const rate of rates) {
    const parts = Object.fromEntries(names.map((n) => [n, []]));
    const errors = {};
    for (let r = 0; r < rounds; r++) {
      const order = turn++ % 2 === 0 ? names : [...names].reverse();
      for (const lib of order) {
        if (errors[lib]) continue;
        log(`  open loop ${rate}/s: ${lib}${rounds > 1 ? ` (round ${r + 1}/${rounds})` : ''}`);
        await flush();
        const load1 = round(os.loadavg()[0], 2);
        try {
          const res = await withWorkers(1, lib, url, ([w]) =>
            withTimeout(
              w.call('openloop', { rate, warmupMs, durationMs, seed: rate * 1000 + r + 1, redisPid }),
              warmupMs + durationMs + 20000,
              'openloop',
            ),
          );
          parts[lib].push({ ...res, load1 });
        } catch (err) {
          errors[lib] = failed(`open loop ${rate}/s ${lib}`, err);
        }
      }
    }
    out.rates[rate] = {};
    for (const lib of names) {
      if (errors[lib]) {
        out.rates[rate][lib] = errors[lib];
        continue;
      }
      out.rates[rate][lib] = aggregateOpenloop(rate, parts[lib]);
    }
  }
  return out;
}

function aggregateOpenloop(rate, rs) {
  const sum = (f) => rs.reduce((a, x) => a + f(x), 0);
  const pairs = sum((x) => x.pairs);
  const seconds = sum((x) => x.seconds);
  const per = (v) => (pairs ? v / pairs : null);
  const total = summary(rs.flatMap((x) => x.total));
  const service = summary(rs.flatMap((x) => x.service));
  const lag = summary(rs.flatMap((x) => x.lag));
  const threads = {};
  for (const role of Object.keys(rs[0].threads)) {
    const get = (k) => sum((x) => x.threads[role][k]);
    if (!rs.some((x) => x.threads[role].threads)) continue;
    threads[role] = {
      threads: Math.max(...rs.map((x) => x.threads[role].threads)),
      cpuUsPerPair: per(get('cpuUs')),
      voluntaryPerPair: per(get('voluntary')),
      involuntaryPerPair: per(get('involuntary')),
      scheduledInPerPair: per(get('slices')),
      runQueueUsPerPair: per(get('runQueueUs')),
    };
  }
  return {
    rate,
    pairs,
    seconds,
    achieved: pairs / seconds,
    cpuUsPerPair: per(sum((x) => x.cpuUs)),
    userUsPerPair: per(sum((x) => x.userUs)),
    systemUsPerPair: per(sum((x) => x.systemUs)),
    statCpuUsPerPair: per(sum((x) => x.statCpuUs)),
    coreShare: sum((x) => x.cpuUs) / 1e6 / seconds,
    redisCpuUsPerPair: rs.every((x) => x.redisCpuUs !== null) ? per(sum((x) => x.redisCpuUs)) : null,
    switchesPerPair: per(sum((x) => x.voluntary + x.involuntary)),
    voluntaryPerPair: per(sum((x) => x.voluntary)),
    involuntaryPerPair: per(sum((x) => x.involuntary)),
    p50: total.p50,
    p90: total.p90,
    p99: total.p99,
    max: total.max,
    serviceP50: service.p50,
    serviceP99: service.p99,
    lagP50: lag.p50,
    lagP99: lag.p99,
    threads,
    exited: {
      threads: sum((x) => x.exited.threads),
      cpuUsPerPair: per(sum((x) => x.exited.cpuUs)),
      switchesPerPair: per(sum((x) => x.exited.switches)),
    },
    failures: sum((x) => x.failures),
    errors: sum((x) => x.errors),
    firstError: rs.map((x) => x.firstError).find(Boolean) || null,
    incomplete: sum((x) => x.incomplete),
    rounds: rs.map((x) => ({
      achieved: round(x.pairs / x.seconds, 1),
      cpuUsPerPair: round(x.cpuUs / x.pairs, 1),
      p50: round(summary(x.total).p50, 1),
      load1: x.load1,
    })),
  };
}

/** The open-loop rows: --openloop-libs, or ours, redfour, ioredfour, floor. */
function openloopLibs() {
  // Short names for rows whose names hold commas or spaces.
  const alias = { harness: libs.HARNESS, baseline: 'redfour-native (baseline)' };
  const given = option('openloop-libs');
  if (given) return given.map((n) => alias[n] || n);
  const rows = [];
  if (LIBS.includes('redfour-native')) rows.push('redfour-native');
  for (const l of ['redfour', 'ioredfour']) if (LIBS.includes(l)) rows.push(l);
  rows.push('floor');
  return rows;
}

// --- main -----------------------------------------------------------------------------------

async function waitQuiet() {
  const a = args.find((x) => x === '--wait-quiet' || x.startsWith('--wait-quiet='));
  if (!a) return;
  const limit = Date.now() + 1000 * (a.includes('=') ? Number(a.split('=')[1]) : 300);
  while (os.loadavg()[0] >= 1.0 && Date.now() < limit) {
    log(`load average ${os.loadavg()[0].toFixed(2)}: waiting for a quieter machine`);
    await sleep(15000);
  }
}

function writeOutputs(results) {
  const dir = path.join(__dirname, 'results');
  fs.mkdirSync(dir, { recursive: true });
  const stem = results.quick ? `${results.date}-quick` : results.date;
  const jsonPath = path.join(dir, `${stem}.json`);
  let chartPath = null;
  try {
    chartPath = require('./lib/chart').write(results, path.join(dir, `${stem}.png`));
    // A stable name for the README to link to (full runs only).
    if (chartPath && !results.quick) fs.copyFileSync(chartPath, path.join(dir, 'latest.png'));
  } catch (err) {
    log(`chart not written: ${err.message}`);
  }
  results.chart = chartPath ? path.relative(__dirname, chartPath) : null;
  fs.writeFileSync(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
  const mdName = results.quick ? 'RESULTS-quick.md' : 'RESULTS.md';
  fs.writeFileSync(path.join(__dirname, mdName), report.markdown(results, { jsonPath: path.relative(__dirname, jsonPath) }));
  log(`wrote ${path.relative(process.cwd(), jsonPath)}, bench/${mdName}${chartPath ? `, ${path.relative(process.cwd(), chartPath)}` : ''}`);
}

async function main() {
  const from = option('from');
  if (from) {
    const results = JSON.parse(fs.readFileSync(path.resolve(from[0]), 'utf8'));
    results.targets = report.targets(results);
    writeOutputs(results);
    return;
  }
  await waitQuiet();
  const started = Date.now();
  const date = new Date().toISOString().slice(0, 10);
  const results = {
    date,
    startedAt: new Date().toISOString(),
    quick: QUICK,
    params: { ...P, contentionSetup: CONTENTION, pollMs: libs.POLL_MS },
    machine: machine(),
  };
  results.machine.buildAtStart = buildState();
  log(`redfour-native bench (${QUICK ? 'quick' : 'full'}) on ${results.machine.nproc} cores, ${results.machine.cpu}`);

  const server = await new RedisServer().start();
  const Redis = libs.requireIoredis();
  admin = new Redis(server.url);
  try {
    log(`redis-server ${results.machine.redis} pid ${server.pid} on port ${server.port}`);
    results.clock = await checkClock();
    results.calibration = await calibrate();
    log(
      `  PING round trip: ${results.calibration.pingHot.p50.toFixed(0)} µs hot, ${results.calibration.pingAfterIdle.p50.toFixed(0)} µs after ${P.handoff.settleMs} ms idle (p50)`,
    );
    log(`  shared monotonic clock: ${results.clock.verified ? 'verified' : `NOT verified (${results.clock.outOfOrder} out of order)`}`);
    const withFloor = [...LIBS, 'floor'];
    // The napi-only layer (scenario 6) runs interleaved with the others, for the same conditions.
    const layered = want('overhead') && LIBS.includes('redfour-native') ? [...withFloor, NAPI] : withFloor;
    if (want('latency')) results.latency = await latency(server.url, layered);
    if (want('throughput')) results.throughput = await throughput(server.url, layered);
    if (want('handoff')) results.handoff = await handoff(server.url, [...withFloor, libs.PUBLISH_FLOOR]);
    if (want('contention')) results.contention = await contention(server.url, LIBS);
    if (want('scale')) results.scale = await scale(server.url, LIBS);
    if (want('overhead')) results.overhead = await overhead(server.url, results);
    if (want('topologies')) results.topologies = await topologies(server.url);
    if (want('openloop')) results.openloop = await openloop(server.url, openloopLibs(), server.pid);
  } finally {
    admin.disconnect();
    await server.stop();
  }
  results.seconds = (Date.now() - started) / 1000;
  results.machine.loadAverageAtEnd = os.loadavg().map((v) => round(v, 2));
  results.machine.buildAtEnd = buildState();
  if (JSON.stringify(results.machine.buildAtEnd) !== JSON.stringify(results.machine.buildAtStart)) {
    log(
      `WARNING: the addon or the library's sources changed during the run: ${JSON.stringify(results.machine.buildAtStart)} -> ${JSON.stringify(results.machine.buildAtEnd)}`,
    );
  }
  results.targets = report.targets(results);

  console.log(report.consoleTables(results));
  if (WRITE) writeOutputs(results);
  log(`done in ${results.seconds.toFixed(0)} s`);
}

// Interrupted: exit through process.exit, whose 'exit' hook stops redis-server by its pid (the
// workers exit by themselves when their IPC channel closes).
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    log(`${signal}: stopping`);
    process.exit(130);
  });
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
