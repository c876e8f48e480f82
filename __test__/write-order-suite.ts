// Write order under backpressure, run by net-write-order.spec.ts (default data path) and
// net-write-order-mt.spec.ts (multi_thread): writes made while earlier ones wait for room go out
// after them, also when they are made in the turn where room comes back; and flush() waits for
// its own bytes, whatever drain notices are already on their way.
import test from 'ava';
import { createRequire } from 'node:module';
import { TcpListener, TcpSocket, TcpStream, netFlavor } from 'kyoto';
import { realDelay, smallBufferTcpPair, withTimeout } from './helpers';

/** The native drain probe: 1 while a stream still has bytes queued in kyoto. */
const { native } = createRequire(__filename)('../lib/native.js') as { native: { netDrain(h: number): number } };

async function pair(smallSendBuffer: boolean): Promise<[TcpStream, TcpStream]> {
  const l = await TcpListener.bind('127.0.0.1:0');
  const sock = TcpSocket.v4();
  if (smallSendBuffer) sock.setSendBufferSize(8192);
  const [c, [s]] = await Promise.all([sock.connect(l.localAddr()), l.accept()]);
  l.close();
  return [c, s];
}

export function defineWriteOrderTests(): void {
  test(`writes made from read continuations while earlier writes wait for room arrive in order (${netFlavor})`, async (t) => {
    t.timeout(60_000);
    const [x, xPeer] = await pair(false);
    const [y, yPeer] = await pair(true);
    const N = 8000;
    const SIZE = 4096;
    let pinging = true;
    // Reads on x are resolved in the same native batches as y's drains.
    const pinger = (async () => {
      while (pinging) {
        await xPeer.write('x');
        await new Promise((r) => setImmediate(r));
      }
    })().catch(() => {});
    let outOfOrder = 0;
    const reader = (async () => {
      const buf = Buffer.alloc(SIZE);
      for (let expect = 0; expect < N; expect++) {
        await yPeer.readExact(buf);
        if (buf.readUInt32BE(0) !== expect) outOfOrder++;
        if (expect % 16 === 0) await realDelay(1); // a slow reader: y's writes wait for room
      }
    })();
    let seq = 0;
    const one = Buffer.alloc(64);
    const writes: Promise<unknown>[] = [];
    while (seq < N) {
      await x.read(one);
      for (let k = 0; k < 8 && seq < N; k++) {
        const b = Buffer.alloc(SIZE);
        b.writeUInt32BE(seq++, 0);
        writes.push(y.write(b)); // not awaited
      }
    }
    await withTimeout(reader, 50_000, 'the reader');
    pinging = false;
    await Promise.all(writes);
    t.is(outOfOrder, 0);
    for (const s of [x, xPeer, y, yPeer]) s.close();
    await pinger;
  });

  test(`flush() resolves only once its own bytes left kyoto, even with an earlier flush's drain notice on its way (${netFlavor})`, async (t) => {
    t.timeout(60_000);
    let early = 0;
    for (let trial = 0; trial < 10; trial++) {
      const { l, c, s } = await smallBufferTcpPair();
      l.close();
      let reading = true;
      const reader = (async () => {
        const b = Buffer.alloc(16384);
        while (reading && (await s.read(b)) > 0) await realDelay(1);
      })().catch(() => {});
      await c.write('hello');
      const f1 = c.flush();
      const until = Date.now() + 20;
      while (Date.now() < until); // the first flush's drain notice is sent meanwhile
      const w = c.write(Buffer.alloc(1 << 20));
      const f2 = c.flush();
      await f1;
      await f2;
      if (native.netDrain((c as unknown as { _h: number })._h) === 1) early++; // `_h`: the native handle
      await w;
      reading = false;
      c.close();
      s.close();
      await reader;
    }
    t.is(early, 0, `flush() resolved with its bytes still queued in ${early} of 10 trials`);
  });
}
