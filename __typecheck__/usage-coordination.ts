// Compile-only checks (never run) of the coordination helpers: fenced writes, leader election,
// run-once jobs. Lines marked @ts-expect-error must fail to compile.
import Lock = require('redfour-native');
import type { FencedSetResult, LeaderTerm, Revoked, RunOnceResult, RunInfo } from 'redfour-native';

declare const ioredisClient: {
  call(command: string, ...args: Array<string | number>): Promise<unknown>;
  options: object;
  duplicate(): unknown;
};
declare const nodeRedis4Client: { sendCommand(args: string[], options?: object): Promise<unknown> };
declare const lock: Lock;

async function fencing(): Promise<void> {
  const fence = new Lock.Fence(ioredisClient);
  const held = await lock.acquire('report', 30_000);
  const r: FencedSetResult = await fence.set('{report}:latest', held, 'v', { ttlMs: 60_000 });
  const accepted: boolean = r.accepted;
  const highest: number = r.token;
  const read = await fence.get('{report}:latest');
  const value: string | null = read.value;
  await Lock.fencedSet(nodeRedis4Client, 'k', 12, new Uint8Array([1, 2]));
  await Lock.fencedSet((args) => Promise.resolve(args.length), 'k', held.index, 3, { fenceKey: 'k:f' });
  const fenceKey: string = new Lock.Fence(nodeRedis4Client, { suffix: '#fence' }).fenceKey('k');
  void [accepted, highest, value, fenceKey];
  // @ts-expect-error: a token is a number or carries an index
  await fence.set('k', 'seven', 'v');
  // @ts-expect-error: not a Redis client
  new Lock.Fence({ get: () => 1 });
  await held.release();
}

async function leaders(): Promise<void> {
  const elector = lock.elect('scheduler', { ttl: 10_000, rejoinAfterMs: 500 });
  elector.on('elected', (term: LeaderTerm<'scheduler'>) => {
    const epoch: number = term.epoch;
    term.signal.addEventListener('abort', () => undefined);
    void epoch;
  });
  elector.on('revoked', (info: Revoked) => {
    const reason: 'conflict' | 'missing' | 'unreachable' | 'max-hold' | 'closed' | 'resigned' | 'stopped' = info.reason;
    void reason;
  });
  elector.on('error', (err) => void err.code);
  // @ts-expect-error: unknown event
  elector.on('elect', () => undefined);
  const leading: boolean = elector.isLeader;
  const epoch: number | null = elector.epoch;
  const resigned: boolean = await elector.resign({ rejoinAfterMs: 0 });
  for await (const term of elector) {
    const n: 'scheduler' = term.name;
    void n;
    break;
  }
  await elector.stop();
  const direct = new Lock.LeaderElector(lock, 7, { signal: new AbortController().signal });
  const name: number = direct.name;
  void [leading, epoch, resigned, name];
  // @ts-expect-error: ttl is a number of milliseconds
  lock.elect('x', { ttl: '10s' });
}

async function jobs(): Promise<void> {
  const out = await lock.runOnce(
    'daily-email',
    '0 9 * * *',
    async (signal: AbortSignal, info: RunInfo) => {
      const start: Date = info.period.start;
      void [signal, start, info.epoch];
      return 42;
    },
    { tz: 'Europe/Paris', ttl: 60_000 },
  );
  if (out.ran) {
    const result: number = out.result;
    const marked: boolean = out.marked;
    void [result, marked];
  } else {
    const why: 'done' | 'busy' | 'missed' = out.skipped;
    void why;
  }
  const typed: RunOnceResult<string> = await lock.runOnce('hourly', { every: 3_600_000, offset: 0 }, () => 'x', { wait: false });
  await lock.runOnce('c', { cron: '*/5 * * * * *', tz: 'UTC' }, () => undefined, { now: new Date() });
  const schedule = lock.schedule('tick', 60_000, async () => 'ok', { delayMs: 100, runNow: false });
  schedule.on('ran', (o) => void (o.ran && o.result.toUpperCase()));
  await schedule.stop();
  void typed;
  // @ts-expect-error: a schedule is not a boolean
  await lock.runOnce('bad', true, () => 1);
}

void [fencing, leaders, jobs];
