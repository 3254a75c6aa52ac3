'use strict';
// What the long-lived objects (Lock, HeldLock, LeaderElector, Schedule) share.

/**
 * `await using x = ...` support where the runtime has Symbol.asyncDispose (Node 20.4+ / TS 5.2):
 * makes `Class.prototype[Symbol.asyncDispose]` call `dispose(this)`.
 */
function asyncDisposable(Class, dispose) {
  if (typeof Symbol.asyncDispose !== 'symbol') return;
  Object.defineProperty(Class.prototype, Symbol.asyncDispose, {
    value: function asyncDispose() {
      return dispose(this);
    },
    writable: true,
    configurable: true,
  });
}

/**
 * Emits `event` without letting a throwing listener break the caller's loop (an election, a
 * schedule): the listener's error is rethrown on its own tick, as an uncaught exception.
 */
function emitSafely(emitter, event, payload) {
  try {
    emitter.emit(event, payload);
  } catch (err) {
    process.nextTick(() => {
      throw err;
    });
  }
}

module.exports = { asyncDisposable, emitSafely };
