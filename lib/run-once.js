'use strict';
// Run a named job at most once per period across every process sharing a Redis: the seed's
// "send the daily email exactly once across the fleet".
//
// Two lock ids per period, both in the Lock's namespace:
//   `${name}:${periodStart}`        the run lock: held (renewed from Rust) while the job runs; a
//                                   runner that dies stops renewing, so after its TTL another
//                                   process can retry the job in the same period;
//   `${name}:${periodStart}:done`   the done marker: taken with acquireLock once the job succeeded,
//                                   with a TTL lasting past the end of the period, and never
//                                   released. A lock that nobody releases is a flag with an expiry.
// The marker is read without writing anything: releaseLock with an index no grant ever carries
// answers 'expired' (no marker) or 'conflict' (marker present) and leaves the key alone.

const { EventEmitter } = require('node:events');
const { codes, invalidArg } = require('./errors');
const { MAX_TTL_MS, checkMs } = require('./checks');
const { asyncDisposable, emitSafely } = require('./lifecycle');

const DEFAULT_RUN_TTL_MS = 30000;
const MAX_GRACE_MS = 3600000;
/** No grant ever gets this index (the counter would need 2^53 grants first). */
const PROBE_INDEX = Number.MAX_SAFE_INTEGER;

// croner (no dependencies, ~220 KB) is loaded on the first cron schedule only: a mutex-only
// user never loads it.
let Cron;
/** A paused croner schedule (it never fires by itself: we only ask it for run times). */
function cron(expression, tz) {
  if (!Cron) ({ Cron } = require('croner'));
  return new Cron(expression, { paused: true, timezone: tz });
}

function checkName(name) {
  if (typeof name === 'number' && Number.isFinite(name)) return String(name);
  if (typeof name !== 'string' || name.length === 0) throw invalidArg('name must be a non-empty string');
  return name;
}

function toMs(now) {
  if (now === undefined) return Date.now();
  const ms = now instanceof Date ? now.getTime() : now;
  if (typeof ms !== 'number' || !Number.isFinite(ms)) throw invalidArg('options.now must be a Date or a number of milliseconds');
  return Math.floor(ms);
}

/**
 * Normalises a schedule: a number (a fixed interval in ms, periods aligned to the Unix epoch), a
 * cron expression string, or `{ every, offset }` / `{ cron, tz }`.
 */
function parseSchedule(schedule, options = {}) {
  if (typeof schedule === 'number') schedule = { every: schedule };
  else if (typeof schedule === 'string') schedule = { cron: schedule };
  if (schedule === null || typeof schedule !== 'object') {
    throw invalidArg('schedule must be an interval in ms, a cron expression, {every, offset} or {cron, tz}');
  }
  if (schedule.every !== undefined) {
    const every = schedule.every;
    if (typeof every !== 'number' || !Number.isSafeInteger(every) || every < 1) {
      throw invalidArg('schedule interval must be a positive integer number of milliseconds');
    }
    const offset = schedule.offset === undefined ? 0 : schedule.offset;
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset))
      throw invalidArg('schedule.offset must be an integer number of milliseconds');
    return { kind: 'every', every, offset };
  }
  if (typeof schedule.cron === 'string') {
    const tz = schedule.tz !== undefined ? schedule.tz : options.tz;
    if (tz !== undefined && typeof tz !== 'string') throw invalidArg('tz must be an IANA time zone name');
    try {
      const fires = cron(schedule.cron, tz);
      if (fires.nextRun(new Date(0)) === null) throw new Error('it never fires');
    } catch (err) {
      throw invalidArg(`invalid cron expression ${JSON.stringify(schedule.cron)}: ${err.message}`);
    }
    return { kind: 'cron', expression: schedule.cron, tz };
  }
  throw invalidArg('schedule must be an interval in ms, a cron expression, {every, offset} or {cron, tz}');
}

/**
 * The period containing `now`: `[start, end)` in ms since the epoch. For an interval, periods are
 * `offset + k * every`; for a cron expression, a period runs from one fire time to the next.
 */
