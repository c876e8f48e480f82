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
  loadAverage,
  machine,
  optStr,
  rotatedRounds,
  startSpec,
  stopServer,
  summarize,
  summaryTable,
} from './lib/harness.mjs';

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
for (const s of SERVERS) servers.push(await startSpec(s));
const results = await rotatedRounds(servers, { ...load, duration, warmup, timeout: 30 }, rounds);
report.servers = SERVERS.map((s, i) => summarize(s.name, results[i], results[0], servers[i].pid));
for (const s of servers) await stopServer(s);
console.log(
  `\n### ${load.conns} keep-alive connections × ${load.inflight} request(s) in flight, GET / → 12 B body (median of ${rounds})`,
);
console.log(summaryTable(report.servers, { ops: 'req/s' }));
report.loadAfter = loadAverage();
console.log(`\nload after: ${report.loadAfter}`);
const json = optStr('json', null);
if (json) writeFileSync(json, JSON.stringify(report, null, 2));
