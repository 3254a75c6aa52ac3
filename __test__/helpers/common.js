'use strict';
// Shared bits for the test files: loading the addon, unique namespaces, callback/promise
// adapters, error-code assertions and child-process helpers.

const assert = require('node:assert/strict');
const { fork } = require('node:child_process');
const nodeTest = require('node:test');
const path = require('node:path');
const { sleep, startRedis } = require('./redis');

const ROOT = path.resolve(__dirname, '..', '..');
const FIXTURES = path.join(__dirname, '..', 'fixtures');

// node:test has no default per-test timeout: one hung test would hang the whole suite. Every
// test gets one (overridable with the usual options object).
const DEFAULT_TEST_TIMEOUT_MS = 60000;
function withTimeout(register) {
  return (name, options, fn) => {
    if (typeof options === 'function') {
      fn = options;
      options = {};
    }
    return register(name, { timeout: DEFAULT_TEST_TIMEOUT_MS, ...(options || {}) }, fn);
  };
}
const it = withTimeout(nodeTest.it);
const test = withTimeout(nodeTest.test);

/** The package under test (index.js at the repo root). */
function loadLock() {
  return require(ROOT);
}

let nsCounter = 0;
/** A namespace no other test uses. */
function uniqueNs(tag = 'ns') {
  nsCounter += 1;
  return `t${process.pid}_${tag}_${nsCounter}_${Math.random().toString(36).slice(2, 8)}`;
}

/** Calls `fn(...args, cb)` and resolves/rejects from the callback; asserts the method returned undefined. */
function viaCallback(target, method, ...args) {
  return new Promise((resolve, reject) => {
    let called = 0;
    const ret = target[method](...args, (err, result) => {
      called += 1;
      if (called > 1) {
        reject(new Error(`${method} called its callback ${called} times`));
        return;
      }
      if (err) reject(err);
      else resolve(result);
    });
    if (ret !== undefined) {
      // The callback style must not also hand back a Promise that could reject unhandled.
      reject(new Error(`${method} with a callback returned ${typeof ret}, expected undefined`));
    }
  });
}

/** Asserts that `promise` rejects with an error whose `code` is `code` (and optionally of class `Type`). */
async function rejectsWithCode(promise, code, Type) {
  let caught;
  try {
    const value = await promise;
    assert.fail(`expected rejection with code ${code}, got resolution ${JSON.stringify(value)}`);
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    caught = err;
  }
  assert.ok(caught instanceof Error, `rejection value should be an Error, got ${caught}`);
  assert.equal(caught.code, code, `expected code ${code}, got ${caught.code}: ${caught.message}`);
  if (Type) assert.ok(caught instanceof Type, `expected a ${Type.name}, got ${caught.constructor.name}: ${caught.message}`);
  return caught;
}

/** Rejects after `ms` with a descriptive error: turns a hang into a failure. */
function within(promise, ms, what = 'operation') {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Settles within `ms`? Resolves to {settled:true, value|error} or {settled:false}.
 * Does not detach: the caller must make sure the promise eventually settles (e.g. by close()).
 */
async function settledWithin(promise, ms) {
  let timer;
  const marker = Symbol('pending');
  const outcome = await Promise.race([
    promise.then(
      (value) => ({ settled: true, value }),
      (error) => ({ settled: true, error }),
    ),
    new Promise((resolve) => {
      timer = setTimeout(() => resolve(marker), ms);
    }),
  ]);
  clearTimeout(timer);
  return outcome === marker ? { settled: false } : outcome;
}

/**
 * Forks fixtures/<name>.js with `args` (JSON-encoded in argv[2]). Returns the ChildProcess plus
 * helpers: `messages` (array of IPC messages), `waitFor(pred, ms)` and `exit` (Promise of
 * {code, signal}). stdout/stderr are collected in `child.output`.
 */
function forkFixture(name, args = {}, options = {}) {
  const env = { ...process.env, ...(options.env || {}) };
  delete env.NODE_TEST_CONTEXT; // the fixture is a plain script, not a test file
  const child = fork(path.join(FIXTURES, `${name}.js`), [JSON.stringify(args)], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env,
    execArgv: options.execArgv || [],
  });
  child.output = '';
  child.stdout.setEncoding('utf8').on('data', (d) => {
    child.output += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d) => {
    child.output += d;
  });
  child.messages = [];
  const listeners = new Set();
  child.on('message', (msg) => {
    child.messages.push(msg);
    for (const l of listeners) l();
  });
  child.exit = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  child.exited = false;
  child.exit.then(() => {
    child.exited = true;
    for (const l of listeners) l();
  });
  /** Resolves with the first message satisfying pred; rejects on timeout or child exit. */
  child.waitFor = (pred, ms = 10000) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const found = child.messages.find(pred);
        if (found !== undefined) {
          cleanup();
          resolve(found);
        } else if (child.exited) {
          cleanup();
          reject(
            new Error(
              `child ${name} exited before the expected message; output:\n${child.output}\nmessages: ${JSON.stringify(child.messages)}`,
            ),
          );
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `child ${name}: no expected message within ${ms} ms; output:\n${child.output}\nmessages: ${JSON.stringify(child.messages)}`,
          ),
        );
      }, ms);
      const cleanup = () => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });
  /** Kills the child (SIGKILL) if it is still running and waits for it. */
  child.ensureDead = async () => {
    if (!child.exited) {
      try {
        child.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }
    await child.exit;
  };
  return child;
}

/**
 * One private redis-server for a test file, started before its tests and stopped after them.
 * `ready(server, Lock)` hands the file its server and the package's Lock constructor; the
 * returned `newLock(namespace?, options?)` makes a Lock on that server (closed after the tests,
 * like everything pushed on `locks`). `cleanup` runs first at the end (kill children, ...).
 */
function useRedis({ tag = 'ns', lockOptions = {}, cleanup, ready }) {
  const locks = [];
  let server;
  let Lock;
  nodeTest.before(async () => {
    Lock = loadLock();
    server = await startRedis();
    ready(server, Lock);
  });
  nodeTest.after(async () => {
    if (cleanup) await cleanup();
    await Promise.allSettled(locks.map((l) => l.close()));
    if (server) await server.cleanup();
  });
  function newLock(namespace = uniqueNs(tag), options = {}) {
    const lock = new Lock({ redis: server.url, namespace, ...lockOptions, ...options });
    locks.push(lock);
    return lock;
  }
  return { newLock, locks };
}

module.exports = {
  useRedis,
  it,
  test,
  ROOT,
  FIXTURES,
  loadLock,
  uniqueNs,
  viaCallback,
  rejectsWithCode,
  within,
  settledWithin,
  forkFixture,
  sleep,
};
