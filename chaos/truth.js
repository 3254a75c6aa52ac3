'use strict';
// Redis truth for the chaos checker: what the server itself did to the lock keys, independent of
// anything the library reports.
//
// Run as a child of chaos/run.js (`fork(truth.js, [JSON {port, namespace, log}])`): it holds a
// MONITOR connection to the redis-server (Redis 7 shows every command a Lua script runs, with the
// server's wall-clock timestamp: `1700000000.123456 [0 lua] "HSET" "ns:id" "index" "5" ...`) and
// writes, for the namespace's lock keys, one JSONL record per write:
//   {k:'hset', t, key, idx}     the key now holds fencing index idx (acquire, quorum commit)
//   {k:'pexpire', t, key, ms}   its expiry is now t + ms (PEXPIRE/EXPIRE, SET ... PX/EX)
//   {k:'del', t, key}           DEL/UNLINK (release, undo); also PEXPIRE <= 0
//   {k:'persist', t, key}       the key lost its expiry (PERSIST, SET without KEEPTTL)
//   {k:'flush', t}              FLUSHALL/FLUSHDB
//   {k:'gap', t0, t1}           MONITOR was down: nothing is known between t0 (the last line seen on
//                               the old connection) and t1 (the new MONITOR confirmed)
//   {k:'snap', t, keys}         after (re)connecting: [[key, idx, pttl], ...] read in one Lua script
//                               together with the server's TIME, so `t` is exact
//   {k:'clock', t, offsetUs, rttUs}  a calibration sample (below)
//   {k:'stats', lines, records, gaps}  at the end
// `t` is µs on CLOCK_MONOTONIC, the clock of the worker histories. Redis stamps MONITOR lines with
// gettimeofday; the recorder converts them with realtime - monotonic offsets measured by sending
// TIME to the same server on a second connection every 500 ms (offset = server time - the midpoint
// of the round trip; the sample with the smallest round trip of the last 10 s is used, so the
// error is at most half a loopback round trip, tens of µs). Both clocks are of the same machine.
//
// The runner stops it with IPC {cmd:'stop'} after the final key check; it then takes a last
// snapshot, writes 'stats', flushes and exits. IPC out: {type:'ready'} once MONITOR is confirmed
// and the clock calibrated.
//
// buildTruth() (used by chaos/checker.js) turns the records into per-key intervals: the key held
// index idx from its HSET until the earliest of a DEL, an HSET of another index and its expiry (the
// last PEXPIRE's time + ms).

const fs = require('node:fs');
const net = require('node:net');
const { nowUs, parseResp, encodeCommand } = require('./lib');

const INF = Number.POSITIVE_INFINITY;

// ---------------------------------------------------------------------------------------------
// MONITOR line parsing

/** Unescapes one argument as Redis writes it (sdscatrepr): \" \\ \n \r \t \a \b \xHH. */
function unrepr(s) {
  if (!s.includes('\\')) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch !== '\\') {
      out += ch;
      continue;
    }
    const n = s[++i];
    switch (n) {
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'a':
        out += '\x07';
        break;
      case 'b':
        out += '\b';
        break;
      case 'x':
        out += String.fromCharCode(parseInt(s.slice(i + 1, i + 3), 16));
        i += 2;
        break;
      default:
        out += n;
    }
  }
  return out;
}

/**
 * Parses `1700000000.123456 [0 lua] "HSET" "k" ...` into {realUs, source, args}; null for anything
 * else (the '+OK' of MONITOR itself, a torn line).
 */
function parseMonitorLine(line) {
  const sp = line.indexOf(' ');
  if (sp < 0) return null;
  const stamp = line.slice(line[0] === '+' ? 1 : 0, sp);
  const dot = stamp.indexOf('.');
  if (dot < 0) return null;
  const realUs = Number(stamp.slice(0, dot)) * 1e6 + Number(stamp.slice(dot + 1).padEnd(6, '0'));
  if (!Number.isFinite(realUs)) return null;
  const close = line.indexOf('] ', sp);
  if (close < 0 || line[sp + 1] !== '[') return null;
  const source = line.slice(sp + 2, close).replace(/^\d+ /, '');
  const args = [];
  let i = close + 2;
  while (i < line.length) {
    if (line[i] !== '"') return null;
    let j = i + 1;
    while (j < line.length && line[j] !== '"') j += line[j] === '\\' ? 2 : 1;
    args.push(unrepr(line.slice(i + 1, j)));
    i = j + 2; // past the quote and the separating space
  }
  return { realUs, source, args };
}

