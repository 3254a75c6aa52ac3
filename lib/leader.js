'use strict';
// Leader election on top of Lock#acquire: every candidate waits for the same lock id (woken by the
// holder's release message, so a clean hand-off takes about one round trip), the winner's lease is
// renewed from Rust timers, and the lock index of each term is its epoch: a fencing token that
// strictly increases from one leader to the next.

const { EventEmitter } = require('node:events');
const { asyncDisposable, emitSafely } = require('./lifecycle');
const { LockError, codes, invalidArg } = require('./errors');
const { checkMs } = require('./checks');

const DEFAULT_TTL_MS = 10000;
const DEFAULT_REJOIN_AFTER_MS = 1000;
const DEFAULT_RETRY_MIN_MS = 100;
const DEFAULT_RETRY_MAX_MS = 5000;

function checkName(name) {
  if (typeof name === 'string' && name.length > 0) return name;
  if (typeof name === 'number' && Number.isFinite(name)) return name;
  if (typeof name === 'bigint') return name;
  throw invalidArg('name must be a non-empty string or a finite number');
}

/** The `reason` of a term's signal when the term ends without the lease being lost. */
function endedError(reason) {
  const text = reason === 'resigned' ? 'this process resigned' : 'the elector was stopped';
  const err = new LockError(codes.ERR_LOCK_LOST, `leadership ended: ${text}`);
  err.reason = reason;
  return err;
}

/**
 * One candidate in the election for `name`. Starts campaigning at once.
 *
 * Events: `'elected'` ({ name, epoch, signal }), `'revoked'` ({ name, epoch, reason, error? }),
 * `'stopped'` (), and `'error'` (err) — the latter only when an 'error' listener is attached;
 * without one, failures are retried with backoff and never thrown.
 */
class LeaderElector extends EventEmitter {
  /**
   * @param {import('..')} lock a Lock
   * @param {string|number} name the election (a lock id in the Lock's namespace)
   * @param {object} [options]
   * @param {number} [options.ttl=10000] lease of a term in ms; a leader that dies is replaced within it
   * @param {number} [options.renewEveryMs] renewal period (default ttl/3)
   * @param {number} [options.rejoinAfterMs=1000] after `resign()`, wait this long before campaigning again
   * @param {number} [options.retryMinMs=100] first backoff after a Redis error
   * @param {number} [options.retryMaxMs=5000] largest backoff after repeated Redis errors
   * @param {AbortSignal} [options.signal] stops the elector when aborted
   */
  constructor(lock, name, options = {}) {
    super();
    if (!lock || typeof lock.acquire !== 'function') throw invalidArg('lock must be a redfour-native Lock');
    if (options === null || typeof options !== 'object') throw invalidArg('options must be an object');
    this._lock = lock;
    this._name = checkName(name);
    this._ttl = checkMs(options.ttl, 'options.ttl', { fallback: DEFAULT_TTL_MS });
    this._renewEveryMs = checkMs(options.renewEveryMs, 'options.renewEveryMs', { fallback: undefined });
    this._rejoinAfterMs = checkMs(options.rejoinAfterMs, 'options.rejoinAfterMs', { allowZero: true, fallback: DEFAULT_REJOIN_AFTER_MS });
    this._retryMinMs = checkMs(options.retryMinMs, 'options.retryMinMs', { fallback: DEFAULT_RETRY_MIN_MS });
    this._retryMaxMs = Math.max(this._retryMinMs, checkMs(options.retryMaxMs, 'options.retryMaxMs', { fallback: DEFAULT_RETRY_MAX_MS }));
    const signal = options.signal;
    if (signal !== undefined && (signal === null || typeof signal.addEventListener !== 'function')) {
      throw invalidArg('options.signal must be an AbortSignal');
    }

    this._stopped = false;
    this._finished = false;
    this._term = null; // { name, epoch, signal } while leader
    this._endTerm = null; // ends the current term: ({ reason, error?, rejoinAfterMs? }) => void
    this._termDone = null; // resolves once the current term's lock is released
    this._wait = null; // AbortController of the pending acquire
    this._wake = null; // ends a backoff pause early
    this._watchers = new Set(); // async iterators waiting for a change

    if (signal) {
      if (signal.aborted) this._stopped = true;
      else
        signal.addEventListener(
          'abort',
          () => {
            this.stop();
          },
          { once: true },
        );
    }
    this._done = this._run();
  }

  /** The election's name (the lock id). */
  get name() {
    return this._name;
  }

  /** True while this process is the leader. */
  get isLeader() {
    return this._term !== null;
  }

  /** The current term's epoch (its lock index, a fencing token) while leader, else null. */
  get epoch() {
    return this._term ? this._term.epoch : null;
  }

  /** An AbortSignal for the current term (aborts when it ends) while leader, else null. */
  get signal() {
    return this._term ? this._term.signal : null;
  }

  /** True once `stop()` was called (or the Lock closed, or `options.signal` aborted). */
  get stopped() {
    return this._stopped;
  }

  /**
   * Steps down: the term's signal aborts, the lock is released (another candidate takes over at
   * once), and this elector campaigns again after `rejoinAfterMs`. Resolves with `true` once the
   * lock is released, or `false` at once if this process was not the leader.
   */
  async resign(options = {}) {
    if (options === null || typeof options !== 'object') throw invalidArg('options must be an object');
    const rejoinAfterMs = checkMs(options.rejoinAfterMs, 'options.rejoinAfterMs', { allowZero: true, fallback: this._rejoinAfterMs });
    if (!this._endTerm) return false;
    const done = this._termDone;
    this._endTerm({ reason: 'resigned', rejoinAfterMs });
    await done;
    return true;
  }

