#!/usr/bin/env node
'use strict';
// A single library's hot loop, for profilers: starts a private redis-server, then runs
// sequential acquire + release pairs (or 64 concurrent loops with --loops=64) in this process.
//
//   node bench/profile.js redfour-native 20000
//   node --cpu-prof --cpu-prof-dir=/tmp/prof bench/profile.js redfour-native 20000
//   perf stat -e task-clock,context-switches,cpu-migrations -- node bench/profile.js floor 20000
//
// Libraries: redfour-native, "redfour-native (napi only)", redfour, ioredfour, redlock,
// redis-semaphore, floor. Prints µs per pair; redis-server's CPU time is reported separately
// (from /proc) so the client's share of the work can be told apart.

const { RedisServer } = require('./lib/redis-server');
const libs = require('./lib/libs');

async function main() {
  const lib = process.argv[2] || 'redfour-native';
  const pairs = Number(process.argv[3] || 20000);
  const loopsArg = process.argv.find((a) => a.startsWith('--loops='));
  const loops = loopsArg ? Number(loopsArg.slice(8)) : 1;
  const server = await new RedisServer().start();
  try {
    const lock = await libs.open(lib, server.url);
    for (let i = 0; i < 1000; i++) await lock.release(await lock.acquire(`w${i}`, 10000));
    const serverCpu0 = server.cpuSeconds();
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    let next = 0;
    await Promise.all(
      Array.from({ length: loops }, async () => {
        while (next < pairs) {
          const i = next++;
          await lock.release(await lock.acquire(`p${i}`, 10000));
        }
      }),
    );
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    const serverCpu = server.cpuSeconds() - serverCpu0;
    console.log(
      `${lib}: ${pairs} pairs, ${loops} loop(s): ${((seconds * 1e6) / pairs).toFixed(1)} µs/pair wall, ` +
        `${Math.round(pairs / seconds)} pairs/s; node CPU ${((cpu.user + cpu.system) / pairs).toFixed(1)} µs/pair ` +
        `(user ${(cpu.user / pairs).toFixed(1)}, sys ${(cpu.system / pairs).toFixed(1)}); redis-server CPU ${((serverCpu * 1e6) / pairs).toFixed(1)} µs/pair`,
    );
    await lock.close();
  } finally {
    await server.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
