'use strict';
// The API fuzzer's worker process (forked by chaos/fuzz.js and __test__/fuzz.test.js). It calls the
// public JavaScript API of redfour-native with random and hostile arguments and reports, as one IPC
// message {type:'report', ...}, everything that breaks the contract:
//   - a call that does not settle (hang): every call must settle, at the latest once its Lock is
//     closed; calls that do not wait must settle within `settleMs` of being made;
//   - an unhandled rejection, or an uncaught exception other than the ones our own throwing
//     callbacks raise (by design: a callback that throws surfaces as 'uncaughtException');
//   - an error (sync throw, rejection or callback error) without a documented `code`, except the
//     fuzzer's own errors (thrown by its getters, Proxies, routines) passed through unchanged;
//   - a callback called twice, or a method that takes a callback and still returns something;
//   - a malformed result (success not a boolean, index not a number, ...).
// A crash (native abort, segfault) shows up in the parent as a non-zero exit or a signal.
//
// argv[2] JSON: {url, deadPort, port, calls, seed, roundSize, settleMs}

const path = require('node:path');
const Lock = require('..');
const { codes } = Lock;
const { connectionUrl } = require('../lib/connection');
const { prng, redisCmd, sleep } = require('./lib');

const args = JSON.parse(process.argv[2]);
const rnd = prng(args.seed >>> 0);
const CODES = new Set(Object.values(codes));
const ROUND = args.roundSize || 400;
const SETTLE_MS = args.settleMs || 10000;

/** Errors the fuzzer itself throws (from getters, Proxy traps, routines, callbacks). */
class Boom extends Error {
  constructor(where) {
    super(`fuzz boom from ${where}`);
    this.name = 'Boom';
  }
}
class CallbackBoom extends Error {}

const stats = {
  calls: 0,
  resolved: 0,
  rejected: {},
  thrown: {},
  userErrorPassedThrough: 0,
  userErrorAsInternal: 0,
  callbacks: 0,
  callbackThrows: 0,
  uncaughtCallbackBooms: 0,
  byMethod: {},
};
const violations = [];
const findings = []; // user errors reported as ERR_INTERNAL, and other doubtful but not contract-breaking behaviour
const violate = (kind, detail) => {
  if (violations.length < 200) violations.push({ kind, ...detail });
};

process.on('unhandledRejection', (reason) => {
  violate('unhandled-rejection', { message: String(reason && reason.stack ? reason.stack : reason).slice(0, 600) });
});
process.on('uncaughtException', (err) => {
  if (err instanceof CallbackBoom) {
    stats.uncaughtCallbackBooms += 1;
    return;
  }
  violate('uncaught-exception', { message: String(err && err.stack ? err.stack : err).slice(0, 600) });
});

// ---------------------------------------------------------------------------------------------
// Values

const UNICODE = ['é', 'ß', '中文', '😀', '👩‍👩‍👧', 'ﷺ', 'עברית', '\u0301', '\u200b', '\ufeff', '\uffff', '𝔘', 'İ'];
const NASTY = [
  '"',
  "'",
  '`',
  ']]',
  '[[',
  ']=]',
  '--',
  '\\',
  '\0',
  '\r\n',
  '\n',
  '%s',
  '${x}',
  'KEYS[1]',
  'ARGV[1]',
  '*',
  '?',
  '{',
  '}',
  ':',
  ' ',
  '__proto__',
  'constructor',
  '\uD800',
  '\uDFFF',
  '\uDC00\uD800',
];

function randomString(maxLen = 24) {
  const n = rnd.int(0, maxLen);
  let s = '';
  for (let i = 0; i < n; i++) {
    const r = rnd();
    if (r < 0.5) s += String.fromCharCode(rnd.int(32, 126));
    else if (r < 0.7) s += rnd.pick(UNICODE);
    else if (r < 0.85) s += rnd.pick(NASTY);
    else s += String.fromCharCode(rnd.int(0, 0xffff));
  }
  return s;
}