/**
 * The truth records one parsed command yields for keys starting with `prefix` (`${namespace}:`).
 * Only commands that can change what a lock key holds or when it expires; reads are ignored.
 */
function recordsFor(cmd, t, prefix) {
  const [rawName, ...a] = cmd.args;
  if (!rawName) return [];
  const name = rawName.toLowerCase();
  const mine = (key) => typeof key === 'string' && key.startsWith(prefix);
  switch (name) {
    case 'hset':
    case 'hmset': {
      if (!mine(a[0])) return [];
      for (let i = 1; i + 1 < a.length; i += 2) {
        if (a[i] === 'index') return [{ k: 'hset', t, key: a[0], idx: Number(a[i + 1]) }];
      }
      return [];
    }
    case 'pexpire':
    case 'expire': {
      if (!mine(a[0])) return [];
      const ms = Number(a[1]) * (name === 'expire' ? 1000 : 1);
      return [ms <= 0 ? { k: 'del', t, key: a[0] } : { k: 'pexpire', t, key: a[0], ms }];
    }
    case 'pexpireat':
    case 'expireat':
      // Absolute (wall-clock) expiries: not used by the library; recorded so the checker can say so.
      return mine(a[0]) ? [{ k: 'unknown-write', t, key: a[0], cmd: name }] : [];
    case 'persist':
      return mine(a[0]) ? [{ k: 'persist', t, key: a[0] }] : [];
    case 'del':
    case 'unlink':
      return a.filter(mine).map((key) => ({ k: 'del', t, key }));
    case 'flushall':
    case 'flushdb':
      return [{ k: 'flush', t }];
    case 'set':
    case 'rename':
    case 'renamenx':
    case 'move':
    case 'copy':
    case 'restore':
    case 'hdel':
    case 'getdel':
    case 'getex':
      return a.some(mine) ? [{ k: 'unknown-write', t, key: a.find(mine), cmd: name }] : [];
    default:
      return [];
  }
}

// ---------------------------------------------------------------------------------------------
// Intervals (for the checker)

/**
 * Per-key intervals from truth records. Returns Map key -> [{key, idx, start, startLow, end,
 * certainEnd, endBy}], each list in start order:
 *   start       the HSET time (µs); for a key first seen in a snapshot after a gap, the snapshot
 *               time, with startLow the gap's start (it began somewhere in between);
 *   end         the earliest of DEL, HSET of another index, expiry, flush; Infinity if still held
 *               without expiry when the records end;
 *   certainEnd  = end, unless MONITOR was down meanwhile: then the start of that gap (the key
 *               held idx at least until then; after it, possibly not);
 *   endBy       'del' | 'replaced' | 'expire' | 'flush' | 'gap' | 'open'.
 * `isDataLoss(t0, t1)`: whether the server lost data in that window (a restart without
 * persistence, eviction); a key that shows the same index after such a gap is not taken to be
 * the same grant (the counter may have been reset and the index issued again).
 */
