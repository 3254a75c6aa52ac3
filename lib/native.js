'use strict';
// The native addon. lib/binding.js is napi-rs's generated loader (`npm run build` writes it, with
// the typings in lib/native.d.ts): it loads lib/redfour-native.<platform>.node (a build from
// source) or else the prebuilt addon of the platform package redfour-native-<platform>, an
// optionalDependency. When neither loads, the generated error blames an npm bug and hides the
// reasons in its `cause` chain; this wrapper says what to do on this platform instead, with the
// reasons, and keeps the original error as `cause`. The generated file is not edited by hand.
const fs = require('node:fs');
const path = require('node:path');

try {
  module.exports = require('./binding');
} catch (err) {
  throw loadError(err);
}

function loadError(err) {
  const pkg = require('../package.json');
  const { platform, arch } = process;
  const abi =
    platform === 'linux' ? (process.report.getReport().header.glibcVersionRuntime ? 'gnu' : 'musl') : platform === 'win32' ? 'msvc' : '';
  const name = [platform, arch, abi].filter(Boolean).join('-');
  // napi.targets holds Rust triples (x86_64-unknown-linux-gnu); napi names them linux-x64-gnu.
  const prebuilt = pkg.napi.targets.map((t) => {
    const [cpu, , sys, env] = t.split('-');
    return [{ linux: 'linux', darwin: 'darwin', windows: 'win32' }[sys], { x86_64: 'x64', aarch64: 'arm64' }[cpu], env]
      .filter(Boolean)
      .join('-');
  });
  const reasons = [];
  for (let e = err.cause || err; e; e = e.cause) reasons.push(String(e.message).split('\n')[0]);
  const tried = reasons.reverse().filter((r) => !/wasi/.test(r)); // no WASI flavor is built: its misses are noise
  const source = `${pkg.homepage.replace(/#.*$/, '')}#building-from-source`;
  const advice = prebuilt.includes(name)
    ? `its prebuilt addon for ${name} comes in the optional dependency ${pkg.name}-${name}@${pkg.version}, which is missing or does not load: reinstall without --omit=optional (or --no-optional, --ignore-optional), check that node_modules/${pkg.name}-${name} exists with version ${pkg.version}, and if the lockfile was made on another platform, delete node_modules and package-lock.json and install again`
    : `there is no prebuilt addon for ${name}: build it from source with a Rust toolchain (${source})`;
  const clone = fs.existsSync(path.join(__dirname, '..', 'Cargo.toml'))
    ? ' In a clone of the repository, `npm run build` builds it (needs a Rust toolchain).'
    : '';
  return new Error(
    `redfour-native: could not load the native addon (Node.js ${process.version}); ${advice}.${clone} Reasons: ${tried.join('; ')}`,
    { cause: err },
  );
}
