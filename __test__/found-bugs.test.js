'use strict';
// Reproductions of bugs found by the chaos suite and the security tests (RELIABILITY.md, "Bugs
// found"), kept as regression tests.
// (The fuzzer's own finds are in fuzz.test.js.)
const { describe, it, before } = require('node:test');
const assert = require('node:assert/strict');
const { startRedis, sleep } = require('./helpers/redis');
const { loadLock, uniqueNs } = require('./helpers/common');

let Lock;
before(() => {
  Lock = loadLock();
});

describe('bugs found by the reliability work (fixed)', () => {
  it(
    'a command connection closed by the server while idle is reopened without failing the next call',
    {
      timeout: 20000,
    },
    async () => {
      const server = await startRedis({ args: ['--timeout', '1'] }); // Redis closes clients idle for 1 s
      const lock = new Lock({ redis: server.url, namespace: uniqueNs('idle') });
      try {
        assert.equal((await lock.acquireLock('a', 1000)).success, true);
        await sleep(2500);
        const r = await lock.acquireLock('b', 1000); // (once rejected with ERR_REDIS "Redis: broken pipe")
        assert.equal(r.success, true);
      } finally {
        await lock.close();
        await server.cleanup();
      }
    },
  );

  it(
    'the same after CLIENT KILL TYPE normal: the next call, 500 ms later, succeeds',
    {
      timeout: 20000,
    },
    async () => {
      const server = await startRedis();
      const lock = new Lock({ redis: server.url, namespace: uniqueNs('killed') });
      try {
        await lock.acquireLock('a', 1000);
        await server.command('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
        await sleep(500);
        assert.equal((await lock.acquireLock('b', 1000)).success, true);
      } finally {
        await lock.close();
        await server.cleanup();
      }
    },
  );

  it(
    'a refused SUBSCRIBE does not make the subscriber reconnect in a tight loop',
    {
      timeout: 20000,
    },
    async () => {
      const server = await startRedis();
      // A user that may do everything but SUBSCRIBE (a misconfigured ACL).
      await server.command('ACL', 'SETUSER', 'nosub', 'on', '>pw', '~*', '&*', '+@all', '-subscribe');
      const lock = new Lock({ redis: `redis://nosub:pw@127.0.0.1:${server.port}`, namespace: uniqueNs('nosub'), connectTimeout: 500 });
      try {
        await server.command('ACL', 'LOG', 'RESET');
        const held = await lock.acquireLock('x', 3000);
        // The wait still works (it polls at the holder's TTL); meanwhile count SUBSCRIBE attempts.
        const wait = lock.waitAcquireLock('x', 1000, 2000);
        await sleep(2000);
        await wait;
        await lock.releaseLock(held).catch(() => {});
        const log = await server.command('ACL', 'LOG');
        const entry = log.find((e) => e[e.indexOf('object') + 1] === 'subscribe');
        const attempts = entry ? Number(entry[entry.indexOf('count') + 1]) : 0;
        // With a backoff of 20 ms doubling to 1 s (as for connection failures): about 10 in 2 s.
        assert.ok(attempts < 50, `${attempts} SUBSCRIBE attempts in about 2 s`);
      } finally {
        await lock.close();
        await server.cleanup();
      }
    },
  );

  it(
    'an acquire whose reply is lost after Redis ran it is not reported as "held by another"',
    {
      timeout: 30000,
    },
    async () => {
      const net = require('node:net');
      const server = await startRedis({ args: ['--enable-debug-command', 'yes'] });
      const ns = uniqueNs('lostreply');
      const lock = new Lock({ redis: server.url, namespace: ns, commandTimeout: 3000 });
      const killer = net.connect(server.port, '127.0.0.1');
      killer.on('error', () => {});
      killer.on('data', () => {});
      try {
        await new Promise((resolve) => killer.once('connect', resolve));
        await lock.acquireLock('warm', 1000); // the command connection is open
        const list = String(await server.command('CLIENT', 'LIST', 'TYPE', 'normal'));
        const line = list.split('\n').find((l) => / cmd=eval/.test(l));
        const connId = /id=(\d+)/.exec(line)[1];
        // Freeze Redis; queue the acquire, then (on an already open connection) the kill of the
        // acquire's connection: Redis runs the acquire, then closes its connection before replying.
        const sleeper = server.client().call('DEBUG', 'SLEEP', '0.3');
        await sleep(50);
        const outcome = lock.acquireLock('k', 5000).then(
          (r) => r,
          (err) => err,
        );
        await sleep(50);
        killer.write(`CLIENT KILL ID ${connId}\r\n`);
        await sleeper;
        const r = await outcome;
        const index = await server.command('HGET', `${ns}:k`, 'index');
        // Acceptable: the grant (success) or "outcome unknown" (ERR_REDIS). Not: "held by another"
        // while the holder is this very call's grant, which nobody will ever release.
        assert.ok(
          r.success === true || r.code === 'ERR_REDIS',
          `acquire answered ${JSON.stringify(r)} while Redis holds ${ns}:k with index ${index}, granted to this call`,
        );
      } finally {
        killer.destroy();
        await lock.close();
        await server.cleanup();
      }
    },
  );
});
