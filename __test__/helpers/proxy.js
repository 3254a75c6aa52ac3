'use strict';
// A TCP fault proxy for tests: sits between a client and a private redis-server and lets a test
// delay, drop or reset traffic per connection.
//
//   const { FaultProxy } = require('./helpers/proxy');
//   const proxy = await FaultProxy.start({ port: server.port }); // 127.0.0.1:<free port> -> 127.0.0.1:port
//   new Lock({ redis: proxy.url });     // 'redis://127.0.0.1:<proxy port>'
//   proxy.connections();                // [{ id, subscriber, ... }]
//   proxy.hold('subscriber');           // buffer server->client bytes (nothing is lost) ...
//   proxy.deliver('subscriber');        // ... and flush them, then forward again
//   proxy.blackhole('subscriber');      // half-open: both sockets stay open, nothing passes either way
//   proxy.cut('subscriber');            // reset both sides at once
//   proxy.heal();                       // no more faults for new connections; held bytes delivered
//   await proxy.close();
//
// `which` selects connections: 'subscriber' (the client sent SUBSCRIBE, SSUBSCRIBE or
// PSUBSCRIBE on it: the client->server bytes are parsed as RESP, case-insensitively), 'command'
// (every other connection), 'all', or a predicate `(conn) => boolean` over the objects that
// connections() returns. A fault applies to the connections matching when it is called; with
// `{ future: true }` as second argument it also applies to later connections once they match:
// 'all' at accept, 'subscriber' when the connection sends its first SUBSCRIBE (before that
// command is forwarded, so a blackholed reconnect never subscribes), 'command' when it sends
// its first command that is not part of a connection handshake (HELLO, AUTH, SELECT, CLIENT,
// INFO, PING, READONLY, READWRITE), and a predicate at both of those moments.
//
// Every proxy still open when the process exits is torn down from an 'exit' hook (like the
// servers in redis.js), and its sockets are unref'd: a forgotten proxy never keeps a test
// process alive.

const net = require('node:net');

const FORBIDDEN_PORT = 6379;
const live = new Set(); // FaultProxy instances not yet closed

const SUBSCRIBE_COMMANDS = new Set(['subscribe', 'ssubscribe', 'psubscribe']);
const HANDSHAKE_COMMANDS = new Set(['hello', 'auth', 'select', 'client', 'info', 'ping', 'readonly', 'readwrite']);

/**
 * Incremental parser of the client->server stream: calls `onCommand(lowercaseName)` for each
 * complete command (RESP array of bulk strings, or an inline command). Keeps only the bytes of
 * the command being parsed; a bulk string's payload is skipped by count, not buffered.
 */
class CommandSniffer {
  constructor(onCommand) {
    this.onCommand = onCommand;
    this.buf = Buffer.alloc(0);
    this.remainingArgs = 0; // bulk strings still expected in the current array
    this.skip = 0; // payload bytes (plus CRLF) still to skip in the current bulk string
    this.wantName = false; // the next bulk string is the command name
    this.nameChunks = null; // collecting the command name across chunks
    this.broken = false; // the stream is not RESP as we know it: stop sniffing
  }

  push(chunk) {
    if (this.broken) return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    try {
      this._parse();
    } catch {
      this.broken = true;
      this.buf = Buffer.alloc(0);
    }
  }

