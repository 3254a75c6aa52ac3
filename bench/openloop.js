#!/usr/bin/env node
'use strict';
// Scenario 8's load (open loop, Poisson arrivals of acquire + release pairs on fresh ids) for ONE
// library in THIS process, for diagnosis: per-thread CPU and switches always, and optionally a
// tracer attached to this process for exactly the measured window.
//
//   node bench/openloop.js redfour-native --rate=2000 --seconds=5
//   node bench/openloop.js redfour-native --trace=perf-stat
//   node bench/openloop.js redfour --trace=strace          (strace -f -c; slows every syscall)
//   node bench/openloop.js redfour-native --trace=sched     (perf record of wake-ups, all CPUs,
//                                                           summarised as who woke whom)
//
// Options: --rate=N (pairs/s, 2000), --seconds=S measured (5), --warmup=S (1), --seed=N,
// --url=redis://... (else a private redis-server is started), --out=DIR (tracer files,
// default a temporary folder), --json.
// Libraries: those of lib/libs.js, plus "harness (no lock)".

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');
// First, so that the threads it finds alive are Node's own.
const openloop = require('./lib/openloop');
const libs = require('./lib/libs');
const { RedisServer } = require('./lib/redis-server');
const { summary, fmt } = require('./lib/stats');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : dflt;
};
const lib = args.find((a) => !a.startsWith('--')) || 'redfour-native';
const rate = Number(opt('rate', 2000));
const seconds = Number(opt('seconds', 5));
const warmup = Number(opt('warmup', 1));
const seed = Number(opt('seed', 1));
const trace = opt('trace', 'none');
// Tracer files (and --json): --out, or a temporary folder made only when one is needed.
const outDir =
  opt('out', null) || (trace !== 'none' || args.includes('--json') ? fs.mkdtempSync(path.join(os.tmpdir(), 'openloop-')) : null);

const SYSCALLS = [
  'futex',
  'epoll_wait',
  'epoll_pwait',
  'epoll_pwait2',
  'epoll_ctl',
  'read',
  'write',
  'readv',
  'writev',
  'recvfrom',
  'sendto',
  'sendmsg',
  'recvmsg',
  'sched_yield',
  'getrandom',
  'clock_nanosleep',
  'nanosleep',
  'getrusage',
  'openat',
  'mprotect',
  'madvise',
  'munmap',
  'mmap',
];

/** A tracer over this process for the measured window: start() in the warm-up, then window(). */
function tracer(kind, pid, redisPid) {
  if (kind === 'none') return null;
  const ctl = path.join(outDir, 'ctl');
  const ack = path.join(outDir, 'ack');
  const control = () => {
    for (const f of [ctl, ack]) {
      fs.rmSync(f, { force: true });
      execFileSync('mkfifo', [f]);
    }
    return [`--control=fifo:${ctl},${ack}`, '-D', '-1'];
  };
  // perf opens both fifos read-write; so does this side, and it reads the 4-byte "ack\n" only
  // (perf keeps the fifo open: reading to its end would never return).
  let fds = null;
  const send = (cmd) => {
    if (!fds) fds = { ctl: fs.openSync(ctl, fs.constants.O_RDWR), ack: fs.openSync(ack, fs.constants.O_RDWR) };
    fs.writeSync(fds.ctl, `${cmd}\n`);
    fs.readSync(fds.ack, Buffer.alloc(4), 0, 4, null);
  };
  let proc = null;
  let file = null;
  if (kind === 'strace') {
    // strace cannot start disabled: it is attached when the window opens (attaching takes a few
    // ms, so its counts cover slightly less than the window).
    file = path.join(outDir, 'strace.txt');
    return {
      start() {},
      open() {
        proc = spawn('strace', ['-f', '-c', '-o', file, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'inherit'] });
      },
      async close() {
        proc.kill('SIGINT');
        await new Promise((r) => proc.once('exit', r));
        return fs.readFileSync(file, 'utf8');
      },
    };
  }
  if (kind === 'perf-stat') {
    file = path.join(outDir, 'perf-stat.txt');
    const events = [
      'task-clock',
      'context-switches',
      'cpu-migrations',
      'sched:sched_wakeup',
      ...SYSCALLS.map((s) => `syscalls:sys_enter_${s}`),
    ];
    const redis = redisPid ? `,${redisPid}` : '';
    return {
      start() {
        const argv = ['stat', '--per-thread', '-x', ',', '-o', file, ...control(), '-e', events.join(','), '-p', `${pid}${redis}`];
        proc = spawn('perf', argv, { stdio: ['ignore', 'ignore', 'inherit'] });
      },
      open: () => send('enable'),
      async close() {
        send('disable');
        proc.kill('SIGINT');
        await new Promise((r) => proc.once('exit', r));
        return fs.readFileSync(file, 'utf8');
      },
    };
  }
  if (kind === 'sched') {
    file = path.join(outDir, 'sched.data');
    return {
      start() {
        const argv = ['record', '-q', '-a', '-o', file, ...control(), '-e', 'sched:sched_waking'];
        proc = spawn('perf', argv, { stdio: ['ignore', 'ignore', 'inherit'] });
      },
      open: () => send('enable'),
      async close() {
        send('disable');
        proc.kill('SIGINT');
        await new Promise((r) => proc.once('exit', r));
        return execFileSync('perf', ['script', '-i', file, '-F', 'comm,tid,cpu,time,event,trace'], {
          encoding: 'utf8',
          maxBuffer: 1 << 30,
          stdio: ['ignore', 'pipe', 'ignore'],
        });
      },
    };
  }
  throw new Error(`unknown --trace=${kind}`);
}

