'use strict';
// A Jepsen-style history checker for redfour-native. Input: the JSONL histories written by
// chaos/worker.js (one per worker process) and the runner's own events (faults, deaths of killed
// workers, samples of the fencing counter, the final state of the keys). All times are µs on
// CLOCK_MONOTONIC, one clock for every process on the machine.
//
// What it verifies:
//  1. Mutual exclusion: no two grants of one id overlapped while both holders believed their lease
//     valid. A holder believes from the moment it learns of the grant until the earliest of: the
//     moment it calls release, the end of its lease as it may believe it (`until`, extended by each
//     successful lease check of acquire()/using()), its death (SIGKILL), a lease check that said lost.
//  2. Fencing tokens: strictly increasing per id in grant order; never issued twice in a namespace;
//     the counter key never goes backwards.
//  3. Waiters: every call settled (none stuck); a wait settled within waitTtl + slack.
//  4. Keys: none left without expiry or with more than the largest TTL, none left after it.
// An anomaly is a *violation* unless a documented limit explains it; then it is counted under
// `limits` with the explanation:
//  - 'data-loss': Redis lost the lock or the counter (restart without persistence, eviction)
//    between the two grants;
//  - 'client-pause': the earlier holder learnt of a grant of a waitAcquireLock that had to wait
//    (whose send time JavaScript cannot see) during or after an event-loop stall of its process.
// It also measures: the longest handoff stall (a waiter still waiting after the lock became free),
// recovery after each fault, errors by code, release outcomes, lost leases, orphan grants (indexes
// granted in Redis whose reply never reached a client).

const path = require('node:path');
const fs = require('node:fs');
const { readJsonl, percentile } = require('./lib');

const INF = Number.POSITIVE_INFINITY;

function defaultOptions(options = {}) {
  return {
    tolUs: 2000, // clock/rounding tolerance for overlaps: Redis expiries have 1 ms resolution
    slackMs: 6000, // wait bound slack: 2 x connectTimeout + 3 x commandTimeout + 1 s
    tryBoundMs: 6000, // a single acquireLock/release must settle within this
    continuousLoss: false, // Redis may lose keys at any time (eviction scenarios)
    faultGraceMs: 2000, // errors within this long after a fault window are expected
    ...options,
  };
}

/**
 * @param {object[][]} workerHistories arrays of worker records
 * @param {object[]} events runner records: {k:'fault', name, t0, t1, dataLoss}, {k:'kill', w, t},
 *   {k:'counter', t, v}, {k:'keys', immortal, overTtl, left, ...}
 */