function buildTruth(records, { isDataLoss = () => false } = {}) {
  const evs = records.filter((r) => r.k !== 'clock' && r.k !== 'stats').map((r, i) => ({ r, i, t: r.k === 'gap' ? r.t0 : r.t }));
  evs.sort((x, y) => x.t - y.t || x.i - y.i);
  const open = new Map(); // key -> interval (with .expiry, .uncertainFrom)
  const out = new Map();
  const unknownWrites = [];
  let gaps = 0;
  const push = (iv) => {
    if (!out.has(iv.key)) out.set(iv.key, []);
    out.get(iv.key).push(iv);
  };
  const close = (iv, end, endBy) => {
    iv.end = end;
    iv.certainEnd = iv.uncertainFrom !== undefined ? Math.min(iv.uncertainFrom, end) : end;
    iv.endBy = iv.uncertainFrom !== undefined && endBy !== 'expire' ? 'gap' : endBy;
    if (iv.uncertainFrom !== undefined && endBy === 'expire' && iv.uncertainFrom < end) iv.endBy = 'gap';
    delete iv.expiry;
    delete iv.uncertainFrom;
    open.delete(iv.key);
  };
  /** Ends `key`'s interval if its expiry passed before t. */
  const expireBefore = (key, t) => {
    const iv = open.get(key);
    if (iv && iv.expiry <= t) close(iv, iv.expiry, 'expire');
    return open.get(key);
  };
  const start = (key, idx, t, startLow = t) => {
    const iv = { key, idx, start: t, startLow, end: INF, certainEnd: INF, endBy: 'open', expiry: INF };
    open.set(key, iv);
    push(iv);
    return iv;
  };
  let lastGap = null;
  for (const { r, t } of evs) {
    switch (r.k) {
      case 'hset': {
        const iv = expireBefore(r.key, t);
        if (iv && iv.idx === r.idx) break; // the same grant written again (quorum commit)
        if (iv) close(iv, t, 'replaced');
        start(r.key, r.idx, t);
        break;
      }
      case 'pexpire': {
        const iv = expireBefore(r.key, t);
        if (iv) iv.expiry = t + r.ms * 1000;
        break;
      }
      case 'persist': {
        const iv = expireBefore(r.key, t);
        if (iv) iv.expiry = INF;
        break;
      }
      case 'del': {
        const iv = expireBefore(r.key, t);
        if (iv) close(iv, t, 'del');
        break;
      }
      case 'flush':
        for (const key of [...open.keys()]) {
          const iv = expireBefore(key, t);
          if (iv) close(iv, t, 'flush');
        }
        break;
      case 'unknown-write':
        unknownWrites.push(r);
        break;
      case 'gap':
        gaps += 1;
        lastGap = r;
        for (const key of [...open.keys()]) {
          const iv = expireBefore(key, r.t0);
          if (iv && iv.uncertainFrom === undefined) iv.uncertainFrom = r.t0;
        }
        break;
      case 'snap': {
        const lossy = lastGap ? isDataLoss(lastGap.t0, r.t) : false;
        const seen = new Map(r.keys.map(([key, idx, pttl]) => [key, { idx: idx === '' || idx === null ? null : Number(idx), pttl }]));
        for (const key of [...open.keys()]) {
          const iv = expireBefore(key, r.t);
          if (!iv) continue;
          const s = seen.get(key);
          if (s && s.idx === iv.idx && !lossy) {
            // Still the same grant (indexes only grow while nothing is lost): it held throughout.
            delete iv.uncertainFrom;
            iv.expiry = s.pttl >= 0 ? r.t + s.pttl * 1000 : INF;
            seen.delete(key);
          } else if (iv.uncertainFrom !== undefined) {
            close(iv, Math.min(iv.expiry, r.t), 'gap');
          } else if (!s || s.idx !== iv.idx) {
            // No gap, yet the snapshot disagrees with the stream: a write MONITOR did not show.
            unknownWrites.push({ k: 'snapshot-disagrees', t: r.t, key, model: iv.idx, snapshot: s ? s.idx : null });
            close(iv, r.t, 'gap');
            iv.certainEnd = iv.start;
          } else {
            seen.delete(key);
          }
        }
        for (const [key, s] of seen) {
          if (s.idx === null || !Number.isFinite(s.idx)) continue;
          const iv = start(key, s.idx, r.t, lastGap ? lastGap.t0 : r.t);
          iv.expiry = s.pttl >= 0 ? r.t + s.pttl * 1000 : INF;
          if (!lastGap) unknownWrites.push({ k: 'snapshot-unseen-key', t: r.t, key, idx: s.idx });
        }
        lastGap = null;
        break;
      }
      default:
        break;
    }
  }
  for (const iv of [...open.values()]) {
    if (iv.expiry < INF) close(iv, iv.expiry, 'expire');
    else {
      iv.certainEnd = iv.uncertainFrom !== undefined ? iv.uncertainFrom : INF;
      delete iv.expiry;
      delete iv.uncertainFrom;
    }
  }
  return { intervals: out, unknownWrites, gaps };
}

