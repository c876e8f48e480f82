// Event-loop citizenship, checked in child processes.
import test from 'ava';
import { spawn as spawnChild } from 'node:child_process';
import * as path from 'node:path';
import { packageRoot } from './helpers';

interface Run {
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
  lines: string[];
  lineAt: Map<string, number>;
  kill(): void;
}

function run(code: string): Run {
  const start = Date.now();
  const child = spawnChild(process.execPath, ['-e', code], { cwd: packageRoot, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const lineAt = new Map<string, number>();
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      lineAt.set(line, Date.now());
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, ms: Date.now() - start })),
  );
  return { exited, lines, lineAt, kill: () => child.kill('SIGKILL') };
}

const within = <T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> =>
  Promise.race([p, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms))]);

test('a script that only awaits sleep(50) exits by itself within a second', async (t) => {
  const r = run("require('kyoto').sleep(50).then(() => console.log('slept'))");
  const res = await within(r.exited, 10_000);
  t.not(res, 'timeout');
  if (res === 'timeout') return r.kill();
  t.is(res.code, 0);
  t.deepEqual(r.lines, ['slept']);
  t.true(Date.now() - r.lineAt.get('slept')! < 1000, 'exit follows the sleep at once');
});

test('an idle runtime never holds the event loop', async (t) => {
  const r = run("const k = require('kyoto'); k.Runtime.default(); new k.Runtime({ workerThreads: 2 }); console.log('up')");
  const res = await within(r.exited, 10_000);
  t.not(res, 'timeout');
  if (res === 'timeout') return r.kill();
  t.is(res.code, 0);
});

test('a pending interval keeps the process alive until it is disposed', async (t) => {
  const alive = run("const iv = require('kyoto').interval(100); iv.tick().then(() => console.log('ticked'))");
  // The first tick is immediate; wait for it however slow the child's start-up, then give it time
  // to exit, which it must not.
  for (let waited = 0; !alive.lines.includes('ticked') && waited < 10_000; waited += 50) {
    if ((await within(alive.exited, 50)) !== 'timeout') break;
  }
  const res = await within(alive.exited, 1500);
  t.is(res, 'timeout', 'still running with an undisposed interval');
  alive.kill();
  t.deepEqual(alive.lines, ['ticked']);

  const disposed = run(`
    (async () => {
      const iv = require('kyoto').interval(20);
      let n = 0;
      for await (const _ of iv) if (++n === 3) iv[Symbol.dispose]();
      console.log('disposed');
    })()`);
  const res2 = await within(disposed.exited, 10_000);
  t.not(res2, 'timeout');
  if (res2 === 'timeout') return disposed.kill();
  t.is(res2.code, 0);
  t.true(Date.now() - disposed.lineAt.get('disposed')! < 1000);
});

test('an unref’d interval does not keep the process alive', async (t) => {
  const r = run("require('kyoto').interval(100).unref(); console.log('ok')");
  const res = await within(r.exited, 10_000);
  t.not(res, 'timeout');
  if (res === 'timeout') return r.kill();
  t.is(res.code, 0);
});

test('an interval whose runtime shuts down stops holding the process, and its ticks reject with ERR_RUNTIME_SHUTDOWN', async (t) => {
  const r = run(`
    (async () => {
      const k = require('kyoto');
      const rt = new k.Runtime({ flavor: 'current_thread' });
      const iv = k.interval(100_000, { runtime: rt });
      await iv.tick();
      const pending = iv.tick();
      await rt.shutdown();
      await pending.catch((e) => console.log('pending ' + e.code));
      await iv.tick().catch((e) => console.log('next ' + e.code));
      console.log('hasRef ' + iv.hasRef());
    })()`);
  const res = await within(r.exited, 10_000);
  t.not(res, 'timeout', 'the process exits once the runtime is shut down');
  if (res === 'timeout') return r.kill();
  t.is(res.code, 0);
  t.deepEqual(r.lines, ['pending ERR_RUNTIME_SHUTDOWN', 'next ERR_RUNTIME_SHUTDOWN', 'hasRef false']);
});

test('unref() releases the process even while a tick is already waiting, and ref() holds it again', async (t) => {
  const released = run(`
    (async () => {
      const iv = require('kyoto').interval(100_000);
      await iv.tick();
      iv.tick().then(() => console.log('ticked'));
      await new Promise((r) => setImmediate(r));
      iv.unref();
      console.log('unref');
    })()`);
  const res = await within(released.exited, 10_000);
  t.not(res, 'timeout', 'the waiting tick no longer holds the process');
  if (res === 'timeout') return released.kill();
  t.deepEqual(released.lines, ['unref']);

  const held = run(`
    (async () => {
      const iv = require('kyoto').interval(300).unref();
      await iv.tick();
      iv.tick().then(() => { console.log('ticked'); iv.close(); });
      await new Promise((r) => setImmediate(r));
      iv.ref();
    })()`);
  const res2 = await within(held.exited, 10_000);
  t.not(res2, 'timeout');
  if (res2 === 'timeout') return held.kill();
  t.deepEqual(held.lines, ['ticked'], 'ref() made the waiting tick hold the process until it fired');
});