  _parse() {
    let pos = 0;
    const buf = this.buf;
    for (;;) {
      if (this.skip > 0) {
        const take = Math.min(this.skip, buf.length - pos);
        if (this.nameChunks) this.nameChunks.push(buf.subarray(pos, pos + take));
        pos += take;
        this.skip -= take;
        if (this.skip > 0) break;
        if (this.nameChunks) {
          // The payload ended with CRLF, which we collected too: drop it.
          const name = Buffer.concat(this.nameChunks);
          this.nameChunks = null;
          this.onCommand(
            name
              .subarray(0, name.length - 2)
              .toString('latin1')
              .toLowerCase(),
          );
        }
        this.remainingArgs -= 1;
        continue;
      }
      if (pos >= buf.length) break;
      const nl = buf.indexOf('\r\n', pos, 'latin1');
      if (nl < 0) {
        if (buf.length - pos > 1 << 20) throw new Error('line too long');
        break;
      }
      const line = buf.toString('latin1', pos, nl);
      if (this.remainingArgs > 0) {
        if (line[0] !== '$') throw new Error(`expected a bulk string, got ${JSON.stringify(line)}`);
        const len = Number(line.slice(1));
        if (!Number.isInteger(len) || len < -1) throw new Error('bad bulk length');
        pos = nl + 2;
        if (len === -1) {
          if (this.wantName) this.onCommand('');
          this.wantName = false;
          this.remainingArgs -= 1;
          continue;
        }
        if (this.wantName) {
          this.nameChunks = [];
          this.wantName = false;
        }
        this.skip = len + 2;
        continue;
      }
      pos = nl + 2;
      if (line[0] === '*') {
        const n = Number(line.slice(1));
        if (!Number.isInteger(n)) throw new Error('bad array length');
        if (n > 0) {
          this.remainingArgs = n;
          this.wantName = true;
        }
      } else if (line.length > 0) {
        // Inline command: words separated by spaces.
        this.onCommand(line.trim().split(/\s+/)[0].toLowerCase());
      }
    }
    this.buf = pos >= buf.length ? Buffer.alloc(0) : buf.subarray(pos);
  }
}

class Connection {
  constructor(proxy, id, client) {
    this.proxy = proxy;
    this.id = id;
    this.client = client;
    this.upstream = null;
    this.subscriber = false;
    this.classified = false; // sent a command that tells subscriber from command connection
    this.commands = []; // lowercase names of the first commands sniffed (at most 32)
    this.held = false;
    this.heldChunks = [];
    this.heldBytes = 0;
    this.upstreamEnded = false; // the server sent FIN while we were holding its bytes
    this.blackholed = false;
    this.closed = false;
    this.appliedRules = new Set();
    this.bytesToServer = 0;
    this.bytesToClient = 0;
    this.sniffer = new CommandSniffer((name) => this._onCommand(name));
  }

  /** The public, read-only picture of this connection (what connections() and predicates see). */
  view() {
    return {
      id: this.id,
      subscriber: this.subscriber,
      held: this.held,
      blackholed: this.blackholed,
      commands: this.commands.slice(),
      clientPort: this.client.remotePort,
      upstreamPort: this.upstream ? this.upstream.localPort : undefined,
      bytesToServer: this.bytesToServer,
      bytesToClient: this.bytesToClient,
    };
  }

  _onCommand(name) {
    if (this.commands.length < 32) this.commands.push(name);
    if (this.subscriber) return;
    if (SUBSCRIBE_COMMANDS.has(name)) {
      this.subscriber = true;
      this.classified = true;
      this.proxy._applyFutureRules(this, 'classified');
    } else if (!this.classified && !HANDSHAKE_COMMANDS.has(name)) {
      this.classified = true;
      this.proxy._applyFutureRules(this, 'classified');
    }
  }

  fromClient(chunk) {
    if (this.closed) return;
    // Sniff first: a rule that matches on this very command (a future blackhole of subscribers)
    // must apply before the command is forwarded.
    if (!this.subscriber) this.sniffer.push(chunk);
    if (this.blackholed || this.closed) return;
    this.bytesToServer += chunk.length;
    this.upstream.write(chunk);
  }

  fromServer(chunk) {
    if (this.closed || this.blackholed) return;
    if (this.held) {
      this.heldChunks.push(chunk);
      this.heldBytes += chunk.length;
      return;
    }
    this.bytesToClient += chunk.length;
    this.client.write(chunk);
  }

  hold() {
    if (this.closed || this.blackholed) return;
    this.held = true;
  }

  deliver() {
    if (this.closed || this.blackholed || !this.held) return;
    this.held = false;
    const chunks = this.heldChunks;
    this.heldChunks = [];
    this.heldBytes = 0;
    for (const chunk of chunks) {
      this.bytesToClient += chunk.length;
      this.client.write(chunk);
    }
    if (this.upstreamEnded) this.client.end();
  }

