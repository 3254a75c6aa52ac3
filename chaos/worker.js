'use strict';
// A chaos worker (forked by chaos/run.js): runs `concurrency` loops of lock operations against one
// namespace and records every call, grant, release, lease check and event-loop stall to a JSONL
// history with CLOCK_MONOTONIC timestamps (µs). chaos/checker.js reads the histories.
//
// argv[2] JSON: see DEFAULTS. IPC in: {cmd:'stop'}. IPC out: {type:'ready'}, {type:'holding', id, until}
// (a long hold of a hot id started: the runner's holder-kill fault picks its victims from these),
// {type:'done'}.
//
// Records (field w = worker id, c = call number, t = µs):
//   call  {op, id, ttl, wait}              a call is issued (op: try | wait | lease | using)
//   grant {id, idx, imm, ttl, until}       the lock was granted; `until` (µs) is the end of the
//                                          lease as the holder may believe it (see beliefUntil)
//   fail  {id, why, pttl}                  not granted: why 'busy' (acquireLock) or 'timeout'
//   err   {id, code, msg}                  the call rejected
//   use   {until}                          lease holder checked its lease: still valid until `until`
//   lost  {reason}                         lease holder found its lease lost
//   rel   {}                               the holder stops using the lock and calls release
//   reld  {result, code}                   the release finished (result) or rejected (code)
//   lag   {ms}                             the event loop was blocked for `ms` (ending at t)
//   stall {ms}                             this worker deliberately blocks its event loop for ms
//   start / end {pending}                  worker life; `pending` lists calls that never settled

const Lock = require('..');
const { nowUs, prng, Jsonl, sleep, busy } = require('./lib');

const DEFAULTS = {
  url: undefined,
  namespace: 'chaos',
  worker: 0,
  log: undefined,
  seed: 1,
  concurrency: 8,
  hot: 3,
  cold: 200,
  hotShare: 0.5,
  ops: { wait: 0.55, try: 0.2, lease: 0.15, using: 0.1 },
  ttl: [800, 1500],
  wait: [200, 3000],
  hold: [0, 15],
  hotHold: null, // [min, max] hold for hot ids (holder-kill scenario: long holds)
  leaseTtl: [600, 1200],
  leaseSteps: [1, 4],
  stallProb: 0, // probability that a hold contains a busy-loop stall
  stall: [0, 0], // its length, ms (may exceed the TTL)
  stallOps: ['lease', 'using'], // which ops stall
  connectTimeout: 1000,
  commandTimeout: 1000,
  stopGraceMs: 15000,
};

const args = { ...DEFAULTS, ...JSON.parse(process.argv[2]) };
const W = args.worker;
const rnd = prng(args.seed);
const log = new Jsonl(args.log);
const rec = (record) => log.write({ ...record, w: W, t: record.t ?? nowUs() });
const send = (msg) => {
  try {
    if (process.connected) process.send(msg);
  } catch {
    // the runner went away; keep going until stopped
  }
};

const lock = new Lock({
  redis: args.url,
  namespace: args.namespace,
  connectTimeout: args.connectTimeout,
  commandTimeout: args.commandTimeout,
});

const pending = new Map(); // c -> {op, id}
let seq = 0;
let stopping = false;

/** The lease margin the library itself uses for leases: ttl/10, clamped to 5 ms .. 2 s. */
const margin = (ttl) => Math.min(2000, Math.max(5, ttl / 10));

/**
 * The end (µs) of the lease as its holder may believe it. A grant's key expires no earlier than
 * ttl after its acquire script was sent. For acquireLock and an immediate waitAcquireLock the script
 * was sent after the call was issued (callT). For a waitAcquireLock that had to wait, the deciding
 * attempt's send time is not exposed to JavaScript: the holder takes the time it learnt of the
 * grant, less the library's own lease margin (a late delivery, e.g. a blocked event loop, can
 * defeat this: the checker reports such overlaps separately as a documented limit).
 */
function beliefUntil(op, callT, recvT, ttl, immediate) {
  if (op === 'try' || immediate) return callT + ttl * 1000;
  return recvT + (ttl - margin(ttl)) * 1000;
}

