// Compile-only checks of index.d.ts (never run): `npx tsc --noEmit -p __typecheck__`.
// Lines marked @ts-expect-error must fail to compile; tsc reports them if they ever stop failing.
import LockDefault from 'redfour-native';
import { Lock, LockError, codes, isLockError, MAX_TTL_MS } from 'redfour-native';
import type {
  AcquireResult,
  ErrorCode,
  HeldLock,
  LeaseOptions,
  LockOptions,
  LockRef,
  LostReason,
  ReleaseResult,
  WaitAcquireResult,
} from 'redfour-native';
import LockRequired = require('redfour-native');

// Shapes of existing clients as their own typings declare them (the real packages' typings need
// @types/node, which this project does not install).
declare const ioredisClient: { options: { host?: string; port?: number }; duplicate(override?: object): unknown; status: string };
declare const nodeRedis4Client: { readonly options: { url?: string } | undefined; duplicate(overrides?: object): unknown; isOpen: boolean };
declare const nodeRedis3Client: { address: string; options: object; connected: boolean };

// All import styles give the same class.
const classes: Array<typeof LockRequired> = [LockDefault, Lock, LockRequired, LockRequired.Lock, LockRequired.default];
const asInstance: Lock = new LockDefault({ redis: 'redis://127.0.0.1:6379' });
const sameInstance: LockDefault = asInstance;
void classes;
void sameInstance;

// Constructor options.
const fromUrl = new Lock({ redis: 'rediss://user:secret@redis.example:6380/2', namespace: 'getAccessToken' });
const fromOptions = new Lock({
  redis: { host: '127.0.0.1', port: 6379, username: 'app', password: 'secret', db: 1, tls: true },
  connectTimeout: 2000,
  commandTimeout: 1000,
});
const fromIoredis = new Lock({ redis: ioredisClient });
const fromNodeRedis = new Lock({ redis: nodeRedis4Client });
const fromNodeRedis3: LockOptions = { redis: nodeRedis3Client };
const ns: string = fromUrl.namespace;
void [fromOptions, fromIoredis, fromNodeRedis, fromNodeRedis3, ns];
// ioredfour's forms: the redisConnection alias and cluster seeds without `redis`.
const fromAlias = new Lock({ redisConnection: ioredisClient, namespace: 'x' });
const fromSeeds = new Lock({
  cluster: [
    { host: '10.0.0.1', port: 7000 },
    { host: '10.0.0.2', port: 7000 },
  ],
  namespace: 'x',
});
const fromSeedsWithOptions = new Lock({ cluster: ['10.0.0.1:7000'], clusterOptions: { redisOptions: { password: 'pw' } } });
const fromClusterConfig = new Lock({ cluster: { nodes: [{ host: '10.0.0.1', port: 7000 }], options: { redisOptions: { tls: {} } } } });
const fromClusterTrue = new Lock({ redis: ['redis://10.0.0.1:7000'], cluster: true });
void [fromAlias, fromSeeds, fromSeedsWithOptions, fromClusterConfig, fromClusterTrue];
// @ts-expect-error: cluster: true needs the seeds in redis
new Lock({ cluster: true });
// @ts-expect-error: a number is not a connection
new Lock({ redis: 6379 });
// @ts-expect-error: options.redis is required
new Lock({ namespace: 'x' });
// @ts-expect-error: namespace must be a string
new Lock({ redis: 'redis://127.0.0.1', namespace: 3 });
// @ts-expect-error: namespace is read-only
fromUrl.namespace = 'other';

