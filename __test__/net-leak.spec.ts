// Sockets that end — closed by either side, refused, aborted, reset, framed, copied — leave nothing
// behind: the env's native socket table returns to where it was, and a process that opens and closes
// thousands of them does not grow. One file (one process) so no concurrent test moves the count.
import test from 'ava';
import { spawn } from 'node:child_process';
import * as kyoto from 'kyoto';
import { UNIX_SOCKETS, linuxTestSerial, packageRoot, realDelay, withTimeout } from './helpers';
import { createRequire } from 'node:module';

const req = createRequire(__filename);
const netLive: () => number = req('../lib/native.js').native.netLive;

/** Runs Node with `args` in the package root; resolves with its stdout and stderr once it ends. */
function childOutput(args: string[], env: NodeJS.ProcessEnv, ms: number, what: string): Promise<string> {
  const run = new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: packageRoot, env });
    let buf = '';
    child.stdout.on('data', (d) => (buf += d));
    child.stderr.on('data', (d) => (buf += d));
    child.on('error', reject);
    child.on('close', () => resolve(buf));
  });
  return withTimeout(run, ms, what);
}

/** Waits (bounded) for the native table to drop back to `n` entries; returns what it last saw. */
async function liveSettlesAt(n: number): Promise<number> {
  for (let i = 0; i < 100 && netLive() !== n; i++) await realDelay(50);
  return netLive();
}

async function tcpRoundTrip(l: kyoto.TcpListener, closeServerFirst: boolean): Promise<void> {
  const acc = l.accept();
  const c = await kyoto.TcpStream.connect(l.localAddr());
  const [s] = await acc;
  await c.write('ping');
  const buf = Buffer.alloc(4);
  await s.readExact(buf);
  await s.write(buf);
  await c.readExact(buf);
  if (closeServerFirst) {
    s.close();
    await c.read(buf).catch(() => 0); // EOF or reset: either ends it
    c.close();
  } else {
    await c.shutdown();
    await s.read(buf);
    s.close();
    c.close();
  }
}

test.serial('every ended socket leaves the native socket table', async (t) => {
  t.timeout(60_000);
  await kyoto.sleep(1); // the env's runtime and bridge are up before the baseline
  const base = netLive();
  const l = await kyoto.TcpListener.bind('127.0.0.1:0');
  const closedPort = await (async () => {
    const tmp = await kyoto.TcpListener.bind('127.0.0.1:0');
    const p = tmp.localAddr().port;
    tmp.close();
    return p;
  })();
  for (let i = 0; i < 100; i++) {
    await tcpRoundTrip(l, i % 2 === 0);
    // refused, aborted mid-connect, and a listener opened and closed
    await t.throwsAsync(kyoto.TcpStream.connect({ host: '127.0.0.1', port: closedPort }), { code: 'ECONNREFUSED' });
    const ac = new AbortController();
    const pending = kyoto.TcpStream.connect(l.localAddr(), { signal: ac.signal });
    ac.abort();
    await pending.then((s) => s.close(), () => {});
    (await kyoto.TcpListener.bind('127.0.0.1:0')).close();
    // a pending read and a pending accept ended by close
    const extra = await kyoto.TcpListener.bind('127.0.0.1:0');
    const acceptWait = extra.accept().catch(() => undefined);
    extra.close();
    await acceptWait;
    // UDP: bound, a datagram each way, a receive left pending at close
    const u1 = await kyoto.UdpSocket.bind('127.0.0.1:0');
    const u2 = await kyoto.UdpSocket.bind('127.0.0.1:0');
    await u1.sendTo('x', u2.localAddr());
    await u2.recvFrom(Buffer.alloc(4));
    const recvWait = u1.recv(Buffer.alloc(4)).catch(() => 0);
    u1.close();
    u2.close();
    await recvWait;
    // native copy and framing over a fresh pair
    const acc = l.accept();
    const c = await kyoto.TcpStream.connect(l.localAddr());
    const [s] = await acc;
    const copying = kyoto.copy(s, s).catch(() => 0);
    const lines = kyoto.framed(c, new kyoto.LinesCodec());
    await lines.send('hello');
    t.is(await lines.next(), 'hello');
    await c.shutdown();
    await copying;
    s.close();
    c.close();
    if (UNIX_SOCKETS) {
      const [a, b] = kyoto.UnixStream.pair();
      await a.write('u');
      await b.readExact(Buffer.alloc(1));
      a.close();
      b.close();
      const [d1, d2] = kyoto.UnixDatagram.pair();
      d1.close();
      d2.close();
    }
  }
  t.true(netLive() > base, 'the listener is in the table while open');
  l.close();
  t.is(await liveSettlesAt(base), base);
});

