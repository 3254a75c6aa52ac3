'use strict';
// Bad arguments: a TypeError with code ERR_INVALID_ARG, in both calling styles, before Redis
// is touched (no key written, no script run). redfour would write an immortal lock for a NaN TTL.
const { describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startRedis } = require('./helpers/redis');
const { it, loadLock, uniqueNs, rejectsWithCode } = require('./helpers/common');

let server;
let Lock;
let lock;
let ns;

before(async () => {
  Lock = loadLock();
  server = await startRedis();
  ns = uniqueNs('args');
  lock = new Lock({ redis: server.url, namespace: ns });
  // Connect and warm up, then forget about it.
  const r = await lock.acquireLock('warm', 1000);
  await lock.releaseLock(r);
  await server.flush();
  await server.resetStats();
});

after(async () => {
  if (lock) await lock.close();
  if (server) await server.cleanup();
});

const badTtls = [
  ['NaN', NaN],
  ['Infinity', Infinity],
  ['-Infinity', -Infinity],
  ['negative', -1],
  ['zero', 0],
  ['fraction 1.5', 1.5],
  ['huge 2^31', 2 ** 31],
  ['huge 1e20', 1e20],
  ['string "1000"', '1000'],
  ['undefined', undefined],
  ['null', null],
  ['object', {}],
  ['bigint 1000n', 1000n],
];
const badIds = [
  ['missing (undefined)', undefined],
  ['null', null],
  ['object', { a: 1 }],
  ['array', ['a']],
  ['function', () => 'x'],
  ['symbol', Symbol('x')],
  ['boolean', true],
  ['NaN', NaN],
  ['Infinity', Infinity],
];
const goodLock = { id: 'x', index: 1 };
const badLocks = [
  ['undefined', undefined],
  ['null', null],
  ['string', 'x'],
  ['number', 5],
  ['no id', { index: 3 }],
  ['no index', { id: 'x' }],
  ['null id', { id: null, index: 3 }],
  ['object id', { id: {}, index: 3 }],
  ['index NaN', { id: 'x', index: NaN }],
  ['index Infinity', { id: 'x', index: Infinity }],
  ['index -Infinity', { id: 'x', index: -Infinity }],
  ['index null', { id: 'x', index: null }],
  ['index true', { id: 'x', index: true }],
  ['index object', { id: 'x', index: { valueOf: () => 3 } }],
  ['index non-numeric text "abc"', { id: 'x', index: 'abc' }],
  ['index empty string', { id: 'x', index: '' }],
  ['index text "12abc"', { id: 'x', index: '12abc' }],
  ['index text "NaN"', { id: 'x', index: 'NaN' }],
  ['index text "Infinity"', { id: 'x', index: 'Infinity' }],
  ['index hex text "0x10"', { id: 'x', index: '0x10' }],
];
// Indexes that are answers, not errors (as in redfour, whose scripts compare them with
// `tonumber`): -1 from a failed acquire, 0, negatives, fractions, numeric strings. Their results
// are checked in dropin.test.js; here only that they are not argument errors.
const badWaitTtls = [
  ['negative', -1],
  ['NaN', NaN],
  ['fraction', 0.5],
  ['string "100"', '100'],
  ['Infinity', Infinity],
];

/** The calls to check, each a function (lock) => [method, args]. */
const cases = [];
for (const [name, id] of badIds) cases.push([`acquireLock id ${name}`, 'acquireLock', [id, 1000]]);
for (const [name, ttl] of badTtls) cases.push([`acquireLock ttl ${name}`, 'acquireLock', ['ok-id', ttl]]);
for (const [name, id] of badIds) cases.push([`waitAcquireLock id ${name}`, 'waitAcquireLock', [id, 1000, 100]]);
for (const [name, ttl] of badTtls) cases.push([`waitAcquireLock lockTtl ${name}`, 'waitAcquireLock', ['ok-id', ttl, 100]]);
for (const [name, w] of badWaitTtls) cases.push([`waitAcquireLock waitTtl ${name}`, 'waitAcquireLock', ['ok-id', 1000, w]]);
for (const [name, l] of badLocks) cases.push([`releaseLock lock ${name}`, 'releaseLock', [l]]);
for (const [name, l] of badLocks) cases.push([`renewLock lock ${name}`, 'renewLock', [l, 1000]]);
for (const [name, ttl] of badTtls) cases.push([`renewLock ttl ${name}`, 'renewLock', [goodLock, ttl]]);
for (const [name, l] of badLocks) cases.push([`extendLock lock ${name}`, 'extendLock', [l, 1000]]);
for (const [name, ttl] of badTtls) cases.push([`extendLock ttl ${name}`, 'extendLock', [goodLock, ttl]]);

describe('invalid arguments (promise style)', () => {
  for (const [title, method, args] of cases) {
    it(title, async () => {
      let ret;
      assert.doesNotThrow(() => {
        ret = lock[method](...args);
      }, 'must reject, not throw synchronously');
      assert.ok(ret instanceof Promise);
      await rejectsWithCode(ret, 'ERR_INVALID_ARG', TypeError);
    });
  }
});

describe('invalid arguments (callback style)', () => {
  for (const [title, method, args] of cases) {
    it(title, async () => {
      let returned = false;
      const err = await new Promise((resolve, reject) => {
        let ret;
        try {
          ret = lock[method](...args, (e, result) => {
            if (!returned) reject(new Error('callback was called synchronously'));
            else if (!e) reject(new Error(`expected an error, got ${JSON.stringify(result)}`));
            else resolve(e);
          });
        } catch (e) {
          reject(new Error(`threw synchronously instead of calling back: ${e.message}`));
          return;
        }
        returned = true;
        if (ret !== undefined) reject(new Error('callback style must return undefined'));
      });
      assert.ok(err instanceof TypeError, `${err.constructor.name}: ${err.message}`);
      assert.equal(err.code, 'ERR_INVALID_ARG');
    });
  }
});

