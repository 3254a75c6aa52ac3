'use strict';
// Connection economy: Lock instances on one server share connections (redfour opens two per
// instance), and closing them all gives the connections back.
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { it, uniqueNs, sleep, useRedis } = require('./helpers/common');

let server;
let Lock;
const { locks } = useRedis({
  ready: (s, L) => {
    server = s;
    Lock = L;
  },
});

async function countEventually(pred, ms = 5000) {
  const deadline = Date.now() + ms;
  let n;
  while (Date.now() < deadline) {
    n = await server.clientCount();
    if (pred(n)) return n;
    await sleep(100);
  }
  return n;
}

describe('sockets', () => {
  it('100 Lock instances on one URL (acquire + waitAcquire each) open at most 3 connections', async () => {
    const baseline = await server.clientCount(); // our assertion client
    const ns = uniqueNs('sock');
    const mine = [];
    for (let i = 0; i < 100; i++) {
      // Some in other namespaces: namespaces must not multiply connections either.
      const lock = new Lock({ redis: server.url, namespace: i % 10 === 0 ? `${ns}-${i}` : ns });
      mine.push(lock);
      locks.push(lock);
    }
    const acquired = await Promise.all(mine.map((l, i) => l.acquireLock(`a${i}`, 10000)));
    assert.ok(acquired.every((r) => r.success));
    const waited = await Promise.all(mine.map((l, i) => l.waitAcquireLock(`w${i}`, 10000, 1000)));
    assert.ok(waited.every((r) => r.success && r.immediate));
    // One real wait too, so a subscriber is certainly needed.
    const held = await mine[1].acquireLock('contended', 10000);
    const pending = mine[2].waitAcquireLock('contended', 10000, 5000);
    await sleep(100);
    await mine[1].releaseLock(held);
    assert.equal((await pending).success, true);

    const during = await server.clientCount();
    const list = await server.clientList();
    // Plain calls' connection (JavaScript thread), the engine's command connection (waits) and
    // its subscriber: three per server and process, however many Locks.
    assert.ok(
      during - baseline <= 3,
      `${during - baseline} connections for 100 Lock instances (at most 3 expected):\n${list.map((c) => `${c.addr} ${c.name} ${c.cmd} ${c.flags}`).join('\n')}`,
    );
    assert.ok(during - baseline >= 1, 'no connection at all?');

    await Promise.all(mine.map((l) => l.close()));
    const afterClose = await countEventually((n) => n <= baseline);
    assert.equal(afterClose, baseline, 'connections were not closed after every Lock was closed');
  });

  it('different URL spellings with different credentials/db are not merged', async () => {
    const baseline = await server.clientCount();
    const a = new Lock({ redis: `redis://127.0.0.1:${server.port}/0`, namespace: uniqueNs('db0') });
    const b = new Lock({ redis: `redis://127.0.0.1:${server.port}/1`, namespace: uniqueNs('db1') });
    locks.push(a, b);
    const ra = await a.acquireLock('same', 10000);
    const rb = await b.acquireLock('same', 10000);
    assert.equal(ra.success, true);
    assert.equal(rb.success, true, 'database 1 is a different keyspace');
    const inDb1 = await server.client({ db: 1 }).keys('*');
    assert.ok(
      inDb1.some((k) => k === `${b.namespace}:same`),
      `db 1 keys: ${inDb1}`,
    );
    assert.equal(await server.command('EXISTS', `${b.namespace}:same`), 0, 'db 1 lock written to db 0');
    await a.close();
    await b.close();
    const afterClose = await countEventually((n) => n <= baseline + 1); // +1: the db-1 assertion client
    assert.ok(afterClose <= baseline + 1);
  });
});
