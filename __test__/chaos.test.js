'use strict';
// The chaos suite in CI: the history checker on hand-made histories (it must catch what it claims
// to catch), then `chaos/run.js --quick`: holders SIGKILLed while holding and the subscriber
// connection killed from the server, under load from several processes; zero violations.
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const { check } = require('../chaos/checker');

const ms = (x) => x * 1000; // the histories are in µs

/** A worker history: a grant of `id` with index `idx` at [t, until], released at rel (ms). */
function grant(w, c, id, idx, t, { until = t + 1000, rel = t + 10, ttl = 1000, op = 'try', imm = true, callT = t - 1 } = {}) {
  const records = [
    { k: 'call', w, c, op, id, ttl, wait: op === 'try' ? undefined : 500, t: ms(callT) },
    { k: 'grant', w, c, id, idx, imm, ttl, until: ms(until), t: ms(t) },
  ];
  if (rel !== null) {
    records.push({ k: 'rel', w, c, t: ms(rel) });
    records.push({ k: 'reld', w, c, result: 'released', t: ms(rel + 1) });
  }
  return records;
}
const life = (w, recs) => [{ k: 'start', w, t: 0 }, ...recs, { k: 'end', w, t: ms(100000), pending: [] }];

describe('history checker', () => {
  it('accepts a clean handoff and counts its stall', () => {
    const r = check([
      life(0, grant(0, 1, 'a', 1, 100, { rel: 200 })),
      life(1, grant(1, 1, 'a', 2, 205, { op: 'wait', imm: false, callT: 150 })),
    ], []);
    assert.equal(r.violations, 0, JSON.stringify(r.examples));
    assert.equal(r.grants, 2);
    assert.ok(r.maxStallMs > 0 && r.maxStallMs < 10, String(r.maxStallMs));
  });

  it('flags two holders believing at once', () => {
    const r = check([
      life(0, grant(0, 1, 'a', 1, 100, { rel: 300 })),
      life(1, grant(1, 1, 'a', 2, 200)),
    ], []);
    assert.equal(r.violationsByKind.overlap, 1);
  });

  it('flags a token going backwards, and a token issued twice', () => {
    const r = check([
      life(0, [...grant(0, 1, 'a', 5, 100), ...grant(0, 2, 'a', 4, 200), ...grant(0, 3, 'b', 5, 300)]),
    ], []);
    assert.equal(r.violationsByKind['token-order'], 1);
    assert.equal(r.violationsByKind['duplicate-token'], 1);
  });

  it('explains an overlap by a restart without persistence, not otherwise', () => {
    const histories = [
      life(0, grant(0, 1, 'a', 7, 100, { rel: 900 })),
      life(1, grant(1, 1, 'a', 1, 500)),
    ];
    const lost = check(histories, [{ k: 'fault', name: 'restart-sigkill', t0: ms(300), t1: ms(400), dataLoss: true }]);
    assert.equal(lost.violations, 0);
    assert.equal(lost.limitsByKind['overlap:data-loss'], 1);
    assert.equal(lost.limitsByKind['token-order:data-loss'], 1);
    const kept = check(histories, [{ k: 'fault', name: 'restart-sigkill', t0: ms(300), t1: ms(400), dataLoss: false }]);
    assert.equal(kept.violationsByKind.overlap, 1);
  });

  it('ends a killed holder\'s belief at its death, and measures the takeover', () => {
    const r = check([
      life(0, []).slice(0, 1).concat(grant(0, 1, 'a', 1, 100, { rel: null })),
      life(1, grant(1, 1, 'a', 2, 1103, { op: 'wait', imm: false, callT: 150 })),
    ], [{ k: 'kill', w: 0, t: ms(300) }]);
    assert.equal(r.violations, 0, JSON.stringify(r.examples));
    assert.equal(r.takeovers, 1);
    assert.ok(Math.abs(r.maxTakeoverMs - 3) < 0.01, String(r.maxTakeoverMs));
  });

  it('flags a stuck call, a late wait, a crashed worker and an immortal key', () => {
    const r = check([
      [{ k: 'start', w: 0, t: 0 }, { k: 'call', w: 0, c: 1, op: 'wait', id: 'a', ttl: 1000, wait: 500, t: ms(10) }],
      life(1, [
        { k: 'call', w: 1, c: 1, op: 'wait', id: 'b', ttl: 1000, wait: 500, t: ms(10) },
        { k: 'fail', w: 1, c: 1, id: 'b', why: 'timeout', t: ms(10 + 500 + 7000) },
        { k: 'call', w: 1, c: 2, op: 'wait', id: 'c', ttl: 1000, wait: 500, t: ms(20) },
      ]),
    ], [{ k: 'keys', immortal: 1, overTtl: 0, leftAfterTtl: 0 }], { slackMs: 6000 });
    assert.equal(r.violationsByKind.stuck, 2); // worker 0's call (it never ended) and worker 1's
    assert.equal(r.violationsByKind.late, 1);
    assert.equal(r.violationsByKind['worker-crash'], 1);
    assert.equal(r.violationsByKind['immortal-key'], 1);
  });

  it('a grant learnt of only after its lease ended (a stalled process) is never believed, so never overlaps', () => {
    const r = check([
      life(0, grant(0, 1, 'a', 2, 1500, { rel: 1600 })),
      life(1, grant(1, 1, 'a', 1, 1501, { until: 1100, rel: 1502, callT: 100 })), // acquireLock sent at 100, ttl 1000
    ], []);
    assert.equal(r.violations, 0, JSON.stringify(r.examples));
  });

  it('a lease check that says valid extends the belief; a later grant inside it is an overlap', () => {
    const lease = [
      { k: 'call', w: 0, c: 1, op: 'lease', id: 'a', ttl: 600, wait: 500, t: ms(0) },
      { k: 'grant', w: 0, c: 1, id: 'a', idx: 1, imm: true, ttl: 600, until: ms(600), t: ms(1) },
      { k: 'use', w: 0, c: 1, until: ms(1500), t: ms(900) },
      { k: 'rel', w: 0, c: 1, t: ms(1400) },
      { k: 'reld', w: 0, c: 1, result: 'released', t: ms(1401) },
    ];
    const r = check([life(0, lease), life(1, grant(1, 1, 'a', 2, 1000))], []);
    assert.equal(r.violationsByKind.overlap, 1);
  });
});

describe('chaos run --quick', () => {
  it('holder SIGKILL and CLIENT KILL TYPE pubsub under load: zero violations', { timeout: 90000 }, async () => {
    const script = path.join(__dirname, '..', 'chaos', 'run.js');
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT;
    const child = spawn(process.execPath, [script, '--quick'], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { err += d; });
    const code = await new Promise((resolve) => child.once('exit', resolve));
    const line = out.trim().split('\n').pop();
    let report;
    try {
      report = JSON.parse(line);
    } catch {
      assert.fail(`no JSON report (exit ${code}):\n${err}\n${out}`);
    }
    assert.equal(report.rows.length, 2);
    for (const row of report.rows) {
      assert.equal(row.violations, 0, `${row.scenario}: ${JSON.stringify(row.examples, null, 1)}\n${err}`);
      assert.ok(row.grants > 50, `${row.scenario}: only ${row.grants} grants`);
      assert.ok(row.faults > 0, `${row.scenario}: no fault injected`);
      assert.deepEqual(row.hungWorkers, []);
    }
    const kill = report.rows.find((r) => r.scenario === 'holder-sigkill');
    assert.ok(kill.killedWorkers > 0);
    assert.equal(code, 0, err);
  });
});
