#!/usr/bin/env node
'use strict';
// Builds the native addon with cargo and places it next to index.js as redfour-native.node.
// Flags: --debug (unoptimised build), --if-missing (do nothing when the addon already exists).
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const target = path.join(root, 'redfour-native.node');
const args = new Set(process.argv.slice(2));
const release = !args.has('--debug');

if (args.has('--if-missing') && fs.existsSync(target)) process.exit(0);

const cargo = spawnSync('cargo', ['build', '--lib', ...(release ? ['--release'] : [])], {
  cwd: root,
  stdio: 'inherit',
});
if (cargo.error) {
  console.error(`redfour-native: could not run cargo (${cargo.error.message}); a Rust toolchain is needed to build from source`);
  process.exit(1);
}
if (cargo.status !== 0) process.exit(cargo.status || 1);

const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, 'target');
const libName = { darwin: 'libredfour_native.dylib', win32: 'redfour_native.dll' }[process.platform] || 'libredfour_native.so';
const built = path.join(targetDir, release ? 'release' : 'debug', libName);
// Copy to a temporary name and rename, so a running process never sees a half-written addon.
fs.copyFileSync(built, `${target}.tmp`);
fs.renameSync(`${target}.tmp`, target);
console.log(`redfour-native: built ${path.relative(root, target)} (${release ? 'release' : 'debug'})`);
