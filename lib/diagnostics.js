'use strict';
// What redfour-native tells the outside world about its work: messages on node:diagnostics_channel
// (for APM / OpenTelemetry instrumentations, metrics, tests), and NODE_DEBUG=redfour-native lines
// (util.debuglog), which are written by a subscriber of the same channels: one source of events.
// docs/observability.md lists every channel with its payload.
//
// Nothing here costs anything while nobody listens: every publisher checks `hasSubscribers`
// before it builds a message or reads a clock. Events raised inside the Rust core (connections,
// quorum) reach this thread in batches through a weak threadsafe function (src/binding.rs):
// they never keep the process alive, and subscribers only ever run on the JavaScript thread.

const dc = require('node:diagnostics_channel');
const util = require('node:util');
const { performance } = require('node:perf_hooks');
const { codes } = require('./errors');
const { redact } = require('./connection');

/** Channel names (what `diagnostics_channel.subscribe(name, fn)` takes). */
const channels = Object.freeze({
  acquireStart: 'redfour-native:acquire:start',
  acquireEnd: 'redfour-native:acquire:end',
  waitStart: 'redfour-native:wait:start',
  waitEnd: 'redfour-native:wait:end',
  release: 'redfour-native:release',
  leaseRenewed: 'redfour-native:lease:renewed',
  leaseLost: 'redfour-native:lease:lost',
  connected: 'redfour-native:connection:connected',
  connectionLost: 'redfour-native:connection:lost',
  connectFailed: 'redfour-native:connection:failed',
  quorumLost: 'redfour-native:quorum:lost',
  quorumRegained: 'redfour-native:quorum:regained',
});

// The Channel objects, held for the life of the process (diagnostics_channel keeps channels
// only weakly; ours must not be collected while a subscriber relies on them).
const ch = {};
for (const [name, channelName] of Object.entries(channels)) ch[name] = dc.channel(channelName);

function subscribe(name, fn) {
  if (typeof dc.subscribe === 'function') dc.subscribe(channels[name], fn);
  else ch[name].subscribe(fn);
}

/**
 * One acquire or wait in flight while somebody listens: publishes the start message now and, when
 * `follow`ed promise settles, the same object completed as the end message (subscribers can
 * correlate the two by identity, as with undici's request objects).
 */
class Span {
  constructor(start, end, message, wait) {
    this.end = end;
    this.message = message;
    this.wait = wait;
    this.startedAt = performance.now();
    if (start.hasSubscribers) start.publish(message);
  }

  /** Publishes the end when `promise` settles; returns a promise that settles the same way. */
  follow(promise) {
    return promise.then(
      (result) => {
        this.done(result);
        return result;
      },
      (err) => {
        this.fail(err);
        throw err;
      },
    );
  }

  /** The operation answered: `result` is what the caller gets (`success`, `index`, ...). */
  done(result) {
    const message = this.message;
    message.outcome = result.success ? 'acquired' : this.wait ? 'timed-out' : 'not-acquired';
    message.index = result.index;
    if (this.wait) message.immediate = result.immediate === true;
    message.result = result;
    this._publish();
  }

  /** The operation failed (or, for acquire(), ended without the lock: ERR_NOT_ACQUIRED). */
  fail(err) {
    const message = this.message;
    const code = err && err.code;
    message.outcome = code === codes.ERR_ABORTED ? 'aborted' : code === codes.ERR_NOT_ACQUIRED ? 'timed-out' : 'error';
    message.index = -1;
    if (this.wait) message.immediate = false;
    message.code = code;
    message.error = err;
    this._publish();
  }

  _publish() {
    this.message.durationMs = performance.now() - this.startedAt;
    if (this.end.hasSubscribers) this.end.publish(this.message);
  }
}

/** `acquireLock`: a Span, or null when nobody listens (the caller then does nothing more). */
function acquireStart(namespace, id, ttl) {
  if (!ch.acquireStart.hasSubscribers && !ch.acquireEnd.hasSubscribers) return null;
  return new Span(ch.acquireStart, ch.acquireEnd, { operation: 'acquireLock', namespace, id, ttl }, false);
}

/** `waitAcquireLock`, `acquire`, `using`: a Span, or null when nobody listens. */
function waitStart(operation, namespace, id, ttl, waitTtl) {
  if (!ch.waitStart.hasSubscribers && !ch.waitEnd.hasSubscribers) return null;
  return new Span(ch.waitStart, ch.waitEnd, { operation, namespace, id, ttl, waitTtl }, true);
}

/**
 * `releaseLock`: returns `promise`, or (while somebody listens) a promise settling the same way
 * that first publishes the release's outcome.
 */
