#!/usr/bin/env node
'use strict';
// The OAuth scenario from redfour's announcement, made real: several processes ask for the same
// users' access tokens at the same moment; the token is stale, and refreshing it is slow and must
// happen once. Each getAccessToken() runs inside waitAcquireLock(userId, ...): the first caller
// refreshes, everybody else waits, is woken by the release message and reads the cached token.
//
//   npm run demo                        # starts a private redis-server on a free loopback port
//   REDIS_URL=redis://host:6379 npm run demo
//
// Exits non-zero if any user's token was refreshed more (or less) than once.

const { fork, spawn } = require('node:child_process');
const net = require('node:net');
const crypto = require('node:crypto');

const WORKERS = 4;
const USERS = ['alice', 'bob'];
const CALLS_PER_USER_PER_WORKER = 3;
const LOCK_TTL_MS = 10_000; // Far above the refresh time: a wake-up by expiry instead of release would show.
const WAIT_TTL_MS = 8_000;
const REFRESH_MS = 200;
const DEADLINE_MS = 15_000;

const keys = (run) => ({
  namespace: `demo:${run}:getAccessToken`,
  token: (user) => `demo:${run}:token:${user}`,
  refreshes: (user) => `demo:${run}:refreshes:${user}`,
});

if (process.env.DEMO_ROLE === 'worker') {
  worker();
} else {
  main().catch((err) => {
    console.error(`\ndemo failed: ${err && err.stack ? err.stack : err}`);
    process.exitCode = 1;
    cleanup();
  });
}

// ---------------------------------------------------------------------------------------------
// Worker process: the application code.

function worker() {
  const Lock = require('..');
  const Redis = require('ioredis');
  const { REDIS_URL, DEMO_RUN } = process.env;
  const k = keys(DEMO_RUN);
  const name = `worker ${process.env.DEMO_WORKER}`;

  const accessTokenLock = new Lock({ redis: REDIS_URL, namespace: k.namespace });
  const redis = new Redis(REDIS_URL);
  const report = (event) => process.send({ worker: name, pid: process.pid, ...event });

  // The slow call to the OAuth provider. The refresh counter lets the demo prove it ran once.
  function refreshToken(userId, fencingIndex, done) {
    report({ type: 'refresh-start', userId, index: fencingIndex });
    setTimeout(() => {
      redis.incr(k.refreshes(userId), (err, n) => {
        if (err) return done(err);
        const token = {
          value: `${userId}-token-${n}-${crypto.randomBytes(3).toString('hex')}`,
          expires: Date.now() + 60 * 60 * 1000,
          refreshedBy: name,
        };
        redis.set(k.token(userId), JSON.stringify(token), (setErr) => done(setErr, token));
      });
    }, REFRESH_MS);
  }

  function getTokenForUser(userId, done) {
    redis.get(k.token(userId), (err, raw) => done(err, raw ? JSON.parse(raw) : null));
  }

  // The blog post's getAccessToken, with its freshness test the right way round.
  function getAccessToken(userId, done) {
    const started = Date.now();
    accessTokenLock.waitAcquireLock(userId, LOCK_TTL_MS, WAIT_TTL_MS, (err, lock) => {
      if (err) return done(err);
      if (!lock.success) return done(new Error(`could not get the lock for ${userId} within ${WAIT_TTL_MS} ms`));
      const waited = Date.now() - started;
      const finish = (workErr, token, refreshed) => {
        accessTokenLock.releaseLock(lock, (releaseErr, released) => {
          const failure = workErr || releaseErr;
          if (failure) return done(failure);
          report({
            type: 'call',
            userId,
            immediate: lock.immediate,
            waited,
            index: lock.index,
            refreshed,
            token: token.value,
            released: released.result,
          });
          done(null, token);
        });
      };
      getTokenForUser(userId, (readErr, token) => {
        if (readErr) return finish(readErr);
        if (token && token.expires > Date.now()) return finish(null, token, false);
        refreshToken(userId, lock.index, (refreshErr, fresh) => finish(refreshErr, fresh, true));
      });
    });
  }

  process.once('message', async (msg) => {
    if (msg !== 'go') return;
    const calls = [];
    for (const userId of USERS) {
      for (let i = 0; i < CALLS_PER_USER_PER_WORKER; i++) {
        calls.push(new Promise((resolve, reject) => getAccessToken(userId, (err, token) => (err ? reject(err) : resolve(token)))));
      }
    }
    try {
      await Promise.all(calls);
      report({ type: 'done' });
    } catch (err) {
      report({ type: 'error', message: String(err && err.stack ? err.stack : err) });
    }
    // Close everything, then let the process end by itself: nothing of the lock may keep it alive.
    await Promise.allSettled([accessTokenLock.close(), redis.quit()]);
    process.disconnect();
  });
  report({ type: 'ready' });
}

