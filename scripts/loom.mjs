// Runs the loom models of kyoto-rt (the `loom_*` tests in crates/kyoto-rt/src/runtime/tests and the
// other in-crate `loom_*` models) in release mode with `--cfg loom`, in their own target dir so the
// normal build is not invalidated.
import { spawnSync } from 'node:child_process';

const args = ['test', '-p', 'kyoto-rt', '--lib', '--release', 'loom_'];
const env = {
  ...process.env,
  RUSTFLAGS: `${process.env.RUSTFLAGS ?? ''} --cfg loom`.trim(),
  CARGO_TARGET_DIR: process.env.KYOTO_LOOM_TARGET_DIR ?? 'target/loom',
};
console.log(`loom: RUSTFLAGS="${env.RUSTFLAGS}" cargo ${args.join(' ')}`);
const r = spawnSync('cargo', args, { stdio: 'inherit', env, shell: process.platform === 'win32' });
process.exit(r.status ?? 1);