/** Who woke whom, from `perf script` lines of sched_wakeup, named by role. */
function wakeups(text, names) {
  const counts = new Map();
  const name = (comm, tid) => names.get(tid) || (comm.startsWith('swapper') ? 'idle/irq' : `other (${comm})`);
  for (const line of text.split('\n')) {
    const m = /^\s*(.+?)\s+(\d+)\s+\[\d+\]\s+[\d.]+:\s+sched:sched_waking:\s+comm=(.+?) pid=(\d+)/.exec(line);
    if (!m) continue;
    // Wakees: this process's threads and this run's redis-server only (others share the machine).
    const wakee = names.get(Number(m[4]));
    if (!wakee) continue;
    const key = `${name(m[1], Number(m[2]))} -> ${wakee}`;
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1]);
}

/** perf stat -x, --per-thread lines: "comm-tid,count,unit,event,...". */
function perStat(text, names) {
  const rows = new Map();
  for (const line of text.split('\n')) {
    const f = line.split(',');
    if (f.length < 4 || line.startsWith('#')) continue;
    const m = /^(.*)-(\d+)$/.exec(f[0].trim());
    if (!m) continue;
    const tid = Number(m[2]);
    const who = names.get(tid) || (m[1].startsWith('redis-server') ? 'redis-server' : `${m[1]}`);
    const count = Number(f[1]);
    if (!Number.isFinite(count) || count === 0) continue;
    const event = f[3].replace('syscalls:sys_enter_', '').replace('sched:', '');
    const row = rows.get(who) || {};
    row[event] = (row[event] || 0) + count;
    rows.set(who, row);
  }
  return rows;
}

