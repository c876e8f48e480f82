// Datagram queue semantics, run by net-dgram.spec.ts (default data path) and net-dgram-mt.spec.ts
// (KYOTO_NET_FLAVOR=multi_thread): order across receivers, the bounded queue, sends queued for a
// connected peer, and Unix datagrams larger than a UDP one.
import test from 'ava';
import * as dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { UdpSocket, UnixDatagram } from 'kyoto';
import { UNIX_SOCKETS, isSettled, linuxTestSerial, realDelay, withTimeout } from './helpers';

const unixTest = UNIX_SOCKETS ? test : ((() => {}) as unknown as typeof test);
/** The receive queue's high-water mark (`DGRAM_HWM` in lib/net/common.ts). */
const DGRAM_HWM = 4096;

/** Everything `s` has queued, taken until 200 ms pass without a datagram. */
async function drainQueued(s: UdpSocket): Promise<number> {
  let n = 0;
  for (;;) {
    const got = await s.recvMany(100_000, { signal: AbortSignal.timeout(200) }).catch(() => undefined);
    if (got === undefined) return n;
    n += got.length;
  }
}

export function defineDgramTests(): void {
  // Serial: the CPU it measures is the process's, so nothing else of this file may run meanwhile.
  // Linux: there a full receiver makes a send wait (EAGAIN) rather than fail.
  linuxTestSerial('an unbound UnixDatagram whose sendTo waits for a full receiver does not spin a CPU, and its datagrams arrive in order', async (t) => {
    t.timeout(60_000);
    const dir = mkdtempSync(path.join(tmpdir(), 'kyoto-dgram-'));
    const to = path.join(dir, 'rx.sock');
    const rx = UnixDatagram.bind(to);
    const tx = UnixDatagram.unbound();
    // A failed assertion ends the test: the blocked sends must not keep the file running.
    t.teardown(() => {
      rx.close();
      tx.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const N = 300;
    const sends = Array.from({ length: N }, (_, i) => tx.sendTo(`d${i}`, to));
    await realDelay(200);
    t.false(await isSettled(sends[N - 1]), 'the receiver\'s queue is full: the last send waits');
    const cpu0 = process.cpuUsage();
    const wall0 = process.hrtime.bigint();
    await realDelay(1000);
    const cpu = process.cpuUsage(cpu0);
    const wallUs = Number(process.hrtime.bigint() - wall0) / 1000;
    // Before the fix the wait retried the send nonstop (~66 % of a CPU); idle it is ~0 %.
    t.true(cpu.user + cpu.system < 0.3 * wallUs, `${Math.round((cpu.user + cpu.system) / 1000)} ms of CPU in ${Math.round(wallUs / 1000)} ms`);
    const buf = Buffer.alloc(16);
    const got: string[] = [];
    for (let i = 0; i < N; i++) got.push(buf.subarray(0, await withTimeout(rx.recv(buf), 5000, `datagram ${i}`)).toString());
    t.deepEqual(got, Array.from({ length: N }, (_, i) => `d${i}`));
    t.deepEqual(await withTimeout(Promise.all(sends), 5000, 'the sends'), Array.from({ length: N }, (_, i) => `d${i}`.length));
  });

  test('a recvMany burst stops at a receive waiting after it: datagrams reach their receivers in order', async (t) => {
    const rx = await UdpSocket.bind('127.0.0.1:0');
    const tx = await UdpSocket.bind('127.0.0.1:0');
    const to = rx.localAddr();
    const buf = Buffer.alloc(16);
    const many = rx.recvMany(10);
    const one = rx.recv(buf).then((n) => buf.subarray(0, n).toString());
    const peekBuf = Buffer.alloc(16);
    const peeked = rx.peekFrom(peekBuf).then(({ bytes }) => peekBuf.subarray(0, bytes).toString());
    await realDelay(20);
    await tx.sendMany(['d1', 'd2', 'd3', 'd4'].map((d) => ({ data: Buffer.from(d), address: to })));
    const first = (await withTimeout(many, 5000, 'recvMany')).map((d) => d.data.toString());
    const second = await withTimeout(one, 5000, 'recv');
    const third = await withTimeout(peeked, 5000, 'peekFrom');
    // Whatever size the first burst had, it is a prefix, and the others follow it in order.
    const all = ['d1', 'd2', 'd3', 'd4'];
    t.deepEqual(first, all.slice(0, first.length));
    t.is(second, all[first.length]);
    t.is(third, all[first.length + 1], 'the waiting peek sees the datagram after the receive\'s');
    rx.close();
    tx.close();
  });

  test('receives made while the queue is over its limit do not restart reading: a flood queues a bounded number of datagrams', async (t) => {
    t.timeout(30_000);
    const rx = await UdpSocket.bind('127.0.0.1:0');
    const { port } = rx.localAddr();
    const tx = dgram.createSocket('udp4');
    const buf = Buffer.alloc(64);
    tx.send('start', port, '127.0.0.1');
    await withTimeout(rx.recv(buf), 5000, 'the first datagram');
    let flooding = true;
    let sent = 0;
    const pump = (): void => {
      if (!flooding) return;
      for (let i = 0; i < 50; i++, sent++) tx.send(Buffer.alloc(8), port, '127.0.0.1');
      setTimeout(pump, 1);
    };
    pump();
    await realDelay(1000);
    // Each of these takes one datagram; before the fix each also switched reading back on.
    for (let i = 0; i < 150; i++) {
      await rx.recv(buf);
      await realDelay(4);
    }
    flooding = false;
    await realDelay(300);
    const queued = await drainQueued(rx);
    t.true(sent > 4 * DGRAM_HWM, `the flood sent ${sent}`);
    t.true(queued <= DGRAM_HWM + 1024, `${queued} datagrams were queued (the limit is ${DGRAM_HWM})`);
    rx.close();
    tx.close();
  });

  test('after connect(), datagrams that other senders sent before it are not received; the peer\'s are, in order', async (t) => {
    const rx = await UdpSocket.bind('127.0.0.1:0');
    const peer = await UdpSocket.bind('127.0.0.1:0');
    const other = await UdpSocket.bind('127.0.0.1:0');
    const to = rx.localAddr();
    // Sent before the connect, nobody receiving yet: they sit in kyoto's queue or the kernel's.
    await other.sendTo('other 1', to);
    await peer.sendTo('peer 1', to);
    await other.sendTo('other 2', to);
    await realDelay(50);
    await rx.connect(peer.localAddr());
    t.deepEqual(rx.peerAddr(), peer.localAddr());
    await other.sendTo('other 3', to);
    await peer.sendTo('peer 2', to);
    const got: string[] = [];
    const buf = Buffer.alloc(64);
    for (let i = 0; i < 2; i++) {
      const { bytes, address } = await withTimeout(rx.recvFrom(buf), 5000, 'recvFrom');
      t.deepEqual(address, peer.localAddr());
      got.push(buf.subarray(0, bytes).toString());
    }
    t.deepEqual(got, ['peer 1', 'peer 2']);
    rx.disconnect();
    t.throws(() => rx.peerAddr(), { code: 'ENOTCONN' });
    for (const s of [rx, peer, other]) s.close();
  });

  test('sends queued for the connected peer still reach it when the socket disconnects or connects elsewhere right after', async (t) => {
    const p1 = await UdpSocket.bind('127.0.0.1:0');
    const p2 = await UdpSocket.bind('127.0.0.1:0');
    const s = await UdpSocket.bind('127.0.0.1:0');
    const buf = Buffer.alloc(64);
    const got = async (p: UdpSocket): Promise<string> => {
      const n = await withTimeout(p.recv(buf), 5000, 'a datagram');
      return buf.subarray(0, n).toString();
    };
    await s.connect(p1.localAddr());
    const sent = s.send('to p1, then disconnect');
    s.disconnect();
    t.is(await sent, 22);
    t.is(await got(p1), 'to p1, then disconnect');
    await s.connect(p1.localAddr());
    void s.send('to p1, then p2');
    await s.connect(p2.localAddr());
    await s.send('to p2');
    t.is(await got(p1), 'to p1, then p2');
    t.is(await got(p2), 'to p2');
    const after = await s.recv(buf, { signal: AbortSignal.timeout(100) }).then(() => 'a datagram', (e: Error) => e.name);
    t.is(after, 'TimeoutError', 'no send error reached the receive');
    const p1Addr = p1.localAddr();
    for (const x of [p1, p2, s]) x.close();
    await t.throwsAsync(s.connect(p1Addr), { code: 'ERR_SOCKET_CLOSED' });
  });

  unixTest('a Unix datagram larger than a UDP one arrives whole, to recvFrom and recvMany', async (t) => {
    const [a, b] = UnixDatagram.pair();
    const big = Buffer.alloc(100_000, 7);
    big[99_999] = 9;
    t.is(await a.send(big), 100_000);
    const { bytes } = await withTimeout(b.recvFrom(Buffer.alloc(200_000)), 5000, 'recvFrom');
    t.is(bytes, 100_000);
    await a.send(big);
    const [d] = await withTimeout(b.recvMany(4), 5000, 'recvMany');
    t.is(d.data.length, 100_000);
    t.is(d.data[99_999], 9);
    a.close();
    b.close();
    t.throws(() => b.connect('/nonexistent'), { code: 'ERR_SOCKET_CLOSED' });
  });
}