const NUMBERS = [
  0,
  -0,
  1,
  -1,
  2,
  0.5,
  -0.5,
  1.5,
  NaN,
  Infinity,
  -Infinity,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  2 ** 53 - 1,
  -(2 ** 53),
  2 ** 64,
  1e21,
  1e-7,
  5e-324,
  Number.MAX_VALUE,
  -Number.MAX_VALUE,
  Number.EPSILON,
];

function randomNumber() {
  const r = rnd();
  if (r < 0.4) return rnd.pick(NUMBERS);
  if (r < 0.7) return rnd.int(-10, 5000);
  if (r < 0.85) return (rnd() - 0.5) * 10 ** rnd.int(0, 20);
  return rnd.int(0, 2 ** 31);
}

function hostileObject() {
  const r = rnd.int(0, 9);
  const where = `hostile#${r}`;
  const boom = () => {
    throw new Boom(where);
  };
  switch (r) {
    case 0: // throwing getters on the names the API reads
      return Object.defineProperties(
        {},
        Object.fromEntries(
          [
            'id',
            'index',
            'redis',
            'namespace',
            'signal',
            'waitMs',
            'renewEveryMs',
            'maxHoldMs',
            'aborted',
            'addEventListener',
            'then',
            'url',
            'host',
            'port',
            'options',
            'address',
            'duplicate',
            'socket',
            'connectTimeout',
            'commandTimeout',
            'ttlMs',
            'every',
          ].map((k) => [k, { get: boom, enumerable: true }]),
        ),
      );
    case 1: // a Proxy that throws on every trap
      return new Proxy(
        {},
        { get: boom, has: boom, ownKeys: boom, getOwnPropertyDescriptor: boom, getPrototypeOf: boom, set: boom, apply: boom },
      );
    case 2: {
      // a revoked Proxy
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      return proxy;
    }
    case 3: // toString/valueOf/toPrimitive that throw
      return { toString: boom, valueOf: boom, [Symbol.toPrimitive]: boom };
    case 4: {
      // a Proxy that answers every property with a random (but stable) value
      const seen = new Map();
      return new Proxy(
        {},
        {
          get: (t, k) => {
            if (k === 'then') return undefined;
            if (!seen.has(k)) seen.set(k, plausibleOrRandom(1));
            return seen.get(k);
          },
        },
      );
    }
    case 5: // a throwing thenable
      return { then: boom };
    case 6: // a fake AbortSignal whose listener registration throws
      return { aborted: false, addEventListener: boom, reason: undefined };
    case 7: {
      // a lock-shaped object whose index getter throws the second time
      let n = 0;
      return {
        id: 'a',
        get index() {
          n += 1;
          if (n > 1) boom();
          return 1;
        },
      };
    }
    case 8: // a huge array
      return new Array(rnd.int(0, 100000));
    default: // prototype games
      return Object.create(new Proxy({}, { get: boom }));
  }
}

function randomValue(depth = 0) {
  const r = rnd.int(0, 19);
  switch (r) {
    case 0:
      return undefined;
    case 1:
      return null;
    case 2:
      return rnd.chance(0.5);
    case 3:
    case 4:
      return randomNumber();
    case 5:
      return rnd.pick([0n, 1n, -1n, 2n ** 64n, 10n ** 30n, BigInt(rnd.int(0, 1000))]);
    case 6:
    case 7:
      return randomString();
    case 8:
      return rnd.chance(0.9) ? 'x'.repeat(rnd.pick([65535, 65536, 65537])) : 'y'.repeat(1 << 20);
    case 9:
      return Symbol(randomString(5));
    case 10:
      return rnd.pick([
        () => {},
        async () => {},
        function named() {
          return this;
        },
        class K {},
      ]);
    case 11:
      return depth > 2
        ? {}
        : Object.fromEntries(
            Array.from({ length: rnd.int(0, 4) }, () => [
              rnd.pick(['id', 'index', 'ttl', 'signal', 'waitMs', 'redis', 'namespace', randomString(6)]),
              randomValue(depth + 1),
            ]),
          );
    case 12:
      return depth > 2 ? [] : Array.from({ length: rnd.int(0, 4) }, () => randomValue(depth + 1));
    case 13:
      return rnd.pick([
        new Date(),
        /re/g,
        new Map(),
        new Set(),
        Buffer.from('ab'),
        new Uint8Array(3),
        new Error('plain'),
        Object.create(null),
        Promise.resolve(1),
      ]);
    case 14:
      return rnd.chance(0.5) ? AbortSignal.abort(new Boom('abort reason')) : new AbortController().signal;
    default:
      return hostileObject();
  }
}