function check(workerHistories, events, options) {
  const opts = defaultOptions(options);
  const calls = new Map();
  const workers = new Map();
  const bugs = [];
  const keyOf = (r) => `${r.w}:${r.c}`;

  for (const history of workerHistories) {
    for (const r of history) {
      if (!workers.has(r.w)) workers.set(r.w, { w: r.w, start: undefined, end: undefined, pending: [], lags: [], death: undefined });
      const wk = workers.get(r.w);
      switch (r.k) {
        case 'start':
          wk.start = r.t;
          break;
        case 'end':
          wk.end = r.t;
          wk.pending = r.pending || [];
          break;
        case 'lag':
          wk.lags.push({ t0: r.t - r.ms * 1000, t1: r.t });
          break;
        case 'stall':
          break;
        case 'bug':
          bugs.push(r);
          break;
        case 'call':
          calls.set(keyOf(r), { w: r.w, c: r.c, op: r.op, id: r.id, ttl: r.ttl, wait: r.wait, callT: r.t, uses: [] });
          break;
        default: {
          const call = calls.get(keyOf(r));
          if (!call) {
            bugs.push({ ...r, msg: `record without a call: ${JSON.stringify(r)}` });
            break;
          }
          if (r.k === 'grant') call.grant = r;
          else if (r.k === 'fail') call.fail = r;
          else if (r.k === 'err') call.err = r;
          else if (r.k === 'use') call.uses.push(r);
          else if (r.k === 'lost') call.lost = r;
          else if (r.k === 'rel') call.relT = r.t;
          else if (r.k === 'reld') call.reld = r;
        }
      }
    }
  }

  const faults = events.filter((e) => e.k === 'fault');
  const kills = events.filter((e) => e.k === 'kill');
  for (const kill of kills) {
    const wk = workers.get(kill.w);
    if (wk) wk.death = kill.t;
  }
  const lossEvents = faults.filter((f) => f.dataLoss);
  const lostBetween = (a, b) => opts.continuousLoss || lossEvents.some((f) => f.t0 <= b && (f.t1 ?? f.t0) >= a);
  const inFault = (t0, t1, graceUs = opts.faultGraceMs * 1000) =>
    faults.some((f) => f.t0 - 1000 <= t1 && (f.t1 ?? f.t0) + graceUs >= t0);

  const violations = [];
  const limits = [];
  const flag = (kind, detail, explanation) => {
    const entry = { kind, ...detail };
    if (explanation) limits.push({ ...entry, explanation });
    else violations.push(entry);
  };

  // ---- grants and their belief intervals
  const grants = [];
  for (const call of calls.values()) {
    if (!call.grant) continue;
    const g = call.grant;
    const wk = workers.get(call.w);
    let belief = g.until;
    for (const u of call.uses) belief = Math.max(belief, u.until);
    if (call.lost) belief = Math.min(belief, call.lost.t);
    const end = Math.min(call.relT ?? INF, belief, wk.death ?? INF);
    // What a naive holder would believe: the whole TTL from the moment it heard of the grant.
    const naiveEnd = Math.min(call.relT ?? INF, g.t + call.ttl * 1000, wk.death ?? INF);
    grants.push({ call, w: call.w, id: call.id, idx: g.idx, start: g.t, end, naiveEnd, op: call.op, imm: g.imm, ttl: call.ttl });
  }
  const byId = new Map();
  for (const g of grants) {
    if (!byId.has(g.id)) byId.set(g.id, []);
    byId.get(g.id).push(g);
  }

  const clientPaused = (p) => {
    if (p.op !== 'wait' || p.imm) return false;
    const wk = workers.get(p.w);
    return wk.lags.some((l) => l.t0 <= p.start + 5000 && l.t1 >= p.call.callT);
  };
  const describe = (g) => ({ w: g.w, c: g.call.c, op: g.op, idx: g.idx, startUs: g.start, endUs: Number.isFinite(g.end) ? g.end : null });

  let naiveOverlaps = 0;
  const stalls = [];
  const quietStalls = [];
  const takeovers = []; // ms from a dead holder's lease end to the next grant
  for (const [id, list] of byId) {
    list.sort((a, b) => a.start - b.start);
    const active = [];
    const naiveActive = [];
    let lastHeld = null;
    for (let i = 0; i < list.length; i++) {
      const g = list[i];
      // 1. overlap with any earlier grant still believed valid (a grant whose lease had already
      // ended when its holder learnt of it was never believed: it cannot overlap)
      for (let j = active.length - 1; j >= 0; j--) if (active[j].end <= g.start + opts.tolUs) active.splice(j, 1);
      for (const p of g.end > g.start ? active : []) {
        if (p.idx === g.idx) continue;
        let why;
        if (lostBetween(p.start, g.start)) why = 'data-loss';
        else if (clientPaused(p) || clientPaused(g)) why = 'client-pause';
        flag('overlap', { id, first: describe(p), second: describe(g), overlapMs: (Math.min(p.end, g.end) - g.start) / 1000 }, why);
      }
      if (g.end > g.start) active.push(g);
      for (let j = naiveActive.length - 1; j >= 0; j--) if (naiveActive[j].naiveEnd <= g.start + opts.tolUs) naiveActive.splice(j, 1);
      naiveOverlaps += naiveActive.filter((p) => p.idx !== g.idx).length;
      naiveActive.push(g);

      // 2. tokens strictly increase per id, in the order the holders held the lock: a grant whose
      // lease had already ended when its holder learnt of it (empty belief) never held it.
      if (g.end > g.start) {
        if (lastHeld && g.idx <= lastHeld.idx) {
          let why;
          if (lostBetween(lastHeld.start, g.start)) why = 'data-loss';
          else if (clientPaused(g) || clientPaused(lastHeld)) why = 'client-pause';
          flag('token-order', { id, first: describe(lastHeld), second: describe(g) }, why);
        }
        if (!lastHeld || g.idx > lastHeld.idx) lastHeld = g;
      }
      if (i === 0) continue;
      const p = list[i - 1];
      // takeover after a holder died (SIGKILL: no release, the key must expire by its TTL), by a
      // waiter that was already waiting when the lease ran out
      const pw = workers.get(p.w);
      const expiry = p.start + p.ttl * 1000;
      // (a lease holder's key was renewed until its death: its expiry is not known here)
      const plain = p.op === 'try' || p.op === 'wait';
      if (plain && pw.death !== undefined && p.call.relT === undefined && pw.death < expiry && g.op !== 'try' && g.call.callT < expiry) {
        takeovers.push((g.start - expiry) / 1000);
      }
      // handoff stall: how long a waiter still waited after the lock became free
      if (g.op !== 'try' && !g.imm && (plain || p.call.reld)) {
        const released = p.call.reld && p.call.reld.result === 'released' || (p.call.reld && p.call.reld.result === 'using');
        const avail = released ? p.call.reld.t : p.start + p.ttl * 1000;
        const stall = (g.start - Math.max(avail, g.call.callT)) / 1000;
        if (stall > 0) {
          stalls.push(stall);
          if (!inFault(avail, g.start, 0)) quietStalls.push(stall);
        }
      }
    }
  }

  // tokens never issued twice in the namespace
  const byIdx = new Map();
  for (const g of grants) {
    const other = byIdx.get(g.idx);
    if (other) flag('duplicate-token', { idx: g.idx, first: describe(other), second: describe(g) }, lostBetween(Math.min(other.start, g.start), Math.max(other.start, g.start)) ? 'data-loss' : undefined);
    else byIdx.set(g.idx, g);
  }
  // orphan grants: indexes Redis issued (INCR) whose grant no client recorded
  let orphans = 0;
  if (grants.length > 0 && !opts.continuousLoss && lossEvents.length === 0) {
    const idxs = [...byIdx.keys()].sort((a, b) => a - b);
    orphans = idxs[idxs.length - 1] - idxs[0] + 1 - idxs.length;
  }

  // the counter never goes backwards
  const samples = events.filter((e) => e.k === 'counter' && typeof e.v === 'number').sort((a, b) => a.t - b.t);
  let counterResets = 0;
  for (let i = 1; i < samples.length; i++) {
    if (samples[i].v < samples[i - 1].v) {
      counterResets += 1;
      flag('counter-reset', { fromV: samples[i - 1].v, toV: samples[i].v, atUs: samples[i].t }, lostBetween(samples[i - 1].t, samples[i].t) ? 'data-loss' : undefined);
    }
  }

  // ---- waiters and calls settle
  let maxOvershootMs = -INF;
  const errors = {};
  const spuriousErrors = [];
  const releases = {};
  const lost = {};
  let attempted = 0;
  for (const call of calls.values()) {
    attempted += 1;
    const wk = workers.get(call.w);
    const killed = wk.death !== undefined;
    const outcome = call.grant || call.fail || call.err;
    if (call.lost) lost[call.lost.reason] = (lost[call.lost.reason] || 0) + 1;
    if (call.reld) {
      const key = call.reld.result || call.reld.code;
      releases[key] = (releases[key] || 0) + 1;
    }
    if (!outcome) {
      if (!killed) flag('stuck', { w: call.w, c: call.c, op: call.op, id: call.id, callUs: call.callT, workerEnded: wk.end !== undefined });
      continue;
    }
    const tookMs = (outcome.t - call.callT) / 1000;
    if (call.err) {
      errors[call.err.code] = (errors[call.err.code] || 0) + 1;
      if (!inFault(call.callT, outcome.t)) spuriousErrors.push({ w: call.w, c: call.c, op: call.op, code: call.err.code, msg: call.err.msg });
      if (call.err.code === undefined || call.err.code === 'ERR_INTERNAL') flag('bad-error', { w: call.w, c: call.c, op: call.op, msg: call.err.msg });
    }
    if (call.op === 'try') {
      if (tookMs > opts.tryBoundMs) flag('late', { w: call.w, c: call.c, op: call.op, id: call.id, tookMs });
    } else if (call.wait > 0) {
      maxOvershootMs = Math.max(maxOvershootMs, tookMs - call.wait);
      if (tookMs > call.wait + opts.slackMs) flag('late', { w: call.w, c: call.c, op: call.op, id: call.id, tookMs, wait: call.wait });
    }
    if (call.relT !== undefined && !call.reld && !killed) flag('stuck', { w: call.w, c: call.c, op: 'release', id: call.id });
    if (call.reld && call.reld.code) {
      errors[call.reld.code] = (errors[call.reld.code] || 0) + 1;
      if (call.reld.code === 'ERR_INTERNAL') flag('bad-error', { w: call.w, c: call.c, op: 'release', msg: call.reld.msg });
    }
  }
  for (const wk of workers.values()) {
    if (wk.end === undefined && wk.death === undefined) flag('worker-crash', { w: wk.w });
  }
  for (const b of bugs) flag('bug', { w: b.w, msg: b.msg });

  // ---- final key state
  for (const e of events.filter((x) => x.k === 'keys')) {
    if (e.immortal > 0) flag('immortal-key', { count: e.immortal, sample: e.sample });
    if (e.overTtl > 0) flag('key-over-ttl', { count: e.overTtl, sample: e.sample });
    if (e.leftAfterTtl > 0) flag('key-outlived-ttl', { count: e.leftAfterTtl, sample: e.sampleLeft }, opts.continuousLoss ? undefined : undefined);
  }

  // ---- recovery after each fault: every live worker has a new grant
  const recoveries = [];
  const grantsByWorker = new Map();
  for (const g of grants) {
    if (!grantsByWorker.has(g.w)) grantsByWorker.set(g.w, []);
    grantsByWorker.get(g.w).push(g.start);
  }
  for (const list of grantsByWorker.values()) list.sort((a, b) => a - b);
  for (const f of faults) {
    const t1 = f.t1 ?? f.t0;
    let worst = 0;
    let any = false;
    for (const wk of workers.values()) {
      if (wk.start === undefined || wk.start > t1) continue;
      if (wk.death !== undefined && wk.death <= t1 + 10_000_000) continue;
      const list = grantsByWorker.get(wk.w) || [];
      const next = list.find((t) => t > t1);
      if (next === undefined) continue;
      any = true;
      worst = Math.max(worst, (next - t1) / 1000);
    }
    if (any) recoveries.push(worst);
  }

  stalls.sort((a, b) => a - b);
  quietStalls.sort((a, b) => a - b);
  recoveries.sort((a, b) => a - b);
  const count = (list, kind) => list.filter((v) => v.kind === kind).length;
  return {
    attempted,
    grants: grants.length,
    violations: violations.length,
    violationsByKind: tally(violations),
    limits: limits.length,
    limitsByKind: tally(limits, (l) => `${l.kind}:${l.explanation}`),
    naiveOverlaps,
    overlaps: count(violations, 'overlap'),
    tokenRegressions: count(violations, 'token-order') + count(limits, 'token-order'),
    counterResets,
    orphans,
    maxStallMs: round(stalls[stalls.length - 1] || 0),
    p99StallMs: round(percentile(stalls, 99)),
    maxQuietStallMs: round(quietStalls[quietStalls.length - 1] || 0),
    takeovers: takeovers.length,
    maxTakeoverMs: takeovers.length ? round(Math.max(...takeovers)) : null,
    maxOvershootMs: Number.isFinite(maxOvershootMs) ? round(maxOvershootMs) : null,
    recoveryMs: recoveries.length ? { median: round(percentile(recoveries, 50)), max: round(recoveries[recoveries.length - 1]), faults: recoveries.length } : null,
    errors,
    spuriousErrors: spuriousErrors.length,
    spuriousErrorSamples: spuriousErrors.slice(0, 5),
    releases,
    lostLeases: lost,
    examples: violations.slice(0, 10),
    limitExamples: limits.slice(0, 5),
  };
}

function tally(list, keyFn = (v) => v.kind) {
  const out = {};
  for (const v of list) out[keyFn(v)] = (out[keyFn(v)] || 0) + 1;
  return out;
}

function round(x) {
  return Math.round(x * 10) / 10;
}

/** Checks a run directory: worker-*.jsonl plus runner.jsonl (and options.json, if present). */
function checkDir(dir, options) {
  const files = fs.readdirSync(dir);
  const histories = files.filter((f) => /^worker-\d+\.jsonl$/.test(f)).map((f) => readJsonl(path.join(dir, f)).records);
  const events = readJsonl(path.join(dir, 'runner.jsonl')).records;
  let saved = {};
  if (fs.existsSync(path.join(dir, 'options.json'))) saved = JSON.parse(fs.readFileSync(path.join(dir, 'options.json'), 'utf8'));
  return check(histories, events, { ...saved, ...options });
}

module.exports = { check, checkDir };

if (require.main === module) {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: node chaos/checker.js <run directory>');
    process.exit(2);
  }
  const result = checkDir(dir);
  console.log(JSON.stringify(result, null, 2));
  process.exit(result.violations === 0 ? 0 : 1);
}
