'use strict';
// One Redis connection owned by the JavaScript thread: requests are written from the calling
// thread and their replies are read by Node's own event loop, so a plain call (acquire, release,
// renew) costs one socket write and one socket read, with no other thread woken on its way
// (bench/DIAGNOSIS.md, open loop: every hop to and from the core's runtime thread cost a thread
// wake-up, 4.6 per acquire + release pair). The Rust core keeps everything that must go on while
// the JavaScript thread is busy: waits, the subscriber, lease renewals, quorum and cluster.
//
// What it does, as the core's command connection does: connects on first use (plain TCP, TLS or
// a unix socket, then AUTH and SELECT from the URL), fails a connect that takes longer than the
// connect timeout and a reply that takes longer than the command timeout (the connection is then
// dropped: a late reply can never be matched to the wrong request), and when a connection that
// was up closes under requests, sends each of them once more on a fresh connection (the
// requests it carries are safe to repeat: see lib/plain-calls.js). While requests are in flight
// the socket keeps the process alive; idle, it does not. RESP is decoded by `redis-parser`
// (node_redis's and ioredis's decoder for years); requests are encoded here (a RESP array of
// bulk strings is one line of code per argument).

const net = require('node:net');
const tls = require('node:tls');
const { performance } = require('node:perf_hooks');
const RedisParser = require('redis-parser');
const { redisError, closedError } = require('./errors');
const { parseUrl } = require('./connection');
const { connectionEvent } = require('./diagnostics');

/** Encodes one command (an array of strings and numbers) as a RESP array of bulk strings. */
function encode(args) {
  let out = `*${args.length}\r\n`;
  for (const arg of args) {
    const text = typeof arg === 'string' ? arg : String(arg);
    out += `$${Buffer.byteLength(text)}\r\n${text}\r\n`;
  }
  return out;
}

/** Where and how to connect: `url` as lib/connection.js builds them, and the TLS files. */
function targetOf(url, { tlsCa, tlsCert, tlsKey } = {}) {
  const target = parseUrl(url);
  const { host, port } = target.socket;
  target.tls = target.secure
    ? {
        host,
        port,
        servername: net.isIP(host) ? undefined : host,
        ca: tlsCa,
        cert: tlsCert,
        key: tlsKey,
        rejectUnauthorized: !target.insecure,
      }
    : null;
  return target;
}

/**
 * `fn`, called one turn later, after the event loop polled for I/O. A timer that expired while
 * the JavaScript thread was busy runs before the I/O that came in meanwhile is read (libuv runs
 * timers first), so a timeout decides only once what has arrived has been seen.
 */
function afterIo(fn) {
  return () => setImmediate(fn);
}

/** What connection events call this connection (lib/diagnostics.js). */
const CONNECTION = 'calls';

class RedisConnection {
  /**
   * `url` and `tlsFiles` as the core takes them; `endpoint` describes the Lock's Redis in error
   * messages ("Redis at host:port"); `onReset()` is called whenever a new socket is opened (a
   * server reached again may have lost its scripts).
   */
  constructor(url, { tlsFiles, connectTimeoutMs, commandTimeoutMs, endpoint, onReset }) {
    this._target = targetOf(url, tlsFiles);
    this._connectTimeoutMs = connectTimeoutMs;
    this._commandTimeoutMs = commandTimeoutMs;
    this._endpoint = endpoint;
    this._onReset = onReset;
    this._socket = null;
    this._up = false; // the current socket is connected
    this._upSince = 0;
    this._ready = false; // ... and its AUTH and SELECT were answered OK: requests may be written
    this._lost = false; // a connection that was up went away: the next one is a reconnect
    this._held = []; // requests made before the socket was ready, in order
    this._sent = []; // requests written and not answered, in order (from `_head`)
    this._head = 0;
    this._timer = null;
    this._failure = null; // why the current socket is being closed by us
    this._timedOut = false;
    this._whenClosed = null;
    this._closing = null;
    this._checkTimeout = this._checkTimeout.bind(this);
  }

  /** Requests made and not answered yet. */
  get inFlight() {
    return this._held.length + this._sent.length - this._head;
  }

  /**
   * Sends `args` and calls `done(null, reply)` with the reply (an error reply is an Error value,
   * as replies inside arrays are), or `done(err)` with ERR_REDIS when the connection fails.
   * `repeatable`: the request may be sent again after a connection that was up dropped under it.
   */
  request(args, repeatable, done) {
    this._write({ payload: encode(args), done, repeatable, sentAt: 0, handshake: false });
  }

  _write(entry) {
    if (this._closing !== null) {
      entry.done(closedError());
      return;
    }
    if (this._socket === null) this._open();
    if (this._ready) this._transmit(entry);
    else this._held.push(entry);
    if (this.inFlight === 1) this._busy();
  }

  _transmit(entry) {
    entry.sentAt = performance.now();
    this._sent.push(entry);
    this._socket.write(entry.payload);
  }

