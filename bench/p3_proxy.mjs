// P3 (shared/PERFORMANCE.md): TCP proxy, client ⇄ proxy ⇄ echo server. The client is kyoto-loadgen
// (a separate native process), the upstream a native echo server (`kyoto-echo`, not Node), and the
// proxies, side by side in one run with the same worker count:
//   - kyoto: bench/servers/kyoto-proxy.mjs — TcpListener accept loop, TcpStream.connect(upstream),
//     copyBidirectional (native between two kyoto streams); current_thread (Node's own thread, the
//     default data path) and multi_thread (KYOTO_WORKER_THREADS = workers) rows;
//   - node:net: bench/servers/node-proxy.mjs — pipe() both ways;
//   - nginx: the stream proxy (Debian `nginx-light` + `libnginx-mod-stream`), `worker_processes` =
//     workers, a generated config in a temp dir, `daemon off`; skipped with a message if not installed;
//   - tokio: crates/kyoto-bench/examples/tokio-proxy.rs — tokio::io::copy_bidirectional.
// Loads: 10 conns × 1 in flight × 16 KiB (MB/s, echoed bytes: the proxy carries twice that) and
// 50 conns × 1 in flight × 64 B (ops/s). Rounds rotate the proxy order; proxy CPU is measured over the
// loadgen's measured window (nginx: its worker process); peak RSS is VmHWM after all rounds of a load.
//
//   node bench/p3_proxy.mjs [--rounds 5] [--duration 3] [--warmup 1] [--workers 1] [--json out.json]
//                           [--no-build]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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
  sleep,
  startServer,
  stopServer,
  table,
  TARGET,
} from './lib/harness.mjs';

const TOKIO_PROXY = path.join(TARGET, 'release', 'examples', 'tokio-proxy');
const KYOTO_PROXY = path.join(ROOT, 'bench', 'servers', 'kyoto-proxy.mjs');
const NODE_PROXY = path.join(ROOT, 'bench', 'servers', 'node-proxy.mjs');
const NGINX_CANDIDATES = ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx'];
const STREAM_MODULES = ['/usr/lib/nginx/modules/ngx_stream_module.so', '/usr/share/nginx/modules/ngx_stream_module.so'];

export const LOADS = [
  { key: 'bulk', conns: 10, inflight: 1, bytes: 16 * 1024, unit: 'MB/s' },
  { key: 'small', conns: 50, inflight: 1, bytes: 64, unit: 'ops/s' },
];

