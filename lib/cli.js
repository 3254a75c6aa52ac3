'use strict';
// `redfour-native run`: a distributed flock. Takes a lock (waiting or not), runs a command while
// the lease is renewed from Rust timers, forwards signals to it, releases when it exits and exits
// with its status. See usage() for the exit codes.

const { spawn } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');

const EXIT = Object.freeze({
  USAGE: 64, // EX_USAGE: bad command line
  UNAVAILABLE: 69, // EX_UNAVAILABLE: Redis could not be reached
  LOST: 70, // EX_SOFTWARE: the lease was lost while the command ran (it was sent SIGTERM)
  HELD: 75, // EX_TEMPFAIL: the lock is held elsewhere (--no-wait, or --wait ran out)
  NOT_EXECUTABLE: 126,
  NOT_FOUND: 127,
});

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];
const MAX_MS = 2147483647;
const UNITS = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000 };

const code = (value) => String(value).padEnd(23);

function usage() {
  return `Usage: redfour-native run --id ID [options] [--] COMMAND [ARGS...]

Runs COMMAND while holding the Redis lock ID: a flock(1) shared by every machine that uses
the same Redis. The lease is renewed while the command runs, the signals SIGINT, SIGTERM,
SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded to it, and the lock is released when it exits.

Options:
  --id ID            lock id (required); the key is NAMESPACE:ID
  --ttl DURATION     lease, renewed every third of it while the command runs (default 30s);
                     if this process dies, another can take the lock after at most this long
  --wait DURATION    wait at most this long for the lock, then exit ${EXIT.HELD} (0: do not wait)
  --no-wait          exit ${EXIT.HELD} at once if the lock is held
                     (default: wait as long as it takes)
  --namespace NS     key namespace (default "lock"), as in new Lock({ namespace })
  --redis URL        redis:// or rediss:// URL (default: $REDIS_URL)
  --kill-after DURATION
                     if the lease is lost, the command gets SIGTERM, then SIGKILL after this
                     long (default 10s)
  -q, --quiet        do not say so when the lock is held elsewhere
  -v, --verbose      say when the lock is taken and released
  -h, --help         show this help
  -V, --version      print the version

DURATION is milliseconds (1500) or a number with a unit: 500ms, 10s, 1.5m, 2h, 1d.

Exit status:
  the command's own      when it ran and exited
  128+N                  the command was killed by signal N, or this tool by signal N while
                         waiting for the lock
  ${code(EXIT.HELD)}the lock is held elsewhere (--no-wait, or --wait ran out)
  ${code(EXIT.LOST)}the lease was lost while the command ran (it was sent SIGTERM)
  ${code(EXIT.UNAVAILABLE)}Redis could not be reached
  ${code(EXIT.USAGE)}bad command line
  ${code(`${EXIT.NOT_EXECUTABLE} / ${EXIT.NOT_FOUND}`)}COMMAND is not executable / not found

Example:
  REDIS_URL=redis://10.0.0.5:6379 npx redfour-native run --id daily-email --ttl 10m --no-wait -- ./send-daily-email.sh
`;
}

class UsageError extends Error {}

/** Parses `1500`, `500ms`, `10s`, `1.5m`, `2h`, `1d` into integer milliseconds. */
function parseDuration(text, { allowZero = false } = {}) {
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$/i.exec(String(text));
  if (!m) throw new UsageError(`invalid duration ${JSON.stringify(String(text))} (use e.g. 1500, 500ms, 10s, 10m, 1h)`);
  const ms = Math.round(Number(m[1]) * UNITS[(m[2] || 'ms').toLowerCase()]);
  if (ms < (allowZero ? 0 : 1) || ms > MAX_MS) {
    throw new UsageError(`duration ${JSON.stringify(String(text))} must be between ${allowZero ? 0 : 1} ms and ${MAX_MS} ms`);
  }
  return ms;
}

