#!/usr/bin/env node
'use strict';
// Builds the Rust-side benchmark (bench/rust, the core without Node) with cargo.
// --if-missing: do nothing when the binary exists. Never fails the benchmark run: without cargo
// or on a build error it says so, and run.js reports scenario 6 from the Node side only.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const { binaryPath, manifestPath } = require('../lib/rust');

if (process.argv.includes('--if-missing') && fs.existsSync(binaryPath)) process.exit(0);
console.error('redfour-native bench: building the Rust-side benchmark (first time: a few minutes)');
const r = spawnSync('cargo', ['build', '--release', '--manifest-path', manifestPath], { stdio: 'inherit' });
if (r.error || r.status !== 0) {
  console.error(`redfour-native bench: Rust-side benchmark not built (${r.error ? r.error.message : `cargo exit ${r.status}`}); scenario 6 will use the Node side only`);
}
