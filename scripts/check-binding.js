#!/usr/bin/env node
'use strict';
// The release workflow's check of one built addon on its own platform (no Redis there): loads
// the package from this checkout (lib/redfour-native.<platform>.node, put there from the build
// job's artifact), makes a Lock, and sends a call through the Rust runtime to a closed port,
// which must fail with ERR_REDIS within the connect timeout. Exits 0 when all of that holds.
const assert = require('node:assert/strict');
const Lock = require('..');

(async () => {
  const lock = new Lock({ redis: 'redis://127.0.0.1:1', connectTimeout: 1000 });
  await assert.rejects(lock.acquireLock('check', 1000), (err) => err.code === 'ERR_REDIS');
  await lock.close();
  console.log(`redfour-native: the addon loads and runs on ${process.platform}-${process.arch} (Node.js ${process.version})`);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
