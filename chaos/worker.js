'use strict';
// A chaos worker (forked by chaos/run.js): runs `concurrency` loops of lock operations against one
// namespace and records every call, grant, release, lease check and event-loop stall to a JSONL
// history with CLOCK_MONOTONIC timestamps (µs). chaos/checker.js reads the histories.
//
// argv[2] JSON: see DEFAULTS. IPC in: {cmd:'stop'}. IPC out: {type:'ready'}, {type:'holding', id, until}
// (a long hold of a hot id started: the runner's holder-kill fault picks its victims from these),
// {type:'done'}; with `notify`: {type:'waiting', id} (a waiting call on a hot id started),
// {type:'granted', id, imm} and {type:'released', id} (for faults timed to hand-offs).
//
// Records (field w = worker id, c = call number, t = µs):
//   call  {op, kind, id, ttl, wait}        a call is issued (op: try | wait | lease | using; kind
//                                          for waits and leases: 'short' (an impatient waiter),
//                                          'abort' (its AbortSignal fires), see OPS)
//   grant {id, idx, imm, ttl, rttl, until} the lock was granted; `until` (µs) is the holder's
//                                          *claim*: the end of the lease as the library told it or
//                                          as it can compute it from facts it recorded (see
//                                          claimUntil); `rttl` the result's ttl
//   abort {}                               the caller fires the call's AbortSignal
//   fail  {id, why, pttl}                  not granted: why 'busy' (acquireLock) or 'timeout'
//   err   {id, code, msg}                  the call rejected
//   use   {until}                          lease holder checked its lease: valid until `until`
//                                          (check time + held.remainingMs: a claim too)
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
  shortWait: [1, 40], // waitTtl of 'short' waits (impatient waiters)
  abortAfter: [1, 60], // 'abort' calls fire their AbortSignal after this many ms
  notify: false, // send waiting/granted/released IPC messages
  lagMs: 20, // record event-loop stalls of at least this long
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

/**
 * The claim (µs): the end of a plain grant's lease as its holder can compute it from facts it
 * recorded. For acquireLock and a waitAcquireLock that did not wait, the acquire script was sent
 * after the call was issued (callT): callT + the TTL asked for. For a waitAcquireLock that waited,
 * the deciding attempt's send time is not exposed to JavaScript: the time the holder learnt of the
 * grant + the result's `ttl`. The checker verifies every claim against Redis truth.
 */
function claimUntil(callT, recvT, ttl, result) {
  if (result.immediate !== false) return callT + ttl * 1000;
  return recvT + result.ttl * 1000;
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
    if (args.notify && r.result === 'released') send({ type: 'released', id });
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
  rec({ k: 'grant', c, id, idx: r.index, imm: true, ttl, rttl: r.ttl, until: claimUntil(callT, t, ttl, r), t });
  await plainHold('try', c, id, holdMs(id));
  await release(c, id, r.index);
}

function notifyWaiting(id) {
  if (args.notify && id.startsWith('hot')) send({ type: 'waiting', id });
}

function notifyGranted(id, imm) {
  if (args.notify) send({ type: 'granted', id, imm });
}

/**
 * An AbortSignal for call `c` that fires after args.abortAfter ms, recording the abort; `cancel()`
 * once the call settled.
 */
function abortLater(c) {
  const controller = new AbortController();
  const timer = setTimeout(
    () => {
      rec({ k: 'abort', c });
      controller.abort();
    },
    rnd.int(args.abortAfter[0], args.abortAfter[1]),
  );
  return { signal: controller.signal, cancel: () => clearTimeout(timer) };
}

/**
 * waitAcquireLock; `kind` 'wait' (waitTtl from args.wait), 'short' (args.shortWait: an impatient
 * waiter) or 'abort' (a longer wait whose AbortSignal fires after args.abortAfter ms). Histories
 * record all three as op 'wait' (the checker judges them alike), with `kind` beside it; opLease
 * does the same for acquire().
 */
