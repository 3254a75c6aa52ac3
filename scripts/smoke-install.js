#!/usr/bin/env node
'use strict';
// Installs redfour-native the way a user does and runs it, with no Rust toolchain in sight:
//   1. packs the main package (with the optionalDependencies `napi pre-publish` adds when
//      publishing) and this platform's package (npm/<platform>/ plus the addon built in lib/,
//      copied in by `napi artifacts` as the release workflow does);
//   2. installs both tarballs in one `npm install --ignore-scripts` into a new app in a temporary
//      directory, with a PATH that has no cargo or rustc. Installing them together makes npm take
//      the main package's optionalDependency on the platform package from the local tarball, never
//      from the registry (our packages need not be published; a registry copy must not be used),
//      and the main tarball alone with --omit=optional, whose require() must say what to do;
//   3. starts a private redis-server on a free port and runs, in the app: a CommonJS script that
//      acquires, waits (a second Lock's waitAcquireLock resolves once the first releases), releases
//      and must exit by itself; the ES module import forms of README.md; the TypeScript import
//      forms, type-checked through the package's `exports` map; and the CLI from node_modules/.bin.
// Needs `npm run build` first. Usage: node scripts/smoke-install.js [--keep] (keeps the temp dir).

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startRedis } = require('../__test__/helpers/redis');
const { platformName } = require('./build-if-needed');

const root = path.resolve(__dirname, '..');
const pkg = require('../package.json');
const keep = process.argv.includes('--keep');
const STEP_TIMEOUT_MS = 120_000;
const RUN_TIMEOUT_MS = 30_000;

function log(message) {
  console.log(`smoke-install: ${message}`);
}

