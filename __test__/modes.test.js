'use strict';
// Beyond one plain Redis: TLS (with a CA made here), an ACL user restricted to the lock's keys
// and channel, WAIT-based replication acknowledgement, and the quorum of independent masters.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const Lock = require('..');
const { RedisServer, freePort, sleep } = require('./helpers/redis');
const { FaultProxy } = require('./helpers/proxy');

const locks = [];
function lock(options) {
  const l = new Lock(options);
  locks.push(l);
  return l;
}
after(() => Promise.all(locks.map((l) => l.close())));

/** A redis-server ready to join a cluster. */
function startClusterNode() {
  return new RedisServer({ args: ['--cluster-enabled', 'yes', '--cluster-node-timeout', '2000'] }).start();
}

/** Resolves once every node says cluster_state:ok (or after 20 s; the tests then fail on their own). */
async function untilClusterOk(nodes) {
  for (let i = 0; i < 200; i++) {
    const states = await Promise.all(nodes.map((n) => n.command('CLUSTER', 'INFO')));
    if (states.every((s) => s.includes('cluster_state:ok'))) return;
    await sleep(100);
  }
}

/** A throw-away CA and a server certificate for localhost/127.0.0.1, made with openssl. */
function makeCertificates() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'redfour-native-tls-'));
  const run = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  run(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '1',
    '-subj',
    '/CN=redfour-native test CA',
  );
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  run(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.crt',
    '-days',
    '1',
    '-extfile',
    'ext.cnf',
  );
  return { dir, file: (name) => path.join(dir, name) };
}

describe('TLS', () => {
  let server;
  let certs;
  let tlsPort;
  before(async () => {
    certs = makeCertificates();
    tlsPort = await freePort();
    server = await new RedisServer({
      args: [
        '--tls-port',
        String(tlsPort),
        '--tls-cert-file',
        certs.file('server.crt'),
        '--tls-key-file',
        certs.file('server.key'),
        '--tls-ca-cert-file',
        certs.file('ca.crt'),
        '--tls-auth-clients',
        'no',
      ],
    }).start();
  });
  after(async () => {
    await server.stop();
    fs.rmSync(certs.dir, { recursive: true, force: true });
  });

  it('locks and wakes waiters over TLS with a given CA (commands and subscriber)', async () => {
    const url = `rediss://localhost:${tlsPort}`;
    const a = lock({ redis: url, namespace: 'tls', tls: { ca: fs.readFileSync(certs.file('ca.crt')) } });
    const held = await a.acquireLock('x', 10000);
    assert.equal(held.success, true);
    const waiting = a.waitAcquireLock('x', 10000, 8000);
    await sleep(100);
    await a.releaseLock(held);
    const got = await waiting;
    assert.equal(got.success, true);
    assert.equal(got.immediate, false);
    assert.equal(await server.command('HGET', 'tls:x', 'index'), String(got.index));
  });

  it('refuses a server whose certificate it cannot verify, with ERR_REDIS', async () => {
    const a = lock({ redis: `rediss://localhost:${tlsPort}`, namespace: 'tls', connectTimeout: 1000 });
    await assert.rejects(a.acquireLock('y', 1000), (err) => err.code === 'ERR_REDIS');
  });

  it('skips verification only when asked (rejectUnauthorized: false)', async () => {
    const a = lock({ redis: `rediss://localhost:${tlsPort}`, namespace: 'tls', tls: { rejectUnauthorized: false } });
    assert.equal((await a.acquireLock('z', 1000)).success, true);
  });
});

describe('ACL user restricted to the lock', () => {
  let server;
  before(async () => {
    server = await new RedisServer().start();
    // The least privilege a Lock in namespace "app" needs (documented in docs/guarantees.md).
    await server.command(
      'ACL',
      'SETUSER',
      'locker',
      'on',
      '>s3cret',
      '~app:*',
      '~appindex',
      '&app-release',
      '+evalsha',
      '+eval',
      '+subscribe',
      '+unsubscribe',
      '+exists',
      '+pttl',
      '+incr',
      '+hset',
      '+pexpire',
      '+hget',
      '+del',
      '+publish',
    );
  });
  after(() => server.stop());

  it('works with exactly those permissions, including the subscriber', async () => {
    const a = lock({ redis: `redis://locker:s3cret@127.0.0.1:${server.port}`, namespace: 'app' });
    const held = await a.acquireLock('x', 10000);
    const waiting = a.waitAcquireLock('x', 10000, 8000);
    await sleep(100);
    await a.releaseLock(held);
    const got = await waiting;
    assert.equal(got.success, true);
    assert.equal((await a.renewLock(got, 10000)).result, 'renewed');
  });

  it('cannot reach keys outside its pattern', async () => {
    const a = lock({ redis: `redis://locker:s3cret@127.0.0.1:${server.port}`, namespace: 'other' });
    await assert.rejects(a.acquireLock('x', 1000), (err) => err.code === 'ERR_REDIS' && /perm/i.test(err.message));
  });

  it('a wrong password fails with ERR_REDIS and the message does not reveal it', async () => {
    const a = lock({ redis: `redis://locker:hunter2-wrong@127.0.0.1:${server.port}`, namespace: 'app' });
    await assert.rejects(a.acquireLock('x', 1000), (err) => {
      assert.equal(err.code, 'ERR_REDIS');
      assert.doesNotMatch(err.message, /hunter2/);
      return true;
    });
  });
});

