// Test-only access to the package's internals (compiled to dist/__test__, next to dist/lib).
import test from 'ava';
import { spawn as spawnChild } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import * as http from 'node:http';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import * as util from 'node:util';
import { TcpListener, TcpSocket, TcpStream, type Runtime } from 'kyoto';

const req = createRequire(__filename);

/** The subset of the native binding the tests poke at directly. */
export interface NativeForTests {
  bridgeNoop(id: number): void;
  bridgeRefs(): number;
  testCompleteFromThread(ids: number[], value?: string | null): void;
  now(): number;
  /** How many env-teardown hooks the calling thread's env holds. */
  envTeardownHooks(): number;
}

/** The bridge module's test-visible functions. */
export interface BridgeForTests {
  submit<T>(owner: object, start: (id: number) => void): Promise<T>;
  pendingCount(): number;
}

export const native: NativeForTests = req('../lib/native.js').native;
export const bridge: BridgeForTests = req('../lib/bridge.js');

/** Linux: descriptors can be counted through `/proc/self/fd`, and `prlimit` exists. */
export const LINUX = process.platform === 'linux';
/** Unix domain sockets exist (everywhere but Windows). */
export const UNIX_SOCKETS = process.platform !== 'win32';

const absent = (() => {}) as unknown as typeof test;
/** `test`, registered only on Linux (what it checks cannot be observed elsewhere). */
export const linuxTest: typeof test = LINUX ? test : absent;
/** `test.serial`, registered only on Linux. */
export const linuxTestSerial: typeof test.serial = LINUX ? test.serial : (absent as unknown as typeof test.serial);
/** `test`, registered only where Unix domain sockets exist. */
export const unixTest: typeof test = UNIX_SOCKETS ? test : absent;

/** The package root (where package.json is). */
export const packageRoot = path.resolve(__dirname, '..', '..');

/** Resolves after `ms` real milliseconds (Node timers, independent of kyoto's clock). */
export function realDelay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Linux: the open descriptors, each as `"fd → what it is"` (the links in `/proc/self/fd`). Tests
 * that look for leaks compare these sets rather than counts: Node itself opens and closes
 * descriptors meanwhile (Node 24 closes the CA bundle it read at start-up), which moves a count
 * but never shows as a new entry.
 */
export function openDescriptors(): Set<string> {
  const out = new Set<string>();
  if (!LINUX) return out;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      out.add(`${fd} → ${readlinkSync(`/proc/self/fd/${fd}`)}`);
    } catch {
      // the directory listing's own descriptor, closed by now
    }
  }
  return out;
}

/** The descriptors open now that were not in `before`, after waiting up to `ms` for them to close. */
export async function descriptorsOpenedSince(before: Set<string>, ms = 5000): Promise<string[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const added = [...openDescriptors()].filter((d) => !before.has(d));
    if (added.length === 0 || Date.now() >= deadline) return added;
    await realDelay(50);
  }
}

/** Whether a promise is settled right now (after draining the microtask queue a little). */
export async function isSettled(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; i < 10; i++) await Promise.resolve();
  return settled;
}

/** The native handle behind a Runtime (internal API). */
export interface NativeRuntimeForTests {
  noop(id: number): void;
  echo(id: number, value: string | number): void;
  panicOp(id: number): void;
}

/** `runtime._native()` (stripped from the public typings). */
export function nativeOf(rt: object): NativeRuntimeForTests {
  return (rt as { _native(): NativeRuntimeForTests })._native();
}

/** `p`, or a rejection naming `what` once `ms` real milliseconds pass. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<T>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * The `errno` Node reports for an error name (negative): libuv's number, which is `-errno` on Unix
 * but its own on Windows (`EINVAL` is -4071 there, not the CRT's -22).
 */
export function uvErrno(name: string): number {
  for (const [errno, [n]] of util.getSystemErrorMap()) if (n === name) return errno;
  throw new Error(`no libuv error named ${name}`);
}

/** How a child run by {@link runToEnd} ended, and what it printed. */
interface ChildRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
}

/** Runs `cmd` from the package root until it ends (killed after `ms`), collecting its output. */
function runToEnd(cmd: string, args: string[], ms: number, env: NodeJS.ProcessEnv = {}): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawnChild(cmd, args, { cwd: packageRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, out, err });
    });
  });
}

