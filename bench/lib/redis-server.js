'use strict';
// A private redis-server for the benchmarks: a free loopback port (never 6379), no persistence,
// a temporary --dir, stopped by its own pid at the end (and SIGKILLed from an exit hook if the
// benchmark dies first).

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const FORBIDDEN_PORT = 6379;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

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

function ping(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let data = '';
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(300, () => done(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (chunk) => {
      data += chunk;
      if (data.includes('\r\n')) done(data.startsWith('+PONG'));
    });
    sock.on('error', () => done(false));
  });
}

function redisVersion() {
  try {
    const out = execFileSync('redis-server', ['--version'], { encoding: 'utf8' });
    const m = /v=(\S+)/.exec(out);
    return m ? m[1] : out.trim();
  } catch {
    return 'unknown';
  }
}

class RedisServer {
  /**
   * `cluster: true` starts a cluster-enabled node (its nodes.conf in its own temporary dir, the
   * cluster bus on a second free port given with --cluster-port, not the default port + 10000,
   * which may be taken or past 65535); the cluster itself is made by ./topologies.js.
   */
  constructor({ cluster = false } = {}) {
    this.cluster = cluster;
  }

  async start() {
    this.port = await freePort();
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'redfour-bench-'));
    const extra = [];
    if (this.cluster) {
      do this.busPort = await freePort();
      while (this.busPort === this.port);
      extra.push(
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        path.join(this.dir, 'nodes.conf'),
        '--cluster-port',
        String(this.busPort),
        '--cluster-node-timeout',
        '5000',
      );
    }
    this.proc = spawn(
      'redis-server',
      [
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
        '--maxclients',
        '10000',
        '--loglevel',
        'warning',
        ...extra,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.pid = this.proc.pid;
    let stderr = '';
    this.proc.stderr.on('data', (d) => {
      stderr += d;
    });
    this.exitHook = () => {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      fs.rmSync(this.dir, { recursive: true, force: true });
    };
    process.on('exit', this.exitHook);
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`redis-server exited: ${stderr}`);
      if (await ping(this.port)) return this;
      await sleep(20);
    }
    throw new Error(`redis-server did not answer on port ${this.port}: ${stderr}`);
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** CPU time (user + system, seconds) redis-server has used so far, from /proc. */
  cpuSeconds() {
    const stat = fs.readFileSync(`/proc/${this.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks
  }

  async stop() {
    if (!this.proc) return;
    const exited = new Promise((resolve) => {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) resolve();
      else this.proc.once('exit', resolve);
    });
    try {
      process.kill(this.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, 3000);
    await exited;
    clearTimeout(timer);
    process.removeListener('exit', this.exitHook);
    fs.rmSync(this.dir, { recursive: true, force: true });
    this.proc = null;
  }
}

module.exports = { RedisServer, redisVersion, sleep, freePort };
