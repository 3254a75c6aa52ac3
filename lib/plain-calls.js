'use strict';
// Plain calls (acquireLock, releaseLock, renewLock, extendLock) of a Lock on one Redis server,
// made from the JavaScript thread on a RedisConnection (lib/redis-connection.js). The Lua scripts
// are the core's (src/core/scripts.rs, given by the native module), run exactly as the core runs
// them, so keys, values and messages on the wire do not change with the path a call takes.
//
// - A call made while nothing is in flight goes at once, as its own script call. Calls made
//   while others are in flight go together at the end of the turn: one alone, two or more (up
//   to 32) as one call of the core's batch script (src/core/batch.rs says why: Redis's cost per
//   script call, and one socket write instead of many). The same policy as the core's batcher.
// - A script goes as EVAL (which loads it) until a reply shows it is loaded on this connection,
//   and again after NOSCRIPT or a new socket, so a call is never answered NOSCRIPT and sent
//   again behind calls made after it.
// - Every request is safe to send twice (after a connection dropped under it): an acquire
//   names its attempt (a second send finds its own grant), a release or renewal checks the
//   index.
//
// Used for single-server Locks without sentinels or minReplications; sentinel, replication,
// quorum and cluster Locks make every call through the core, which knows their topology.

const { createHash, randomUUID } = require('node:crypto');
const native = require('./native');
const { codes, coded, redisError, closedError } = require('./errors');
const { acquired, released, renewed } = require('./results');
const { RedisConnection } = require('./redis-connection');

let core = null;
/**
 * The core's scripts (source, SHA1, batch tag) and the batch script's layout, read from the
 * native module once; each script gets a bit for the set of scripts loaded on a connection.
 */
function coreScripts() {
  if (core === null) {
    const given = native.scriptSources();
    const scripts = [given.acquire, given.release, given.renew, given.batch].map((script, i) => ({ ...script, bit: 1 << i }));
    const [acquire, release, renew, batch] = scripts;
    core = { acquire, release, renew, batch, maxBatch: given.maxBatch, keysPerCall: given.keysPerCall, argsPerCall: given.argsPerCall };
  }
  return core;
}

/** Script calls on one server's connection, batched per event-loop turn. */
class ScriptCalls {
  constructor(url, options) {
    this._scripts = coreScripts();
    this._endpoint = options.endpoint;
    this._loaded = 0; // bits of the scripts known to be loaded on the current socket
    this._connection = new RedisConnection(url, {
      ...options,
      onReset: () => {
        this._loaded = 0;
      },
    });
    this._queue = [];
    this._flush = this._flush.bind(this);
  }

  /**
   * Runs `script` with `keys` (one or two) and `args` (at most three), then calls `done(err)` or
   * `done(null, reply)` (the script's array reply).
   * A call made while nothing is queued or in flight is written at once (a caller that blocks
   * its thread right after a releaseLock has still released); otherwise it waits for the end of
   * the current turn, to go with the calls made in it.
   */
  run(script, keys, args, done) {
    const call = { script, keys, args, done };
    if (this._queue.length === 0) {
      if (this._connection.inFlight === 0) {
        this._send(script, keys, args, [call]);
        return;
      }
      process.nextTick(this._flush);
    }
    this._queue.push(call);
  }

  _flush() {
    const queue = this._queue;
    this._queue = [];
    const most = this._scripts.maxBatch;
    for (let i = 0; i < queue.length; i += most) {
      const calls = queue.length <= most ? queue : queue.slice(i, i + most);
      if (calls.length === 1) this._send(calls[0].script, calls[0].keys, calls[0].args, calls);
      else this._sendBatch(calls);
    }
  }

  /** Several calls as one call of the batch script: each call's tag, keys and arguments, padded. */
  _sendBatch(calls) {
    const { batch, keysPerCall, argsPerCall } = this._scripts;
    const keys = [];
    const args = [];
    for (const call of calls) {
      for (let k = 0; k < keysPerCall; k++) keys.push(k < call.keys.length ? call.keys[k] : call.keys[0]);
      args.push(call.script.tag);
      for (let a = 0; a < argsPerCall; a++) args.push(a < call.args.length ? call.args[a] : '');
    }
    this._send(batch, keys, args, calls);
  }

