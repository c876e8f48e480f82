// Write order under backpressure, run by net-write-order.spec.ts (default data path) and
// net-write-order-mt.spec.ts (multi_thread): writes made while earlier ones wait for room go out
// after them, also when they are made in the turn where room comes back.
import test from 'ava';
import { TcpListener, TcpSocket, TcpStream, netFlavor } from 'kyoto';
import { realDelay, withTimeout } from './helpers';

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
}