  blackhole() {
    if (this.closed) return;
    this.blackholed = true;
    this.held = false;
    this.heldChunks = [];
    this.heldBytes = 0;
  }

  cut() {
    if (this.closed) return;
    this._teardown(true);
  }

  /** Destroys both sockets (with RST when `reset`). */
  _teardown(reset) {
    if (this.closed) return;
    this.closed = true;
    this.heldChunks = [];
    for (const sock of [this.client, this.upstream]) {
      if (!sock || sock.destroyed) continue;
      if (reset && typeof sock.resetAndDestroy === 'function' && sock.readyState !== 'opening') {
        try {
          sock.resetAndDestroy();
          continue;
        } catch {
          // fall through to a plain destroy
        }
      }
      sock.destroy();
    }
    this.proxy._forget(this);
  }

  /** Forgets a connection both of whose sockets are gone. */
  _finish() {
    if (this.closed) return;
    this.closed = true;
    this.heldChunks = [];
    this.proxy._forget(this);
  }

  /** One side sent FIN: pass it on (after held bytes), unless blackholed (half-open). */
  _sideEnded(side) {
    if (this.closed || this.blackholed) return;
    if (side === 'upstream') {
      if (this.held)
        this.upstreamEnded = true; // deliver() ends the client after the held bytes
      else this.client.end();
    } else if (this.upstream) {
      this.upstream.end();
    }
  }

  /** One side closed on its own: pass it on, unless this connection is blackholed (half-open). */
  _sideClosed(side, hadError) {
    if (this.closed) return;
    const other = side === 'client' ? this.upstream : this.client;
    if (this.blackholed) {
      // The other side must not learn anything: it stays open until the proxy closes.
      if (!other || other.destroyed) this._finish();
      return;
    }
    if (hadError) {
      this._teardown(true);
      return;
    }
    if (!other || other.destroyed) {
      this._finish();
      return;
    }
    if (side === 'upstream' && this.held) {
      this.upstreamEnded = true;
      return;
    }
    other.end(); // flush what was written to it, then FIN; its own 'close' finishes the connection
  }
}

function matcher(which) {
  if (typeof which === 'function') return (conn) => Boolean(which(conn.view()));
  switch (which) {
    case 'all':
      return () => true;
    case 'subscriber':
      return (conn) => conn.subscriber;
    case 'command':
      return (conn) => !conn.subscriber;
    default:
      throw new TypeError(`which must be 'subscriber', 'command', 'all' or a function, got ${String(which)}`);
  }
}

class FaultProxy {
  /**
   * Starts a proxy on 127.0.0.1:<free port> forwarding to `host`:`port`.
   * @param {{port: number, host?: string}} options
   */
  static async start(options) {
    const proxy = new FaultProxy(options);
    await proxy._listen();
    return proxy;
  }

