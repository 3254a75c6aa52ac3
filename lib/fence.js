'use strict';
// Fenced writes for resources that live in Redis: a value is written only if the writer's fencing
// token (a lock `index`, a leader `epoch`) is not lower than the highest token already seen for
// that resource. The check and the write are one Lua script, so a paused ex-holder that wakes up
// with an old token cannot overwrite what the new holder wrote.
//
// redfour-native's own connections are private to the Rust core, so these writes go through a
// Redis client the caller already has: ioredis (`client.call`), node-redis 4/5
// (`client.sendCommand`), node-redis 2/3 (`client.send_command`), or any function taking a command
// as an array of strings and returning a Promise of the reply.

const crypto = require('node:crypto');
const { LockError, codes, invalidArg } = require('./errors');

/**
 * KEYS[1] the value key, KEYS[2] the fence key (highest token seen, as a decimal string).
 * ARGV[1] token (decimal integer), ARGV[2] value, ARGV[3] TTL of the value in ms ('0': none).
 * Returns {1, token} when written, {0, highest} when refused. Static text: keys and values only
 * ever arrive in KEYS and ARGV.
 */
const FENCED_SET = `
local token = tonumber(ARGV[1])
if not token or token < 0 or token ~= math.floor(token) then
  return redis.error_reply("ERR redfour-native: fencing token must be a non-negative integer")
end
local ttl = tonumber(ARGV[3])
if not ttl or ttl < 0 or ttl ~= math.floor(ttl) then
  return redis.error_reply("ERR redfour-native: invalid ttl")
end
local seen = redis.call("GET", KEYS[2])
if seen then
  local highest = tonumber(seen)
  if not highest then
    return redis.error_reply("ERR redfour-native: fence key does not hold a number")
  end
  if token < highest then
    return {0, seen}
  end
end
redis.call("SET", KEYS[2], ARGV[1])
if ttl > 0 then
  redis.call("SET", KEYS[1], ARGV[2], "PX", ttl)
else
  redis.call("SET", KEYS[1], ARGV[2])
end
return {1, ARGV[1]}
`;

const FENCED_SET_SHA = crypto.createHash('sha1').update(FENCED_SET).digest('hex');
const DEFAULT_SUFFIX = ':fence';

/** Turns a user's Redis client into `run(args: string[]) => Promise<reply>`. */
function commandRunner(client) {
  if (typeof client === 'function') return (args) => Promise.resolve().then(() => client(args));
  if (client && typeof client === 'object') {
    // ioredis (and ioredis Cluster): call(name, ...args).
    if (typeof client.call === 'function') return (args) => client.call(...args);
    // node-redis 4/5: sendCommand(['NAME', ...args]).
    if (typeof client.sendCommand === 'function') return (args) => client.sendCommand(args);
    // node-redis 2/3: send_command(name, args, callback).
    if (typeof client.send_command === 'function') {
      return (args) =>
        new Promise((resolve, reject) => {
          client.send_command(args[0], args.slice(1), (err, reply) => (err ? reject(err) : resolve(reply)));
        });
    }
  }
  throw invalidArg('client must be an ioredis or node-redis client, or a function running a command given as an array of strings');
}

function redisError(err) {
  const wrapped = new LockError(codes.ERR_REDIS, `fenced write failed: ${err && err.message ? err.message : String(err)}`);
  wrapped.cause = err;
  return wrapped;
}

function checkKey(key, name) {
  if (typeof key !== 'string' || key.length === 0) throw invalidArg(`${name} must be a non-empty string`);
  return key;
}

/** A fencing token: a non-negative safe integer, or a held lock / lock result (its `index`). */
function checkToken(token) {
  if (token !== null && typeof token === 'object' && 'index' in token) token = token.index;
  if (typeof token === 'bigint' && token >= 0n && token <= BigInt(Number.MAX_SAFE_INTEGER)) token = Number(token);
  if (typeof token !== 'number' || !Number.isSafeInteger(token) || token < 0) {
    throw invalidArg('token must be a non-negative safe integer (a lock index or leader epoch)');
  }
  return token;
}

