// Waiting calls of kyoto/net and kyoto/io: the `{ signal }` every one of them takes (API.md: "Every
// method that waits takes a last { signal?: AbortSignal } option"), sends that wait for room,
// ref()/unref(), and the fixes that came with them (setLinger's unit, a write half's close()).
import test from 'ava';
import { Duplex } from 'node:stream';
import { TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixStream, type DuplexStream, type ReadHalf } from '../index';
import { BufReader, LinesCodec, copy, copyBidirectional, duplex, framed, type Reader, type Writer } from '../index';
import { UNIX_SOCKETS, isSettled, realDelay, runNodeChild, smallBufferTcpPair, tcpPair, unixTest, withTimeout } from './helpers';


const NOT_SIGNALS: unknown[] = ['x', null, {}, { aborted: false }, 1];

test('every waiting call rejects a signal that is not an AbortSignal with a TypeError ERR_INVALID_ARG_TYPE, whether or not it would wait', async (t) => {
  const { c: c, s: s, l: l } = await tcpPair();
  await s.write('data waiting\n');
  await withTimeout(c.peek(Buffer.alloc(1)), 5000, 'data');
  const u = await UdpSocket.bind('127.0.0.1:0');
  await u.connect(u.localAddr());
  const [d1, d2] = duplex(64);
  await d2.write('line\n');
  const f = framed(d1, new LinesCodec());
  const buf = Buffer.alloc(16);
  const calls: Array<[string, (o: never) => Promise<unknown>]> = [
    ['TcpStream.read', (o) => c.read(buf, o)],
    ['TcpStream.peek', (o) => c.peek(buf, o)],
    ['TcpStream.readChunk', (o) => c.readChunk(o)],
    ['TcpStream.readExact', (o) => c.readExact(buf, o)],
    ['TcpStream.readToEnd', (o) => c.readToEnd(o)],
    ['TcpStream.write', (o) => c.write('x', o)],
    ['TcpStream.writeAll', (o) => c.writeAll('x', o)],
    ['TcpStream.flush', (o) => c.flush(o)],
    ['TcpStream.shutdown', (o) => c.shutdown(o)],
    ['TcpListener.accept', (o) => l.accept(o)],
    ['UdpSocket.recv', (o) => u.recv(buf, o)],
    ['UdpSocket.recvFrom', (o) => u.recvFrom(buf, o)],
    ['UdpSocket.peekFrom', (o) => u.peekFrom(buf, o)],
    ['UdpSocket.recvMany', (o) => u.recvMany(4, o)],
    ['UdpSocket.send', (o) => u.send('x', o)],
    ['UdpSocket.sendTo', (o) => u.sendTo('x', u.localAddr(), o)],
    ['UdpSocket.sendMany', (o) => u.sendMany([{ data: Buffer.from('x'), address: u.localAddr() }], o)],
    ['DuplexStream.read', (o) => d1.read(buf, o)],
    ['DuplexStream.write', (o) => d1.write('x', o)],
    ['framed.send', (o) => f.send('x', o)],
    ['BufReader.readLine', (o) => new BufReader(d1).readLine(o)],
    ['copy', (o) => copy(d1, d2, o)],
    ['copyBidirectional', (o) => copyBidirectional(d1, d2, o)],
  ];
  for (const [name, call] of calls) {
    for (const signal of NOT_SIGNALS) {
      await t.throwsAsync(
        () => call({ signal } as never),
        { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' },
        `${name} with signal ${JSON.stringify(signal)}`,
      );
    }
  }
  // Nothing was consumed or sent by the refused calls.
  t.is((await withTimeout(c.readChunk(), 5000, 'read'))!.toString(), 'data waiting\n');
  c.close();
  s.close();
  l.close();
  u.close();
});

test('an already aborted signal rejects a read, an accept or a receive even when its result is waiting', async (t) => {
  const { c: c, s: s, l: l } = await tcpPair();
  await s.write('ready');
  await withTimeout(c.peek(Buffer.alloc(1)), 5000, 'data');
  const signal = AbortSignal.abort();
  await t.throwsAsync(c.read(Buffer.alloc(8), { signal }), { code: 'ABORT_ERR' });
  await t.throwsAsync(c.readChunk({ signal }), { code: 'ABORT_ERR' });
  await t.throwsAsync(c.peek(Buffer.alloc(8), { signal }), { code: 'ABORT_ERR' });
  t.is((await c.readChunk())!.toString(), 'ready', 'the refused reads left the data');

  const queued = TcpStream.connect(l.localAddr());
  const c2 = await queued;
  const reason = new Error('stop');
  const aborted = new AbortController();
  aborted.abort(reason);
  await new Promise((r) => setTimeout(r, 50)); // the connection reaches the listener's queue
  await t.throwsAsync(l.accept({ signal: aborted.signal }), { is: reason });
  const [s2] = await withTimeout(l.accept(), 5000, 'accept');
  s2.close();

  const u = await UdpSocket.bind('127.0.0.1:0');
  await u.sendTo('dgram', u.localAddr());
  await withTimeout(u.peekFrom(Buffer.alloc(8)), 5000, 'datagram');
  await t.throwsAsync(u.recvFrom(Buffer.alloc(8), { signal }), { code: 'ABORT_ERR' });
  await t.throwsAsync(u.sendTo('x', u.localAddr(), { signal }), { code: 'ABORT_ERR' });
  t.is((await u.recvMany(8)).length, 1, 'neither the refused receive nor the refused send touched the queue');
  for (const x of [c, s, c2, u]) x.close();
  l.close();
});

test('an aborted readToEnd or readExact loses no bytes: the next read gets what it had read, on TCP, Unix and duplex() streams, and through a read half', async (t) => {
  const pairs: Array<[string, () => Promise<[{ write(d: string): Promise<number>; shutdown(): Promise<void>; close(): void }, TcpStream | DuplexStream | ReadHalf, () => void]>]> = [
    ['tcp', async () => {
      const { l, c, s } = await tcpPair();
      return [c, s, () => [l, c, s].forEach((x) => x.close())];
    }],
    ['tcp read half', async () => {
      const { l, c, s } = await tcpPair();
      const [rh] = s.split();
      return [c, rh, () => [l, c, s].forEach((x) => x.close())];
    }],
    ['duplex', async () => {
      const [a, b] = duplex(1024);
      return [a, b, () => [a, b].forEach((x) => x.close())];
    }],
  ];
  if (UNIX_SOCKETS) {
    pairs.push(['unix', async () => {
      const [a, b] = UnixStream.pair();
      return [a, b, () => [a, b].forEach((x) => x.close())];
    }]);
  }
  for (const [what, make] of pairs) {
    const [w, r, done] = await make();
    try {
      // readToEnd: two pieces arrive, no end of stream; the wait is aborted.
      await w.write('abc');
      const ac = new AbortController();
      const all = r.readToEnd({ signal: ac.signal });
      await realDelay(20);
      await w.write('def');
      await realDelay(20);
      ac.abort();
      await t.throwsAsync(all, { code: 'ABORT_ERR' }, what);
      // readExact: those 6 bytes and 3 more, of 16; aborted.
      const ac2 = new AbortController();
      const buf = Buffer.alloc(16);
      const exact = r.readExact(buf, { signal: ac2.signal });
      await w.write('ghi');
      await realDelay(20);
      ac2.abort();
      await t.throwsAsync(exact, { code: 'ABORT_ERR' }, what);
      await w.write('jkl');
      await w.shutdown();
      t.is(String(await withTimeout(r.readToEnd(), 5000, what)), 'abcdefghijkl', what);
    } finally {
      done();
    }
  }
});

test('shutdown() waits under a signal without losing its idempotence: an aborted wait leaves the FIN going out', async (t) => {
  const { c: c, s: s, l: l } = await tcpPair();
  const ac = new AbortController();
  ac.abort();
  await t.throwsAsync(c.shutdown({ signal: ac.signal }), { code: 'ABORT_ERR' });
  await c.write('still open');
  const live = new AbortController();
  await c.shutdown({ signal: live.signal });
  await c.shutdown();
  await c.shutdown({ signal: new AbortController().signal });
  t.is((await withTimeout(s.readToEnd(), 5000, 'read to EOF')).toString(), 'still open');
  c.close();
  s.close();
  l.close();
});

unixTest('a datagram send waiting for room rejects with ERR_SOCKET_CLOSED when its socket closes, and an aborted one with the reason', async (t) => {
  const [a, b] = UnixDatagram.pair();
  const big = Buffer.alloc(8192);
  const sends: Array<Promise<number>> = [];
  // Until the receiver's queue is full, so that the later sends wait for room.
  for (let i = 0; i < 4000; i++) sends.push(a.send(big));
  const outcomes = sends.map((p) => p.then(() => 'sent', (e: { code?: string }) => e.code));
  await new Promise((r) => setTimeout(r, 100));
  const last = sends[sends.length - 1];
  t.false(await isSettled(last), 'the receiver is not reading: the last send waits');

  const reason = new Error('gave up');
  const ac = new AbortController();
  const waiting = a.send(big, { signal: ac.signal });
  ac.abort(reason);
  await t.throwsAsync(waiting, { is: reason });

  a.close();
  const codes = await withTimeout(Promise.all(outcomes), 5000, 'every send settles once the socket closed');
  t.true(codes.includes('sent'));
  t.true(codes.includes('ERR_SOCKET_CLOSED'));
  t.deepEqual(new Set(codes), new Set(['sent', 'ERR_SOCKET_CLOSED']));
  await t.throwsAsync(a.send(big), { code: 'ERR_SOCKET_CLOSED' });
  b.close();
});

unixTest('a Unix datagram socket peeks, receives in batches and sends in batches like a UDP socket', async (t) => {
  const [a, b] = UnixDatagram.pair();
  t.is(await a.sendMany([{ data: Buffer.from('one') }, { data: 'two' }, { data: Buffer.from('three') }]), 3);
  const buf = Buffer.alloc(16);
  const p1 = await withTimeout(b.peekFrom(buf), 5000, 'peek');
  const p2 = await b.peekFrom(buf);
  t.is(p1.bytes, 3);
  t.deepEqual(p2, p1);
  t.is(buf.toString('utf8', 0, 3), 'one');
  const batch = await withTimeout(b.recvMany(8), 5000, 'recvMany');
  t.deepEqual(
    batch.map((d) => d.data.toString()),
    ['one', 'two', 'three'],
  );
  t.deepEqual(batch[0].address, { path: '' });
  await t.throwsAsync(b.recvMany(0), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  await t.throwsAsync(b.sendMany('x' as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  await t.throwsAsync(b.sendMany([null] as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  await t.throwsAsync(a.send(42 as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  t.is(a.unref(), a);
  t.is(a.ref(), a);
  a.close();
  b.close();
});

test('UDP sends reject bad data instead of throwing, and sendTo looks up a host name', async (t) => {
  const u = await UdpSocket.bind('127.0.0.1:0');
  const r = await UdpSocket.bind('127.0.0.1:0');
  await u.connect(r.localAddr());
  await t.throwsAsync(() => u.send(42 as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  await t.throwsAsync(() => u.sendMany([null] as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => u.joinMulticastV4(1 as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => u.leaveMulticastV4('239.1.2.3', 7 as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  await u.sendTo('by name', `localhost:${r.localAddr().port}`);
  const got = await withTimeout(r.recvFrom(Buffer.alloc(16)), 5000, 'datagram');
  t.is(got.bytes, 7);
  t.is(u.unref(), u);
  t.is(u.ref(), u);
  u.close();
  r.close();
});

test('stream and UDP socket ref()/unref() decide whether a pending wait keeps the process alive', async (t) => {
  const child = await runNodeChild(
    `const { TcpListener, TcpStream, UdpSocket } = require('kyoto/net');
     (async () => {
       const l = await TcpListener.bind('127.0.0.1:0');
       const c = await TcpStream.connect(l.localAddr());
       const [s] = await l.accept();
       l.close();
       const u = await UdpSocket.bind('127.0.0.1:0');
       c.unref().read(Buffer.alloc(8)).catch(() => {});
       u.unref().recv(Buffer.alloc(8)).catch(() => {});
       s.unref();
       console.log('waiting');
     })();`,
    20_000,
  );
  t.false(child.timedOut, 'unref()ed reads and receives let the process exit');
  t.is(child.out.trim(), 'waiting');

  const held = await runNodeChild(
    `const { TcpListener, TcpStream } = require('kyoto/net');
     (async () => {
       const l = await TcpListener.bind('127.0.0.1:0');
       const c = await TcpStream.connect(l.localAddr());
       const [s] = await l.accept();
       l.close();
       c.unref().ref();
       setTimeout(() => { console.log('still alive'); c.close(); s.close(); }, 100).unref();
       await c.read(Buffer.alloc(8)).catch((e) => console.log(e.code));
     })();`,
    20_000,
  );
  t.false(held.timedOut);
  t.deepEqual(held.out.trim().split('\n'), ['still alive', 'ERR_SOCKET_CLOSED']);
});

test('setLinger below a second keeps close() graceful: the peer reads every byte and then EOF, not a reset', async (t) => {
  const { c: c, s: s, l: l } = await tcpPair();
  c.setLinger(500);
  const data = Buffer.alloc(256 * 1024, 7);
  await c.write(data);
  c.close();
  const got = await withTimeout(s.readToEnd(), 10_000, 'read to EOF');
  t.is(got.length, data.length);
  s.close();
  l.close();
});

test("a write half's close() neither throws nor rejects, even on a closed stream, and its FIN reaches the peer", async (t) => {
  const { c: c, s: s, l: l } = await tcpPair();
  const [r, w] = c.split();
  await w.write('bye');
  t.is(w.close() as unknown, undefined);
  t.is((await withTimeout(s.readToEnd(), 5000, 'EOF')).toString(), 'bye');
  r.close();
  t.true(c.closed, 'both halves closed: the stream closed');

  const { c: c2, s: s2, l: l2 } = await tcpPair();
  l2.close();
  const [, w2] = c2.split();
  c2.close();
  let unhandled: unknown;
  const onUnhandled = (e: unknown): void => {
    unhandled = e;
  };
  process.on('unhandledRejection', onUnhandled);
  w2.close();
  await new Promise((res) => setTimeout(res, 50));
  process.off('unhandledRejection', onUnhandled);
  t.is(unhandled, undefined);
  s.close();
  s2.close();
  l.close();
});

test('a copy() whose writer is closed rejects with ERR_SOCKET_CLOSED and leaves its reader readable', async (t) => {
  const { c: c1, s: s1, l: l1 } = await tcpPair();
  const { c: c2, s: s2, l: l2 } = await tcpPair();
  c2.close();
  await t.throwsAsync(copy(s1, c2), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(copy(c2, s1), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(copyBidirectional(s1, c2), { code: 'ERR_SOCKET_CLOSED' });
  await c1.write('hello');
  const buf = Buffer.alloc(8);
  const n = await withTimeout(s1.read(buf), 5000, 'the reader reads again');
  t.is(buf.toString('utf8', 0, n), 'hello');
  for (const x of [c1, s1, s2]) x.close();
  l1.close();
  l2.close();
});

test('copyBidirectional stops the other direction when one fails, through the signal its reads were given', async (t) => {
  const [a, aPeer] = duplex(1024);
  const boom = new Error('boom');
  let otherSignal: AbortSignal | undefined;
  const failing: Reader & Writer = {
    read(_buf: Uint8Array, options?: { signal?: AbortSignal }): Promise<number> {
      otherSignal = options?.signal;
      return new Promise((_res, rej) => options?.signal?.addEventListener('abort', () => rej(options.signal!.reason), { once: true }));
    },
    write(): Promise<number> {
      return Promise.reject(boom);
    },
  };
  const done = copyBidirectional(a, failing);
  await aPeer.write('to the failing writer');
  await t.throwsAsync(withTimeout(done, 5000, 'copyBidirectional settles'), { is: boom });
  t.true(otherSignal?.aborted, "the other direction's read was aborted");
  a.close();
});

test('copy() with a signal can be aborted while its writer has no room', async (t) => {
  const [src, srcPeer] = duplex(1 << 16);
  const [dst] = duplex(16); // nobody reads dst's peer: its pipe fills at 16 bytes
  await srcPeer.write(Buffer.alloc(1024, 1));
  const ac = new AbortController();
  const p = copy(src, dst, { signal: ac.signal });
  await new Promise((r) => setTimeout(r, 20));
  t.false(await isSettled(p));
  const reason = new Error('enough');
  ac.abort(reason);
  await t.throwsAsync(withTimeout(p, 5000, 'abort'), { is: reason });
  src.close();
  dst.close();
});

test('BufReader.readLine rejects an over-long line once, drops the rest of it as it arrives, and returns the next line', async (t) => {
  const [r, w] = duplex(64);
  const br = new BufReader(r, 16);
  const writing = (async () => {
    await w.write('short\n');
    for (let i = 0; i < 50; i++) await w.write('x'.repeat(20));
    await w.write('\r\nnext\nlast');
    await w.shutdown();
  })();
  t.is(await br.readLine({ maxLength: 10 }), 'short');
  await t.throwsAsync(br.readLine({ maxLength: 10 }), { code: 'ERR_LINE_TOO_LONG' });
  t.is(await br.readLine({ maxLength: 10 }), 'next');
  t.is(await br.readLine({ maxLength: 10 }), 'last');
  t.is(await br.readLine(), undefined);
  await writing;
  await t.throwsAsync(br.readLine({ maxLength: -1 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
});

test('a line exactly maxLength long, with or without \\r, is not too long', async (t) => {
  const [r, w] = duplex(1024);
  await w.write('0123456789\r\n0123456789\n');
  await w.shutdown();
  const br = new BufReader(r, 4);
  t.is(await br.readLine({ maxLength: 10 }), '0123456789');
  t.is(await br.readLine({ maxLength: 10 }), '0123456789');
  t.is(await br.readLine({ maxLength: 10 }), undefined);
});

test('toNodeStream() of a duplex() end is a stream.Duplex: ending it ends the peer, and data crosses both ways', async (t) => {
  const [a, b] = duplex(64);
  const node = a.toNodeStream();
  t.true(node instanceof Duplex);
  t.is(a.toNodeStream(), node);
  const chunks: Buffer[] = [];
  node.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise((r) => node.once('end', r));
  node.end('from node');
  t.is((await withTimeout(b.readToEnd(), 5000, 'peer reads to EOF')).toString(), 'from node');
  await b.write('to node');
  await b.shutdown();
  await withTimeout(ended, 5000, "node stream's end");
  t.is(Buffer.concat(chunks).toString(), 'to node');
  node.destroy();
  t.true(a.closed);
});

test('binding and connecting take a signal that also ends the wait for a host name lookup', async (t) => {
  const aborted = AbortSignal.abort();
  await t.throwsAsync(UdpSocket.bind('127.0.0.1:0', { signal: aborted }), { code: 'ABORT_ERR' });
  await t.throwsAsync(UdpSocket.bind('127.0.0.1:0', { signal: 'x' as never }), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  const u = await UdpSocket.bind('127.0.0.1:0', { signal: new AbortController().signal });
  await t.throwsAsync(u.connect('127.0.0.1:9', { signal: aborted }), { code: 'ABORT_ERR' });
  // A name that goes through the resolver: the abort rejects the call while the lookup runs.
  const ac = new AbortController();
  const reason = new Error('no time');
  const connecting = u.connect('kyoto-test.invalid:9', { signal: ac.signal });
  ac.abort(reason);
  await t.throwsAsync(connecting, { is: reason });
  const listening = TcpListener.bind('kyoto-test.invalid:0', { signal: ac.signal });
  await t.throwsAsync(listening, { is: reason });
  const l = await TcpListener.bind('127.0.0.1:0');
  const connectAc = new AbortController();
  const stream = TcpStream.connect(`kyoto-test.invalid:${l.localAddr().port}`, { signal: connectAc.signal });
  connectAc.abort(reason);
  await t.throwsAsync(stream, { is: reason });
  u.close();
  l.close();
});

test('a stream closed while it still owes its peer bytes drops what the peer sends, so a peer that writes before it reads still gets every byte', async (t) => {
  // Small kernel buffers, so that acknowledged bytes are still in kyoto's own backlog at close().
  const { l, c, s } = await smallBufferTcpPair();
  const owed = Buffer.alloc(8 << 20);
  for (let i = 0; i < owed.length; i += 4) owed.writeUInt32LE(i, i);
  // Write while writes resolve (their bytes acknowledged) and the peer reads nothing; then close.
  const chunk = 16 * 1024;
  let acked = 0;
  while (acked < owed.length) {
    const w = c.write(owed.subarray(acked, acked + chunk));
    if (!(await Promise.race([w.then(() => true), realDelay(300).then(() => false)]))) {
      w.catch(() => {}); // rejects at close(); its bytes may still go out
      break;
    }
    acked += chunk;
  }
  t.true(acked > 0 && acked < owed.length, `${acked} bytes acknowledged before the buffers filled`);
  c.close();
  // The server answers first, more than the buffers hold, and only then reads: the closed client
  // must keep taking (and dropping) it, or each side would wait for the other.
  await withTimeout(s.write(Buffer.alloc(4 << 20, 1)), 20_000, "the server's write to the closed client");
  const got = await withTimeout(s.readToEnd(), 20_000, 'the owed bytes, then EOF');
  t.true(got.length >= acked, `${got.length} of the ${acked} acknowledged bytes arrived`);
  t.true(got.equals(owed.subarray(0, got.length)), 'in order, nothing altered');
  s.close();
  l.close();
});