// Plausible values make calls reach Redis; random ones test the argument checks.
const IDS = ['a', 'b', 'c', 1, 2, 0, -1, 1.5, 1e21, 10n, 'ü', '😀', 'a"b', 'x]]y', 'n\nl', 'sp ace', ':', '*'];
function plausibleId() {
  return rnd.chance(0.8) ? rnd.pick(IDS) : randomString(40) || 'z';
}
function plausibleTtl() {
  return rnd.chance(0.85) ? rnd.int(1, 3000) : rnd.pick([1, 2 ** 31 - 1, 60000]);
}
function plausibleWait() {
  return rnd.chance(0.1) ? 0 : rnd.int(1, 300);
}
function plausibleOrRandom(depth = 0, plausible = () => randomValue(depth)) {
  return rnd.chance(0.75) ? plausible() : randomValue(depth);
}

function plausibleLockRef() {
  const r = rnd();
  if (r < 0.5 && lastGrants.length) return rnd.pick(lastGrants);
  if (r < 0.8) return { id: plausibleId(), index: rnd.int(-2, 1000) };
  return randomValue();
}

function plausibleLeaseOptions() {
  if (rnd.chance(0.3)) return randomValue();
  const o = {};
  if (rnd.chance(0.7)) o.waitMs = plausibleOrRandom(0, () => rnd.int(1, 300));
  if (rnd.chance(0.2)) o.renewEveryMs = plausibleOrRandom(0, () => rnd.int(1, 1000));
  if (rnd.chance(0.2)) o.maxHoldMs = plausibleOrRandom(0, () => rnd.int(1, 1000));
  if (rnd.chance(0.3))
    o.signal = plausibleOrRandom(0, () => (rnd.chance(0.5) ? AbortSignal.timeout(rnd.int(1, 200)) : AbortSignal.abort()));
  return o;
}

/** `options.redis` values: mostly the test server, some dead or invalid, some hostile. */
function randomRedisOption() {
  const p = args.port;
  const d = args.deadPort;
  const r = rnd.int(0, 14);
  switch (r) {
    case 0:
    case 1:
    case 2:
      return args.url;
    case 3:
      return { host: '127.0.0.1', port: p };
    case 4:
      return { socket: { host: '127.0.0.1', port: p } };
    case 5:
      return { url: args.url, db: rnd.pick([0, 1, 15, -1, 'x', 1.5]) };
    case 6:
      return `redis://127.0.0.1:${d}`; // nothing listens: ERR_REDIS
    case 7:
      return { address: `127.0.0.1:${p}`, options: {}, selected_db: rnd.pick([undefined, 0, 3]) }; // node-redis 3 lookalike
    case 8:
      return { duplicate() {}, options: { host: '127.0.0.1', port: p, password: rnd.pick([undefined, 'pw', '']) } }; // ioredis lookalike
    case 9:
      return rnd.pick([
        '',
        'redis://',
        'http://127.0.0.1',
        'redis://127.0.0.1:notaport',
        `redis://:secret@127.0.0.1:${p}/x`,
        'redis://[::1',
        'unix:',
        `redis://127.0.0.1:${p}/99999999999999999999`,
        'redis+unix:///nonexistent/redis.sock',
        // TLS to the plain-text server: the handshake gets no answer (like a black-holed server)
        ...(args.tls === false ? [] : [`rediss://127.0.0.1:${p}`]),
      ]);
    case 10:
      return { host: randomValue(), port: randomValue() };
    default:
      return randomValue();
  }
}

