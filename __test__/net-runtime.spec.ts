// Sockets given `{ runtime }` (their I/O runs on that runtime's threads, and its shutdown ends
// them), the default runtime's shutdown, and the event loop's fairness under floods and tight
// send loops.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { LinesCodec, Runtime, TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream, copy, framed } from 'kyoto';
import * as net from 'node:net';
import { packageRoot, runNodeChild, withTimeout } from './helpers';

/**
 * A node:net server in this process that reads (and drops) everything, and runs `onConnection`
 * for each connection; it and its connections end with the test, even one whose assertion threw.
 * Resolves with its port.
 */
async function readingServer(t: ExecutionContext, onConnection: (s: net.Socket) => void): Promise<number> {
  const conns = new Set<net.Socket>();
  const server = net.createServer((s) => {
    conns.add(s);
    s.on('close', () => conns.delete(s));
    s.on('error', () => {});
    s.resume();
    onConnection(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.close();
    for (const s of conns) s.destroy();
  });
  return (server.address() as net.AddressInfo).port;
}

function sockPath(tag: string): string {
  return path.join(os.tmpdir(), `kyoto-rt-${process.pid}-${tag}-${Math.random().toString(36).slice(2)}.sock`);
}

test('a TCP echo on a multi-thread Runtime moves every byte and counts its I/O in that runtime', async (t) => {
  const rt = new Runtime({ flavor: 'multi_thread', workerThreads: 2 });
  try {
    const l = await TcpListener.bind('127.0.0.1:0', { runtime: rt });
    const served = (async () => {
      const [s] = await l.accept();
      const buf = Buffer.alloc(64 * 1024);
      for (;;) {
        const n = await s.read(buf);
        if (n === 0) break;
        await s.writeAll(buf.subarray(0, n));
      }
      await s.shutdown();
      s.close();
    })();
    const c = await TcpStream.connect(l.localAddr(), { runtime: rt });
    const payload = Buffer.alloc(4 << 20);
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE((i * 2654435761) >>> 0, i);
    const reading = c.readToEnd();
    await c.writeAll(payload);
    await c.shutdown();
    const back = await withTimeout(reading, 20_000, 'echo');
    await served;
    t.is(back.length, payload.length);
    t.is(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(payload).digest('hex'));
    const m = rt.metrics();
    t.true(m.ioEvents > 0, 'the runtime’s reactor saw the sockets');
    t.true(m.spawnedTasks >= 3, 'listener, accepted stream and client ran as tasks of the runtime');
    c.close();
    l.close();
  } finally {
    await rt.shutdown();
  }
});

test('a current-thread Runtime serves sockets too', async (t) => {
  const rt = new Runtime({ flavor: 'current_thread' });
  try {
    const l = await TcpListener.bind('127.0.0.1:0', { runtime: rt });
    const accepted = l.accept();
    const c = await TcpStream.connect(l.localAddr());
    const [s] = await accepted;
    await c.writeAll('ping');
    const buf = Buffer.alloc(8);
    t.is(await s.read(buf), 4);
    await s.writeAll(buf.subarray(0, 4));
    t.is(await c.read(buf), 4);
    t.is(buf.subarray(0, 4).toString(), 'ping');
    c.close();
    s.close();
    l.close();
  } finally {
    await rt.shutdown();
  }
});

test('UDP and Unix sockets take { runtime } as well', async (t) => {
  const rt = new Runtime({ flavor: 'multi_thread', workerThreads: 1 });
  try {
    const a = await UdpSocket.bind('127.0.0.1:0', { runtime: rt });
    const b = await UdpSocket.bind('127.0.0.1:0');
    await b.sendTo('over udp', a.localAddr());
    const buf = Buffer.alloc(32);
    const { bytes, address } = await withTimeout(a.recvFrom(buf), 5000, 'recvFrom');
    t.is(buf.subarray(0, bytes).toString(), 'over udp');
    t.is(address.port, b.localAddr().port);
    a.close();
    b.close();

    if (process.platform !== 'win32') {
      const [x, y] = UnixStream.pair({ runtime: rt });
      await x.writeAll('unix');
      t.is(await y.read(buf), 4);
      x.close();
      y.close();

      const p = sockPath('l');
      const l = await UnixListener.bind(p, { runtime: rt });
      const accepted = l.accept();
      const c = await UnixStream.connect(p, { runtime: rt });
      const [s] = await accepted;
      await s.writeAll('hi');
      t.is(await c.read(buf), 2);
      c.close();
      s.close();
      l.close();

      const [d1, d2] = UnixDatagram.pair({ runtime: rt });
      await d1.send('dgram');
      t.is(await d2.recv(buf), 5);
      d1.close();
      d2.close();
    }
  } finally {
    await rt.shutdown();
  }
});

test('shutting the runtime down fails pending accept, read, write and recv with ERR_RUNTIME_SHUTDOWN', async (t) => {
  const rt = new Runtime({ flavor: 'multi_thread', workerThreads: 1 });
  const l = await TcpListener.bind('127.0.0.1:0', { runtime: rt });
  const peer = await TcpListener.bind('127.0.0.1:0');
  const peerAccepted = peer.accept();
  const c = await TcpStream.connect(peer.localAddr(), { runtime: rt });
  const [p] = await peerAccepted;
  const u = await UdpSocket.bind('127.0.0.1:0', { runtime: rt });
  const uAddr = u.localAddr(); // its descriptor closes with the runtime

  const accept = l.accept();
  const read = c.read(Buffer.alloc(16));
  const recv = u.recv(Buffer.alloc(16));
  // The peer never reads: this write waits for room that never comes before the shutdown.
  const write = c.writeAll(Buffer.alloc(64 << 20));
  await rt.shutdown();

  const code = { code: 'ERR_RUNTIME_SHUTDOWN' };
  await t.throwsAsync(withTimeout(accept, 5000, 'accept'), code);
  await t.throwsAsync(withTimeout(read, 5000, 'read'), code);
  await t.throwsAsync(withTimeout(recv, 5000, 'recv'), code);
  await t.throwsAsync(withTimeout(write, 5000, 'write'), code);
  // And later calls do not wait for a runtime that is gone.
  await t.throwsAsync(withTimeout(l.accept(), 5000, 'second accept'), code);
  await t.throwsAsync(withTimeout(c.read(Buffer.alloc(16)), 5000, 'second read'), code);
  await t.throwsAsync(withTimeout(u.recv(Buffer.alloc(16)), 5000, 'second recv'), code);
  // A datagram sent on a dead runtime is refused, not silently dropped.
  await t.throwsAsync(withTimeout(u.sendTo('x', uAddr), 5000, 'sendTo'), code);
  await t.throwsAsync(withTimeout(u.sendMany([{ data: Buffer.from('x'), address: uAddr }]), 5000, 'sendMany'), code);
  // Its address went with its descriptor.
  t.throws(() => u.localAddr(), code);
  // New sockets on it are refused.
  await t.throwsAsync(TcpListener.bind('127.0.0.1:0', { runtime: rt }), code);
  await t.throwsAsync(TcpStream.connect(peer.localAddr(), { runtime: rt }), code);
  l.close();
  c.close();
  u.close();
  p.close();
  peer.close();
});

test('a native copy on a runtime that shuts down rejects with ERR_RUNTIME_SHUTDOWN', async (t) => {
  for (const flavor of ['current_thread', 'multi_thread'] as const) {
    const rt = new Runtime({ flavor, workerThreads: flavor === 'multi_thread' ? 1 : undefined });
    const l = await TcpListener.bind('127.0.0.1:0', { runtime: rt });
    const accepted = l.accept();
    const c = await TcpStream.connect(l.localAddr(), { runtime: rt });
    const [s] = await accepted;
    const echo = copy(s, s);
    await c.writeAll('ping');
    await withTimeout(c.readExact(Buffer.alloc(4)), 5000, `${flavor}: the echo`);
    await rt.shutdown();
    await t.throwsAsync(withTimeout(echo, 5000, `${flavor}: the copy`), { code: 'ERR_RUNTIME_SHUTDOWN' }, flavor);
    for (const x of [c, s, l]) x.close();
  }
});

test('a native copy between a default-runtime stream and a stream on a Runtime that shuts down rejects with ERR_RUNTIME_SHUTDOWN, whichever end that stream is', async (t) => {
  // The copy task runs on the thread's own runtime: the other runtime's shutdown must still end
  // it, even while it waits on the surviving stream (here: for bytes that never come).
  for (const flavor of ['current_thread', 'multi_thread'] as const) {
    for (const into of [true, false]) {
      const rt = new Runtime({ flavor, workerThreads: flavor === 'multi_thread' ? 1 : undefined });
      const onRt = await TcpListener.bind('127.0.0.1:0', { runtime: rt });
      const ownAccepted = onRt.accept();
      const own = await TcpStream.connect(onRt.localAddr(), { runtime: rt });
      const [ownPeer] = await ownAccepted;
      const dl = await TcpListener.bind('127.0.0.1:0');
      const defAccepted = dl.accept();
      const def = await TcpStream.connect(dl.localAddr());
      const [defPeer] = await defAccepted;
      t.teardown(() => {
        for (const x of [onRt, own, ownPeer, dl, def, defPeer]) x.close();
      });
      const what = `${flavor}, copy ${into ? 'into' : 'out of'} the runtime's stream`;
      // A byte through first: the copy is running when the runtime shuts down.
      const copying = into ? copy(def, ownPeer) : copy(ownPeer, def);
      copying.catch(() => {});
      await (into ? defPeer : own).write('x');
      await withTimeout((into ? own : defPeer).readExact(Buffer.alloc(1)), 5000, `${what}: the first byte`);
      await rt.shutdown();
      await t.throwsAsync(withTimeout(copying, 5000, what), { code: 'ERR_RUNTIME_SHUTDOWN' }, what);
    }
  }
});

test('after the default runtime shuts down, compat servers, sockets and toNodeStream() close without crashing a program with no error listeners', async (t) => {
  const code = `
    const k = require('kyoto');
    const cnet = require('kyoto/compat/net');
    const cdgram = require('kyoto/compat/dgram');
    const closed = [];
    const note = (what) => () => closed.push(what);
    (async () => {
      const l = await k.TcpListener.bind('127.0.0.1:0');
      const c = await k.TcpStream.connect(l.localAddr());
      const [s] = await l.accept();
      const d = c.toNodeStream();
      d.resume();
      d.on('close', note('duplex'));
      const srv = cnet.createServer((sock) => sock.on('close', note('accepted')));
      srv.on('close', note('server'));
      await new Promise((r) => srv.listen(0, '127.0.0.1', r));
      const cs = cnet.connect(srv.address().port, '127.0.0.1');
      cs.on('close', note('client'));
      await new Promise((r) => cs.on('connect', r));
      const u = cdgram.createSocket('udp4');
      u.on('close', note('dgram'));
      await new Promise((r) => u.bind(0, '127.0.0.1', r));
      await k.Runtime.default().shutdown();
      const t0 = Date.now();
      while (closed.length < 5 && Date.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 20));
      console.log(JSON.stringify(closed.sort()));
      process.exit(0);
    })();`;
  const r = await runNodeChild(code, 30_000);
  t.deepEqual(JSON.parse(r.out), ['accepted', 'client', 'dgram', 'duplex', 'server']);
});

test('framed() on a stream whose runtime just shut down ends with ERR_RUNTIME_SHUTDOWN instead of waiting forever', async (t) => {
  for (let i = 0; i < 5; i++) {
    const rt = new Runtime({ flavor: 'multi_thread', workerThreads: 1 });
    const l = await TcpListener.bind('127.0.0.1:0', { runtime: rt });
    const c = await TcpStream.connect(l.localAddr(), { runtime: rt });
    const [s] = await l.accept();
    t.teardown(() => {
      for (const x of [c, s, l]) x.close();
    });
    await rt.shutdown();
    // (The task may be gone before framed() claims the stream: no framing marker will come.)
    const f = framed(c, new LinesCodec());
    await t.throwsAsync(withTimeout(f.next(), 5000, `round ${i}: next()`), { code: 'ERR_RUNTIME_SHUTDOWN' });
  }
});

test('a framed echo flooded by its peer still lets the event loop turn: timers and immediates run', async (t) => {
  // The peer (here, node:net) writes lines as fast as the connection takes them.
  const line = Buffer.from('hello world line\n'.repeat(500));
  const port = await readingServer(t, (s) => {
    const pump = (): void => {
      while (!s.destroyed && s.write(line)) {}
    };
    s.on('drain', pump);
    pump();
  });
  // The env's own runtime, and a socket on another runtime of either flavor (its events reach the
  // JS thread from other threads, the case that starved the loop).
  for (const runtime of ['undefined', "new Runtime({ flavor: 'current_thread' })", "new Runtime({ flavor: 'multi_thread' })"]) {
    const code = `
      const { Runtime, TcpStream, framed, LinesCodec } = require('kyoto');
      const { Worker } = require('node:worker_threads');
      // A watchdog off the JS thread: a starved loop would never run a timer of its own.
      new Worker("setTimeout(() => { require('fs').writeSync(1, 'starved'); process.kill(process.pid, 'SIGKILL'); }, 15000)", { eval: true }).unref();
      (async () => {
        const c = await TcpStream.connect('127.0.0.1:${port}', { runtime: ${runtime} });
        const f = framed(c, new LinesCodec());
        let frames = 0;
        for (;;) {
          const x = await f.next();
          if (x === undefined) break;
          // Once the flood is in full flow (the loop stopped turning only then), a timer and an
          // immediate must still get their turn.
          if (++frames === 100000) {
            let immediate = false;
            setImmediate(() => { immediate = true; });
            setTimeout(() => { console.log(immediate ? 'timer fired' : 'no immediate'); process.exit(0); }, 20);
          }
          await f.send(x);
        }
      })();`;
    const r = await runNodeChild(code, 30_000);
    t.is(r.out.trim(), 'timer fired', runtime);
  }
});

test('a loop of sends the kernel takes at once still lets timers run: UDP sendTo and send, TCP write and framed send', async (t) => {
  // The TCP peer is this process (a node:net server that reads everything): the kernel keeps
  // taking the child's writes, so none of them ever has to wait.
  const port = await readingServer(t, () => {});
  const loops: Record<string, string> = {
    sendTo: `const u = await UdpSocket.bind('127.0.0.1:0'); const to = u.localAddr(); const b = Buffer.alloc(100);
      for (;;) await u.sendTo(b, to);`,
    send: `const u = await UdpSocket.bind('127.0.0.1:0'); await u.connect(u.localAddr()); const b = Buffer.alloc(100);
      for (;;) await u.send(b);`,
    write: `const c = await TcpStream.connect('127.0.0.1:${port}'); const b = Buffer.alloc(64);
      for (;;) await c.write(b);`,
    framed: `const f = framed(await TcpStream.connect('127.0.0.1:${port}'), new LinesCodec());
      for (;;) await f.send('a line');`,
  };
  for (const [name, loop] of Object.entries(loops)) {
    const code = `
      const { UdpSocket, TcpStream, framed, LinesCodec } = require('kyoto');
      const { Worker } = require('node:worker_threads');
      // A watchdog off the JS thread: a starved loop would never run a timer of its own.
      new Worker("setTimeout(() => { require('fs').writeSync(1, 'starved'); process.kill(process.pid, 'SIGKILL'); }, 10000)", { eval: true }).unref();
      (async () => {
        setTimeout(() => { console.log('timer fired'); process.exit(0); }, 100);
        ${loop}
      })().catch((e) => { console.log('loop failed', e); process.exit(1); });`;
    const r = await runNodeChild(code, 30_000);
    t.is(r.out.trim(), 'timer fired', name);
  }
});

test('shutting down the default runtime ends this thread’s sockets made without a runtime; writes acknowledged before still arrive, and new sockets work', async (t) => {
  // In a child: the shutdown ends every default socket of the thread, the other tests' included.
  const received: Buffer[] = [];
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', (d) => received.push(d));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const code = `
    const { Runtime, TcpListener, TcpStream, UdpSocket, copy } = require('kyoto');
    const outcome = (p) => p.then(() => 'resolved', (e) => e.code);
    (async () => {
      const l = await TcpListener.bind('127.0.0.1:0');
      const accepting = outcome(l.accept()); // nobody connects
      const a = await TcpStream.connect('127.0.0.1:${port}');
      await a.write('acknowledged before the shutdown');
      const l2 = await TcpListener.bind('127.0.0.1:0');
      const b = await TcpStream.connect(l2.localAddr());
      const [bs] = await l2.accept();
      const reading = outcome(b.read(Buffer.alloc(16)));
      const echo = outcome(copy(bs, bs));
      const u = await UdpSocket.bind('127.0.0.1:0');
      const receiving = outcome(u.recv(Buffer.alloc(16)));
      const uAddr = u.localAddr(); // its descriptor closes with the runtime
      const l4 = await TcpListener.bind('127.0.0.1:0');
      const d = await TcpStream.connect(l4.localAddr());
      const [ds] = await l4.accept();
      const lateCopy = outcome(copy(ds, d)); // its native part starts after the shutdown below
      await Runtime.default().shutdown();
      const r = {
        pending: await Promise.all([accepting, reading, echo, receiving, lateCopy]),
        later: await Promise.all([outcome(a.write('after')), outcome(b.read(Buffer.alloc(4))), outcome(l.accept()), outcome(u.sendTo('x', uAddr))]),
      };
      for (const x of [l, a, l2, b, bs, u, l4, d, ds]) x.close();
      // A fresh default: new sockets work.
      const l3 = await TcpListener.bind('127.0.0.1:0');
      const c = await TcpStream.connect(l3.localAddr());
      const [cs] = await l3.accept();
      await c.writeAll('ping');
      const buf = Buffer.alloc(4);
      await cs.readExact(buf);
      r.fresh = buf.toString();
      console.log(JSON.stringify(r));
      process.exit(0);
    })();`;
  const r = await runNodeChild(code, 30_000);
  const shut = 'ERR_RUNTIME_SHUTDOWN';
  t.deepEqual(JSON.parse(r.out), { pending: [shut, shut, shut, shut, shut], later: [shut, shut, shut, shut], fresh: 'ping' });
  await withTimeout(
    (async () => {
      while (Buffer.concat(received).toString() !== 'acknowledged before the shutdown') await new Promise((res) => setTimeout(res, 10));
    })(),
    5000,
    'the acknowledged write',
  );
});

test('the peer of a stream on a Runtime that shut down reads the acknowledged writes, then end of stream, without close()', async (t) => {
  // The stream's peer lives on the default runtime; nothing closes the stream on the dead one.
  const kinds = process.platform === 'win32' ? (['tcp'] as const) : (['tcp', 'unix'] as const);
  for (const flavor of ['current_thread', 'multi_thread'] as const) {
    for (const kind of kinds) {
      const what = `${flavor}, ${kind}`;
      const rt = new Runtime({ flavor, workerThreads: flavor === 'multi_thread' ? 1 : undefined });
      const p = sockPath('eof');
      const l = kind === 'tcp' ? await TcpListener.bind('127.0.0.1:0') : await UnixListener.bind(p);
      const accepted = l.accept();
      const c = kind === 'tcp' ? await TcpStream.connect(l.localAddr(), { runtime: rt }) : await UnixStream.connect(p, { runtime: rt });
      const [s] = await accepted;
      t.teardown(() => {
        for (const x of [l, s, c]) x.close();
      });
      const payload = Buffer.alloc(256 * 1024, 7);
      // The peer reads from the start: 256 KiB is more than a Unix socket's kernel buffers hold, and
      // the multi_thread data path reads only while a read is pending (no read-ahead), so a peer that
      // had not started would hold writeAll() back forever.
      const reading = s.readToEnd();
      await c.writeAll(payload); // acknowledged: it must arrive
      await c.write('last');
      await rt.shutdown();
      const got = await withTimeout(reading, 10_000, `${what}: the peer's read to end of stream`);
      t.is(got.length, payload.length + 4, what);
      t.is(got.subarray(payload.length).toString(), 'last', what);
      // The dead stream keeps failing with the runtime's error, and close() stays harmless.
      await t.throwsAsync(withTimeout(c.write('more'), 5000, `${what}: write`), { code: 'ERR_RUNTIME_SHUTDOWN' }, what);
      await t.throwsAsync(withTimeout(c.read(Buffer.alloc(4)), 5000, `${what}: read`), { code: 'ERR_RUNTIME_SHUTDOWN' }, what);
      c.close();
      c.close();
    }
  }
});

