'use strict';
// The result objects of acquireLock, releaseLock, renewLock and extendLock, as redfour shapes
// them, whichever path the call took (the core's, lib/calls.js; or the JavaScript thread's,
// lib/plain-calls.js).

/** acquireLock: `{ id, success, index, ttl }` (`ttl`: granted, or the holder's PTTL). */
function acquired(id, success, index, ttl) {
  return { id, success, index, ttl };
}

/** releaseLock: redfour (1.x and 2.x) reports an already-expired lock with index 'expired'. */
function released(id, success, result, index) {
  return { id, success, result, index: result === 'expired' ? 'expired' : index };
}

/** renewLock (`shape` 'renew'): `{ id, success, result, index }`; extendLock: `{ id, success, index, ttl }`. */
function renewed(id, shape, success, result, index, ttl) {
  return shape === 'extend' ? { id, success, index, ttl } : { id, success, result, index };
}

module.exports = { acquired, released, renewed };
