'use strict';
// The parent's side of a worker process: request/response over IPC, plus pushed events.

const { fork } = require('node:child_process');
const path = require('node:path');

const WORKER = path.join(__dirname, '..', 'worker.js');

class Worker {
  constructor({ gc = true } = {}) {
    this.child = fork(WORKER, [], {
      execArgv: gc ? ['--expose-gc'] : [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.pid = this.child.pid;
    this.seq = 0;
    this.pending = new Map();
    this.listeners = [];
    this.exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.on('message', (msg) => {
      if (msg.re !== undefined) {
        const p = this.pending.get(msg.re);
        if (!p) return;
        this.pending.delete(msg.re);
        if (msg.ok) p.resolve(msg);
        else p.reject(new Error(`worker ${this.pid} (${p.cmd}): ${msg.error}`));
      } else {
        for (const fn of this.listeners) fn(msg);
      }
    });
    this.child.on('exit', (code, signal) => {
      for (const p of this.pending.values()) p.reject(new Error(`worker ${this.pid} exited (${code ?? signal}) during ${p.cmd}`));
      this.pending.clear();
    });
  }

  call(cmd, args = {}) {
    return new Promise((resolve, reject) => {
      const seq = ++this.seq;
      this.pending.set(seq, { resolve, reject, cmd });
      try {
        this.child.send({ cmd, seq, ...args });
      } catch (err) {
        this.pending.delete(seq);
        reject(err);
      }
    });
  }

  on(fn) {
    this.listeners.push(fn);
  }

  /** Next pushed event that satisfies `pred`. */
  next(pred) {
    return new Promise((resolve) => {
      const fn = (msg) => {
        if (!pred(msg)) return;
        this.listeners = this.listeners.filter((f) => f !== fn);
        resolve(msg);
      };
      this.listeners.push(fn);
    });
  }

  /** Ends the process: disconnect, then SIGKILL by pid if it has not exited after `graceMs`. */
  async stop(graceMs = 2000) {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    try {
      this.child.disconnect();
    } catch {
      // already disconnected
    }
    const timer = setTimeout(() => this.kill(), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  kill() {
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Rejects after `ms` with a recognisable error. */
function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error(`${what} timed out after ${ms} ms`), { timeout: true })), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

module.exports = { Worker, withTimeout };
