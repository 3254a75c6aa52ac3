// Public types of redfour-native: a distributed lock (binary semaphore) on Redis whose waiters
// are woken by pub/sub. A drop-in replacement for `redfour`, wire-compatible with it.
//
//   const Lock = require('redfour-native');          // CommonJS
//   import Lock from 'redfour-native';                // ES modules / TypeScript (esModuleInterop)
//   import { Lock } from 'redfour-native';            // named import
//   import Lock = require('redfour-native');          // TypeScript CommonJS import

/**
 * A distributed lock on Redis: one server (optionally with `minReplications`), a master found
 * through Sentinel, a Redis Cluster, or a quorum of independent masters, as
 * {@link Lock.LockOptions} choose. One `Lock` instance handles any number of lock ids inside its
 * namespace.
 *
 * redfour's methods (`acquireLock`, `waitAcquireLock`, `releaseLock`, `renewLock`, `extendLock`)
 * and `close`/`quit` take an optional trailing Node-style callback `(err, result)`: with it the
 * method returns `undefined` and calls back on a later tick; without it the method returns a
 * Promise (`acquire`, `using` and `runOnce` return Promises only). "Somebody else holds the lock"
 * is never an error, it is a result with `success: false`. Errors carry a stable `code` (all of
 * them in {@link Lock.codes}): a `TypeError` with `ERR_INVALID_ARG` for bad arguments (raised
 * before Redis is touched), otherwise a {@link Lock.LockError} with `ERR_REDIS` (unreachable,
 * timed out, or an error reply), `ERR_NO_QUORUM` (quorum mode: no majority answered),
 * `ERR_CLOSED`, `ERR_ABORTED` (the caller's AbortSignal fired), `ERR_NOT_ACQUIRED`
 * (`acquire`/`using` waited `waitMs` in vain), `ERR_LOCK_LOST` (a held lease was lost) or
 * `ERR_INTERNAL` (a bug: report it).
 *
 * @example
 * const lock = new Lock({ redis: 'redis://127.0.0.1:6379', namespace: 'getAccessToken' });
 * const held = await lock.waitAcquireLock(userId, 60_000, 30_000);
 * if (held.success) {
 *   try { await refresh(userId, held.index); } finally { await lock.releaseLock(held); }
 * }
 */
declare class Lock {
  /**
   * Creates a Lock. Connections are opened on first use and shared: one command connection and
   * one subscriber per Redis URL (and timeout settings) per process, reference-counted across
   * Lock instances.
   *
   * @throws {TypeError} code `ERR_INVALID_ARG` when `options.redis` is missing or invalid, or
   *   another option has the wrong type or range.
   */
  constructor(options: Lock.LockOptions);

  /** The namespace this lock's keys and release channel live under (default `'lock'`). */
  readonly namespace: string;

  /**
   * Tries once to take the lock `id`, without waiting.
   *
   * @param id Lock id; the Redis key is `${namespace}:${String(id)}`, exactly as redfour builds it.
   * @param ttl Lease in milliseconds, an integer from 1 to {@link Lock.MAX_TTL_MS}. The lock
   *   expires by itself after this long unless released or renewed.
   * @returns `success: true` with a fresh fencing `index`, or `success: false, index: -1` and the
   *   holder's remaining TTL when somebody else holds it.
   */
  acquireLock<Id extends Lock.LockId>(id: Id, ttl: number): Promise<Lock.AcquireResult<Id>>;
  acquireLock<Id extends Lock.LockId>(id: Id, ttl: number, callback: Lock.Callback<Lock.AcquireResult<Id>>): void;

  /**
   * Takes the lock `id`, waiting up to `waitTtl` ms for the current holder to release it or for
   * its lease to expire. Waiters are woken by the holder's release message (pub/sub), not by
   * polling: a release wakes the first waiter of each process, which then sends its own acquire.
   * Timing out is not an error: the result then has `success: false` (after one last try).
   *
   * @param lockTtl Lease in milliseconds once acquired, an integer from 1 to {@link Lock.MAX_TTL_MS}.
   * @param waitTtl How long to wait in milliseconds, an integer from 0 to {@link Lock.MAX_TTL_MS};
   *   `0` waits forever (until acquired, aborted or the Lock is closed).
   * @param options `signal`: an AbortSignal that cancels the wait (the call then fails with
   *   `ERR_ABORTED`; a grant that races the abort is released, not leaked).
   */
  waitAcquireLock<Id extends Lock.LockId>(
    id: Id,
    lockTtl: number,
    waitTtl: number,
    options?: Lock.WaitOptions,
  ): Promise<Lock.WaitAcquireResult<Id>>;
  waitAcquireLock<Id extends Lock.LockId>(
    id: Id,
    lockTtl: number,
    waitTtl: number,
    callback: Lock.Callback<Lock.WaitAcquireResult<Id>>,
  ): void;
  waitAcquireLock<Id extends Lock.LockId>(
    id: Id,
    lockTtl: number,
    waitTtl: number,
    options: Lock.WaitOptions | undefined,
    callback: Lock.Callback<Lock.WaitAcquireResult<Id>>,
  ): void;

  /**
   * Releases a lock taken by {@link acquireLock} or {@link waitAcquireLock}. Acts only if the key
   * still carries this lock's `index` (so a holder whose lease expired cannot release somebody
   * else's lock): then it deletes the key and publishes the key on `${namespace}-release`, as
   * redfour does, so that a waiter (of this library or of redfour) takes over.
   *
   * @param lock The successful result of an acquire (only `id` and `index` are read).
   */
  releaseLock<Id extends Lock.LockId>(lock: Lock.LockRef<Id>): Promise<Lock.ReleaseResult<Id>>;
  releaseLock<Id extends Lock.LockId>(lock: Lock.LockRef<Id>, callback: Lock.Callback<Lock.ReleaseResult<Id>>): void;

