'use strict';
const assert = require('node:assert/strict');
const { test, loadLock } = require('./helpers/common');

test('require() returns the Lock constructor, also as .Lock and .default', () => {
  const Lock = loadLock();
  assert.equal(typeof Lock, 'function');
  assert.equal(Lock.Lock, Lock);
  assert.equal(Lock.default, Lock);
  for (const m of ['acquireLock', 'waitAcquireLock', 'releaseLock', 'renewLock', 'extendLock', 'close', 'quit']) {
    assert.equal(typeof Lock.prototype[m], 'function', `Lock.prototype.${m}`);
  }
});

test('missing redis option throws /must provide a redis/i', () => {
  const Lock = loadLock();
  assert.throws(() => new Lock({}), /must provide a redis/i);
  assert.throws(() => new Lock({ namespace: 'x' }), /must provide a redis/i);
  assert.throws(() => new Lock({ redis: '' }), /must provide a redis/i);
  assert.throws(() => new Lock({ redis: null }), /must provide a redis/i);
  assert.throws(() => new Lock(), /must provide a redis/i);
});

test('namespace defaults to "lock"', async () => {
  const Lock = loadLock();
  // Constructing does not need a reachable server; closing right away must not throw.
  const lock = new Lock({ redis: 'redis://127.0.0.1:1', connectTimeout: 200 });
  try {
    assert.equal(lock.namespace, 'lock');
  } finally {
    await lock.close();
  }
});
