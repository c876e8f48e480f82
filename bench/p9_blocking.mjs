// P9: `spawnBlocking` with small tasks (~1 µs of work each), 100 k tasks, 2 threads, vs `piscina`
// (same module, same export, same argument, 2 threads). All tasks are submitted in one synchronous
// loop and awaited with Promise.all; tasks/s over that whole span, after a warm-up of 2 000 tasks
// that starts the threads and loads the module. Each side runs in its own child process per round,
// alternating, >= 5 rounds; medians and the ratio kyoto / piscina (higher is better).
// Usage: node bench/p9_blocking.mjs [rounds=5] [tasks=100000]
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import os from 'node:os';

const self = fileURLToPath(import.meta.url);
const THREADS = 2;
const ITERS = 200; // ≈ 1 µs on the machine of the README (the driver prints the measured figure)

/** The task: about a microsecond of arithmetic. */
export function work(n) {
  let x = 0;
  for (let i = 0; i < n; i++) x = (x * 31 + i) % 1000003;
  return x;
}

async function child(side, tasks) {
  const require = createRequire(import.meta.url);
  let submit;
  let close = async () => {};
  if (side === 'kyoto') {
    const { Runtime } = require('../dist/index.js');
    const rt = new Runtime({ maxBlockingThreads: THREADS, workerThreads: 1 });
    submit = (n) => rt.spawnBlocking(import.meta.url, 'work', n);
    close = () => rt.shutdown();
  } else {
    const { Piscina } = require('piscina');
    const pool = new Piscina({ filename: import.meta.url, minThreads: THREADS, maxThreads: THREADS });
    submit = (n) => pool.run(n, { name: 'work' });
    close = () => pool.destroy();
  }
  const batch = async (count) => {
    const ps = new Array(count);
    for (let i = 0; i < count; i++) ps[i] = submit(ITERS);
    await Promise.all(ps);
  };
  await batch(2000);
  const t0 = performance.now();
  await batch(tasks);
  const ms = performance.now() - t0;
  await close();
  process.stdout.write(JSON.stringify({ tasksPerSec: (tasks * 1000) / ms, ms }) + '\n');
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function main() {
  const rounds = Math.max(1, Number(process.argv[2] ?? 5));
  const tasks = Number(process.argv[3] ?? 100_000);
  const t0 = performance.now();
  let sink = 0;
  for (let i = 0; i < 20_000; i++) sink += work(ITERS);
  const workUs = ((performance.now() - t0) * 1000) / 20_000;
  console.log(
    `P9: ${tasks} tasks of ~${workUs.toFixed(2)} µs of work (${sink > 0 ? 'ok' : '?'}), ${THREADS} threads, ${rounds} rounds; ` +
      `node ${process.version}, ${os.cpus().length} cpus (${os.cpus()[0]?.model ?? '?'}), load ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
  );
  const res = { kyoto: [], piscina: [] };
  for (let r = 0; r < rounds; r++) {
    for (const side of r % 2 ? ['piscina', 'kyoto'] : ['kyoto', 'piscina']) {
      const out = spawnSync(process.execPath, [self, '--child', side, String(tasks)], { encoding: 'utf8' });
      if (out.status !== 0) {
        console.error(out.stderr);
        process.exit(1);
      }
      res[side].push(JSON.parse(out.stdout.trim().split('\n').pop()).tasksPerSec);
    }
  }
  const k = median(res.kyoto);
  const p = median(res.piscina);
  console.table([
    {
      'kyoto spawnBlocking tasks/s': Math.round(k),
      'piscina tasks/s': Math.round(p),
      ratio: +(k / p).toFixed(2),
      'kyoto rounds': res.kyoto.map((x) => Math.round(x)).join(' '),
      'piscina rounds': res.piscina.map((x) => Math.round(x)).join(' '),
    },
  ]);
  console.log('target: >= 3x piscina tasks/s');
}

if (isMainThread) {
  if (process.argv[2] === '--child') await child(process.argv[3], Number(process.argv[4]));
  else await main();
}