  /**
   * Sets the remaining lease of a lock that is still held by `lock` to `ttl` ms (redfour 2.2's
   * `renewLock`). Fails with `result: 'missing'` if the lock expired, `'conflict'` if somebody
   * else holds it now.
   *
   * @param ttl New lease in milliseconds from now, an integer from 1 to {@link Lock.MAX_TTL_MS}.
   */
  renewLock<Id extends Lock.LockId>(lock: Lock.LockRef<Id>, ttl: number): Promise<Lock.RenewResult<Id>>;
  renewLock<Id extends Lock.LockId>(lock: Lock.LockRef<Id>, ttl: number, callback: Lock.Callback<Lock.RenewResult<Id>>): void;

  /**
   * Same operation as {@link renewLock}, with ioredfour's `extendLock` result shape.
   *
   * @param ttl New lease in milliseconds from now, an integer from 1 to {@link Lock.MAX_TTL_MS}.
   */
  extendLock<Id extends Lock.LockId>(lock: Lock.LockRef<Id>, ttl: number): Promise<Lock.ExtendResult<Id>>;
  extendLock<Id extends Lock.LockId>(lock: Lock.LockRef<Id>, ttl: number, callback: Lock.Callback<Lock.ExtendResult<Id>>): void;

  /**
   * Waits for lock `id` and keeps it alive until released: the lease is renewed from Rust timers
   * (every `ttl / 3` by default), so a busy event loop does not lose it, and the returned handle's
   * `signal` aborts as soon as the lease can no longer be trusted. Promise only.
   *
   * @param ttl The TTL each renewal sets, in milliseconds (1 to {@link Lock.MAX_TTL_MS}).
   * @returns A {@link Lock.HeldLock}; `await using held = await lock.acquire(...)` releases it at
   *   scope end.
   * @throws {Lock.LockError} `ERR_NOT_ACQUIRED` (with `ttl`, the holder's remaining TTL) when
   *   `options.waitMs` passed without the lock, `ERR_ABORTED` when `options.signal` fired first.
   */
  acquire<Id extends Lock.LockId>(id: Id, ttl: number, options?: Lock.LeaseOptions): Promise<Lock.HeldLock<Id>>;

  /**
   * Acquires lock `id` as {@link acquire} does, runs `routine(signal, held)` while the lease is
   * renewed, releases the lock (also when the routine throws) and resolves with the routine's
   * result. `signal` aborts when the lease is lost (reason: a `LockError` with code `ERR_LOCK_LOST`)
   * or when `options.signal` fires (its own reason): stop writing to the protected resource then.
   * Promise only.
   */
  using<T, Id extends Lock.LockId = Lock.LockId>(
    id: Id,
    ttl: number,
    routine: (signal: AbortSignal, held: Lock.HeldLock<Id>) => T | PromiseLike<T>,
    options?: Lock.LeaseOptions,
  ): Promise<Awaited<T>>;

  /**
   * Joins the leader election `name` (a lock id in this namespace) and starts campaigning at once.
   * One process among all candidates is leader at a time; a leader that releases (`resign`,
   * `stop`) is replaced about one round trip later (the waiters are woken by pub/sub), one that
   * dies is replaced within its `ttl`. Each term's `epoch` is its lock index: a fencing token.
   *
   * @example
   * const elector = lock.elect('scheduler', { ttl: 10_000 });
   * elector.on('elected', ({ epoch, signal }) => startLeading(epoch, signal));
   * elector.on('revoked', ({ reason }) => stopLeading(reason));
   */
  elect<Id extends Lock.LockId>(name: Id, options?: Lock.ElectOptions): Lock.LeaderElector<Id>;

  /**
   * Runs `job(signal, info)` unless it already ran in the current period of `schedule` in any
   * process sharing this Redis and namespace. While another process runs it, this call waits (by
   * default until the period ends): when that run finishes it resolves with `skipped: 'done'`;
   * if that runner dies, its lease ends after `ttl` and this process runs the job instead. A job
   * that throws is not marked done (its error is passed through unchanged), so a later call in
   * the same period runs it again. Promise only.
   *
   * @param name Job name; lock ids `${name}:${periodStart}` (run lock) and `…:done` (marker) are used.
   * @param schedule A fixed interval in ms (periods aligned to the Unix epoch), a cron expression
   *   (5 or 6 fields, parsed by `croner`), `{ every, offset }` or `{ cron, tz }`.
   */
  runOnce<T>(
    name: string | number,
    schedule: Lock.RunSchedule,
    job: (signal: AbortSignal, info: Lock.RunInfo) => T | PromiseLike<T>,
    options?: Lock.RunOnceOptions,
  ): Promise<Lock.RunOnceResult<Awaited<T>>>;

  /**
   * Calls {@link runOnce} for the current period and then at the start of every period, in this
   * process, until `stop()`. Run the same schedule in every process of a fleet: each period's job
   * runs in one of them.
   */
  schedule<T>(
    name: string | number,
    schedule: Lock.RunSchedule,
    job: (signal: AbortSignal, info: Lock.RunInfo) => T | PromiseLike<T>,
    options?: Lock.ScheduleOptions,
  ): Lock.Schedule<Awaited<T>>;

  /**
   * Stops this Lock. Pending waits reject with code `ERR_CLOSED`, later calls reject the same way,
   * and the shared connections close once no other Lock in the process uses them. Locks held in
   * Redis are not released (they expire by their TTL). Idempotent.
   */
  close(): Promise<void>;
  close(callback: Lock.Callback<void>): void;

  /** Alias of {@link close}. */
  quit(): Promise<void>;
  quit(callback: Lock.Callback<void>): void;

  /**
   * Alias of {@link close}, for `await using lock = new Lock(...)`. Defined on Node versions that
   * have `Symbol.asyncDispose` (18.18+, 20.4+).
   */
  [Symbol.asyncDispose](): Promise<void>;
}

