#!/usr/bin/env node
'use strict';
// The chaos runner: for each scenario, starts a private redis-server and the Redis truth recorder
// (chaos/truth.js: a MONITOR of every write to the lock keys), forks worker processes
// (chaos/worker.js) that hammer a few hot ids and many cold ones, injects the scenario's faults,
// stops everything, checks the final keys, and runs chaos/checker.js over the recorded histories
// and the truth. In the `proxy` scenarios each worker reaches Redis through its own FaultProxy
// (__test__/helpers/proxy.js), so one worker's subscriber connection can be held, cut or
// black-holed.
//
//   node chaos/run.js              full suite (21 scenarios, about 8 minutes on 2 cores)
//   node chaos/run.js --quick      CI subset (3 short scenarios, well under a minute)
//   options: --only a,b  --duration ms  --seed n  --json file  --markdown file  --keep (keep histories)
//
// Exit code 1 if any scenario has a violation (an anomaly no documented limit explains).

const { fork } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const Redis = require('ioredis');
const { RedisServer } = require('../__test__/helpers/redis');
const { FaultProxy } = require('../__test__/helpers/proxy');
const { nowUs, prng, Jsonl, redisCall, redisCmd, sleep } = require('./lib');
const { checkDir } = require('./checker');

const WORKER = path.join(__dirname, 'worker.js');
const TRUTH = path.join(__dirname, 'truth.js');

// ---------------------------------------------------------------------------------------------
// Faults. Each gets ctx (see runScenario) and loops until ctx.running() is false.

async function restartLoop(ctx, { hard, everyMs = 4000, downMs = 300, dataLoss = true }) {
  await ctx.sleep(everyMs / 2);
  while (ctx.running()) {
    const t0 = nowUs();
    if (hard) await ctx.server.kill();
    else await ctx.server.stop();
    await sleep(downMs);
    await ctx.server.start();
    ctx.fault(hard ? 'restart-sigkill' : 'restart-sigterm', t0, nowUs(), { dataLoss });
    await ctx.sleep(everyMs);
  }
}

async function pauseLoop(ctx, { everyMs = 4000, pauseMs = [1200, 2500] } = {}) {
  await ctx.sleep(everyMs / 2);
  while (ctx.running()) {
    const t0 = nowUs();
    ctx.server.pause();
    await sleep(ctx.rnd.int(pauseMs[0], pauseMs[1]));
    ctx.server.resume();
    ctx.fault('sigstop', t0, nowUs());
    await ctx.sleep(everyMs);
  }
}

/**
 * CLIENT KILL TYPE `type`, sparing the truth recorder (named chaos-truth-*; MONITOR clients are of
 * type normal): for 'normal' the connections are listed and killed by ID in one pipeline, so the
 * kills run back to back as one CLIENT KILL TYPE would.
 */
async function killClients(port, type) {
  if (type !== 'normal') return redisCmd(port, ['CLIENT', 'KILL', 'TYPE', type], { timeoutMs: 2000 });
  const list = await redisCmd(port, ['CLIENT', 'LIST', 'TYPE', 'normal'], { timeoutMs: 2000 });
  const ids = list
    .split('\n')
    .filter((l) => l.startsWith('id=') && !/ name=chaos-truth/.test(l))
    .map((l) => /^id=(\d+)/.exec(l)[1]);
  if (ids.length === 0) return 0;
  const replies = await redisCall(
    port,
    ids.map((id) => ['CLIENT', 'KILL', 'ID', id]),
    { timeoutMs: 2000 },
  );
  return replies.filter((r) => r === 1).length;
}

async function clientKillLoop(ctx, { type, everyMs }) {
  await ctx.sleep(1000);
  while (ctx.running()) {
    const t0 = nowUs();
    let killed = 0;
    try {
      killed = await killClients(ctx.server.port, type);
    } catch {
      // counted as a no-op fault
    }
    ctx.fault(`client-kill-${type}`, t0, nowUs(), { killed });
    await ctx.sleep(ctx.rnd.int(everyMs / 2, everyMs * 1.5));
  }
}