/**
 * Runs fixtures/net-cluster.js: a node:cluster primary whose two workers listen on `port` through
 * `mod` (`kind` 'net': TCP, 'dgram': UDP, 'pipe': a Unix socket at the path `port`) and answer 40
 * requests, with `env` added (e.g. `NODE_CLUSTER_SCHED_POLICY`). Resolves with what the primary
 * printed (its JSON); rejects if it printed none within 30 s.
 */
export async function runClusterFixture(
  kind: 'net' | 'dgram' | 'pipe',
  mod: string,
  port: number | string,
  env: NodeJS.ProcessEnv = {},
): Promise<Record<string, unknown>> {
  const fixture = path.join(__dirname, 'fixtures', 'net-cluster.js');
  const r = await runToEnd(process.execPath, [fixture, kind, mod, String(port)], 30_000, env);
  try {
    return JSON.parse(r.out.trim().split('\n').pop() ?? '') as Record<string, unknown>;
  } catch {
    throw new Error(`the cluster run of ${mod} printed: ${r.out}${r.err}`);
  }
}

/**
 * Runs `code` in a Node child inside a network namespace of its own (Linux, `unshare -rn`) with a
 * veth pair `v0`/`v1` up and the link-local address `fe80::1` on `v0`: link-local and multicast
 * IPv6 to test without touching the host's interfaces. Resolves with the child's stdout; rejects
 * with its stderr when it fails or outlasts `ms`.
 */
export async function runInLinkNamespace(code: string, ms: number): Promise<string> {
  const setup = [
    'ip link set lo up',
    'ip link add v0 type veth peer name v1',
    'ip link set v0 up',
    'ip link set v1 up',
    'ip -6 addr add fe80::1/64 dev v0 nodad',
    'exec "$0" -e "$1"',
  ].join(' && ');
  const r = await runToEnd('unshare', ['-rn', 'sh', '-c', setup, process.execPath, code], ms);
  if (r.status !== 0) throw new Error(`namespace child ended with ${r.signal ?? r.status}: ${r.err}${r.out}`);
  return r.out;
}

/**
 * Runs `code` in a child Node process and kills it after `ms`: counted from its first output when
 * `afterOutput` (so a slow start, as on a loaded CI machine, does not pass for an exit), else from
 * the spawn. Either way nothing outlives 30 s.
 */
export function runNodeChild(
  code: string,
  ms: number,
  afterOutput = false,
): Promise<{ code: number | null; timedOut: boolean; out: string }> {
  return new Promise((resolve) => {
    const child = spawnChild(process.execPath, ['-e', code], { cwd: packageRoot, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const kill = (): boolean => child.kill('SIGKILL');
    let timer = setTimeout(kill, afterOutput ? 30_000 : ms);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      if (afterOutput && out === '') {
        clearTimeout(timer);
        timer = setTimeout(kill, ms);
      }
      out += d;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, timedOut: signal === 'SIGKILL', out });
    });
  });
}

/**
 * {@link tcpPair} with small kernel buffers: the listener's receive buffer and the client's send
 * buffer set to `bytes`, so a peer that does not read soon leaves written bytes in kyoto's own backlog.
 */
export async function smallBufferTcpPair(bytes = 8192, runtime?: Runtime): Promise<{ l: TcpListener; c: TcpStream; s: TcpStream }> {
  const ls = TcpSocket.v4({ runtime });
  ls.setRecvBufferSize(bytes);
  ls.bind('127.0.0.1:0');
  const l = ls.listen();
  const cs = TcpSocket.v4({ runtime });
  cs.setSendBufferSize(bytes);
  const [c, [s]] = await Promise.all([cs.connect(l.localAddr()), l.accept()]);
  return { l, c, s };
}

/** A listener on 127.0.0.1 and a connected pair through it: `c` the client, `s` the accepted end. */
export async function tcpPair(): Promise<{ l: TcpListener; c: TcpStream; s: TcpStream }> {
  const l = await TcpListener.bind('127.0.0.1:0');
  const accepted = l.accept();
  const c = await TcpStream.connect(l.localAddr());
  const [s] = await accepted;
  return { l, c, s };
}

/** GETs `/` through `agent` (whose `createConnection` a test replaced) and resolves with the body. */
export function httpGetBody(agent: http.Agent, host: string, port?: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host, port, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (x: string) => (body += x));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}