  /** Sends one script call carrying `calls` (one call, or a batch of them) and settles them. */
  _send(script, keys, args, calls) {
    const loaded = (this._loaded & script.bit) !== 0;
    const request = loaded
      ? ['EVALSHA', script.sha, keys.length, ...keys, ...args]
      : ['EVAL', script.source, keys.length, ...keys, ...args];
    this._connection.request(request, true, (err, reply) => {
      if (err) {
        for (const call of calls) call.done(err);
        return;
      }
      if (reply instanceof Error && reply.message.startsWith('NOSCRIPT')) {
        // The server lost its scripts (restart, failover, SCRIPT FLUSH): load them again.
        this._loaded = 0;
        if (loaded) {
          this._send(script, keys, args, calls);
          return;
        }
      } else {
        this._loaded |= script.bit;
      }
      if (calls.length === 1 && script !== this._scripts.batch) this._settle(calls[0], reply);
      else if (Array.isArray(reply)) for (let i = 0; i < calls.length; i++) this._settle(calls[i], reply[i]);
      else for (const call of calls) this._settle(call, reply);
    });
  }

  _settle(call, reply) {
    if (reply instanceof Error) call.done(redisError(reply.message, this._endpoint));
    else if (!Array.isArray(reply)) call.done(coded(codes.ERR_INTERNAL, `unexpected reply to a script call: ${typeof reply}`));
    else call.done(null, reply);
  }

  close() {
    return this._connection.close();
  }
}

// One ScriptCalls per server and connection settings, shared by every Lock using them (as the
// core shares its connections), closed when the last of those Locks closes.
const shared = new Map();

/**
 * The plain calls of a Lock on `url`: `{ acquire, release, renew, close }`. `options`: tlsFiles
 * ({ tlsCa, tlsCert, tlsKey }), connectTimeoutMs, commandTimeoutMs, endpoint (for messages).
 */
function openPlainCalls(url, namespace, options) {
  const { tlsCa, tlsCert, tlsKey } = options.tlsFiles;
  const pem = (b) => (b ? createHash('sha1').update(b).digest('hex') : '');
  const key = [url, pem(tlsCa), pem(tlsCert), pem(tlsKey), options.connectTimeoutMs, options.commandTimeoutMs].join('\n');
  let entry = shared.get(key);
  if (entry === undefined) {
    entry = { calls: new ScriptCalls(url, options), users: 0 };
    shared.set(key, entry);
  }
  entry.users++;
  const calls = entry.calls;
  const s = calls._scripts;
  const counter = `${namespace}index`;
  const channel = `${namespace}-release`;
  const prefix = `${namespace}:`;
  let closed = false;
  /** A Promise of `shape(reply)` for one call of `script`. */
  const call = (script, keys, args, shape) => {
    if (closed) return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      calls.run(script, keys, args, (err, reply) => (err ? reject(err) : resolve(shape(reply))));
    });
  };
  return {
    /** One attempt on lock `text` (the id as text). */
    acquire(id, text, ttl) {
      return call(s.acquire, [prefix + text, counter], [ttl, randomUUID()], ([ok, index, left]) => acquired(id, ok === 1, index, left));
    },
    release(id, text, index) {
      return call(s.release, [prefix + text], [index, channel], ([ok, result, current]) => released(id, ok === 1, result, current));
    },
    /** `shape`: 'renew' (renewLock) or 'extend' (extendLock). */
    renew(id, text, index, ttl, shape) {
      return call(s.renew, [prefix + text], [index, ttl], ([ok, result, current, left]) =>
        renewed(id, shape, ok === 1, result, current, left),
      );
    },
    /** Resolves once this Lock's use ended (and, for the last user, the socket is closed). */
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      if (--entry.users > 0) return Promise.resolve();
      shared.delete(key);
      return calls.close();
    },
  };
}

module.exports = { openPlainCalls };