  /**
   * Leaves the election: a pending campaign is cancelled, and a held term ends (its signal aborts,
   * then the lock is released). Resolves once that is done. Idempotent.
   */
  stop() {
    if (!this._stopped) {
      this._stopped = true;
      if (this._wait) this._wait.abort();
      if (this._endTerm) this._endTerm({ reason: 'stopped' });
      if (this._wake) this._wake();
    }
    return this._done;
  }

  /**
   * Yields each term this process wins (`{ name, epoch, signal }`; the signal aborts when the
   * term ends). Ends when the elector stops; leaving the loop early (break/throw) stops it.
   */
  [Symbol.asyncIterator]() {
    let lastEpoch = null;
    const next = () =>
      new Promise((resolve) => {
        const check = () => {
          const term = this._term;
          if (term && term.epoch !== lastEpoch && !term.signal.aborted) {
            lastEpoch = term.epoch;
            resolve({ value: term, done: false });
            return true;
          }
          if (this._finished) {
            resolve({ value: undefined, done: true });
            return true;
          }
          return false;
        };
        if (check()) return;
        const watcher = () => {
          if (check()) this._watchers.delete(watcher);
        };
        this._watchers.add(watcher);
      });
    const iterator = {
      next,
      return: async (value) => {
        await this.stop();
        return { value, done: true };
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  _notify() {
    for (const watcher of [...this._watchers]) watcher();
  }

  _emit(event, payload) {
    emitSafely(this, event, payload);
  }

  /** Reports a failure to 'error' listeners, if there are any; never an unhandled 'error' event. */
  _fail(err) {
    if (this.listenerCount('error') > 0) this._emit('error', err);
  }

  _pause(ms) {
    if (this._stopped || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this._wake = done;
    }).finally(() => {
      this._wake = null;
    });
  }

  async _run() {
    let backoff = this._retryMinMs;
    try {
      while (!this._stopped) {
        const wait = new AbortController();
        this._wait = wait;
        let held;
        try {
          held = await this._lock.acquire(this._name, this._ttl, {
            waitMs: 0, // campaign until elected
            renewEveryMs: this._renewEveryMs,
            signal: wait.signal,
          });
        } catch (err) {
          if (this._stopped) break;
          this._fail(err);
          if (err && (err.code === codes.ERR_CLOSED || err.code === codes.ERR_INVALID_ARG)) {
            this._stopped = true; // nothing to retry
            break;
          }
          await this._pause(backoff);
          backoff = Math.min(backoff * 2, this._retryMaxMs);
          continue;
        } finally {
          this._wait = null;
        }
        backoff = this._retryMinMs;
        if (this._stopped) {
          await held.release().catch((err) => this._fail(err));
          break;
        }
        const rejoinAfterMs = await this._serve(held);
        await this._pause(rejoinAfterMs);
      }
    } catch (err) {
      // A bug in this loop; keep the promise from stop() resolving rather than rejecting unhandled.
      this._fail(err);
      this._stopped = true;
    } finally {
      this._finished = true;
      this._notify();
      this._emit('stopped');
    }
  }

  /** Holds one term until it is lost, resigned or stopped. Returns the delay before campaigning again. */
  async _serve(held) {
    const controller = new AbortController();
    const term = Object.freeze({ name: this._name, epoch: held.index, signal: controller.signal });
    let finishTerm;
    this._termDone = new Promise((resolve) => {
      finishTerm = resolve;
    });
    const ended = new Promise((resolve) => {
      let settled = false;
      this._endTerm = (outcome) => {
        if (settled) return;
        settled = true;
        resolve(outcome);
      };
    });
    const onLost = () => {
      const error = held.signal.reason;
      this._endTerm({ reason: (error && error.reason) || 'lost', error });
    };
    if (held.signal.aborted) onLost();
    else held.signal.addEventListener('abort', onLost, { once: true });
    this._term = term;
    this._emit('elected', term);
    this._notify();

    const outcome = await ended;
    held.signal.removeEventListener('abort', onLost);
    this._term = null;
    this._endTerm = null;
    const resigned = outcome.reason === 'resigned' || outcome.reason === 'stopped';
    // The leader's work hears about the end of its term before anybody else can be elected.
    controller.abort(resigned ? endedError(outcome.reason) : outcome.error);
    const revoked = { name: this._name, epoch: term.epoch, reason: outcome.reason };
    if (!resigned) revoked.error = outcome.error;
    this._emit('revoked', revoked);
    // Also after a lost lease: it stops the renewals, and if the lease was only unreachable the key
    // may still be ours, so releasing it lets the next leader in without waiting for the TTL.
    await held.release().catch((err) => {
      if (resigned) this._fail(err);
    });
    finishTerm();
    if (outcome.reason === 'closed') this._stopped = true;
    if (outcome.reason === 'resigned') return outcome.rejoinAfterMs;
    return 0;
  }
}

// `await using elector = lock.elect(...)` stops it at scope end.
asyncDisposable(LeaderElector, (elector) => elector.stop());

module.exports = { LeaderElector };
