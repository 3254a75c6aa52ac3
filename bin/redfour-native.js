#!/usr/bin/env node
'use strict';
// `npx redfour-native run --id ID --ttl 10m -- COMMAND...`: see lib/cli.js or --help.
require('../lib/cli')
  .main(process.argv.slice(2))
  .then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`redfour-native: ${err && err.stack ? err.stack : err}\n`);
      process.exit(70);
    },
  );
