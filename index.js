'use strict';
// The JavaScript face of redfour-native: argument checks, redfour-shaped results, and the
// callback-or-Promise calling convention. Redis work happens in the Rust core
// (redfour-native.node), except a single server's plain calls, which lib/plain-calls.js sends
// with the core's scripts from this thread. User callbacks are only ever called from here, on a
// fresh tick, never from inside Rust, so a throwing callback cannot abort the process.

const { connectionUrls, sentinelOptions, tlsOptions, markInsecure, resolveTarget, describeEndpoints } = require('./lib/connection');
const { LockError, codes, invalidArg, isLockError, fromNative, fromArguments } = require('./lib/errors');
const native = require('./lib/native');
const { abortHandle, acquireHeld, runHeld } = require('./lib/held');
const { Calls } = require('./lib/calls');
const { openPlainCalls } = require('./lib/plain-calls');
const { MAX_TTL_MS, checkMs: checkTtl, describe } = require('./lib/checks');
const { Fence, fencedSet } = require('./lib/fence');
const { LeaderElector } = require('./lib/leader');
const { runOnce, Schedule } = require('./lib/run-once');
const { asyncDisposable } = require('./lib/lifecycle');
const diagnostics = require('./lib/diagnostics');

const DEFAULT_NAMESPACE = 'lock';
const MAX_ID_LENGTH = 65536;
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
const DEFAULT_COMMAND_TIMEOUT_MS = 5000;
const DEFAULT_REPLICATION_TIMEOUT_MS = 500; // ioredfour's

function checkId(id) {
  if (typeof id === 'number') {
    if (!Number.isFinite(id)) throw invalidArg(`id must be a finite number or a string, got ${id}`);
  } else if (typeof id === 'bigint') {
    // String(10n) is '10', which is what redfour would have built the key from.
  } else if (typeof id !== 'string') {
    throw invalidArg(`id must be a string or a number, got ${describe(id)}`);
  }
  // Exactly JavaScript's own conversion, so keys match redfour's `${namespace}:${id}` byte for byte.
  const text = String(id);
  if (text.length === 0) throw invalidArg('id must not be empty');
  if (text.length > MAX_ID_LENGTH) throw invalidArg(`id is longer than ${MAX_ID_LENGTH} characters`);
  return text;
}

// An index no grant ever carries (the counter starts at 1): what an index that cannot match any
// lock (a fraction, beyond 2^53) is sent as, so that it gets the answer redfour's scripts give it.
const NEVER_GRANTED_INDEX = 0;
// Decimal text, as redfour's scripts read it with `tonumber` (and its index.d.ts types `index` as a string).
const NUMERIC_TEXT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$/i;

/**
 * The index of a lock passed to releaseLock/renewLock/extendLock, as the integer the native side
 * compares with the lock's. Like redfour, any index is an answer, not an error: one that is not
 * the lock's (-1 from a failed acquire, 0, -10, a fraction) gives 'conflict', 'expired' or
 * 'missing'. Numeric strings ('12') are read as numbers. Only what redfour could never have
 * compared is ERR_INVALID_ARG: no index, NaN or an infinity, non-numeric text, other types.
 */
function checkIndex(index) {
  let value = index;
  if (typeof value === 'string') {
    const text = value.trim();
    if (!NUMERIC_TEXT.test(text)) {
      throw invalidArg('lock.index must be a number or a numeric string, got non-numeric text');
    }
    value = Number(text);
  } else if (typeof value === 'bigint') {
    value = Number(value); // rounded when beyond 2^53: then not a safe integer, below
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw invalidArg(`lock.index must be the index returned by an acquire (a number or a numeric string), got ${describe(index)}`);
  }
  return Number.isSafeInteger(value) ? value : NEVER_GRANTED_INDEX;
}