// Promise style.
async function promises(lock: Lock): Promise<number> {
  const a = await lock.acquireLock('user-1', 1000);
  const literal: 'user-1' = a.id;
  const index: number = a.index;
  const ttl: number = a.ttl;
  void [literal, index, ttl];
  if (a.success) {
    const renewed = await lock.renewLock(a, 5000);
    const r: 'renewed' | 'missing' | 'conflict' = renewed.result;
    const extended = await lock.extendLock(a, 5000);
    const ettl: number = extended.ttl;
    const released: ReleaseResult<string> = await lock.releaseLock(a);
    const ri: number | 'expired' = released.index;
    void [r, ettl, ri];
    // @ts-expect-error: index may be the string 'expired'
    const n: number = released.index;
    void n;
  }
  const w: WaitAcquireResult = await lock.waitAcquireLock(42, 60_000, 30_000);
  const immediate: boolean = w.immediate;
  const numericId: number = (await lock.waitAcquireLock(42, 1, 0)).id;
  const bigId: bigint = (await lock.acquireLock(7n, 10)).id;
  void [immediate, numericId, bigId];
  // A plain { id, index } works as a held lock (e.g. one stored elsewhere).
  await lock.releaseLock({ id: 'user-1', index: 17 });
  // redfour's index.d.ts types index as a string: such locks (and numeric strings) are accepted.
  const redfourTyped: { id: string; index: string } = { id: 'user-1', index: '17' };
  await lock.releaseLock(redfourTyped);
  await lock.renewLock(redfourTyped, 1000);
  await lock.extendLock(redfourTyped, 1000);
  // Releasing the result of a failed acquire is an answer (conflict/expired), not an error.
  const maybe = await lock.acquireLock('user-2', 1000);
  await lock.releaseLock(maybe);
  // @ts-expect-error: index is required to release
  await lock.releaseLock({ id: 'user-1' });
  // @ts-expect-error: index is a number or a numeric string
  await lock.releaseLock({ id: 'user-1', index: true });
  // @ts-expect-error: ids are strings or numbers
  await lock.acquireLock({ id: 1 }, 1000);
  // @ts-expect-error: ttl is a number
  await lock.acquireLock('x', '1000');
  // @ts-expect-error: waitAcquireLock needs both TTLs
  await lock.waitAcquireLock('x', 1000);
  await lock.close();
  await lock.quit();
  return w.index;
}

// Callback style returns void.
function callbacks(lock: Lock, done: (err: Error | null, token?: string) => void): void {
  const nothing: void = lock.waitAcquireLock('user-1', 60_000, 30_000, (err, held) => {
    if (err || !held.success) return done(new Error('Could not get lock!'));
    const acquired: AcquireResult<string> = held;
    void acquired;
    lock.releaseLock(held, (releaseErr, released) => {
      if (releaseErr) return done(releaseErr);
      const result: 'released' | 'conflict' | 'expired' = released.result;
      done(null, result);
    });
  });
  void nothing;
  lock.acquireLock(1, 10, (err, res) => {
    if (err) {
      const code: ErrorCode = err.code;
      void code;
      return;
    }
    lock.renewLock(res, 10, (_e, r) => void r.result);
    lock.extendLock(res, 10, (_e, r) => void r.ttl);
  });
  lock.close((err) => void err);
  lock.quit(() => undefined);
  // @ts-expect-error: with a callback there is no Promise to await
  const p: Promise<unknown> = lock.acquireLock('x', 10, () => undefined);
  void p;
}

// Topologies.
new Lock({ redis: ['redis://a:6379', 'redis://b:6379', 'redis://c:6379'] });
new Lock({
  redis: 'rediss://h:6380',
  tls: { ca: 'PEM', cert: new Uint8Array([1]), key: 'k' },
  minReplications: 1,
  replicationTimeout: 500,
});
new Lock({ redis: { sentinels: [{ host: 'h', port: 26379 }], name: 'mymaster', password: 'p' } });
new Lock({ redis: 'redis://seed:7000', cluster: true });
// @ts-expect-error: cluster is a boolean
new Lock({ redis: 'redis://seed:7000', cluster: 'yes' });

