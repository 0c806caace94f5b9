#!/usr/bin/env node
"use strict";
// The CLI is TypeScript, compiled on the fly by tsx so `npx pgstack` works
// straight after `npm ci` with no build step.
require("tsx/cjs");
require("../cli/main.ts")
  .run(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  });
