'use strict';
// The arrival generator of the open-loop scenario (lib/openloop.js): a separate process that
// writes Poisson arrivals into its stdout pipe, as a service's clients would send requests, so the
// process under test wakes on socket data exactly as a real service does, and the generator's
// own CPU and context switches are not counted in it (they are a child's, not RUSAGE_SELF's).
//
//   node openloop-gen.js <rate/s> <seed> <totalMs> [leadMs]
//
// Output: 8-byte little-endian doubles, each a CLOCK_MONOTONIC time in ns
// (process.hrtime.bigint(), the same clock in every process on Linux). The first is the start
// of the schedule (leadMs from now); every one after it is an arrival's scheduled time, written
// when that time has come. The generator never waits for the reader (open loop): arrivals that
// fall due while it sleeps late are written together, with their own scheduled times, and the
// reader measures latency from those. It sleeps in Atomics.wait (a timed futex, no spinning, so
// it leaves the 2 cores to the process under test and Redis). Exits after totalMs.

const fs = require('node:fs');

const rate = Number(process.argv[2]);
const seed = Number(process.argv[3] || 1) >>> 0;
const totalMs = Number(process.argv[4]);
const leadMs = Number(process.argv[5] || 100);
if (!(rate > 0) || !(totalMs > 0)) {
  process.stderr.write('usage: openloop-gen.js <rate/s> <seed> <totalMs> [leadMs]\n');
  process.exit(2);
}

// mulberry32: the same seed gives every library the same arrival schedule.
let state = seed || 1;
function random() {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const meanGapNs = 1e9 / rate;
const gap = () => -Math.log(1 - random()) * meanGapNs;

const parked = new Int32Array(new SharedArrayBuffer(4));
const sleepMs = (ms) => Atomics.wait(parked, 0, 0, ms);
const nowNs = () => Number(process.hrtime.bigint());

// fd 1 is the pipe the reader made; process.stdout is never touched, so it stays blocking.
function writeAll(buf) {
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(1, buf, off, buf.length - off);
    } catch (err) {
      if (err.code === 'EAGAIN') sleepMs(0.2);
      else if (err.code === 'EPIPE') process.exit(0);
      else throw err;
    }
  }
}

const MAX_BATCH = 4096;
const out = Buffer.alloc(8 * MAX_BATCH);
const start = nowNs() + leadMs * 1e6;
const end = start + totalMs * 1e6;
out.writeDoubleLE(start, 0);
writeAll(out.subarray(0, 8));

let next = start + gap();
while (next <= end) {
  const t = nowNs();
  if (next > t) {
    sleepMs((next - t) / 1e6);
    continue;
  }
  let n = 0;
  while (next <= t && next <= end && n < MAX_BATCH) {
    out.writeDoubleLE(Math.round(next), 8 * n++);
    next += gap();
  }
  writeAll(out.subarray(0, 8 * n));
}