function pickId() {
  if (rnd.chance(args.hotShare)) return `hot${rnd.int(0, args.hot - 1)}`;
  return `c${rnd.int(0, args.cold - 1)}`;
}

function holdMs(id) {
  const range = args.hotHold && id.startsWith('hot') ? args.hotHold : args.hold;
  return rnd.int(range[0], range[1]);
}

function maybeStall(op) {
  if (args.stallProb > 0 && args.stallOps.includes(op) && rnd.chance(args.stallProb)) {
    const ms = rnd.int(args.stall[0], args.stall[1]);
    rec({ k: 'stall', ms });
    busy(ms);
    return true;
  }
  return false;
}

function errRecord(c, id, err) {
  rec({ k: 'err', c, id, code: err && err.code, msg: String(err && err.message).slice(0, 200) });
}

async function release(c, id, index) {
  rec({ k: 'rel', c });
  try {
    const r = await lock.releaseLock({ id, index });
    rec({ k: 'reld', c, result: r.result });
  } catch (err) {
    rec({ k: 'reld', c, code: err.code, msg: String(err.message).slice(0, 200) });
  }
}

async function plainHold(op, c, id, ms) {
  if (args.hotHold && id.startsWith('hot')) send({ type: 'holding', id, ms });
  const stalled = maybeStall(op);
  if (!stalled && ms > 0) await sleep(ms);
}

async function opTry(c, id) {
  const ttl = rnd.int(args.ttl[0], args.ttl[1]);
  const callT = nowUs();
  rec({ k: 'call', c, op: 'try', id, ttl, t: callT });
  let r;
  try {
    r = await lock.acquireLock(id, ttl);
  } catch (err) {
    errRecord(c, id, err);
    await sleep(rnd.int(5, 25));
    return;
  }
  const t = nowUs();
  if (!r.success) {
    rec({ k: 'fail', c, id, why: 'busy', pttl: r.ttl, t });
    await sleep(rnd.int(5, 25));
    return;
  }
  rec({ k: 'grant', c, id, idx: r.index, imm: true, ttl, until: beliefUntil('try', callT, t, ttl, true), t });
  await plainHold('try', c, id, holdMs(id));
  await release(c, id, r.index);
}

async function opWait(c, id) {
  const ttl = rnd.int(args.ttl[0], args.ttl[1]);
  const wait = rnd.int(args.wait[0], args.wait[1]);
  const callT = nowUs();
  rec({ k: 'call', c, op: 'wait', id, ttl, wait, t: callT });
  let r;
  try {
    r = await lock.waitAcquireLock(id, ttl, wait);
  } catch (err) {
    errRecord(c, id, err);
    await sleep(rnd.int(5, 25));
    return;
  }
  const t = nowUs();
  if (!r.success) {
    rec({ k: 'fail', c, id, why: 'timeout', pttl: r.ttl, t });
    return;
  }
  rec({ k: 'grant', c, id, idx: r.index, imm: r.immediate, ttl, until: beliefUntil('wait', callT, t, ttl, r.immediate), t });
  await plainHold('wait', c, id, holdMs(id));
  await release(c, id, r.index);
}

/** Checks a held lease before each step of work; records 'use' while valid, 'lost' once not. */
function checkLease(c, held) {
  const t = nowUs();
  const remaining = held.remainingMs;
  if (!held.signal.aborted && remaining > 0) {
    rec({ k: 'use', c, until: t + remaining * 1000, t });
    return true;
  }
  const reason = held.signal.aborted && held.signal.reason ? held.signal.reason.reason || held.signal.reason.code : 'remaining 0';
  rec({ k: 'lost', c, reason, t });
  return false;
}

async function leaseWork(op, c, id, held) {
  if (args.hotHold && id.startsWith('hot')) send({ type: 'holding', id });
  const steps = rnd.int(args.leaseSteps[0], args.leaseSteps[1]);
  for (let i = 0; i < steps; i++) {
    if (!checkLease(c, held)) return false;
    if (!maybeStall(op)) await sleep(Math.ceil(holdMs(id) / steps));
  }
  return checkLease(c, held);
}

