// P7: 1 M concurrent sleeps of 10–110 ms — kyoto `sleep(ms)` vs `new Promise((r) => setTimeout(r, ms))`
// (the classic hand-rolled promise timer; `node:timers/promises` is the same Timeout plus more JS).
// Wall time (first sleep created → last one observed) and peak RSS, each side in its own child
// process, alternating, >= 5 rounds; medians and ratios (kyoto / setTimeout, lower is better).
//
// Durations: whole ms, 10 + floor(rand * 101), from the same seeded PRNG on both sides (fractional
// durations would give Node one timer list per distinct value, which is not a fair baseline).
// Two ways of waiting for them, the same on both sides:
//   ordered: const ps = [...1M sleeps]; for (const p of ps) await p;   (no per-sleep harness object)
//   all:     await Promise.all([...1M sleeps])                         (adds ~170 B per sleep of
//            Promise.all bookkeeping to both sides)
// Usage: node bench/p7_sleep.mjs [rounds=5] [count=1000000]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { createRequire } from 'node:module';

const self = fileURLToPath(import.meta.url);

function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function child(side, harness, n, seed) {
  const rand = rng(seed);
  const durations = new Uint8Array(n);
  for (let i = 0; i < n; i++) durations[i] = 10 + Math.floor(rand() * 101);
  let make;
  if (side === 'kyoto') {
    const kyoto = createRequire(import.meta.url)('../dist/index.js');
    kyoto.Runtime.default(); // start the runtime outside the timed part (its RSS still counts)
    await kyoto.sleep(1);
    make = kyoto.sleep;
  } else {
    make = (ms) => new Promise((r) => setTimeout(r, ms));
  }
  const t0 = performance.now();
  const ps = new Array(n);
  for (let i = 0; i < n; i++) ps[i] = make(durations[i]);
  const created = performance.now();
  if (harness === 'all') await Promise.all(ps);
  else for (let i = 0; i < n; i++) await ps[i];
  const t1 = performance.now();
  const rss = process.resourceUsage().maxRSS / 1024; // KiB → MiB
  process.stdout.write(JSON.stringify({ wallMs: t1 - t0, createMs: created - t0, rssMiB: rss }) + '\n');
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function main() {
  const rounds = Math.max(1, Number(process.argv[2] ?? 5));
  const n = Number(process.argv[3] ?? 1_000_000);
  const base = spawnSync(process.execPath, ['-e', 'console.log(process.resourceUsage().maxRSS/1024)'], {
    encoding: 'utf8',
  });
  console.log(
    `P7: ${n} concurrent sleeps of 10-110 ms, ${rounds} rounds; node ${process.version}, ` +
      `${os.cpus().length} cpus (${os.cpus()[0]?.model ?? '?'}), load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; ` +
      `an empty node process peaks at ${Number(base.stdout).toFixed(1)} MiB`,
  );
  const rows = [];
  for (const harness of ['ordered', 'all']) {
    const res = { kyoto: [], setTimeout: [] };
    for (let r = 0; r < rounds; r++) {
      for (const side of r % 2 ? ['setTimeout', 'kyoto'] : ['kyoto', 'setTimeout']) {
        const out = spawnSync(process.execPath, [self, '--child', side, harness, String(n), String(1234 + r)], {
          encoding: 'utf8',
          maxBuffer: 1 << 20,
        });
        if (out.status !== 0) {
          console.error(out.stderr);
          process.exit(1);
        }
        res[side].push(JSON.parse(out.stdout.trim().split('\n').pop()));
      }
    }
    const med = (side, k) => median(res[side].map((x) => x[k]));
    const k = { wall: med('kyoto', 'wallMs'), rss: med('kyoto', 'rssMiB'), create: med('kyoto', 'createMs') };
    const s = { wall: med('setTimeout', 'wallMs'), rss: med('setTimeout', 'rssMiB'), create: med('setTimeout', 'createMs') };
    rows.push({
      harness,
      'kyoto wall ms': Math.round(k.wall),
      'setTimeout wall ms': Math.round(s.wall),
      'wall ratio': +(k.wall / s.wall).toFixed(2),
      'kyoto peak RSS MiB': Math.round(k.rss),
      'setTimeout peak RSS MiB': Math.round(s.rss),
      'RSS ratio': +(k.rss / s.rss).toFixed(2),
      'kyoto create ms': Math.round(k.create),
      'setTimeout create ms': Math.round(s.create),
    });
  }
  console.table(rows);
  console.log('target: <= 0.5x wall time and <= 0.5x peak RSS');
}

if (process.argv[2] === '--child') {
  await child(process.argv[3], process.argv[4], Number(process.argv[5]), Number(process.argv[6]));
} else {
  await main();
}