async function debugSleepLoop(ctx, { everyMs = 2500, sleepMs = [200, 1500] } = {}) {
  await ctx.sleep(1000);
  while (ctx.running()) {
    const ms = ctx.rnd.int(sleepMs[0], sleepMs[1]);
    const t0 = nowUs();
    try {
      await redisCmd(ctx.server.port, ['DEBUG', 'SLEEP', (ms / 1000).toFixed(3)], { timeoutMs: ms + 3000 });
    } catch {
      // ignore
    }
    ctx.fault('debug-sleep', t0, nowUs(), { ms });
    await ctx.sleep(everyMs);
  }
}

async function holderKillLoop(ctx, { everyMs = 1500 } = {}) {
  await ctx.sleep(1000);
  while (ctx.running()) {
    // A victim that said it started a long hold of a hot id in the last 100 ms.
    const fresh = ctx.liveWorkers().filter((wk) => wk.lastHolding && Date.now() - wk.lastHolding < 100);
    const victim = fresh.length ? ctx.rnd.pick(fresh) : null;
    if (victim) {
      const t0 = nowUs();
      ctx.killWorker(victim);
      ctx.fault('holder-sigkill', t0, nowUs(), { w: victim.w });
      await ctx.spawnWorker();
      await ctx.sleep(ctx.rnd.int(everyMs / 2, everyMs * 1.5));
    } else {
      await sleep(10);
    }
  }
}

/**
 * Memory pressure: maxmemory a few MB above the baseline, and a filler writing 8 KB values (with
 * SETRANGE, so that MONITOR does not echo 8 KB per write to the truth recorder).
 */
async function evictionLoop(ctx, { policy, fillerTtlMs }) {
  const port = ctx.server.port;
  const info = await redisCmd(port, ['INFO', 'memory']);
  const used = Number(/used_memory:(\d+)/.exec(info)[1]);
  const limit = used + 3 * 1024 * 1024;
  await redisCmd(port, ['CONFIG', 'SET', 'maxmemory-policy', policy]);
  await redisCmd(port, ['CONFIG', 'SET', 'maxmemory', String(limit)]);
  const filler = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, lazyConnect: false });
  filler.on('error', () => {});
  const value = 'x'.repeat(8192);
  const t0 = nowUs();
  let n = 0;
  let oom = 0;
  while (ctx.running()) {
    const p = filler.pipeline();
    for (let i = 0; i < 40; i++) {
      n += 1;
      p.setrange(`fill:${n % 5000}`, value.length - 1, 'x');
      if (fillerTtlMs) p.pexpire(`fill:${n % 5000}`, fillerTtlMs);
    }
    const res = await p.exec().catch(() => []);
    oom += (res || []).filter(([err]) => err).length;
    await sleep(15);
  }
  const stats = await redisCmd(port, ['INFO', 'stats']);
  const evicted = Number(/evicted_keys:(\d+)/.exec(stats)[1]);
  filler.disconnect();
  await redisCmd(port, ['CONFIG', 'SET', 'maxmemory', '0']);
  ctx.fault(`maxmemory-${policy}`, t0, nowUs(), { dataLoss: policy !== 'noeviction', evicted, fillerWrites: n, fillerOom: oom });
  ctx.note({ evictedKeys: evicted, fillerOom: oom });
}

// Faults on one worker's own connections (proxy scenarios: every worker has its FaultProxy).

/** Holds back the server->client bytes of one worker's subscriber for 2-3 s, then delivers them. */
async function pubsubHoldLoop(ctx, { everyMs = [1000, 2500], holdMs = [2000, 3000] } = {}) {
  await ctx.sleep(1000);
  while (ctx.running()) {
    const wk = ctx.rnd.pick(ctx.liveWorkers());
    const t0 = nowUs();
    const held = wk.proxy.hold('subscriber');
    await sleep(ctx.rnd.int(holdMs[0], holdMs[1]));
    const delivered = wk.proxy.deliver('subscriber');
    ctx.fault('pubsub-hold', t0, nowUs(), { w: wk.w, held: held.length, delivered: delivered.length });
    await ctx.sleep(ctx.rnd.int(everyMs[0], everyMs[1]));
  }
}

