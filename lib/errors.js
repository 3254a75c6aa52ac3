'use strict';
// Every error redfour-native produces carries a stable string `code`. "Somebody else holds the
// lock" is never an error: it is a result with success:false.

const codes = Object.freeze({
  /** A bad argument: wrong type, out of range, unparsable URL. Thrown as a TypeError before Redis is touched. */
  ERR_INVALID_ARG: 'ERR_INVALID_ARG',
  /** Redis could not be reached, timed out, or answered with an error. */
  ERR_REDIS: 'ERR_REDIS',
  /** Quorum mode: fewer than a majority of the Redis nodes answered. */
  ERR_NO_QUORUM: 'ERR_NO_QUORUM',
  /** The Lock was closed; pending waits and later calls fail with this code. */
  ERR_CLOSED: 'ERR_CLOSED',
  /** The caller's AbortSignal fired before the lock was granted. */
  ERR_ABORTED: 'ERR_ABORTED',
  /** `using`/`acquire` could not get the lock within its wait. */
  ERR_NOT_ACQUIRED: 'ERR_NOT_ACQUIRED',
  /** A held lease was lost (stolen, expired, unrenewable, or past maxHoldMs); see `reason`. */
  ERR_LOCK_LOST: 'ERR_LOCK_LOST',
  /** A fault inside redfour-native itself (a bug): please report it. */
  ERR_INTERNAL: 'ERR_INTERNAL',
});

class LockError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'LockError';
    this.code = code;
  }
}

function invalidArg(message) {
  const err = new TypeError(message);
  err.code = codes.ERR_INVALID_ARG;
  return err;
}

function isLockError(err) {
  return err instanceof Error && typeof err.code === 'string' && Object.prototype.hasOwnProperty.call(codes, err.code);
}

// Errors from the native side arrive with their code as data: a thrown Error whose `code` is one
// of ours, a `{ code, message }` failure a Promise resolved with, or a code and a message in a
// batch of results. Give them our class, and make sure nothing leaves this library without a
// documented code.

// Codes whose messages name the Lock's endpoint(s), so that "Redis is down" says which Redis.
const ABOUT_REDIS = new Set([codes.ERR_REDIS, codes.ERR_NO_QUORUM]);

/**
 * `endpoint` (optional) describes where the Lock connects ("Redis at 127.0.0.1:6379", from
 * lib/connection.js's describeEndpoints: never credentials); ERR_REDIS and ERR_NO_QUORUM
 * messages end with it.
 */
function fromNative(err, endpoint) {
  if (err instanceof LockError || (err instanceof TypeError && err.code === codes.ERR_INVALID_ARG)) return err;
  const message = err && err.message ? err.message : String(err);
  if (isLockError(err)) return coded(err.code, message, endpoint);
  const wrapped = new LockError(codes.ERR_INTERNAL, message);
  wrapped.cause = err;
  return wrapped;
}

/** The error for a native failure given as its `code` and `message` (see fromNative). */
function coded(code, message, endpoint) {
  if (!Object.prototype.hasOwnProperty.call(codes, code)) return new LockError(codes.ERR_INTERNAL, `${code}: ${message}`);
  if (code === codes.ERR_INVALID_ARG) return invalidArg(message);
  if (endpoint && ABOUT_REDIS.has(code) && !message.includes(endpoint)) message = `${message} (${endpoint})`;
  return new LockError(code, message);
}

/** ERR_REDIS for a failure `message` of Redis or of the connection to it (the core's wording). */
function redisError(message, endpoint) {
  return coded(codes.ERR_REDIS, `Redis: ${message}`, endpoint);
}

/** ERR_CLOSED: the Lock was closed (the core's wording). */
function closedError() {
  return new LockError(codes.ERR_CLOSED, 'the lock was closed');
}

/**
 * A throw while a call is being set up comes from reading the caller's arguments (a throwing
 * getter, a revoked Proxy) or from our own checks: never a bug of ours, so never ERR_INTERNAL.
 * Foreign errors become ERR_INVALID_ARG with the original as `cause`.
 */
function fromArguments(err) {
  if (isLockError(err)) return fromNative(err);
  const wrapped = invalidArg(`could not read the arguments: ${err instanceof Error ? err.message : String(err)}`);
  wrapped.cause = err;
  return wrapped;
}

module.exports = { codes, LockError, invalidArg, isLockError, fromNative, coded, redisError, closedError, fromArguments };
