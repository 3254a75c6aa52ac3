'use strict';
// Security: Lua scripts never contain user input; namespaces and ids only ever reach the keys
// `${namespace}:${id}` and `${namespace}index` and the channel `${namespace}-release`; connection
// errors never reveal passwords; and a least-privilege ACL user (RELIABILITY.md, "Least-privilege
// Redis user") is enough, with each of its permissions needed.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const util = require('node:util');
const { startRedis, sleep } = require('./helpers/redis');
const { loadLock, ROOT } = require('./helpers/common');

const SCRIPTS_RS = path.join(ROOT, 'src', 'core', 'scripts.rs');

/** The Lua sources: every `pub const NAME: &str = r#"..."#;` in scripts.rs. */
function staticScripts() {
  const text = fs.readFileSync(SCRIPTS_RS, 'utf8');
  const scripts = new Map();
  for (const m of text.matchAll(/pub const ([A-Z_]+): &str = r#"([\s\S]*?)"#;/g)) scripts.set(m[1], m[2]);
  return scripts;
}
const sha1 = (text) => crypto.createHash('sha1').update(text).digest('hex');

/** Unescapes one MONITOR argument (Redis's sdscatrepr: \" \\ \n \r \t \a \b \xHH) into bytes. */
function unrepr(text) {
  const bytes = [];
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch !== '\\') {
      bytes.push(...Buffer.from(ch, 'latin1'));
      continue;
    }
    const next = text[++i];
    if (next === 'x') {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push({ n: 10, r: 13, t: 9, a: 7, b: 8 }[next] ?? next.charCodeAt(0));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** A MONITOR connection: `commands()` returns [{source:'client'|'lua', args:[...]}] seen so far. */
async function monitor(port) {
  const sock = net.connect(port, '127.0.0.1');
  let text = '';
  sock.setEncoding('latin1');
  sock.on('data', (d) => {
    text += d;
  });
  sock.on('error', () => {});
  await new Promise((resolve) => sock.once('connect', resolve));
  sock.write('MONITOR\r\n');
  while (!text.includes('+OK\r\n')) await sleep(5);
  return {
    commands() {
      const out = [];
      for (const line of text.split('\r\n')) {
        const m = /^\+[\d.]+ \[\d+ ([^\]]+)\] (.*)$/.exec(line);
        if (!m) continue;
        const args = [...m[2].matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((a) => unrepr(a[1]));
        out.push({ source: m[1].startsWith('lua') ? 'lua' : 'client', args });
      }
      return out;
    },
    close() {
      sock.destroy();
    },
  };
}

const NASTY_NAMESPACES = [
  'a"b',
  'x]]y',
  "q'--",
  'nl\nline',
  'cr\r\nINCR x',
  '{tag}',
  '*?[glob]',
  'sp ace',
  'ü😀',
  '%s${}',
  'back\\slash',
  'nul\0byte',
  'redis.call("FLUSHALL")',
  ']]..redis.call("FLUSHALL")..[[',
];
const NASTY_IDS = [
  'a"b',
  ']]',
  '"]] redis.call("FLUSHALL") --',
  '\n',
  'x\r\nDEL y',
  '../../etc',
  '*',
  'ü😀',
  1e21,
  -0,
  0.1 + 0.2,
  10n,
  'nul\0',
  ':',
  'a:b:c',
];

let Lock;
before(() => {
  Lock = loadLock();
});

describe('Lua scripts never contain user input', () => {
  it('scripts.rs builds no script text at run time: only r#"..."# constants', () => {
    const text = fs.readFileSync(SCRIPTS_RS, 'utf8');
    const scripts = staticScripts();
    assert.ok(scripts.has('ACQUIRE') && scripts.has('RELEASE') && scripts.has('RENEW'), [...scripts.keys()].join());
    assert.doesNotMatch(text, /format!|concat!|\.replace\(|push_str|format_args!/, 'scripts.rs formats strings');
    // Scripts are built only from those constants.
    for (const m of text.matchAll(/StaticScript::new\(([^)]*)\)/g)) {
      assert.ok(m[1] === 'source' || scripts.has(m[1]), `StaticScript::new(${m[1]}) is not a constant script`);
    }
    for (const [name, source] of scripts) {
      // Everything a script touches comes from KEYS[n]/ARGV[n]; no literal key or channel names.
      for (const call of source.matchAll(/redis\.call\("([A-Z]+)",\s*([^,)]+)/g)) {
        assert.match(call[2].trim(), /^(KEYS|ARGV)\[\d\]$/, `${name}: ${call[0]}`);
      }
    }
    // No other source file sends Lua text of its own: EVAL/SCRIPT LOAD only with a StaticScript.
    for (const file of fs.readdirSync(path.join(ROOT, 'src', 'core'))) {
      const src = fs.readFileSync(path.join(ROOT, 'src', 'core', file), 'utf8');
      for (const m of src.matchAll(/\.arg\("(EVAL|SCRIPT)"\)[^;]*/g)) {
        assert.doesNotMatch(m[0], /format!/, `${file}: ${m[0]}`);
      }
      assert.doesNotMatch(src, /Script::new\(\s*&?format!/, `${file} builds a script with format!`);
    }
  });

  it(
    'hostile namespaces and ids: every script sent is a static one, and touches exactly the expected keys',
    { timeout: 60000 },
    async () => {
      const server = await startRedis();
      const mon = await monitor(server.port);
      const scripts = [...staticScripts().values()];
      const hashes = new Set(scripts.map(sha1));
      const locks = [];
      try {
        for (const [n, namespace] of NASTY_NAMESPACES.entries()) {
          const lock = new Lock({ redis: server.url, namespace });
          locks.push(lock);
          const id = NASTY_IDS[n % NASTY_IDS.length];
          const key = `${namespace}:${String(id)}`;
          const counter = `${namespace}index`;
          if (n === 3) await server.command('SCRIPT', 'FLUSH'); // the NOSCRIPT fallback path too
          const held = await lock.acquireLock(id, 10000);
          assert.equal(held.success, true, `acquire ns ${JSON.stringify(namespace)} id ${String(id)}`);
          assert.deepEqual(
            (await server.redis.keysBuffer('*')).map(String).sort(),
            [key, counter].sort(),
            `keys for ns ${JSON.stringify(namespace)}`,
          );
          assert.equal(await server.command('HGET', key, 'index'), String(held.index));
          const waiting = lock.waitAcquireLock(id, 10000, 5000);
          await sleep(30);
          const sub = server.client();
          const published = new Promise((resolve) => sub.on('message', (channel, message) => resolve({ channel, message })));
          await sub.subscribe(`${namespace}-release`);
          assert.equal((await lock.releaseLock(held)).result, 'released');
          const next = await waiting;
          assert.equal(next.success, true);
          // The release is published as the key, exactly as redfour does, whatever the namespace.
          const { channel, message } = await published;
          assert.equal(channel, `${namespace}-release`);
          assert.equal(message, key);
          sub.disconnect();
          assert.equal((await lock.renewLock(next, 5000)).result, 'renewed');
          await lock.using(id, 300, async () => sleep(150), { waitMs: 1000 }).catch(() => {});
          await lock.releaseLock(next);
          await server.flush();
        }
        await sleep(100);
        const seen = mon.commands();
        const evals = seen.filter((c) => c.source === 'client' && /^(EVAL|EVALSHA|EVAL_RO|EVALSHA_RO)$/i.test(c.args[0]));
        const loads = seen.filter((c) => c.source === 'client' && /^SCRIPT$/i.test(c.args[0]) && /^LOAD$/i.test(c.args[1]));
        assert.ok(evals.length > NASTY_NAMESPACES.length * 4, `only ${evals.length} script calls seen`);
        for (const c of evals) {
          if (/^EVALSHA/i.test(c.args[0])) assert.ok(hashes.has(c.args[1]), `EVALSHA of an unknown script ${c.args[1]}`);
          else assert.ok(scripts.includes(c.args[1]), `EVAL of a script that is not one of the static sources:\n${c.args[1]}`);
        }
        for (const c of loads) assert.ok(scripts.includes(c.args[2]), `SCRIPT LOAD of a non-static script:\n${c.args[2]}`);
        // Inside the scripts: only our keys, our counter and our channel.
        const allowed = new Set(
          NASTY_NAMESPACES.flatMap((ns, n) => [`${ns}:${String(NASTY_IDS[n % NASTY_IDS.length])}`, `${ns}index`, `${ns}-release`]),
        );
        for (const c of seen.filter((x) => x.source === 'lua')) {
          assert.ok(allowed.has(c.args[1]), `a script touched ${JSON.stringify(c.args[1])} (${c.args[0]})`);
        }
      } finally {
        mon.close();
        await Promise.allSettled(locks.map((l) => l.close()));
        await server.cleanup();
      }
    },
  );
});

describe('ids and namespaces reach only their own keys', () => {
  let server;
  before(async () => {
    server = await startRedis();
  });
  after(() => server.cleanup());

  it('the key is always `${namespace}:${String(id)}`, whatever the id', async () => {
    const lock = new Lock({ redis: server.url, namespace: 'app' });
    try {
      for (const id of NASTY_IDS) {
        const r = await lock.acquireLock(id, 5000);
        assert.equal(r.success, true, String(id));
        const keys = (await server.redis.keysBuffer('*')).map(String).filter((k) => k !== 'appindex');
        assert.deepEqual(keys, [`app:${String(id)}`]);
        await lock.releaseLock(r);
      }
    } finally {
      await lock.close();
    }
  });

  it('documented limit: ids differing only in lone surrogates share a key (UTF-8 encoding, as in redfour)', async () => {
    const lock = new Lock({ redis: server.url, namespace: 'sur' });
    try {
      const a = await lock.acquireLock('x\uD800', 5000);
      const b = await lock.acquireLock('x\uFFFD', 5000);
      assert.equal(a.success, true);
      assert.equal(b.success, false, 'a lone surrogate is sent as U+FFFD: both ids are the key sur:x\\uFFFD');
      await lock.releaseLock(a);
    } finally {
      await lock.close();
    }
  });

  it("documented limit: a namespace containing ':' overlaps another namespace's keys", async () => {
    // redfour's layout: lock keys `${ns}:${id}`, counter `${ns}index`. The counter of namespace
    // 'b:c' is the lock key of id 'cindex' in namespace 'b'.
    const inner = new Lock({ redis: server.url, namespace: 'b:c' });
    const outer = new Lock({ redis: server.url, namespace: 'b' });
    try {
      assert.equal((await inner.acquireLock('x', 5000)).success, true); // INCR b:cindex
      const r = await outer.acquireLock('cindex', 5000);
      assert.equal(r.success, false, 'the counter key looks like a held lock without expiry');
      assert.equal(r.ttl, -1);
    } finally {
      await inner.close();
      await outer.close();
    }
  });
});

describe('connection errors never reveal passwords', () => {
  const SECRET = 'S3cr3t-Pa55-w0rd';
  let server;
  let deadPort;
  before(async () => {
    server = await startRedis({ password: 'the-right-one' });
    const dead = await startRedis();
    deadPort = dead.port;
    await dead.cleanup();
  });
  after(() => server.cleanup());

  function assertRedacted(err, what) {
    assert.ok(err instanceof Error, `${what}: not an error`);
    const everything = [
      err.message,
      err.stack,
      util.inspect(err, { depth: 5 }),
      JSON.stringify(err),
      String(err.cause && err.cause.stack),
    ].join('\n');
    for (const form of [SECRET, encodeURIComponent(SECRET), Buffer.from(SECRET).toString('base64')]) {
      assert.ok(!everything.includes(form), `${what}: the password appears in the error:\n${everything}`);
    }
  }

  const cases = () => [
    ['wrong password in the URL', { redis: `redis://:${SECRET}@127.0.0.1:${server.port}` }, 'ERR_REDIS'],
    ['wrong user and password in the URL', { redis: `redis://nobody:${SECRET}@127.0.0.1:${server.port}` }, 'ERR_REDIS'],
    ['wrong password in options', { redis: { host: '127.0.0.1', port: server.port, password: SECRET } }, 'ERR_REDIS'],
    ['password to a port where nothing listens', { redis: `redis://:${SECRET}@127.0.0.1:${deadPort}`, connectTimeout: 500 }, 'ERR_REDIS'],
    ['password over TLS to a plain-text port', { redis: `rediss://:${SECRET}@127.0.0.1:${server.port}`, connectTimeout: 500 }, 'ERR_REDIS'],
    ['password in a unix socket URL', { redis: `redis+unix:///nonexistent/redis.sock?pass=${SECRET}`, connectTimeout: 500 }, 'ERR_REDIS'],
  ];

  it('rejections of every operation, for wrong or unusable credentials', { timeout: 60000 }, async () => {
    for (const [what, options, code] of cases()) {
      const lock = new Lock({ namespace: 'pw', commandTimeout: 1000, ...options });
      try {
        const outcomes = await Promise.allSettled([
          lock.acquireLock('a', 1000),
          lock.waitAcquireLock('a', 1000, 300),
          lock.releaseLock({ id: 'a', index: 1 }),
          lock.renewLock({ id: 'a', index: 1 }, 1000),
          lock.acquire('a', 1000, { waitMs: 300 }),
          new Promise((resolve, reject) => lock.acquireLock('b', 1000, (err, r) => (err ? reject(err) : resolve(r)))),
        ]);
        for (const [i, o] of outcomes.entries()) {
          assert.equal(o.status, 'rejected', `${what} #${i}: ${JSON.stringify(o.value)}`);
          assert.equal(o.reason.code, code, `${what} #${i}: ${o.reason.message}`);
          assertRedacted(o.reason, `${what} #${i}`);
        }
      } finally {
        await lock.close();
      }
    }
  });

  it('invalid URLs with a password: the ERR_INVALID_ARG message is redacted', () => {
    for (const url of [
      `redis://user:${SECRET}@127.0.0.1:notaport`,
      `redis://:${SECRET}@127.0.0.1:1/notadb`,
      `redis://:${SECRET}@`,
      `http://:${SECRET}@127.0.0.1:1`,
    ]) {
      let caught;
      try {
        new Lock({ redis: url });
      } catch (err) {
        caught = err;
      }
      assert.ok(caught, `${url} was accepted`);
      assert.equal(caught.code, 'ERR_INVALID_ARG');
      assertRedacted(caught, url);
    }
  });
});

describe('least-privilege ACL user', () => {
  // The permissions documented in RELIABILITY.md ("Least-privilege Redis user") for namespace
  // "app": EVALSHA, and EVAL for the NOSCRIPT fallback (after a restart or SCRIPT FLUSH); what the
  // scripts call; SUBSCRIBE/UNSUBSCRIBE for the waiters' subscriber connection.
  const COMMANDS = [
    'evalsha',
    'eval',
    'pttl',
    'incr',
    'hset',
    'pexpire',
    'hget',
    'exists',
    'del',
    'publish',
    'subscribe',
    'unsubscribe',
    'ping',
  ];
  const rules = (commands) => [
    'on',
    '>s3cret',
    'resetkeys',
    '~app:*',
    '~appindex',
    'resetchannels',
    '&app-release',
    '-@all',
    ...commands.map((c) => `+${c}`),
  ];
  let server;
  before(async () => {
    server = await startRedis();
  });
  after(() => server.cleanup());

  /** Everything a Lock does: grants, waits woken by a release, renewals, leases, timeouts, NOSCRIPT, reconnects. */
  async function workload(url) {
    const lock = new Lock({ redis: url, namespace: 'app', connectTimeout: 1000, commandTimeout: 1000 });
    const background = [];
    const later = (promise) => {
      background.push(promise.catch(() => {}));
      return promise;
    };
    try {
      await server.flush(); // FLUSHALL: no lock left over from an earlier run
      await server.command('SCRIPT', 'FLUSH');
      const a = await lock.acquireLock('x', 10000);
      if (!a.success) throw new Error('acquire refused');
      const waiting = later(lock.waitAcquireLock('x', 10000, 1500));
      await sleep(50);
      if ((await lock.releaseLock(a)).result !== 'released') throw new Error('release');
      const b = await waiting;
      if (!b.success || b.immediate) throw new Error('wait was not woken by the release');
      if ((await lock.renewLock(b, 10000)).result !== 'renewed') throw new Error('renew');
      if (!(await lock.extendLock(b, 10000)).success) throw new Error('extend');
      if ((await lock.waitAcquireLock('x', 1000, 100)).success) throw new Error('timed-out wait succeeded');
      await lock.releaseLock(b);
      await lock.using('y', 300, () => sleep(400), { waitMs: 1000 }); // renewed at least once
      const held = await lock.acquire('z', 1000, { waitMs: 1000 });
      await held.release();
      await server.command('CLIENT', 'KILL', 'TYPE', 'pubsub'); // the subscriber reconnects, resubscribes
      await sleep(300);
      const c = await lock.acquireLock('x', 10000);
      const w2 = later(lock.waitAcquireLock('x', 10000, 1500));
      await sleep(100);
      await lock.releaseLock(c);
      const d = await w2;
      if (!d.success) throw new Error('wait after resubscribe');
      await lock.releaseLock(d);
      const e = await lock.acquireLock('short', 1);
      await sleep(10);
      if ((await lock.releaseLock(e)).result !== 'expired') throw new Error('release of an expired lock');
    } finally {
      await lock.close();
      await Promise.all(background);
    }
  }

  async function aclLog() {
    return server.command('ACL', 'LOG');
  }

  it('a Lock works with exactly the documented permissions, and nothing is denied', { timeout: 30000 }, async () => {
    await server.command('ACL', 'SETUSER', 'locker', ...rules(COMMANDS));
    await server.command('ACL', 'LOG', 'RESET');
    await workload(`redis://locker:s3cret@127.0.0.1:${server.port}`);
    const log = await aclLog();
    assert.deepEqual(log, [], `denied: ${JSON.stringify(log)}`);
  });

  it('the client sends no command outside the documented list', { timeout: 30000 }, async () => {
    const mon = await monitor(server.port);
    try {
      await workload(`redis://locker:s3cret@127.0.0.1:${server.port}`);
      await sleep(100);
    } finally {
      mon.close();
    }
    // The connection itself may send AUTH (HELLO, SELECT, PING with other settings).
    const documented = new Set([...COMMANDS, 'auth', 'hello', 'ping', 'select']);
    const sent = new Set();
    for (const c of mon.commands()) {
      const name = c.args[0].toLowerCase();
      const full = ['script', 'client', 'config', 'acl'].includes(name) ? `${name}|${String(c.args[1]).toLowerCase()}` : name;
      // our own admin commands in workload() (SCRIPT FLUSH, CLIENT KILL) run as the default user
      if (['script|flush', 'client|kill', 'info', 'flushall', 'flushdb'].includes(full)) continue;
      sent.add(full);
    }
    for (const cmd of sent) assert.ok(documented.has(cmd), `undocumented command sent: ${cmd} (all: ${[...sent].join(', ')})`);
  });

  it('the key and channel rules keep it inside its namespace', async () => {
    await server.command('ACL', 'SETUSER', 'locker', ...rules(COMMANDS));
    const other = new Lock({ redis: `redis://locker:s3cret@127.0.0.1:${server.port}`, namespace: 'apple' });
    try {
      // 'apple:x' does not match '~app:*', and 'appleindex' does not match '~appindex'
      await assert.rejects(
        other.acquireLock('x', 1000),
        (err) => err.code === 'ERR_REDIS' && /perm|denied|no permissions/i.test(err.message),
      );
    } finally {
      await other.close();
    }
  });

  it('each permission is needed: without it some operation fails or is denied', { timeout: 90000 }, async () => {
    const unneeded = [];
    for (const drop of COMMANDS) {
      await server.command('ACL', 'SETUSER', 'locker', 'reset');
      await server.command('ACL', 'SETUSER', 'locker', ...rules(COMMANDS.filter((c) => c !== drop)));
      await server.command('ACL', 'LOG', 'RESET');
      let failed = false;
      try {
        await workload(`redis://locker:s3cret@127.0.0.1:${server.port}`);
      } catch {
        failed = true;
      }
      if (!failed && (await aclLog()).length === 0) unneeded.push(drop);
    }
    assert.deepEqual(unneeded, [], `permissions that turned out not to be needed: ${unneeded}`);
  });
});