test('a listener on a Runtime that shut down refuses new connections without close()', async (t) => {
  const kinds = process.platform === 'win32' ? (['tcp'] as const) : (['tcp', 'unix'] as const);
  for (const flavor of ['current_thread', 'multi_thread'] as const) {
    for (const kind of kinds) {
      const what = `${flavor}, ${kind}`;
      const rt = new Runtime({ flavor, workerThreads: flavor === 'multi_thread' ? 1 : undefined });
      const p = sockPath('refuse');
      const l = kind === 'tcp' ? await TcpListener.bind('127.0.0.1:0', { runtime: rt }) : await UnixListener.bind(p, { runtime: rt });
      const addr = l.localAddr();
      t.teardown(() => l.close());
      await rt.shutdown();
      const err = await t.throwsAsync(
        withTimeout(kind === 'tcp' ? TcpStream.connect(addr) : UnixStream.connect(p), 5000, `${what}: connect`),
        undefined,
        what,
      );
      t.true(['ECONNREFUSED', 'ENOENT'].includes((err as { code?: string }).code ?? ''), `${what}: ${String((err as { code?: string }).code)}`);
      await t.throwsAsync(withTimeout(l.accept(), 5000, `${what}: accept`), { code: 'ERR_RUNTIME_SHUTDOWN' }, what);
      l.close();
      l.close();
    }
  }
});

