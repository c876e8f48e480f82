// HTTP (informative, not one of PERFORMANCE.md's P1–P9): Node's own http.Server, the same handler
// (`writeHead` + `end` of a 12-byte body), on three transports — node:net, kyoto/compat/net, and
// kyoto streams through `toNodeStream()` — driven by kyoto-loadgen's HTTP mode (keep-alive
// `GET /`, whole responses parsed and checked). Rounds rotate the server order; median req/s,
// latency, server CPU over the measured window, peak RSS.
//
//   node bench/http.mjs [--rounds 3] [--duration 3] [--warmup 1] [--conns 50] [--pipeline 1]
//                       [--json out.json]
import { writeFileSync } from 'node:fs';
import {
  ensureBuilt,
  fmtInt,
  fmtMiB,
  fmtNum,
  fmtRange,
  fmtRatio,
  loadAverage,
  loadgen,
  machine,
  median,
  peakRssKib,
  roundRatios,
  startServer,
  stopServer,
  table,
} from './lib/harness.mjs';

const argv = process.argv.slice(2);
const optStr = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const rounds = Math.max(1, Number(optStr('rounds', 3)));
const duration = Number(optStr('duration', 3));
const warmup = Number(optStr('warmup', 1));
const load = { http: '/', conns: Number(optStr('conns', 50)), inflight: Number(optStr('pipeline', 1)) };

const SERVER = 'bench/servers/http-hello.mjs';
const SERVERS = [
  { name: 'http on node:net', args: [SERVER] },
  { name: 'http on kyoto/compat/net', args: [SERVER, '--compat'] },
  { name: 'http on kyoto toNodeStream()', args: [SERVER, '--stream'] },
];

ensureBuilt();
const report = { bench: 'http', machine: machine(), loadBefore: loadAverage(), servers: [] };
console.log(`# HTTP — node's http.Server on three transports; ${report.machine}; load before: ${report.loadBefore}`);
const servers = [];
for (const s of SERVERS) servers.push(await startServer(s.name, process.execPath, s.args));
const results = SERVERS.map(() => []);
for (let r = 0; r < rounds; r++) {
  for (let k = 0; k < SERVERS.length; k++) {
    const i = (k + r) % SERVERS.length;
    results[i].push(await loadgen(servers[i].addr, { ...load, duration, warmup, timeout: 30 }, { watchPid: servers[i].pid }));
  }
}
const base = median(results[0].map((x) => x.ops_per_sec));
const rows = [];
for (let i = 0; i < SERVERS.length; i++) {
  const rs = results[i];
  const row = {
    name: SERVERS[i].name,
    rps: median(rs.map((x) => x.ops_per_sec)),
    p50: median(rs.map((x) => x.latency_us.p50)),
    p99: median(rs.map((x) => x.latency_us.p99)),
    cpu: median(rs.map((x) => x.server?.percent)),
    rss: peakRssKib(servers[i].pid),
    errors: rs.reduce((a, x) => a + x.errors.total, 0),
    loadgenCpu: median(rs.map((x) => x.cpu.percent)),
  };
  row.ratio = row.rps / base;
  row.roundRatio = roundRatios(rs, results[0]);
  report.servers.push(row);
  rows.push([
    row.name,
    fmtInt(row.rps),
    fmtRatio(row.ratio),
    `${fmtRatio(row.roundRatio.median)} (${fmtRange(row.roundRatio)})`,
    fmtNum(row.p50, 0),
    fmtNum(row.p99, 0),
    `${fmtNum(row.cpu, 0)}%`,
    fmtMiB(row.rss),
    String(row.errors),
    `${fmtNum(row.loadgenCpu, 0)}%`,
  ]);
}
for (const s of servers) await stopServer(s);
console.log(`\n### ${load.conns} keep-alive connections × ${load.inflight} request(s) in flight, GET / → 12 B body (median of ${rounds})`);
console.log(
  table(
    ['server', 'req/s', 'vs node:net', 'per round: median (range)', 'p50 µs', 'p99 µs', 'server CPU', 'peak RSS', 'errors', 'loadgen CPU'],
    rows,
    ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  ),
);
report.loadAfter = loadAverage();
console.log(`\nload after: ${report.loadAfter}`);
const json = optStr('json', null);
if (json) writeFileSync(json, JSON.stringify(report, null, 2));