describe('minReplications (WAIT)', () => {
  let primary;
  let replica;
  before(async () => {
    primary = await new RedisServer().start();
    replica = await new RedisServer({ args: ['--replicaof', '127.0.0.1', String(primary.port)] }).start();
    for (let i = 0; i < 100; i++) {
      const info = await primary.command('INFO', 'replication');
      if (/connected_slaves:1/.test(info) && /state=online/.test(info)) break;
      await sleep(50);
    }
  });
  after(async () => {
    await replica.stop();
    await primary.stop();
  });

  it('grants once a replica acknowledged the write', async () => {
    const a = lock({ redis: primary.url, namespace: 'rep', minReplications: 1, replicationTimeout: 2000 });
    const got = await a.acquireLock('x', 10000);
    assert.equal(got.success, true);
    assert.equal(await replica.command('HGET', 'rep:x', 'index'), String(got.index));
  });

  it('fails with a clear ERR_REDIS where WAIT is forbidden, rather than silently not waiting', async () => {
    await primary.command('ACL', 'SETUSER', 'nowait', 'on', '>pw', '~*', '&*', '+@all', '-wait');
    const a = lock({ redis: `redis://nowait:pw@127.0.0.1:${primary.port}`, namespace: 'rep', minReplications: 1 });
    await assert.rejects(a.acquireLock('w', 10000), (err) => err.code === 'ERR_REDIS' && /WAIT/.test(err.message));
    assert.equal(await primary.command('EXISTS', 'rep:w'), 0, 'no grant left behind');
  });

  it('reports a grant that too few replicas acknowledged as not acquired, and leaves no key', async () => {
    const a = lock({ redis: primary.url, namespace: 'rep', minReplications: 2, replicationTimeout: 200 });
    const got = await a.acquireLock('y', 10000);
    assert.equal(got.success, false);
    assert.equal(got.index, -1);
    assert.equal(got.replicationFailure, true, 'ioredfour flags a grant undone for lack of acknowledgements');
    assert.equal(await primary.command('EXISTS', 'rep:y'), 0);
    // A lock held by another is not a replication failure.
    const b = lock({ redis: primary.url, namespace: 'rep', minReplications: 1, replicationTimeout: 2000 });
    const held = await b.acquireLock('z', 10000);
    assert.equal(held.success, true);
    assert.equal('replicationFailure' in held, false);
    const busy = await a.acquireLock('z', 10000);
    assert.equal(busy.success, false);
    assert.equal('replicationFailure' in busy, false);
  });

  it('rejects a TTL shorter than 1.5 x replicationTimeout (a lease could end before WAIT returns)', async () => {
    const a = lock({ redis: primary.url, namespace: 'rep', minReplications: 1, replicationTimeout: 1000 });
    const tooShort = (err) => err.code === 'ERR_INVALID_ARG' && /must be at least 1\.5x replicationTimeout \(1000ms\)/.test(err.message);
    await assert.rejects(a.acquireLock('s', 1000), tooShort);
    await assert.rejects(a.waitAcquireLock('s', 1499, 100), tooShort);
    const viaCallback = await new Promise((resolve) => a.acquireLock('s', 500, (err) => resolve(err)));
    assert.ok(viaCallback && tooShort(viaCallback), String(viaCallback));
    assert.equal(await primary.command('EXISTS', 'rep:s'), 0);
    const ok = await a.acquireLock('s', 1500);
    assert.equal(ok.success, true);
    await a.releaseLock(ok);
  });
});

describe('quorum of independent masters', () => {
  const nodes = [];
  before(async () => {
    for (let i = 0; i < 3; i++) nodes.push(await new RedisServer().start());
  });
  after(() => Promise.all(nodes.map((n) => n.stop())));

  it('grants on a majority, wakes waiters, and fails with ERR_NO_QUORUM without one', async () => {
    const urls = nodes.map((n) => n.url);
    const a = lock({ redis: urls, namespace: 'q', connectTimeout: 300, commandTimeout: 300 });
    const b = lock({ redis: urls, namespace: 'q', connectTimeout: 300, commandTimeout: 300 });
    const held = await a.acquireLock('x', 10000);
    assert.equal(held.success, true);
    assert.equal((await b.acquireLock('x', 10000)).success, false);
    const waiting = b.waitAcquireLock('x', 10000, 8000);
    await sleep(100);
    assert.equal((await a.releaseLock(held)).result, 'released');
    const got = await waiting;
    assert.equal(got.success, true);
    assert.ok(got.index > held.index);
    assert.equal((await b.releaseLock(got)).success, true);

    await nodes[0].kill();
    assert.equal((await a.acquireLock('y', 10000)).success, true, '2 of 3 is a majority');
    await nodes[1].kill();
    await assert.rejects(a.acquireLock('z', 10000), (err) => err.code === 'ERR_NO_QUORUM');
  });
});

