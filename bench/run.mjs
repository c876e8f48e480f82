// `npm run bench`: the benchmarks of shared/PERFORMANCE.md that exist so far, side by side in one run,
// printed as markdown tables (median of ≥ 5 rounds, ratios to the peers).
//
//   node bench/run.mjs [--only p8,p2] [--rounds 5] [--duration 3] [--warmup 1] [--no-scale]
//                      [--workers <cores - 1>] [--json results.json] [--no-build]
//
// - P8 (native scheduler): `cargo bench -p kyoto-rt --bench p8_scheduler` — kyoto vs tokio
//   multi-thread runtimes, one worker per core for both.
// - P2 (native TCP echo): the kyoto-rt echo server (`kyoto-echo`, io::copy per connection) vs the same
//   server on tokio (`examples/tokio-echo.rs`, same worker count) vs a node:net echo server, driven by
//   kyoto-loadgen (a separate native process, 1 thread) at 50 × 1 × 64 B, 200 × 4 × 128 B and
//   10 000 × 1 × 64 B. Rounds rotate the server order; server CPU is measured over exactly the
//   loadgen's measured window; peak RSS is the server's VmHWM after all rounds of a load.
// - P3 (TCP proxy, bench/p3_proxy.mjs): kyoto copyBidirectional vs node:net pipe() vs nginx's stream
//   proxy (skipped when not installed) vs tokio copy_bidirectional, same worker count, in front of the
//   native kyoto-echo; 10 × 1 × 16 KiB (MB/s) and 50 × 1 × 64 B (ops/s).
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import {
  BIN,
  ensureBuilt,
  fmtInt,
  fmtMiB,
  fmtNum,
  fmtRatio,
  loadAverage,
  loadgen,
  machine,
  median,
  optStr,
  peakRssKib,
  ROOT,
  startServer,
  stopServer,
  table,
} from './lib/harness.mjs';
import { buildP3, runP3 } from './p3_proxy.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => Number(optStr(name, dflt));
const only = optStr('only', 'p8,p2,p3').split(',');
const rounds = Math.max(5, opt('rounds', 5));
const duration = opt('duration', 3);
const warmup = opt('warmup', 1);
// Server worker threads (kyoto and tokio alike): every core but the one the load generator runs on.
const workers = Math.max(1, opt('workers', os.cpus().length - 1));
const jsonOut = optStr('json', null);

const LOADS = [
  { conns: 50, inflight: 1, bytes: 64 },
  { conns: 200, inflight: 4, bytes: 128 },
  ...(argv.includes('--no-scale') ? [] : [{ conns: 10_000, inflight: 1, bytes: 64 }]),
];

const report = { machine: machine(), loadBefore: loadAverage() };

function runP8() {
  console.log('\n## P8 — native scheduler: kyoto-rt vs tokio (cargo bench -p kyoto-rt --bench p8_scheduler)');
  const r = spawnSync('cargo', ['bench', '-p', 'kyoto-rt', '--bench', 'p8_scheduler'], {
    cwd: ROOT,
    env: { ...process.env, P8_JSON: '1', P8_WORKERS: String(os.cpus().length) },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 15 * 60_000,
  });
  if (r.status !== 0) {
    console.log(`P8 failed (status ${r.status ?? r.signal})`);
    return;
  }
  const lines = r.stdout.split('\n');
  console.log(lines.filter((l) => !l.startsWith('P8_JSON ')).join('\n'));
  const j = lines.find((l) => l.startsWith('P8_JSON '));
  if (j) report.p8 = JSON.parse(j.slice('P8_JSON '.length));
}

const SERVERS = [
  {
    key: 'kyoto',
    label: `kyoto-rt native (${workers} worker${workers === 1 ? '' : 's'})`,
    start: () => startServer('kyoto-echo', BIN.kyotoEcho, ['--port', '0', '--workers', String(workers)]),
  },
  {
    key: 'tokio',
    label: `tokio (${workers} worker${workers === 1 ? '' : 's'})`,
    start: () => startServer('tokio-echo', BIN.tokioEcho, ['--port', '0', '--workers', String(workers)]),
  },
  {
    key: 'node',
    label: 'node:net',
    start: () => startServer('node-echo', process.execPath, [BIN.nodeEcho, '--port', '0']),
  },
];

