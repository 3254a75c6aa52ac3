'use strict';
// Run-once jobs: exactly once per period across processes, a retry after a runner dies, periods
// from intervals and cron expressions, and the per-process scheduler.
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { uniqueNs, forkFixture, within, sleep, rejectsWithCode, useRedis } = require('./helpers/common');
const { periodAt, parseSchedule } = require('../lib/run-once');

let server;
const children = [];
const { newLock } = useRedis({
  cleanup: async () => {
    await Promise.allSettled(children.map((c) => c.ensureDead()));
  },
  ready: (s) => {
    server = s;
  },
});

function spawnWorker(args) {
  const child = forkFixture('run-once-worker', { url: server.url, ...args });
  children.push(child);
  return child;
}

describe('runOnce across processes', () => {
  it('runs the job exactly once among 5 processes started together', async () => {
    const namespace = uniqueNs('five');
    const countKey = `${namespace}:count`;
    const common = { namespace, name: 'daily-email', every: 60000, now: Date.now(), ttl: 5000, jobMs: 300, countKey };
    const workers = Array.from({ length: 5 }, () => spawnWorker(common));
    await Promise.all(workers.map((w) => w.waitFor((m) => m.type === 'ready', 10000)));
    for (const w of workers) w.send({ cmd: 'go' });
    const outcomes = await Promise.all(workers.map((w) => w.waitFor((m) => m.type === 'outcome' || m.type === 'error', 15000)));
    assert.deepEqual(
      outcomes.filter((o) => o.type === 'error'),
      [],
    );
    const ran = outcomes.filter((o) => o.ran);
    assert.equal(ran.length, 1, JSON.stringify(outcomes));
    assert.equal(ran[0].marked, true);
    assert.match(ran[0].result, /^done by \d+$/);
    for (const o of outcomes.filter((x) => !x.ran)) assert.equal(o.skipped, 'done');
    assert.equal(await server.command('GET', countKey), '1');
    await Promise.all(workers.map((w) => within(w.exit, 5000, 'worker exit')));

    // A process arriving later in the same period skips without running.
    const late = spawnWorker(common);
    await late.waitFor((m) => m.type === 'ready', 10000);
    late.send({ cmd: 'go' });
    const lateOutcome = await late.waitFor((m) => m.type === 'outcome', 10000);
    assert.deepEqual([lateOutcome.ran, lateOutcome.skipped], [false, 'done']);
    assert.equal(await server.command('GET', countKey), '1');
  });

  it('retries in the same period after the runner is SIGKILLed mid-job (once its lease ends)', async () => {
    const namespace = uniqueNs('crash');
    const countKey = `${namespace}:count`;
    const ttl = 1000;
    const common = { namespace, name: 'report', every: 3600000, now: Date.now(), ttl, countKey };
    const doomed = spawnWorker({ ...common, hang: true });
    const survivor = spawnWorker({ ...common, jobMs: 50 });
    await Promise.all([doomed, survivor].map((w) => w.waitFor((m) => m.type === 'ready', 10000)));
    doomed.send({ cmd: 'go' });
    await doomed.waitFor((m) => m.type === 'started', 10000);
    survivor.send({ cmd: 'go' }); // waits behind the doomed runner
    await sleep(300);
    assert.equal(
      survivor.messages.some((m) => m.type === 'started'),
      false,
      'ran while the first runner held the lease',
    );
    const killedAt = Date.now();
    doomed.kill('SIGKILL');
    const outcome = await survivor.waitFor((m) => m.type === 'outcome' || m.type === 'error', ttl + 10000);
    assert.equal(outcome.type, 'outcome', JSON.stringify(outcome));
    assert.equal(outcome.ran, true);
    const started = survivor.messages.find((m) => m.type === 'started');
    assert.ok(started.at - killedAt <= ttl + 1500, `retry began ${started.at - killedAt} ms after the kill`);
    assert.equal(await server.command('GET', countKey), '2');
  });
});

