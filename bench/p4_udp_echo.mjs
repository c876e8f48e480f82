// P4 (shared/PERFORMANCE.md): UDP echo with the handler in JS, 16 sockets × 8 in flight × 64 B —
// node:dgram vs kyoto's per-datagram API (`recvFrom` → `sendTo`) and batch API (`recvMany` →
// `sendMany`), each on both JS data paths (b) current_thread and (a) multi_thread. Driven by
// kyoto-loadgen --udp; rounds rotate the server order; median pps, latency, server CPU, peak RSS.
// The last row is no JS at all: the native kyoto-rt echo with recvmmsg → sendmmsg on one worker
// (`kyoto-echo --udp --batch`), this machine's ceiling for the batched row.
//
//   node bench/p4_udp_echo.mjs [--rounds 5] [--duration 3] [--warmup 1] [--json out.json]
import { writeFileSync } from 'node:fs';
import {
  BIN,
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

const rounds = Math.max(1, Number(optStr('rounds', 5)));
const duration = Number(optStr('duration', 3));
const warmup = Number(optStr('warmup', 1));
const load = { udp: true, conns: 16, inflight: 8, bytes: 64 };

const KYOTO = 'bench/servers/kyoto-js-echo.mjs';
const CT = { KYOTO_NET_FLAVOR: 'current_thread' };
const MT = { KYOTO_NET_FLAVOR: 'multi_thread' };
const SERVERS = [
  { name: 'node:dgram', args: [BIN.nodeEcho, '--udp'], env: {} },
  // Informative: the node:dgram server above, its import swapped for kyoto/compat/dgram.
  { name: 'kyoto/compat/dgram (node:dgram\'s server)', args: [BIN.nodeEcho, '--udp', '--compat'], env: {} },
  { name: 'kyoto (b) per-datagram', args: [KYOTO, '--udp'], env: CT },
  { name: 'kyoto (b) recvMany/sendMany', args: [KYOTO, '--udp', '--batch'], env: CT },
  { name: 'kyoto (a) per-datagram', args: [KYOTO, '--udp'], env: MT },
  { name: 'kyoto (a) recvMany/sendMany', args: [KYOTO, '--udp', '--batch'], env: MT },
  { name: 'native ceiling: kyoto-rt recvmmsg/sendmmsg', cmd: BIN.kyotoEcho, args: ['--udp', '--batch', '--workers', '1'], env: {} },
];

ensureBuilt();
const report = { bench: 'P4', machine: machine(), loadBefore: loadAverage(), servers: [] };
console.log(`# P4 — UDP echo, handler in JS; ${report.machine}; load before: ${report.loadBefore}`);
const servers = [];
for (const s of SERVERS) servers.push(await startSpec(s));
const results = await rotatedRounds(servers, { ...load, duration, warmup, timeout: 30 }, rounds);
report.servers = SERVERS.map((s, i) => summarize(s.name, results[i], results[0], servers[i].pid));
for (const s of servers) await stopServer(s);
console.log(`\n### 16 sockets × 8 in flight × 64 B (median of ${rounds})`);
console.log(summaryTable(report.servers, { ops: 'pps', peer: 'node:dgram', errors: 'lost' }));
report.loadAfter = loadAverage();
console.log(`\nload after: ${report.loadAfter}`);
const json = optStr('json', null);
if (json) writeFileSync(json, JSON.stringify(report, null, 2));
