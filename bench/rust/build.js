#!/usr/bin/env node
'use strict';
// Builds the Rust-side benchmark (bench/rust, the core without Node) with cargo.
// --if-missing: do nothing when the binary is newer than every Rust source it is built from. Never fails the benchmark run: without cargo
// or on a build error it says so, and run.js reports scenario 6 from the Node side only.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const { binaryPath, manifestPath } = require('../lib/rust');

const path = require('node:path');

function newest(dir) {
  let t = 0;
  if (!fs.existsSync(dir)) return t;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs);
  }
  return t;
}

if (process.argv.includes('--if-missing') && fs.existsSync(binaryPath)) {
  const root = path.join(__dirname, '..', '..');
  const sources = Math.max(
    newest(path.join(root, 'src')),
    newest(path.join(__dirname, 'src')),
    ...['Cargo.toml', 'Cargo.lock'].map((f) => fs.statSync(path.join(root, f)).mtimeMs),
    fs.statSync(path.join(__dirname, 'Cargo.toml')).mtimeMs,
  );
  if (fs.statSync(binaryPath).mtimeMs >= sources) process.exit(0);
}
console.error('redfour-native bench: building the Rust-side benchmark (first time: a few minutes)');
const r = spawnSync('cargo', ['build', '--release', '--manifest-path', manifestPath], { stdio: 'inherit' });
if (r.error || r.status !== 0) {
  console.error(
    `redfour-native bench: Rust-side benchmark not built (${r.error ? r.error.message : `cargo exit ${r.status}`}); scenario 6 will use the Node side only`,
  );
}