async function opLease(c, id) {
  const ttl = rnd.int(args.leaseTtl[0], args.leaseTtl[1]);
  const wait = rnd.int(args.wait[0], args.wait[1]);
  rec({ k: 'call', c, op: 'lease', id, ttl, wait });
  let held;
  try {
    held = await lock.acquire(id, ttl, { waitMs: wait });
  } catch (err) {
    if (err.code === 'ERR_NOT_ACQUIRED') rec({ k: 'fail', c, id, why: 'timeout', pttl: err.ttl });
    else errRecord(c, id, err);
    return;
  }
  const t = nowUs();
  rec({ k: 'grant', c, id, idx: held.index, imm: held.immediate, ttl, until: t + held.remainingMs * 1000, t });
  await leaseWork('lease', c, id, held);
  rec({ k: 'rel', c });
  try {
    const r = await held.release();
    rec({ k: 'reld', c, result: r.result });
  } catch (err) {
    rec({ k: 'reld', c, code: err.code, msg: String(err.message).slice(0, 200) });
  }
}

async function opUsing(c, id) {
  const ttl = rnd.int(args.leaseTtl[0], args.leaseTtl[1]);
  const wait = rnd.int(args.wait[0], args.wait[1]);
  rec({ k: 'call', c, op: 'using', id, ttl, wait });
  let granted = false;
  try {
    await lock.using(id, ttl, async (signal, held) => {
      granted = true;
      const t = nowUs();
      rec({ k: 'grant', c, id, idx: held.index, imm: held.immediate, ttl, until: t + held.remainingMs * 1000, t });
      await leaseWork('using', c, id, held);
      rec({ k: 'rel', c }); // using() releases right after the routine returns
    }, { waitMs: wait });
    rec({ k: 'reld', c, result: 'using' });
  } catch (err) {
    if (!granted && err.code === 'ERR_NOT_ACQUIRED') rec({ k: 'fail', c, id, why: 'timeout', pttl: err.ttl });
    else if (!granted) errRecord(c, id, err);
    else rec({ k: 'reld', c, code: err.code, msg: String(err.message).slice(0, 200) });
  }
}

const OPS = { try: opTry, wait: opWait, lease: opLease, using: opUsing };

async function loop() {
  while (!stopping) {
    const id = pickId();
    const op = rnd.weighted(args.ops);
    seq += 1;
    const c = seq;
    pending.set(c, { op, id });
    try {
      await OPS[op](c, id);
    } catch (err) {
      rec({ k: 'bug', c, id, msg: String(err && err.stack).slice(0, 500) });
    }
    pending.delete(c);
  }
}

// Event-loop lag monitor: a late timer means the whole process (and every holder in it) was frozen.
let expected = Date.now() + 20;
const lagTimer = setInterval(() => {
  const now = Date.now();
  const lag = now - expected;
  if (lag >= 50) rec({ k: 'lag', ms: lag });
  expected = now + 20;
}, 20);

process.on('unhandledRejection', (err) => {
  rec({ k: 'bug', msg: `unhandledRejection: ${String(err && err.stack)}`.slice(0, 500) });
});

async function main() {
  rec({ k: 'start', pid: process.pid });
  const loops = [];
  for (let i = 0; i < args.concurrency; i++) loops.push(loop());
  send({ type: 'ready' });
  const stopped = new Promise((resolve) => {
    process.on('message', (msg) => {
      if (msg && msg.cmd === 'stop') resolve();
    });
    process.on('disconnect', resolve);
  });
  await stopped;
  stopping = true;
  const all = Promise.all(loops);
  let timer;
  await Promise.race([all, new Promise((resolve) => { timer = setTimeout(resolve, args.stopGraceMs); })]);
  clearTimeout(timer);
  rec({ k: 'end', pending: [...pending.entries()].map(([c, p]) => ({ c, ...p })) });
  clearInterval(lagTimer);
  await lock.close();
  log.close();
  send({ type: 'done' });
  setTimeout(() => process.exit(0), 50);
}

main().catch((err) => {
  rec({ k: 'bug', msg: String(err && err.stack).slice(0, 500) });
  process.exit(1);
});