function periodAt(schedule, now) {
  if (schedule.kind === 'every') {
    const start = Math.floor((now - schedule.offset) / schedule.every) * schedule.every + schedule.offset;
    return { start, end: start + schedule.every };
  }
  const fires = cron(schedule.expression, schedule.tz);
  // The last fire time at or before now (previousRuns is strict, hence now + 1 ms), and the next
  // one after now.
  const [prev] = fires.previousRuns(1, new Date(now + 1));
  const next = fires.nextRun(new Date(now));
  if (!prev || !next)
    throw invalidArg(`cron expression ${JSON.stringify(schedule.expression)} has no period containing ${new Date(now).toISOString()}`);
  return { start: prev.getTime(), end: next.getTime() };
}

/** Public description of a period. */
function describePeriod(name, period) {
  return { start: new Date(period.start), end: new Date(period.end), id: `${name}:${period.start}` };
}

/** True when the done marker for `doneId` exists. Writes nothing. */
async function isDone(lock, doneId) {
  const probe = await lock.releaseLock({ id: doneId, index: PROBE_INDEX });
  return probe.result === 'conflict';
}

/**
 * Runs `job(signal, info)` unless it already ran in the current period anywhere. See docs/leases-and-jobs.md.
 *
 * @returns {Promise<{ran: boolean, result?: any, skipped?: 'done'|'busy'|'missed', epoch?: number,
 *   marked?: boolean, period: {start: Date, end: Date, id: string}}>}
 */
async function runOnce(lock, name, schedule, job, options = {}) {
  if (options === null || typeof options !== 'object') throw invalidArg('options must be an object');
  const jobName = checkName(name);
  if (typeof job !== 'function') throw invalidArg('job must be a function');
  const sched = parseSchedule(schedule, options);
  const now = toMs(options.now);
  const ttl = checkMs(options.ttl, 'options.ttl', { fallback: DEFAULT_RUN_TTL_MS });
  const period = periodAt(sched, now);
  const info = describePeriod(jobName, period);
  const runId = info.id;
  const doneId = `${runId}:done`;
  const length = period.end - period.start;
  const graceMs = checkMs(options.graceMs, 'options.graceMs', { allowZero: true, fallback: Math.min(length, MAX_GRACE_MS) });

  if (await isDone(lock, doneId)) return { ran: false, skipped: 'done', period: info };

  // Wait while another process runs the job: either it finishes (then we skip) or it dies (then
  // its lease runs out and we retry). By default the wait lasts until the period ends.
  let waitMs;
  if (options.wait === false) {
    waitMs = 1; // one attempt (and a last one a millisecond later)
  } else if (options.waitMs !== undefined) {
    waitMs = checkMs(options.waitMs, 'options.waitMs', { allowZero: true }); // 0: wait without limit
  } else {
    waitMs = Math.min(Math.max(period.end - now, 1), MAX_TTL_MS);
  }
  let held;
  try {
    held = await lock.acquire(runId, ttl, {
      waitMs,
      signal: options.signal,
      renewEveryMs: options.renewEveryMs,
      maxHoldMs: options.maxHoldMs,
    });
  } catch (err) {
    if (err && err.code === codes.ERR_NOT_ACQUIRED) {
      const done = await isDone(lock, doneId);
      return { ran: false, skipped: done ? 'done' : 'busy', period: info };
    }
    throw err;
  }

  const controller = new AbortController();
  const unlink = linkSignals(controller, [held.signal, options.signal]);
  try {
    if (await isDone(lock, doneId)) return { ran: false, skipped: 'done', period: info };
    if (options.now === undefined && Date.now() >= period.end) {
      return { ran: false, skipped: 'missed', period: info };
    }
    const result = await job(controller.signal, { name: jobName, period: info, epoch: held.index });
    // Done: mark the period, even if the lease was lost meanwhile (the work did complete). A
    // failure here must not turn a job that ran into an error: it is reported as marked: false.
    let marked = false;
    const markTtl = Math.min(Math.max(period.end - Date.now(), 0) + graceMs, MAX_TTL_MS);
    if (markTtl >= 1) {
      try {
        const mark = await lock.acquireLock(doneId, markTtl);
        // Not acquired: somebody else marked the period done (after our lease was lost).
        marked = mark.success || (await isDone(lock, doneId).catch(() => false));
      } catch {
        marked = false;
      }
    }
    return { ran: true, result, epoch: held.index, marked, period: info };
  } finally {
    unlink();
    // Whatever happened (skip, result, or the job's error, which wins), the run lock is released;
    // a release failure must not hide anything: the lease then ends by its TTL.
    await held.release().catch(() => {});
  }
}

