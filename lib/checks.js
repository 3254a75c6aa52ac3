'use strict';
// Argument checks shared by the facade and the coordination helpers.

const { invalidArg } = require('./errors');

// 2^31-1 ms (about 24.8 days): the largest delay a JavaScript timer accepts, and far beyond any sane lease.
const MAX_TTL_MS = 2147483647;

/** A short, password-free description of a bad value for an error message. */
function describe(value) {
  if (value === null) return 'null';
  if (typeof value === 'string') return 'a string';
  if (typeof value === 'number') return String(value);
  return typeof value;
}

/**
 * An integer number of milliseconds from 1 (0 with `allowZero`) to MAX_TTL_MS. With a `fallback`
 * option (even `fallback: undefined`), an undefined value is optional and gives the fallback.
 */
function checkMs(value, name, options = {}) {
  const { allowZero = false } = options;
  if (value === undefined && Object.prototype.hasOwnProperty.call(options, 'fallback')) return options.fallback;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw invalidArg(`${name} must be an integer number of milliseconds, got ${describe(value)}`);
  }
  const low = allowZero ? 0 : 1;
  if (value < low || value > MAX_TTL_MS) {
    throw invalidArg(`${name} must be between ${low} and ${MAX_TTL_MS} ms, got ${value}`);
  }
  return value;
}

module.exports = { MAX_TTL_MS, checkMs, describe };
