// The showcase (`npm start`): a kyoto TCP echo server and the same server on node:net, both driven by
// the native load generator (kyoto-loadgen, a separate Rust process) with the same load, side by side.
//
//   node bench/showcase.mjs [--rounds 3] [--duration 5] [--warmup 1] [--conns 50] [--inflight 1]
//                           [--bytes 64] [--workers <cores - 1>] [--no-build]
//
// The kyoto servers: the same JS echo as node's, on kyoto/net (bench/servers/kyoto-js-echo.mjs: per
// connection `read(buf)` → `write(chunk)`), and, for reference, the native Rust server on kyoto-rt alone
// (crates/kyoto-bench `kyoto-echo`, `kyoto_rt::io::copy` per connection), and node's own server with its
// import swapped for kyoto/compat/net (bench/servers/node-echo.mjs --compat).
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
  peakRssKib,
  startServer,
  stopServer,
  table,
} from './lib/harness.mjs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

const KYOTO_JS_ECHO = fileURLToPath(new URL('./servers/kyoto-js-echo.mjs', import.meta.url));

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? Number(argv[i + 1]) : dflt;
};
const rounds = Math.max(1, opt('rounds', 3));
const duration = opt('duration', 5);
const warmup = opt('warmup', 1);
const load = { conns: opt('conns', 50), inflight: opt('inflight', 1), bytes: opt('bytes', 64) };
// Default: every core but the one the load generator runs on (1 on this 2-core machine).
const workers = Math.max(1, opt('workers', os.cpus().length - 1));

async function main() {
  // Always ask cargo (a no-op in a second when fresh), so a changed kyoto-rt is never shown stale.
  if (!argv.includes('--no-build')) ensureBuilt({ always: true });
  const loadBefore = loadAverage();
  const servers = [
    {
      key: 'kyoto',
      label: 'kyoto, handler in JS (`read` → `write` per chunk, 1 JS thread)',
      start: () =>
        startServer('kyoto-js-echo', process.execPath, [KYOTO_JS_ECHO, '--host', '127.0.0.1', '--port', '0']),
    },
    {
      key: 'native',
      label: `kyoto-rt native echo (Rust \`copy\`, ${workers} worker${workers === 1 ? '' : 's'})`,
      start: () =>
        startServer('kyoto-echo', BIN.kyotoEcho, ['--host', '127.0.0.1', '--port', '0', '--workers', String(workers)]),
    },
    {
      key: 'compat',
      label: 'the node:net server below with its import swapped for kyoto/compat/net',
      start: () =>
        startServer('node-echo --compat', process.execPath, [BIN.nodeEcho, '--compat', '--host', '127.0.0.1', '--port', '0']),
    },
    {
      key: 'node',
      label: 'node:net, handler in JS (1 JS thread)',
      start: () => startServer('node-echo', process.execPath, [BIN.nodeEcho, '--host', '127.0.0.1', '--port', '0']),
    },
  ];
  console.log(
    `\nkyoto showcase — TCP echo, ${load.conns} connections × ${load.inflight} in flight × ${load.bytes} B, ` +
      `${warmup} s warm-up + ${duration} s measured${rounds > 1 ? `, median of ${rounds} rounds` : ''}`,
  );
  console.log(`machine: ${machine()}; load average ${loadBefore}`);
  const results = Object.fromEntries(servers.map((s) => [s.key, []]));
  const rss = {};
  const running = {};
  try {
    for (const s of servers) {
      running[s.key] = await s.start();
    }
    for (let r = 0; r < rounds; r++) {
      // Alternate the order so a drift in machine load does not always favour the same server.
      const order = r % 2 === 0 ? servers : [...servers].reverse();
      for (const s of order) {
        const srv = running[s.key];
        process.stderr.write(`  ${s.key}: round ${r + 1}/${rounds} … `);
        const res = await loadgen(srv.addr, { ...load, warmup, duration }, { watchPid: srv.pid });
        process.stderr.write(`${fmtInt(res.ops_per_sec)} ops/s\n`);
        results[s.key].push(res);
      }
    }
    for (const s of servers) rss[s.key] = peakRssKib(running[s.key].pid);
  } finally {
    for (const srv of Object.values(running)) await stopServer(srv);
  }

  const summary = {};
  for (const s of servers) {
    const rs = results[s.key];
    summary[s.key] = {
      ops: median(rs.map((x) => x.ops_per_sec)),
      p50: median(rs.map((x) => x.latency_us.p50)),
      p99: median(rs.map((x) => x.latency_us.p99)),
      cpu: median(rs.map((x) => x.server?.percent)),
      opsPerCpu: median(rs.map((x) => x.ops_per_sec / Math.max(1e-9, (x.server?.percent ?? NaN) / 100))),
      genCpu: median(rs.map((x) => x.cpu.percent)),
      errors: rs.reduce((a, x) => a + x.errors.total, 0),
      rss: rss[s.key],
    };
  }
  const n = summary.node;
  const rows = servers.map((s) => {
    const x = summary[s.key];
    return [
      s.label,
      fmtInt(x.ops),
      fmtNum(x.p50),
      fmtNum(x.p99),
      `${fmtNum(x.cpu, 0)} %`,
      fmtInt(x.opsPerCpu),
      fmtMiB(x.rss),
      `${fmtNum(x.genCpu, 0)} %`,
      String(x.errors),
    ];
  });
  for (const [key, name] of [
    ['kyoto', 'kyoto JS / node'],
    ['native', 'kyoto-rt native / node'],
    ['compat', 'kyoto/compat/net / node'],
  ]) {
    const k = summary[key];
    rows.push([
      `**${name}**`,
      `**${fmtRatio(k.ops / n.ops)}**`,
      fmtRatio(k.p50 / n.p50),
      fmtRatio(k.p99 / n.p99),
      fmtRatio(k.cpu / n.cpu),
      fmtRatio(k.opsPerCpu / n.opsPerCpu),
      fmtRatio(k.rss / n.rss),
      '',
      '',
    ]);
  }
  console.log('\n### The same echo server on kyoto (JS handler), on kyoto-rt alone (Rust), on kyoto/compat/net, and on node:net\n');
  console.log(
    table(
      ['server', 'ops/s', 'p50 µs', 'p99 µs', 'server CPU', 'ops per CPU-s', 'peak RSS', 'loadgen CPU', 'errors'],
      rows,
    ),
  );
  console.log(
    `\nCPU is % of one core over the measured window (/proc/<pid>/stat); peak RSS is VmHWM. ` +
      `The load generator is a separate native process (1 thread); its CPU is shown so it can be seen ` +
      `not to be the bottleneck. Load average after: ${loadAverage()} — numbers taken on a busy machine are noisy.`,
  );
  const anyErrors = Object.values(summary).some((x) => x.errors > 0);
  if (anyErrors) {
    console.log('\nWARNING: the load generator reported errors (see the errors column).');
    process.exitCode = 1;
  }
}

main().catch((e) => {
  console.error(`showcase failed: ${e.message}`);
  process.exitCode = 1;
});