  constructor({ port, host = '127.0.0.1' } = {}) {
    if (!Number.isInteger(port) || port <= 0) throw new TypeError('FaultProxy needs the target port');
    this.targetPort = port;
    this.targetHost = host;
    this.port = undefined;
    this.server = null;
    this.conns = new Map(); // id -> Connection (open ones)
    this.nextId = 1;
    this.rules = []; // future faults: { action, which, match }
    this.closed = false;
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  async _listen() {
    for (;;) {
      const server = net.createServer({ pauseOnConnect: true }, (client) => this._accept(client));
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
      const { port } = server.address();
      if (port === FORBIDDEN_PORT) {
        await new Promise((resolve) => server.close(resolve));
        continue;
      }
      server.unref();
      server.on('error', () => {});
      this.server = server;
      this.port = port;
      live.add(this);
      return;
    }
  }

  _accept(client) {
    if (this.closed) {
      client.destroy();
      return;
    }
    client.unref();
    client.setNoDelay(true);
    const conn = new Connection(this, this.nextId++, client);
    this.conns.set(conn.id, conn);
    const upstream = net.connect({ port: this.targetPort, host: this.targetHost });
    conn.upstream = upstream;
    upstream.unref();
    upstream.setNoDelay(true);

    client.on('data', (chunk) => conn.fromClient(chunk));
    upstream.on('data', (chunk) => conn.fromServer(chunk));
    client.on('error', () => {});
    upstream.on('error', () => {});
    client.on('end', () => conn._sideEnded('client'));
    upstream.on('end', () => conn._sideEnded('upstream'));
    client.on('close', (hadError) => conn._sideClosed('client', hadError));
    upstream.on('close', (hadError) => conn._sideClosed('upstream', hadError));
    upstream.once('connect', () => {
      if (!conn.closed) client.resume();
    });
    this._applyFutureRules(conn, 'accept');
  }

  _forget(conn) {
    this.conns.delete(conn.id);
  }

  _applyFutureRules(conn, moment) {
    for (const rule of this.rules) {
      if (conn.closed) return;
      if (conn.appliedRules.has(rule)) continue;
      // 'all' applies at accept; 'subscriber'/'command' once the connection is classified; a
      // predicate at both moments.
      if (rule.which === 'all' && moment !== 'accept') continue;
      if ((rule.which === 'subscriber' || rule.which === 'command') && moment !== 'classified') continue;
      if (!rule.match(conn)) continue;
      conn.appliedRules.add(rule);
      this._act(rule.action, conn);
    }
  }

  _act(action, conn) {
    switch (action) {
      case 'hold':
        conn.hold();
        break;
      case 'blackhole':
        conn.blackhole();
        break;
      case 'cut':
        conn.cut();
        break;
      default:
        throw new Error(`unknown action ${action}`);
    }
  }

  _fault(action, which, options = {}) {
    const match = matcher(which);
    const hit = [];
    for (const conn of [...this.conns.values()]) {
      if (conn.closed || !match(conn)) continue;
      hit.push(conn.id);
      this._act(action, conn);
    }
    if (options && options.future) this.rules.push({ action, which, match });
    return hit;
  }

  /** [{ id, subscriber, held, blackholed, commands, clientPort, upstreamPort, bytesToServer, bytesToClient }] of the open connections. */
  connections() {
    return [...this.conns.values()].filter((c) => !c.closed).map((c) => c.view());
  }

  /** Buffers server->client bytes of matching connections. Returns the ids hit. */
  hold(which, options) {
    return this._fault('hold', which, options);
  }

  /**
   * Flushes what matching connections held and forwards again; also drops future 'hold' rules
   * made with the same `which` (all of them for 'all'). Returns the ids delivered.
   */
  deliver(which) {
    const match = matcher(which);
    this.rules = this.rules.filter((r) => !(r.action === 'hold' && (which === 'all' || r.which === which)));
    const hit = [];
    for (const conn of [...this.conns.values()]) {
      if (conn.closed || !conn.held || !match(conn)) continue;
      hit.push(conn.id);
      conn.deliver();
    }
    return hit;
  }

  /** Half-opens matching connections: both sockets stay open, every byte is dropped. Returns the ids hit. */
  blackhole(which, options) {
    return this._fault('blackhole', which, options);
  }

  /** Resets both sides of matching connections. Returns the ids hit. */
  cut(which, options) {
    return this._fault('cut', which, options);
  }

  /**
   * Forgets every future rule (new connections forward normally) and delivers what held
   * connections buffered. Blackholed connections stay dead; cut ones are gone.
   */
  heal() {
    this.rules = [];
    for (const conn of [...this.conns.values()]) conn.deliver();
  }

  /** Closes the listener and every connection (both sides). Idempotent. */
  async close() {
    if (this.closed) return;
    this.closed = true;
    live.delete(this);
    for (const conn of [...this.conns.values()]) conn._teardown(false);
    if (this.server) await new Promise((resolve) => this.server.close(() => resolve()));
  }

  _closeSync() {
    this.closed = true;
    for (const conn of [...this.conns.values()]) conn._teardown(false);
    try {
      this.server.close();
    } catch {
      // best effort
    }
  }
}

function closeAllSync() {
  for (const proxy of live) proxy._closeSync();
  live.clear();
}

process.on('exit', closeAllSync);

module.exports = { FaultProxy, CommandSniffer, closeAllSync };
