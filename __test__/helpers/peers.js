'use strict';
// A private redis-server for one test file, shared by our Locks and the real redfour@1.0.5 (the
// interop and drop-in tests): everything made through it is closed after the file, last first.

const { before, after } = require('node:test');
const { promisify } = require('node:util');
const RedfourLock = require('redfour');
const { startRedis } = require('./redis');
const { loadLock, uniqueNs } = require('./common');

function usePeers(tag) {
  const cleanups = [];
  const peers = {
    server: null,
    Lock: null,
    /** Runs `fn` after the file's tests (best effort), before the server stops. */
    defer(fn) {
      cleanups.push(fn);
    },
    /** One of our Locks on the server. */
    ours(namespace = uniqueNs(tag), options = {}) {
      const lock = new peers.Lock({ redis: peers.server.url, namespace, ...options });
      peers.defer(() => lock.close());
      return lock;
    },
    /** A real redfour@1.0.5 instance on the server, promisified (it is callback style). */
    redfour(namespace) {
      const rf = new RedfourLock({ redis: peers.server.url, namespace });
      rf._redisConnection.on('error', () => {});
      rf._redisSubscriber.on('error', () => {});
      peers.defer(() => {
        rf._redisConnection.quit();
        rf._redisSubscriber.quit();
      });
      return {
        raw: rf,
        acquireLock: promisify(rf.acquireLock.bind(rf)),
        waitAcquireLock: promisify(rf.waitAcquireLock.bind(rf)),
        releaseLock: promisify(rf.releaseLock.bind(rf)),
      };
    },
  };
  before(async () => {
    peers.Lock = loadLock();
    peers.server = await startRedis();
  });
  after(async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch {
        /* best effort */
      }
    }
    if (peers.server) await peers.server.cleanup();
  });
  return peers;
}

module.exports = { usePeers };
