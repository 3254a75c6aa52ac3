'use strict';
// Loads the compiled Rust addon built by scripts/build.js.
const path = require('node:path');

const addonPath = path.join(__dirname, '..', 'redfour-native.node');
try {
  module.exports = require(addonPath);
} catch (err) {
  err.message = `redfour-native: could not load the native addon at ${addonPath}; run \`npm rebuild redfour-native\` to build it (needs a Rust toolchain): ${err.message}`;
  throw err;
}
