// Runs the loom models of kyoto-rt (tests/loom_*.rs) in release mode with `--cfg loom`, in their
// own target dir so the normal build is not invalidated. A no-op when no loom model exists yet.
import { readdirSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

const dir = 'crates/kyoto-rt/tests';
const models = existsSync(dir) ? readdirSync(dir).filter((f) => /^loom_.*\.rs$/.test(f)) : [];
if (models.length === 0) {
  console.log('loom: no crates/kyoto-rt/tests/loom_*.rs models yet; nothing to run');
  process.exit(0);
}
const args = ['test', '-p', 'kyoto-rt', '--release'];
for (const m of models) args.push('--test', m.replace(/\.rs$/, ''));
const env = {
  ...process.env,
  RUSTFLAGS: `${process.env.RUSTFLAGS ?? ''} --cfg loom`.trim(),
  CARGO_TARGET_DIR: process.env.KYOTO_LOOM_TARGET_DIR ?? 'target/loom',
};
console.log(`loom: cargo ${args.join(' ')}`);
const r = spawnSync('cargo', args, { stdio: 'inherit', env, shell: process.platform === 'win32' });
process.exit(r.status ?? 1);
