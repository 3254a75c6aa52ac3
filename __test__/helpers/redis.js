'use strict';
// Test harness: private redis-server processes on free loopback ports.
//
// Every server is started by us, on a port the OS just handed out (never 6379), with no
// persistence and a temporary --dir, and is stopped by its own pid (SIGTERM, then SIGKILL).
// Servers still running when the test process exits are SIGKILLed from an 'exit' hook.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const Redis = require('ioredis');

const FORBIDDEN_PORT = 6379;
const live = new Set(); // RedisServer instances whose process may still be running

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A TCP port on 127.0.0.1 that was free a moment ago (and is not 6379). */
async function freePort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.on('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const { port: p } = srv.address();
        srv.close(() => resolve(p));
      });
    });
    if (port !== FORBIDDEN_PORT) return port;
  }
}

/**
 * One raw round trip on a fresh socket: resolves with the first line of the reply, or null when
 * the server does not answer (connection refused, reset, timeout).
 */
function rawCommand(port, line, timeoutMs = 500) {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let data = '';
    let done = false;
    const finish = (value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${line}\r\n`));
    sock.on('data', (chunk) => {
      data += chunk;
      const nl = data.indexOf('\r\n');
      if (nl >= 0) finish(data.slice(0, nl));
    });
    sock.on('error', () => finish(null));
    sock.on('close', () => finish(null));
  });
}

function killQuietly(pid, signal) {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

class RedisServer {
  /**
   * @param {object} [options]
   * @param {string} [options.password] starts the server with --requirepass
   * @param {string[]} [options.args] extra redis-server arguments
   */
  constructor(options = {}) {
    this.password = options.password;
    this.extraArgs = options.args || [];
    this.port = undefined;
    this.dir = undefined;
    this.proc = undefined;
    this.exited = undefined; // Promise resolving when the current process exits
    this.log = '';
    this.clients = new Set();
  }

  get host() {
    return '127.0.0.1';
  }

  get pid() {
    return this.proc ? this.proc.pid : undefined;
  }

  /** redis://[:password@]127.0.0.1:port */
  get url() {
    const auth = this.password ? `:${encodeURIComponent(this.password)}@` : '';
    return `redis://${auth}127.0.0.1:${this.port}`;
  }

  get running() {
    return Boolean(this.proc) && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Starts the server (on a new free port the first time, on the same port afterwards). */
  async start() {
    if (this.running) throw new Error(`redis-server already running on port ${this.port}`);
    const fixedPort = this.port !== undefined;
    let lastError;
    for (let attempt = 0; attempt < 5; attempt++) {
      if (!fixedPort) this.port = await freePort();
      if (this.port === FORBIDDEN_PORT) throw new Error('refusing to use port 6379');
      try {
        await this._spawnAndWait();
        return this;
      } catch (err) {
        lastError = err;
        await this._reap();
        await sleep(fixedPort ? 200 : 20); // on the same port, give the old socket time to go away
      }
    }
    throw lastError;
  }

  async _spawnAndWait() {
    if (!this.dir) this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'redfour-native-test-'));
    const args = [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      this.dir,
      '--logfile',
      '',
      '--daemonize',
      'no',
    ];
    if (this.password) args.push('--requirepass', this.password);
    args.push(...this.extraArgs);
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.log = '';
    live.add(this);
    const onData = (chunk) => {
      this.log = (this.log + chunk).slice(-8192);
    };
    proc.stdout.setEncoding('utf8').on('data', onData);
    proc.stderr.setEncoding('utf8').on('data', onData);
    this.exited = new Promise((resolve) => {
      proc.once('exit', () => {
        resolve();
      });
      proc.once('error', () => resolve());
    });
    // Never let the server's pipes keep the test process alive.
    proc.stdout.unref?.();
    proc.stderr.unref?.();
    proc.unref();

    const deadline = Date.now() + 10000;
    while (Date.now() < deadline) {
      if (!this.running) throw new Error(`redis-server on port ${this.port} exited early:\n${this.log}`);
      const reply = await rawCommand(this.port, 'PING');
      // +PONG, or -NOAUTH when a password is required: either way the server is up, and it is ours
      // (nobody else could have bound the port while our process is running and listening).
      if (reply !== null && (reply === '+PONG' || reply.startsWith('-NOAUTH'))) {
        if (!this.running) throw new Error(`redis-server on port ${this.port} exited early:\n${this.log}`);
        return;
      }
      await sleep(20);
    }
    throw new Error(`redis-server on port ${this.port} did not answer PING within 10 s:\n${this.log}`);
  }

  async _reap() {
    const proc = this.proc;
    if (!proc) return;
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.ref(); // keep the event loop alive while we wait for the exit
      killQuietly(proc.pid, 'SIGCONT');
      killQuietly(proc.pid, 'SIGKILL');
      await this.exited;
    }
    live.delete(this);
  }

  /**
   * Graceful stop: SIGTERM, then SIGKILL after `graceMs`. Resolves once the process has exited.
   * Also disconnects the assertion clients, so none of them keeps retrying (and keeps the test
   * process alive); `server.redis`/`server.command()` reconnect lazily after a later start().
   */
  async stop(graceMs = 3000) {
    await this._stopProcess(graceMs);
    this._closeClients();
  }

  _closeClients() {
    for (const c of this.clients) c.disconnect();
    this.clients.clear();
    this._shared = undefined;
  }

  async _stopProcess(graceMs = 3000) {
    const proc = this.proc;
    if (!proc) return;
    if (this.running) {
      proc.ref(); // keep the event loop alive while we wait for the exit
      killQuietly(proc.pid, 'SIGCONT'); // a paused server cannot handle SIGTERM
      killQuietly(proc.pid, 'SIGTERM');
      let timer;
      const timedOut = await Promise.race([
        this.exited.then(() => false),
        new Promise((resolve) => {
          timer = setTimeout(resolve, graceMs, true);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        killQuietly(proc.pid, 'SIGKILL');
        await this.exited;
      }
    }
    live.delete(this);
  }

  /**
   * Hard crash: SIGKILL. Resolves once the process has exited. Assertion clients stay and
   * reconnect after start() (they give up on their own after ~20 s of retrying).
   */
  async kill() {
    await this._reap();
  }

  /** Freezes the server (SIGSTOP): connections stay open but nothing is answered. */
  pause() {
    if (!this.running) throw new Error('redis-server is not running');
    killQuietly(this.proc.pid, 'SIGSTOP');
  }

  /** Thaws a paused server (SIGCONT). */
  resume() {
    if (!this.running) throw new Error('redis-server is not running');
    killQuietly(this.proc.pid, 'SIGCONT');
  }

  /** Stops (gracefully, or with SIGKILL when `hard`) and starts again on the same port. Data is lost. */
  async restart({ hard = false } = {}) {
    if (hard) await this.kill();
    else await this._stopProcess();
    await this.start();
    return this;
  }

  /**
   * A raw ioredis client for assertions. Closed by stop()/cleanup(). RESP2 and no offline queue
   * retries worth speaking of, so a dead server shows up as an error quickly.
   */
  client(extra = {}) {
    const client = new Redis({
      host: '127.0.0.1',
      port: this.port,
      password: this.password,
      protocol: 2,
      lazyConnect: false,
      maxRetriesPerRequest: 3,
      connectTimeout: 2000,
      // Reconnect through a restart, but give up after ~20 s so that a client of a server that
      // stays down cannot keep the test process alive forever.
      retryStrategy: (times) => (times > 45 ? null : Math.min(times * 50, 500)),
      ...extra,
    });
    client.on('error', () => {}); // expected while a test stops the server
    this.clients.add(client);
    return client;
  }

  /** A lazily created shared assertion client. */
  get redis() {
    if (!this._shared || this._shared.status === 'end') this._shared = this.client();
    return this._shared;
  }

  /** Runs one command on the shared assertion client: `server.command('PTTL', key)`. */
  command(name, ...args) {
    return this.redis.call(name, ...args);
  }

  /** Call counts from INFO commandstats, keyed by lowercase command name (e.g. {evalsha: 12}). */
  async commandStats() {
    const info = await this.redis.info('commandstats');
    const stats = {};
    for (const line of String(info).split(/\r?\n/)) {
      const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
      if (m) stats[m[1].toLowerCase()] = Number(m[2]);
    }
    return stats;
  }

  /** Number of EVAL + EVALSHA (+ FCALL, for a functions-based core) calls so far. */
  async scriptCalls() {
    const s = await this.commandStats();
    return (s.evalsha || 0) + (s.eval || 0) + (s.evalsha_ro || 0) + (s.eval_ro || 0) + (s.fcall || 0) + (s.fcall_ro || 0);
  }

  async resetStats() {
    await this.redis.config('RESETSTAT');
  }

  /** Parsed CLIENT LIST entries (objects with id, addr, name, cmd, flags ...). */
  async clientList() {
    const text = await this.redis.client('LIST');
    return String(text)
      .split(/\r?\n/)
      .filter(Boolean)
      .map((line) =>
        Object.fromEntries(
          line.split(' ').map((kv) => {
            const i = kv.indexOf('=');
            return [kv.slice(0, i), kv.slice(i + 1)];
          }),
        ),
      );
  }

  /** Number of client connections currently open to this server. */
  async clientCount() {
    return (await this.clientList()).length;
  }

  /** All keys (KEYS *), sorted. */
  async keys(pattern = '*') {
    return (await this.redis.keys(pattern)).sort();
  }

  async flush() {
    await this.redis.flushall();
  }

  /** Closes the assertion clients, stops the server and removes its directory. */
  async cleanup() {
    await this.stop();
    if (this.dir) {
      fs.rmSync(this.dir, { recursive: true, force: true });
      this.dir = undefined;
    }
  }
}

/** Starts a new private server. */
async function startRedis(options) {
  const server = new RedisServer(options);
  await server.start();
  return server;
}

function killAllSync() {
  for (const server of live) {
    if (server.proc && server.running) {
      killQuietly(server.proc.pid, 'SIGCONT');
      killQuietly(server.proc.pid, 'SIGKILL');
    }
    if (server.dir) {
      try {
        fs.rmSync(server.dir, { recursive: true, force: true });
      } catch {
        // best effort
      }
    }
  }
  live.clear();
}

process.on('exit', killAllSync);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    killAllSync();
    process.exit(128 + os.constants.signals[signal]);
  });
}

module.exports = { RedisServer, startRedis, freePort, rawCommand, sleep, killAllSync };
