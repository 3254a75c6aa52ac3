'use strict';
// A minimal RESP2 client on a bare socket (no library), for the hand-off floor: what a
// PUBLISH-then-one-round-trip hand-off costs with nothing between the socket and the code.

const net = require('node:net');

function encode(args) {
  let out = `*${args.length}\r\n`;
  for (const a of args) {
    const s = String(a);
    out += `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
  }
  return out;
}

/** Parses one RESP value at `pos`; returns [value, next] or null when incomplete. */
function parse(buf, pos) {
  if (pos >= buf.length) return null;
  const nl = buf.indexOf('\r\n', pos);
  if (nl < 0) return null;
  const type = String.fromCharCode(buf[pos]);
  const line = buf.toString('utf8', pos + 1, nl);
  const next = nl + 2;
  switch (type) {
    case '+':
      return [line, next];
    case '-':
      return [new Error(line), next];
    case ':':
      return [Number(line), next];
    case '$': {
      const len = Number(line);
      if (len < 0) return [null, next];
      if (buf.length < next + len + 2) return null;
      return [buf.toString('utf8', next, next + len), next + len + 2];
    }
    case '*': {
      const n = Number(line);
      const items = [];
      let at = next;
      for (let i = 0; i < n; i++) {
        const r = parse(buf, at);
        if (!r) return null;
        items.push(r[0]);
        at = r[1];
      }
      return [items, at];
    }
    default:
      throw new Error(`bad RESP type ${type}`);
  }
}

class RawConnection {
  constructor(port, host = '127.0.0.1') {
    this.socket = net.connect({ port, host });
    this.socket.setNoDelay(true);
    this.pending = [];
    this.buffer = Buffer.alloc(0);
    this.onPush = null;
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
    this.socket.on('data', (chunk) => {
      this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
      let pos = 0;
      for (;;) {
        const r = parse(this.buffer, pos);
        if (!r) break;
        pos = r[1];
        const value = r[0];
        if (this.onPush && Array.isArray(value) && value[0] === 'message') this.onPush(value[1], value[2]);
        else {
          const p = this.pending.shift();
          if (p) p(value);
        }
      }
      this.buffer = this.buffer.subarray(pos);
    });
  }

  command(...args) {
    return new Promise((resolve, reject) => {
      this.pending.push((v) => (v instanceof Error ? reject(v) : resolve(v)));
      this.socket.write(encode(args));
    });
  }

  close() {
    this.socket.destroy();
  }
}

module.exports = { RawConnection };