/** Keeps every connection on this machine's test ports: never the default 6379, never a name lookup. */
function safeRedisOption(option) {
  let url;
  try {
    url = connectionUrl(option);
  } catch {
    return option; // the constructor will reject it too
  }
  if (url.startsWith('redis+unix:') || url.startsWith('unix:')) return option;
  try {
    const u = new URL(url);
    const local = ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
    if (local && (Number(u.port) === args.port || Number(u.port) === args.deadPort)) return option;
  } catch {
    // fall through
  }
  return args.url;
}

// ---------------------------------------------------------------------------------------------
// Calls

let locks = []; // live Locks of this round
const lockInfo = new WeakMap(); // Lock -> description of its options, for reports
let currentLock = null;

function describeOptions(options) {
  try {
    const url = connectionUrl(options.redis);
    return `${url.replace(/:[^:@/]*@/, ':***@')} connectTimeout=${options.connectTimeout} commandTimeout=${options.commandTimeout}`;
  } catch {
    return 'unprintable options';
  }
}
let lastGrants = []; // recent successful results, for release/renew with a real index
const pending = new Set();

/**
 * True when an error was raised by the caller's own value while the library read an argument: a
 * Boom from our getters/traps, or V8's TypeError for a revoked Proxy.
 */
function userCaused(cause) {
  if (cause instanceof Boom) return true;
  // (A class passed as a routine or job throws when the library calls it: the routine's own error.)
  return cause instanceof TypeError && /proxy that has been revoked|cannot be invoked without 'new'/.test(cause.message);
}

function errorCodeOk(err, method, how) {
  if (err instanceof Boom || err instanceof CallbackBoom || userCaused(err)) {
    stats.userErrorPassedThrough += 1;
    return;
  }
  if (err && err.code === 'ERR_INTERNAL' && userCaused(err.cause)) {
    // The caller's own error (a throwing getter, a revoked Proxy) must come back as
    // ERR_INVALID_ARG (or unchanged), never as "a bug in redfour-native".
    stats.userErrorAsInternal += 1;
    violate('user-error-as-ERR_INTERNAL', {
      method,
      how,
      message: String(err.message).slice(0, 200),
      stack: String(err.cause && err.cause.stack)
        .split('\n')
        .slice(1, 9)
        .join(' / '),
    });
    return;
  }
  if (!(err instanceof Error)) {
    violate('non-error-thrown', { method, how, value: String(err).slice(0, 200) });
    return;
  }
  if (!CODES.has(err.code)) {
    violate('undocumented-code', {
      method,
      how,
      code: err.code,
      name: err.name,
      message: String(err.message).slice(0, 300),
      stack: String(err.stack).split('\n').slice(1, 9).join(' / '),
    });
    return;
  }
  if (err.code === 'ERR_INTERNAL')
    violate('ERR_INTERNAL', {
      method,
      how,
      message: String(err.message).slice(0, 300),
      cause: String(err.cause && err.cause.stack).slice(0, 300),
    });
}

function checkResult(method, value) {
  if (value === undefined || value === null) return;
  if (typeof value !== 'object') return;
  if ('success' in value && typeof value.success !== 'boolean') violate('bad-result', { method, value: safeJson(value) });
  if (value.success === true && typeof value.index === 'number') {
    if (!Number.isSafeInteger(value.index) || value.index < 1) violate('bad-result', { method, value: safeJson(value) });
    if (lastGrants.length > 50) lastGrants.shift();
    lastGrants.push({ id: value.id, index: value.index });
  }
  if (value.success === false && method === 'acquireLock' && value.index !== -1) violate('bad-result', { method, value: safeJson(value) });
}

