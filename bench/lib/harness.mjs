// Shared plumbing for the benchmark drivers (bench/run.mjs, bench/showcase.mjs): building the native
// tools, starting and stopping echo servers, running kyoto-loadgen, reading /proc, and cleaning up
// every child process on exit or Ctrl-C.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// Scripts use cargo's default target/ unless CARGO_TARGET_DIR says otherwise (as cargo itself does).
export const TARGET = process.env.CARGO_TARGET_DIR
  ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR)
  : path.join(ROOT, 'target');
export const BIN = {
  loadgen: path.join(TARGET, 'release', 'kyoto-loadgen'),
  kyotoEcho: path.join(TARGET, 'release', 'kyoto-echo'),
  mioEcho: path.join(TARGET, 'release', 'mio-echo'),
  tokioEcho: path.join(TARGET, 'release', 'examples', 'tokio-echo'),
  nodeEcho: path.join(ROOT, 'bench', 'servers', 'node-echo.mjs'),
};

const children = new Set();

function killAll(signal = 'SIGTERM') {
  for (const c of children) {
    try {
      c.kill(signal);
    } catch {
      // already gone
    }
  }
}

let exiting = false;
process.on('exit', () => killAll('SIGKILL'));
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (exiting) return;
    exiting = true;
    process.stderr.write(`\n${sig}: stopping benchmark processes\n`);
    killAll('SIGKILL');
    process.exit(130);
  });
}

/** Builds the native tools with cargo when any is missing (or always, with `always`). */
export function ensureBuilt({ examples = false, always = false, log = console.error } = {}) {
  const needed = [BIN.loadgen, BIN.kyotoEcho, BIN.mioEcho, ...(examples ? [BIN.tokioEcho] : [])];
  if (!always && needed.every((p) => existsSync(p))) return;
  const args = ['build', '--release', '-p', 'kyoto-bench', '--bins'];
  if (examples) args.push('--example', 'tokio-echo');
  log(`building the native benchmark tools: cargo ${args.join(' ')}`);
  const r = spawnSync('cargo', args, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`cargo ${args.join(' ')} failed (status ${r.status})`);
  for (const p of needed) if (!existsSync(p)) throw new Error(`${p} is missing after the build`);
}

/**
 * Starts an echo server and waits (at most `timeoutMs`) for its `listening <addr>` line.
 * Returns { name, pid, addr, child }.
 */
export function startServer(name, cmd, args, { timeoutMs = 10_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not start within ${timeoutMs} ms: ${err.trim()}`));
    }, timeoutMs);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout.removeAllListeners('data');
        child.stdout.resume();
        resolve({ name, pid: child.pid, addr: m[1], child });
      }
    });
    child.stderr.on('data', (d) => {
      if (err.length < 4096) err += d;
    });
    child.on('exit', (code, sig) => {
      children.delete(child);
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? sig}) before listening: ${err.trim()}`));
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** Stops a server: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopServer(server, graceMs = 2000) {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await done;
  clearTimeout(t);
  children.delete(child);
}