describe('Sentinel', () => {
  const { spawn } = require('node:child_process');
  const { rawCommand } = require('./helpers/redis');
  let master;
  let replica;
  const sentinels = [];

  async function startSentinel(masterPort) {
    const port = await freePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'redfour-native-sentinel-'));
    const config = path.join(dir, 'sentinel.conf');
    fs.writeFileSync(
      config,
      `port ${port}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor mymaster 127.0.0.1 ${masterPort} 2\n` +
        'sentinel down-after-milliseconds mymaster 400\nsentinel failover-timeout mymaster 2000\n',
    );
    const proc = spawn('redis-server', [config, '--sentinel'], { stdio: 'ignore' });
    for (let i = 0; i < 100 && (await rawCommand(port, 'PING')) !== '+PONG'; i++) await sleep(50);
    return { port, proc, dir };
  }

  async function namedMasterPort(sentinelPort) {
    const Redis = require('ioredis');
    const client = new Redis({ port: sentinelPort, lazyConnect: true, maxRetriesPerRequest: 0 });
    try {
      await client.connect();
      const addr = await client.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mymaster');
      const replicas = await client.call('SENTINEL', 'REPLICAS', 'mymaster');
      return { port: addr ? Number(addr[1]) : null, replicas: replicas.length };
    } catch {
      return { port: null, replicas: 0 };
    } finally {
      client.disconnect();
    }
  }

  before(async () => {
    master = await new RedisServer().start();
    replica = await new RedisServer({ args: ['--replicaof', '127.0.0.1', String(master.port)] }).start();
    for (let i = 0; i < 3; i++) sentinels.push(await startSentinel(master.port));
    for (let i = 0; i < 200; i++) {
      const seen = await namedMasterPort(sentinels[0].port);
      if (seen.port === master.port && seen.replicas > 0) break;
      await sleep(100);
    }
  });
  after(async () => {
    for (const s of sentinels) {
      s.proc.kill('SIGKILL');
      fs.rmSync(s.dir, { recursive: true, force: true });
    }
    await replica.stop();
    await master.stop();
  });

  it('finds the master by name, follows a failover, and keeps its waiters', async () => {
    const a = lock({
      redis: { sentinels: sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })), name: 'mymaster' },
      namespace: 'sen',
      connectTimeout: 500,
      commandTimeout: 500,
    });
    const held = await a.acquireLock('w', 2000);
    assert.equal(held.success, true);
    assert.equal(await master.command('HGET', 'sen:w', 'index'), String(held.index));
    const waiting = a.waitAcquireLock('w', 5000, 30000);
    await sleep(200);
    await master.kill();
    const got = await waiting;
    assert.equal(got.success, true, 'the waiter got the lock from the promoted replica');
    assert.equal((await namedMasterPort(sentinels[1].port)).port, replica.port);
    const next = await a.acquireLock('fresh', 1000);
    assert.equal(next.success, true);
    assert.ok(next.index > held.index);
  });
});