function traceRelease(namespace, id, index, promise) {
  if (!ch.release.hasSubscribers) return promise;
  const startedAt = performance.now();
  const publish = (message) => {
    message.durationMs = performance.now() - startedAt;
    if (ch.release.hasSubscribers) ch.release.publish(message);
  };
  return promise.then(
    (result) => {
      publish({ namespace, id, index, result: result.result, success: result.success });
      return result;
    },
    (err) => {
      publish({ namespace, id, index, result: undefined, success: false, code: err && err.code, error: err });
      throw err;
    },
  );
}

/**
 * A held lease's renewals, reported by the native side while somebody listens when the lease is
 * taken: returns a watch token for `acquireLease` (0: not watched). `calls` is the Lock's Calls.
 */
function watchRenewals(calls, namespace, id) {
  if (!ch.leaseRenewed.hasSubscribers) return 0;
  return calls.watch((index, remainingMs) => {
    if (ch.leaseRenewed.hasSubscribers) ch.leaseRenewed.publish({ namespace, id, index, remainingMs });
  });
}

function leaseLost(namespace, id, index, reason) {
  if (ch.leaseLost.hasSubscribers) ch.leaseLost.publish({ namespace, id, index, reason });
}

// Engine events (src/core/events.rs) as they arrive from the native side, and the same events of
// the plain calls' connection (lib/redis-connection.js), one at a time.
function onNativeEvents(events) {
  for (const event of events) connectionEvent(event);
}

function connectionEvent(event) {
  switch (event.kind) {
    case 'connected':
      if (ch.connected.hasSubscribers) {
        ch.connected.publish({ endpoint: event.endpoint, connection: event.connection, reconnect: event.reconnect === true });
      }
      break;
    case 'lost':
      if (ch.connectionLost.hasSubscribers) {
        ch.connectionLost.publish({ endpoint: event.endpoint, connection: event.connection, reason: redact(event.error || '') });
      }
      break;
    case 'connect-failed':
      if (ch.connectFailed.hasSubscribers) {
        ch.connectFailed.publish({ endpoint: event.endpoint, connection: event.connection, error: redact(event.error || '') });
      }
      break;
    case 'quorum-lost':
    case 'quorum-regained': {
      const channel = event.kind === 'quorum-lost' ? ch.quorumLost : ch.quorumRegained;
      if (channel.hasSubscribers) {
        channel.publish({ endpoints: event.endpoint.split(', '), answered: event.answered, needed: event.needed });
      }
      break;
    }
    default:
      break;
  }
}

let listening = false;
/** Starts receiving the engine's events (once per thread; called when the first Lock is made). */
function listen(native) {
  if (listening) return;
  listening = true;
  if (typeof native.listenEvents === 'function') native.listenEvents(onNativeEvents);
}

// NODE_DEBUG=redfour-native: a subscriber of the channels above, so the log shows exactly what
// instrumentations see. Connections, waits and lost leases; never acquireLock/releaseLock calls
// (a busy process makes thousands a second) and never credentials (endpoints are host:port).
const debug = util.debuglog('redfour-native');
if (debug.enabled) {
  const key = (m) => `${m.namespace}:${String(m.id)}`;
  const ms = (value) => `${Math.round(value * 10) / 10} ms`;
  subscribe('waitStart', (m) => {
    debug('%s: waiting for %s (ttl %d ms, %s)', m.operation, key(m), m.ttl, m.waitTtl ? `waitTtl ${m.waitTtl} ms` : 'no wait limit');
  });
  subscribe('waitEnd', (m) => {
    const got = m.outcome === 'acquired' ? ` (index ${m.index}${m.immediate ? ', no waiting' : ''})` : '';
    const why = m.code ? ` (${m.code}: ${redact(m.error && m.error.message)})` : '';
    debug('%s: wait for %s ended: %s%s after %s%s', m.operation, key(m), m.outcome, got, ms(m.durationMs), why);
  });
  subscribe('leaseLost', (m) => debug('lease on %s (index %d) lost: %s', key(m), m.index, m.reason));
  subscribe('connected', (m) => debug('%s to %s (%s connection)', m.reconnect ? 'reconnected' : 'connected', m.endpoint, m.connection));
  subscribe('connectionLost', (m) => debug('%s connection to %s lost: %s', m.connection, m.endpoint, m.reason));
  subscribe('connectFailed', (m) => debug('could not connect to %s (%s connection): %s', m.endpoint, m.connection, m.error));
  subscribe('quorumLost', (m) =>
    debug('quorum lost: %d of %d nodes answered, %d needed (%s)', m.answered, m.endpoints.length, m.needed, m.endpoints.join(', ')),
  );
  subscribe('quorumRegained', (m) =>
    debug('quorum regained: %d of %d nodes answered (%s)', m.answered, m.endpoints.length, m.endpoints.join(', ')),
  );
}

module.exports = { channels, connectionEvent, acquireStart, waitStart, traceRelease, watchRenewals, leaseLost, listen };