async function main() {
  let server = null;
  let url = opt('url', null);
  let redisPid = null;
  if (!url) {
    server = await new RedisServer().start();
    url = server.url;
    redisPid = server.pid;
  }
  const lock = await libs.open(lib, url);
  for (let i = 0; i < 200; i++) await lock.release(await lock.acquire(`olw:${i}`, 10000));
  const tr = tracer(trace, process.pid, redisPid);
  try {
    if (tr) tr.start();
    const r = await openloop.run(lock, {
      rate,
      warmupMs: warmup * 1000,
      durationMs: seconds * 1000,
      seed,
      redisPid,
      onWindow: (phase) => {
        if (tr && phase === 'start') tr.open();
      },
    });
    const traced = tr ? await tr.close() : null;
    const t = summary(r.total);
    const s = summary(r.service);
    const l = summary(r.lag);
    const per = (v) => v / r.pairs;
    const out = [];
    out.push(
      `${lib}: ${rate} pairs/s offered, ${fmt(r.achieved)} achieved over ${fmt(r.seconds)} s (${r.pairs} pairs; ${r.failures} failed, ${r.errors} errors, ${r.incomplete} incomplete); load average ${os
        .loadavg()
        .map((v) => v.toFixed(2))
        .join(' ')}`,
    );
    out.push(
      `  latency from arrival p50 ${fmt(t.p50)} µs, p99 ${fmt(t.p99)} µs; service p50 ${fmt(s.p50)}, p99 ${fmt(s.p99)}; arrival lag p50 ${fmt(l.p50)}, p99 ${fmt(l.p99)}`,
    );
    out.push(
      `  client CPU ${fmt(per(r.cpuUs))} µs/pair (user ${fmt(per(r.userUs))}, sys ${fmt(per(r.systemUs))}; /proc/self/stat ${fmt(per(r.statCpuUs))}), ${fmt(r.cpuUs / 1e4 / r.seconds)} % of a core; redis-server CPU ${r.redisCpuUs === null ? 'n/a' : fmt(per(r.redisCpuUs))} µs/pair`,
    );
    out.push(
      `  context switches ${fmt(per(r.voluntary + r.involuntary))}/pair (voluntary ${fmt(per(r.voluntary))}, involuntary ${fmt(per(r.involuntary))})`,
    );
    out.push(
      '  per thread role, per pair: CPU µs (user + sys, from ticks) / voluntary switches (= sleeps, each ended by a wake-up) / involuntary / times scheduled in / run-queue wait µs',
    );
    for (const [k, v] of Object.entries(r.threads)) {
      if (!v.threads) continue;
      out.push(
        `    ${k.padEnd(10)} (${v.threads} thread${v.threads > 1 ? 's' : ''}): ${fmt(per(v.cpuUs))} (${fmt(per(v.userUs))} + ${fmt(per(v.systemUs))}) / ${fmt(per(v.voluntary))} / ${fmt(per(v.involuntary))} / ${fmt(per(v.slices))} / ${fmt(per(v.runQueueUs))}`,
      );
    }
    out.push(`    exited    (${r.exited.threads}): ${fmt(per(r.exited.cpuUs))} µs / ${fmt(per(r.exited.switches))} switches`);
    const names = new Map(
      r.threadList.map((x) => [x.tid, x.role === 'js' ? 'JS thread' : x.role === 'runtime' ? 'runtime thread' : `node thread ${x.tid}`]),
    );
    if (redisPid) for (const tid of fs.readdirSync(`/proc/${redisPid}/task`)) names.set(Number(tid), 'redis-server');
    if (trace === 'strace') {
      out.push(`  strace -f -c over the window (all threads; per pair = count / ${r.pairs}):`);
      for (const line of traced.split('\n')) {
        const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
        if (m && m[2] !== 'total') out.push(`    ${m[2].padEnd(16)} ${m[1].padStart(8)}  ${fmt(per(Number(m[1])))}/pair`);
      }
    } else if (trace === 'perf-stat') {
      out.push(`  perf stat --per-thread over the window, per pair (${r.pairs} pairs):`);
      for (const [who, row] of perStat(traced, names)) {
        const cells = Object.entries(row)
          .filter(([k]) => k !== 'task-clock')
          .map(([k, v]) => `${k} ${fmt(per(v))}`);
        out.push(`    ${who}: task-clock ${fmt(per(row['task-clock'] || 0) * 1000)} µs; ${cells.join(', ')}`);
      }
    } else if (trace === 'sched') {
      out.push(
        `  wake-ups (sched_waking, all CPUs) of this process's threads and redis-server, per pair (${r.pairs} pairs); "A -> B": A's context woke B:`,
      );
      for (const [k, v] of wakeups(traced, names)) if (v / r.pairs >= 0.005) out.push(`    ${k.padEnd(40)} ${fmt(per(v))}`);
    }
    console.log(out.join('\n'));
    if (args.includes('--json'))
      fs.writeFileSync(
        path.join(outDir, 'result.json'),
        JSON.stringify({ ...r, total: undefined, service: undefined, lag: undefined }, null, 2),
      );
    if (tr) console.log(`  tracer files in ${outDir}`);
  } finally {
    await lock.close();
    if (server) await server.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