/**
 * Cuts (RST) a subscriber connection right after a hand-off: when a worker reports a release,
 * another worker's subscriber (its waiters were just sent that release); when a worker reports a
 * grant that waited, its own subscriber. At most one cut every 150-400 ms.
 */
async function pubsubCutLoop(ctx, { gapMs = [150, 400] } = {}) {
  let next = Date.now() + 1000;
  ctx.onNotify((wk, m) => {
    if (!ctx.running() || Date.now() < next || wk.killed || wk.exited) return;
    let victim = null;
    if (m.type === 'released') {
      const others = ctx.liveWorkers().filter((o) => o !== wk);
      victim = others.length ? ctx.rnd.pick(others) : null;
    } else if (m.type === 'granted' && m.imm === false) {
      victim = wk;
    }
    if (!victim) return;
    const t = nowUs();
    const cut = victim.proxy.cut('subscriber');
    ctx.fault('pubsub-cut', t, t, { w: victim.w, after: m.type, conns: cut.length });
    next = Date.now() + ctx.rnd.int(gapMs[0], gapMs[1]);
  });
  while (ctx.running()) await ctx.sleep(100);
}

/**
 * Half-opens one worker's subscriber (nothing passes, no FIN or RST) and measures how long the
 * library takes to notice and resubscribe on a new connection: docs/how-it-works.md (Outages) promises within 3 s
 * while anybody waits (PING every second, dead after 2 s without an answer).
 */
async function halfOpenLoop(ctx, { everyMs = [1500, 3000], boundMs = 4000 } = {}) {
  await ctx.sleep(1000);
  while (ctx.running()) {
    const wk = ctx.rnd.pick(ctx.liveWorkers());
    const before = new Set(
      wk.proxy
        .connections()
        .filter((c) => c.subscriber && !c.blackholed)
        .map((c) => c.id),
    );
    if (before.size === 0) {
      await ctx.sleep(50);
      continue;
    }
    const t0 = nowUs();
    wk.proxy.blackhole('subscriber');
    let tookMs;
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline && !wk.exited && !wk.killed) {
      if (wk.proxy.connections().some((c) => c.subscriber && !c.blackholed && !before.has(c.id))) {
        tookMs = Math.round((nowUs() - t0) / 100) / 10;
        break;
      }
      await sleep(5);
    }
    // Still no new subscriber (and the worker is alive): reported as taking 15 s.
    if (tookMs === undefined && !wk.exited && !wk.killed) tookMs = 15000;
    ctx.fault('pubsub-half-open', t0, nowUs(), { w: wk.w, tookMs, boundMs });
    await ctx.sleep(ctx.rnd.int(everyMs[0], everyMs[1]));
  }
}

/** SIGKILLs a worker that just started waiting for a hot id (with waiters queued in it), and replaces it. */
async function waiterKillLoop(ctx, { everyMs = 1000 } = {}) {
  await ctx.sleep(1000);
  while (ctx.running()) {
    const fresh = ctx.liveWorkers().filter((wk) => wk.lastWaiting && Date.now() - wk.lastWaiting < 30);
    if (fresh.length === 0) {
      await sleep(5);
      continue;
    }
    const victim = ctx.rnd.pick(fresh);
    // Let the wait get past its first attempt and into the queue.
    await sleep(ctx.rnd.int(5, 40));
    if (victim.exited || victim.killed) continue;
    const t0 = nowUs();
    ctx.killWorker(victim);
    ctx.fault('waiter-sigkill', t0, nowUs(), { w: victim.w });
    await ctx.spawnWorker();
    await ctx.sleep(ctx.rnd.int(everyMs / 2, everyMs * 1.5));
  }
}

// ---------------------------------------------------------------------------------------------
// Scenarios. `guarantee: true` means the lock's guarantees apply and every anomaly is a violation;
// otherwise `limit` names the documented limit that the anomalies are expected from.