describe('runOnce in one process', () => {
  it('runs once per period; the next period runs again; the result and epoch come back', async () => {
    const lock = newLock(uniqueNs('periods'));
    const base = Date.UTC(2030, 0, 1, 12, 0, 0);
    let runs = 0;
    const job = async (signal, info) => {
      runs += 1;
      assert.equal(signal.aborted, false);
      return `${info.name}@${info.period.start.toISOString()}`;
    };
    const first = await lock.runOnce('hourly', 3600000, job, { now: base + 10 });
    assert.equal(first.ran, true);
    assert.equal(first.result, 'hourly@2030-01-01T12:00:00.000Z');
    assert.equal(first.period.id, `hourly:${base}`);
    assert.deepEqual(first.period.end, new Date(base + 3600000));
    assert.ok(Number.isInteger(first.epoch) && first.epoch > 0);
    const again = await lock.runOnce('hourly', 3600000, job, { now: base + 3599999 });
    assert.deepEqual([again.ran, again.skipped], [false, 'done']);
    const next = await lock.runOnce('hourly', 3600000, job, { now: base + 3600000 });
    assert.equal(next.ran, true);
    assert.ok(next.epoch > first.epoch);
    assert.equal(runs, 2);
  });

  it('a job that throws is not marked done: its error passes through unchanged and a retry runs', async () => {
    const lock = newLock(uniqueNs('throws'));
    const now = Date.now();
    class MyError extends Error {}
    await assert.rejects(
      lock.runOnce(
        'flaky',
        60000,
        async () => {
          throw new MyError('boom');
        },
        { now },
      ),
      (err) => err instanceof MyError && err.message === 'boom',
    );
    const retry = await lock.runOnce('flaky', 60000, async () => 'ok', { now });
    assert.deepEqual([retry.ran, retry.result], [true, 'ok']);
  });

  it('wait: false skips with "busy" while another runner holds the period', async () => {
    const lock = newLock(uniqueNs('busy'));
    const now = Date.now();
    let release;
    const gate = new Promise((resolve) => {
      release = resolve;
    });
    const running = lock.runOnce('slow', 60000, () => gate, { now });
    await sleep(100);
    const busy = await lock.runOnce('slow', 60000, async () => 'never', { now, wait: false });
    assert.deepEqual([busy.ran, busy.skipped], [false, 'busy']);
    const waiter = lock.runOnce('slow', 60000, async () => 'never', { now, waitMs: 5000 });
    release('first');
    assert.deepEqual((await running).result, 'first');
    const waited = await waiter;
    assert.deepEqual([waited.ran, waited.skipped], [false, 'done']);
  });

  it('the done marker is a lock key that expires after the period (plus grace), never released', async () => {
    const ns = uniqueNs('marker');
    const lock = newLock(ns);
    const out = await lock.runOnce('m', 10000, async () => 1, { graceMs: 5000 });
    const pttl = await server.command('PTTL', `${ns}:${out.period.id}:done`);
    const expected = out.period.end.getTime() - Date.now() + 5000;
    assert.ok(pttl > 0 && Math.abs(pttl - expected) < 1000, `PTTL ${pttl}, expected about ${expected}`);
    assert.equal(await server.command('EXISTS', `${ns}:${out.period.id}`), 0, 'the run lock was released');
  });

  it('argument errors', async () => {
    const lock = newLock(uniqueNs('args'));
    await rejectsWithCode(
      lock.runOnce('', 1000, async () => 1),
      'ERR_INVALID_ARG',
      TypeError,
    );
    await rejectsWithCode(
      lock.runOnce('x', 0, async () => 1),
      'ERR_INVALID_ARG',
      TypeError,
    );
    await rejectsWithCode(
      lock.runOnce('x', 'not a cron', async () => 1),
      'ERR_INVALID_ARG',
      TypeError,
    );
    await rejectsWithCode(
      lock.runOnce('x', { cron: '0 9 * * *', tz: 'Nowhere/Atlantis' }, async () => 1),
      'ERR_INVALID_ARG',
      TypeError,
    );
    await rejectsWithCode(lock.runOnce('x', 1000, 'not a function'), 'ERR_INVALID_ARG', TypeError);
    await rejectsWithCode(
      lock.runOnce('x', 1000, async () => 1, { ttl: -1 }),
      'ERR_INVALID_ARG',
      TypeError,
    );
  });
});