function checkValue(value) {
  if (typeof value === 'string' || Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  throw invalidArg('value must be a string, a Buffer/Uint8Array or a number');
}

function isNoScript(err) {
  return Boolean(err && /NOSCRIPT/i.test(String(err.message || err)));
}

/**
 * Fenced writes through a Redis client you already have. The highest token seen for a resource
 * is kept in a second key, `${key}:fence` by default (no expiry). For Redis Cluster give the
 * resource a hash tag (`{report}:latest`) so both keys share a slot, or pass `fenceKey`.
 */
class Fence {
  /**
   * @param {object|Function} client an ioredis or node-redis client, or `(args: string[]) => Promise<reply>`
   * @param {object} [options]
   * @param {string} [options.suffix=':fence'] appended to a resource key to name its fence key
   */
  constructor(client, options = {}) {
    if (options === null || typeof options !== 'object') throw invalidArg('options must be an object');
    this._run = commandRunner(client);
    const suffix = options.suffix === undefined ? DEFAULT_SUFFIX : options.suffix;
    if (typeof suffix !== 'string' || suffix.length === 0) throw invalidArg('options.suffix must be a non-empty string');
    this._suffix = suffix;
  }

  /** The key holding the highest token seen for `key`. */
  fenceKey(key) {
    return `${checkKey(key, 'key')}${this._suffix}`;
  }

  _fenceKeyFor(key, options) {
    return options.fenceKey === undefined ? this.fenceKey(key) : checkKey(options.fenceKey, 'options.fenceKey');
  }

  /**
   * Writes `value` to `key` (a plain Redis string) if `token` is not lower than the highest token
   * seen for it, and records `token` as the highest. Atomic.
   *
   * @returns {Promise<{accepted: boolean, token: number}>} `token` is the highest token now stored
   *   (yours when accepted, the newer writer's when refused).
   */
  async set(key, token, value, options = {}) {
    if (options === null || typeof options !== 'object') throw invalidArg('options must be an object');
    checkKey(key, 'key');
    const fenceKey = this._fenceKeyFor(key, options);
    const tok = checkToken(token);
    const val = checkValue(value);
    let ttl = 0;
    if (options.ttlMs !== undefined) {
      if (!Number.isSafeInteger(options.ttlMs) || options.ttlMs < 1) throw invalidArg('options.ttlMs must be a positive integer');
      ttl = options.ttlMs;
    }
    const tail = ['2', key, fenceKey, String(tok), val, String(ttl)];
    let reply;
    try {
      try {
        reply = await this._run(['EVALSHA', FENCED_SET_SHA, ...tail]);
      } catch (err) {
        if (!isNoScript(err)) throw err;
        reply = await this._run(['EVAL', FENCED_SET, ...tail]);
      }
    } catch (err) {
      throw redisError(err);
    }
    if (!Array.isArray(reply) || reply.length !== 2) {
      throw new LockError(codes.ERR_INTERNAL, `unexpected reply from the fenced write script: ${JSON.stringify(reply)}`);
    }
    return { accepted: Number(reply[0]) === 1, token: Number(String(reply[1])) };
  }

  /**
   * Reads `key` and the highest token seen for it (one MGET).
   *
   * @returns {Promise<{value: string|null, token: number|null}>}
   */
  async get(key, options = {}) {
    if (options === null || typeof options !== 'object') throw invalidArg('options must be an object');
    checkKey(key, 'key');
    const fenceKey = this._fenceKeyFor(key, options);
    let reply;
    try {
      reply = await this._run(['MGET', key, fenceKey]);
    } catch (err) {
      throw redisError(err);
    }
    const [value, token] = Array.isArray(reply) ? reply : [null, null];
    return {
      value: value === null || value === undefined ? null : value,
      token: token === null || token === undefined ? null : Number(String(token)),
    };
  }
}

/** One-off form of `new Fence(client).set(key, token, value, options)`. */
function fencedSet(client, key, token, value, options) {
  return Promise.resolve().then(() => new Fence(client).set(key, token, value, options));
}

module.exports = { Fence, fencedSet, FENCED_SET, FENCED_SET_SHA };