declare namespace Lock {
  export { Lock, Lock as default };

  /**
   * A lock id: a string, or a number/bigint that is turned into a string with JavaScript's own
   * `String(id)` (so keys match redfour's byte for byte). Must not be empty; numbers must be finite.
   */
  export type LockId = string | number | bigint;

  /** Where Redis is: what `redis` (or ioredfour's alias `redisConnection`) may be. */
  export type RedisTarget = string | RedisConnectionOptions | RedisClientLike | SentinelOptions | Array<string | RedisConnectionOptions>;

  /**
   * Options for `new Lock(options)`: the {@link CommonLockOptions} plus where Redis is, in one of
   * three ways: `redis`, ioredfour's alias `redisConnection` (which wins when both are given), or
   * ioredfour's cluster seeds in `cluster`.
   */
  export type LockOptions = CommonLockOptions &
    (
      | {
          /**
           * Where Redis is: a `redis://` / `rediss://` URL, connection options, or an existing
           * node-redis or ioredis client (only its address, credentials, database and TLS setting
           * are read; redfour-native opens its own connections with them).
           */
          redis: RedisTarget;
          redisConnection?: RedisTarget;
        }
      | {
          /** ioredfour's alias of `redis`; wins when both are given. */
          redisConnection: RedisTarget;
          redis?: RedisTarget;
        }
      | {
          /** ioredfour's cluster seeds (see {@link CommonLockOptions.cluster}); `redis` is then not needed. */
          cluster: ClusterSeed[] | ClusterConfig;
          redis?: RedisTarget;
          redisConnection?: RedisTarget;
        }
    );

  /** The options of `new Lock(options)` other than where Redis is. */
  export interface CommonLockOptions {
    /**
     * Prefix of every key and of the release channel: the lock key is `${namespace}:${id}`, the
     * fencing counter `${namespace}index`, the channel `${namespace}-release`. Default `'lock'`.
     */
    namespace?: string;
    /** Milliseconds to wait for a connection to Redis before failing with `ERR_REDIS`. Default 5000. */
    connectTimeout?: number;
    /** Milliseconds to wait for a Redis reply before failing with `ERR_REDIS`. Default 5000. */
    commandTimeout?: number;
    /** TLS material for `rediss://` servers; applies to every connection, the subscriber included. */
    tls?: TlsOptions;
    /**
     * Single-server mode: replicas that must acknowledge a grant (Redis `WAIT`) before it counts;
     * a grant acknowledged by fewer is undone and reported `success: false` with
     * `replicationFailure: true`. Lock TTLs must then be at least 1.5 × `replicationTimeout`
     * (`ERR_INVALID_ARG` otherwise). Default 0.
     */
    minReplications?: number;
    /** Milliseconds `WAIT` may take when `minReplications` is set. Default 500 (ioredfour's). */
    replicationTimeout?: number;
    /**
     * Redis Cluster mode: `true` with the seed node(s) in `redis`, or ioredfour's forms: the seeds
     * themselves (`[{ host, port }, ...]`, with ioredis Cluster options in `clusterOptions`) or
     * `{ nodes, options }`. An ioredis `Cluster` client as `redis` also selects it. Credentials
     * and TLS of the seeds are read from the Cluster options' `redisOptions`. Keys are hash-tagged
     * per lock (`{namespace:id}`, counter `{namespace:id}:index`, sharded channel
     * `{namespace:id}:release`): not ioredfour's cluster layout.
     */
    cluster?: boolean | ClusterSeed[] | ClusterConfig;
    /** ioredfour's ioredis Cluster options for `cluster: [...]`; only `redisOptions` (credentials, TLS) is read. */
    clusterOptions?: ClusterOptions;
  }

  /** A Redis Cluster seed node, as ioredis takes it. */
  export type ClusterSeed = { host?: string; port?: number | string } | string | number;

  /** ioredfour's `cluster: { nodes, options }` (`startupNodes` is accepted for `nodes`). */
  export type ClusterConfig =
    | { nodes: ClusterSeed[]; startupNodes?: ClusterSeed[]; options?: ClusterOptions }
    | { startupNodes: ClusterSeed[]; nodes?: ClusterSeed[]; options?: ClusterOptions };

  /** The part of ioredis's Cluster options that is read: the nodes' credentials and TLS. */
  export interface ClusterOptions {
    redisOptions?: { username?: string; password?: string; tls?: boolean | object };
    [option: string]: unknown;
  }

  /** PEM text or bytes. */
  export type Pem = string | Uint8Array;

  export interface TlsOptions {
    /** Trusted CA certificate(s) instead of the system store. */
    ca?: Pem | Pem[];
    /** Client certificate for mutual TLS (with `key`). */
    cert?: Pem;
    /** Client private key for mutual TLS (with `cert`). */
    key?: Pem;
    /** `false` skips certificate verification (tests only). Default true. */
    rejectUnauthorized?: boolean;
  }

  /** Sentinel mode (ioredis's option names): the master is found by `name` and followed across failovers. */
  export interface SentinelOptions {
    sentinels: Array<{ host: string; port: number } | string>;
    /** The master's name as the sentinels monitor it. */
    name: string;
    /** Credentials and database of the master. */
    username?: string;
    password?: string;
    db?: number;
    /** Credentials of the sentinels themselves. */
    sentinelUsername?: string;
    sentinelPassword?: string;
    tls?: boolean | TlsOptions;
  }

