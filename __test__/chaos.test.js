'use strict';
// The chaos suite in CI: the history checker on hand-made histories and hand-made Redis truth (it
// must catch what it claims to catch, and must not take the library's word for a lease), then
// `chaos/run.js --quick`: holders SIGKILLed while holding, the subscriber connection killed from
// the server, and subscriber connections reset through a proxy right after hand-offs, under load
// from several processes; zero violations.
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const { check } = require('../chaos/checker');
const { parseMonitorLine, recordsFor, buildTruth } = require('../chaos/truth');

const ms = (x) => x * 1000; // the histories are in µs

/** A worker history: a grant of `id` with index `idx` at [t, until], released at rel (ms). */
function grant(
  w,
  c,
  id,
  idx,
  t,
  { until = t + 1000, rel = t + 10, ttl = 1000, op = 'try', imm = true, callT = t - 1, result = 'released' } = {},
) {
  const records = [
    { k: 'call', w, c, op, id, ttl, wait: op === 'try' ? undefined : 500, t: ms(callT) },
    { k: 'grant', w, c, id, idx, imm, ttl, until: ms(until), t: ms(t) },
  ];
  if (rel !== null) {
    records.push({ k: 'rel', w, c, t: ms(rel) });
    records.push({ k: 'reld', w, c, result, t: ms(rel + 1) });
  }
  return records;
}
const life = (w, recs) => [{ k: 'start', w, t: 0 }, ...recs, { k: 'end', w, t: ms(100000), pending: [] }];