/** Parses the arguments after `run`. Returns the options and the command. */
function parseRunArgs(args, env = process.env) {
  const opts = {
    id: undefined,
    ttl: 30000,
    waitMs: undefined,
    namespace: undefined,
    redis: env.REDIS_URL,
    killAfterMs: 10000,
    quiet: false,
    verbose: false,
  };
  let i = 0;
  const valueOf = (flag, inline) => {
    if (inline !== undefined) return inline;
    i += 1;
    if (i >= args.length) throw new UsageError(`${flag} needs a value`);
    return args[i];
  };
  for (; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') {
      i += 1;
      break;
    }
    if (!arg.startsWith('-') || arg === '-') break; // the command starts here
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const inline = eq > 0 ? arg.slice(eq + 1) : undefined;
    switch (flag) {
      case '--id':
        opts.id = valueOf(flag, inline);
        if (opts.id === '') throw new UsageError('--id must not be empty');
        break;
      case '--ttl':
        opts.ttl = parseDuration(valueOf(flag, inline));
        break;
      case '--wait':
        opts.waitMs = parseDuration(valueOf(flag, inline), { allowZero: true });
        break;
      case '--no-wait':
        if (inline !== undefined) throw new UsageError('--no-wait takes no value');
        opts.waitMs = 0;
        break;
      case '--namespace':
        opts.namespace = valueOf(flag, inline);
        break;
      case '--redis':
        opts.redis = valueOf(flag, inline);
        break;
      case '--kill-after':
        opts.killAfterMs = parseDuration(valueOf(flag, inline));
        break;
      case '-q':
      case '--quiet':
        opts.quiet = true;
        break;
      case '-v':
      case '--verbose':
        opts.verbose = true;
        break;
      default:
        throw new UsageError(`unknown option ${flag}`);
    }
  }
  const command = args.slice(i);
  if (opts.id === undefined) throw new UsageError('--id is required');
  if (command.length === 0) throw new UsageError('no command given (put it after --)');
  if (!opts.redis) throw new UsageError('no Redis: pass --redis URL or set REDIS_URL');
  return { opts, command };
}

function signalNumber(signal) {
  return os.constants.signals[signal] || 0;
}

function version() {
  try {
    return require(path.join(__dirname, '..', 'package.json')).version;
  } catch {
    return 'unknown';
  }
}

/**
 * Runs the CLI. Resolves with the exit code; never rejects. `io` lets tests capture output.
 */
async function main(argv, { env = process.env, stdout = process.stdout, stderr = process.stderr } = {}) {
  const say = (text) => stderr.write(`redfour-native: ${text}\n`);
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '-h' || sub === '--help' || sub === 'help') {
    (sub === undefined ? stderr : stdout).write(usage());
    return sub === undefined ? EXIT.USAGE : 0;
  }
  if (sub === '-V' || sub === '--version') {
    stdout.write(`${version()}\n`);
    return 0;
  }
  if (sub !== 'run') {
    say(`unknown command ${JSON.stringify(sub)}; try --help`);
    return EXIT.USAGE;
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    const dashes = rest.indexOf('--');
    const help = rest.findIndex((a) => a === '-h' || a === '--help');
    if (dashes < 0 || help < dashes) {
      stdout.write(usage());
      return 0;
    }
  }
  let parsed;
  try {
    parsed = parseRunArgs(rest, env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    say(`${err.message}; try --help`);
    return EXIT.USAGE;
  }
  return run(parsed, { say });
}