  /** Connection options, as given to `redis.createClient` or `new Redis()` (the subset that is read). */
  export interface RedisConnectionOptions {
    /** A full Redis URL (node-redis 4 style); when present the other fields are ignored. */
    url?: string;
    /** Default `'127.0.0.1'`. */
    host?: string;
    /** Default `6379`. */
    port?: number | string;
    /** ACL user name (Redis 6+). */
    username?: string;
    /** Alias of `username`. */
    user?: string;
    password?: string;
    /** Alias of `password` (node-redis 2/3). */
    auth_pass?: string;
    /** Database number, default `0`. */
    db?: number | string;
    /** Alias of `db` (node-redis 4). */
    database?: number | string;
    /** Use TLS (`rediss://`) when truthy. */
    tls?: boolean | object;
    /** node-redis 4 socket options: `host`, `port` and `tls` are read from here when not given above. */
    socket?: { host?: string; port?: number; tls?: boolean | object };
  }

  /**
   * An existing Redis client, recognised like redfour (an `address` of `host:port`, node-redis
   * 2/3) or like ioredfour (a `duplicate()` method and an `options` object: ioredis, node-redis 4).
   */
  export type RedisClientLike =
    { readonly address: string; options?: object } | { duplicate(...args: never[]): unknown; readonly options?: object | undefined };

  /** Node-style callback: `err` is set on failure (then `result` is undefined), else `null`. */
  export type Callback<T> = (err: LockError | InvalidArgumentError | null, result: T) => void;

  /**
   * What `releaseLock`, `renewLock` and `extendLock` read from a held lock: any successful acquire
   * result, a {@link HeldLock}, or a plain `{ id, index }` kept elsewhere.
   */
  export interface LockRef<Id extends LockId = LockId> {
    id: Id;
    /**
     * The fencing index returned by a successful acquire. A number, or a numeric string (redfour's
     * own types declare it a string). Any other index is an answer, not an error, as in redfour:
     * `-1` from a failed acquire, `0` or `-10` give `'conflict'` (or `'expired'` / `'missing'` when
     * the lock is gone). Only NaN, infinities and non-numeric text are `ERR_INVALID_ARG`.
     */
    index: number | string;
  }

  /** Options of {@link Lock.waitAcquireLock}. */
  export interface WaitOptions {
    /** Cancels the wait: the call fails with `ERR_ABORTED`. */
    signal?: AbortSignal;
  }

  /** Options of {@link Lock.acquire} and {@link Lock.using}. Millisecond values are integers. */
  export interface LeaseOptions {
    /** How long to wait for the lock; `0` or absent waits without limit. */
    waitMs?: number;
    /** Time between renewals; `0` or absent means a third of the TTL. */
    renewEveryMs?: number;
    /** Give the lease up (reason `'max-hold'`) after holding it this long; `0` or absent: no limit. */
    maxHoldMs?: number;
    /** Cancels the wait (`ERR_ABORTED`); for `using`, also aborts the routine's signal. */
    signal?: AbortSignal;
  }

  /**
   * Why a held lease was lost (`LockError#reason` with code `ERR_LOCK_LOST`):
   * `'conflict'` another owner holds the lock now; `'missing'` the key expired or was deleted;
   * `'unreachable'` no renewal succeeded before the lease ran out; `'max-hold'` `maxHoldMs` passed;
   * `'closed'` the Lock was closed.
   */
  export type LostReason = 'conflict' | 'missing' | 'unreachable' | 'max-hold' | 'closed';

  /** A lock held by this process and renewed from Rust until released. From {@link Lock.acquire}. */
  export interface HeldLock<Id extends LockId = LockId> {
    readonly id: Id;
    /** The fencing token of this grant (see {@link AcquireResult.index}). */
    readonly index: number;
    /** The lease granted in milliseconds. */
    readonly ttl: number;
    /** `true` when the lock was free at once. */
    readonly immediate: boolean;
    /**
     * Aborts as soon as the lease can no longer be trusted; its `reason` is a {@link LockError}
     * with code `ERR_LOCK_LOST` and a {@link LostReason} in `reason`. The lease is measured from
     * when each renewal was sent and counted lost a safety margin before it would run out.
     */
    readonly signal: AbortSignal;
    /** Milliseconds before the lease must be considered lost; `0` once lost or released. */
    readonly remainingMs: number;
    /** Stops renewing and releases the lock. Idempotent: later calls return the first result. */
    release(): Promise<ReleaseResult<Id>>;
    /** Same as {@link release}, for `await using held = await lock.acquire(...)`. */
    [Symbol.asyncDispose](): Promise<void>;
  }

  /** Result of {@link Lock.acquireLock}. */
  export interface AcquireResult<Id extends LockId = LockId> {
    /** The id exactly as it was passed in. */
    id: Id;
    /** `true` when this call now holds the lock. */
    success: boolean;
    /**
     * Present (`true`) only with `minReplications`, when Redis granted the lock but too few
     * replicas acknowledged it within `replicationTimeout`: the grant was undone.
     */
    replicationFailure?: true;
    /**
     * On success, the fencing token of this grant: a positive integer that is strictly larger
     * than every index granted before it in this namespace (the shared `${namespace}index`
     * counter). Pass it to the resource you protect and have that resource reject writes carrying
     * an index lower than one it has already seen. `-1` when the lock was not acquired.
     */
    index: number;
    /**
     * On success, the lease granted in milliseconds (the requested TTL). Otherwise the current
     * holder's remaining TTL in milliseconds, as Redis `PTTL` reports it (`-1`: the key has no
     * expiry, as left by an old client's bug).
     */
    ttl: number;
  }

  /** Result of {@link Lock.waitAcquireLock}. */
  export interface WaitAcquireResult<Id extends LockId = LockId> extends AcquireResult<Id> {
    /** `true` when the lock was free on the first attempt and no waiting happened. */
    immediate: boolean;
    /**
     * On success, what is left of the lease when this result reaches you, in milliseconds:
     * counted from when the winning attempt was sent, so it never exceeds what Redis keeps the
     * lock for (a grant found late, or a result delivered while the event loop was busy, reports
     * less than the requested TTL). Otherwise the current holder's remaining TTL, as for
     * {@link AcquireResult.ttl}.
     */
    ttl: number;
  }

