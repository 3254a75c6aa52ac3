#!/usr/bin/env node
'use strict';
// What JS-thread I/O plus batched script calls would reach (bench/DIAGNOSIS.md, "2. Throughput"):
// redfour-native's own acquire and release scripts, read from src/core/scripts.rs, sent by ioredis
// from the JS thread, in 64 concurrent loops on distinct ids, on a private redis-server.
//
//   node bench/js-thread-batching.js one-by-one      one EVALSHA per call (redfour's design)
//   node bench/js-thread-batching.js batched [cap]   calls of one event-loop turn share one
//                                                    script call, at most `cap` per call
//
// A measuring tool, not library code: no retries, no error handling beyond failing loudly.

const { RedisServer } = require('./lib/redis-server');
const { requireIoredis, scriptSource } = require('./lib/libs');

const PAIRS = 40000;
const LOOPS = 64;

/** The script body as a function of (K1, K2, A1..A4), run once per call: 2 keys, 4 values each. */
function batchOf(body) {
  const fn = body.replace(/KEYS\[(\d)\]/g, 'K$1').replace(/ARGV\[(\d)\]/g, 'A$1');
  return `local function op(K1, K2, A1, A2, A3, A4)
${fn}
end
local replies = {}
for i = 0, #KEYS / 2 - 1 do
  replies[i + 1] = op(KEYS[2 * i + 1], KEYS[2 * i + 2], ARGV[4 * i + 1], ARGV[4 * i + 2], ARGV[4 * i + 3], ARGV[4 * i + 4])
end
return replies
`;
}

/** Queues calls made in one event-loop turn into one script call of `command`, at most `cap` each. */
function batcher(redis, command, cap) {
  let queue = [];
  const flush = () => {
    if (queue.length === 0) return;
    const calls = queue;
    queue = [];
    const keys = calls.flatMap((c) => c.keys);
    const values = calls.flatMap((c) => c.values);
    redis[command](keys.length, ...keys, ...values).then(
      (replies) => calls.forEach((c, i) => c.resolve(replies[i])),
      (err) => calls.forEach((c) => c.reject(err)),
    );
  };
  return (keys, values) =>
    new Promise((resolve, reject) => {
      if (queue.length === 0) setImmediate(flush);
      queue.push({ keys, values, resolve, reject });
      if (queue.length >= cap) flush();
    });
}

async function main() {
  const mode = process.argv[2] || 'batched';
  const cap = Number(process.argv[3] || 32);
  const server = await new RedisServer().start();
  const Redis = requireIoredis();
  const redis = new Redis(server.url);
  try {
    redis.defineCommand('acquireOne', { numberOfKeys: 2, lua: scriptSource('ACQUIRE') });
    redis.defineCommand('releaseOne', { numberOfKeys: 2, lua: scriptSource('RELEASE') });
    redis.defineCommand('acquireMany', { lua: batchOf(scriptSource('ACQUIRE')) });
    redis.defineCommand('releaseMany', { lua: batchOf(scriptSource('RELEASE')) });
    let attempt = 0;
    const acquireArgs = (id) => [
      [`ns:${id}`, 'nsindex'],
      [10000, String(++attempt), '', ''],
    ];
    const releaseArgs = (id, index) => [
      [`ns:${id}`, 'nsindex'],
      [index, 'ns-release', 'grant', 'ns\0'],
    ];
    let acquire;
    let release;
    if (mode === 'one-by-one') {
      acquire = (id) => {
        const [k, v] = acquireArgs(id);
        return redis.acquireOne(...k, ...v.slice(0, 3));
      };
      release = (id, index) => {
        const [k, v] = releaseArgs(id, index);
        return redis.releaseOne(...k, ...v);
      };
    } else {
      const acquireMany = batcher(redis, 'acquireMany', cap);
      const releaseMany = batcher(redis, 'releaseMany', cap);
      acquire = (id) => acquireMany(...acquireArgs(id));
      release = (id, index) => releaseMany(...releaseArgs(id, index));
    }
    const pair = async (id) => {
      const [success, index] = await acquire(id);
      const [released] = await release(id, index);
      if (success !== 1 || released !== 1) throw new Error(`pair ${id} failed`);
    };
    for (let i = 0; i < 500; i++) await pair(`warm${i}`);
    const redisCpu0 = server.cpuSeconds();
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    let next = 0;
    await Promise.all(
      Array.from({ length: LOOPS }, async () => {
        while (next < PAIRS) await pair(`p${next++}`);
      }),
    );
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    console.log(
      `${mode}${mode === 'batched' ? ` (cap ${cap})` : ''}: ${Math.round(PAIRS / seconds)} pairs/s, ` +
        `node CPU ${((cpu.user + cpu.system) / PAIRS).toFixed(1)} µs/pair, ` +
        `redis-server CPU ${(((server.cpuSeconds() - redisCpu0) * 1e6) / PAIRS).toFixed(1)} µs/pair`,
    );
  } finally {
    redis.disconnect();
    await server.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
