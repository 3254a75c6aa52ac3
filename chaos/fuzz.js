#!/usr/bin/env node
'use strict';
// Fuzzes the public JavaScript API of redfour-native (see chaos/fuzz-child.js for what is checked).
//
//   node chaos/fuzz.js [--calls 100000] [--seed n] [--json file] [--no-tls]
//
// Starts a private redis-server, runs the fuzzer in a child process (throwing callbacks raise
// 'uncaughtException' by design, so it must not be this process) and fails on a crash, a hang,
// an unhandled rejection or an error without a documented code.

const { fork } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { startRedis, freePort } = require('../__test__/helpers/redis');

async function runFuzz({ calls = 100000, seed = Date.now() % 1e9, timeoutMs, roundSize, settleMs, tls } = {}) {
  const server = await startRedis();
  const deadPort = await freePort();
  const limit = timeoutMs || Math.max(60000, calls * 5);
  try {
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT;
    const child = fork(
      path.join(__dirname, 'fuzz-child.js'),
      [JSON.stringify({ url: server.url, port: server.port, deadPort, calls, seed, roundSize, settleMs, tls })],
      {
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
        env,
      },
    );
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      output = (output + d).slice(-20000);
    });
    child.stderr.setEncoding('utf8').on('data', (d) => {
      output = (output + d).slice(-20000);
    });
    let report = null;
    child.on('message', (m) => {
      if (m && (m.type === 'report' || m.type === 'fatal')) report = m;
    });
    let timer;
    const exit = await Promise.race([
      new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
      new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), limit);
      }),
    ]);
    clearTimeout(timer);
    if (exit === null) {
      child.kill('SIGKILL');
      return { ok: false, seed, calls, problem: `fuzzer did not finish within ${limit} ms (a hang)`, output, report };
    }
    const crashed = exit.signal !== null || exit.code !== 0;
    const problems = [];
    if (crashed) problems.push(`child exited with code ${exit.code}, signal ${exit.signal}`);
    if (!report) problems.push('no report from the child');
    else if (report.type === 'fatal') problems.push(`fuzzer failed: ${report.message}`);
    // Every violation fails the run: the bugs the fuzzer found are fixed, none is excused.
    const violations = report && report.violations ? report.violations : [];
    if (violations.length) problems.push(`${violations.length} violation(s)`);
    return { ok: problems.length === 0, seed, calls, exit, problems, violations, report, output: problems.length ? output : undefined };
  } finally {
    await server.cleanup();
  }
}

module.exports = { runFuzz };

if (require.main === module) {
  const argv = process.argv.slice(2);
  const opt = (name, fallback) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : fallback;
  };
  const calls = Number(opt('--calls', 100000));
  const seed = Number(opt('--seed', Date.now() % 1e9));
  runFuzz({ calls, seed, tls: !argv.includes('--no-tls') }).then(
    (result) => {
      const json = opt('--json', null);
      if (json) fs.writeFileSync(json, JSON.stringify(result, null, 2));
      const r = result.report || {};
      const s = r.stats || {};
      console.log(
        `fuzz: seed ${seed}, ${s.calls} calls in ${r.seconds} s: ${s.resolved} resolved, rejections ${JSON.stringify(s.rejected)}, sync throws ${JSON.stringify(s.thrown)}, ` +
          `${s.callbacks} callbacks (${s.callbackThrows} threw, ${s.uncaughtCallbackBooms} surfaced as uncaughtException), ` +
          `user errors passed through ${s.userErrorPassedThrough}, user errors reported as ERR_INTERNAL ${s.userErrorAsInternal}, RSS ${r.rssMb} MB`,
      );
      if (r.findings && r.findings.length) console.log('findings:', JSON.stringify(r.findings.slice(0, 5), null, 1));
      if (!result.ok) {
        console.log('FAIL:', result.problems || result.problem);
        console.log(JSON.stringify((result.violations || []).slice(0, 20), null, 1));
        if (result.output) console.log(result.output.slice(-5000));
        process.exitCode = 1;
      } else {
        console.log(
          "ok: no crash, no unhandled rejection, no uncaught exception but our callbacks', no hang, every error carries a documented code",
        );
      }
    },
    (err) => {
      console.error(err);
      process.exitCode = 2;
    },
  );
}