// Errors and constants.
function errors(err: unknown): string {
  if (isLockError(err)) {
    switch (err.code) {
      case codes.ERR_INVALID_ARG:
        return `bad argument: ${err.message}`;
      case codes.ERR_REDIS:
      case codes.ERR_CLOSED:
      case codes.ERR_NO_QUORUM:
      case codes.ERR_ABORTED:
      case codes.ERR_INTERNAL:
        return err.code;
      case codes.ERR_NOT_ACQUIRED:
        return `held elsewhere for ${err.ttl} ms`;
      case codes.ERR_LOCK_LOST: {
        const reason: LostReason | undefined = err.reason;
        return `lost: ${reason}`;
      }
    }
    // Every code was handled above.
    const unreachable: never = err;
    return unreachable;
  }
  if (err instanceof LockError) return err.code;
  const made = new LockError('ERR_CLOSED', 'closed');
  const name: 'LockError' = made.name;
  // @ts-expect-error: unknown code
  new LockError('ERR_NOPE', 'x');
  // @ts-expect-error: codes is read-only
  codes.ERR_REDIS = 'x';
  const max: number = MAX_TTL_MS;
  return `${name}${max}`;
}

// Cancellable waits, self-renewing held locks, and using().
async function leases(lock: Lock): Promise<string> {
  const controller = new AbortController();
  const w = await lock.waitAcquireLock('job', 1000, 0, { signal: controller.signal });
  lock.waitAcquireLock('job', 1000, 0, { signal: controller.signal }, (err, r) => void (err ?? r.immediate));
  lock.waitAcquireLock('job', 1000, 0, undefined, (_err, r) => void r.index);
  // @ts-expect-error: signal must be an AbortSignal
  await lock.waitAcquireLock('job', 1000, 0, { signal: 'now' });
  void w;

  const options: LeaseOptions = { waitMs: 5000, renewEveryMs: 1000, maxHoldMs: 60_000, signal: controller.signal };
  const held: HeldLock<'job'> = await lock.acquire('job', 3000, options);
  const ref: LockRef = held; // a HeldLock works with releaseLock/renewLock too
  await lock.renewLock(ref, 3000);
  if (held.signal.aborted) return 'lost';
  held.signal.addEventListener('abort', () => void held.signal.reason);
  const left: number = held.remainingMs;
  const released: ReleaseResult<'job'> = await held.release();
  void [left, released];
  // @ts-expect-error: acquire has no callback form
  lock.acquire('job', 3000, {}, () => undefined);
  {
    await using scoped = await lock.acquire(7, 3000);
    const n: number = scoped.id;
    void n;
  }

  const total: number = await lock.using('report', 10_000, async (signal, h) => {
    if (signal.aborted) throw signal.reason;
    return h.index * 2;
  });
  const text: string = await lock.using('report', 10_000, () => 'sync result', { waitMs: 100 });
  // @ts-expect-error: the routine's result type is carried through
  const wrong: number = await lock.using('report', 10_000, () => 'text');
  void wrong;
  return `${total}${text}`;
}

// `await using` closes the lock at scope end.
async function disposable(): Promise<void> {
  await using lock = new Lock({ redis: 'redis://127.0.0.1:6379' });
  await lock.acquireLock('a', 1000);
  const dispose: () => Promise<void> = lock[Symbol.asyncDispose];
  void dispose;
}

// Diagnostics channels: the names are literal types, the messages are typed per channel.
function diagnostics(subscribe: (name: string, fn: (message: unknown) => void) => void): void {
  const name: 'redfour-native:wait:end' = Lock.channels.waitEnd;
  const names: string[] = Object.values(LockRequired.channels);
  subscribe(name, (message) => {
    const m = message as LockRequired.WaitEndMessage;
    const outcome: LockRequired.AcquireOutcome = m.outcome;
    const took: number = m.durationMs;
    const op: 'waitAcquireLock' | 'acquire' | 'using' = m.operation;
    void [outcome, took, op];
  });
  subscribe(Lock.channels.leaseLost, (message) => {
    const reason: LostReason = (message as LockRequired.LeaseLostMessage).reason;
    void reason;
  });
  subscribe(Lock.channels.connected, (message) => {
    const m = message as LockRequired.ConnectedMessage;
    const kind: 'calls' | 'commands' | 'subscriber' | 'replication' = m.connection;
    const again: boolean = m.reconnect;
    void [kind, again, m.endpoint];
  });
  // @ts-expect-error: channel names are read-only
  Lock.channels.waitEnd = 'x';
  void names;
}

export { promises, callbacks, errors, leases, disposable, diagnostics };
