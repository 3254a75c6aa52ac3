'use strict';
// Held locks that look after themselves: the lease is renewed from Rust timers (a blocked event
// loop does not lose it), and an AbortSignal fires as soon as the lease can no longer be trusted.

const { LockError, codes, coded, fromNative, fromArguments } = require('./errors');
const addon = require('./native');
const diagnostics = require('./diagnostics');
const { asyncDisposable } = require('./lifecycle');

/** Turns an AbortSignal into a native abort handle (or undefined when there is no signal). */
function abortHandle(signal) {
  if (signal === undefined || signal === null) return undefined;
  if (typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function') {
    const err = new TypeError('options.signal must be an AbortSignal');
    err.code = codes.ERR_INVALID_ARG;
    throw err;
  }
  const handle = new addon.AbortHandle();
  if (signal.aborted) handle.abort();
  else signal.addEventListener('abort', () => handle.abort(), { once: true });
  return handle;
}

const LOST_MESSAGES = {
  conflict: 'another owner holds the lock now',
  missing: 'the lock expired or was deleted',
  unreachable: 'the lease could not be renewed before it ran out',
  'max-hold': 'the lock was held for maxHoldMs',
  closed: 'the Lock was closed',
  internal: 'the lease keeper failed (a bug: please report it)',
};

function lostError(reason) {
  const err = new LockError(codes.ERR_LOCK_LOST, `lock lost: ${LOST_MESSAGES[reason] || reason}`);
  err.reason = reason;
  return err;
}

/**
 * A lock held by this process, kept alive until released. Returned by `Lock#acquire`.
 * `await using held = await lock.acquire(...)` releases it at scope end.
 */
class HeldLock {
  constructor(lock, id, lease, renewals = 0) {
    this.id = id;
    this.index = lease.index;
    this.ttl = lease.ttl;
    this.immediate = lease.immediate;
    this._lock = lock;
    this._lease = lease;
    this._released = null;
    const controller = new AbortController();
    /** Aborts (with an ERR_LOCK_LOST LockError as reason) when the lease is lost. */
    this.signal = controller.signal;
    this._renewals = renewals;
    this._lost = lease.lost().then((settled) => {
      // A reason, null once stopped, or (a bug in the keeper) a `{ code, message }` failure:
      // then the lease can no longer be trusted and counts as lost.
      const reason = settled !== null && typeof settled === 'object' ? 'internal' : settled;
      if (renewals !== 0) lock._calls.unwatch(renewals);
      if (reason) {
        diagnostics.leaseLost(lock.namespace, id, this.index, reason);
        controller.abort(lostError(reason));
      }
      return reason;
    });
  }

  /** Milliseconds before the lease must be considered lost (0 once lost or released). */
  get remainingMs() {
    return this._lease.remainingMs();
  }

  /** Stops renewing and releases the lock. Idempotent: later calls return the first result. */
  release() {
    if (!this._released) {
      this._lease.stop();
      if (this._renewals !== 0) this._lock._calls.unwatch(this._renewals);
      this._released = this._lock.releaseLock({ id: this.id, index: this.index });
    }
    return this._released;
  }
}

asyncDisposable(HeldLock, (held) => held.release().then(() => undefined));

/**
 * Waits for the lock and keeps it alive. Rejects with ERR_NOT_ACQUIRED if the wait ends without
 * it, ERR_ABORTED if `signal` fires first. `operation` ('acquire' or 'using') names the wait in
 * diagnostics messages.
 */
async function acquireHeld(lock, native, key, id, ttl, options, operation = 'acquire') {
  let abort;
  try {
    abort = abortHandle(options.signal);
  } catch (err) {
    throw fromArguments(err);
  }
  const span = diagnostics.waitStart(operation, lock.namespace, id, ttl, options.waitMs);
  const renewals = diagnostics.watchRenewals(lock._calls, lock.namespace, id);
  let lease;
  let failed = null;
  try {
    // Resolves with the lease, or with the failure as `{ code, message }` (never rejects).
    lease = await native.acquireLease(key, ttl, options.waitMs, options.renewEveryMs, options.maxHoldMs, abort, renewals);
    if (typeof lease.code === 'string') failed = coded(lease.code, lease.message, lock._calls.endpoint);
  } catch (err) {
    failed = fromNative(err, lock._calls.endpoint);
  }
  if (failed !== null) {
    if (renewals !== 0) lock._calls.unwatch(renewals);
    if (span !== null) span.fail(failed);
    throw failed;
  }
  if (!lease.success) {
    if (renewals !== 0) lock._calls.unwatch(renewals);
    const err = new LockError(
      codes.ERR_NOT_ACQUIRED,
      `lock ${JSON.stringify(String(id))} is held elsewhere (${lease.ttl} ms left) and the wait ended`,
    );
    err.ttl = lease.ttl;
    if (span !== null) span.fail(err);
    throw err;
  }
  const held = new HeldLock(lock, id, lease, renewals);
  if (span !== null) span.done({ success: true, index: held.index, ttl: held.ttl, immediate: held.immediate });
  return held;
}

/** Runs `routine(signal, held)` under the lock, then releases it; see `Lock#using`. */
async function runHeld(held, routine, signal) {
  const controller = new AbortController();
  const forward = (source) => controller.abort(source.reason);
  if (held.signal.aborted) forward(held.signal);
  else held.signal.addEventListener('abort', () => forward(held.signal), { once: true });
  if (signal) {
    if (signal.aborted) forward(signal);
    else signal.addEventListener('abort', () => forward(signal), { once: true });
  }
  let result;
  try {
    result = await routine(controller.signal, held);
  } catch (err) {
    // The routine's error wins; a release failure must not hide it.
    await held.release().catch(() => {});
    throw err;
  }
  await held.release();
  return result;
}

module.exports = { HeldLock, abortHandle, acquireHeld, runHeld, lostError };