test('a Runtime that shut down gives back its sockets’ descriptors without close() or GC', async (t) => {
  if (process.platform !== 'linux') {
    t.pass('descriptors are counted through /proc/self/fd');
    return;
  }
  for (const flavor of ['current_thread', 'multi_thread']) {
    // In a child: the count is the process's, which the other tests of this file change.
    const code = `
      const fs = require('node:fs');
      const os = require('node:os');
      const path = require('node:path');
      const { Runtime, TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream } = require('kyoto');
      const fds = () => fs.readdirSync('/proc/self/fd').length;
      (async () => {
        const l = await TcpListener.bind('127.0.0.1:0');
        const p = path.join(os.tmpdir(), 'kyoto-fd-' + process.pid + '.sock');
        const ul = await UnixListener.bind(p);
        // Warm up the default side (its runtime and data path) and the addon's descriptors.
        const w = new Runtime({ flavor: '${flavor}', workerThreads: 1 });
        const wc = await TcpStream.connect(l.localAddr(), { runtime: w });
        const [ws] = await l.accept();
        wc.close(); ws.close();
        await w.shutdown();
        await new Promise((r) => setTimeout(r, 50));
        const before = fds();
        const rt = new Runtime({ flavor: '${flavor}', workerThreads: 1 });
        const o = { runtime: rt };
        const c = await TcpStream.connect(l.localAddr(), o);
        const [s] = await l.accept();
        const uc = await UnixStream.connect(p, o);
        const [us] = await ul.accept();
        const keep = [c, uc, await TcpListener.bind('127.0.0.1:0', o), await UdpSocket.bind('127.0.0.1:0', o), ...UnixStream.pair(o), ...UnixDatagram.pair(o)];
        await rt.shutdown();
        // The peers see end of stream once the dead runtime's streams closed; then they go too.
        await s.readToEnd(); await us.readToEnd();
        s.close(); us.close();
        let after = fds();
        for (let i = 0; i < 100 && after > before; i++) {
          await new Promise((r) => setTimeout(r, 20));
          after = fds();
        }
        for (const x of keep) x.close();
        l.close(); ul.close();
        console.log(JSON.stringify({ leaked: after - before }));
        process.exit(0);
      })();`;
    const r = await runNodeChild(code, 30_000);
    t.deepEqual(JSON.parse(r.out || '{}'), { leaked: 0 }, flavor);
  }
});