const LEASE_HEAVY = { ops: { lease: 0.45, using: 0.35, wait: 0.15, try: 0.05 } };

const SCENARIOS = [
  { name: 'baseline', fault: 'none', guarantee: true, run: async () => {} },
  {
    name: 'redis-restart-sigterm',
    fault: 'SIGTERM + restart every 4 s, no persistence',
    guarantee: false,
    limit: 'restart without persistence loses locks and resets the counter',
    run: (ctx) => restartLoop(ctx, { hard: false }),
  },
  {
    name: 'redis-restart-sigkill',
    fault: 'SIGKILL + restart every 4 s, no persistence',
    guarantee: false,
    limit: 'restart without persistence loses locks and resets the counter',
    run: (ctx) => restartLoop(ctx, { hard: true }),
  },
  {
    name: 'redis-restart-sigkill-aof',
    fault: 'SIGKILL + restart every 4 s, appendfsync always',
    guarantee: true,
    serverArgs: ['--appendonly', 'yes', '--appendfsync', 'always'],
    run: (ctx) => restartLoop(ctx, { hard: true, dataLoss: false }),
  },
  { name: 'redis-pause', fault: 'SIGSTOP 1.2-2.5 s every 4 s', guarantee: true, run: (ctx) => pauseLoop(ctx) },
  {
    name: 'client-kill-pubsub',
    fault: 'CLIENT KILL TYPE pubsub every ~300 ms',
    guarantee: true,
    run: (ctx) => clientKillLoop(ctx, { type: 'pubsub', everyMs: 300 }),
  },
  {
    name: 'client-kill-normal',
    fault: 'CLIENT KILL TYPE normal every ~700 ms',
    guarantee: true,
    run: (ctx) => clientKillLoop(ctx, { type: 'normal', everyMs: 700 }),
  },
  {
    name: 'debug-sleep',
    fault: 'DEBUG SLEEP 0.2-1.5 s every 2.5 s',
    guarantee: true,
    serverArgs: ['--enable-debug-command', 'yes'],
    run: (ctx) => debugSleepLoop(ctx),
  },
  {
    name: 'holder-sigkill',
    fault: 'SIGKILL a worker holding a hot id (300-700 ms holds, TTL 1 s) every ~1.5 s',
    guarantee: true,
    worker: { hotHold: [300, 700], ttl: [1000, 1000], leaseTtl: [1000, 1000], hotShare: 0.6 },
    run: (ctx) => holderKillLoop(ctx),
  },
  {
    name: 'holder-stall-lease',
    fault: 'acquire()/using() holders block their event loop 1.2-2x the TTL',
    guarantee: true,
    worker: { ...LEASE_HEAVY, stallProb: 0.06, stall: [900, 1600], leaseTtl: [600, 800] },
    run: async () => {},
  },
  {
    name: 'holder-stall-lease+pause',
    fault: 'as above, and Redis SIGSTOPped 1.5-2.5 s (longer than the TTL) every 4 s',
    guarantee: true,
    worker: { ...LEASE_HEAVY, stallProb: 0.06, stall: [900, 1600], leaseTtl: [600, 800] },
    run: (ctx) => pauseLoop(ctx, { pauseMs: [1500, 2500] }),
  },
  {
    name: 'holder-stall-plain',
    fault: 'waitAcquireLock/acquireLock holders block their event loop 1.2-2x the TTL',
    guarantee: true,
    worker: { ops: { wait: 0.7, try: 0.3 }, stallProb: 0.03, stall: [1200, 2500], ttl: [800, 1000], stallOps: ['wait', 'try'] },
    run: async () => {},
  },
  {
    name: 'maxmemory-noeviction',
    fault: 'maxmemory = used + 3 MB, noeviction, filler with 1.5 s TTLs',
    guarantee: true,
    run: (ctx) => evictionLoop(ctx, { policy: 'noeviction', fillerTtlMs: 1500 }),
  },
  {
    name: 'maxmemory-volatile-random',
    fault: 'maxmemory = used + 3 MB, volatile-random (lock keys have TTLs: evictable)',
    guarantee: false,
    limit: 'eviction deletes held lock keys',
    continuousLoss: true,
    run: (ctx) => evictionLoop(ctx, { policy: 'volatile-random', fillerTtlMs: 60000 }),
  },
  {
    name: 'maxmemory-allkeys-random',
    fault: 'maxmemory = used + 3 MB, allkeys-random (the counter is evictable too)',
    guarantee: false,
    limit: 'eviction deletes lock keys and the fencing counter',
    continuousLoss: true,
    run: (ctx) => evictionLoop(ctx, { policy: 'allkeys-random', fillerTtlMs: 0 }),
  },
  // Through a FaultProxy per worker: the subscriber connection of one worker misbehaves.
  {
    name: 'pubsub-hold',
    fault: "one worker's subscriber bytes held back 2-3 s, then delivered, every 1-2.5 s",
    guarantee: true,
    proxy: true,
    worker: { hot: 2, hotShare: 0.7 },
    run: (ctx) => pubsubHoldLoop(ctx),
  },
  {
    name: 'pubsub-cut',
    fault: "a subscriber connection reset right after a release (another worker's) or a waited grant (its own), every 150-400 ms",
    guarantee: true,
    proxy: true,
    worker: { notify: true, hot: 2, hotShare: 0.7 },
    run: (ctx) => pubsubCutLoop(ctx),
  },
  {
    name: 'pubsub-half-open',
    fault: "one worker's subscriber black-holed (no FIN/RST) every 1.5-3 s after it recovered",
    guarantee: true,
    proxy: true,
    worker: { hot: 2, hotShare: 0.7 },
    run: (ctx) => halfOpenLoop(ctx),
  },
  {
    name: 'waiter-sigkill',
    fault: 'SIGKILL a worker 5-40 ms after it started waiting for a hot id (holds 20-200 ms), every ~1 s',
    guarantee: true,
    worker: { notify: true, hot: 2, hotShare: 0.9, hold: [20, 200], ops: { wait: 0.6, lease: 0.15, using: 0.1, try: 0.15 } },
    run: (ctx) => waiterKillLoop(ctx),
  },
  {
    name: 'waits-abort',
    fault: 'callers abort waits 1-60 ms in (AbortSignal), or give them 1-40 ms (waitTtl / waitMs)',
    guarantee: true,
    worker: { hot: 3, hotShare: 0.7, hold: [5, 40], ops: { abort: 0.45, short: 0.15, wait: 0.25, try: 0.15 } },
    run: async () => {},
  },
  {
    name: 'impatient-waiters',
    fault: 'holders keep 2 hot ids 1.5-3 s (acquire(): renewed, TTL 0.6-1 s); 98 % of calls are 1-50 ms waits on them',
    guarantee: true,
    worker: { hot: 2, hotShare: 0.95, hotHold: [1500, 3000], leaseTtl: [600, 1000], leaseSteps: [3, 6], ops: { short: 0.98, lease: 0.02 } },
    run: async () => {},
  },
];

