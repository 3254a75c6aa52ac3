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
const { codes, coded } = require('./errors');
const { RedisConnection } = require('./redis-connection');

const MAX_BATCH = 32;
const RELEASE_INDEX_EXPIRED = 'expired'; // redfour (1.x and 2.x) reports an expired lock's index so

let scripts = null;
/** The core's scripts with their SHA1s, read from the native module once. */
function loadScripts() {
  if (scripts === null) {
    const sources = native.scriptSources();
    const script = (source, tag, bit) => ({ source, sha: createHash('sha1').update(source).digest('hex'), tag, bit });
    scripts = {
      acquire: script(sources.acquire, 'a', 1),
      release: script(sources.release, 'r', 2),
      renew: script(sources.renew, 'n', 4),
      batch: script(sources.batch, '', 8),
    };
  }
  return scripts;
}

/** Script calls on one server's connection, batched per event-loop turn. */
class ScriptCalls {
  constructor(url, options) {
    this._scripts = loadScripts();
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
    for (let i = 0; i < queue.length; i += MAX_BATCH) {
      const calls = queue.length <= MAX_BATCH ? queue : queue.slice(i, i + MAX_BATCH);
      if (calls.length === 1) this._send(calls[0].script, calls[0].keys, calls[0].args, calls);
      else this._sendBatch(calls);
    }
  }

  _sendBatch(calls) {
    const keys = [];
    const args = [];
    for (const call of calls) {
      keys.push(call.keys[0], call.keys.length > 1 ? call.keys[1] : call.keys[0]);
      args.push(call.script.tag, call.args[0], call.args.length > 1 ? call.args[1] : '', call.args.length > 2 ? call.args[2] : '');
    }
    this._send(this._scripts.batch, keys, args, calls);
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
    if (reply instanceof Error) call.done(coded(codes.ERR_REDIS, `Redis: ${reply.message}`, this._endpoint));
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
    if (closed) return Promise.reject(coded(codes.ERR_CLOSED, 'the lock was closed'));
    return new Promise((resolve, reject) => {
      calls.run(script, keys, args, (err, reply) => (err ? reject(err) : resolve(shape(reply))));
    });
  };
  return {
    /** One attempt on lock `text` (the id as text): redfour's result `{ id, success, index, ttl }`. */
    acquire(id, text, ttl) {
      return call(s.acquire, [prefix + text, counter], [ttl, randomUUID()], ([ok, index, left]) => ({
        id,
        success: ok === 1,
        index,
        ttl: left,
      }));
    },
    release(id, text, index) {
      return call(s.release, [prefix + text], [index, channel], ([ok, result, current]) => ({
        id,
        success: ok === 1,
        result,
        index: result === 'expired' ? RELEASE_INDEX_EXPIRED : current,
      }));
    },
    /** `shape` 'renew': `{ id, success, result, index }`; 'extend': `{ id, success, index, ttl }`. */
    renew(id, text, index, ttl, shape) {
      return call(s.renew, [prefix + text], [index, ttl], ([ok, result, current, left]) =>
        shape === 'extend' ? { id, success: ok === 1, index: current, ttl: left } : { id, success: ok === 1, result, index: current },
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