test('a listener on a runtime that shut down no longer keeps the process alive', (t) => {
  const script = `
    const { Runtime, TcpListener } = require('kyoto');
    (async () => {
      const rt = new Runtime({ workerThreads: 1 });
      const idle = await TcpListener.bind('127.0.0.1:0', { runtime: rt });
      const waiting = await TcpListener.bind('127.0.0.1:0', { runtime: rt });
      waiting.accept().catch((e) => console.log(e.code));
      await rt.shutdown();
      idle.ref(); // cannot hold a process for a runtime that is gone
    })();
  `;
  const out = execFileSync(process.execPath, ['-e', script], { cwd: packageRoot, encoding: 'utf8', timeout: 20_000 });
  t.is(out.trim(), 'ERR_RUNTIME_SHUTDOWN');
});

test('a Unix datagram socket on a runtime that shut down refuses sends and receives with ERR_RUNTIME_SHUTDOWN', async (t) => {
  if (process.platform === 'win32') {
    t.throws(() => UnixDatagram.pair(), { code: 'ERR_FEATURE_UNAVAILABLE_ON_PLATFORM' });
    return;
  }
  const rt = new Runtime({ flavor: 'multi_thread', workerThreads: 1 });
  const [a, b] = UnixDatagram.pair({ runtime: rt });
  const recv = b.recv(Buffer.alloc(16));
  await rt.shutdown();
  const code = { code: 'ERR_RUNTIME_SHUTDOWN' };
  await t.throwsAsync(withTimeout(recv, 5000, 'recv'), code);
  await t.throwsAsync(withTimeout(b.recvMany(4), 5000, 'recvMany'), code);
  await t.throwsAsync(withTimeout(a.send('x'), 5000, 'send'), code);
  await t.throwsAsync(withTimeout(a.sendMany([{ data: 'x' }]), 5000, 'sendMany'), code);
  a.close();
  b.close();
});