/** CPU seconds (user + sys) of a live process, from /proc/PID/stat. */
function cpuSeconds(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

/** A free port on 127.0.0.1 (nginx needs a fixed one in its config). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Waits (bounded) until something accepts on 127.0.0.1:port. */
async function waitListening(port, timeoutMs) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const ok = await new Promise((resolve) => {
      const c = net.connect({ host: '127.0.0.1', port });
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return true;
    await sleep(50);
  }
  return false;
}

/** The nginx binary and stream module, or a reason why nginx is skipped. */
export function findNginx() {
  const bin = NGINX_CANDIDATES.find((p) => existsSync(p));
  if (!bin) return { reason: 'nginx is not installed (apt-get install nginx-light libnginx-mod-stream)' };
  const v = spawnSync(bin, ['-V'], { encoding: 'utf8' });
  const info = `${v.stdout ?? ''}${v.stderr ?? ''}`;
  const version = /nginx version: (\S+)/.exec(info)?.[1] ?? 'nginx';
  if (/--with-stream(\s|$)/.test(info)) return { bin, module: null, version };
  const module = STREAM_MODULES.find((p) => existsSync(p));
  if (!module) return { reason: `${version} has no stream module (apt-get install libnginx-mod-stream)` };
  return { bin, module, version };
}

/**
 * Starts nginx's stream proxy in the foreground with a generated config in a temp dir. Returns a
 * server object like startServer's, whose `pid` is the worker process (the one doing the proxying;
 * with several workers, the first) and `masterPid` the master.
 */
const nginxMasters = new Set();
// The harness kills the children it started; nginx is started here, so stop it here too (SIGTERM:
// nginx's fast shutdown, which also stops its workers).
process.on('exit', () => {
  for (const pid of nginxMasters) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
});

async function startNginx(ng, upstream, workers) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kyoto-p3-nginx-'));
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    [
      ng.module ? `load_module ${ng.module};` : '',
      'daemon off;',
      'master_process on;',
      `worker_processes ${workers};`,
      `pid ${path.join(dir, 'nginx.pid')};`,
      `error_log ${path.join(dir, 'error.log')} warn;`,
      'worker_rlimit_nofile 65536;',
      'events { worker_connections 16384; multi_accept on; }',
      'stream {',
      '  server {',
      `    listen 127.0.0.1:${port} backlog=4096;`,
      `    proxy_pass ${upstream};`,
      '    proxy_connect_timeout 10s;',
      '    tcp_nodelay on;',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  const child = spawn(ng.bin, ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  nginxMasters.add(child.pid);
  child.once('exit', () => nginxMasters.delete(child.pid));
  let err = '';
  child.stderr.on('data', (d) => {
    if (err.length < 4096) err += d;
  });
  const exited = new Promise((r) => child.once('exit', (code, sig) => r(code ?? sig)));
  const up = await Promise.race([waitListening(port, 10_000), exited.then(() => false)]);
  if (!up) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`nginx did not start: ${err.trim()}`);
  }
  let workerPid = NaN;
  for (let i = 0; i < 100 && !Number.isFinite(workerPid); i++) {
    try {
      const kids = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/);
      const w = kids.map(Number).find((p) => p > 0 && /nginx: worker/.test(readFileSync(`/proc/${p}/cmdline`, 'utf8')));
      if (w) workerPid = w;
    } catch {
      // not there yet
    }
    if (!Number.isFinite(workerPid)) await sleep(20);
  }
  if (!Number.isFinite(workerPid)) workerPid = child.pid;
  return { name: 'nginx', pid: workerPid, masterPid: child.pid, addr: `127.0.0.1:${port}`, child, dir };
}

async function stopAny(srv) {
  // nginx: SIGTERM is its "fast shutdown"; stopServer escalates to SIGKILL after a grace period.
  await stopServer(srv);
  if (srv.dir) rmSync(srv.dir, { recursive: true, force: true });
}