  /** Result of {@link Lock.releaseLock}. */
  export interface ReleaseResult<Id extends LockId = LockId> {
    id: Id;
    /** `true` for `'released'` and `'expired'`, `false` for `'conflict'`. */
    success: boolean;
    /**
     * - `'released'`: the key carried this lock's index and was deleted; waiters were signalled.
     * - `'expired'`: the key was already gone (the lease ran out); nothing was deleted.
     * - `'conflict'`: the lease ran out and somebody else holds the lock now; it was left alone.
     */
    result: 'released' | 'conflict' | 'expired';
    /**
     * The released index for `'released'`, the index now stored under the key for
     * `'conflict'`, and the string `'expired'` for `'expired'` (as redfour 2.x).
     */
    index: number | 'expired';
  }

  /** Result of {@link Lock.renewLock}. */
  export interface RenewResult<Id extends LockId = LockId> {
    id: Id;
    /** `true` when the lease was renewed. */
    success: boolean;
    /**
     * - `'renewed'`: still held by this lock; the lease now ends `ttl` ms from now.
     * - `'missing'`: the key is gone (the lease ran out or the lock was released).
     * - `'conflict'`: somebody else holds the lock now.
     */
    result: 'renewed' | 'missing' | 'conflict';
    /** The lock's index on success, `-1` on failure. */
    index: number;
  }

  /** Result of {@link Lock.extendLock} (ioredfour's shape). */
  export interface ExtendResult<Id extends LockId = LockId> {
    id: Id;
    /** `true` when the lease was extended. */
    success: boolean;
    /** The lock's index on success, `-1` on failure. */
    index: number;
    /** On success, the new lease in milliseconds; otherwise the key's `PTTL` (`-2` when it is gone). */
    ttl: number;
  }

  /** The stable error codes; every error redfour-native produces carries one in `err.code`. */
  export const codes: {
    /** A bad argument: wrong type, out of range, unparsable URL. Thrown as a `TypeError` before Redis is touched. */
    readonly ERR_INVALID_ARG: 'ERR_INVALID_ARG';
    /** Redis could not be reached, timed out, or answered with an error. */
    readonly ERR_REDIS: 'ERR_REDIS';
    /** The Lock was closed; pending waits and later calls fail with this code. */
    readonly ERR_CLOSED: 'ERR_CLOSED';
    /** Quorum mode: fewer than a majority of the Redis nodes answered. */
    readonly ERR_NO_QUORUM: 'ERR_NO_QUORUM';
    /** The caller's AbortSignal fired before the lock was granted. */
    readonly ERR_ABORTED: 'ERR_ABORTED';
    /** `acquire`/`using` did not get the lock within `waitMs`; `err.ttl` is the holder's remaining TTL. */
    readonly ERR_NOT_ACQUIRED: 'ERR_NOT_ACQUIRED';
    /** A held lease was lost; `err.reason` says why. The reason of a {@link HeldLock}'s aborted signal. */
    readonly ERR_LOCK_LOST: 'ERR_LOCK_LOST';
    /** A fault inside redfour-native itself (a bug: please report it); `cause` holds the original error. */
    readonly ERR_INTERNAL: 'ERR_INTERNAL';
  };

  /** One of the values of {@link codes}. */
  export type ErrorCode = (typeof codes)[keyof typeof codes];

  /** Error for every failure other than a bad argument (all codes but `ERR_INVALID_ARG`). */
  export class LockError extends Error {
    constructor(code: ErrorCode, message: string);
    readonly name: 'LockError';
    readonly code: ErrorCode;
    /** For `ERR_LOCK_LOST`, why the lease was lost. */
    reason?: LostReason;
    /** For `ERR_NOT_ACQUIRED`, the holder's remaining TTL in milliseconds. */
    ttl?: number;
    /** For `ERR_INTERNAL`, the unexpected error that caused it. */
    cause?: unknown;
  }

  /** A bad argument, raised as a `TypeError` (synchronously by the constructor, else as a rejection/callback error). */
  export interface InvalidArgumentError extends TypeError {
    readonly code: 'ERR_INVALID_ARG';
  }

  // ---- Fencing: enforce `index` / `epoch` on resources that live in Redis ----

  /**
   * A Redis client the fenced writes are sent through (redfour-native's own connections are
   * private): an ioredis client or cluster (`call`), a node-redis 4/5 client (`sendCommand`), a
   * node-redis 2/3 client (`send_command`), or a function running one command given as an array.
   */
  export type FenceClient =
    | { call(...args: any[]): unknown }
    | { sendCommand(args: any[], ...rest: any[]): unknown }
    | { send_command(command: string, args: any[], callback: (err: Error | null, reply: unknown) => void): unknown }
    | ((args: Array<string | Uint8Array>) => unknown);

  /** A fencing token: a non-negative safe integer, or anything carrying one as `index` (a lock result, a {@link HeldLock}). */
  export type FencingToken = number | bigint | { readonly index: number };

  export interface FenceOptions {
    /** Appended to a resource key to name the key holding its highest token. Default `':fence'`. */
    suffix?: string;
  }

  export interface FencedSetOptions {
    /** Expire the value after this many ms (`SET … PX`). The fence key itself never expires. */
    ttlMs?: number;
    /** The key holding the highest token, instead of `key + suffix`. */
    fenceKey?: string;
  }

  export interface FencedSetResult {
    /** `true` when the value was written (the token was not lower than the highest seen). */
    accepted: boolean;
    /** The highest token now stored: yours when accepted, the newer writer's when refused. */
    token: number;
  }