test('a pending sleep on an explicit runtime keeps the process alive until it fires', async (t) => {
  const r = run(
    "const k = require('kyoto'); const rt = new k.Runtime({ workerThreads: 1 }); k.sleep(300, { runtime: rt }).then(() => console.log('late'))",
  );
  const res = await within(r.exited, 10_000);
  t.not(res, 'timeout');
  if (res === 'timeout') return r.kill();
  t.deepEqual(r.lines, ['late']);
  t.true(res.ms >= 300);
});

// process.exit() while everything is in flight: a napi env torn down while native threads still
// produce completions is where addons crash. Both data paths, a few times each (timing varies).
const busyThenExit = (entry: string): string => `
  const k = require(${JSON.stringify(entry)});
  const { Worker } = require('node:worker_threads');
  (async () => {
    const l = await k.TcpListener.bind('127.0.0.1:0');
    (async () => { for await (const s of l) k.copy(s, s).catch(() => {}); })();
    const data = Buffer.alloc(65536, 7);
    for (let i = 0; i < 16; i++) {
      (async () => {
        const c = await k.TcpStream.connect(l.localAddr());
        const buf = Buffer.alloc(65536);
        for (;;) { await c.write(data); await c.read(buf); }
      })().catch(() => {});
    }
    const u1 = await k.UdpSocket.bind('127.0.0.1:0');
    const u2 = await k.UdpSocket.bind('127.0.0.1:0');
    (async () => { for (;;) { await u1.sendTo('x', u2.localAddr()); await u2.recv(Buffer.alloc(8)); } })().catch(() => {});
    const [tx, rx] = k.mpsc.channel(64);
    new Worker(
      'const k = require(' + JSON.stringify(${JSON.stringify(entry)}) + ');' +
        "const tx = k.fromShared(require('node:worker_threads').workerData);" +
        '(async () => { for (let i = 0; ; i++) await tx.send(i); })().catch(() => {});',
      { eval: true, workerData: tx.share() },
    );
    (async () => { for (;;) await rx.recv(); })().catch(() => {});
    const iv = k.interval(1);
    (async () => { for await (const _ of iv); })().catch(() => {});
    for (let i = 0; i < 20; i++) k.spawn(async () => { for (;;) await k.yieldNow(); });
    const rt = new k.Runtime({ workerThreads: 2 });
    for (let i = 0; i < 20; i++) k.sleep(1 + i, { runtime: rt }).catch(() => {});
    setTimeout(() => { console.log('exiting'); process.exit(0); }, 200 + Math.random() * 300);
  })().catch((e) => { console.log('ERR ' + e.stack); process.exit(1); });`;

for (const flavor of ['current_thread', 'multi_thread']) {
  test(`process.exit() amid busy sockets, a channel fed by a worker, timers and tasks ends cleanly (${flavor})`, async (t) => {
    t.timeout(60_000);
    const entry = path.join(packageRoot, 'dist', 'index.js');
    for (let i = 0; i < 3; i++) {
      const child = spawnChild(process.execPath, ['-e', busyThenExit(entry)], {
        cwd: packageRoot,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, KYOTO_NET_FLAVOR: flavor },
      });
      let out = '';
      let err = '';
      child.stdout!.on('data', (d) => (out += d));
      child.stderr!.on('data', (d) => (err += d));
      const res = await within(
        new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('close', (code, signal) => r({ code, signal }))),
        20_000,
      );
      if (res === 'timeout') {
        child.kill('SIGKILL');
        t.fail(`run ${i}: the child did not exit; stdout ${out}`);
        return;
      }
      t.deepEqual(res, { code: 0, signal: null }, `run ${i}: ${out} ${err}`);
      t.is(out.trim(), 'exiting');
      t.is(err.trim(), '', `run ${i}: nothing on stderr`);
    }
  });
}

test('a second copy of the package in one thread (a cleared require.cache, Jest) works beside the first', async (t) => {
  // The addon is loaded once, its JS files twice: the native bridge, data path and sync codec
  // answer the first copy's callbacks only, so the second copy's awaits used to never settle.
  const r = run(`
    const root = process.cwd();
    const k1 = require('kyoto');
    (async () => {
      await k1.sleep(1);
      for (const key of Object.keys(require.cache)) if (key.startsWith(root)) delete require.cache[key];
      const k2 = require('kyoto');
      console.log(k1.sleep === k2.sleep ? 'same copy' : 'second copy');
      await k2.sleep(1);
      console.log('slept');
      console.log(await k2.timeout(1000, k2.sleep(1).then(() => 'in time')));
      const l = await k1.TcpListener.bind('127.0.0.1:0');
      const c = await k2.TcpStream.connect(l.localAddr());
      const [s] = await l.accept();
      await c.write(Buffer.from('ping'));
      const b = Buffer.alloc(4);
      await s.readExact(b);
      console.log('read ' + b);
      c.close(); s.close(); l.close();
      const m = new k2.Mutex(0);
      const g = await m.lock();
      m.share();
      const waiting = m.lock();
      g.release();
      (await waiting).release();
      console.log('shared lock');
      const m1 = k1.fromShared(m.share());
      (await m1.lock()).release();
      console.log('across copies');
    })().catch((e) => { console.log('failed ' + e); process.exitCode = 1; });
  `);
  const out = await within(r.exited, 20_000);
  if (out === 'timeout') r.kill();
  t.deepEqual(r.lines, ['second copy', 'slept', 'in time', 'read ping', 'shared lock', 'across copies']);
  t.not(out, 'timeout', 'the process exits by itself');
  t.is(out !== 'timeout' ? out.code : undefined, 0);
});