const QUICK = ['holder-sigkill', 'client-kill-pubsub', 'pubsub-cut'];

// ---------------------------------------------------------------------------------------------

function parseArgs(argv) {
  const out = { quick: false, only: null, duration: null, seed: Date.now() % 1e9, json: null, markdown: null, keep: false, workers: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') out.quick = true;
    else if (a === '--keep') out.keep = true;
    else if (a === '--only') out.only = argv[++i].split(',');
    else if (a === '--duration') out.duration = Number(argv[++i]);
    else if (a === '--seed') out.seed = Number(argv[++i]);
    else if (a === '--json') out.json = argv[++i];
    else if (a === '--markdown') out.markdown = argv[++i];
    else if (a === '--workers') out.workers = Number(argv[++i]);
    else throw new Error(`unknown argument ${a}`);
  }
  return out;
}

async function runScenario(scenario, cli) {
  const quick = cli.quick;
  const durationMs = cli.duration || (quick ? 7000 : 20000);
  const nWorkers = cli.workers || (quick ? 3 : 4);
  const seed = cli.seed;
  const rnd = prng(seed ^ hash(scenario.name));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `redfour-chaos-${scenario.name.replace(/[^a-z0-9-]/gi, '_')}-`));
  const namespace = `chaos_${scenario.name.replace(/[^a-z0-9]/gi, '_')}`;
  const server = new RedisServer({ args: scenario.serverArgs || [] });
  await server.start();
  const runner = new Jsonl(path.join(dir, 'runner.jsonl'));
  const truth = await startTruth(server.port, namespace, path.join(dir, 'truth.jsonl'));
  const workerOptions = {
    url: server.url,
    namespace,
    concurrency: quick ? 6 : 8,
    connectTimeout: 1000,
    commandTimeout: 1000,
    ...(scenario.worker || {}),
  };
  const checkOptions = {
    namespace,
    slackMs: 2 * workerOptions.connectTimeout + 3 * workerOptions.commandTimeout + 1500,
    tryBoundMs: 2 * workerOptions.connectTimeout + 3 * workerOptions.commandTimeout + 1500,
    continuousLoss: Boolean(scenario.continuousLoss),
  };
  fs.writeFileSync(path.join(dir, 'options.json'), JSON.stringify(checkOptions));
  const notes = {};

  const workers = new Map();
  const notifyHandlers = [];
  let nextWorker = 0;
  const spawnWorker = async () => {
    const w = nextWorker++;
    // Proxy scenarios: each worker gets a FaultProxy of its own, so a fault hits one worker.
    const proxy = scenario.proxy ? await FaultProxy.start({ port: server.port }) : null;
    const args = {
      ...workerOptions,
      url: proxy ? proxy.url : workerOptions.url,
      worker: w,
      seed: (seed + w * 7919) >>> 0,
      log: path.join(dir, `worker-${w}.jsonl`),
    };
    const child = fork(WORKER, [JSON.stringify(args)], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    const wk = { w, child, proxy, exited: false, lastHolding: 0, lastWaiting: 0, stderr: '' };
    child.stderr.setEncoding('utf8').on('data', (d) => {
      wk.stderr = (wk.stderr + d).slice(-4000);
    });
    wk.exit = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        wk.exited = true;
        resolve({ code, signal });
      }),
    );
    wk.ready = new Promise((resolve) => {
      child.on('message', (m) => {
        if (m.type === 'ready') resolve();
        else if (m.type === 'holding') wk.lastHolding = Date.now();
        else if (m.type === 'waiting') wk.lastWaiting = Date.now();
        else if (m.type === 'released' || m.type === 'granted') for (const h of notifyHandlers) h(wk, m);
      });
      wk.exit.then(resolve);
    });
    workers.set(w, wk);
    return wk.ready;
  };

  let running = true;
  const ctx = {
    server,
    rnd,
    running: () => running,
    sleep: async (ms) => {
      const end = Date.now() + ms;
      while (running && Date.now() < end) await sleep(Math.min(50, end - Date.now()));
    },
    fault: (name, t0, t1, extra = {}) => runner.write({ k: 'fault', name, t0, t1, ...extra, dataLoss: Boolean(extra.dataLoss) }),
    note: (obj) => Object.assign(notes, obj),
    onNotify: (handler) => notifyHandlers.push(handler),
    liveWorkers: () => [...workers.values()].filter((wk) => !wk.exited && !wk.killed),
    killWorker: (wk) => {
      wk.killed = true;
      wk.child.kill('SIGKILL');
      runner.write({ k: 'kill', w: wk.w, t: nowUs() });
    },
    spawnWorker,
  };

  // Sample the fencing counter; a decrease is a token going backwards.
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      try {
        const v = await redisCmd(server.port, ['GET', `${namespace}index`], { timeoutMs: 300 });
        runner.write({ k: 'counter', t: nowUs(), v: v === null ? 0 : Number(v) });
      } catch {
        // paused or down
      }
      await sleep(100);
    }
  })();

  const started = Date.now();
  await Promise.all(Array.from({ length: nWorkers }, () => spawnWorker()));
  const stopTimer = setTimeout(() => {
    running = false;
  }, durationMs);
  let faultError = null;
  await scenario.run(ctx).catch((err) => {
    faultError = err;
  });
  await new Promise((resolve) => {
    const tick = () => (running ? setTimeout(tick, 50) : resolve());
    tick();
  });
  clearTimeout(stopTimer);
  if (!server.running) await server.start();

  // Stop the workers and wait for their final records.
  for (const wk of ctx.liveWorkers()) {
    try {
      wk.child.send({ cmd: 'stop' });
    } catch {
      /* gone */
    }
  }
  const hung = [];
  await Promise.all(
    ctx.liveWorkers().map(async (wk) => {
      const t = setTimeout(() => {
        hung.push(wk.w);
        wk.child.kill('SIGKILL');
      }, 25000);
      const exit = await wk.exit;
      clearTimeout(t);
      wk.exitStatus = exit;
    }),
  );
  sampling = false;
  await sampler;
  for (const wk of workers.values()) if (wk.proxy) await wk.proxy.close();

  // Final key state: every lock key has an expiry within the largest TTL, and none outlives it.
  const maxTtl = Math.max(...(workerOptions.ttl || [1500]), ...(workerOptions.leaseTtl || [1200]), 1500);
  const keys = await redisCmd(server.port, ['KEYS', `${namespace}:*`]);
  let immortal = 0;
  let overTtl = 0;
  let longest = 0;
  const sample = [];
  for (const key of keys) {
    const pttl = await redisCmd(server.port, ['PTTL', key]);
    if (pttl === -1) {
      immortal += 1;
      sample.push(key);
    }
    if (pttl > maxTtl) {
      overTtl += 1;
      sample.push(`${key} pttl ${pttl}`);
    }
    longest = Math.max(longest, pttl);
  }
  await sleep(Math.min(longest, maxTtl) + 300);
  const left = (await redisCmd(server.port, ['KEYS', `${namespace}:*`])).filter((k) => !sample.includes(k));
  runner.write({
    k: 'keys',
    t: nowUs(),
    atStop: keys.length,
    immortal,
    overTtl,
    leftAfterTtl: left.length,
    sample: sample.slice(0, 5),
    sampleLeft: left.slice(0, 5),
  });
  runner.close();
  const truthStats = await truth.stop();

  const result = checkDir(dir);
  const row = {
    scenario: scenario.name,
    fault: scenario.fault,
    guarantee: scenario.guarantee,
    limit: scenario.limit,
    seconds: Math.round((Date.now() - started) / 100) / 10,
    workers: workers.size,
    killedWorkers: [...workers.values()].filter((wk) => wk.killed).length,
    hungWorkers: hung,
    faults: countFaults(dir),
    faultError: faultError ? String(faultError.stack || faultError) : undefined,
    truthRecorder: truthStats,
    ...notes,
    ...result,
    dir: cli.keep ? dir : undefined,
  };
  const stderrs = [...workers.values()].filter((wk) => wk.stderr.trim()).map((wk) => `worker ${wk.w}: ${wk.stderr.trim().slice(-500)}`);
  if (stderrs.length) row.workerStderr = stderrs.slice(0, 3);
  await server.cleanup();
  if (!cli.keep) fs.rmSync(dir, { recursive: true, force: true });
  return row;
}