  /**
   * Fenced writes: a value is written only if the writer's token is not lower than the highest
   * token already seen for that resource, and the token is recorded, in one static Lua script
   * (keys in KEYS, values in ARGV). A paused ex-holder that wakes up with an old `index` cannot
   * overwrite what the next holder wrote. For Redis Cluster give keys a hash tag (`{report}:latest`)
   * so the value and its fence key share a slot.
   *
   * @example
   * const fence = new Lock.Fence(ioredis);
   * await lock.using('report', 30_000, async (signal, held) => {
   *   const { accepted } = await fence.set('report:latest', held.index, JSON.stringify(report));
   *   if (!accepted) throw new Error('a newer holder already wrote the report');
   * });
   */
  export class Fence {
    /** @throws {TypeError} code `ERR_INVALID_ARG` when `client` is not a supported client. */
    constructor(client: FenceClient, options?: FenceOptions);
    /** The key holding the highest token seen for `key`. */
    fenceKey(key: string): string;
    /**
     * Writes `value` to `key` (a Redis string) if `token` is not lower than the highest token seen
     * for it; equal tokens are accepted (the same holder writing again). Rejects with
     * `ERR_INVALID_ARG` for bad arguments, `ERR_REDIS` (with `cause`) when Redis fails.
     */
    set(key: string, token: FencingToken, value: string | number | Uint8Array, options?: FencedSetOptions): Promise<FencedSetResult>;
    /** Reads `key` and the highest token seen for it (`null`s when absent). */
    get(key: string, options?: Pick<FencedSetOptions, 'fenceKey'>): Promise<{ value: string | null; token: number | null }>;
  }

  /** One-off `new Fence(client).set(key, token, value, options)`. */
  export function fencedSet(
    client: FenceClient,
    key: string,
    token: FencingToken,
    value: string | number | Uint8Array,
    options?: FencedSetOptions,
  ): Promise<FencedSetResult>;

  // ---- Leader election ----

  /** Options of {@link Lock.elect}. Millisecond values are integers. */
  export interface ElectOptions {
    /** Lease of a term; a leader that dies is replaced within it. Default 10000. */
    ttl?: number;
    /** Time between renewals of the leader's lease. Default a third of `ttl`. */
    renewEveryMs?: number;
    /** After `resign()`, wait this long before campaigning again. Default 1000. */
    rejoinAfterMs?: number;
    /** First delay before retrying after a Redis error (doubling up to `retryMaxMs`). Default 100. */
    retryMinMs?: number;
    /** Largest delay between retries after Redis errors. Default 5000. */
    retryMaxMs?: number;
    /** Stops the elector when aborted. */
    signal?: AbortSignal;
  }

  /** One term of leadership, given to `'elected'` listeners and yielded by the async iterator. */
  export interface LeaderTerm<Id extends LockId = LockId> {
    readonly name: Id;
    /** The lock index of this term: strictly larger than every earlier term's. Use it as a fencing token. */
    readonly epoch: number;
    /**
     * Aborts when the term ends, before another leader can be elected (unless the lease was lost
     * outright). Its `reason` is a {@link LockError} with code `ERR_LOCK_LOST` whose `reason` is a
     * {@link LostReason}, `'resigned'` or `'stopped'`.
     */
    readonly signal: AbortSignal;
  }

  /** Why a term ended: the lease was lost ({@link LostReason}), or this process resigned or stopped. */
  export type RevokeReason = LostReason | 'resigned' | 'stopped';

  /** Given to `'revoked'` listeners. */
  export interface Revoked<Id extends LockId = LockId> {
    readonly name: Id;
    readonly epoch: number;
    readonly reason: RevokeReason;
    /** For a lost lease, the `ERR_LOCK_LOST` error (also the term signal's reason). */
    readonly error?: LockError;
  }

  /**
   * A candidate in a leader election; see {@link Lock.elect}. Events: `'elected'` (a
   * {@link LeaderTerm}), `'revoked'` (a {@link Revoked}; after a lost lease the elector campaigns
   * again at once), `'stopped'`, and `'error'`, which is emitted **only when an 'error' listener is
   * attached**: without one, Redis errors are retried with backoff and never thrown.
   * `for await (const term of elector)` yields each term won; leaving the loop stops the elector.
   */
  export class LeaderElector<Id extends LockId = LockId> implements AsyncIterable<LeaderTerm<Id>> {
    constructor(lock: Lock, name: Id, options?: ElectOptions);
    readonly name: Id;
    /** `true` while this process is the leader. */
    readonly isLeader: boolean;
    /** The current term's epoch while leader, else `null`. */
    readonly epoch: number | null;
    /** The current term's signal while leader, else `null`. */
    readonly signal: AbortSignal | null;
    /** `true` once stopped (by `stop()`, `options.signal`, or because the Lock was closed). */
    readonly stopped: boolean;
    /**
     * Steps down: the term's signal aborts, the lock is released (a waiting candidate takes over
     * at once), and this elector campaigns again after `rejoinAfterMs`. Resolves `true` once
     * released, or `false` at once when this process was not the leader.
     */
    resign(options?: { rejoinAfterMs?: number }): Promise<boolean>;
    /** Leaves the election: cancels the campaign, ends a held term and releases it. Idempotent. */
    stop(): Promise<void>;
    /** Same as {@link stop}, for `await using elector = lock.elect(...)`. */
    [Symbol.asyncDispose](): Promise<void>;
    [Symbol.asyncIterator](): AsyncIterator<LeaderTerm<Id>>;

    on(event: 'elected', listener: (term: LeaderTerm<Id>) => void): this;
    on(event: 'revoked', listener: (info: Revoked<Id>) => void): this;
    on(event: 'stopped', listener: () => void): this;
    on(event: 'error', listener: (err: LockError) => void): this;
    once(event: 'elected', listener: (term: LeaderTerm<Id>) => void): this;
    once(event: 'revoked', listener: (info: Revoked<Id>) => void): this;
    once(event: 'stopped', listener: () => void): this;
    once(event: 'error', listener: (err: LockError) => void): this;
    addListener(event: 'elected' | 'revoked' | 'stopped' | 'error', listener: (...args: any[]) => void): this;
    off(event: 'elected' | 'revoked' | 'stopped' | 'error', listener: (...args: any[]) => void): this;
    removeListener(event: 'elected' | 'revoked' | 'stopped' | 'error', listener: (...args: any[]) => void): this;
    removeAllListeners(event?: 'elected' | 'revoked' | 'stopped' | 'error'): this;
    listenerCount(event: 'elected' | 'revoked' | 'stopped' | 'error'): number;
  }

