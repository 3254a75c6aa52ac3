'use strict';
// Scenario 6, Rust side: runs bench/rust (the core driven from Rust) against the same server.

const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const dir = path.join(__dirname, '..', 'rust');
const manifestPath = path.join(dir, 'Cargo.toml');
const binaryPath = path.join(process.env.REDFOUR_BENCH_RUST_TARGET || path.join(dir, 'target'), 'release', 'redfour-core-bench');

function run(url, { quick, log, workers = 1 }) {
  if (!fs.existsSync(binaryPath)) {
    const skipped = 'the Rust-side benchmark is not built (node bench/rust/build.js)';
    log(`  ${skipped}`);
    return Promise.resolve({ skipped });
  }
  return new Promise((resolve) => {
    execFile(binaryPath, [url, `--workers=${workers}`, ...(quick ? ['--quick'] : [])], { timeout: 120000 }, (err, stdout, stderr) => {
      if (err) {
        resolve({
          skipped: `the Rust-side benchmark failed: ${String(stderr || err.message)
            .trim()
            .split('\n')
            .pop()}`,
        });
        return;
      }
      try {
        resolve(JSON.parse(stdout));
      } catch {
        resolve({ skipped: `unreadable output from the Rust-side benchmark: ${stdout.slice(0, 200)}` });
      }
    });
  });
}

module.exports = { run, binaryPath, manifestPath };