async function runP2() {
  console.log(
    `\n## P2 — TCP echo in native code: kyoto-rt vs tokio vs node:net ` +
      `(median of ${rounds} rounds, ${warmup} s warm-up + ${duration} s each)`,
  );
  report.p2 = [];
  for (const load of LOADS) {
    const name = `${load.conns} × ${load.inflight} × ${load.bytes} B`;
    const running = {};
    const res = Object.fromEntries(SERVERS.map((s) => [s.key, []]));
    const rss = {};
    try {
      // Fresh servers per load, so peak RSS belongs to this load.
      for (const s of SERVERS) running[s.key] = await s.start();
      for (let r = 0; r < rounds; r++) {
        const k = r % SERVERS.length;
        const order = [...SERVERS.slice(k), ...SERVERS.slice(0, k)];
        for (const s of order) {
          const srv = running[s.key];
          const out = await loadgen(
            srv.addr,
            { ...load, warmup, duration, 'connect-timeout': 60 },
            { watchPid: srv.pid },
          );
          process.stderr.write(`  P2 ${name} ${s.key} round ${r + 1}: ${fmtInt(out.ops_per_sec)} ops/s\n`);
          res[s.key].push(out);
        }
      }
      for (const s of SERVERS) rss[s.key] = peakRssKib(running[s.key].pid);
    } finally {
      for (const srv of Object.values(running)) await stopServer(srv);
    }
    const sum = {};
    for (const s of SERVERS) {
      const rs = res[s.key];
      sum[s.key] = {
        ops: median(rs.map((x) => x.ops_per_sec)),
        min: Math.min(...rs.map((x) => x.ops_per_sec)),
        max: Math.max(...rs.map((x) => x.ops_per_sec)),
        p50: median(rs.map((x) => x.latency_us.p50)),
        p99: median(rs.map((x) => x.latency_us.p99)),
        cpu: median(rs.map((x) => x.server?.percent)),
        genCpu: median(rs.map((x) => x.cpu.percent)),
        errors: rs.reduce((a, x) => a + x.errors.total + (load.conns - x.connected), 0),
        rss: rss[s.key],
      };
    }
    const rows = SERVERS.map((s) => {
      const x = sum[s.key];
      return [
        s.label,
        fmtInt(x.ops),
        `${fmtInt(x.min)}–${fmtInt(x.max)}`,
        fmtNum(x.p50),
        fmtNum(x.p99),
        `${fmtNum(x.cpu, 0)} %`,
        fmtMiB(x.rss),
        `${fmtNum(x.genCpu, 0)} %`,
        String(x.errors),
      ];
    });
    const k = sum.kyoto;
    const vsTokio = k.ops / sum.tokio.ops;
    const vsNode = k.ops / sum.node.ops;
    console.log(`\n### ${name}\n`);
    console.log(
      table(['server', 'ops/s (median)', 'min–max', 'p50 µs', 'p99 µs', 'server CPU', 'peak RSS', 'loadgen CPU', 'errors'], rows),
    );
    console.log(
      `\nkyoto/tokio ${fmtRatio(vsTokio)} (target ≥ 0.9× ${vsTokio >= 0.9 ? '✓' : '✗'}), ` +
        `kyoto/node ${fmtRatio(vsNode)} (target ≥ 1.4× ${vsNode >= 1.4 ? '✓' : '✗'}); ` +
        `p99 kyoto/tokio ${fmtRatio(k.p99 / sum.tokio.p99)}, kyoto/node ${fmtRatio(k.p99 / sum.node.p99)}; ` +
        `peak RSS kyoto/tokio ${fmtRatio(k.rss / sum.tokio.rss)}, kyoto/node ${fmtRatio(k.rss / sum.node.rss)}`,
    );
    report.p2.push({ load, summary: sum, ratios: { vsTokio, vsNode }, raw: res });
  }
}

async function main() {
  console.log(`# kyoto benchmarks\n\nmachine: ${report.machine}; load average before: ${report.loadBefore}`);
  if (only.includes('p2')) ensureBuilt({ examples: true, always: !argv.includes('--no-build') });
  if (only.includes('p8')) runP8();
  if (only.includes('p2')) await runP2();
  if (only.includes('p3')) {
    buildP3({ always: !argv.includes('--no-build') });
    report.p3 = await runP3({ rounds, duration, warmup, workers });
  }
  report.loadAfter = loadAverage();
  console.log(
    `\nload average after: ${report.loadAfter}. CPU is % of one core over the measured window; ` +
      `peak RSS is VmHWM. Ratios are what count; numbers taken while the machine is busy are noisy.`,
  );
  if (jsonOut) writeFileSync(jsonOut, JSON.stringify(report, null, 2));
}

main().catch((e) => {
  console.error(`bench failed: ${e.stack ?? e.message}`);
  process.exitCode = 1;
});