function safeJson(v) {
  try {
    return JSON.stringify(v, (k, x) => (typeof x === 'bigint' ? `${x}n` : x)).slice(0, 300);
  } catch {
    return '<unserialisable>';
  }
}

function describeArgs(list) {
  return list
    .map((a) => {
      try {
        if (typeof a === 'string') return a.length > 40 ? `string(${a.length})` : JSON.stringify(a);
        if (typeof a === 'bigint') return `${a}n`;
        if (typeof a === 'function') return 'function';
        if (typeof a === 'symbol') return 'symbol';
        if (a === null || typeof a !== 'object') return String(a);
        if (Array.isArray(a)) return `array(${a.length})`;
        return `object(${Object.keys(a).slice(0, 5).join(',')})`;
      } catch {
        return 'hostile object';
      }
    })
    .join(', ');
}

/** Tracks one call's outcome; `waits` calls may legitimately stay pending until their Lock closes. */
function track(method, argList, promise, waits) {
  const started = Date.now();
  const entry = { method, args: describeArgs(argList), started, waits, lock: currentLock ? lockInfo.get(currentLock) : undefined };
  pending.add(entry);
  entry.promise = Promise.resolve(promise)
    .then(
      (value) => {
        stats.resolved += 1;
        checkResult(method, value);
        return value;
      },
      (err) => {
        const code = (err && err.code) || (err instanceof Boom ? 'Boom' : 'none');
        stats.rejected[code] = (stats.rejected[code] || 0) + 1;
        errorCodeOk(err, method, 'rejection');
      },
    )
    .finally(() => {
      entry.settledAfter = Date.now() - started;
      if (!waits && entry.settledAfter > SETTLE_MS) violate('slow', { method, args: entry.args, ms: entry.settledAfter, lock: entry.lock });
      pending.delete(entry);
    });
  return entry.promise;
}

/** Invokes `fn` in callback style with a callback that checks it is called once (and maybe throws). */
function viaCallback(method, argList, invoke, waits) {
  const throwing = rnd.chance(0.3);
  let calls = 0;
  let settle;
  const done = new Promise((resolve, reject) => {
    settle = { resolve, reject };
  });
  const cb = (err, result) => {
    calls += 1;
    stats.callbacks += 1;
    if (calls > 1) {
      violate('callback-called-twice', { method, args: describeArgs(argList) });
      return;
    }
    if (err) settle.reject(err);
    else settle.resolve(result);
    if (throwing) {
      stats.callbackThrows += 1;
      throw new CallbackBoom('callback throws, by design');
    }
  };
  let ret;
  try {
    ret = invoke(cb);
  } catch (err) {
    stats.thrown[(err && err.code) || 'none'] = (stats.thrown[(err && err.code) || 'none'] || 0) + 1;
    errorCodeOk(err, method, 'sync-throw-with-callback');
    return;
  }
  if (ret !== undefined) violate('callback-style-returned-value', { method, type: typeof ret });
  track(method, argList, done, waits);
}

function viaPromise(method, argList, invoke, waits) {
  let ret;
  try {
    ret = invoke();
  } catch (err) {
    // The lock methods never throw synchronously (they reject); elect/schedule construct objects and may.
    stats.thrown[(err && err.code) || 'none'] = (stats.thrown[(err && err.code) || 'none'] || 0) + 1;
    if (!['elect', 'schedule', 'new Lock'].includes(method))
      violate('sync-throw', {
        method,
        args: describeArgs(argList),
        code: err && err.code,
        message: String(err && err.message).slice(0, 200),
      });
    errorCodeOk(err, method, 'sync-throw');
    return undefined;
  }
  if (!ret || typeof ret.then !== 'function') {
    violate('not-a-promise', { method, type: typeof ret });
    return undefined;
  }
  track(method, argList, ret, waits);
  return ret;
}

