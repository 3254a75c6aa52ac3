// @ts-check
// The package seen from plain CommonJS JavaScript, type-checked through index.d.ts.
'use strict';
const Lock = require('redfour-native');
const { LockError, codes } = require('redfour-native');

const lock = new Lock({ redis: { host: '127.0.0.1', port: 6379 }, namespace: 'cjs' });

/** @param {(err: Error | null, token?: string) => void} done */
function getAccessToken(done) {
  lock.waitAcquireLock('user', 60 * 1000, 30 * 1000, (err, held) => {
    if (err || !held.success) return done(new Error('Could not get lock!'));
    lock.releaseLock(held, (releaseErr) => done(releaseErr, `token-${held.index}`));
  });
}

async function promiseStyle() {
  const held = await lock.acquireLock(Math.random(), 1000);
  /** @type {number} */
  const index = held.index;
  const released = await new Lock.Lock({ redis: 'redis://localhost' }).releaseLock({ id: held.id, index });
  // @ts-expect-error: result is a known string union
  const wrong = released.result === 'gone';
  return [wrong, new Lock.default({ redis: 'redis://localhost' }), new LockError(codes.ERR_REDIS, 'x')];
}

async function heldStyle() {
  const held = await lock.acquire('report', 10000, { waitMs: 1000 });
  await held.release();
  /** @type {number} */
  const doubled = await lock.using('report', 10000, async (_signal, h) => h.index * 2, { maxHoldMs: 60000 });
  return doubled;
}

module.exports = { getAccessToken, promiseStyle, heldStyle };