function checkHeld(lock) {
  if (lock === null || typeof lock !== 'object') {
    throw invalidArg(`lock must be the object returned by acquireLock/waitAcquireLock, got ${describe(lock)}`);
  }
  // Each property is read once: a getter may answer differently (or throw) the next time, and a
  // read after the native call started would orphan it.
  const given = lock.id;
  const id = checkId(given);
  return { given, id, index: checkIndex(lock.index) };
}

function checkOptions(options, name) {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object') throw invalidArg(`${name} must be an object, got ${describe(options)}`);
  return options;
}

/** Options of `acquire`/`using`; 0 means "no limit" / "default" to the native side. */
function leaseOptions(options) {
  const opts = checkOptions(options, 'options');
  const ms = (name) => (opts[name] === undefined ? 0 : checkTtl(opts[name], `options.${name}`, { allowZero: true }));
  return {
    waitMs: ms('waitMs'),
    renewEveryMs: ms('renewEveryMs'),
    maxHoldMs: ms('maxHoldMs'),
    signal: opts.signal,
  };
}

/** Native constructors throw synchronously; give their errors our classes and codes too. */
function construct(NativeClass, ...args) {
  try {
    return new NativeClass(...args);
  } catch (err) {
    throw fromNative(err);
  }
}

function optionalMs(options, name, fallback) {
  const value = options[name];
  if (value === undefined) return fallback;
  return checkTtl(value, `options.${name}`);
}

/**
 * Runs `work` (a function returning a Promise) in the caller's chosen style: with a trailing
 * callback it calls `callback(err, result)` on a later tick and returns undefined; otherwise it
 * returns the Promise. Argument errors found synchronously take the same route. `work`'s own
 * rejections must already carry our codes (lib/calls.js and lib/held.js see to that).
 */
function settle(callback, work) {
  let promise;
  try {
    promise = work();
  } catch (err) {
    promise = Promise.reject(fromArguments(err));
  }
  if (typeof callback !== 'function') return promise;
  promise.then(
    (result) => process.nextTick(callback, null, result),
    (err) => process.nextTick(callback, err),
  );
  return undefined;
}

/** `promise`, or while somebody listens (`span` from lib/diagnostics.js), the same traced. */
function follow(span, promise) {
  return span === null ? promise : span.follow(promise);
}

class Lock {
  /**
   * @param {object} options
   * @param {string|object} options.redis URL, connection options, or an existing node-redis/ioredis client
   * @param {string} [options.namespace='lock']
   */
  constructor(options) {
    const target = options && typeof options === 'object' ? resolveTarget(options) : {};
    if (!target.redis) {
      throw invalidArg('Must provide a Redis connection string, options object, or client instance (options.redis)');
    }
    const namespace =
      options.namespace === undefined || options.namespace === null || options.namespace === '' ? DEFAULT_NAMESPACE : options.namespace;
    if (typeof namespace !== 'string') throw invalidArg(`options.namespace must be a string, got ${describe(namespace)}`);
    if (namespace.length > MAX_ID_LENGTH) throw invalidArg(`options.namespace is longer than ${MAX_ID_LENGTH} characters`);

    this._namespace = namespace;
    const { insecure, ...tls } = tlsOptions(options, target.tlsSource);
    const sentinel = sentinelOptions(target.redis);
    const urls = (sentinel ? [sentinel.url] : connectionUrls(target.redis)).map((url) => (insecure ? markInsecure(url) : url));
    const minReplications = options.minReplications ?? 0;
    if (!Number.isInteger(minReplications) || minReplications < 0 || minReplications > 1000) {
      throw invalidArg(`options.minReplications must be an integer from 0 to 1000, got ${describe(minReplications)}`);
    }
    const replicationTimeoutMs = optionalMs(options, 'replicationTimeout', DEFAULT_REPLICATION_TIMEOUT_MS);
    // With minReplications, a grant's lease must outlast the WAIT for its acknowledgements with
    // room to spare (ioredfour's rule): the shortest lock TTL this Lock takes.
    this._minLeaseMs = minReplications > 0 ? Math.ceil(replicationTimeoutMs * 1.5) : 1;
    this._replicationTimeoutMs = replicationTimeoutMs;
    this._calls = new Calls(describeEndpoints(urls, { ...sentinel, cluster: target.cluster }));
    const connectTimeoutMs = optionalMs(options, 'connectTimeout', DEFAULT_CONNECT_TIMEOUT_MS);
    const commandTimeoutMs = optionalMs(options, 'commandTimeout', DEFAULT_COMMAND_TIMEOUT_MS);
    this._native = construct(
      native.NativeLock,
      {
        urls,
        namespace,
        connectTimeoutMs,
        commandTimeoutMs,
        ...tls,
        minReplications,
        replicationTimeoutMs,
        sentinels: sentinel ? sentinel.sentinels : undefined,
        sentinelMaster: sentinel ? sentinel.sentinelMaster : undefined,
        cluster: target.cluster,
      },
      this._calls.onDone,
    );
    diagnostics.listen(native);
    // One server, reached directly: plain calls go from this thread on a connection of its own
    // (lib/plain-calls.js), without a hop to the core's runtime thread and back. The core keeps
    // waits, leases and every other topology.
    const direct = urls.length === 1 && !sentinel && !target.cluster && minReplications === 0;
    this._plain = direct
      ? openPlainCalls(urls[0], namespace, { tlsFiles: tls, connectTimeoutMs, commandTimeoutMs, endpoint: this._calls.endpoint })
      : null;
  }