function randomRoutine() {
  const r = rnd.int(0, 6);
  switch (r) {
    case 0:
      return () => 'sync value';
    case 1:
      return async () => {
        await sleep(rnd.int(0, 5));
        return 42;
      };
    case 2:
      return () => {
        throw new Boom('routine');
      };
    case 3:
      return async () => {
        throw new Boom('async routine');
      };
    case 4:
      return async (signal, held) => {
        void held.remainingMs;
        void held.index;
        return signal.aborted;
      };
    case 5:
      return async (signal, held) => (held && typeof held.release === 'function' ? held.release() : null);
    default:
      return () => ({ then: (ok) => ok('thenable') });
  }
}

const METHODS = {
  acquireLock: 14,
  waitAcquireLock: 14,
  releaseLock: 10,
  renewLock: 6,
  extendLock: 4,
  acquire: 8,
  using: 8,
  close: 1,
  quit: 0.5,
  asyncDispose: 0.5,
  elect: 1,
  runOnce: 1,
  schedule: 1,
  newLock: 5,
  isLockError: 1,
  namespace: 1,
};

const cleanups = [];

function oneCall() {
  const method = rnd.weighted(METHODS);
  stats.calls += 1;
  stats.byMethod[method] = (stats.byMethod[method] || 0) + 1;
  if (method === 'newLock') {
    newLock();
    return;
  }
  if (method === 'isLockError') {
    const v = randomValue();
    try {
      const r = Lock.isLockError(v);
      if (typeof r !== 'boolean') violate('bad-result', { method, value: String(r) });
    } catch (err) {
      // `v instanceof Error` itself throws for a revoked Proxy: that is the caller's value.
      if (!userCaused(err)) violate('sync-throw', { method, message: String(err && err.message) });
      else stats.userErrorPassedThrough += 1;
    }
    return;
  }
  if (locks.length === 0) newLock(true);
  const lock = rnd.pick(locks);
  currentLock = lock;
  const cbStyle = rnd.chance(0.35);
  let list;
  let waits = false;
  let invoke;
  switch (method) {
    case 'namespace':
      try {
        if (typeof lock.namespace !== 'string') violate('bad-result', { method, value: typeof lock.namespace });
      } catch (err) {
        violate('sync-throw', { method, message: String(err && err.message) });
      }
      return;
    case 'acquireLock':
      list = [plausibleOrRandom(0, plausibleId), plausibleOrRandom(0, plausibleTtl)];
      invoke = (cb) => lock.acquireLock(...list, ...(cb ? [cb] : []));
      break;
    case 'waitAcquireLock': {
      list = [plausibleOrRandom(0, plausibleId), plausibleOrRandom(0, plausibleTtl), plausibleOrRandom(0, plausibleWait)];
      if (rnd.chance(0.3)) {
        const options = plausibleOrRandom(0, () => ({
          signal: rnd.chance(0.5) ? AbortSignal.timeout(rnd.int(1, 100)) : AbortSignal.abort(),
        }));
        // A function in the options position is the callback (waitAcquireLock(id, ttl, wait, cb)).
        list.push(typeof options === 'function' ? undefined : options);
      }
      waits = true;
      invoke = (cb) => lock.waitAcquireLock(...list, ...(cb ? [cb] : []));
      break;
    }
    case 'releaseLock':
      list = [plausibleLockRef()];
      invoke = (cb) => lock.releaseLock(...list, ...(cb ? [cb] : []));
      break;
    case 'renewLock':
    case 'extendLock':
      list = [plausibleLockRef(), plausibleOrRandom(0, plausibleTtl)];
      invoke = (cb) => lock[method](...list, ...(cb ? [cb] : []));
      break;
    case 'close':
    case 'quit':
      list = [];
      invoke = (cb) => lock[method](...(cb ? [cb] : []));
      if (rnd.chance(0.7)) locks = locks.filter((l) => l !== lock); // else: keep calling it after close
      break;
    case 'asyncDispose':
      list = [];
      invoke = () => lock[Symbol.asyncDispose]();
      if (rnd.chance(0.7)) locks = locks.filter((l) => l !== lock);
      break;
    case 'acquire':
      list = [plausibleOrRandom(0, plausibleId), plausibleOrRandom(0, plausibleTtl), plausibleLeaseOptions()];
      waits = true;
      invoke = () => {
        const p = lock.acquire(...list);
        // Held locks are released now, later, or never (the renewal then runs until close()).
        p.then(
          (held) => {
            const r = rnd();
            if (r < 0.5) track('HeldLock.release', [], held.release(), false);
            else if (r < 0.7) setTimeout(() => track('HeldLock.release', [], held.release(), false), rnd.int(0, 200));
            else if (r < 0.8) track('HeldLock.asyncDispose', [], held[Symbol.asyncDispose](), false);
            void held.remainingMs;
            void held.signal.aborted;
          },
          () => {},
        );
        return p;
      };
      break;
    case 'using':
      list = [
        plausibleOrRandom(0, plausibleId),
        plausibleOrRandom(0, plausibleTtl),
        rnd.chance(0.9) ? randomRoutine() : randomValue(),
        plausibleLeaseOptions(),
      ];
      waits = true;
      invoke = () => lock.using(...list);
      break;
    case 'elect': {
      list = [plausibleOrRandom(0, plausibleId), plausibleOrRandom(0, () => ({ ttlMs: rnd.int(50, 2000) }))];
      try {
        const elector = lock.elect(...list);
        if (elector && elector.on) elector.on('error', () => {});
        cleanups.push(() => elector.stop());
      } catch (err) {
        stats.thrown[(err && err.code) || 'none'] = (stats.thrown[(err && err.code) || 'none'] || 0) + 1;
        errorCodeOk(err, method, 'sync-throw');
      }
      return;
    }
    case 'runOnce':
      list = [
        plausibleOrRandom(0, () => randomString(8) || 'job'),
        plausibleOrRandom(0, () => rnd.pick([1000, 60000, '* * * * *', { every: 5000 }])),
        rnd.chance(0.9) ? randomRoutine() : randomValue(),
        plausibleOrRandom(0, () => ({})),
      ];
      waits = true;
      invoke = () => lock.runOnce(...list);
      break;
    case 'schedule': {
      list = [
        plausibleOrRandom(0, () => randomString(8) || 'job'),
        plausibleOrRandom(0, () => rnd.pick([1000, 60000, '* * * * *'])),
        rnd.chance(0.9) ? randomRoutine() : randomValue(),
      ];
      try {
        const s = lock.schedule(...list);
        if (s && s.on) s.on('error', () => {});
        cleanups.push(() => s.stop());
      } catch (err) {
        stats.thrown[(err && err.code) || 'none'] = (stats.thrown[(err && err.code) || 'none'] || 0) + 1;
        errorCodeOk(err, method, 'sync-throw');
      }
      return;
    }
    default:
      throw new Error(`fuzzer bug: ${method}`);
  }
  const callbackCapable = !['asyncDispose', 'acquire', 'using', 'runOnce'].includes(method);
  if (cbStyle && callbackCapable) viaCallback(method, list, invoke, waits);
  else viaPromise(method, list, () => invoke(), waits);
}