async function run({ opts, command }, { say }) {
  const Lock = require('..');
  const info = (text) => {
    if (opts.verbose) say(text);
  };
  let lock;
  try {
    lock = new Lock({ redis: opts.redis, namespace: opts.namespace });
  } catch (err) {
    say(err.message);
    return EXIT.USAGE;
  }

  // Signals that arrive while we wait for the lock end the wait; once the command runs they are
  // forwarded to it.
  let child = null;
  let received = null;
  const waitAbort = new AbortController();
  const handlers = new Map();
  for (const signal of FORWARDED) {
    const handler = () => {
      if (child) {
        try {
          child.kill(signal);
        } catch {
          // already gone
        }
      } else {
        received = received || signal;
        waitAbort.abort();
      }
    };
    handlers.set(signal, handler);
    process.on(signal, handler);
  }
  const cleanup = async () => {
    for (const [signal, handler] of handlers) process.removeListener(signal, handler);
    await lock.close().catch(() => {});
  };

  // --no-wait / --wait 0: one attempt (waitMs 1 is "try, and try once more a millisecond later").
  const waitMs = opts.waitMs === undefined ? 0 : Math.max(opts.waitMs, 1);
  let held;
  try {
    held = await lock.acquire(opts.id, opts.ttl, { waitMs, signal: waitAbort.signal });
  } catch (err) {
    await cleanup();
    if (received) return 128 + signalNumber(received);
    if (err && err.code === 'ERR_NOT_ACQUIRED') {
      if (!opts.quiet)
        say(
          `lock ${JSON.stringify(opts.id)} is held elsewhere${typeof err.ttl === 'number' && err.ttl >= 0 ? ` (${err.ttl} ms of its lease left)` : ''}; not running the command`,
        );
      return EXIT.HELD;
    }
    if (err && err.code === 'ERR_REDIS') {
      say(`Redis unavailable: ${err.message}`);
      return EXIT.UNAVAILABLE;
    }
    say(err && err.message ? err.message : String(err));
    return err && err.code === 'ERR_INVALID_ARG' ? EXIT.USAGE : EXIT.UNAVAILABLE;
  }
  if (received) {
    // A signal raced the grant.
    await held.release().catch(() => {});
    await cleanup();
    return 128 + signalNumber(received);
  }
  info(`holding lock ${JSON.stringify(opts.id)} (index ${held.index}); running ${command.join(' ')}`);

  const status = await new Promise((resolve) => {
    let lost = null;
    let killTimer = null;
    try {
      child = spawn(command[0], command.slice(1), { stdio: 'inherit' });
    } catch (err) {
      say(`cannot run ${command[0]}: ${err.message}`);
      resolve(EXIT.NOT_FOUND);
      return;
    }
    const onLost = () => {
      const reason = held.signal.reason;
      lost = reason;
      say(`${reason && reason.message ? reason.message : 'lock lost'}; sending SIGTERM to the command`);
      try {
        child.kill('SIGTERM');
      } catch {
        // already gone
      }
      killTimer = setTimeout(() => {
        say(`the command did not exit within ${opts.killAfterMs} ms of SIGTERM; sending SIGKILL`);
        try {
          child.kill('SIGKILL');
        } catch {
          // already gone
        }
      }, opts.killAfterMs);
    };
    held.signal.addEventListener('abort', onLost, { once: true });
    child.once('error', (err) => {
      held.signal.removeEventListener('abort', onLost);
      clearTimeout(killTimer);
      say(`cannot run ${command[0]}: ${err.message}`);
      resolve(err.code === 'ENOENT' ? EXIT.NOT_FOUND : EXIT.NOT_EXECUTABLE);
    });
    child.once('exit', (code, signal) => {
      held.signal.removeEventListener('abort', onLost);
      clearTimeout(killTimer);
      if (lost) resolve(EXIT.LOST);
      else if (signal) resolve(128 + signalNumber(signal));
      else resolve(code === null ? 1 : code);
    });
  });

  try {
    const released = await held.release();
    info(`released lock ${JSON.stringify(opts.id)}: ${released.result}`);
  } catch (err) {
    say(`could not release lock ${JSON.stringify(opts.id)} (it expires by its TTL): ${err.message}`);
  }
  await cleanup();
  return status;
}

module.exports = { main, parseDuration, parseRunArgs, usage, EXIT, UsageError };