test('options.runtime of a socket must be a Runtime', async (t) => {
  const bad = { runtime: {} as Runtime };
  const shape = { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' };
  await t.throwsAsync(TcpListener.bind('127.0.0.1:0', bad), shape);
  await t.throwsAsync(TcpStream.connect('127.0.0.1:1', bad), shape);
  await t.throwsAsync(UdpSocket.bind('127.0.0.1:0', bad), shape);
});

test('the default runtime given explicitly keeps the thread’s own data path', async (t) => {
  const l = await TcpListener.bind('127.0.0.1:0', { runtime: Runtime.default() });
  const accepted = l.accept();
  const c = await TcpStream.connect(l.localAddr(), { runtime: Runtime.default() });
  const [s] = await accepted;
  await c.writeAll('x');
  t.is(await s.read(Buffer.alloc(4)), 1);
  c.close();
  s.close();
  l.close();
});

test('a process whose sockets on a custom runtime are closed exits on its own', (t) => {
  const script = `
    const { Runtime, TcpListener, TcpStream } = require('kyoto');
    (async () => {
      const rt = new Runtime({ workerThreads: 1 });
      const l = await TcpListener.bind('127.0.0.1:0', { runtime: rt });
      const accepted = l.accept();
      const c = await TcpStream.connect(l.localAddr(), { runtime: rt });
      const [s] = await accepted;
      await c.writeAll('bye');
      const b = Buffer.alloc(8);
      const n = await s.read(b);
      c.close(); s.close(); l.close();
      console.log('read ' + n);
    })();
  `;
  const out = execFileSync(process.execPath, ['-e', script], { cwd: packageRoot, encoding: 'utf8', timeout: 20_000 });
  t.is(out.trim(), 'read 3');
});