/** Forks the truth recorder (chaos/truth.js) and waits until its MONITOR is confirmed. */
async function startTruth(port, namespace, log) {
  const child = fork(TRUTH, [JSON.stringify({ port, namespace, log })], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const exit = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let stats = null;
  child.on('message', (m) => {
    if (m && m.type === 'stopped') stats = m;
  });
  await new Promise((resolve, reject) => {
    child.on('message', (m) => {
      if (m && m.type === 'ready') resolve();
    });
    exit.then((e) => reject(new Error(`truth recorder exited (${JSON.stringify(e)}): ${stderr}`)));
  });
  return {
    async stop() {
      try {
        child.send({ cmd: 'stop' });
      } catch {
        /* gone */
      }
      const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
      const e = await exit;
      clearTimeout(timer);
      if (!stats) return { failed: true, exit: e, stderr: stderr.slice(-500) };
      const { type, ...rest } = stats;
      return rest;
    },
  };
}

function countFaults(dir) {
  const lines = fs.readFileSync(path.join(dir, 'runner.jsonl'), 'utf8').split('\n').filter(Boolean);
  return lines.filter((l) => l.includes('"k":"fault"')).length;
}

function hash(text) {
  let h = 2166136261;
  for (const ch of text) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  return h >>> 0;
}

function fmtErrors(errors) {
  const parts = Object.entries(errors || {}).map(([k, v]) => `${k} ${v}`);
  return parts.length ? parts.join(', ') : '0';
}

function markdownTable(rows) {
  const head =
    '| scenario | fault | guarantee applies | ops | grants | checked against Redis | violations | documented-limit anomalies | token regressions | naive-belief overlaps | max waiter stall ms (quiet) | recovery ms median / max | errors |';
  const sep = '| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | --- | --- |';
  const lines = rows.map((r) => {
    const limits =
      Object.entries(r.limitsByKind || {})
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || '0';
    const rec = r.recoveryMs ? `${r.recoveryMs.median} / ${r.recoveryMs.max}` : 'n/a';
    const checked = r.truth ? r.truth.checkedBeliefs : 'n/a';
    return `| ${r.scenario} | ${r.fault} | ${r.guarantee ? 'yes' : `no: ${r.limit}`} | ${r.attempted} | ${r.grants} | ${checked} | **${r.violations}** | ${limits} | ${r.tokenRegressions + r.counterResets} | ${r.naiveOverlaps} | ${r.maxStallMs} (${r.maxQuietStallMs}) | ${rec} | ${fmtErrors(r.errors)} |`;
  });
  return [head, sep, ...lines].join('\n');
}

async function main() {
  const cli = parseArgs(process.argv.slice(2));
  let list = SCENARIOS;
  if (cli.only) list = SCENARIOS.filter((s) => cli.only.includes(s.name));
  else if (cli.quick) list = SCENARIOS.filter((s) => QUICK.includes(s.name));
  if (list.length === 0) throw new Error('no scenario selected');
  console.error(`chaos: ${list.length} scenario(s), seed ${cli.seed}${cli.quick ? ', quick' : ''}`);
  const rows = [];
  for (const scenario of list) {
    const row = await runScenario(scenario, cli);
    rows.push(row);
    const tr = row.truth
      ? `truth: ${row.truth.checkedBeliefs} checked, ${row.truth.gaps} gaps, learn lag ${JSON.stringify(row.truth.learnLagMs)}, unclaimed ${JSON.stringify(row.truth.unclaimedGrants)}; `
      : 'no truth; ';
    console.error(
      `${row.violations === 0 ? 'ok  ' : 'FAIL'} ${row.scenario}: ${tr}${row.attempted} ops, ${row.grants} grants, ${row.violations} violations, ${row.limits} limit anomalies (${JSON.stringify(row.limitsByKind)}), max stall ${row.maxStallMs} ms, recovery ${JSON.stringify(row.recoveryMs)}, errors ${fmtErrors(row.errors)} [${row.seconds} s]`,
    );
    if (row.violations) console.error(JSON.stringify(row.examples, null, 1).slice(0, 4000));
  }
  const report = { seed: cli.seed, quick: cli.quick, node: process.version, rows };
  if (cli.json) fs.writeFileSync(cli.json, JSON.stringify(report, null, 2));
  if (cli.markdown) fs.writeFileSync(cli.markdown, `${markdownTable(rows)}\n`);
  console.log(JSON.stringify(report));
  process.exitCode = rows.some((r) => r.violations > 0) ? 1 : 0;
}

module.exports = { SCENARIOS, markdownTable };

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(2);
  });
}