  /** The namespace this lock's keys and channel live under. */
  get namespace() {
    return this._namespace;
  }

  /** Checks the TTL of a new lock: a valid TTL, and with minReplications, long enough. */
  _checkLockTtl(ttl, name) {
    checkTtl(ttl, name);
    if (ttl < this._minLeaseMs) {
      throw invalidArg(
        `Lock TTL (${ttl}ms) must be at least 1.5x replicationTimeout (${this._replicationTimeoutMs}ms) when minReplications is set. Minimum TTL: ${this._minLeaseMs}ms`,
      );
    }
  }

  acquireLock(id, ttl, callback) {
    return settle(callback, () => {
      const key = checkId(id);
      this._checkLockTtl(ttl, 'ttl');
      const span = diagnostics.acquireStart(this._namespace, id, ttl);
      if (this._plain !== null) return follow(span, this._plain.acquire(id, key, ttl));
      return this._call(id, undefined, (call) => this._native.acquire(call, key, ttl), span);
    });
  }

  waitAcquireLock(id, lockTtl, waitTtl, options, callback) {
    if (typeof options === 'function') [options, callback] = [undefined, options];
    return settle(callback, () => {
      const key = checkId(id);
      this._checkLockTtl(lockTtl, 'lockTtl');
      checkTtl(waitTtl, 'waitTtl', { allowZero: true });
      const abort = abortHandle(checkOptions(options, 'options').signal);
      const span = diagnostics.waitStart('waitAcquireLock', this._namespace, id, lockTtl, waitTtl);
      return this._call(id, undefined, (call) => this._native.waitAcquire(call, key, lockTtl, waitTtl, abort), span);
    });
  }

  releaseLock(lock, callback) {
    return settle(callback, () => {
      const held = checkHeld(lock);
      const released =
        this._plain !== null
          ? this._plain.release(held.given, held.id, held.index)
          : this._call(held.given, undefined, (call) => this._native.release(call, held.id, held.index));
      return diagnostics.traceRelease(this._namespace, held.given, held.index, released);
    });
  }

  renewLock(lock, ttl, callback) {
    return settle(callback, () => {
      const held = checkHeld(lock);
      checkTtl(ttl, 'ttl');
      return this._renew(held, ttl, 'renew');
    });
  }

  extendLock(lock, ttl, callback) {
    return settle(callback, () => {
      const held = checkHeld(lock);
      checkTtl(ttl, 'ttl');
      return this._renew(held, ttl, 'extend');
    });
  }