test.serial('opening and closing thousands of sockets does not grow the process', async (t) => {
  t.timeout(120_000);
  // A child with --expose-gc: four rounds of the same connect/echo/close and UDP cycles; memory
  // after the second round (allocator and V8 warmed up: the first rounds move it by 1–2 MiB) and
  // after the fourth must be close. Memory
  // outside V8's heap (RSS − heapTotal: the addon, sockets, allocator) and the live JS heap are
  // compared separately: V8 grows its young generation in steps under this churn (heapTotal
  // 15 → 23 → 40 MiB over 70 000 connections here), which moves RSS without anything leaking.
  const code = `
    const k = require(${JSON.stringify(packageRoot)});
    const sample = () => {
      const m = process.memoryUsage();
      return [(m.rss - m.heapTotal) / 1048576, m.heapUsed / 1048576];
    };
    (async () => {
      const l = await k.TcpListener.bind('127.0.0.1:0');
      const u2 = await k.UdpSocket.bind('127.0.0.1:0');
      const buf = Buffer.alloc(64);
      const round = async () => {
        for (let i = 0; i < 1500; i++) {
          const acc = l.accept();
          const c = await k.TcpStream.connect(l.localAddr());
          const [s] = await acc;
          await c.write(buf);
          await s.readExact(buf);
          s.close();
          c.close();
          const u1 = await k.UdpSocket.bind('127.0.0.1:0');
          await u1.sendTo(buf, u2.localAddr());
          await u2.recvFrom(buf);
          u1.close();
        }
        await new Promise((r) => setTimeout(r, 100));
        global.gc(); global.gc();
        return sample();
      };
      const r = [];
      for (let i = 0; i < 4; i++) r.push(await round());
      console.log(JSON.stringify(r));
      l.close(); u2.close();
    })().catch((e) => { console.log('ERR ' + e.stack); process.exit(1); });`;
  const out = await childOutput(['--expose-gc', '-e', code], process.env, 100_000, 'the child');
  const rounds = JSON.parse(out.trim().split('\n').pop()!) as Array<[number, number]>;
  t.is(rounds.length, 4, out);
  const show = rounds.map(([n, h]) => `${n.toFixed(1)} + ${h.toFixed(1)}`).join(', ');
  t.log(`outside the JS heap + live JS heap after each round: ${show} MiB`);
  // 3 000 TCP and 3 000 UDP socket lifetimes between the two samples: 1 KiB left behind by each
  // would be 6 MiB.
  t.true(rounds[3][0] - rounds[1][0] < 3, `native memory grew: ${show}`);
  t.true(rounds[3][1] - rounds[1][1] < 2, `the JS heap grew: ${show}`);
});

