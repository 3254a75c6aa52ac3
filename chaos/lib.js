'use strict';
// Small shared pieces of the chaos suite: the monotonic clock, a seedable PRNG, a JSONL writer
// that survives SIGKILL (one write(2) per record), and a tiny RESP client with a hard timeout
// for probing a Redis that may be paused, restarting or evicting.

const fs = require('node:fs');
const net = require('node:net');

/**
 * Microseconds on CLOCK_MONOTONIC. process.hrtime.bigint() reads CLOCK_MONOTONIC, which on Linux
 * is one system-wide clock: timestamps from different processes are directly comparable.
 */
function nowUs() {
  return Number(process.hrtime.bigint() / 1000n);
}

/** mulberry32: a small deterministic PRNG, so a run can be replayed with its seed. */
function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  next.int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)); // inclusive
  next.pick = (arr) => arr[Math.floor(next() * arr.length)];
  next.chance = (p) => next() < p;
  /** Picks a key of `weights` ({name: weight}) with probability proportional to its weight. */
  next.weighted = (weights) => {
    const entries = Object.entries(weights).filter(([, w]) => w > 0);
    const total = entries.reduce((s, [, w]) => s + w, 0);
    let r = next() * total;
    for (const [name, w] of entries) {
      r -= w;
      if (r < 0) return name;
    }
    return entries[entries.length - 1][0];
  };
  return next;
}

/** Appends JSON lines with one synchronous write each: nothing is lost when the process is SIGKILLed. */
class Jsonl {
  constructor(file) {
    this.file = file;
    this.fd = fs.openSync(file, 'a');
  }

  write(record) {
    fs.writeSync(this.fd, `${JSON.stringify(record)}\n`);
  }

  close() {
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
    }
  }
}

/** Reads a JSONL file; a torn last line (a process killed mid-write) is skipped and counted. */
function readJsonl(file) {
  const records = [];
  let torn = 0;
  if (!fs.existsSync(file)) return { records, torn };
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line) continue;
    try {
      records.push(JSON.parse(line));
    } catch {
      torn += 1;
    }
  }
  return { records, torn };
}

function encodeCommand(args) {
  let out = `*${args.length}\r\n`;
  for (const a of args) {
    const s = Buffer.from(String(a));
    out += `$${s.length}\r\n${s.toString('binary')}\r\n`;
  }
  return Buffer.from(out, 'binary');
}

/** Parses one RESP2 value from `buf` at `pos`; returns [value, nextPos] or null if incomplete. */
function parseResp(buf, pos = 0) {
  const nl = buf.indexOf('\r\n', pos);
  if (nl < 0) return null;
  const type = String.fromCharCode(buf[pos]);
  const line = buf.toString('utf8', pos + 1, nl);
  const after = nl + 2;
  switch (type) {
    case '+':
      return [line, after];
    case '-': {
      const err = new Error(line);
      err.redisError = true;
      return [err, after];
    }
    case ':':
      return [Number(line), after];
    case '$': {
      const len = Number(line);
      if (len < 0) return [null, after];
      if (buf.length < after + len + 2) return null;
      return [buf.toString('utf8', after, after + len), after + len + 2];
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return [null, after];
      const items = [];
      let p = after;
      for (let i = 0; i < n; i++) {
        const r = parseResp(buf, p);
        if (r === null) return null;
        items.push(r[0]);
        p = r[1];
      }
      return [items, p];
    }
    default:
      throw new Error(`bad RESP type byte ${type}`);
  }
}

/**
 * Runs `commands` (arrays of arguments) on a fresh connection to 127.0.0.1:port and resolves with
 * their replies (error replies as Error objects), or rejects after `timeoutMs` (a paused server,
 * a refused connection). Nothing is retried.
 */
function redisCall(port, commands, { timeoutMs = 1000, password } = {}) {
  const all = password ? [['AUTH', password], ...commands] : commands;
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(password ? value.slice(1) : value);
    };
    const timer = setTimeout(() => finish(new Error(`redis ${port}: no reply within ${timeoutMs} ms`)), timeoutMs);
    sock.on('connect', () => sock.write(Buffer.concat(all.map(encodeCommand))));
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const replies = [];
      let pos = 0;
      while (replies.length < all.length) {
        const r = parseResp(buf, pos);
        if (r === null) return;
        replies.push(r[0]);
        pos = r[1];
      }
      finish(null, replies);
    });
    sock.on('error', (err) => finish(err));
    sock.on('close', () => finish(new Error(`redis ${port}: connection closed`)));
  });
}

/** One command; rejects on an error reply too. */
async function redisCmd(port, args, options) {
  const [reply] = await redisCall(port, [args], options);
  if (reply instanceof Error) throw reply;
  return reply;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Blocks the event loop for `ms` (a stand-in for a long GC pause or a CPU-bound section). */
function busy(ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // spin
  }
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

module.exports = { nowUs, prng, Jsonl, readJsonl, redisCall, redisCmd, encodeCommand, parseResp, sleep, busy, percentile };