function newLock(mustSucceed = false) {
  let options;
  if (mustSucceed) {
    options = { redis: args.url, namespace: rnd.chance(0.5) ? randomString(30) : undefined };
  } else {
    const r = rnd();
    if (r < 0.15) options = randomValue();
    else {
      options = {};
      if (rnd.chance(0.95)) options.redis = safeRedisOption(randomRedisOption());
      if (rnd.chance(0.7)) options.namespace = plausibleOrRandom(0, () => randomString(30));
      if (rnd.chance(0.3)) options.connectTimeout = plausibleOrRandom(0, () => rnd.int(1, 2000));
      if (rnd.chance(0.3)) options.commandTimeout = plausibleOrRandom(0, () => rnd.int(1, 2000));
      // TLS to the plain-text port never completes a handshake: every call then takes the whole
      // connect limit (2 x connectTimeout). Keep that short, so that rounds stay short.
      if (typeof options.redis === 'string' && options.redis.startsWith('rediss://')) options.connectTimeout = rnd.int(50, 500);
      if (rnd.chance(0.05)) {
        const throwOn = rnd.pick(['redis', 'namespace', 'connectTimeout', 'commandTimeout', 'none']);
        options = new Proxy(options, {
          get: (t, k) => {
            if (k === throwOn) throw new Boom('options proxy');
            return t[k];
          },
        });
      }
    }
  }
  try {
    const lock = new Lock(options);
    lockInfo.set(lock, describeOptions(options));
    locks.push(lock);
    if (locks.length > 6) {
      const old = locks.shift();
      track('close', [], old.close(), false);
    }
  } catch (err) {
    stats.thrown[(err && err.code) || (err instanceof Boom ? 'Boom' : 'none')] =
      (stats.thrown[(err && err.code) || (err instanceof Boom ? 'Boom' : 'none')] || 0) + 1;
    if (mustSucceed) violate('constructor-failed', { message: String(err && err.message).slice(0, 200) });
    errorCodeOk(err, 'new Lock', 'sync-throw');
  }
}