// ---------------------------------------------------------------------------------------------
// Parent process: starts Redis if needed, forks the workers, tells the story, checks the outcome.

let redisServer = null;
const workers = new Set();

function cleanup() {
  for (const child of workers) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  workers.clear();
  if (redisServer && redisServer.exitCode === null && redisServer.signalCode === null) {
    try {
      process.kill(redisServer.pid, 'SIGTERM');
    } catch {
      // Already gone.
    }
  }
  redisServer = null;
}

process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping`);
    cleanup();
    process.exit(128 + { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 }[signal]);
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function startRedisServer(port) {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'notice'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    const timer = setTimeout(() => fail(new Error(`redis-server did not become ready in 5 s:\n${output}`)), 5000);
    function fail(err) {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    }
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err.code === 'ENOENT' ? new Error('redis-server is not on PATH: install it, or set REDIS_URL to a running Redis') : err);
    });
    child.on('exit', (code, signal) => fail(new Error(`redis-server exited early (${signal || code}):\n${output}`)));
    const onData = (chunk) => {
      output += chunk;
      if (/ready to accept connections/i.test(output)) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        child.stdout.removeListener('data', onData);
        child.stdout.resume();
        child.stderr.resume();
        resolve(child);
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', (chunk) => (output += chunk));
  });
}

async function redisUrl() {
  if (process.env.REDIS_URL) {
    console.log(`Using Redis at ${process.env.REDIS_URL.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')} (REDIS_URL)`);
    return process.env.REDIS_URL;
  }
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      redisServer = await startRedisServer(port);
      console.log(`Started a private redis-server (pid ${redisServer.pid}) on 127.0.0.1:${port}`);
      return `redis://127.0.0.1:${port}`;
    } catch (err) {
      // Somebody may have taken the port between probing and binding: try another one.
      if (attempt >= 3 || /not on PATH/.test(err.message)) throw err;
    }
  }
}

function startWorker(index, env) {
  const child = fork(__filename, [], { env: { ...process.env, ...env, DEMO_ROLE: 'worker', DEMO_WORKER: String(index) } });
  workers.add(child);
  return child;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : 0;
}

