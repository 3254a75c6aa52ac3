'use strict';
// Self-test of the fault proxy (helpers/proxy.js) with plain ioredis clients and raw sockets.
const { describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const net = require('node:net');
const Redis = require('ioredis');
const { startRedis } = require('./helpers/redis');
const { FaultProxy, CommandSniffer } = require('./helpers/proxy');
const { it, sleep, within, settledWithin } = require('./helpers/common');

let server;
const proxies = [];
const clients = [];

async function newProxy() {
  const proxy = await FaultProxy.start({ port: server.port });
  proxies.push(proxy);
  return proxy;
}

/** An ioredis client through the proxy that does not reconnect unless asked to. */
function viaProxy(proxy, extra = {}) {
  const client = new Redis({
    host: '127.0.0.1',
    port: proxy.port,
    protocol: 2,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    ...extra,
  });
  client.on('error', () => {});
  clients.push(client);
  return client;
}

function ready(client) {
  if (client.status === 'ready') return Promise.resolve();
  return within(new Promise((resolve) => client.once('ready', resolve)), 5000, 'ioredis ready');
}

/** Server-side client entries whose address is one of the proxy's upstream sockets. */
async function serverSideOf(proxy, conn) {
  const list = await server.clientList();
  return list.filter((c) => c.addr === `127.0.0.1:${conn.upstreamPort}`);
}

before(async () => {
  server = await startRedis();
});

after(async () => {
  for (const c of clients) c.disconnect();
  await Promise.allSettled(proxies.map((p) => p.close()));
  if (server) await server.cleanup();
});

describe('FaultProxy', () => {
  it('forwards to the server on a free port (never 6379) and tells subscribers from command connections', async () => {
    const proxy = await newProxy();
    assert.notEqual(proxy.port, 6379);
    assert.equal(proxy.url, `redis://127.0.0.1:${proxy.port}`);
    const cmd = viaProxy(proxy);
    const sub = viaProxy(proxy);
    await Promise.all([ready(cmd), ready(sub)]);
    assert.equal(await cmd.set('proxy:k', 'v'), 'OK');
    assert.equal(await server.command('GET', 'proxy:k'), 'v');
    await sub.subscribe('proxy:chan');
    const conns = proxy.connections();
    assert.equal(conns.length, 2);
    assert.deepEqual(conns.map((c) => c.subscriber).sort(), [false, true]);
    for (const c of conns) assert.equal(typeof c.id, 'number');
    // Each proxied connection is one connection on the server.
    for (const c of conns) assert.equal((await serverSideOf(proxy, c)).length, 1);
    // The selectors pick the right ones.
    const subId = conns.find((c) => c.subscriber).id;
    assert.deepEqual(proxy.hold('subscriber'), [subId]);
    assert.deepEqual(proxy.deliver('subscriber'), [subId]);
  });

  it('the command sniffer is case-insensitive and survives commands split anywhere', () => {
    const seen = [];
    const sniffer = new CommandSniffer((name) => seen.push(name));
    const wire = Buffer.from(
      '*2\r\n$4\r\nAUTH\r\n$3\r\npwd\r\n' +
        '*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$1\r\nx\r\n' +
        '*2\r\n$3\r\nGET\r\n$10\r\nab\r\ncd\r\nef\r\n' + // a payload holding CRLFs
        'PING\r\n' + // inline
        '*2\r\n$10\r\nsSuBsCrIbE\r\n$2\r\nch\r\n',
      'latin1',
    );
    for (let i = 0; i < wire.length; i += 3) sniffer.push(wire.subarray(i, i + 3));
    assert.deepEqual(seen, ['auth', 'client', 'get', 'ping', 'ssubscribe']);
  });

  it('hold buffers server->client bytes and deliver flushes them intact and in order', async () => {
    const proxy = await newProxy();
    const client = viaProxy(proxy);
    await ready(client);
    const big = crypto.randomBytes(3 * 1024 * 1024).toString('base64'); // ~4 MB reply
    await server.command('SET', 'proxy:big', big);
    proxy.hold('all');
    const replies = Promise.all([client.get('proxy:big'), client.incr('proxy:n'), client.echo('last')]);
    // The commands reach the server (client->server still flows) ...
    const deadline = Date.now() + 5000;
    while ((await server.command('GET', 'proxy:n')) !== '1') {
      assert.ok(Date.now() < deadline, 'INCR never reached the server while held');
      await sleep(20);
    }
    // ... but nothing comes back while held.
    const early = await settledWithin(replies, 500);
    assert.equal(early.settled, false, 'replies arrived through a held connection');
    assert.equal(proxy.connections()[0].held, true);
    proxy.deliver('all');
    const [got, n, last] = await within(replies, 5000, 'replies after deliver');
    assert.equal(got.length, big.length);
    assert.ok(got === big, 'the held reply came back altered');
    assert.equal(n, 1);
    assert.equal(last, 'last');
    // And it forwards normally afterwards.
    assert.equal(await within(client.ping(), 2000, 'PING after deliver'), 'PONG');
  });

  it('hold on subscribers delays a published message until deliver', async () => {
    const proxy = await newProxy();
    const sub = viaProxy(proxy);
    await ready(sub);
    await sub.subscribe('proxy:held');
    const messages = [];
    sub.on('message', (channel, message) => messages.push(message));
    proxy.hold('subscriber');
    await server.command('PUBLISH', 'proxy:held', 'one');
    await server.command('PUBLISH', 'proxy:held', 'two');
    await sleep(300);
    assert.deepEqual(messages, []);
    proxy.deliver('subscriber');
    const deadline = Date.now() + 3000;
    while (messages.length < 2 && Date.now() < deadline) await sleep(10);
    assert.deepEqual(messages, ['one', 'two']);
  });

  it('cut resets both sides at once', async () => {
    const proxy = await newProxy();
    const raw = net.connect({ port: proxy.port, host: '127.0.0.1' });
    const rawError = new Promise((resolve) => raw.once('error', resolve));
    const rawClosed = new Promise((resolve) => raw.once('close', resolve));
    await new Promise((resolve) => raw.once('connect', resolve));
    raw.write('PING\r\n');
    await within(new Promise((resolve) => raw.once('data', resolve)), 2000, 'PONG through the proxy');
    const [conn] = proxy.connections();
    assert.equal((await serverSideOf(proxy, conn)).length, 1);

    const client = viaProxy(proxy);
    await ready(client);
    const clientEnded = new Promise((resolve) => client.once('end', resolve));

    assert.equal(proxy.cut('all').length, 2);
    const err = await within(rawError, 2000, 'error on the cut raw socket');
    assert.equal(err.code, 'ECONNRESET');
    await within(rawClosed, 2000, 'close of the cut raw socket');
    await within(clientEnded, 2000, 'ioredis end after cut');
    // The server lost its side too.
    const deadline = Date.now() + 2000;
    while ((await serverSideOf(proxy, conn)).length > 0) {
      assert.ok(Date.now() < deadline, 'the server still has the cut connection');
      await sleep(20);
    }
    assert.deepEqual(proxy.connections(), []);
  });

  it('blackhole keeps both sockets open but passes nothing either way', async () => {
    const proxy = await newProxy();
    const client = viaProxy(proxy);
    await ready(client);
    let closed = false;
    client.on('close', () => {
      closed = true;
    });
    const [conn] = proxy.connections();
    proxy.blackhole('all');
    const set = client.set('proxy:bh', 'x');
    set.catch(() => {});
    const outcome = await settledWithin(set, 1000);
    assert.equal(outcome.settled, false, 'a blackholed connection answered');
    assert.equal(await server.command('EXISTS', 'proxy:bh'), 0, 'the command reached the server');
    assert.equal(closed, false, 'the client saw its socket close');
    assert.equal(client.status, 'ready');
    // The server still has its side, idle.
    assert.equal((await serverSideOf(proxy, conn)).length, 1);
    assert.equal(proxy.connections()[0].blackholed, true);
    // heal() does not revive it.
    proxy.heal();
    assert.equal((await settledWithin(set, 300)).settled, false);
    client.disconnect();
  });

  it('{ future: true } applies the fault to a reconnecting subscriber before it subscribes', async () => {
    const proxy = await newProxy();
    // Resubscribes by hand so that the blackholed SUBSCRIBE's rejection at disconnect is handled.
    const sub = viaProxy(proxy, { retryStrategy: () => 50, autoResubscribe: false });
    await ready(sub);
    await sub.subscribe('proxy:future');
    sub.on('ready', () => sub.subscribe('proxy:future').catch(() => {}));
    assert.equal((await server.command('PUBSUB', 'NUMSUB', 'proxy:future'))[1], 1);
    proxy.blackhole('subscriber', { future: true });
    proxy.cut('subscriber');
    // ioredis reconnects and resubscribes; the new connection is blackholed at its SUBSCRIBE.
    const deadline = Date.now() + 5000;
    for (;;) {
      const conns = proxy.connections();
      if (conns.some((c) => c.subscriber && c.blackholed)) break;
      assert.ok(Date.now() < deadline, `no blackholed reconnect: ${JSON.stringify(conns)}`);
      await sleep(20);
    }
    await sleep(300);
    assert.equal((await server.command('PUBSUB', 'NUMSUB', 'proxy:future'))[1], 0, 'the blackholed SUBSCRIBE reached the server');
    // A command connection made now is not affected.
    const cmd = viaProxy(proxy);
    await ready(cmd);
    assert.equal(await within(cmd.ping(), 2000, 'PING on a new command connection'), 'PONG');
    // After heal(), a new subscriber connection works again.
    proxy.heal();
    const sub2 = viaProxy(proxy);
    await ready(sub2);
    await within(sub2.subscribe('proxy:future'), 2000, 'SUBSCRIBE after heal');
    sub.disconnect();
  });

  it('close() ends every connection and the listener', async () => {
    const proxy = await newProxy();
    const client = viaProxy(proxy);
    await ready(client);
    const ended = new Promise((resolve) => client.once('end', resolve));
    await proxy.close();
    await within(ended, 2000, 'client end after proxy.close()');
    const refused = await new Promise((resolve) => {
      const s = net.connect({ port: proxy.port, host: '127.0.0.1' });
      s.once('error', (e) => resolve(e.code));
      s.once('connect', () => {
        s.destroy();
        resolve('connected');
      });
    });
    assert.equal(refused, 'ECONNREFUSED');
  });
});
