// P1 (shared/PERFORMANCE.md): TCP echo with the handler in JS (`read` → `write` per chunk), kyoto vs
// node:net (and, informative, node:net with an await-style handler), and kyoto's two JS data paths
// side by side:
//   - kyoto (b) current_thread: a current-thread kyoto runtime driven from Node's loop via uv_poll;
//   - kyoto (a) multi_thread: socket I/O on kyoto worker threads, batches delivered by one TSFN wake.
// Driven by kyoto-loadgen (a separate native process); rounds rotate the server order; reports the
// median ops/s, p50/p99 latency, server CPU over the measured window and peak RSS.
//
//   node bench/p1_js_echo.mjs [--rounds 5] [--duration 3] [--warmup 1] [--scale] [--conns N]
//                             [--mode js|chunks|copy] [--json out.json]
//
// `--scale` adds the 10 000-connection load (raises the fd limit through `ulimit -n` in a shell);
// `--conns N` runs only the loads with N connections.
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

const argv = process.argv.slice(2);
const rounds = Math.max(1, Number(optStr('rounds', 5)));
const duration = Number(optStr('duration', 3));
const warmup = Number(optStr('warmup', 1));
// 'js' (P1: `read(buf)` → `write`), 'chunks' (`for await (const chunk of s)` → `write`) or 'copy'
// (the JS API's native copy(s, s), P2-style)
const mode = optStr('mode', 'js');
if (!['js', 'chunks', 'copy'].includes(mode)) {
  console.error(`p1_js_echo: --mode must be js, chunks or copy, not ${mode}`);
  process.exit(2);
}
const LOADS = [
  { conns: 50, inflight: 1, bytes: 64 },
  { conns: 200, inflight: 4, bytes: 128 },
  ...(argv.includes('--scale') ? [{ conns: 10_000, inflight: 1, bytes: 64 }] : []),
].filter((l) => optStr('conns', null) === null || l.conns === Number(optStr('conns', null)));

const KYOTO = 'bench/servers/kyoto-js-echo.mjs';
const extra = mode === 'copy' ? ['--copy'] : mode === 'chunks' ? ['--chunks'] : [];
const SERVERS = [
  { name: 'node:net', cmd: process.execPath, args: [BIN.nodeEcho], env: {} },
  // Informative: node:net with the handler awaiting each chunk, as kyoto's does. Its peak RSS shows
  // what V8 charges any await-per-read handler (pending promises survive scavenges and grow the
  // young generation), whichever library is underneath.
  { name: 'node:net, await style', cmd: process.execPath, args: [BIN.nodeEcho, '--await'], env: {} },
  // Informative: the node:net server above, its import swapped for kyoto/compat/net.
  { name: 'kyoto/compat/net (node:net\'s server)', cmd: process.execPath, args: [BIN.nodeEcho, '--compat'], env: {} },
  { name: 'kyoto (b) current_thread', cmd: process.execPath, args: [KYOTO, ...extra], env: { KYOTO_NET_FLAVOR: 'current_thread' } },
  { name: 'kyoto (a) multi_thread', cmd: process.execPath, args: [KYOTO, ...extra], env: { KYOTO_NET_FLAVOR: 'multi_thread' } },
  // The machine's ceiling: one thread on mio (epoll), a read and a write per message, no runtime and
  // no JS. Whatever separates it from node:net is all the headroom a JS handler can win.
  { name: 'native ceiling: mio echo, 1 thread', cmd: BIN.mioEcho, args: [], env: {} },
];

ensureBuilt();
const report = { bench: mode === 'js' ? 'P1' : `P1-${mode}`, machine: machine(), loadBefore: loadAverage(), loads: [] };
console.log(`# P1 — TCP echo, handler in JS (${mode}); ${report.machine}; load before: ${report.loadBefore}`);
for (const load of LOADS) {
  const servers = [];
  for (const s of SERVERS) servers.push(await startSpec(s));
  const results = await rotatedRounds(servers, { ...load, duration, warmup, timeout: 30 }, rounds);
  const out = { load, servers: SERVERS.map((s, i) => summarize(s.name, results[i], results[0], servers[i].pid)) };
  for (const s of servers) await stopServer(s);
  report.loads.push(out);
  console.log(`\n### ${load.conns} conns × ${load.inflight} in flight × ${load.bytes} B (median of ${rounds})`);
  console.log(summaryTable(out.servers));
}
report.loadAfter = loadAverage();
console.log(`\nload after: ${report.loadAfter}`);
const json = optStr('json', null);
if (json) writeFileSync(json, JSON.stringify(report, null, 2));