  _renew(held, ttl, shape) {
    if (this._plain !== null) return this._plain.renew(held.given, held.id, held.index, ttl, shape);
    return this._call(held.given, shape, (call) => this._native.renew(call, held.id, held.index, ttl));
  }

  /**
   * Starts a native call numbered by `this._calls`; `id` is echoed in the result. `span` (from
   * lib/diagnostics.js; null while nobody listens) publishes how the call ended.
   */
  _call(id, shape, start, span = null) {
    const { call, promise } = this._calls.start(id, shape);
    try {
      start(call);
    } catch (err) {
      this._calls.abandon(call);
      if (span !== null) span.fail(fromArguments(err));
      throw err;
    }
    return follow(span, promise);
  }

  /**
   * Waits for lock `id` and keeps it alive (renewed from Rust timers) until released. Resolves
   * with a HeldLock (`await using held = await lock.acquire(...)` releases at scope end); rejects
   * with ERR_NOT_ACQUIRED when the wait ends without the lock, ERR_ABORTED when `signal` fires.
   */
  acquire(id, ttl, options) {
    return settle(undefined, () => {
      const key = checkId(id);
      this._checkLockTtl(ttl, 'ttl');
      return acquireHeld(this, this._native, key, id, ttl, leaseOptions(options), 'acquire');
    });
  }

  /**
   * Acquires lock `id`, runs `routine(signal, held)` while the lease is renewed from Rust, then
   * releases, and resolves with the routine's result. `signal` aborts (reason: an ERR_LOCK_LOST
   * LockError, or the caller's own abort reason) if the lease is lost or `options.signal` fires.
   */
  using(id, ttl, routine, options) {
    return settle(undefined, () => {
      const key = checkId(id);
      this._checkLockTtl(ttl, 'ttl');
      if (typeof routine !== 'function') throw invalidArg('routine must be a function');
      const opts = leaseOptions(options);
      return acquireHeld(this, this._native, key, id, ttl, opts, 'using').then((held) => runHeld(held, routine, opts.signal));
    });
  }

  /**
   * Stops this Lock: pending waits reject with ERR_CLOSED, later calls reject the same way, and the
   * shared connections close once no other Lock uses them. Idempotent.
   */
  close(callback) {
    return settle(callback, () => {
      this._native.close();
      return this._plain !== null ? this._plain.close() : Promise.resolve();
    });
  }

  quit(callback) {
    return this.close(callback);
  }

  /**
   * Joins the leader election `name` (a lock id in this namespace); see lib/leader.js. Returns a
   * started LeaderElector (EventEmitter: 'elected', 'revoked'; async iterable of terms).
   */
  elect(name, options) {
    return new LeaderElector(this, name, options);
  }

  /**
   * Runs `job(signal, info)` at most once per period of `schedule` across every process sharing
   * this Redis and namespace; see lib/run-once.js. The job's own errors are passed through as-is.
   */
  runOnce(name, schedule, job, options) {
    return Promise.resolve().then(() => runOnce(this, name, schedule, job, options));
  }

  /** Calls `runOnce` at the start of every period in this process until `stop()`; see lib/run-once.js. */
  schedule(name, schedule, job, options) {
    return new Schedule(this, name, schedule, job, options);
  }
}

// `await using lock = new Lock(...)` closes the lock at scope end (Node versions that define the symbol).
asyncDisposable(Lock, (lock) => lock.close());

module.exports = Lock;
module.exports.Lock = Lock;
module.exports.default = Lock;
module.exports.LockError = LockError;
module.exports.isLockError = isLockError;
module.exports.codes = codes;
module.exports.MAX_TTL_MS = MAX_TTL_MS;
module.exports.Fence = Fence;
module.exports.fencedSet = fencedSet;
module.exports.LeaderElector = LeaderElector;
module.exports.Schedule = Schedule;
module.exports.channels = diagnostics.channels;