// ---------------------------------------------------------------------------------------------
// The recorder process

/** A minimal RESP connection that answers commands in order; rejects them all on close. */
class Conn {
  constructor(port, onClose) {
    this.sock = net.connect({ port, host: '127.0.0.1' });
    this.sock.setNoDelay(true);
    this.buf = Buffer.alloc(0);
    this.queue = [];
    this.closed = false;
    this.sock.on('data', (chunk) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      let pos = 0;
      for (;;) {
        const r = this.queue.length ? parseResp(this.buf, pos) : null;
        if (r === null) break;
        pos = r[1];
        this.queue.shift().resolve(r[0]);
      }
      this.buf = this.buf.subarray(pos);
    });
    const end = () => {
      if (this.closed) return;
      this.closed = true;
      for (const q of this.queue.splice(0)) q.reject(new Error('connection closed'));
      if (onClose) onClose();
    };
    this.sock.on('error', end);
    this.sock.on('close', end);
  }

  connected() {
    return new Promise((resolve, reject) => {
      this.sock.once('connect', resolve);
      this.sock.once('error', reject);
    });
  }

  call(args) {
    if (this.closed) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ resolve, reject });
      this.sock.write(encodeCommand(args));
    });
  }

  close() {
    this.sock.destroy();
  }
}

const SNAPSHOT = `
local t = redis.call('TIME')
local out = {t[1], t[2]}
for _, k in ipairs(redis.call('KEYS', ARGV[1])) do
  local idx = ''
  if redis.call('TYPE', k)['ok'] == 'hash' then idx = redis.call('HGET', k, 'index') or '' end
  out[#out + 1] = k
  out[#out + 1] = idx
  out[#out + 1] = redis.call('PTTL', k)
end
return out
`;

