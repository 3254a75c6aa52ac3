'use strict';
// Process life: an idle Lock does not keep Node alive, a pending wait does, and a throwing
// user callback behaves like any Node callback (uncaughtException), never a native abort.
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { it, uniqueNs, forkFixture, within, settledWithin, useRedis } = require('./helpers/common');

let server;
let Lock;
const children = [];
const { locks } = useRedis({
  cleanup: async () => {
    await Promise.allSettled(children.map((c) => c.ensureDead()));
  },
  ready: (s, L) => {
    server = s;
    Lock = L;
  },
});

function spawnChild(name, args) {
  const child = forkFixture(name, args);
  children.push(child);
  return child;
}

function assertNoNativeAbort(exit, output) {
  assert.notEqual(exit.signal, 'SIGABRT', `child aborted (SIGABRT):\n${output}`);
  assert.notEqual(exit.signal, 'SIGSEGV', `child crashed (SIGSEGV):\n${output}`);
  assert.notEqual(exit.code, 134, `child aborted (exit 134):\n${output}`);
  assert.ok(!/FATAL ERROR|Abort|panicked/i.test(output), `native abort/panic in output:\n${output}`);
}

describe('process exit', () => {
  it('a script that acquires, releases and returns (no close) exits by itself with code 0', async () => {
    const child = spawnChild('exit-after-release', { url: server.url, namespace: uniqueNs('exit'), id: 'e' });
    const outcome = await settledWithin(child.exit, 10000);
    assert.equal(outcome.settled, true, `child still running 10 s after start; output:\n${child.output}`);
    assert.deepEqual(outcome.value, { code: 0, signal: null }, child.output);
    assert.match(child.output, /RELEASED released/);
  });

  it('a script with a pending waitAcquireLock (waitTtl 0) stays alive', async () => {
    const ns = uniqueNs('alive');
    const holder = new Lock({ redis: server.url, namespace: ns });
    locks.push(holder);
    const held = await holder.acquireLock('busy', 60000);
    const child = spawnChild('pending-wait', { url: server.url, namespace: ns, id: 'busy' });
    await child.waitFor((m) => m.type === 'waiting', 15000);
    const early = await settledWithin(child.exit, 1500);
    assert.equal(
      early.settled,
      false,
      `child exited while its waitAcquireLock was pending: ${JSON.stringify(early.value)}\n${child.output}`,
    );
    // And the wait is real: releasing lets it finish, after which the process exits by itself.
    await holder.releaseLock(held);
    const got = await child.waitFor((m) => m.type === 'acquired' || m.type === 'error', 10000);
    assert.equal(got.type, 'acquired', JSON.stringify(got));
    assert.equal(got.result.success, true);
    const outcome = await settledWithin(child.exit, 10000);
    assert.equal(outcome.settled, true, `child did not exit after its wait finished\n${child.output}`);
    assert.equal(outcome.value.code, 0, child.output);
  });
});

describe('throwing callbacks', () => {
  for (const method of ['acquireLock', 'waitAcquireLock', 'invalid']) {
    it(`${method}: a throwing callback reaches 'uncaughtException' (handler installed)`, async () => {
      const child = spawnChild('throwing-callback', { url: server.url, namespace: uniqueNs('throw'), id: 't', method, handle: true });
      const msg = await child.waitFor((m) => m.type === 'uncaught', 15000).catch((err) => err);
      const exit = await within(
        child.exit.then((e) => e),
        15000,
        'child exit',
      ).catch(async (err) => {
        await child.ensureDead();
        return { code: null, signal: 'timeout', err };
      });
      assertNoNativeAbort(exit, child.output);
      assert.ok(!(msg instanceof Error), `no uncaughtException reported: ${msg.message}`);
      assert.equal(msg.message, `boom from ${method} callback`);
      assert.deepEqual(exit, { code: 0, signal: null }, child.output);
    });

    it(`${method}: a throwing callback without a handler ends the process like Node does (exit 1), not abort`, async () => {
      const child = spawnChild('throwing-callback', { url: server.url, namespace: uniqueNs('throw'), id: 't', method, handle: false });
      const exit = await within(child.exit, 15000, 'child exit').catch(async (err) => {
        await child.ensureDead();
        throw err;
      });
      assertNoNativeAbort(exit, child.output);
      assert.deepEqual(exit, { code: 1, signal: null }, child.output);
      assert.match(child.output, new RegExp(`boom from ${method} callback`));
    });
  }
});
