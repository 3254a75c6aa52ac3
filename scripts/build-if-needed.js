#!/usr/bin/env node
'use strict';
// `npm test`, `npm run demo`, `npm run bench` and `npm run chaos` start with this: it runs
// `npm run build` (napi build --release) when lib/ has no addon for this platform, or one older
// than a Rust source, and does nothing otherwise. Installing the package never compiles anything:
// users get the prebuilt addon from the platform package (see lib/native.js).
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

/** napi-rs's name for this platform: linux-x64-gnu, linux-arm64-musl, darwin-arm64, win32-x64-msvc. */
function platformName() {
  const { platform, arch } = process;
  if (platform === 'linux') return `linux-${arch}-${process.report.getReport().header.glibcVersionRuntime ? 'gnu' : 'musl'}`;
  if (platform === 'win32') return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

/** Where `npm run build` puts the addon for this platform (the generated lib/binding.js looks there first). */
function addonPath() {
  return path.join(root, 'lib', `redfour-native.${platformName()}.node`);
}

function newest(p) {
  const st = fs.statSync(p, { throwIfNoEntry: false });
  if (!st) return 0;
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(0, ...fs.readdirSync(p).map((e) => newest(path.join(p, e))));
}

function main() {
  const addon = addonPath();
  const built = fs.statSync(addon, { throwIfNoEntry: false });
  const sources = Math.max(...['src', 'Cargo.toml', 'Cargo.lock', 'build.rs'].map((p) => newest(path.join(root, p))));
  if (built && built.mtimeMs >= sources && fs.existsSync(path.join(root, 'lib', 'binding.js'))) return;
  console.error(
    `redfour-native: ${built ? 'the Rust sources changed since' : 'no'} ${path.relative(root, addon)}; running \`npm run build\``,
  );
  const r = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  if (r.error || r.status !== 0) {
    console.error(
      `redfour-native: the build failed (${r.error ? r.error.message : `exit ${r.status}`}); it needs a Rust toolchain (https://rustup.rs)`,
    );
    process.exit(1);
  }
}

if (require.main === module) main();
module.exports = { addonPath, platformName };