function globEscape(s) {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

function recorderMain() {
  const args = JSON.parse(process.argv[2]);
  const prefix = `${args.namespace}:`;
  const fd = fs.openSync(args.log, 'a');
  let pending = [];
  const write = (rec) => pending.push(JSON.stringify(rec));
  const flush = () => {
    if (pending.length === 0) return;
    fs.writeSync(fd, `${pending.join('\n')}\n`);
    pending = [];
  };
  const flushTimer = setInterval(flush, 50);
  const stats = { lines: 0, records: 0, gaps: 0, reconnects: 0 };

  // Clock: realtime (server TIME) - monotonic, from the best recent sample.
  const samples = []; // {at, offset, rtt}
  let offset = null;
  const toMono = (realUs) => Math.round(realUs - offset);

  let ctl = null;
  const control = async () => {
    if (ctl && !ctl.closed) return ctl;
    ctl = new Conn(args.port);
    await ctl.connected();
    await ctl.call(['CLIENT', 'SETNAME', 'chaos-truth-ctl']);
    return ctl;
  };
  const calibrate = async () => {
    const c = await control();
    const m0 = nowUs();
    const reply = await c.call(['TIME']);
    const m1 = nowUs();
    const real = Number(reply[0]) * 1e6 + Number(reply[1]);
    const sample = { at: m1, offset: real - (m0 + m1) / 2, rtt: m1 - m0 };
    samples.push(sample);
    while (samples.length && samples[0].at < m1 - 10_000_000) samples.shift();
    const best = samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
    offset = best.offset;
    write({ k: 'clock', t: m1, offsetUs: Math.round(sample.offset), rttUs: sample.rtt, usedUs: Math.round(offset) });
  };
  const snapshot = async () => {
    const c = await control();
    const reply = await c.call(['EVAL', SNAPSHOT, '0', `${globEscape(args.namespace)}:*`]);
    if (reply instanceof Error) throw reply;
    const keys = [];
    for (let i = 2; i + 2 < reply.length; i += 3) keys.push([reply[i], reply[i + 1], reply[i + 2]]);
    write({ k: 'snap', t: toMono(Number(reply[0]) * 1e6 + Number(reply[1])), keys });
  };

  let stopping = false;
  let lastLineT = null; // mono µs of the last line seen
  let downSince = null;
  let readyResolve;
  const firstReady = new Promise((resolve) => {
    readyResolve = resolve;
  });

  const connectMonitor = async () => {
    for (;;) {
      if (stopping) return;
      const conn = new Conn(args.port, () => {
        if (conn === monitor) onMonitorClosed();
      });
      try {
        await conn.connected();
        await conn.call(['CLIENT', 'SETNAME', 'chaos-truth-monitor']);
        // From here on the socket carries MONITOR lines, not replies.
        let text = '';
        let confirmed = false;
        const confirmedP = new Promise((resolve, reject) => {
          conn.sock.removeAllListeners('data');
          conn.sock.on('data', (chunk) => {
            text += chunk.toString('latin1');
            let nl;
            while ((nl = text.indexOf('\r\n')) >= 0) {
              const line = text.slice(0, nl);
              text = text.slice(nl + 2);
              if (!confirmed) {
                if (line === '+OK') {
                  confirmed = true;
                  resolve();
                } else reject(new Error(`MONITOR: ${line}`));
                continue;
              }
              onLine(line);
            }
          });
          conn.sock.once('close', () => reject(new Error('closed before MONITOR confirmed')));
        });
        conn.sock.write(encodeCommand(['MONITOR']));
        await confirmedP;
        monitor = conn;
        if (conn.closed) onMonitorClosed();
        return conn;
      } catch {
        conn.close();
        await new Promise((r) => setTimeout(r, 3));
      }
    }
  };

  const onLine = (line) => {
    stats.lines += 1;
    // Cheap filter first: only lines that can touch our keys.
    if (!line.includes(prefix) && !/"flush(all|db)"/i.test(line)) {
      const stamp = Number(line.slice(0, line.indexOf(' ')));
      if (Number.isFinite(stamp)) lastLineT = toMono(stamp * 1e6);
      return;
    }
    const cmd = parseMonitorLine(line);
    if (!cmd) return;
    const t = toMono(cmd.realUs);
    lastLineT = t;
    for (const rec of recordsFor(cmd, t, prefix)) {
      stats.records += 1;
      write(rec);
    }
  };

  let monitor = null;
  let reconnecting = null;
  const onMonitorClosed = () => {
    if (stopping || reconnecting) return;
    downSince = lastLineT !== null ? lastLineT : nowUs();
    monitor = null;
    reconnecting = (async () => {
      await connectMonitor();
      if (!monitor) return;
      const t1 = nowUs();
      stats.gaps += 1;
      stats.reconnects += 1;
      write({ k: 'gap', t0: downSince, t1 });
      // The server may be a new process: recalibrate before stamping the snapshot.
      for (let i = 0; i < 5; i++) await calibrate().catch(() => {});
      for (let i = 0; i < 50; i++) {
        try {
          await snapshot();
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 5));
        }
      }
      flush();
      reconnecting = null;
    })();
  };

  const calTimer = setInterval(() => {
    calibrate().catch(() => {});
  }, 500);

  (async () => {
    for (let i = 0; i < 20; i++) await calibrate();
    await connectMonitor();
    await snapshot();
    flush();
    readyResolve();
  })().catch((err) => {
    process.stderr.write(`truth recorder: ${err.stack}\n`);
    process.exit(1);
  });

  process.on('message', async (msg) => {
    if (!msg || msg.cmd !== 'stop') return;
    await firstReady;
    if (reconnecting) await reconnecting;
    try {
      await calibrate();
      await snapshot();
    } catch {
      // the server is gone: the records end with what was seen
    }
    // Let the last MONITOR lines arrive (they are written before the snapshot's reply).
    await new Promise((r) => setTimeout(r, 100));
    stopping = true;
    clearInterval(calTimer);
    clearInterval(flushTimer);
    write({ k: 'stats', ...stats });
    flush();
    fs.closeSync(fd);
    if (monitor) monitor.close();
    if (ctl) ctl.close();
    process.send({ type: 'stopped', ...stats }, () => process.exit(0));
  });
  firstReady.then(() => process.send({ type: 'ready' }));
}

module.exports = { parseMonitorLine, recordsFor, buildTruth, unrepr };

if (require.main === module) recorderMain();
