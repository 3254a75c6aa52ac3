'use strict';
// A Jepsen-style history checker for redfour-native. Input: the JSONL histories written by
// chaos/worker.js (one per worker process), the runner's own events (faults, deaths of killed
// workers, samples of the fencing counter, the final state of the keys) and Redis truth
// (chaos/truth.js: what the server itself did to the lock keys, from MONITOR). All times are µs on
// CLOCK_MONOTONIC, one clock for every process on the machine.
//
// The checker does not trust the library. Its authoritative exclusion check is against Redis:
//  1. Claims within Redis truth (kind 'overstated-lease', authoritative). Each grant's holder
//     *believes* it holds the lock from the moment it learns of the grant until the earliest of:
//     the moment it calls release, a lease check that says lost, its death (SIGKILL), and the end
//     of its *claim*: what the holder was told or can compute from facts it recorded
//     (`until` in the history):
//       - acquireLock, and a waitAcquireLock that did not wait: call time + the TTL asked for;
//       - a waitAcquireLock that waited: the time it learnt of the grant + the result's `ttl`
//         (what the library says is left when it delivers the result);
//       - acquire()/using(): check time + `held.remainingMs`, at the grant and at every check.
//     That whole belief must lie inside the interval during which the key held the holder's index
//     in Redis: from the HSET of that index to the earliest of a DEL, an HSET of another index and
//     the expiry (last PEXPIRE + its ms), with `tolUs` (2 ms) for Redis's ms resolution. A belief
//     that outlives it is a violation. A grant Redis never made ('no-truth') is one too, and so is
//     a belief that reaches into a window where MONITOR was down and the key's fate is unknown
//     ('unverifiable'), unless the server lost data then.
//  2. Mutual exclusion between holders ('overlap'): no two grants of one id overlapped while both
//     holders believed. Kept as a cross-check: with truth, two overlapping beliefs imply one of them
//     outlived its Redis interval, and the overlap takes that belief's verdict. Without truth (the
//     hand-made histories of the tests) it is judged on its own, as before.
//  3. Fencing tokens: strictly increasing per id in grant order ('token-order') and in the order
//     Redis wrote them ('truth-token-order'); never issued twice in a namespace; the counter key
//     never goes backwards.
//  4. Waiters: every call settled (none stuck); a wait settled within waitTtl + slack; an aborted
//     wait settled within `abortBoundMs` of its abort.
//  5. Keys: none left without expiry or with more than the largest TTL, none left after it.
// An anomaly is a *violation* unless a documented limit explains it; then it is counted under
// `limits` with the explanation:
//  - 'data-loss': Redis lost the lock or the counter (restart without persistence, eviction)
//    within the window concerned (for a belief reaching into a MONITOR gap, the whole gap: a
//    killed server takes the MONITOR lines it had not yet sent with it, so the lines just before
//    a kill are lost too);
//  - 'monitor-gap': a belief reaches into a window where MONITOR was down (a server killed with
//    persistence on takes the MONITOR lines it had not yet sent with it), and it ended with the
//    holder's own release, which Redis answered 'released': the release script deletes the key
//    only while it holds the holder's index, so the key held it until then (its DEL is among
//    the lost lines).
//  - 'client-pause': the holder's own process was frozen (an event-loop stall recorded in its
//    history) between Redis granting a waitAcquireLock that waited and the holder's code running
//    on the result. The result's ttl is what was left when the library delivered it; code that
//    ran first on the same loop (another continuation that blocked) makes it stale on arrival.
// It also measures: the longest handoff stall (a waiter still waiting after the lock became free),
// recovery after each fault, errors by code, release outcomes, lost leases, grants Redis made that
// no client recorded (and how each ended), and how late holders learnt of their grants.

const path = require('node:path');
const fs = require('node:fs');
const { readJsonl, percentile } = require('./lib');
const { buildTruth } = require('./truth');

const INF = Number.POSITIVE_INFINITY;