describe('nothing reached Redis', () => {
  it('no key was written and no script ran for any invalid call', async () => {
    assert.deepEqual(await server.keys(), [], 'invalid calls left keys behind');
    assert.equal(await server.scriptCalls(), 0, 'invalid calls ran scripts');
  });
});

describe('invalid constructor options', () => {
  const badUrls = [
    ['unparsable URL', 'not a url'],
    ['unknown scheme http://', `http://127.0.0.1:${6380}`],
    ['unknown scheme mongodb://', 'mongodb://127.0.0.1:27017'],
    ['port out of range', 'redis://127.0.0.1:99999'],
    ['non-numeric database', 'redis://127.0.0.1:6380/abc'],
  ];
  for (const [title, url] of badUrls) {
    it(`${title} throws a TypeError with code ERR_INVALID_ARG`, () => {
      let caught;
      try {
        const l = new Lock({ redis: url, namespace: uniqueNs('bad') });
        l.close();
      } catch (e) {
        caught = e;
      }
      assert.ok(caught, `new Lock({redis: ${JSON.stringify(url)}}) did not throw`);
      assert.ok(caught instanceof TypeError, `${caught.constructor.name}: ${caught.message}`);
      assert.equal(caught.code, 'ERR_INVALID_ARG');
    });
  }

  for (const [title, cluster] of [
    ['a string', 'yes'],
    ['a number', 1],
    ['an empty array', []],
    ['an array with null', [null]],
    ['an array with a boolean', [true]],
    ['an object without nodes', { options: {} }],
    ['an object whose nodes is not an array', { nodes: '127.0.0.1:7000' }],
  ]) {
    it(`cluster as ${title} throws ERR_INVALID_ARG`, () => {
      assert.throws(
        () => new Lock({ cluster, namespace: uniqueNs('bad') }),
        (e) => e instanceof TypeError && e.code === 'ERR_INVALID_ARG' && /cluster/.test(e.message),
      );
    });
  }

  it("ioredfour's cluster seeds are accepted without a redis option (no connection is made yet)", () => {
    for (const cluster of [
      [
        { host: '127.0.0.1', port: 7000 },
        { host: '127.0.0.1', port: 7001 },
      ],
      ['127.0.0.1:7000', 7001, 'redis://127.0.0.1:7002'],
      { nodes: [{ host: '127.0.0.1', port: 7000 }], options: { redisOptions: { password: 'pw' } } },
      { startupNodes: [{ host: '127.0.0.1', port: 7000 }] },
    ]) {
      const l = new Lock({ cluster, namespace: uniqueNs('cl') });
      l.close();
    }
  });

  it('non-string namespace throws ERR_INVALID_ARG', () => {
    assert.throws(
      () => new Lock({ redis: server.url, namespace: 42 }),
      (e) => e instanceof TypeError && e.code === 'ERR_INVALID_ARG',
    );
  });

  it('an error message never echoes the password of a bad URL', () => {
    try {
      const l = new Lock({ redis: 'redis://user:s3cr3tpw@127.0.0.1:6380/notanumber' });
      l.close();
      assert.fail('did not throw');
    } catch (e) {
      assert.equal(e.code, 'ERR_INVALID_ARG');
      assert.ok(!e.message.includes('s3cr3tpw'), e.message);
    }
  });
});

describe('the lock object passed to releaseLock/renewLock/extendLock is read once', () => {
  // A getter that answers once and throws after: the call must be decided by what was read, and
  // a call already sent must not be orphaned by a later read (its rejection would go unhandled).
  const readOnce = (id, index) => {
    const reads = { id: 0, index: 0 };
    const lockRef = {
      get id() {
        if (++reads.id > 1) throw new Error('id read twice');
        return id;
      },
      get index() {
        if (++reads.index > 1) throw new Error('index read twice');
        return index;
      },
    };
    return { lockRef, reads };
  };

  for (const [method, args, expect] of [
    ['releaseLock', [], { result: 'expired' }],
    ['renewLock', [1000], { result: 'missing' }],
    ['extendLock', [1000], { success: false }],
  ]) {
    it(`${method}: each property is read exactly once, and the answer comes from Redis`, async () => {
      const { lockRef, reads } = readOnce('read-once', 7);
      const r = await lock[method](lockRef, ...args);
      assert.deepEqual(reads, { id: 1, index: 1 });
      assert.equal(r.id, 'read-once');
      for (const [k, v] of Object.entries(expect)) assert.equal(r[k], v);
    });
  }
});

describe('native errors carry their code as data', () => {
  it('a native method throws an Error whose code property is ours (no code parsed from the message)', () => {
    const native = require('../lib/native');
    const noop = () => {};
    const nativeLock = new native.NativeLock(
      { urls: [server.url], namespace: uniqueNs('native'), connectTimeoutMs: 1000, commandTimeoutMs: 1000 },
      noop,
    );
    try {
      assert.throws(
        () => nativeLock.acquire(1, 'x', 0),
        (err) => err.code === 'ERR_INVALID_ARG' && !err.message.startsWith('['),
      );
    } finally {
      nativeLock.close();
    }
  });
});