describe('history checker', () => {
  it('accepts a clean handoff and counts its stall', () => {
    const r = check(
      [life(0, grant(0, 1, 'a', 1, 100, { rel: 200 })), life(1, grant(1, 1, 'a', 2, 205, { op: 'wait', imm: false, callT: 150 }))],
      [],
    );
    assert.equal(r.violations, 0, JSON.stringify(r.examples));
    assert.equal(r.grants, 2);
    assert.ok(r.maxStallMs > 0 && r.maxStallMs < 10, String(r.maxStallMs));
  });

  it('flags two holders believing at once', () => {
    const r = check([life(0, grant(0, 1, 'a', 1, 100, { rel: 300 })), life(1, grant(1, 1, 'a', 2, 200))], []);
    assert.equal(r.violationsByKind.overlap, 1);
  });

  it('flags a token going backwards, and a token issued twice', () => {
    const r = check([life(0, [...grant(0, 1, 'a', 5, 100), ...grant(0, 2, 'a', 4, 200), ...grant(0, 3, 'b', 5, 300)])], []);
    assert.equal(r.violationsByKind['token-order'], 1);
    assert.equal(r.violationsByKind['duplicate-token'], 1);
  });

  it('explains an overlap by a restart without persistence, not otherwise', () => {
    const histories = [life(0, grant(0, 1, 'a', 7, 100, { rel: 900 })), life(1, grant(1, 1, 'a', 1, 500))];
    const lost = check(histories, [{ k: 'fault', name: 'restart-sigkill', t0: ms(300), t1: ms(400), dataLoss: true }]);
    assert.equal(lost.violations, 0);
    assert.equal(lost.limitsByKind['overlap:data-loss'], 1);
    assert.equal(lost.limitsByKind['token-order:data-loss'], 1);
    const kept = check(histories, [{ k: 'fault', name: 'restart-sigkill', t0: ms(300), t1: ms(400), dataLoss: false }]);
    assert.equal(kept.violationsByKind.overlap, 1);
  });

  it("ends a killed holder's belief at its death, and measures the takeover", () => {
    const r = check(
      [
        life(0, [])
          .slice(0, 1)
          .concat(grant(0, 1, 'a', 1, 100, { rel: null })),
        life(1, grant(1, 1, 'a', 2, 1103, { op: 'wait', imm: false, callT: 150 })),
      ],
      [{ k: 'kill', w: 0, t: ms(300) }],
    );
    assert.equal(r.violations, 0, JSON.stringify(r.examples));
    assert.equal(r.takeovers, 1);
    assert.ok(Math.abs(r.maxTakeoverMs - 3) < 0.01, String(r.maxTakeoverMs));
  });

  it('flags a stuck call, a late wait, a crashed worker and an immortal key', () => {
    const r = check(
      [
        [
          { k: 'start', w: 0, t: 0 },
          { k: 'call', w: 0, c: 1, op: 'wait', id: 'a', ttl: 1000, wait: 500, t: ms(10) },
        ],
        life(1, [
          { k: 'call', w: 1, c: 1, op: 'wait', id: 'b', ttl: 1000, wait: 500, t: ms(10) },
          { k: 'fail', w: 1, c: 1, id: 'b', why: 'timeout', t: ms(10 + 500 + 7000) },
          { k: 'call', w: 1, c: 2, op: 'wait', id: 'c', ttl: 1000, wait: 500, t: ms(20) },
        ]),
      ],
      [{ k: 'keys', immortal: 1, overTtl: 0, leftAfterTtl: 0 }],
      { slackMs: 6000 },
    );
    assert.equal(r.violationsByKind.stuck, 2); // worker 0's call (it never ended) and worker 1's
    assert.equal(r.violationsByKind.late, 1);
    assert.equal(r.violationsByKind['worker-crash'], 1);
    assert.equal(r.violationsByKind['immortal-key'], 1);
  });

  it('a grant learnt of only after its lease ended (a stalled process) is never believed, so never overlaps', () => {
    const r = check(
      [
        life(0, grant(0, 1, 'a', 2, 1500, { rel: 1600 })),
        life(1, grant(1, 1, 'a', 1, 1501, { until: 1100, rel: 1502, callT: 100 })), // acquireLock sent at 100, ttl 1000
      ],
      [],
    );
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

describe('history checker against Redis truth', () => {
  const opts = { namespace: 'ns' };
  // Truth records as chaos/truth.js writes them (times in ms here, converted to µs).
  const hset = (t, id, idx) => ({ k: 'hset', t: ms(t), key: `ns:${id}`, idx });
  const pexpire = (t, id, ttl) => ({ k: 'pexpire', t: ms(t), key: `ns:${id}`, ms: ttl });
  const del = (t, id) => ({ k: 'del', t: ms(t), key: `ns:${id}` });
  /** acquire() holder: granted at `t` claiming `claimMs` (t + held.remainingMs), releasing at `rel`. */
  const lease = (w, c, id, idx, t, claimMs, rel) => [
    { k: 'call', w, c, op: 'lease', id, ttl: 500, wait: 1000, t: ms(t - 1) },
    { k: 'grant', w, c, id, idx, imm: true, ttl: 500, until: ms(t + claimMs), t: ms(t) },
    { k: 'rel', w, c, t: ms(rel) },
    { k: 'reld', w, c, result: 'released', t: ms(rel + 1) },
  ];
  // Redis: holder 0 got index 1 with a 500 ms TTL, nobody renewed it, it expired at 500.6; holder 1
  // took the key at 700 (index 2) and released it at 800.
  const truth = [hset(0.5, 'a', 1), pexpire(0.6, 'a', 500), hset(700, 'a', 2), pexpire(700.1, 'a', 1000), del(800.5, 'a')];
  const second = life(1, grant(1, 1, 'a', 2, 701, { callT: 699, rel: 800 }));

  it('catches a holder told 2,500 ms (remainingMs) while Redis let the key expire after 500 ms', () => {
    const r = check([life(0, lease(0, 1, 'a', 1, 1, 2500, 2400)), second], [], opts, truth);
    assert.equal(r.violationsByKind['overstated-lease'], 1, JSON.stringify(r.examples));
    const v = r.examples.find((e) => e.kind === 'overstated-lease');
    assert.equal(v.w, 0);
    assert.ok(Math.abs(v.overMs - 1899.4) < 0.5, String(v.overMs)); // believed until its release at 2400
    assert.equal(v.truth.endBy, 'expire');
    assert.equal(r.violationsByKind.overlap, 1); // and the two holders overlapped
  });

  it('accepts the honest version: the same holder told 499 ms', () => {
    const r = check([life(0, lease(0, 1, 'a', 1, 1, 499, 2400)), second], [], opts, truth);
    assert.equal(r.violations, 0, JSON.stringify(r.examples));
    assert.equal(r.truth.checkedBeliefs, 2);
  });

  it('judges a plain grant by the claim it can compute: call time + TTL asked for', () => {
    // acquireLock called at 0 with TTL 500 holds (stalled) until 900: it may believe until 500
    // only, which Redis honoured (expiry 500.6), so no violation although it released late.
    const plain = life(0, grant(0, 1, 'a', 1, 1, { callT: 0, ttl: 500, until: 500, rel: 900 }));
    assert.equal(check([plain, second], [], opts, truth).violations, 0);
    // Had it claimed call time + 1,000 ms, that outlives the key.
    const over = life(0, grant(0, 1, 'a', 1, 1, { callT: 0, ttl: 500, until: 1000, rel: 900 }));
    assert.equal(check([over, second], [], opts, truth).violationsByKind['overstated-lease'], 1);
  });

  it('flags a grant Redis never made', () => {
    const r = check([life(0, grant(0, 1, 'a', 7, 100))], [], opts, [hset(0.5, 'a', 1), pexpire(0.6, 'a', 500)]);
    assert.equal(r.violationsByKind['no-truth'], 1);
  });

  it('flags a waited grant held past its key on a stale ttl, unless its holder was frozen', () => {
    // waitAcquireLock granted in Redis at 0.5 (TTL 500) but learnt of at 600, told ttl 500:
    // claiming 600 + 500 although Redis keeps the key to 500.6. The library computes the ttl at
    // delivery, so only a freeze of the holder's own loop (the lag record) excuses it.
    const waited = (lagged, ttl) =>
      life(0, [
        ...(lagged ? [{ k: 'lag', w: 0, ms: 550, t: ms(590) }] : []),
        ...grant(0, 1, 'a', 1, 600, { op: 'wait', imm: false, callT: 0, ttl: 500, until: 600 + ttl, rel: 650 }),
      ]);
    const frozen = check([waited(true, 500), second], [], opts, truth);
    assert.equal(frozen.violations, 0, JSON.stringify(frozen.examples));
    assert.equal(frozen.limitsByKind['overstated-lease:client-pause'], 1);
    const notFrozen = check([waited(false, 500), second], [], opts, truth);
    assert.equal(notFrozen.violationsByKind['overstated-lease'], 1);
    assert.equal(notFrozen.truth.waitedClaimExcess.count, 1);
    // told what was left at delivery (nothing): an empty claim, no violation
    const honest = check([waited(false, 0), second], [], opts, truth);
    assert.equal(honest.violations, 0, JSON.stringify(honest.examples));
  });

  it('a belief reaching into a MONITOR gap is excused only by data loss (or its release, below)', () => {
    // Redis went away at 100 (MONITOR's last line) and came back empty at 400.
    const gapTruth = [
      hset(0.5, 'a', 1),
      pexpire(0.6, 'a', 1000),
      { k: 'gap', t0: ms(100), t1: ms(400) },
      { k: 'snap', t: ms(401), keys: [] },
    ];
    // (Its release at 300 was answered 'expired': nothing vouches for the key during the gap.)
    const h = life(0, grant(0, 1, 'a', 1, 1, { callT: 0, ttl: 1000, until: 1000, rel: 300, result: 'expired' }));
    const lossy = check([h], [{ k: 'fault', name: 'restart-sigkill', t0: ms(100), t1: ms(400), dataLoss: true }], opts, gapTruth);
    assert.equal(lossy.violations, 0, JSON.stringify(lossy.examples));
    assert.equal(lossy.limitsByKind['unverifiable:data-loss'], 1);
    const kept = check([h], [{ k: 'fault', name: 'restart-sigkill', t0: ms(100), t1: ms(400), dataLoss: false }], opts, gapTruth);
    assert.equal(kept.violationsByKind.unverifiable, 1);
    // The server was killed (without persistence) only after the release, at 350: MONITOR lost
    // the lines it had not sent yet, so the whole gap is the window of the loss.
    const killedLater = check([h], [{ k: 'fault', name: 'restart-sigkill', t0: ms(350), t1: ms(400), dataLoss: true }], opts, gapTruth);
    assert.equal(killedLater.violations, 0, JSON.stringify(killedLater.examples));
    assert.equal(killedLater.limitsByKind['unverifiable:data-loss'], 1);
    // The same gap, but the key still holds index 1 afterwards: it held throughout.
    const survived = [...gapTruth.slice(0, 3), { k: 'snap', t: ms(401), keys: [['ns:a', '1', 599]] }];
    assert.equal(check([h], [], opts, survived).violations, 0);
  });

  it("a belief into a MONITOR gap that ended with a release Redis answered 'released' is a monitor-gap limit", () => {
    // A server killed with persistence on: MONITOR's last lines are lost (the holder's release at
    // 300 among them), and the key is gone after the restart.
    const gapTruth = [
      hset(0.5, 'a', 1),
      pexpire(0.6, 'a', 1000),
      { k: 'gap', t0: ms(100), t1: ms(400) },
      { k: 'snap', t: ms(401), keys: [] },
    ];
    const holder = (result) => life(0, grant(0, 1, 'a', 1, 1, { callT: 0, ttl: 1000, until: 1000, rel: 300, result }));
    const released = check([holder('released')], [], opts, gapTruth);
    assert.equal(released.violations, 0, JSON.stringify(released.examples));
    assert.equal(released.limitsByKind['unverifiable:monitor-gap'], 1);
    // Redis said the key was no longer the holder's: nothing vouches for the belief in the gap.
    assert.equal(check([holder('expired')], [], opts, gapTruth).violationsByKind.unverifiable, 1);
    assert.equal(check([holder('conflict')], [], opts, gapTruth).violationsByKind.unverifiable, 1);
  });

  it('parses MONITOR lines, Lua commands included, into truth records', () => {
    const line = '1700000000.123456 [0 lua] "HSET" "ns:a b\\"c" "index" "5" "attempt" "u"';
    const cmd = parseMonitorLine(line);
    assert.equal(cmd.realUs, 1700000000123456);
    assert.equal(cmd.source, 'lua');
    assert.deepEqual(cmd.args, ['HSET', 'ns:a b"c', 'index', '5', 'attempt', 'u']);
    assert.deepEqual(recordsFor(cmd, 7, 'ns:'), [{ k: 'hset', t: 7, key: 'ns:a b"c', idx: 5 }]);
    assert.deepEqual(recordsFor(parseMonitorLine('1700000000.000001 [0 127.0.0.1:5] "DEL" "ns:x" "other"'), 8, 'ns:'), [
      { k: 'del', t: 8, key: 'ns:x' },
    ]);
    assert.deepEqual(recordsFor(parseMonitorLine('1700000000.000001 [0 lua] "PEXPIRE" "ns:x" "250"'), 9, 'ns:'), [
      { k: 'pexpire', t: 9, key: 'ns:x', ms: 250 },
    ]);
    const { intervals } = buildTruth([hset(1, 'x', 3), pexpire(1, 'x', 250), pexpire(200, 'x', 250), hset(800, 'x', 4), del(900, 'x')]);
    assert.deepEqual(
      intervals.get('ns:x').map((iv) => [iv.idx, iv.start / 1000, iv.end / 1000, iv.endBy]),
      [
        [3, 1, 450, 'expire'],
        [4, 800, 900, 'del'],
      ],
    );
  });
});

describe('chaos run --quick', () => {
  it(
    'holder SIGKILL, CLIENT KILL TYPE pubsub and subscriber resets after hand-offs under load: zero violations',
    { timeout: 120000 },
    async () => {
      const script = path.join(__dirname, '..', 'chaos', 'run.js');
      const env = { ...process.env };
      delete env.NODE_TEST_CONTEXT;
      const child = spawn(process.execPath, [script, '--quick'], { stdio: ['ignore', 'pipe', 'pipe'], env });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (d) => {
        out += d;
      });
      child.stderr.setEncoding('utf8').on('data', (d) => {
        err += d;
      });
      const code = await new Promise((resolve) => child.once('exit', resolve));
      const line = out.trim().split('\n').pop();
      let report;
      try {
        report = JSON.parse(line);
      } catch {
        assert.fail(`no JSON report (exit ${code}):\n${err}\n${out}`);
      }
      assert.equal(report.rows.length, 3);
      for (const row of report.rows) {
        assert.equal(row.violations, 0, `${row.scenario}: ${JSON.stringify(row.examples, null, 1)}\n${err}`);
        assert.ok(row.grants > 50, `${row.scenario}: only ${row.grants} grants`);
        assert.ok(row.faults > 0, `${row.scenario}: no fault injected`);
        assert.deepEqual(row.hungWorkers, []);
        // Every grant was checked against what Redis did (MONITOR), not only the library's word.
        assert.ok(row.truth && row.truth.checkedBeliefs === row.grants, `${row.scenario}: ${JSON.stringify(row.truth)}`);
      }
      const kill = report.rows.find((r) => r.scenario === 'holder-sigkill');
      assert.ok(kill.killedWorkers > 0);
      assert.equal(code, 0, err);
    },
  );
});