async function round(n) {
  for (let i = 0; i < n; i++) {
    oneCall();
    if (i % 50 === 49) await sleep(rnd.int(0, 3)); // let completions in
  }
  // Calls after close: close a random subset first, then keep calling on them.
  const closing = locks.filter(() => rnd.chance(0.3));
  for (const l of closing) track('close', [], l.close(), false);
  for (let i = 0; i < Math.min(20, n / 10); i++) oneCall();
  // End of round: stop electors and schedules, close every Lock; everything must settle.
  for (const c of cleanups.splice(0)) {
    try {
      await Promise.race([Promise.resolve(c()).catch(() => {}), sleep(SETTLE_MS)]);
    } catch {
      // stop() of a failed elector
    }
  }
  for (const l of locks) track('close', [], l.close(), false);
  locks = [];
  const all = Promise.allSettled([...pending].map((e) => e.promise));
  let timer;
  const timedOut = await Promise.race([
    all.then(() => false),
    new Promise((r) => {
      timer = setTimeout(r, SETTLE_MS, true);
    }),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    for (const e of pending) violate('hang', { method: e.method, args: e.args, pendingMs: Date.now() - e.started, lock: e.lock });
    pending.clear();
  }
}

async function main() {
  const startedAt = Date.now();
  while (stats.calls < args.calls) {
    await round(Math.min(ROUND, args.calls - stats.calls));
    // Keys with huge TTLs pile up otherwise.
    await redisCmd(args.port, ['FLUSHALL'], { timeoutMs: 5000 }).catch(() => {});
  }
  await sleep(200); // let late unhandled rejections / uncaught exceptions surface
  const report = {
    type: 'report',
    seconds: Math.round((Date.now() - startedAt) / 100) / 10,
    stats,
    violations,
    findings,
    rssMb: Math.round(process.memoryUsage().rss / 1048576),
  };
  if (stats.uncaughtCallbackBooms !== stats.callbackThrows) {
    violate('callback-throw-count', { thrown: stats.callbackThrows, surfaced: stats.uncaughtCallbackBooms });
  }
  process.send(report, () => process.exit(0));
}

main().catch((err) => {
  process.send({ type: 'fatal', message: String(err && err.stack) }, () => process.exit(3));
});

void path;