  _open() {
    const target = this._target;
    const socket = target.tls ? tls.connect(target.tls) : net.connect(target.socket);
    this._socket = socket;
    this._up = false;
    this._ready = false;
    this._failure = null;
    socket.setNoDelay(true);
    const connectTimer = setTimeout(
      afterIo(() => {
        if (this._up || socket !== this._socket) return;
        this._failure = `could not connect within ${this._connectTimeoutMs} ms`;
        socket.destroy();
      }),
      this._connectTimeoutMs,
    );
    connectTimer.unref();
    const parser = new RedisParser({
      returnReply: (reply) => this._answer(reply),
      returnError: (err) => this._answer(err),
      returnFatalError: (err) => {
        this._failure = `unreadable reply: ${err.message}`;
        socket.destroy();
      },
    });
    socket.once(target.tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(connectTimer);
      this._up = true;
      this._upSince = performance.now();
      connectionEvent({ kind: 'connected', endpoint: target.where, connection: CONNECTION, reconnect: this._lost });
    });
    socket.on('data', (chunk) => parser.execute(chunk));
    socket.on('error', (err) => {
      if (this._failure === null) this._failure = err.message;
    });
    socket.on('close', () => {
      clearTimeout(connectTimer);
      this._closed(socket);
    });
    if (this._onReset) this._onReset();
    // No request is written before AUTH and SELECT are answered OK: pipelined behind a refused
    // AUTH, it would run as the default user.
    const handshake = [];
    if (target.password !== undefined) {
      handshake.push(target.username !== undefined ? ['AUTH', target.username, target.password] : ['AUTH', target.password]);
    }
    if (target.db !== 0) handshake.push(['SELECT', target.db]);
    if (handshake.length === 0) this._ready = true;
    handshake.forEach((args, i) => this._handshake(socket, args, i === handshake.length - 1));
  }

  _handshake(socket, args, last) {
    const answered = (_, reply) => {
      if (socket !== this._socket) return;
      if (reply instanceof Error) {
        // A refused AUTH or SELECT is a failed connect, not a dropped connection.
        this._failure = reply.message;
        this._up = false;
        socket.destroy();
      } else if (last) {
        this._ready = true;
        const held = this._held;
        this._held = [];
        socket.cork();
        for (const entry of held) this._transmit(entry);
        socket.uncork();
      }
    };
    this._transmit({ payload: encode(args), done: answered, repeatable: false, sentAt: 0, handshake: true });
  }

  _answer(reply) {
    const entry = this._sent[this._head];
    if (entry === undefined) return;
    this._sent[this._head++] = undefined;
    if (this._head === this._sent.length) {
      this._sent.length = 0;
      this._head = 0;
      if (this._held.length === 0) this._idle();
    } else if (this._head > 1024 && this._head * 2 > this._sent.length) {
      this._sent = this._sent.slice(this._head);
      this._head = 0;
    }
    entry.done(null, reply);
  }

  /** Requests in flight: the socket holds the process open, and replies are timed. */
  _busy() {
    this._socket.ref();
    if (this._timer === null) this._timer = setTimeout(this._checkTimeout, this._commandTimeoutMs).unref();
  }

  _idle() {
    if (this._socket !== null) this._socket.unref();
    if (this._closing !== null) this._finishClose();
  }

  _checkTimeout() {
    this._timer = null;
    if (this._socket === null) return;
    const entry = this._sent[this._head];
    if (entry === undefined) {
      // Only requests held for the connect (its own timer decides): look again later.
      if (this.inFlight > 0) this._timer = setTimeout(this._checkTimeout, this._commandTimeoutMs).unref();
      return;
    }
    // A request written while the socket was connecting is timed from the connect.
    const since = Math.max(entry.sentAt, this._up ? this._upSince : entry.sentAt);
    const left = since + this._commandTimeoutMs - performance.now();
    if (!this._up || left > 0) {
      // (Not connected yet: the connect timer decides.)
      this._timer = setTimeout(this._checkTimeout, this._up ? Math.ceil(left) : this._commandTimeoutMs).unref();
      return;
    }
    const socket = this._socket;
    afterIo(() => {
      // Still unanswered after the replies that had arrived were read: the connection is dropped.
      if (socket !== this._socket || this._sent[this._head] !== entry) {
        if (this._timer === null && this.inFlight > 0) this._timer = setTimeout(this._checkTimeout, this._commandTimeoutMs).unref();
        return;
      }
      this._failure = `no reply within ${this._commandTimeoutMs} ms`;
      this._timedOut = true;
      socket.destroy();
    })();
  }

  _closed(socket) {
    if (socket !== this._socket) return;
    const wasUp = this._up;
    const reason = this._failure || 'the connection was closed';
    const timedOut = this._timedOut === true;
    this._socket = null;
    this._up = false;
    this._timedOut = false;
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    const pending = this._sent.slice(this._head).concat(this._held);
    this._sent = [];
    this._head = 0;
    this._held = [];
    this._ready = false;
    if (this._closing !== null) {
      for (const entry of pending) if (!entry.handshake) entry.done(closedError());
      this._finishClose();
      return;
    }
    const where = this._target.where;
    if (wasUp) {
      this._lost = true;
      connectionEvent({ kind: 'lost', endpoint: where, connection: CONNECTION, error: reason });
    } else {
      connectionEvent({ kind: 'connect-failed', endpoint: where, connection: CONNECTION, error: reason });
    }
    for (const entry of pending) {
      if (entry.handshake) continue;
      // Dropped under a request on a connection that was up (the server's idle timeout, a
      // restart, a proxy): once more, on a fresh connection. A timeout is not retried.
      if (wasUp && !timedOut && entry.repeatable) {
        entry.repeatable = false;
        this._write(entry);
      } else {
        entry.done(redisError(reason, this._endpoint));
      }
    }
  }

  /**
   * Closes the connection once the requests in flight are answered (or failed). Resolves when
   * the socket is closed. Idempotent.
   */
  close() {
    if (this._closing === null) {
      this._closing = new Promise((resolve) => {
        this._whenClosed = resolve;
      });
      this._finishClose();
    }
    return this._closing;
  }

  _finishClose() {
    if (this.inFlight > 0) return;
    const socket = this._socket;
    this._socket = null;
    if (socket === null) {
      this._whenClosed();
      return;
    }
    socket.once('close', this._whenClosed);
    socket.destroy();
  }
}

module.exports = { RedisConnection };