linuxTestSerial('UDP sockets closed with datagrams in flight both ways and receives pending leave no descriptor, on both data paths', async (t) => {
  t.timeout(60_000);
  // close() takes a UDP socket's descriptor at once while its task may be mid-receive (on a worker
  // thread with multi_thread); 300 pairs closed mid-traffic, in both orders, must leave the
  // process's descriptor count where it was, every pending recvMany settled.
  const code = `
    const { UdpSocket } = require('./dist/lib/net.js');
    const fs = require('fs');
    const fds = () => fs.readdirSync('/proc/self/fd').length;
    (async () => {
      (await UdpSocket.bind('127.0.0.1:0')).close();
      await new Promise((r) => setTimeout(r, 50));
      const before = fds();
      let settled = 0;
      for (let i = 0; i < 300; i++) {
        const a = await UdpSocket.bind('127.0.0.1:0');
        const b = await UdpSocket.bind('127.0.0.1:0');
        const to = (s) => Array.from({ length: 64 }, (_, k) => ({ data: Buffer.alloc(32, k), address: s.localAddr() }));
        const pending = [a, b].map((s) => s.recvMany(64).then(() => settled++, () => settled++));
        a.sendMany(to(b)).catch(() => 0);
        b.sendMany(to(a)).catch(() => 0);
        if (i % 3 === 0) await new Promise((r) => setImmediate(r));
        if (i % 2) { a.close(); b.close(); } else { b.close(); a.close(); }
        await Promise.all(pending);
      }
      await new Promise((r) => setTimeout(r, 200));
      console.log(JSON.stringify({ leaked: fds() - before, settled }));
    })().catch((e) => { console.log('ERR ' + e.stack); process.exit(1); });`;
  for (const flavor of ['current_thread', 'multi_thread']) {
    const env = { ...process.env, KYOTO_NET_FLAVOR: flavor };
    const out = await childOutput(['-e', code], env, 50_000, `the ${flavor} child`);
    t.deepEqual(JSON.parse(out.trim().split('\n').pop()!), { leaked: 0, settled: 600 }, `${flavor}: ${out}`);
  }
});

test.serial("select() over two accepts that both complete closes the losing branch's stream: its client reads the end, and no socket is left", async (t) => {
  t.timeout(60_000);
  await kyoto.sleep(1);
  const base = netLive();
  for (let i = 0; i < 5; i++) {
    const l1 = await kyoto.TcpListener.bind('127.0.0.1:0');
    const l2 = await kyoto.TcpListener.bind('127.0.0.1:0');
    // Both clients are connected before the select: both accepts complete in the same turn.
    const c1 = await kyoto.TcpStream.connect(l1.localAddr());
    const c2 = await kyoto.TcpStream.connect(l2.localAddr());
    const won = await withTimeout(
      kyoto.select({ a: (signal) => l1.accept({ signal }), b: (signal) => l2.accept({ signal }) }),
      5000,
      'select',
    );
    const [s] = won.value;
    const loserClient = won.key === 'a' ? c2 : c1;
    // The loser's stream is closed by the select, not by the listener's close: it is read first.
    const end = await withTimeout(loserClient.read(Buffer.alloc(1)).catch(() => 0), 5000, "the losing branch's client reading its end");
    t.is(end, 0);
    // The winner's stream is the caller's and works.
    await (won.key === 'a' ? c1 : c2).write('x');
    const buf = Buffer.alloc(1);
    await withTimeout(s.readExact(buf), 5000, "the winner's stream");
    t.is(buf.toString(), 'x');
    for (const x of [s, c1, c2, l1, l2]) x.close();
  }
  t.is(await liveSettlesAt(base), base);
});

test.serial('a losing select() branch that made a socket pair at once has both ends closed; a stream the branch did not make is left alone', async (t) => {
  await kyoto.sleep(1);
  const base = netLive();
  if (UNIX_SOCKETS) {
    const won = await kyoto.select({ a: () => kyoto.UnixStream.pair(), b: () => kyoto.UnixStream.pair() });
    t.is(won.key, 'a');
    const [x, y] = won.value;
    await x.write('y');
    const buf = Buffer.alloc(1);
    await withTimeout(y.readExact(buf), 5000, "the winner's pair");
    x.close();
    y.close();
    t.is(await liveSettlesAt(base), base);
  }
  // A stream made before the select, handed back by a losing branch, stays the caller's.
  const l = await kyoto.TcpListener.bind('127.0.0.1:0');
  const acc = l.accept();
  const c = await kyoto.TcpStream.connect(l.localAddr());
  const [s] = await acc;
  const won = await kyoto.select({ a: () => 1, b: () => s });
  t.is(won.key, 'a');
  t.false(s.closed);
  await c.write('z');
  const buf = Buffer.alloc(1);
  await withTimeout(s.readExact(buf), 5000, 'the stream a losing branch handed back');
  for (const x of [s, c, l]) x.close();
  t.is(await liveSettlesAt(base), base);
});
