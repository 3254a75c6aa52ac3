'use strict';
// Scenario 8 (issue 15): open-loop paced load, the process-under-test side. Used by worker.js
// (one fresh process per library, rate and round) and by ../openloop.js (the same load in one
// process, with a tracer attached, for diagnosis).
//
// Arrivals come from ../openloop-gen.js, a separate process writing Poisson arrival times into
// a pipe: each one starts an acquire + release pair on a fresh id the moment this process reads
// it, whatever is still in flight (open loop). Latency is counted from the arrival's scheduled
// time, so time a request spends unread (event loop busy, thread asleep) is counted and
// coordinated omission is avoided; "service" latency (from the moment the pair was started) is
// kept too, and so is the lag between the two.
//
// Costs are read over the measured window only (after the warm-up):
// - client CPU: process.cpuUsage() = getrusage(RUSAGE_SELF), every thread of the process, those
//   that exited included (cross-checked with utime + stime from /proc/self/stat, in ticks);
// - context switches: process.resourceUsage() voluntary + involuntary (RUSAGE_SELF, exited
//   threads included), and per thread from /proc/self/task/*/status (live threads only: the
//   difference is reported as "exited");
// - per-thread CPU from /proc/self/task/*/schedstat (ns, precise) and thread roles: the JS main
//   thread (tid = pid), redfour-native's tokio runtime (threads named "redfour-native"), Node's
//   threads that existed before any library was loaded (V8 platform workers and the like), and
//   Node threads started later (libuv's threadpool and the like);
// - Redis CPU: every thread of the redis-server, from /proc/<pid>/task/*/schedstat (ns).

const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');

const GENERATOR = path.join(__dirname, '..', 'openloop-gen.js');
const nowNs = () => Number(process.hrtime.bigint());

// Threads alive when this module was first loaded (before any library): Node's own.
const BOOT_TIDS = new Set(listTids('self'));

function listTids(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    return [];
  }
}

