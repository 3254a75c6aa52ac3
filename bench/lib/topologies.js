'use strict';
// Scenario 7's servers: independent masters for the quorum (Redlock) rows and a 3-master Redis
// Cluster, all private redis-server processes on free loopback ports (./redis-server.js), stopped
// by their pids at the end, plus one admin connection per node for INFO commandstats and FLUSHALL.

const { execFile } = require('node:child_process');
const { RedisServer, sleep } = require('./redis-server');
const { requireIoredis } = require('./libs');

/** A node: its server (null for one the caller owns) and an admin ioredis client. */
class Node {
  constructor(server, url) {
    this.server = server;
    this.url = url;
    const Redis = requireIoredis();
    this.admin = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 2 });
  }

  async commandStats() {
    const text = await this.admin.info('commandstats');
    const stats = {};
    for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) stats[m[1]] = Number(m[2]);
    return stats;
  }

  async close() {
    this.admin.disconnect();
    if (this.server) await this.server.stop();
  }
}

/** Starts a redis-server; a port taken between probing and binding gets a second try. */
async function startServer(options) {
  let lastErr;
  for (let attempt = 0; attempt < 3; attempt++) {
    const server = new RedisServer(options);
    try {
      return await server.start();
    } catch (err) {
      lastErr = err;
      await server.stop().catch(() => {});
    }
  }
  throw lastErr;
}

function run(cmd, argv, timeoutMs) {
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { encoding: 'utf8', timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${argv.join(' ')}: ${err.message} ${stderr || stdout}`.trim()));
      else resolve(stdout);
    });
  });
}

/** `n` independent masters. */
async function startMasters(n) {
  const nodes = [];
  try {
    for (let i = 0; i < n; i++) {
      const server = await startServer();
      nodes.push(new Node(server, server.url));
    }
    return nodes;
  } catch (err) {
    await stopAll(nodes);
    throw err;
  }
}

/** A Redis Cluster of `n` masters and no replicas, once every node reports cluster_state:ok. */
async function startCluster(n) {
  const nodes = [];
  try {
    for (let i = 0; i < n; i++) {
      const server = await startServer({ cluster: true });
      nodes.push(new Node(server, server.url));
    }
    await run(
      'redis-cli',
      ['--cluster', 'create', ...nodes.map((x) => `127.0.0.1:${x.server.port}`), '--cluster-replicas', '0', '--cluster-yes'],
      30000,
    );
    const deadline = Date.now() + 20000;
    for (;;) {
      const infos = await Promise.all(nodes.map((x) => x.admin.cluster('INFO')));
      if (infos.every((s) => s.includes('cluster_state:ok') && s.includes(`cluster_known_nodes:${n}`))) break;
      if (Date.now() > deadline)
        throw new Error(`cluster not ok after 20 s: ${infos.map((s) => (/cluster_state:\w+/.exec(s) || [''])[0]).join(', ')}`);
      await sleep(100);
    }
    return nodes;
  } catch (err) {
    await stopAll(nodes);
    throw err;
  }
}

async function stopAll(nodes) {
  await Promise.all(nodes.map((x) => x.close().catch(() => {})));
}

/** INFO commandstats of every node, summed by command. */
async function commandStats(nodes) {
  const all = await Promise.all(nodes.map((x) => x.commandStats()));
  const sum = {};
  for (const stats of all) for (const [k, v] of Object.entries(stats)) sum[k] = (sum[k] || 0) + v;
  return sum;
}

async function flushAll(nodes) {
  await Promise.all(nodes.map((x) => x.admin.flushall()));
}

module.exports = { Node, startMasters, startCluster, stopAll, commandStats, flushAll };