async function opWait(c, id, kind = 'wait') {
  const ttl = rnd.int(args.ttl[0], args.ttl[1]);
  const range = kind === 'short' ? args.shortWait : args.wait;
  const wait = rnd.int(range[0], range[1]);
  const callT = nowUs();
  rec({ k: 'call', c, op: 'wait', kind, id, ttl, wait, t: callT });
  notifyWaiting(id);
  let r;
  const abort = kind === 'abort' ? abortLater(c) : null;
  try {
    r = abort ? await lock.waitAcquireLock(id, ttl, wait, { signal: abort.signal }) : await lock.waitAcquireLock(id, ttl, wait);
  } catch (err) {
    errRecord(c, id, err);
    if (err.code !== 'ERR_ABORTED') await sleep(rnd.int(5, 25));
    return;
  } finally {
    if (abort) abort.cancel();
  }
  const t = nowUs();
  if (!r.success) {
    rec({ k: 'fail', c, id, why: 'timeout', pttl: r.ttl, t });
    return;
  }
  rec({ k: 'grant', c, id, idx: r.index, imm: r.immediate, ttl, rttl: r.ttl, until: claimUntil(callT, t, ttl, r), t });
  notifyGranted(id, r.immediate);
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

async function opLease(c, id, kind = 'lease') {
  const ttl = rnd.int(args.leaseTtl[0], args.leaseTtl[1]);
  const range = kind === 'short' ? args.shortWait : args.wait;
  const wait = rnd.int(range[0], range[1]);
  rec({ k: 'call', c, op: 'lease', kind, id, ttl, wait });
  notifyWaiting(id);
  let held;
  const abort = kind === 'abort' ? abortLater(c) : null;
  try {
    held = await lock.acquire(id, ttl, abort ? { waitMs: wait, signal: abort.signal } : { waitMs: wait });
  } catch (err) {
    if (err.code === 'ERR_NOT_ACQUIRED') rec({ k: 'fail', c, id, why: 'timeout', pttl: err.ttl });
    else errRecord(c, id, err);
    return;
  } finally {
    if (abort) abort.cancel();
  }
  const t = nowUs();
  rec({ k: 'grant', c, id, idx: held.index, imm: held.immediate, ttl, until: t + held.remainingMs * 1000, t });
  notifyGranted(id, held.immediate);
  await leaseWork('lease', c, id, held);
  rec({ k: 'rel', c });
  try {
    const r = await held.release();
    rec({ k: 'reld', c, result: r.result });
    if (args.notify && r.result === 'released') send({ type: 'released', id });
  } catch (err) {
    rec({ k: 'reld', c, code: err.code, msg: String(err.message).slice(0, 200) });
  }
}

async function opUsing(c, id) {
  const ttl = rnd.int(args.leaseTtl[0], args.leaseTtl[1]);
  const wait = rnd.int(args.wait[0], args.wait[1]);
  rec({ k: 'call', c, op: 'using', id, ttl, wait });
  notifyWaiting(id);
  let granted = false;
  try {
    await lock.using(
      id,
      ttl,
      async (signal, held) => {
        granted = true;
        const t = nowUs();
        rec({ k: 'grant', c, id, idx: held.index, imm: held.immediate, ttl, until: t + held.remainingMs * 1000, t });
        notifyGranted(id, held.immediate);
        await leaseWork('using', c, id, held);
        rec({ k: 'rel', c }); // using() releases right after the routine returns
      },
      { waitMs: wait },
    );
    rec({ k: 'reld', c, result: 'using' });
  } catch (err) {
    if (!granted && err.code === 'ERR_NOT_ACQUIRED') rec({ k: 'fail', c, id, why: 'timeout', pttl: err.ttl });
    else if (!granted) errRecord(c, id, err);
    else rec({ k: 'reld', c, code: err.code, msg: String(err.message).slice(0, 200) });
  }
}

// 'short': an impatient waitAcquireLock or acquire() (waitTtl / waitMs from args.shortWait);
// 'abort': a waitAcquireLock or acquire() whose AbortSignal fires after args.abortAfter ms.
const OPS = {
  try: opTry,
  wait: (c, id) => opWait(c, id, 'wait'),
  short: (c, id) => (rnd.chance(0.7) ? opWait(c, id, 'short') : opLease(c, id, 'short')),
  abort: (c, id) => (rnd.chance(0.5) ? opWait(c, id, 'abort') : opLease(c, id, 'abort')),
  lease: (c, id) => opLease(c, id, 'lease'),
  using: opUsing,
};

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
  if (lag >= args.lagMs) rec({ k: 'lag', ms: lag });
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
  await Promise.race([
    all,
    new Promise((resolve) => {
      timer = setTimeout(resolve, args.stopGraceMs);
    }),
  ]);
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