  // ---- Run-once jobs ----

  /**
   * A period schedule: a fixed interval in ms (periods `offset + k * every` since the Unix epoch),
   * or a cron expression (5 fields, or 6 with seconds; a period runs from one fire time to the
   * next), with an IANA time zone (default: the process's).
   */
  export type RunSchedule = number | string | { every: number; offset?: number } | { cron: string; tz?: string };

  /** Options of {@link Lock.runOnce}. Millisecond values are integers. */
  export interface RunOnceOptions {
    /** Lease of the run lock, renewed while the job runs; after a crash another process retries after at most this long. Default 30000. */
    ttl?: number;
    /** How long to wait while another process runs the job; `0` waits without limit. Default: until the period ends. */
    waitMs?: number;
    /** `false`: do not wait; resolve with `skipped: 'busy'` if another process is running the job. */
    wait?: boolean;
    /** How long the done marker outlives its period (covers clocks that lag). Default: the period length, at most 1 hour. */
    graceMs?: number;
    /** Time zone of a cron schedule given as a string. */
    tz?: string;
    /** The instant whose period is meant (default now). */
    now?: Date | number;
    /** Cancels the wait, and aborts the job's signal. */
    signal?: AbortSignal;
    /** Renewal period of the run lock (default a third of `ttl`). */
    renewEveryMs?: number;
    /** Give the run lock up after this long (the job's signal aborts with reason `'max-hold'`). */
    maxHoldMs?: number;
  }

  /** A period of a {@link RunSchedule}: `[start, end)`. */
  export interface RunPeriod {
    start: Date;
    end: Date;
    /** `${name}:${start in ms}`: the run lock's id. */
    id: string;
  }

  /** The second argument of a run-once job. */
  export interface RunInfo {
    name: string;
    period: RunPeriod;
    /** The run lock's index: a fencing token for whatever the job writes. */
    epoch: number;
  }

  /** Result of {@link Lock.runOnce}. */
  export type RunOnceResult<T> =
    | {
        ran: true;
        /** What the job returned. */
        result: T;
        epoch: number;
        /** `false` if the done marker could not be written (a later call in this period may run the job again). */
        marked: boolean;
        period: RunPeriod;
      }
    | {
        ran: false;
        /**
         * `'done'`: the job already ran in this period; `'busy'`: another process is running it and
         * the wait ended; `'missed'`: the period ended while this call waited.
         */
        skipped: 'done' | 'busy' | 'missed';
        period: RunPeriod;
      };

  /** Options of {@link Lock.schedule}. */
  export interface ScheduleOptions extends Omit<RunOnceOptions, 'now' | 'signal'> {
    /** Also run for the period already under way when the schedule starts. Default `true`. */
    runNow?: boolean;
    /** Start each period's run this many ms after the period starts. Default 0. */
    delayMs?: number;
  }

  /**
   * A per-process scheduler from {@link Lock.schedule}. Events: `'ran'` (each period's
   * {@link RunOnceResult}, whether this process ran the job or skipped it) and `'error'` (only
   * emitted when an 'error' listener is attached).
   */
  export class Schedule<T = unknown> {
    constructor(
      lock: Lock,
      name: string | number,
      schedule: RunSchedule,
      job: (signal: AbortSignal, info: RunInfo) => T | PromiseLike<T>,
      options?: ScheduleOptions,
    );
    readonly stopped: boolean;
    /** Stops scheduling; a job under way gets its signal aborted. Resolves once it has settled. */
    stop(): Promise<void>;
    [Symbol.asyncDispose](): Promise<void>;
    on(event: 'ran', listener: (outcome: RunOnceResult<T>) => void): this;
    on(event: 'error', listener: (err: unknown) => void): this;
    once(event: 'ran', listener: (outcome: RunOnceResult<T>) => void): this;
    once(event: 'error', listener: (err: unknown) => void): this;
    off(event: 'ran' | 'error', listener: (...args: any[]) => void): this;
    removeListener(event: 'ran' | 'error', listener: (...args: any[]) => void): this;
  }

  /** `true` for any error raised by redfour-native: a {@link LockError} or an {@link InvalidArgumentError}. */
  export function isLockError(err: unknown): err is LockError | InvalidArgumentError;

  /** The largest TTL accepted, in milliseconds: 2^31-1 (about 24.8 days), the largest JavaScript timer delay. */
  export const MAX_TTL_MS: 2147483647;

  // ---------------------------------------------------------------------------------------------
  // Diagnostics: node:diagnostics_channel events (docs/observability.md)
  // ---------------------------------------------------------------------------------------------