/** Runs a command, fails with its output unless it exits 0 within the timeout; returns stdout. */
function run(cmd, args, { cwd = root, env = process.env, timeout = STEP_TIMEOUT_MS } = {}) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'pipe'] });
  const shown = `${cmd} ${args.join(' ')} (in ${cwd})`;
  if (r.error) throw new Error(`${shown}: ${r.error.message}\n${r.stdout}\n${r.stderr}`);
  if (r.status !== 0) throw new Error(`${shown} exited with ${r.status ?? r.signal}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** PATH without the directories that hold cargo or rustc (node and npm must stay reachable). */
function pathWithoutRust() {
  const dirs = (process.env.PATH || '').split(path.delimiter).filter(Boolean);
  const kept = dirs.filter((d) => !['cargo', 'rustc', 'rustup'].some((t) => fs.existsSync(path.join(d, t))));
  return kept.join(path.delimiter);
}

async function main() {
  const platform = platformName();
  const binary = `${pkg.napi.binaryName}.${platform}.node`;
  const platformPkgName = `${pkg.name}-${platform}`;
  const built = path.join(root, 'lib', binary);
  assert.ok(fs.existsSync(built), `${path.relative(root, built)} is missing: run \`npm run build\` first`);
  assert.ok(fs.existsSync(path.join(root, 'npm', platform, 'package.json')), `npm/${platform}/ is missing: not a supported platform`);

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'redfour-native-smoke-'));
  const env = { ...process.env, PATH: pathWithoutRust(), npm_config_update_notifier: 'false' };
  let redis;
  try {
    // --- 1. pack -------------------------------------------------------------------------------
    // `napi artifacts` copies lib/*.node into npm/<platform>/, as in the release workflow; it runs
    // in a copy of package.json (with this platform's target only: it insists on every target's
    // artifact), npm/ and the addon, so that the repo stays clean.
    const { readNapiConfig } = require('@napi-rs/cli');
    const { targets } = await readNapiConfig(path.join(root, 'package.json'));
    const target = targets.find((t) => t.platformArchABI === platform);
    assert.ok(target, `${platform} is not in package.json's napi.targets`);
    const project = path.join(tmp, 'project');
    fs.cpSync(path.join(root, 'npm'), path.join(project, 'npm'), { recursive: true });
    fs.writeFileSync(
      path.join(project, 'package.json'),
      JSON.stringify({ ...pkg, napi: { ...pkg.napi, targets: [target.triple] } }, null, 2),
    );
    fs.cpSync(built, path.join(project, 'lib', binary));
    run(path.join(root, 'node_modules', '.bin', 'napi'), ['artifacts', '--cwd', project, '--output-dir', 'lib']);
    const npmDir = path.join(project, 'npm');
    assert.ok(fs.existsSync(path.join(npmDir, platform, binary)), `napi artifacts did not place ${binary} in npm/${platform}/`);
    const tarballs = path.join(tmp, 'tarballs');
    fs.mkdirSync(tarballs);
    const pack = (dir) => {
      const [info] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', tarballs], { cwd: dir }));
      return { ...info, path: path.join(tarballs, info.filename) };
    };
    // The repo's package.json lists no optionalDependencies (unpublished ones would break `npm ci`
    // in a clone); `napi pre-publish` (prepublishOnly) adds one per napi.targets entry before
    // `npm publish` packs. Do the same to the packed package.json, from the CLI's own target list.
    const staged = path.join(tmp, 'main');
    fs.mkdirSync(staged);
    run('tar', ['xzf', pack(root).path, '-C', staged, '--strip-components=1']);
    const manifest = JSON.parse(fs.readFileSync(path.join(staged, 'package.json'), 'utf8'));
    assert.ok(!['preinstall', 'install', 'postinstall'].some((k) => manifest.scripts?.[k]), 'the package must have no install script');
    manifest.optionalDependencies = Object.fromEntries(targets.map((t) => [`${pkg.name}-${t.platformArchABI}`, pkg.version]));
    fs.writeFileSync(path.join(staged, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    for (const f of fs.readdirSync(tarballs)) fs.rmSync(path.join(tarballs, f));
    const packed = [staged, path.join(npmDir, platform)].map((dir) => {
      const info = pack(dir);
      log(
        `packed ${info.filename}: ${info.entryCount} files, ${(info.size / 1024).toFixed(1)} kB (unpacked ${(info.unpackedSize / 1024).toFixed(1)} kB)`,
      );
      return info;
    });
    const mainFiles = packed[0].files.map((f) => f.path);
    assert.ok(!mainFiles.some((f) => f.endsWith('.node')), `the main package must not carry an addon: ${mainFiles}`);
    assert.ok(!mainFiles.some((f) => f.startsWith('src/') || f.startsWith('Cargo')), 'the main package must not carry Rust sources');
    assert.ok(
      packed[1].files.some((f) => f.path === binary),
      `the platform package must carry ${binary}`,
    );

    // --- 2. install, without Rust and without install scripts ----------------------------------
    const probe = spawnSync('sh', ['-c', 'command -v cargo || command -v rustc'], { env, encoding: 'utf8' });
    assert.notEqual(probe.status, 0, `cargo/rustc still on the smoke test's PATH: ${probe.stdout}`);
    const app = path.join(tmp, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'smoke-app', version: '1.0.0', private: true }, null, 2));
    const started = Date.now();
    run('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', ...packed.map((p) => p.path)], { cwd: app, env });
    log(`installed both tarballs with --ignore-scripts and no cargo on PATH in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const lockfile = JSON.parse(fs.readFileSync(path.join(app, 'node_modules', '.package-lock.json'), 'utf8'));
    const platformEntry = lockfile.packages[`node_modules/${platformPkgName}`];
    assert.ok(platformEntry, `${platformPkgName} was not installed`);
    assert.match(platformEntry.resolved, /^file:/, `${platformPkgName} came from ${platformEntry.resolved}, not from the local tarball`);
    assert.ok(
      !fs.readdirSync(path.join(app, 'node_modules', pkg.name), { recursive: true }).some((f) => String(f).endsWith('.node')),
      'no addon inside the main package',
    );
    log(`node_modules: ${run('du', ['-sh', 'node_modules'], { cwd: app }).split('\t')[0]}`);

    // Without the platform package (--omit=optional), require() must say what to do about it.
    const bare = path.join(tmp, 'app-omit-optional');
    fs.mkdirSync(bare);
    fs.writeFileSync(path.join(bare, 'package.json'), JSON.stringify({ name: 'smoke-app-bare', version: '1.0.0', private: true }, null, 2));
    run('npm', ['install', '--ignore-scripts', '--omit=optional', '--no-audit', '--no-fund', packed[0].path], { cwd: bare, env });
    assert.ok(!fs.existsSync(path.join(bare, 'node_modules', platformPkgName)), '--omit=optional left the platform package out');
    const failed = spawnSync(process.execPath, ['-e', "require('redfour-native')"], {
      cwd: bare,
      env,
      encoding: 'utf8',
      timeout: RUN_TIMEOUT_MS,
    });
    assert.notEqual(failed.status, 0);
    assert.match(
      failed.stderr,
      new RegExp(`optional dependency ${platformPkgName}@${pkg.version.replace(/\./g, '\\.')}.*reinstall without --omit=optional`),
    );
    assert.doesNotMatch(failed.stderr, /npm run build|npm rebuild/, 'no advice meant for a clone of the repository');
    log('without the platform package (--omit=optional): require() fails saying to reinstall with optional dependencies');

    // --- 3. run ----------------------------------------------------------------------------------
    redis = await startRedis();
    const runEnv = { ...env, REDIS_URL: redis.url, NODE_OPTIONS: '' };
    fs.writeFileSync(
      path.join(app, 'smoke.cjs'),
      `'use strict';
const assert = require('node:assert/strict');
const Lock = require('redfour-native');
const loaded = Object.keys(require.cache).filter((f) => f.endsWith('.node'));
assert.deepEqual(loaded.map((f) => f.split(require('node:path').sep).slice(-2).join('/')), [${JSON.stringify(`${platformPkgName}/${binary}`)}]);
(async () => {
  const options = { redis: process.env.REDIS_URL, namespace: 'smoke' };
  const first = new Lock(options);
  const second = new Lock(options);
  const held = await first.acquireLock('job', 10000);
  assert.equal(held.success, true);
  let waited = false;
  const waiting = second.waitAcquireLock('job', 10000, 5000).then((r) => { waited = true; return r; });
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(waited, false, 'the waiter must wait while the lock is held');
  assert.equal((await first.releaseLock(held)).result, 'released');
  const next = await waiting;
  assert.equal(next.success, true);
  assert.equal(next.immediate, false);
  assert.ok(next.index > held.index, 'fencing token increases');
  assert.equal((await second.releaseLock(next)).result, 'released');
  console.log('cjs ok: acquired', held.index, 'waited for', next.index, '(no close(): the process must exit by itself)');
})().catch((err) => { console.error(err); process.exitCode = 1; });
`,
    );
    fs.writeFileSync(
      path.join(app, 'smoke.mjs'),
      `import assert from 'node:assert/strict';
import Lock, { Lock as Named, LockError, isLockError, codes, MAX_TTL_MS, Fence } from 'redfour-native';
import { createRequire } from 'node:module';
assert.equal(typeof Lock, 'function');
assert.equal(Named, Lock);
assert.equal(Lock, createRequire(import.meta.url)('redfour-native'), 'import and require give the same module');
assert.equal(typeof isLockError, 'function');
assert.equal(typeof LockError, 'function');
assert.equal(typeof Fence, 'function');
assert.equal(codes.ERR_REDIS, 'ERR_REDIS');
assert.equal(MAX_TTL_MS, 2 ** 31 - 1);
const lock = new Lock({ redis: process.env.REDIS_URL, namespace: 'smoke-esm' });
const held = await lock.acquireLock('esm', 5000);
assert.equal(held.success, true);
assert.equal((await lock.releaseLock(held)).result, 'released');
console.log('esm ok');
`,
    );
    for (const script of ['smoke.cjs', 'smoke.mjs']) {
      const t0 = Date.now();
      const out = run(process.execPath, [script], { cwd: app, env: runEnv, timeout: RUN_TIMEOUT_MS });
      log(`${script}: ${out.trim()} (exit 0 after ${Date.now() - t0} ms)`);
    }

    const cli = path.join(app, 'node_modules', '.bin', 'redfour-native');
    const cliOut = run(
      cli,
      ['run', '--id', 'smoke-cli', '--ttl', '5s', '--no-wait', '-v', '--', process.execPath, '-e', 'console.log("cli child ran")'],
      { cwd: app, env: runEnv, timeout: RUN_TIMEOUT_MS },
    );
    assert.match(cliOut, /cli child ran/);
    log('CLI: node_modules/.bin/redfour-native ran its command under the lock');

    // TypeScript sees the package through its `exports` map (types condition), as users' tsc does.
    fs.writeFileSync(
      path.join(app, 'check.mts'),
      `import Lock, { Lock as Named, isLockError, codes } from 'redfour-native';
import type { AcquireResult, WaitAcquireResult, ReleaseResult } from 'redfour-native';
const lock: Named = new Lock({ redis: 'redis://127.0.0.1:6379' });
const a: AcquireResult<string> = await lock.acquireLock('job', 1000);
const w: WaitAcquireResult<string> = await lock.waitAcquireLock('job', 1000, 0);
const r: ReleaseResult<string> = await lock.releaseLock(w);
void a; void r; void isLockError; void codes.ERR_REDIS;
`,
    );
    fs.writeFileSync(
      path.join(app, 'check.cts'),
      `import LockCjs = require('redfour-native');
const lock = new LockCjs({ redis: 'redis://127.0.0.1:6379' });
void lock.acquireLock('job', 1000);
`,
    );
    fs.writeFileSync(
      path.join(app, 'tsconfig.json'),
      JSON.stringify(
        {
          compilerOptions: {
            target: 'es2022',
            lib: ['es2022', 'esnext.disposable', 'dom'],
            module: 'nodenext',
            moduleResolution: 'nodenext',
            strict: true,
            noEmit: true,
            types: [],
          },
          files: ['check.mts', 'check.cts'],
        },
        null,
        2,
      ),
    );
    const tsc = path.join(root, 'node_modules', '.bin', 'tsc');
    run(tsc, ['-p', app], { cwd: app, env });
    log('TypeScript: default, named, type-only and `import = require` forms type-check against the installed package');

    log('passed');
  } finally {
    if (redis) await redis.cleanup();
    if (keep) log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`smoke-install: FAILED\n${err.stack || err}`);
  process.exit(1);
});
