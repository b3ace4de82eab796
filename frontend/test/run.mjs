// `npm test`: node's own test runner over test/*.test.mjs, the spec reporter for
// humans and one plain summary line (`N passed, N failed`) for CI to read.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const files = readdirSync(here).filter((f) => f.endsWith('.test.mjs')).map((f) => join(here, f));
const run = spawnSync(process.execPath, [
  '--test',
  '--test-reporter=spec', '--test-reporter-destination=stdout',
  `--test-reporter=${join(here, 'summary-reporter.mjs')}`, '--test-reporter-destination=stdout',
  ...files,
], { stdio: 'inherit' });
process.exit(run.status ?? 1);