function startWithEnv(name, cmd, args, env) {
  const saved = {};
  for (const [k, v] of Object.entries(env)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  try {
    return startServer(name, cmd, args);
  } finally {
    for (const k of Object.keys(env)) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

function proxies(workers, ng) {
  const w = `${workers} worker${workers === 1 ? '' : 's'}`;
  const list = [
    {
      key: 'kyoto',
      label: 'kyoto copyBidirectional (current_thread: Node thread)',
      start: (up) =>
        startWithEnv('kyoto-proxy', process.execPath, [KYOTO_PROXY, '--upstream', up], {
          KYOTO_NET_FLAVOR: 'current_thread',
        }),
    },
    {
      key: 'kyotoMt',
      label: `kyoto copyBidirectional (multi_thread, ${w})`,
      start: (up) =>
        startWithEnv('kyoto-proxy-mt', process.execPath, [KYOTO_PROXY, '--upstream', up], {
          KYOTO_NET_FLAVOR: 'multi_thread',
          KYOTO_WORKER_THREADS: String(workers),
        }),
    },
    {
      key: 'node',
      label: 'node:net pipe() both ways',
      start: (up) => startServer('node-proxy', process.execPath, [NODE_PROXY, '--upstream', up]),
    },
  ];
  if (ng.bin) list.push({ key: 'nginx', label: `${ng.version} stream proxy (${w})`, start: (up) => startNginx(ng, up, workers) });
  list.push({
    key: 'tokio',
    label: `tokio copy_bidirectional (${w})`,
    start: (up) => startServer('tokio-proxy', TOKIO_PROXY, ['--upstream', up, '--workers', String(workers)]),
  });
  return list;
}

/** Builds what P3 needs (loadgen, kyoto-echo, tokio-proxy) and checks the JS build exists. */
export function buildP3({ always = false, log = console.error } = {}) {
  ensureBuilt({ always, log });
  if (always || !existsSync(TOKIO_PROXY)) {
    const args = ['build', '--release', '-p', 'kyoto-bench', '--example', 'tokio-proxy'];
    log(`building the tokio proxy: cargo ${args.join(' ')}`);
    const r = spawnSync('cargo', args, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) throw new Error(`cargo ${args.join(' ')} failed (status ${r.status})`);
  }
  if (!existsSync(path.join(ROOT, 'dist', 'lib', 'net.js'))) {
    throw new Error('dist/lib/net.js is missing: run `npm run build` first');
  }
}

/**
 * Runs P3 and prints its markdown tables. Returns the report object
 * ({ workers, nginx, loads: [{ load, summary, ratios, raw }] }).
 */
export async function runP3({ rounds = 5, duration = 3, warmup = 1, workers = 1 } = {}) {
  rounds = Math.max(5, rounds);
  const ng = findNginx();
  const list = proxies(workers, ng);
  console.log(
    `\n## P3 — TCP proxy: client (kyoto-loadgen) ⇄ proxy ⇄ kyoto-echo (native, 1 worker); ` +
      `median of ${rounds} rounds, ${warmup} s warm-up + ${duration} s each, ${workers} proxy worker(s)`,
  );
  if (!ng.bin) console.log(`\nnginx skipped: ${ng.reason}`);
  const report = { workers, nginx: ng.bin ? ng.version : `skipped: ${ng.reason}`, loads: [] };
  const echo = await startServer('kyoto-echo', BIN.kyotoEcho, ['--port', '0', '--workers', '1']);
  try {
    for (const load of LOADS) {
      const name = `${load.conns} conns × ${load.inflight} in flight × ${load.bytes} B`;
      const running = {};
      const res = Object.fromEntries(list.map((p) => [p.key, []]));
      const echoCpu = Object.fromEntries(list.map((p) => [p.key, []]));
      const rss = {};
      try {
        // Fresh proxies per load, so peak RSS belongs to this load.
        for (const p of list) running[p.key] = await p.start(echo.addr);
        for (let r = 0; r < rounds; r++) {
          const k = r % list.length;
          const order = [...list.slice(k), ...list.slice(0, k)];
          for (const p of order) {
            const srv = running[p.key];
            const e0 = cpuSeconds(echo.pid);
            const t0 = performance.now();
            const out = await loadgen(
              srv.addr,
              { conns: load.conns, inflight: load.inflight, bytes: load.bytes, warmup, duration, 'connect-timeout': 30 },
              { watchPid: srv.pid, timeoutMs: (warmup + duration + 60) * 1000 },
            );
            const secs = (performance.now() - t0) / 1000;
            // Whole-run share of the upstream echo (connect + warm-up + window): a rough figure.
            echoCpu[p.key].push((100 * (cpuSeconds(echo.pid) - e0)) / secs);
            const v = load.unit === 'MB/s' ? `${fmtNum(out.mb_per_sec)} MB/s` : `${fmtInt(out.ops_per_sec)} ops/s`;
            process.stderr.write(`  P3 ${name} ${p.key} round ${r + 1}: ${v}\n`);
            res[p.key].push(out);
          }
        }
        for (const p of list) rss[p.key] = peakRssKib(running[p.key].pid);
      } finally {
        for (const srv of Object.values(running)) await stopAny(srv);
      }
      const metric = (x) => (load.unit === 'MB/s' ? x.mb_per_sec : x.ops_per_sec);
      const sum = {};
      for (const p of list) {
        const rs = res[p.key];
        sum[p.key] = {
          value: median(rs.map(metric)),
          min: Math.min(...rs.map(metric)),
          max: Math.max(...rs.map(metric)),
          ops: median(rs.map((x) => x.ops_per_sec)),
          p50: median(rs.map((x) => x.latency_us.p50)),
          p99: median(rs.map((x) => x.latency_us.p99)),
          cpu: median(rs.map((x) => x.server?.percent)),
          genCpu: median(rs.map((x) => x.cpu.percent)),
          echoCpu: median(echoCpu[p.key]),
          errors: rs.reduce((a, x) => a + x.errors.total + (load.conns - x.connected), 0),
          rss: rss[p.key],
        };
      }
      const fmtV = (x) => (load.unit === 'MB/s' ? fmtNum(x) : fmtInt(x));
      const rows = list.map((p) => {
        const x = sum[p.key];
        return [
          p.label,
          fmtV(x.value),
          `${fmtV(x.min)}–${fmtV(x.max)}`,
          fmtNum(x.p50),
          fmtNum(x.p99),
          `${fmtNum(x.cpu, 0)} %`,
          fmtMiB(x.rss),
          `${fmtNum(x.genCpu, 0)} %`,
          `${fmtNum(x.echoCpu, 0)} %`,
          String(x.errors),
        ];
      });
      console.log(`\n### ${name} (${load.unit}${load.unit === 'MB/s' ? ' echoed through the proxy, each way' : ''})\n`);
      console.log(
        table(
          ['proxy', `${load.unit} (median)`, 'min–max', 'p50 µs', 'p99 µs', 'proxy CPU', 'peak RSS', 'loadgen CPU', 'echo CPU', 'errors'],
          rows,
          ['---', ...Array(9).fill('---:')],
        ),
      );
      const ratios = {};
      const lines = [];
      for (const kk of ['kyoto', 'kyotoMt']) {
        const k = sum[kk];
        const r = {
          vsNode: k.value / sum.node.value,
          vsNginx: sum.nginx ? k.value / sum.nginx.value : NaN,
          vsTokio: k.value / sum.tokio.value,
          rssVsNginx: sum.nginx ? k.rss / sum.nginx.rss : NaN,
          rssVsNode: k.rss / sum.node.rss,
        };
        ratios[kk] = r;
        lines.push(
          `${kk === 'kyoto' ? 'kyoto current_thread' : 'kyoto multi_thread'}: ` +
            `/node ${fmtRatio(r.vsNode)}, ` +
            (sum.nginx ? `/nginx ${fmtRatio(r.vsNginx)} (target ≥ 1× ${r.vsNginx >= 1 ? '✓' : '✗'}), ` : '/nginx skipped, ') +
            `/tokio ${fmtRatio(r.vsTokio)} (target ≥ 0.9× ${r.vsTokio >= 0.9 ? '✓' : '✗'}); ` +
            `peak RSS /node ${fmtRatio(r.rssVsNode)}` +
            (sum.nginx ? `, /nginx ${fmtRatio(r.rssVsNginx)}` : ''),
        );
      }
      if (sum.nginx) lines.push(`nginx/node ${fmtRatio(sum.nginx.value / sum.node.value)}`);
      console.log(`\n${lines.join('\n')}`);
      report.loads.push({ load, summary: sum, ratios, raw: res });
    }
  } finally {
    await stopServer(echo);
  }
  console.log(
    '\nproxy CPU: % of one core over the loadgen\'s measured window (nginx: its worker process; ' +
      'kyoto/node: the whole Node process). echo CPU: the upstream kyoto-echo over the whole loadgen run. ' +
      'peak RSS: VmHWM (nginx: the worker; its master is separate and idle).',
  );
  return report;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const opts = {
    rounds: Number(optStr('rounds', 5)),
    duration: Number(optStr('duration', 3)),
    warmup: Number(optStr('warmup', 1)),
    workers: Math.max(1, Number(optStr('workers', 1))),
  };
  try {
    buildP3({ always: !argv.includes('--no-build') });
    const loadBefore = loadAverage();
    console.log(`# P3 — TCP proxy\n\nmachine: ${machine()}; load average before: ${loadBefore}`);
    const report = { bench: 'P3', machine: machine(), loadBefore, ...(await runP3(opts)) };
    report.loadAfter = loadAverage();
    console.log(`\nload average after: ${report.loadAfter}`);
    const json = optStr('json', null);
    if (json) writeFileSync(json, JSON.stringify(report, null, 2));
  } catch (e) {
    console.error(`P3 failed: ${e.stack ?? e.message}`);
    process.exitCode = 1;
  }
}