/** Aborts `controller` when any of `signals` aborts; returns a function removing the listeners. */
function linkSignals(controller, signals) {
  const removers = [];
  for (const signal of signals) {
    if (!signal) continue;
    if (signal.aborted) {
      controller.abort(signal.reason);
      continue;
    }
    const onAbort = () => controller.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    removers.push(() => signal.removeEventListener('abort', onAbort));
  }
  return () => removers.forEach((remove) => remove());
}

/**
 * Calls `runOnce` at the start of every period, in this process, until stopped. Run the same
 * schedule in every process of the fleet: each period's job runs once in one of them.
 * Events: 'ran' (outcome of runOnce, whether it ran or skipped) and 'error' (only when listened to).
 */
class Schedule extends EventEmitter {
  constructor(lock, name, schedule, job, options = {}) {
    super();
    if (options === null || typeof options !== 'object') throw invalidArg('options must be an object');
    this._lock = lock;
    this._name = checkName(name);
    if (typeof job !== 'function') throw invalidArg('job must be a function');
    this._job = job;
    this._schedule = parseSchedule(schedule, options);
    this._options = { ...options };
    delete this._options.now;
    this._delayMs = checkMs(options.delayMs, 'options.delayMs', { allowZero: true, fallback: 0 });
    this._runNow = options.runNow !== false; // also run for the period that is already under way
    checkMs(options.ttl, 'options.ttl', { fallback: DEFAULT_RUN_TTL_MS });
    this._stopped = false;
    this._timer = null;
    this._controller = new AbortController();
    this._current = null;
    // The start of the last period this scheduler ran (or skipped on purpose); see _arm.
    this._lastStart = this._runNow ? null : periodAt(this._schedule, Date.now()).start;
    this._arm();
  }

  get stopped() {
    return this._stopped;
  }

  /** Stops scheduling; a job under way gets its signal aborted. Resolves when it has settled. */
  async stop() {
    this._stopped = true;
    clearTimeout(this._timer);
    this._controller.abort();
    if (this._current) await this._current.catch(() => {});
  }

  /**
   * Runs the current period if this scheduler has not yet (also when a long run or wait made it
   * miss the period's start), else sleeps until the next period starts (plus delayMs).
   */
  _arm() {
    if (this._stopped) return;
    const now = Date.now();
    const { start, end } = periodAt(this._schedule, now);
    const pending = start !== this._lastStart;
    if (pending && now >= start + this._delayMs) {
      this._tick(start);
      return;
    }
    const target = (pending ? start : end) + this._delayMs;
    // Timers cannot wait longer than 2^31-1 ms, and may fire a little early: re-arm either way.
    const delay = Math.min(Math.max(target - now, 1), MAX_TTL_MS);
    this._timer = setTimeout(() => this._arm(), delay);
  }

  _tick(start) {
    this._lastStart = start;
    const run = runOnce(
      this._lock,
      this._name,
      this._schedule.kind === 'every'
        ? { every: this._schedule.every, offset: this._schedule.offset }
        : { cron: this._schedule.expression, tz: this._schedule.tz },
      this._job,
      { ...this._options, signal: this._controller.signal },
    );
    this._current = run;
    run
      .then(
        (outcome) => {
          if (this.listenerCount('ran') > 0) this._emit('ran', outcome);
        },
        (err) => {
          if (!this._stopped && this.listenerCount('error') > 0) this._emit('error', err);
          if (err && err.code === codes.ERR_CLOSED) this._stopped = true; // the Lock is gone: nothing to retry
        },
      )
      .finally(() => {
        if (this._current === run) this._current = null;
        this._arm();
      });
  }

  _emit(event, payload) {
    emitSafely(this, event, payload);
  }
}

asyncDisposable(Schedule, (schedule) => schedule.stop());

module.exports = { runOnce, Schedule, parseSchedule, periodAt, PROBE_INDEX };