async function main() {
  const overall = setTimeout(() => {
    console.error(`\ndemo failed: not finished after ${DEADLINE_MS / 1000} s`);
    cleanup();
    process.exit(1);
  }, DEADLINE_MS);
  overall.unref();

  require('..'); // Fail here, once, with the loader's message if the addon is not built.
  const url = await redisUrl();
  const run = crypto.randomBytes(4).toString('hex');
  const k = keys(run);
  const Redis = require('ioredis');
  const redis = new Redis(url);

  // Every user starts with a token that expired a minute ago.
  for (const user of USERS) {
    await redis.set(k.token(user), JSON.stringify({ value: `${user}-token-0`, expires: Date.now() - 60_000 }));
  }
  console.log(`Tokens of ${USERS.join(' and ')} are stale. Forking ${WORKERS} worker processes; each calls`);
  console.log(
    `getAccessToken() ${CALLS_PER_USER_PER_WORKER} times per user, all at once (lock TTL ${LOCK_TTL_MS} ms, refresh takes ${REFRESH_MS} ms).\n`,
  );

  const calls = [];
  const errors = [];
  let t0 = 0;
  const stamp = () => `${String(Date.now() - t0).padStart(5)} ms`;
  const children = [];
  const ready = [];
  const exited = [];
  for (let i = 1; i <= WORKERS; i++) {
    const child = startWorker(i, { REDIS_URL: url, DEMO_RUN: run });
    children.push(child);
    ready.push(
      new Promise((resolve) => {
        child.on('message', (m) => m.type === 'ready' && resolve());
        child.on('exit', resolve);
      }),
    );
    exited.push(
      new Promise((resolve) => {
        let doneAt = 0;
        let timer = null;
        child.on('message', (m) => {
          if (m.type === 'refresh-start') {
            console.log(
              `${stamp()}  ${m.worker} (pid ${m.pid}) holds ${m.userId}'s lock (fencing index ${m.index}): token stale, refreshing...`,
            );
          } else if (m.type === 'call') {
            calls.push(m);
            const how = m.immediate ? 'got the lock at once' : `waited ${m.waited} ms, woken by the release`;
            const what = m.refreshed ? `refreshed -> ${m.token}` : `cached ${m.token}`;
            console.log(`${stamp()}  ${m.worker}: ${m.userId.padEnd(5)} ${how.padEnd(38)} index ${String(m.index).padStart(3)}  ${what}`);
          } else if (m.type === 'error') {
            errors.push(`${m.worker}: ${m.message}`);
          }
          if ((m.type === 'done' || m.type === 'error') && !timer) {
            doneAt = Date.now();
            // A worker must exit by itself once its Lock is closed; one that lingers means a leaked handle.
            timer = setTimeout(() => {
              errors.push(`worker ${i} did not exit within 5 s of closing its Lock (something keeps the event loop alive)`);
              child.kill('SIGKILL');
            }, 5000);
          }
        });
        child.on('exit', (code, signal) => {
          clearTimeout(timer);
          workers.delete(child);
          if (code !== 0 && !signal) errors.push(`worker ${i} exited with code ${code}`);
          if (signal && !errors.some((e) => e.startsWith(`worker ${i} did not exit`))) errors.push(`worker ${i} was killed by ${signal}`);
          resolve({ exitMs: doneAt ? Date.now() - doneAt : null });
        });
      }),
    );
  }
  await Promise.all(ready);
  t0 = Date.now();
  for (const child of children) if (child.connected) child.send('go');
  const exits = await Promise.all(exited);
  const wall = Date.now() - t0;

  // The verdict, from Redis itself.
  let failed = errors.length > 0;
  console.log('\nSummary');
  console.log(`  processes:               ${WORKERS} (pids ${children.map((c) => c.pid).join(', ')})`);
  console.log(`  getAccessToken() calls:  ${calls.length} of ${WORKERS * USERS.length * CALLS_PER_USER_PER_WORKER} in ${wall} ms`);
  for (const user of USERS) {
    const refreshes = Number(await redis.get(k.refreshes(user))) || 0;
    const mine = calls.filter((c) => c.userId === user);
    const tokens = new Set(mine.map((c) => c.token));
    const ok = refreshes === 1 && tokens.size === 1 && mine.length === WORKERS * CALLS_PER_USER_PER_WORKER;
    if (!ok) failed = true;
    console.log(
      `  ${user.padEnd(5)} refreshes performed:  ${refreshes} (expected 1); ${mine.length} calls got ${tokens.size} distinct token(s)  ${ok ? 'OK' : 'FAIL'}`,
    );
  }
  const waits = calls.filter((c) => !c.immediate).map((c) => c.waited);
  console.log(`  hand-off waits:          ${waits.length} (median ${median(waits)} ms, max ${waits.length ? Math.max(...waits) : 0} ms)`);
  if (waits.length && Math.max(...waits) >= LOCK_TTL_MS) {
    failed = true;
    console.log(`  a waiter slept until the lock expired (${LOCK_TTL_MS} ms) instead of being woken by the release: FAIL`);
  } else if (waits.length) {
    console.log(`  every waiter was woken by a release message, well before the ${LOCK_TTL_MS} ms lock TTL`);
  }
  const indexes = calls.map((c) => c.index);
  if (new Set(indexes).size !== indexes.length) {
    failed = true;
    console.log('  fencing indexes repeated: FAIL');
  } else {
    console.log(`  fencing indexes:         ${indexes.length} grants, all distinct (${Math.min(...indexes)}..${Math.max(...indexes)})`);
  }
  const exitTimes = exits.map((e) => e.exitMs).filter((ms) => ms !== null);
  console.log(
    `  workers exited by themselves after close(): ${exitTimes.length === WORKERS ? `yes (max ${Math.max(...exitTimes)} ms)` : 'no'}`,
  );
  for (const err of errors) console.log(`  error: ${err}`);

  // Leave a shared Redis as we found it (a private one simply goes away).
  const doomed = [...USERS.map(k.token), ...USERS.map(k.refreshes), `${k.namespace}index`];
  await redis.del(...doomed);
  await redis.quit();
  clearTimeout(overall);
  console.log(
    failed ? '\nFAILED' : `\nOK: each token was refreshed exactly once by one of ${WORKERS} processes; everyone else got the cached one.`,
  );
  process.exitCode = failed ? 1 : 0;
  cleanup();
}