function readText(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** One thread: comm, CPU ns (schedstat), times scheduled in, run-queue wait, ctx switches. */
function readThread(pid, tid) {
  const dir = `/proc/${pid}/task/${tid}`;
  const sched = readText(`${dir}/schedstat`);
  const status = readText(`${dir}/status`);
  const comm = readText(`${dir}/comm`);
  const stat = readText(`${dir}/stat`);
  if (!sched || !status) return null;
  const f = stat ? stat.slice(stat.lastIndexOf(')') + 2).split(' ') : [];
  const [runNs, waitNs, slices] = sched.trim().split(/\s+/).map(Number);
  const num = (name) => Number((new RegExp(`^${name}:\\s*(\\d+)`, 'm').exec(status) || [])[1] || 0);
  return {
    tid,
    comm: (comm || '').trim(),
    runNs,
    waitNs,
    slices,
    voluntary: num('voluntary_ctxt_switches'),
    involuntary: num('nonvoluntary_ctxt_switches'),
    utimeTicks: Number(f[11] || 0),
    stimeTicks: Number(f[12] || 0),
  };
}

function readThreads(pid) {
  const out = new Map();
  for (const tid of listTids(pid)) {
    const t = readThread(pid, tid);
    if (t) out.set(tid, t);
  }
  return out;
}

/** CPU ns of every thread of process `pid` (live threads). */
function processCpuNs(pid) {
  let ns = 0;
  for (const t of readThreads(pid).values()) ns += t.runNs;
  return ns;
}

/** utime + stime of this process (all threads, exited included), in clock ticks. */
function statTicks() {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

function role(t) {
  if (t.tid === process.pid) return 'js';
  if (t.comm === 'redfour-native' || t.comm.startsWith('tokio')) return 'runtime';
  if (BOOT_TIDS.has(t.tid)) return 'nodeBoot';
  return 'nodeLater';
}

function snapshot(redisPid) {
  const ru = process.resourceUsage();
  const cpu = process.cpuUsage();
  return {
    t: nowNs(),
    cpuUs: cpu.user + cpu.system,
    userUs: cpu.user,
    systemUs: cpu.system,
    ticks: statTicks(),
    voluntary: ru.voluntaryContextSwitches,
    involuntary: ru.involuntaryContextSwitches,
    threads: readThreads('self'),
    redisNs: redisPid ? processCpuNs(redisPid) : null,
  };
}

const ROLES = ['js', 'runtime', 'nodeBoot', 'nodeLater'];

/** Per-role deltas between two snapshots (threads alive at the end; new ones count from 0). */
function threadDeltas(a, b) {
  const roles = Object.fromEntries(
    ROLES.map((r) => [r, { threads: 0, cpuUs: 0, userUs: 0, systemUs: 0, voluntary: 0, involuntary: 0, slices: 0, runQueueUs: 0 }]),
  );
  const threads = [];
  for (const [tid, end] of b.threads) {
    const start = a.threads.get(tid) || { runNs: 0, waitNs: 0, slices: 0, voluntary: 0, involuntary: 0, utimeTicks: 0, stimeTicks: 0 };
    const d = {
      tid,
      comm: end.comm,
      role: role(end),
      cpuUs: (end.runNs - start.runNs) / 1000,
      // user / system split from /proc/<tid>/stat (clock ticks of 10 ms: coarse over short windows)
      userUs: (end.utimeTicks - start.utimeTicks) * 1e4,
      systemUs: (end.stimeTicks - start.stimeTicks) * 1e4,
      runQueueUs: (end.waitNs - start.waitNs) / 1000,
      slices: end.slices - start.slices,
      voluntary: end.voluntary - start.voluntary,
      involuntary: end.involuntary - start.involuntary,
    };
    threads.push(d);
    const r = roles[d.role];
    r.threads++;
    for (const k of ['cpuUs', 'userUs', 'systemUs', 'voluntary', 'involuntary', 'slices', 'runQueueUs']) r[k] += d[k];
  }
  const exitedTids = [...a.threads.keys()].filter((tid) => !b.threads.has(tid));
  return { roles, threads, exitedThreads: exitedTids.length };
}

/**
 * Runs the paced load on `lock` (the uniform adapter of lib/libs.js) and returns the window's
 * figures. `onWindow(phase)` ('start' | 'end') is called right after each snapshot (for tracers).
 */
function run(lock, { rate, warmupMs, durationMs, seed = 1, redisPid = null, ttl = 10000, drainMs = 3000, leadMs = 150, onWindow = null }) {
  return new Promise((resolve, reject) => {
    const prefix = `ol:${process.pid}:${rate}:`;
    const cap = Math.ceil(((rate * durationMs) / 1000) * 1.5) + 1000;
    const total = new Float64Array(cap); // scheduled arrival -> pair done, µs
    const service = new Float64Array(cap); // pair started -> pair done, µs
    const lag = new Float64Array(cap); // scheduled arrival -> pair started, µs
    let samples = 0;
    let seq = 0;
    let inflight = 0;
    let completed = 0;
    let failures = 0;
    let errors = 0;
    let firstError = null;
    let start = null;
    let winStart = Infinity;
    let winEnd = Infinity;
    let snapA = null;
    let snapB = null;
    let doneA = 0;
    let doneB = 0;
    let startedInWindow = 0;
    let ended = false;
    let finished = false;
    let drainTimer = null;
    let leftover = null;

    const gen = spawn(process.execPath, [GENERATOR, String(rate), String(seed), String(warmupMs + durationMs), String(leadMs)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    gen.on('error', (err) => finish(err));

    function finish(err) {
      if (finished) return;
      finished = true;
      clearTimeout(drainTimer);
      if (err) {
        gen.kill('SIGKILL');
        reject(err);
        return;
      }
      if (!snapA || !snapB) {
        reject(new Error('the measured window never closed'));
        return;
      }
      const seconds = (snapB.t - snapA.t) / 1e9;
      const pairs = doneB - doneA;
      const th = threadDeltas(snapA, snapB);
      const liveVol = ROLES.reduce((a, r) => a + th.roles[r].voluntary, 0);
      const liveInvol = ROLES.reduce((a, r) => a + th.roles[r].involuntary, 0);
      const liveCpu = ROLES.reduce((a, r) => a + th.roles[r].cpuUs, 0);
      const voluntary = snapB.voluntary - snapA.voluntary;
      const involuntary = snapB.involuntary - snapA.involuntary;
      const cpuUs = snapB.cpuUs - snapA.cpuUs;
      resolve({
        rate,
        seconds,
        pairs,
        offered: startedInWindow,
        achieved: pairs / seconds,
        cpuUs,
        userUs: snapB.userUs - snapA.userUs,
        systemUs: snapB.systemUs - snapA.systemUs,
        statCpuUs: ((snapB.ticks - snapA.ticks) * 1e6) / 100,
        voluntary,
        involuntary,
        redisCpuUs: snapA.redisNs === null ? null : (snapB.redisNs - snapA.redisNs) / 1000,
        threads: th.roles,
        threadList: th.threads,
        // What the live threads' figures do not cover: threads that exited in the window.
        exited: { threads: th.exitedThreads, cpuUs: cpuUs - liveCpu, switches: voluntary + involuntary - liveVol - liveInvol },
        failures,
        errors,
        firstError,
        incomplete: inflight,
        total: Array.from(total.subarray(0, samples)),
        service: Array.from(service.subarray(0, samples)),
        lag: Array.from(lag.subarray(0, samples)),
      });
    }

    function settleIfDone() {
      if (ended && inflight === 0 && snapB) finish();
    }

    function arrive(tSched) {
      const tStart = nowNs();
      const measured = tSched >= winStart && tSched < winEnd;
      if (measured) startedInWindow++;
      inflight++;
      const id = prefix + seq++;
      lock
        .acquire(id, ttl)
        .then((h) => {
          if (!h) {
            failures++;
            return;
          }
          return lock.release(h);
        })
        .then(
          () => {
            const tDone = nowNs();
            inflight--;
            completed++;
            if (measured && samples < cap) {
              total[samples] = (tDone - tSched) / 1000;
              service[samples] = (tDone - tStart) / 1000;
              lag[samples] = (tStart - tSched) / 1000;
              samples++;
            }
            if (ended) settleIfDone();
          },
          (err) => {
            inflight--;
            errors++;
            if (!firstError) firstError = String((err && err.message) || err);
            if (ended) settleIfDone();
          },
        );
    }

    function onHeader(t0) {
      start = t0;
      winStart = start + warmupMs * 1e6;
      winEnd = winStart + durationMs * 1e6;
      setTimeout(
        () => {
          snapA = snapshot(redisPid);
          doneA = completed;
          if (onWindow) onWindow('start', snapA.t);
          setTimeout(
            () => {
              snapB = snapshot(redisPid);
              doneB = completed;
              if (onWindow) onWindow('end', snapB.t);
              settleIfDone();
            },
            Math.max(0, (winEnd - snapA.t) / 1e6),
          );
        },
        Math.max(0, (winStart - nowNs()) / 1e6),
      );
    }

    gen.stdout.on('data', (chunk) => {
      let buf = chunk;
      if (leftover) {
        buf = Buffer.concat([leftover, chunk]);
        leftover = null;
      }
      const whole = buf.length - (buf.length % 8);
      let off = 0;
      if (start === null && whole >= 8) {
        onHeader(buf.readDoubleLE(0));
        off = 8;
      }
      for (; off < whole; off += 8) arrive(buf.readDoubleLE(off));
      if (whole < buf.length) leftover = Buffer.from(buf.subarray(whole));
    });
    gen.stdout.on('end', () => {
      ended = true;
      drainTimer = setTimeout(() => {
        // Pairs still in flight after the drain time stay counted as incomplete.
        if (snapB) finish();
        else finish(new Error('the generator ended before the measured window did'));
      }, drainMs);
      settleIfDone();
    });
  });
}

module.exports = { run, snapshot, threadDeltas, readThreads, processCpuNs, ROLES, BOOT_TIDS };
