'use strict';
// The `redfour-native run` CLI: exit codes, --wait/--no-wait, signal forwarding, lost leases.
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const { freePort } = require('./helpers/redis');
const { ROOT, uniqueNs, within, sleep, useRedis } = require('./helpers/common');
const { parseDuration, parseRunArgs } = require('../lib/cli');

const BIN = path.join(ROOT, 'bin', 'redfour-native.js');
let server;
const procs = [];
const { newLock } = useRedis({
  cleanup: async () => {
    for (const p of procs) {
      if (p.exitCode === null && p.signalCode === null) {
        try {
          p.kill('SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  },
  ready: (s) => {
    server = s;
  },
});

/** Starts the CLI; `done` resolves with {code, signal, stdout, stderr, ms}. */
function cli(args, { env = {} } = {}) {
  const started = Date.now();
  const childEnv = { ...process.env, REDIS_URL: server.url, ...env };
  delete childEnv.NODE_TEST_CONTEXT;
  const proc = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv });
  procs.push(proc);
  proc.stdoutText = '';
  proc.stderrText = '';
  proc.stdout.setEncoding('utf8').on('data', (d) => {
    proc.stdoutText += d;
  });
  proc.stderr.setEncoding('utf8').on('data', (d) => {
    proc.stderrText += d;
  });
  proc.done = new Promise((resolve) => {
    proc.once('close', (code, signal) =>
      resolve({ code, signal, stdout: proc.stdoutText, stderr: proc.stderrText, ms: Date.now() - started }),
    );
  });
  /** Resolves once stdout contains `text`. */
  proc.stdoutHas = (text, ms = 10000) =>
    within(
      new Promise((resolve) => {
        const check = () => {
          if (proc.stdoutText.includes(text)) {
            proc.stdout.off('data', check);
            resolve();
          }
        };
        proc.stdout.on('data', check);
        check();
      }),
      ms,
      `CLI stdout containing ${JSON.stringify(text)} (stdout: ${proc.stdoutText}, stderr: ${proc.stderrText})`,
    );
  return proc;
}

const run = (args, opts) => within(cli(args, opts).done, 20000, `redfour-native ${args.join(' ')}`);

/** `node -e SCRIPT` as the command under the lock. */
const nodeCmd = (script) => ['--', process.execPath, '-e', script];

describe('redfour-native run: exit codes', () => {
  it('runs the command under the lock and exits 0; the lock is released afterwards', async () => {
    const ns = uniqueNs('ok');
    const r = await run([
      'run',
      '--id',
      'job',
      '--ttl',
      '10s',
      '--namespace',
      ns,
      ...nodeCmd(`
      const Redis = require(${JSON.stringify(require.resolve('ioredis'))});
      const r = new Redis(process.env.REDIS_URL);
      r.hget(${JSON.stringify(`${ns}:job`)}, 'index').then((i) => { console.log('held index', i); r.disconnect(); });
    `),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /held index \d+/, 'the command ran while the lock was held');
    assert.equal(r.stderr, '');
    assert.equal(await server.command('EXISTS', `${ns}:job`), 0);
  });

  it("passes the command's exit code through, and 128+N when it dies by signal N", async () => {
    const ns = uniqueNs('codes');
    assert.equal((await run(['run', '--id', 'a', '--namespace', ns, ...nodeCmd('process.exit(3)')])).code, 3);
    assert.equal((await run(['run', '--id', 'a', '--namespace', ns, ...nodeCmd("process.kill(process.pid, 'SIGKILL')")])).code, 137);
    assert.equal((await run(['run', '--id', 'a', '--namespace', ns, '--', 'sh', '-c', 'exit 42'])).code, 42);
    assert.equal(await server.command('EXISTS', `${ns}:a`), 0);
  });

  it('--no-wait exits 75 at once when the lock is held; --wait D exits 75 after about D', async () => {
    const ns = uniqueNs('held');
    const holder = newLock(ns);
    const held = await holder.acquireLock('busy', 30000);
    const noWait = await run(['run', '--id', 'busy', '--namespace', ns, '--no-wait', ...nodeCmd("console.log('RAN')")]);
    assert.equal(noWait.code, 75);
    assert.doesNotMatch(noWait.stdout, /RAN/);
    assert.match(noWait.stderr, /held elsewhere/);
    const quiet = await run(['run', '--id', 'busy', '--namespace', ns, '--no-wait', '-q', ...nodeCmd("console.log('RAN')")]);
    assert.deepEqual([quiet.code, quiet.stderr], [75, '']);
    const waited = await run(['run', '--id', 'busy', '--namespace', ns, '--wait', '400ms', ...nodeCmd("console.log('RAN')")]);
    assert.equal(waited.code, 75);
    assert.doesNotMatch(waited.stdout, /RAN/);
    assert.ok(waited.ms >= 400, `gave up after ${waited.ms} ms`);
    await holder.releaseLock(held);
  });

  it('waits by default and runs as soon as the holder releases', async () => {
    const ns = uniqueNs('wait');
    const holder = newLock(ns);
    const held = await holder.acquireLock('w', 30000);
    const proc = cli(['run', '--id', 'w', '--namespace', ns, ...nodeCmd("console.log('RAN')")]);
    await sleep(500);
    assert.equal(proc.exitCode, null, 'the CLI should still be waiting');
    assert.equal(proc.stdoutText, '');
    await holder.releaseLock(held);
    const r = await within(proc.done, 5000, 'CLI after release');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /RAN/);
  });

  it('usage errors exit 64; --help exits 0; a missing command exits 127', async () => {
    assert.equal((await run(['run', '--ttl', '1s', '--', 'true'])).code, 64); // no --id
    assert.equal((await run(['run', '--id', 'x', '--ttl', 'soon', '--', 'true'])).code, 64);
    assert.equal((await run(['run', '--id', 'x'])).code, 64); // no command
    assert.equal((await run(['run', '--id', 'x', '--', 'true'], { env: { REDIS_URL: '' } })).code, 64);
    assert.equal((await run(['frobnicate'])).code, 64);
    const help = await run(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: redfour-native run/);
    assert.match(help.stdout, /Exit status/);
    const missing = await run(['run', '--id', 'x', '--namespace', uniqueNs('enoent'), '--', 'surely-no-such-command-here']);
    assert.equal(missing.code, 127);
  });

  it('exits 69 when Redis cannot be reached', async () => {
    const port = await freePort();
    const r = await run(['run', '--id', 'x', '--no-wait', '--redis', `redis://127.0.0.1:${port}`, '--', 'true']);
    assert.equal(r.code, 69, r.stderr);
    assert.match(r.stderr, /Redis/i);
  });
});

describe('redfour-native run: signals and lost leases', () => {
  it('forwards SIGTERM to the command and exits with its code', async () => {
    const proc = cli([
      'run',
      '--id',
      's',
      '--namespace',
      uniqueNs('sig'),
      ...nodeCmd(`
      process.on('SIGTERM', () => { console.log('child got SIGTERM'); process.exit(42); });
      console.log('ready'); setInterval(() => {}, 1000);
    `),
    ]);
    await proc.stdoutHas('ready');
    proc.kill('SIGTERM');
    const r = await within(proc.done, 5000, 'CLI after SIGTERM');
    assert.match(r.stdout, /child got SIGTERM/);
    assert.equal(r.code, 42, r.stderr);
  });

  it('a command killed by the forwarded SIGTERM makes the CLI exit 143; SIGINT and SIGHUP are forwarded too', async () => {
    const ns = uniqueNs('sig143');
    const proc = cli(['run', '--id', 's', '--namespace', ns, ...nodeCmd("console.log('ready'); setInterval(() => {}, 1000);")]);
    await proc.stdoutHas('ready');
    proc.kill('SIGTERM');
    const r = await within(proc.done, 5000, 'CLI after SIGTERM');
    assert.equal(r.code, 143, r.stderr);
    assert.equal(await server.command('EXISTS', `${ns}:s`), 0, 'released after the command died');

    for (const [signal, code] of [
      ['SIGINT', 130],
      ['SIGHUP', 129],
    ]) {
      const p = cli([
        'run',
        '--id',
        's',
        '--namespace',
        ns,
        ...nodeCmd(`
        process.on(${JSON.stringify(signal)}, () => { console.log('child got ${signal}'); process.exit(${code - 100}); });
        console.log('ready'); setInterval(() => {}, 1000);
      `),
      ]);
      await p.stdoutHas('ready');
      p.kill(signal);
      const out = await within(p.done, 5000, `CLI after ${signal}`);
      assert.match(out.stdout, new RegExp(`child got ${signal}`));
      assert.equal(out.code, code - 100);
    }
  });

  it('a signal while waiting for the lock ends the wait: exit 128+N, command not run', async () => {
    const ns = uniqueNs('sigwait');
    const holder = newLock(ns);
    const held = await holder.acquireLock('w', 30000);
    const proc = cli(['run', '--id', 'w', '--namespace', ns, ...nodeCmd("console.log('RAN')")]);
    await sleep(500);
    proc.kill('SIGTERM');
    const r = await within(proc.done, 5000, 'CLI after SIGTERM while waiting');
    assert.equal(r.code, 143);
    assert.doesNotMatch(r.stdout, /RAN/);
    const stillHeld = await holder.releaseLock(held);
    assert.equal(stillHeld.result, 'released', 'the waiting CLI must not have touched the lock');
  });

  it('when the lease is lost the command gets SIGTERM and the CLI exits 70', async () => {
    const ns = uniqueNs('lost');
    const proc = cli([
      'run',
      '--id',
      'l',
      '--ttl',
      '600ms',
      '--namespace',
      ns,
      ...nodeCmd(`
      process.on('SIGTERM', () => { console.log('child got SIGTERM'); process.exit(0); });
      console.log('ready'); setInterval(() => {}, 1000);
    `),
    ]);
    await proc.stdoutHas('ready');
    await server.command('DEL', `${ns}:l`);
    const r = await within(proc.done, 5000, 'CLI after the key was deleted');
    assert.equal(r.code, 70, r.stderr);
    assert.match(r.stdout, /child got SIGTERM/);
    assert.match(r.stderr, /lock lost/);
  });

  it('keeps the lock across many TTLs while the command runs (renewed from the CLI)', async () => {
    const ns = uniqueNs('renew');
    const proc = cli([
      'run',
      '--id',
      'r',
      '--ttl',
      '300ms',
      '--namespace',
      ns,
      ...nodeCmd("console.log('ready'); setTimeout(() => console.log('finished'), 1500);"),
    ]);
    await proc.stdoutHas('ready');
    const other = newLock(ns);
    for (let i = 0; i < 5; i++) {
      assert.equal((await other.acquireLock('r', 1000)).success, false, `lock free at check ${i}`);
      await sleep(250);
    }
    const r = await within(proc.done, 5000, 'CLI');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /finished/);
  });
});

describe('CLI argument parsing', () => {
  it('durations', () => {
    assert.equal(parseDuration('1500'), 1500);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('10s'), 10000);
    assert.equal(parseDuration('1.5m'), 90000);
    assert.equal(parseDuration('10m'), 600000);
    assert.equal(parseDuration('1h'), 3600000);
    assert.equal(parseDuration('2d'), 172800000);
    assert.equal(parseDuration('0', { allowZero: true }), 0);
    for (const bad of ['', 'ms', '-1s', '1w', '0', '30 days', '1e3', '25d']) {
      assert.throws(() => parseDuration(bad), /duration/, bad);
    }
  });

  it('options, = forms, and the command after -- or the first non-option', () => {
    const env = { REDIS_URL: 'redis://127.0.0.1:1' };
    const a = parseRunArgs(['--id=job', '--ttl', '10m', '--no-wait', '--namespace', 'ns', '--', 'cmd', '--id', 'x'], env);
    assert.deepEqual(a.command, ['cmd', '--id', 'x']);
    assert.equal(a.opts.id, 'job');
    assert.equal(a.opts.ttl, 600000);
    assert.equal(a.opts.waitMs, 0);
    assert.equal(a.opts.namespace, 'ns');
    assert.equal(a.opts.redis, 'redis://127.0.0.1:1');
    const b = parseRunArgs(['--id', 'j', '--wait', '30s', '--redis', 'redis://h:2', 'echo', 'hi'], env);
    assert.deepEqual(b.command, ['echo', 'hi']);
    assert.equal(b.opts.waitMs, 30000);
    assert.equal(b.opts.redis, 'redis://h:2');
    assert.equal(b.opts.ttl, 30000);
    assert.throws(() => parseRunArgs(['--id', 'j', '--bogus', '--', 'x'], env), /unknown option/);
    assert.throws(() => parseRunArgs(['--id'], env), /needs a value/);
  });
});
