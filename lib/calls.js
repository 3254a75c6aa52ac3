'use strict';
// Calls in flight to the native side. Each native method takes a call number and returns at
// once; finished calls come back in batches through `onDone(values, errors)`, five numbers per
// call: [call, tag, a, b, c] (packing defined by `Outbox::push` in src/binding.rs). The native
// side holds no reference on the event loop, so while calls are pending one interval timer is
// kept referenced: the process stays alive exactly as long as a lock operation is pending.

const { coded } = require('./errors');
const { acquired, released, renewed } = require('./results');

const RELEASE_RESULTS = ['released', 'conflict', 'expired'];
const RENEW_RESULTS = ['renewed', 'missing', 'conflict'];
const MAX_CALL = 0xffffffff;

const TAG_ACQUIRED = 0;
const TAG_WAIT_ACQUIRED = 1;
const TAG_RELEASED = 2;
const TAG_RENEWED = 3;
const TAG_NOTHING = 4;
const TAG_LEASE_RENEWED = 5; // not a call's end: a watched lease was renewed (see `watch`)
const TAG_FAILED = 9;

function noop() {}

class Calls {
  /** `endpoint`: where the Lock connects, named in ERR_REDIS messages (see errors.js fromNative). */
  constructor(endpoint) {
    this.endpoint = endpoint;
    this._pending = new Map();
    this._watches = new Map();
    this._next = 0;
    this._keepAlive = null;
    this.onDone = this.onDone.bind(this);
  }

  /**
   * Registers a call and returns its number; `pending.promise` settles when it is done.
   * `shape` picks the result object for renew calls ('renew' or 'extend'); `id` is echoed back.
   */
  start(id, shape) {
    const call = this._next === MAX_CALL ? (this._next = 1) : ++this._next;
    let entry;
    const promise = new Promise((resolve, reject) => {
      entry = { resolve, reject, id, shape };
    });
    this._pending.set(call, entry);
    if (this._pending.size === 1) this._hold();
    return { call, promise };
  }

  /**
   * Registers `fn(index, remainingMs)` for a lease's renewals (lib/diagnostics.js) and returns
   * the token to pass to `acquireLease`; the native side then reports each renewal as a record
   * `[token, 5, index, remainingMs, 0]`. Watches do not keep the process alive.
   */
  watch(fn) {
    const token = this._next === MAX_CALL ? (this._next = 1) : ++this._next;
    this._watches.set(token, fn);
    return token;
  }

  unwatch(token) {
    this._watches.delete(token);
  }

  /** Settles a call that could not be started (the native method threw). */
  abandon(call) {
    this._pending.delete(call);
    if (this._pending.size === 0) this._letGo();
  }

  onDone(values, errors) {
    for (let i = 0; i + 4 < values.length; i += 5) {
      const call = values[i];
      if (values[i + 1] === TAG_LEASE_RENEWED) {
        const watch = this._watches.get(call);
        if (watch !== undefined) watch(values[i + 2], values[i + 3]);
        continue;
      }
      const entry = this._pending.get(call);
      if (entry === undefined) continue;
      this._pending.delete(call);
      settle(entry, values[i + 1], values[i + 2], values[i + 3], values[i + 4], errors, this.endpoint);
    }
    if (this._pending.size === 0) this._letGo();
  }

  _hold() {
    if (this._keepAlive === null) this._keepAlive = setInterval(noop, 1 << 30);
    else this._keepAlive.ref();
  }

  _letGo() {
    if (this._keepAlive !== null) this._keepAlive.unref();
  }
}

function settle(entry, tag, a, b, c, errors, endpoint) {
  const { id } = entry;
  switch (tag) {
    case TAG_ACQUIRED:
      // (a & 2: a grant undone for lack of replica acknowledgements, flagged as ioredfour does)
      return entry.resolve(a & 2 ? { ...acquired(id, false, b, c), replicationFailure: true } : acquired(id, a === 1, b, c));
    case TAG_WAIT_ACQUIRED:
      return entry.resolve({ id, success: (a & 1) === 1, index: b, ttl: c, immediate: (a & 2) === 2 });
    case TAG_RELEASED:
      return entry.resolve(released(id, a === 1, RELEASE_RESULTS[c], b));
    case TAG_RENEWED:
      return entry.resolve(renewed(id, entry.shape, (a & 1) === 1, RENEW_RESULTS[a >> 1], b, c));
    case TAG_NOTHING:
      return entry.resolve(undefined);
    case TAG_FAILED:
      return entry.reject(coded(errors[a], errors[a + 1], endpoint));
    default:
      return entry.reject(coded('ERR_INTERNAL', `unknown completion tag ${tag}`));
  }
}

module.exports = { Calls };