  /**
   * Names of the `node:diagnostics_channel` channels redfour-native publishes on. Nothing is
   * built or published while a channel has no subscriber. `NODE_DEBUG=redfour-native` logs
   * connections, waits and lost leases through the same channels.
   *
   * @example
   * const dc = require('node:diagnostics_channel');
   * dc.subscribe(Lock.channels.waitEnd, (m) => metrics.observe(m.durationMs, { outcome: m.outcome }));
   */
  export const channels: {
    /** {@link AcquireStartMessage}: `acquireLock` (one attempt) starts. */
    readonly acquireStart: 'redfour-native:acquire:start';
    /** {@link AcquireEndMessage}: `acquireLock` answered or failed. */
    readonly acquireEnd: 'redfour-native:acquire:end';
    /** {@link WaitStartMessage}: `waitAcquireLock`, `acquire` or `using` starts waiting. */
    readonly waitStart: 'redfour-native:wait:start';
    /** {@link WaitEndMessage}: the wait ended (acquired, timed out, aborted, failed). */
    readonly waitEnd: 'redfour-native:wait:end';
    /** {@link ReleaseMessage}: `releaseLock` (also `HeldLock#release`) answered or failed. */
    readonly release: 'redfour-native:release';
    /** {@link LeaseRenewedMessage}: a held lease was renewed from Rust. */
    readonly leaseRenewed: 'redfour-native:lease:renewed';
    /** {@link LeaseLostMessage}: a held lease was lost. */
    readonly leaseLost: 'redfour-native:lease:lost';
    /** {@link ConnectedMessage}: a Redis connection was opened or reopened. */
    readonly connected: 'redfour-native:connection:connected';
    /** {@link ConnectionLostMessage}: a working Redis connection failed. */
    readonly connectionLost: 'redfour-native:connection:lost';
    /** {@link ConnectFailedMessage}: opening a Redis connection failed. */
    readonly connectFailed: 'redfour-native:connection:failed';
    /** {@link QuorumMessage}: quorum mode, fewer than a majority of nodes answer. */
    readonly quorumLost: 'redfour-native:quorum:lost';
    /** {@link QuorumMessage}: quorum mode, a majority answers again. */
    readonly quorumRegained: 'redfour-native:quorum:regained';
  };

  /** `redfour-native:acquire:start`. The end message is this same object, completed. */
  export interface AcquireStartMessage {
    operation: 'acquireLock';
    namespace: string;
    /** The id as passed (as in results). */
    id: LockId;
    /** The lease asked for, in ms. */
    ttl: number;
  }

  /** How an acquire or a wait ended. */
  export type AcquireOutcome = 'acquired' | 'not-acquired' | 'timed-out' | 'aborted' | 'error';

  /** `redfour-native:acquire:end`. */
  export interface AcquireEndMessage extends AcquireStartMessage {
    /** `'acquired'`, `'not-acquired'` (held by another) or `'error'`. */
    outcome: AcquireOutcome;
    /** Milliseconds from the call to its answer reaching JavaScript. */
    durationMs: number;
    /** The fencing token when acquired, else -1. */
    index: number;
    /** The caller's result (absent on error). */
    result?: AcquireResult;
    /** On error: its code and the error. */
    code?: ErrorCode;
    error?: Error;
  }

  /** `redfour-native:wait:start`. The end message is this same object, completed. */
  export interface WaitStartMessage {
    operation: 'waitAcquireLock' | 'acquire' | 'using';
    namespace: string;
    id: LockId;
    ttl: number;
    /** The wait limit in ms (`waitTtl`, or `waitMs` of acquire/using); 0: no limit. */
    waitTtl: number;
  }

  /** `redfour-native:wait:end`. */
  export interface WaitEndMessage extends WaitStartMessage {
    /** `'acquired'`, `'timed-out'` (the wait limit passed), `'aborted'` (the signal fired) or `'error'`. */
    outcome: AcquireOutcome;
    durationMs: number;
    index: number;
    /** The first attempt got it: no waiting was needed. */
    immediate: boolean;
    /** `waitAcquireLock`: the caller's result; `acquire`/`using`: `{ success, index, ttl, immediate }`. */
    result?: { success: boolean; index: number; ttl: number; immediate?: boolean };
    code?: ErrorCode;
    error?: Error;
  }

  /** `redfour-native:release`. */
  export interface ReleaseMessage {
    namespace: string;
    id: LockId;
    /** The index the caller released under (as passed). */
    index: number | string;
    /** `'released'`, `'conflict'` or `'expired'`; undefined on error. */
    result: ReleaseResult['result'] | undefined;
    success: boolean;
    durationMs: number;
    code?: ErrorCode;
    error?: Error;
  }

  /** `redfour-native:lease:renewed` (leases taken while this channel had a subscriber). */
  export interface LeaseRenewedMessage {
    namespace: string;
    id: LockId;
    index: number;
    /** As `HeldLock#remainingMs`: ms before the lease counts as lost, when delivered. */
    remainingMs: number;
  }

  /** `redfour-native:lease:lost`. */
  export interface LeaseLostMessage {
    namespace: string;
    id: LockId;
    index: number;
    reason: LostReason;
  }

  /** Which connection of an endpoint a connection event is about. */
  export type ConnectionKind = 'calls' | 'commands' | 'subscriber' | 'replication';

  /** `redfour-native:connection:connected`. Connections are shared process-wide, so there is no namespace. */
  export interface ConnectedMessage {
    /** `host:port` (a socket path, or a cluster's seeds); never credentials. */
    endpoint: string;
    connection: ConnectionKind;
    /** `true` when the connection had been open before (or had failed): a reconnect. */
    reconnect: boolean;
  }

  /** `redfour-native:connection:lost`. */
  export interface ConnectionLostMessage {
    endpoint: string;
    connection: ConnectionKind;
    /** What failed: `'connection closed'`, `'PING unanswered'`, or the error of a failed command. */
    reason: string;
  }

  /** `redfour-native:connection:failed`. */
  export interface ConnectFailedMessage {
    endpoint: string;
    connection: ConnectionKind;
    error: string;
  }

  /** `redfour-native:quorum:lost` and `redfour-native:quorum:regained`. */
  export interface QuorumMessage {
    /** Every node, as `host:port`. */
    endpoints: string[];
    /** Nodes that answered the request that noticed the change. */
    answered: number;
    /** The majority needed. */
    needed: number;
  }
}

// Declared here too, so that the types compile with a `lib` older than ES2025/esnext.disposable,
// and without DOM or @types/node (an empty AbortSignal merges with the real one when present).
declare global {
  interface SymbolConstructor {
    readonly asyncDispose: unique symbol;
  }
  interface AbortSignal {}
}

export = Lock;