/** Peak RSS (VmHWM) of a live process, KiB. */
export function peakRssKib(pid) {
  try {
    const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * Runs kyoto-loadgen against `addr` (flags as an object: { conns: 50, ... }), reporting the CPU of
 * `watchPid` over the measured window. Resolves with the parsed JSON. Bounded by `timeoutMs`.
 */
export function loadgen(addr, flags, { watchPid, timeoutMs = 120_000 } = {}) {
  const args = ['--addr', addr];
  for (const [k, v] of Object.entries(flags)) {
    if (v === true) args.push(`--${k}`);
    else if (v !== false && v !== undefined) args.push(`--${k}`, String(v));
  }
  if (watchPid) args.push('--watch-pid', String(watchPid));
  return new Promise((resolve, reject) => {
    const child = spawn(BIN.loadgen, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    // 'close', not 'exit': the result line is read from the pipe, which 'exit' can precede.
    child.on('close', (code, sig) => {
      children.delete(child);
      clearTimeout(timer);
      const line = out.trim().split('\n').pop() ?? '';
      try {
        const r = JSON.parse(line);
        r.exitCode = code;
        resolve(r);
      } catch {
        reject(new Error(`kyoto-loadgen ${args.join(' ')} failed (${code ?? sig}): ${err.trim() || out.trim()}`));
      }
    });
  });
}

/** The value after `--name` on this process's command line, or `dflt`. */
export function optStr(name, dflt) {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
}

/**
 * Starts a server spec `{ name, cmd, args, env }` (`cmd` defaults to this Node) with `env` added to
 * the environment it inherits.
 */
export async function startSpec(s) {
  const saved = { ...process.env };
  Object.assign(process.env, s.env ?? {});
  try {
    return await startServer(s.name, s.cmd ?? process.execPath, s.args);
  } finally {
    for (const k of Object.keys(s.env ?? {})) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

/**
 * Runs `rounds` rounds of kyoto-loadgen with `flags` against each of `servers` (from
 * `startServer`), rotating which goes first so the shared machine's drifts fall on each in turn.
 * Returns every server's results, in the servers' order.
 */
export async function rotatedRounds(servers, flags, rounds) {
  const results = servers.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < servers.length; k++) {
      const i = (k + r) % servers.length;
      results[i].push(await loadgen(servers[i].addr, flags, { watchPid: servers[i].pid }));
    }
  }
  return results;
}

/**
 * One server's row: medians of its results `rs` (ops/s, latency, its CPU and the load generator's),
 * its ratio to `base`'s results (whole and per round), its peak RSS, and its errors (lost UDP
 * datagrams included).
 */
export function summarize(name, rs, base, pid) {
  const ops = median(rs.map((x) => x.ops_per_sec));
  return {
    name,
    ops,
    ratio: ops / median(base.map((x) => x.ops_per_sec)),
    roundRatio: roundRatios(rs, base),
    p50: median(rs.map((x) => x.latency_us.p50)),
    p99: median(rs.map((x) => x.latency_us.p99)),
    cpu: median(rs.map((x) => x.server?.percent)),
    rss: peakRssKib(pid),
    errors: rs.reduce((a, x) => a + x.errors.total + x.errors.lost, 0),
    loadgenCpu: median(rs.map((x) => x.cpu.percent)),
  };
}

/** The markdown table of `summarize` rows, with the throughput, peer and error columns so named. */
export function summaryTable(rows, { ops = 'ops/s', peer = 'node:net', errors = 'errors' } = {}) {
  return table(
    ['server', ops, `vs ${peer}`, 'per round: median (range)', 'p50 µs', 'p99 µs', 'server CPU', 'peak RSS', errors, 'loadgen CPU'],
    rows.map((r) => [
      r.name,
      fmtInt(r.ops),
      fmtRatio(r.ratio),
      `${fmtRatio(r.roundRatio.median)} (${fmtRange(r.roundRatio)})`,
      fmtNum(r.p50, 0),
      fmtNum(r.p99, 0),
      `${fmtNum(r.cpu, 0)}%`,
      fmtMiB(r.rss),
      String(r.errors),
      `${fmtNum(r.loadgenCpu, 0)}%`,
    ]),
    ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  );
}

export const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/**
 * Per-round ratios of `rs[r].ops_per_sec` to `base[r].ops_per_sec` (rounds run every server back
 * to back, so a ratio within a round cancels the shared machine's slower drifts): their median and
 * range.
 */
export function roundRatios(rs, base) {
  const xs = rs.map((x, r) => x.ops_per_sec / base[r].ops_per_sec).filter((x) => Number.isFinite(x));
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

export const fmtRange = (r) => `${r.min.toFixed(2)}–${r.max.toFixed(2)}`;

export const loadAverage = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

export function machine() {
  const cpus = os.cpus();
  return `${cpus.length} × ${cpus[0]?.model?.trim() ?? 'cpu'}, Linux ${os.release()}, Node ${process.version}`;
}

export const fmtInt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
export const fmtNum = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
export const fmtRatio = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : 'n/a');
export const fmtMiB = (kib) => (Number.isFinite(kib) ? `${(kib / 1024).toFixed(1)} MiB` : 'n/a');

/** Renders a markdown table from a header row and rows (arrays of strings). */
export function table(header, rows, align) {
  const al = align ?? header.map((_, i) => (i === 0 ? '---' : '---:'));
  return [
    `| ${header.join(' | ')} |`,
    `|${al.join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
