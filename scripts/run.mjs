// `npm start` / `npm run bench` helper: builds the addon and the TypeScript if either is missing,
// then runs the given script (bench/showcase.mjs, bench/run.mjs) — or says it is not written yet.
// Usage: node scripts/run.mjs <script> [args...]
import { existsSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { basename } from 'node:path';

const [script, ...args] = process.argv.slice(2);
const hasAddon = readdirSync('.').some((f) => /^kyoto\..*\.node$/.test(f));
if (!hasAddon || !existsSync('dist/index.js')) {
  const r = spawnSync('npm', ['run', 'build'], { stdio: 'inherit', shell: process.platform === 'win32' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
if (!existsSync(script)) {
  console.log(`${basename(script, '.mjs')}: not built yet`);
  process.exit(0);
}
const r = spawnSync(process.execPath, [script, ...args], { stdio: 'inherit' });
process.exit(r.status ?? 1);