describe('Redis Cluster', () => {
  const nodes = [];
  before(async () => {
    for (let i = 0; i < 3; i++) nodes.push(await startClusterNode());
    execFileSync(
      'redis-cli',
      ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'],
      {
        stdio: 'ignore',
      },
    );
    await untilClusterOk(nodes);
  });
  after(() => Promise.all(nodes.map((n) => n.stop())));

  it('hash-tags each lock into one slot and wakes waiters through sharded pub/sub', async () => {
    const a = lock({ redis: nodes.map((n) => n.url), cluster: true, namespace: 'cl' });
    const b = lock({ redis: nodes[1].url, cluster: true, namespace: 'cl' });
    for (const id of ['alpha', 'beta', 'gamma', 42]) await clusterWorks(a, b, 'cl', id);
  });

  // ioredfour's ways of asking for cluster mode: the same hash-tagged layout, waits woken through
  // sharded pub/sub, whichever form named the seeds.
  async function clusterWorks(a, b, ns, id) {
    const held = await a.acquireLock(id, 10000);
    assert.equal(held.success, true);
    assert.equal(
      await nodes[0].command('CLUSTER', 'KEYSLOT', `{${ns}:${id}}`),
      await nodes[0].command('CLUSTER', 'KEYSLOT', `{${ns}:${id}}:index`),
    );
    assert.equal((await b.acquireLock(id, 1000)).success, false, "the second Lock must see the first one's lock");
    const waiting = b.waitAcquireLock(id, 10000, 8000);
    await sleep(150);
    assert.equal((await a.releaseLock(held)).result, 'released');
    const got = await waiting;
    assert.equal(got.success, true);
    assert.ok(got.index > held.index);
    assert.equal((await b.releaseLock(got)).result, 'released');
  }

  it("ioredfour's form: cluster: [{ host, port }, ...] with no redis option is cluster mode with those seeds", async () => {
    const seeds = nodes.map((n) => ({ host: '127.0.0.1', port: n.port }));
    const a = lock({ cluster: seeds, namespace: 'io-cl' });
    const b = lock({ redis: nodes[2].url, cluster: true, namespace: 'io-cl' });
    await clusterWorks(a, b, 'io-cl', 'arr');
  });

  it("ioredfour's form: cluster: { nodes, options } and an ioredis Cluster client as redis", async () => {
    const Redis = require('ioredis');
    const a = lock({
      cluster: { nodes: [{ host: '127.0.0.1', port: nodes[1].port }], options: { redisOptions: {} } },
      namespace: 'io-cl2',
    });
    const client = new Redis.Cluster([{ host: '127.0.0.1', port: nodes[0].port }], { lazyConnect: true });
    client.on('error', () => {});
    try {
      const b = lock({ redis: client, namespace: 'io-cl2' });
      await clusterWorks(a, b, 'io-cl2', 'obj');
    } finally {
      client.disconnect();
    }
  });

  it('rejects a namespace that would break the hash tag', () => {
    assert.throws(
      () => new Lock({ redis: nodes[0].url, cluster: true, namespace: '}x' }),
      (err) => err instanceof TypeError && err.code === 'ERR_INVALID_ARG',
    );
  });
});

describe('Redis Cluster: a half-open subscriber connection', () => {
  // Each node announces a fault proxy in front of it (cluster-announce-port), so every client
  // connection to the cluster goes through a proxy that can black-hole it (no FIN, no RST).
  const nodes = [];
  const proxies = [];
  before(async () => {
    for (let i = 0; i < 3; i++) {
      const node = await startClusterNode();
      const proxy = await FaultProxy.start({ port: node.port });
      await node.command('CONFIG', 'SET', 'cluster-announce-port', String(proxy.port));
      await node.command('CONFIG', 'SET', 'cluster-announce-bus-port', String(node.port + 10000));
      nodes.push(node);
      proxies.push(proxy);
    }
    // Formed by hand (redis-cli --cluster create would check it through the announced addresses).
    const ranges = [
      [0, 5460],
      [5461, 10922],
      [10923, 16383],
    ];
    for (let i = 0; i < 3; i++) await nodes[i].command('CLUSTER', 'ADDSLOTSRANGE', String(ranges[i][0]), String(ranges[i][1]));
    for (const other of nodes.slice(1)) {
      await nodes[0].command('CLUSTER', 'MEET', '127.0.0.1', String(other.port), String(other.port + 10000));
    }
    await untilClusterOk(nodes);
  });
  after(async () => {
    await Promise.all(proxies.map((p) => p.close()));
    await Promise.all(nodes.map((n) => n.stop()));
  });

  it('is noticed and replaced: the waiter gets the lock soon after the release, not at its deadline', async () => {
    const seeds = proxies.map((p) => p.url);
    const holder = lock({ redis: seeds, cluster: true, namespace: 'ho' });
    const waiter = lock({ redis: seeds, cluster: true, namespace: 'ho' });
    const held = await holder.acquireLock('x', 30000);
    assert.equal(held.success, true);
    const waiting = waiter.waitAcquireLock('x', 10000, 15000);
    // Until the waiter's SSUBSCRIBE went through one of the proxies.
    const deadline = Date.now() + 5000;
    while (!proxies.some((p) => p.connections().some((c) => c.subscriber))) {
      assert.ok(Date.now() < deadline, 'the waiter never subscribed');
      await sleep(20);
    }
    await sleep(300);
    const blackholed = proxies.reduce((n, p) => n + p.blackhole('subscriber').length, 0);
    assert.ok(blackholed >= 1, 'nothing to black-hole');
    await sleep(1000);
    assert.equal((await holder.releaseLock(held)).result, 'released');
    const releasedAt = Date.now();
    const got = await waiting;
    const tookMs = Date.now() - releasedAt;
    assert.equal(got.success, true, `the waiter did not get the lock (${tookMs} ms after the release)`);
    assert.ok(tookMs < 6000, `the waiter got the lock ${tookMs} ms after the release: the dead subscriber went unnoticed`);
  });
});