function defaultOptions(options = {}) {
  return {
    tolUs: 2000, // clock/rounding tolerance: Redis expiries have 1 ms resolution
    slackMs: 6000, // wait bound slack: 2 x connectTimeout + 3 x commandTimeout + 1 s
    tryBoundMs: 6000, // a single acquireLock/release must settle within this
    abortBoundMs: 1000, // an aborted wait must settle within this after its abort
    continuousLoss: false, // Redis may lose keys at any time (eviction scenarios)
    faultGraceMs: 2000, // errors within this long after a fault window are expected
    namespace: 'chaos', // lock keys are `${namespace}:${id}` (to find a grant's truth)
    ...options,
  };
}

/**
 * @param {object[][]} workerHistories arrays of worker records
 * @param {object[]} events runner records: {k:'fault', name, t0, t1, dataLoss, boundMs?, tookMs?},
 *   {k:'kill', w, t}, {k:'counter', t, v}, {k:'keys', immortal, overTtl, left, ...}
 * @param {object} [options] see defaultOptions
 * @param {object[]} [truth] chaos/truth.js records; without them (null) the claims are not checked
 *   against Redis and overlaps are judged on their own
 */
function check(workerHistories, events, options, truth = null) {
  const opts = defaultOptions(options);
  const calls = new Map();
  const workers = new Map();
  const bugs = [];
  const keyOf = (r) => `${r.w}:${r.c}`;

  for (const history of workerHistories) {
    for (const r of history) {
      if (!workers.has(r.w))
        workers.set(r.w, { w: r.w, start: undefined, end: undefined, pending: [], lags: [], stalls: [], death: undefined });
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
          wk.stalls.push({ t0: r.t, t1: r.t + r.ms * 1000 });
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
          else if (r.k === 'abort') call.abortT = r.t;
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
  const inFault = (t0, t1, graceUs = opts.faultGraceMs * 1000) => faults.some((f) => f.t0 - 1000 <= t1 && (f.t1 ?? f.t0) + graceUs >= t0);

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
    let claim = g.until;
    for (const u of call.uses) claim = Math.max(claim, u.until);
    let cause = 'claim';
    let end = claim;
    const cut = (t, why) => {
      if (t !== undefined && t < end) {
        end = t;
        cause = why;
      }
    };
    cut(call.relT, 'release');
    cut(call.lost && call.lost.t, 'lost');
    cut(wk.death, 'death');
    // What a naive holder would believe: the whole TTL from the moment it heard of the grant.
    const naiveEnd = Math.min(call.relT ?? INF, g.t + call.ttl * 1000, wk.death ?? INF);
    grants.push({
      call,
      w: call.w,
      id: call.id,
      idx: g.idx,
      start: g.t,
      end,
      cause,
      claim,
      naiveEnd,
      op: call.op,
      imm: g.imm,
      ttl: call.ttl,
    });
  }
  const byId = new Map();
  for (const g of grants) {
    if (!byId.has(g.id)) byId.set(g.id, []);
    byId.get(g.id).push(g);
  }

  // When each worker's event loop was blocked: its deliberate stalls, exactly, and the lags they do
  // not explain. A lag record says a 20 ms timer fired `ms` late at t: the loop was blocked at
  // t - ms and until t, and may have been since the previous tick (one timer period earlier).
  const PERIOD_US = 20_000;
  for (const wk of workers.values()) {
    const stalls = wk.stalls.slice().sort((x, y) => x.t0 - y.t0);
    const covered = (from, to) => {
      let at = from;
      for (const st of stalls) {
        if (st.t1 < at) continue;
        if (st.t0 > at + 1000) break; // (1 ms between back-to-back stalls is the loop running)
        at = Math.max(at, st.t1);
        if (at >= to) return true;
      }
      return at >= to;
    };
    wk.blocked = [...stalls, ...wk.lags.filter((l) => !covered(l.t0, l.t1 - 30_000)).map((l) => ({ t0: l.t0 - PERIOD_US, t1: l.t1 }))];
  }
  /**
   * The holder of a grant that waited was frozen between Redis granting it (from truth; without
   * truth, the call) and its own code running on the result: the documented 'client-pause'
   * limit. The library computes a waited result's ttl when it delivers the result, but code that
   * runs first on the same event loop (another caller's continuation that blocks) delays the
   * holder's; nothing a library hands over as a value can count that. A grant counted from the
   * call (acquireLock, a wait that did not wait) or from send time (acquire/using) is never
   * excused so.
   */
  const clientPaused = (p) => {
    if (p.op !== 'wait' || p.imm) return false;
    const wk = workers.get(p.w);
    const from = p.truth ? p.truth.start - opts.tolUs : p.call.callT;
    return wk.blocked.some((b) => b.t0 < p.start && b.t1 > from);
  };
  const describe = (g) => ({
    w: g.w,
    c: g.call.c,
    op: g.op,
    idx: g.idx,
    imm: g.imm,
    startUs: g.start,
    endUs: Number.isFinite(g.end) ? g.end : null,
    endBy: g.cause,
  });

  // ---- 1. every belief inside the Redis interval of its key and index (authoritative)
  let truthInfo = null;
  const learnLags = [];
  const waitedExcess = [];
  let minClaimMarginMs = INF;
  if (truth) {
    const dataLossAt = (t0, t1) => lostBetween(t0, t1);
    const built = buildTruth(truth, { isDataLoss: dataLossAt });
    const gapRecords = truth.filter((r) => r.k === 'gap');
    const gapCovers = (a, b) => gapRecords.some((gp) => gp.t0 <= b && gp.t1 >= a);
    const matched = new Set();
    for (const g of grants) {
      const key = `${opts.namespace}:${g.id}`;
      const list = (built.intervals.get(key) || []).filter((iv) => iv.idx === g.idx);
      let iv = null;
      for (const x of list) if (x.startLow <= g.start + opts.tolUs && (!iv || x.start > iv.start)) iv = x;
      const detail = () => ({
        id: g.id,
        ...describe(g),
        claimEndUs: Number.isFinite(g.claim) ? g.claim : null,
        truth: iv
          ? {
              startUs: iv.start,
              endUs: Number.isFinite(iv.end) ? iv.end : null,
              certainEndUs: Number.isFinite(iv.certainEnd) ? iv.certainEnd : null,
              endBy: iv.endBy,
            }
          : null,
      });
      if (!iv) {
        const later = list.find((x) => x.start > g.start);
        if (gapCovers(g.call.callT, g.start) || lostBetween(g.call.callT, g.start)) {
          g.verdict = { kind: 'unverifiable', explanation: lostBetween(g.call.callT, g.start) ? 'data-loss' : undefined };
          flag('unverifiable', { ...detail(), note: 'granted while MONITOR was down' }, g.verdict.explanation);
        } else if (later) {
          g.verdict = { kind: 'truth-clock', explanation: undefined };
          flag('truth-clock', { ...detail(), note: 'learnt of before Redis granted it', redisStartUs: later.start });
        } else {
          g.verdict = { kind: 'no-truth', explanation: undefined };
          flag('no-truth', { ...detail(), note: 'Redis never wrote this index to this key' });
        }
        continue;
      }
      matched.add(iv);
      g.truth = iv;
      if (iv.start === iv.startLow) learnLags.push((g.start - iv.start) / 1000);
      // A waited grant's claim (learnt + result ttl) against the expiry Redis set (HSET + TTL),
      // held to the end or not.
      if (g.op === 'wait' && !g.imm && iv.start === iv.startLow) {
        const excess = g.call.grant.until - (iv.start + g.ttl * 1000);
        // (a result delivered after its lease ran out says ttl 0: an empty claim, no excess)
        // Measured, not judged: the ttl is computed when the batch of results reaches the JS
        // thread, and the holder's code runs after whatever continuations come first in that
        // batch (a few ms at most when nothing blocks). A belief held into the excess is judged
        // below as 'overstated-lease'.
        if (g.call.grant.until > g.start && excess > opts.tolUs && !clientPaused(g)) waitedExcess.push(excess / 1000);
      }
      if (g.end <= g.start) continue; // learnt of only after its claim ended: never believed
      if (g.cause === 'claim' && Number.isFinite(iv.certainEnd))
        minClaimMarginMs = Math.min(minClaimMarginMs, (iv.certainEnd - g.end) / 1000);
      if (g.end <= iv.certainEnd + opts.tolUs) continue;
      if (g.end <= iv.end + opts.tolUs) {
        let why;
        const gap = gapRecords.find((gp) => gp.t0 <= iv.certainEnd + opts.tolUs && gp.t1 >= iv.certainEnd);
        if (lostBetween(iv.certainEnd, gap ? Math.max(g.end, gap.t1) : g.end)) why = 'data-loss';
        else if (g.cause === 'release' && g.call.reld && g.call.reld.result === 'released') why = 'monitor-gap';
        g.verdict = { kind: 'unverifiable', explanation: why };
        flag('unverifiable', { ...detail(), note: 'belief reaches into a window where MONITOR was down' }, why);
        continue;
      }
      let why;
      if (lostBetween(iv.start, g.end)) why = 'data-loss';
      else if (clientPaused(g)) why = 'client-pause';
      g.verdict = { kind: 'overstated-lease', explanation: why };
      flag('overstated-lease', { ...detail(), overMs: round((g.end - iv.end) / 1000) }, why);
    }
    // Redis's own token order per key, and what became of grants no client recorded.
    const unclaimed = {};
    for (const [key, list] of built.intervals) {
      for (let i = 0; i < list.length; i++) {
        const iv = list[i];
        if (!matched.has(iv)) unclaimed[iv.endBy] = (unclaimed[iv.endBy] || 0) + 1;
        if (i > 0 && iv.idx <= list[i - 1].idx) {
          flag(
            'truth-token-order',
            { key, first: list[i - 1].idx, second: iv.idx, atUs: iv.start },
            lostBetween(list[i - 1].start, iv.start) ? 'data-loss' : undefined,
          );
        }
      }
    }
    for (const u of built.unknownWrites) flag('truth-inconsistent', { ...u }, lostBetween(u.t - 1, u.t) ? 'data-loss' : undefined);
    const stats = truth.find((r) => r.k === 'stats');
    truthInfo = {
      intervals: [...built.intervals.values()].reduce((n, l) => n + l.length, 0),
      gaps: built.gaps,
      monitorLines: stats ? stats.lines : null,
      unclaimedGrants: unclaimed,
    };
  }

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
      // 2. overlap with any earlier grant still believed valid (a grant whose lease had already
      // ended when its holder learnt of it was never believed: it cannot overlap)
      for (let j = active.length - 1; j >= 0; j--) if (active[j].end <= g.start + opts.tolUs) active.splice(j, 1);
      for (const p of g.end > g.start ? active : []) {
        // (overlaps within the tolerance are not counted: each belief may be off by that much)
        if (p.idx === g.idx || Math.min(p.end, g.end) - g.start <= opts.tolUs) continue;
        let why;
        let bad = false;
        if (truth) {
          // One of the two outlived its Redis interval (the intervals of one key never overlap):
          // the overlap is explained exactly when that verdict is.
          const verdicts = [p.verdict, g.verdict].filter(Boolean);
          if (verdicts.length === 0)
            bad = true; // Redis says both held at once: cannot be
          else if (verdicts.some((v) => !v.explanation)) bad = true;
          else why = verdicts[0].explanation;
        } else if (lostBetween(p.start, g.start)) why = 'data-loss';
        else if (clientPaused(p) || clientPaused(g)) why = 'client-pause';
        flag(
          'overlap',
          { id, first: describe(p), second: describe(g), overlapMs: (Math.min(p.end, g.end) - g.start) / 1000 },
          bad ? undefined : why,
        );
      }
      if (g.end > g.start) active.push(g);
      for (let j = naiveActive.length - 1; j >= 0; j--) if (naiveActive[j].naiveEnd <= g.start + opts.tolUs) naiveActive.splice(j, 1);
      naiveOverlaps += naiveActive.filter((p) => p.idx !== g.idx).length;
      naiveActive.push(g);

      // 3. tokens strictly increase per id, in the order the holders held the lock: a grant whose
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
      const expiry = p.truth && p.truth.endBy === 'expire' ? p.truth.end : p.start + p.ttl * 1000;
      // (a lease holder's key was renewed until its death: its expiry is known from truth only)
      const plain = p.op === 'try' || p.op === 'wait';
      if (
        (plain || (p.truth && p.truth.endBy === 'expire')) &&
        pw.death !== undefined &&
        p.call.relT === undefined &&
        pw.death < expiry &&
        g.op !== 'try' &&
        g.call.callT < expiry
      ) {
        takeovers.push((g.start - expiry) / 1000);
      }
      // handoff stall: how long a waiter still waited after the lock became free
      if (g.op !== 'try' && !g.imm && (plain || p.call.reld)) {
        const released = (p.call.reld && p.call.reld.result === 'released') || (p.call.reld && p.call.reld.result === 'using');
        const avail =
          p.truth && Number.isFinite(p.truth.end) && p.truth.endBy !== 'gap'
            ? p.truth.end
            : released
              ? p.call.reld.t
              : p.start + p.ttl * 1000;
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
    if (other)
      flag(
        'duplicate-token',
        { idx: g.idx, first: describe(other), second: describe(g) },
        lostBetween(Math.min(other.start, g.start), Math.max(other.start, g.start)) ? 'data-loss' : undefined,
      );
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
      flag(
        'counter-reset',
        { fromV: samples[i - 1].v, toV: samples[i].v, atUs: samples[i].t },
        lostBetween(samples[i - 1].t, samples[i].t) ? 'data-loss' : undefined,
      );
    }
  }

  // ---- 4. waiters and calls settle
  let maxOvershootMs = -INF;
  let maxAbortMs = -INF;
  let aborts = 0;
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
    const aborted = call.abortT !== undefined && call.err && call.err.code === 'ERR_ABORTED';
    if (call.err) {
      errors[call.err.code] = (errors[call.err.code] || 0) + 1;
      if (!aborted && !inFault(call.callT, outcome.t))
        spuriousErrors.push({ w: call.w, c: call.c, op: call.op, code: call.err.code, msg: call.err.msg });
      if (call.err.code === undefined || call.err.code === 'ERR_INTERNAL')
        flag('bad-error', { w: call.w, c: call.c, op: call.op, msg: call.err.msg });
      if (call.err.code === 'ERR_ABORTED' && call.abortT === undefined)
        flag('bad-error', { w: call.w, c: call.c, op: call.op, msg: `ERR_ABORTED without an abort: ${call.err.msg}` });
    }
    if (call.abortT !== undefined && outcome.t >= call.abortT) {
      aborts += 1;
      const ms = (outcome.t - call.abortT) / 1000;
      maxAbortMs = Math.max(maxAbortMs, ms);
      if (ms > opts.abortBoundMs) flag('late-abort', { w: call.w, c: call.c, op: call.op, id: call.id, ms });
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

  // a fault the library must recover from within a bound (e.g. a half-open subscriber noticed)
  for (const f of faults) {
    if (f.boundMs !== undefined && f.tookMs !== undefined && f.tookMs > f.boundMs) {
      flag('slow-recovery', { fault: f.name, w: f.w, tookMs: f.tookMs, boundMs: f.boundMs });
    }
  }

  // ---- 5. final key state
  for (const e of events.filter((x) => x.k === 'keys')) {
    if (e.immortal > 0) flag('immortal-key', { count: e.immortal, sample: e.sample });
    if (e.overTtl > 0) flag('key-over-ttl', { count: e.overTtl, sample: e.sample });
    if (e.leftAfterTtl > 0) flag('key-outlived-ttl', { count: e.leftAfterTtl, sample: e.sampleLeft });
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
  learnLags.sort((a, b) => a - b);
  const count = (list, kind) => list.filter((v) => v.kind === kind).length;
  if (truthInfo) {
    truthInfo.checkedBeliefs = grants.filter((g) => g.truth).length;
    truthInfo.learnLagMs = learnLags.length
      ? {
          p50: round(percentile(learnLags, 50)),
          p99: round(percentile(learnLags, 99)),
          max: round(learnLags[learnLags.length - 1]),
          minUs: Math.round(learnLags[0] * 1000),
        }
      : null;
    truthInfo.minClaimMarginMs = Number.isFinite(minClaimMarginMs) ? round(minClaimMarginMs) : null;
    // waited grants whose claim exceeded Redis's expiry by more than the tolerance although the
    // holder was not frozen (they were released before it mattered, or they would be violations)
    truthInfo.waitedClaimExcess = { count: waitedExcess.length, maxMs: waitedExcess.length ? round(Math.max(...waitedExcess)) : 0 };
  }
  // faults the library must recover from within a bound: how long it took
  const faultTimings = {};
  for (const f of faults) {
    if (f.tookMs === undefined) continue;
    const e = faultTimings[f.name] || (faultTimings[f.name] = { count: 0, times: [] });
    e.count += 1;
    e.times.push(f.tookMs);
  }
  for (const e of Object.values(faultTimings)) {
    e.times.sort((a, b) => a - b);
    e.medianMs = round(percentile(e.times, 50));
    e.maxMs = round(e.times[e.times.length - 1]);
    delete e.times;
  }
  return {
    attempted,
    grants: grants.length,
    violations: violations.length,
    violationsByKind: tally(violations),
    limits: limits.length,
    limitsByKind: tally(limits, (l) => `${l.kind}:${l.explanation}`),
    truth: truthInfo,
    naiveOverlaps,
    overlaps: count(violations, 'overlap'),
    overstated: count(violations, 'overstated-lease') + count(limits, 'overstated-lease'),
    tokenRegressions: count(violations, 'token-order') + count(limits, 'token-order'),
    counterResets,
    orphans,
    maxStallMs: round(stalls[stalls.length - 1] || 0),
    p99StallMs: round(percentile(stalls, 99)),
    maxQuietStallMs: round(quietStalls[quietStalls.length - 1] || 0),
    takeovers: takeovers.length,
    maxTakeoverMs: takeovers.length ? round(Math.max(...takeovers)) : null,
    maxOvershootMs: Number.isFinite(maxOvershootMs) ? round(maxOvershootMs) : null,
    aborts,
    maxAbortMs: Number.isFinite(maxAbortMs) ? round(maxAbortMs) : null,
    faultTimings,
    recoveryMs: recoveries.length
      ? { median: round(percentile(recoveries, 50)), max: round(recoveries[recoveries.length - 1]), faults: recoveries.length }
      : null,
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

/** Checks a run directory: worker-*.jsonl, runner.jsonl, truth.jsonl (and options.json), if present. */
function checkDir(dir, options) {
  const files = fs.readdirSync(dir);
  const histories = files.filter((f) => /^worker-\d+\.jsonl$/.test(f)).map((f) => readJsonl(path.join(dir, f)).records);
  const events = readJsonl(path.join(dir, 'runner.jsonl')).records;
  let saved = {};
  if (fs.existsSync(path.join(dir, 'options.json'))) saved = JSON.parse(fs.readFileSync(path.join(dir, 'options.json'), 'utf8'));
  const truthFile = path.join(dir, 'truth.jsonl');
  const truth = fs.existsSync(truthFile) ? readJsonl(truthFile).records : null;
  return check(histories, events, { ...saved, ...options }, truth);
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