describe('periods', () => {
  it('intervals are aligned to the Unix epoch, shifted by offset', () => {
    const day = 86400000;
    const at = Date.UTC(2030, 5, 15, 13, 45, 10, 500);
    assert.deepEqual(periodAt(parseSchedule(day), at), { start: Date.UTC(2030, 5, 15), end: Date.UTC(2030, 5, 16) });
    const nine = parseSchedule({ every: day, offset: 9 * 3600000 });
    assert.deepEqual(periodAt(nine, at), { start: Date.UTC(2030, 5, 15, 9), end: Date.UTC(2030, 5, 16, 9) });
    assert.deepEqual(periodAt(nine, Date.UTC(2030, 5, 15, 8, 59)), { start: Date.UTC(2030, 5, 14, 9), end: Date.UTC(2030, 5, 15, 9) });
    assert.deepEqual(periodAt(parseSchedule(1000), 5000), { start: 5000, end: 6000 });
  });

  it('cron periods run from one fire time to the next, in the given time zone', () => {
    const daily = parseSchedule({ cron: '0 9 * * *', tz: 'UTC' });
    const nine = Date.UTC(2030, 0, 2, 9);
    assert.deepEqual(periodAt(daily, nine), { start: nine, end: Date.UTC(2030, 0, 3, 9) });
    assert.deepEqual(periodAt(daily, nine - 1), { start: Date.UTC(2030, 0, 1, 9), end: nine });
    assert.deepEqual(periodAt(daily, nine + 3600000), { start: nine, end: Date.UTC(2030, 0, 3, 9) });
    // 09:00 in New York is 14:00 UTC in January.
    const ny = parseSchedule('0 9 * * *', { tz: 'America/New_York' });
    assert.deepEqual(periodAt(ny, Date.UTC(2030, 0, 2, 15)), { start: Date.UTC(2030, 0, 2, 14), end: Date.UTC(2030, 0, 3, 14) });
    const everyFive = parseSchedule({ cron: '*/5 * * * * *', tz: 'UTC' });
    assert.deepEqual(periodAt(everyFive, 7200), { start: 5000, end: 10000 });
    // The day clocks go forward in New York (2030-03-10): 09:00 is 13:00 UTC from then on.
    assert.deepEqual(periodAt(ny, Date.UTC(2030, 2, 10, 15)), { start: Date.UTC(2030, 2, 10, 13), end: Date.UTC(2030, 2, 11, 13) });
  });

  it('a process that only locks never loads the cron parser', async () => {
    const { execFileSync } = require('node:child_process');
    const script = `
      const Lock = require(${JSON.stringify(require('node:path').join(__dirname, '..'))});
      const lock = new Lock({ redis: process.argv[1], namespace: 'nocron' });
      lock.acquireLock('m', 1000).then((r) => lock.releaseLock(r)).then(() => lock.close()).then(() => {
        console.log(JSON.stringify(Object.keys(require.cache).filter((f) => /croner|cron-parser|luxon/.test(f))));
      });`;
    const loaded = JSON.parse(execFileSync(process.execPath, ['-e', script, server.url], { encoding: 'utf8' }));
    assert.deepEqual(loaded, []);
  });
});

describe('schedule()', () => {
  it('three schedulers on one interval run each period exactly once between them', async () => {
    const ns = uniqueNs('sched');
    const ran = [];
    const schedulers = [0, 1, 2].map((i) => {
      const lock = newLock(ns);
      return lock.schedule(
        'tick',
        300,
        async (signal, info) => {
          ran.push({ who: i, period: info.period.id });
          await sleep(20);
        },
        { ttl: 2000 },
      );
    });
    try {
      await sleep(1600);
    } finally {
      await Promise.all(schedulers.map((s) => s.stop()));
    }
    const periods = ran.map((r) => r.period);
    assert.equal(new Set(periods).size, periods.length, `a period ran twice: ${JSON.stringify(ran)}`);
    assert.ok(periods.length >= 3, `only ${periods.length} periods ran: ${JSON.stringify(ran)}`);
  });

  it('a job longer than its period does not make the schedulers skip the next periods', async () => {
    const ns = uniqueNs('long');
    const ran = [];
    const schedulers = [0, 1].map((i) =>
      newLock(ns).schedule(
        'slow',
        300,
        async (signal, info) => {
          ran.push({ who: i, period: info.period.id });
          await sleep(450);
        },
        { ttl: 2000 },
      ),
    );
    try {
      await sleep(2000);
    } finally {
      await Promise.all(schedulers.map((s) => s.stop()));
    }
    const periods = ran.map((r) => r.period);
    assert.equal(new Set(periods).size, periods.length, `a period ran twice: ${JSON.stringify(ran)}`);
    assert.ok(periods.length >= 4, `only ${periods.length} periods ran in 2 s: ${JSON.stringify(ran)}`);
  });
});
