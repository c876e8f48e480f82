// Parts of kyoto/net's surface that users rely on and no other spec pins down: bind and connect
// options, TcpSocket.v6, split halves, what a closed socket answers, argument checks, aborted
// waits, toNodeStream(), and IPv4 broadcast and multicast delivery (in a network namespace).
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Duplex } from 'node:stream';
import { AbortError, LinesCodec, TcpListener, TcpSocket, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream, copy, copyBidirectional, framed } from 'kyoto';
import { UNIX_SOCKETS, httpGetBody, isSettled, linuxTest, realDelay, runInLinkNamespace, runNodeChild, tcpPair, unixTest, withTimeout } from './helpers';


/** Reads exactly `n` bytes from `s` (bounded) as a string. */
async function readString(s: { readExact(buf: Uint8Array): Promise<number> }, n: number, what: string): Promise<string> {
  const buf = Buffer.alloc(n);
  await withTimeout(s.readExact(buf), 5000, what);
  return buf.toString();
}

/**
 * Runs `fn` while `dns.promises.lookup` answers `host` with `answer()` (every address when asked
 * for all, else the first); other names resolve as usual.
 */
async function withFakeLookup<T>(host: string, answer: () => Array<{ address: string; family: number }>, fn: () => Promise<T>): Promise<T> {
  const dns = (await import('node:dns')).promises as { lookup: (...a: unknown[]) => Promise<unknown> };
  const real = dns.lookup;
  dns.lookup = async (name: unknown, options: unknown) => {
    if (name !== host) return real(name, options);
    const addrs = answer();
    return (options as { all?: boolean } | undefined)?.all === true ? addrs : addrs[0];
  };
  try {
    return await fn();
  } finally {
    dns.lookup = real;
  }
}

/**
 * Connects with `connect`, takes the connection from `accepted` (an `accept()` begun before),
 * checks that `text` crosses it from client to server, and closes both ends.
 */
async function roundTrip(
  t: ExecutionContext,
  accepted: Promise<[TcpStream, unknown]>,
  connect: () => Promise<TcpStream>,
  text: string,
  what: string,
): Promise<void> {
  const c = await withTimeout(connect(), 5000, `${what}: connect`);
  const [s] = await withTimeout(accepted, 5000, `${what}: accept`);
  await c.write(text);
  t.is(await readString(s, Buffer.byteLength(text), `${what}: read`), text);
  c.close();
  s.close();
}

// ---------------------------------------------------------------------------------------------
// Bind and connect options

test('a listener bound with a backlog accepts connections; a backlog below 1 or not an integer is a RangeError ERR_OUT_OF_RANGE', async (t) => {
  const l = await TcpListener.bind('127.0.0.1:0', { backlog: 1 });
  await roundTrip(t, l.accept(), () => TcpStream.connect(l.localAddr()), 'backlog 1', 'backlog 1');
  for (const backlog of [0, -1, 1.5, NaN]) {
    await t.throwsAsync(TcpListener.bind('127.0.0.1:0', { backlog }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }, `backlog ${backlog}`);
  }
  l.close();
});

test('a listener bound with reuseAddr takes its port back while a connection it served is in TIME_WAIT', async (t) => {
  const l = await TcpListener.bind('127.0.0.1:0', { reuseAddr: true });
  const port = l.localAddr().port;
  const accepted = l.accept();
  const c = await TcpStream.connect(l.localAddr());
  const [s] = await accepted;
  // The server side closes first, so its end of the connection (on `port`) goes to TIME_WAIT.
  s.close();
  t.is((await withTimeout(c.readToEnd(), 5000, 'EOF at the client')).length, 0);
  c.close();
  l.close();
  const again = await TcpListener.bind({ host: '127.0.0.1', port }, { reuseAddr: true });
  t.is(again.localAddr().port, port);
  await roundTrip(t, again.accept(), () => TcpStream.connect({ host: '127.0.0.1', port }), 'back', 'again');
  again.close();
});

test('a listener bound with reusePort accepts connections', async (t) => {
  const l = await TcpListener.bind('127.0.0.1:0', { reusePort: true });
  await roundTrip(t, l.accept(), () => TcpStream.connect(l.localAddr()), 'shared', 'reusePort');
  l.close();
});

linuxTest('two listeners bound with reusePort share one port, and the second keeps accepting once the first is closed', async (t) => {
  const a = await TcpListener.bind('127.0.0.1:0', { reusePort: true });
  const port = a.localAddr().port;
  const b = await TcpListener.bind({ host: '127.0.0.1', port }, { reusePort: true });
  t.is(b.localAddr().port, port);
  // Without the option the port is taken.
  await t.throwsAsync(TcpListener.bind({ host: '127.0.0.1', port }), { code: 'EADDRINUSE' });
  // The kernel hands each connection to one of the two.
  const ac = new AbortController();
  const either = Promise.race([a.accept({ signal: ac.signal }), b.accept({ signal: ac.signal })]);
  await roundTrip(t, either, () => TcpStream.connect({ host: '127.0.0.1', port }), 'one', 'accept on either');
  ac.abort();
  a.close();
  await roundTrip(t, b.accept(), () => TcpStream.connect({ host: '127.0.0.1', port }), 'two', 'accept on the second listener');
  b.close();
});

test('ref() and unref() return the listener; ref() after unref() keeps the process alive again, and does nothing once closed', async (t) => {
  const l = await TcpListener.bind('127.0.0.1:0');
  t.is(l.unref(), l);
  t.is(l.unref(), l);
  t.is(l.ref(), l);
  t.is(l.ref(), l);
  l.close();
  t.is(l.ref(), l);
  t.is(l.unref(), l);

  const refAgain = await runNodeChild(
    `const { TcpListener } = require('kyoto/net');
     (async () => {
       const l = await TcpListener.bind('127.0.0.1:0');
       l.unref(); l.unref(); l.ref();
       setTimeout(() => { console.log('still alive'); l.close(); }, 100).unref();
     })();`,
    20_000,
  );
  t.is(refAgain.code, 0);
  t.true(refAgain.out.includes('still alive'), 'the re-ref()ed listener held the process until the timer');

  const unrefd = await runNodeChild(
    `const { TcpListener } = require('kyoto/net');
     (async () => {
       const l = await TcpListener.bind('127.0.0.1:0');
       l.ref(); l.unref();
       const closed = await TcpListener.bind('127.0.0.1:0');
       closed.unref(); closed.close(); closed.ref();
       console.log('bound');
       setTimeout(() => console.log('held'), 5000).unref();
     })();`,
    20_000,
  );
  t.false(unrefd.timedOut);
  t.is(unrefd.code, 0);
  t.is(unrefd.out.trim(), 'bound', 'neither the unref()ed nor the closed listener held the process');
});

test('TcpStream.connect takes noDelay and keepAlive, and the connection carries data both ways', async (t) => {
  const l = await TcpListener.bind('127.0.0.1:0');
  for (const options of [{ noDelay: true, keepAlive: true }, { noDelay: false, keepAlive: false }, { noDelay: true }, { keepAlive: true }]) {
    const accepted = l.accept();
    const c = await withTimeout(TcpStream.connect(l.localAddr(), options), 5000, 'connect');
    const [s] = await withTimeout(accepted, 5000, 'accept');
    await c.write('ping');
    t.is(await readString(s, 4, 'server read'), 'ping', JSON.stringify(options));
    await s.write('pong');
    t.is(await readString(c, 4, 'client read'), 'pong', JSON.stringify(options));
    c.close();
    s.close();
  }
  l.close();
});

test('TcpSocket.v6() binds, listens and connects over ::1', async (t) => {
  const ls = TcpSocket.v6();
  ls.bind('[::1]:0');
  const l = ls.listen(16);
  const la = l.localAddr();
  t.is(la.family, 'IPv6');
  t.is(la.address, '::1');
  t.true(la.port > 0);
  const accepted = l.accept();
  const cs = TcpSocket.v6();
  cs.bind({ host: '::1', port: 0 });
  const c = await withTimeout(cs.connect(la), 5000, 'connect');
  const [s, peer] = await withTimeout(accepted, 5000, 'accept');
  t.deepEqual(c.peerAddr(), { address: '::1', family: 'IPv6', port: la.port });
  t.deepEqual(peer, c.localAddr());
  t.is(peer.address, '::1');
  await c.write('over v6');
  t.is(await readString(s, 7, 'read'), 'over v6');
  t.throws(() => TcpSocket.v6().bind('127.0.0.1:0'), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE' });
  c.close();
  s.close();
  l.close();
});

test('TcpSocket.v4() and v6() connect only within their family: an address of the other fails as the OS fails it, and "localhost" is their loopback', async (t) => {
  const l4 = await TcpListener.bind('127.0.0.1:0');
  const l6 = await TcpListener.bind('[::1]:0');
  const made: Array<{ close(): void }> = [l4, l6];
  t.teardown(() => made.forEach((x) => x.close()));
  const p4 = l4.localAddr().port;
  const p6 = l6.localAddr().port;
  // What connect(2) answers on Linux (and Tokio's TcpSocket passes on): an AF_INET socket given
  // an IPv6 address, EAFNOSUPPORT; an AF_INET6 one given an IPv4 address, EINVAL.
  const shape = (e: unknown): object => {
    const { code, syscall, address, port } = e as Record<string, unknown>;
    return { code, syscall, address, port };
  };
  // Before the fix both connected: close what they made.
  const keep = (c: TcpStream): TcpStream => (made.push(c), c);
  const e4 = await t.throwsAsync(TcpSocket.v4().connect(l6.localAddr()).then(keep));
  t.deepEqual(shape(e4), { code: 'EAFNOSUPPORT', syscall: 'connect', address: '::1', port: p6 });
  const e6 = await t.throwsAsync(TcpSocket.v6().connect(`127.0.0.1:${p4}`).then(keep));
  t.deepEqual(shape(e6), { code: 'EINVAL', syscall: 'connect', address: '127.0.0.1', port: p4 });
  const accepted4 = l4.accept();
  const c4 = keep(await withTimeout(TcpSocket.v4().connect(`localhost:${p4}`), 5000, 'connect v4'));
  t.deepEqual(c4.peerAddr(), { address: '127.0.0.1', family: 'IPv4', port: p4 });
  const accepted6 = l6.accept();
  const c6 = keep(await withTimeout(TcpSocket.v6().connect(`localhost:${p6}`), 5000, 'connect v6'));
  t.deepEqual(c6.peerAddr(), { address: '::1', family: 'IPv6', port: p6 });
  keep((await withTimeout(accepted4, 5000, 'accept v4'))[0]);
  keep((await withTimeout(accepted6, 5000, 'accept v6'))[0]);
});

test('TcpSocket buffer sizes below 1 or not integers are RangeErrors ERR_OUT_OF_RANGE', (t) => {
  for (const sock of [TcpSocket.v4(), TcpSocket.v6()]) {
    for (const n of [0, -1, 1.5, NaN]) {
      t.throws(() => sock.setSendBufferSize(n), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }, `send ${n}`);
      t.throws(() => sock.setRecvBufferSize(n), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }, `recv ${n}`);
    }
    t.notThrows(() => {
      sock.setSendBufferSize(1);
      sock.setRecvBufferSize(1);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// UDP bind options and disposal

test('UdpSocket.bind takes reuseAddr and reusePort, and the socket receives datagrams', async (t) => {
  const r = await UdpSocket.bind('127.0.0.1:0', { reuseAddr: true, reusePort: true });
  const s = await UdpSocket.bind('127.0.0.1:0');
  await s.sendTo(Buffer.from('reuse'), r.localAddr());
  const buf = Buffer.alloc(8);
  const d = await withTimeout(r.recvFrom(buf), 5000, 'recvFrom');
  t.is(buf.toString('utf8', 0, d.bytes), 'reuse');
  t.deepEqual(d.address, s.localAddr());
  r.close();
  s.close();
});

linuxTest('UDP sockets bound with reusePort (or reuseAddr) share one port, and a datagram to it reaches one of them', async (t) => {
  for (const opt of [{ reusePort: true }, { reuseAddr: true }]) {
    const a = await UdpSocket.bind('127.0.0.1:0', opt);
    const port = a.localAddr().port;
    const b = await UdpSocket.bind({ host: '127.0.0.1', port }, opt);
    t.is(b.localAddr().port, port);
    await t.throwsAsync(UdpSocket.bind({ host: '127.0.0.1', port }), { code: 'EADDRINUSE' }, 'without the option the port is taken');
    const s = await UdpSocket.bind('127.0.0.1:0');
    await s.sendTo(Buffer.from('shared'), { address: '127.0.0.1', port });
    const ac = new AbortController();
    const bufA = Buffer.alloc(8);
    const bufB = Buffer.alloc(8);
    const got = await withTimeout(
      Promise.race([
        a.recvFrom(bufA, { signal: ac.signal }).then((d) => bufA.toString('utf8', 0, d.bytes)),
        b.recvFrom(bufB, { signal: ac.signal }).then((d) => bufB.toString('utf8', 0, d.bytes)),
      ]),
      5000,
      'a datagram on the shared port',
    );
    ac.abort();
    t.is(got, 'shared', JSON.stringify(opt));
    a.close();
    b.close();
    s.close();
  }
});

test('disposing a UDP socket closes it: a waiting receive and later ones reject with ERR_SOCKET_CLOSED', async (t) => {
  const u = await UdpSocket.bind('127.0.0.1:0');
  const port = u.localAddr().port;
  const pending = u.recvFrom(Buffer.alloc(4));
  t.false(await isSettled(pending));
  await u[Symbol.asyncDispose]();
  await t.throwsAsync(pending, { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(u.recv(Buffer.alloc(4)), { code: 'ERR_SOCKET_CLOSED' });
  // Its port is free again.
  const again = await UdpSocket.bind({ host: '127.0.0.1', port });
  t.is(again.localAddr().port, port);
  again.close();
});

// ---------------------------------------------------------------------------------------------
// Split halves

test('a read half reads exactly, peeks, iterates and reads to the end, and reports both addresses', async (t) => {
  const { l, c, s } = await tcpPair();
  const [r, w] = s.split();
  t.deepEqual(r.localAddr(), s.localAddr());
  t.deepEqual(r.peerAddr(), c.localAddr());
  t.deepEqual(w.localAddr(), s.localAddr());
  t.deepEqual(w.peerAddr(), c.localAddr());
  await c.write('exact');
  const five = Buffer.alloc(5);
  t.is(await withTimeout(r.readExact(five), 5000, 'readExact'), 5);
  t.is(five.toString(), 'exact');
  await c.write('peeked');
  const p = Buffer.alloc(6);
  t.is(await withTimeout(r.peek(p), 5000, 'peek'), 6);
  t.is(p.toString(), 'peeked');
  const again = Buffer.alloc(6);
  t.is(await withTimeout(r.readExact(again), 5000, 'read after peek'), 6);
  t.is(again.toString(), 'peeked', 'peek left the bytes in place');
  await c.write('chunk');
  const it = r[Symbol.asyncIterator]();
  const first = await withTimeout(it.next(), 5000, 'iteration');
  t.false(first.done);
  t.is((first.value as Buffer).toString(), 'chunk');
  await c.write('the rest');
  await c.shutdown();
  t.is((await withTimeout(r.readToEnd(), 5000, 'readToEnd')).toString(), 'the rest');
  t.true((await withTimeout(it.next(), 5000, 'iteration end')).done);
  c.close();
  s.close();
  l.close();
});

test('a write half writes all, flushes and shuts down: the peer reads every byte, then EOF', async (t) => {
  const { l, c, s } = await tcpPair();
  const [, w] = c.split();
  const big = Buffer.alloc(1 << 20, 7);
  const reading = withTimeout(s.readToEnd(), 10_000, 'readToEnd');
  await w.writeAll('head:');
  await w.writeAll(big);
  await w.flush();
  await w.shutdown();
  await w.shutdown(); // idempotent
  const got = await reading;
  t.is(got.length, 5 + big.length);
  t.is(got.subarray(0, 5).toString(), 'head:');
  t.true(got.subarray(5).equals(big));
  await t.throwsAsync(w.write('late'), { code: 'ERR_STREAM_WRITE_AFTER_END' });
  c.close();
  s.close();
  l.close();
});

// ---------------------------------------------------------------------------------------------
// Closed sockets

test('a closed stream rejects flush, shutdown, peek, readChunk, readExact and readToEnd with ERR_SOCKET_CLOSED', async (t) => {
  const { l, c, s } = await tcpPair();
  c.close();
  t.true(c.closed);
  await t.throwsAsync(c.flush(), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(c.shutdown(), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(c.peek(Buffer.alloc(4)), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(c.readChunk(), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(c.readExact(Buffer.alloc(4)), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(c.readToEnd(), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(c.writeAll('x'), { code: 'ERR_SOCKET_CLOSED' });
  s.close();
  l.close();
});

/** Checks that each of `getters` throws ERR_SOCKET_CLOSED (what the closed socket's waits reject with). */
function throwsClosed(t: ExecutionContext, getters: Record<string, () => unknown>): void {
  for (const [name, get] of Object.entries(getters)) {
    t.throws(get, { code: 'ERR_SOCKET_CLOSED' }, name);
  }
}

test('localAddr() and peerAddr() of a closed TCP stream, listener or UDP socket throw ERR_SOCKET_CLOSED, as its waits reject', async (t) => {
  const { l, c, s } = await tcpPair();
  const [r, w] = c.split();
  const u = await UdpSocket.bind('127.0.0.1:0');
  await u.connect(l.localAddr()); // a peer to ask for
  const udpPeer = u.peerAddr();
  t.is(udpPeer.port, l.localAddr().port);
  s.peerAddr(); // a peer address known before the close
  for (const x of [c, s, l, u]) x.close();
  throwsClosed(t, {
    'connected stream localAddr': () => c.localAddr(),
    'connected stream peerAddr': () => c.peerAddr(),
    'accepted stream localAddr': () => s.localAddr(),
    'accepted stream peerAddr': () => s.peerAddr(),
    'read half peerAddr': () => r.peerAddr(),
    'write half localAddr': () => w.localAddr(),
    'listener localAddr': () => l.localAddr(),
    'UDP localAddr': () => u.localAddr(),
    'UDP peerAddr': () => u.peerAddr(),
  });
  await t.throwsAsync(c.read(Buffer.alloc(1)), { code: 'ERR_SOCKET_CLOSED' });
});

unixTest('localAddr() and peerAddr() of a closed Unix stream, listener or datagram socket throw ERR_SOCKET_CLOSED, as their waits reject', async (t) => {
  const p = path.join(unixDir, 'closed-addr.sock');
  const l = await UnixListener.bind(p);
  const accepted = l.accept();
  const c = await UnixStream.connect(p);
  const [s] = await withTimeout(accepted, 5000, 'accept');
  const d = UnixDatagram.bind(path.join(unixDir, 'closed-addr.dgram'));
  const [pa, pb] = UnixDatagram.pair();
  for (const x of [c, s, l, d, pa]) x.close();
  throwsClosed(t, {
    'stream localAddr': () => c.localAddr(),
    'stream peerAddr': () => c.peerAddr(),
    'accepted stream localAddr': () => s.localAddr(),
    'accepted stream peerAddr': () => s.peerAddr(),
    'listener localAddr': () => l.localAddr(),
    'datagram localAddr': () => d.localAddr(),
    'datagram peerAddr': () => d.peerAddr(),
    'pair end peerAddr': () => pa.peerAddr(),
  });
  pb.close();
});

test('peek, readChunk and readExact waiting when the stream is closed reject with ERR_SOCKET_CLOSED', async (t) => {
  const { l, c, s } = await tcpPair();
  const peeking = c.peek(Buffer.alloc(4));
  const chunk = c.readChunk();
  const exact = c.readExact(Buffer.alloc(4));
  t.false(await isSettled(peeking));
  t.false(await isSettled(chunk));
  t.false(await isSettled(exact));
  c.close();
  await t.throwsAsync(withTimeout(peeking, 5000, 'peek'), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(withTimeout(chunk, 5000, 'readChunk'), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(withTimeout(exact, 5000, 'readExact'), { code: 'ERR_SOCKET_CLOSED' });
  s.close();
  l.close();
});

test('the halves of a closed stream reject reads and writes with ERR_SOCKET_CLOSED', async (t) => {
  const { l, c, s } = await tcpPair();
  const [r, w] = c.split();
  const waiting = r.read(Buffer.alloc(4));
  t.false(await isSettled(waiting));
  c.close();
  await t.throwsAsync(withTimeout(waiting, 5000, 'read'), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(r.read(Buffer.alloc(4)), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(r.readExact(Buffer.alloc(4)), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(r.peek(Buffer.alloc(4)), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(r.readToEnd(), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(r[Symbol.asyncIterator]().next(), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(w.write('x'), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(w.writeAll('x'), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(w.flush(), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(w.shutdown(), { code: 'ERR_SOCKET_CLOSED' });
  s.close();
  l.close();
});

test('a closed read half rejects its reads with ERR_SOCKET_CLOSED while the write half goes on', async (t) => {
  const { l, c, s } = await tcpPair();
  const [r, w] = c.split();
  await s.write('unread');
  r.close();
  await t.throwsAsync(r.read(Buffer.alloc(4)), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(r.readExact(Buffer.alloc(4)), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(r.readChunk(), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(r.peek(Buffer.alloc(4)), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(r.readToEnd(), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(r[Symbol.asyncIterator]().next(), { code: 'ERR_SOCKET_CLOSED' });
  await w.write('still writing');
  t.is(await readString(s, 13, 'the write half'), 'still writing');
  w.close();
  for (const x of [s, l]) x.close();
});

test('closing a read half ends its waiting reads with ERR_SOCKET_CLOSED, and they no longer hold the process', async (t) => {
  const { l, c, s } = await tcpPair();
  const [r, w] = c.split();
  const ac = new AbortController();
  const it = r[Symbol.asyncIterator]();
  const waiting: Array<[string, Promise<unknown>]> = [
    ['read', r.read(Buffer.alloc(4))],
    ['read with a signal', r.read(Buffer.alloc(4), { signal: ac.signal })],
    ['readChunk', r.readChunk()],
    ['peek', r.peek(Buffer.alloc(4))],
    ['readExact', r.readExact(Buffer.alloc(4))],
    ['readToEnd', r.readToEnd()],
    ['iterator next()', it.next()],
  ];
  for (const [what, p] of waiting) t.false(await isSettled(p), what);
  r.close();
  for (const [what, p] of waiting) await t.throwsAsync(withTimeout(p, 5000, what), { code: 'ERR_SOCKET_CLOSED' }, what);
  await t.throwsAsync(it.next(), { code: 'ERR_SOCKET_CLOSED' }, 'a later next() of the same iterator');
  // The write half goes on, and the stream closes with it.
  await w.write('still writing');
  t.is(await readString(s, 13, 'the write half'), 'still writing');
  w.close();
  t.true(c.closed);
  for (const x of [s, l]) x.close();

  const child = await runNodeChild(
    `const { TcpListener, TcpStream } = require('kyoto/net');
     (async () => {
       const l = await TcpListener.bind('127.0.0.1:0');
       const c = await TcpStream.connect(l.localAddr());
       const [s] = await l.accept();
       l.close();
       const [r, w] = c.split();
       r.read(Buffer.alloc(4)).catch((e) => console.log(e.code));
       r.close();
       await w.write('x');
       setTimeout(() => console.log('held'), 5000).unref();
     })();`,
    20_000,
  );
  t.false(child.timedOut);
  t.is(child.out.trim(), 'ERR_SOCKET_CLOSED', 'the closed half neither kept its read waiting nor held the process');
});

test("closing a read half ends only that half's reads; a read made on the stream itself, or through another half, gets the data", async (t) => {
  const { l, c, s } = await tcpPair();
  const [r1] = c.split();
  const [r2] = c.split();
  const ac = new AbortController();
  const own = r1.read(Buffer.alloc(4));
  const buf = Buffer.alloc(4);
  const viaStream = c.read(buf);
  const viaOther = r2.readChunk();
  // A read of the half with the caller's signal: that signal still aborts it, and the close too.
  const aborted = r2.read(Buffer.alloc(4), { signal: ac.signal });
  ac.abort();
  await t.throwsAsync(aborted, { name: 'AbortError' });
  r1.close();
  await t.throwsAsync(withTimeout(own, 5000, 'the half read'), { code: 'ERR_SOCKET_CLOSED' });
  t.false(await isSettled(viaStream), "the stream's own read still waits");
  await s.write('abcdefgh');
  t.is(await withTimeout(viaStream, 5000, "the stream's read"), 4);
  t.is(buf.toString(), 'abcd');
  const chunk = await withTimeout(viaOther, 5000, "the other half's read");
  t.is(chunk?.toString(), 'efgh', 'the other half reads what follows, nothing lost or repeated');
  for (const x of [c, s, l]) x.close();
});

test('a read half closed under its readExact() hands the bytes it had read back to the stream', async (t) => {
  const { l, c, s } = await tcpPair();
  const [r] = c.split();
  const exact = r.readExact(Buffer.alloc(8));
  await s.write('abcd');
  await realDelay(50); // the four bytes reach the half's readExact
  r.close();
  await t.throwsAsync(withTimeout(exact, 5000, 'readExact'), { code: 'ERR_SOCKET_CLOSED' });
  await s.write('efgh');
  const buf = Buffer.alloc(8);
  t.is(await withTimeout(c.readExact(buf), 5000, "the stream's readExact"), 8);
  t.is(buf.toString(), 'abcdefgh', 'nothing the closed half had read is lost');
  for (const x of [c, s, l]) x.close();
});

test("copy() and framed() from a closed read half reject with ERR_SOCKET_CLOSED and leave the stream's data unread", async (t) => {
  const { l, c, s } = await tcpPair();
  const to = await tcpPair(); // a kyoto writer: the copy would run natively
  const [r, w] = c.split();
  r.close();
  await s.write('kept\n');
  await s.shutdown();
  await t.throwsAsync(withTimeout(copy(r, to.c), 5000, 'copy'), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(withTimeout(framed(r, new LinesCodec()).next(), 5000, 'framed'), { code: 'ERR_SOCKET_CLOSED' });
  // Nothing was taken from the stream behind the half.
  t.is(await readString(c, 5, 'the stream'), 'kept\n');
  w.close();
  for (const x of [s, l, to.c, to.s, to.l]) x.close();
});

test('closing a read half stops a native copy() reading through it: the copy rejects with ERR_SOCKET_CLOSED and later data stays in the stream', async (t) => {
  const { l, c, s } = await tcpPair();
  const to = await tcpPair(); // a kyoto writer: the copy runs natively
  const [r, w] = c.split();
  const copying = copy(r, to.c);
  await s.write('before\n');
  t.is(await readString(to.s, 7, 'the copied bytes'), 'before\n');
  r.close();
  await t.throwsAsync(withTimeout(copying, 5000, 'the copy after its half closed'), { code: 'ERR_SOCKET_CLOSED' });
  await s.write('after\n');
  await s.shutdown();
  // Not copied: the stream behind the half still has it.
  t.is(await readString(c, 6, 'the stream'), 'after\n');
  w.close();
  for (const x of [s, l, to.c, to.s, to.l]) x.close();
});

for (const how of ['closing its write half', 'shutting its write half down', 'shutting the stream down'] as const) {
  test(`${how} stops a native copy() writing into it: the copy rejects with ERR_STREAM_WRITE_AFTER_END and later data stays in the source`, async (t) => {
    const from = await tcpPair();
    const to = await tcpPair(); // a kyoto writer: the copy runs natively
    const [r, w] = to.c.split();
    const copying = copy(from.s, how === 'shutting the stream down' ? to.c : w);
    await from.c.write('before\n');
    t.is(await readString(to.s, 7, 'the copied bytes'), 'before\n');
    if (how === 'closing its write half') w.close();
    else if (how === 'shutting its write half down') await w.shutdown();
    else await to.c.shutdown();
    await t.throwsAsync(withTimeout(copying, 5000, 'the copy after its writer ended'), { code: 'ERR_STREAM_WRITE_AFTER_END' });
    // The peer got the end of stream right after what was copied.
    t.is((await withTimeout(to.s.readToEnd(), 5000, 'the peer reading to the end')).length, 0);
    await from.c.write('after\n');
    // Not copied: the source still has it.
    t.is(await readString(from.s, 6, 'the source'), 'after\n');
    r.close();
    w.close();
    for (const x of [from.c, from.s, from.l, to.c, to.s, to.l]) x.close();
  });
}

for (const which of ['a', 'b'] as const) {
  test(`shutting down stream ${which} of a native copyBidirectional() mid-copy stops it: it rejects with ERR_STREAM_WRITE_AFTER_END and later data stays in the sources`, async (t) => {
    const x = await tcpPair();
    const y = await tcpPair();
    t.teardown(() => {
      for (const s of [x.c, x.s, x.l, y.c, y.s, y.l]) s.close();
    });
    // x.s ⇄ y.c: both kyoto streams, so the copy runs natively.
    const copying = copyBidirectional(x.s, y.c);
    copying.catch(() => {});
    await x.c.write('a→b\n');
    t.is(await readString(y.s, 6, 'a → b'), 'a→b\n');
    await y.s.write('b→a\n');
    t.is(await readString(x.c, 6, 'b → a'), 'b→a\n');
    const [ended, peerOfEnded, otherSourcePeer, otherSource] = which === 'a' ? [x.s, x.c, y.s, y.c] : [y.c, y.s, x.c, x.s];
    await ended.shutdown();
    await t.throwsAsync(withTimeout(copying, 5000, 'the copy after its writer ended'), { code: 'ERR_STREAM_WRITE_AFTER_END' });
    // The ended stream's peer got its end of stream right after what was copied.
    t.is((await withTimeout(peerOfEnded.readToEnd(), 5000, 'the peer of the ended stream reading to the end')).length, 0);
    // Neither direction copies any more: what comes later stays in its source.
    await otherSourcePeer.write('later\n');
    t.is(await readString(otherSource, 6, 'the source of the direction into the ended stream'), 'later\n');
  });
}

test('closing the read half, then the write half, still delivers every pending write before the end of stream', async (t) => {
  const { l, c, s } = await tcpPair();
  const [r, w] = c.split();
  const chunk = Buffer.alloc(200_000, 7);
  const writes: Array<Promise<number>> = [];
  for (let i = 0; i < 40; i++) writes.push(w.write(chunk)); // more than the kernel and kyoto take at once
  r.close();
  w.close(); // the last half: the stream closes once its shutdown went out
  const got = await withTimeout(s.readToEnd(), 20_000, 'the peer reading to the end');
  t.is(got.length, 40 * chunk.length);
  for (const p of writes) t.is(await p, chunk.length);
  await withTimeout(
    (async () => {
      while (!c.closed) await realDelay(5);
    })(),
    5000,
    'the stream closing after its shutdown',
  );
  for (const x of [s, l]) x.close();
});

test('peek() and read() into an empty buffer resolve 0 at once', async (t) => {
  const { l, c, s } = await tcpPair();
  t.is(await withTimeout(c.peek(Buffer.alloc(0)), 5000, 'peek'), 0);
  t.is(await withTimeout(c.read(Buffer.alloc(0)), 5000, 'read'), 0);
  for (const x of [c, s, l]) x.close();
});

test('a closed UDP socket rejects recvFrom, peekFrom and recvMany with ERR_SOCKET_CLOSED, waiting or not', async (t) => {
  const u = await UdpSocket.bind('127.0.0.1:0');
  const waiting: Array<Promise<unknown>> = [u.recvFrom(Buffer.alloc(4)), u.peekFrom(Buffer.alloc(4)), u.recvMany(8)];
  for (const p of waiting) t.false(await isSettled(p));
  u.close();
  for (const p of waiting) await t.throwsAsync(withTimeout(p, 5000, 'pending receive'), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(u.recvFrom(Buffer.alloc(4)), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(u.peekFrom(Buffer.alloc(4)), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(u.recvMany(), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(u.recv(Buffer.alloc(4)), { code: 'ERR_SOCKET_CLOSED' });
});

// ---------------------------------------------------------------------------------------------
// Bad arguments

test('stream reads given something other than a Uint8Array reject with a TypeError ERR_INVALID_ARG_TYPE', async (t) => {
  const { l, c, s } = await tcpPair();
  const [r] = s.split();
  for (const bad of ['buf', 16, null, undefined, [1, 2, 3], new ArrayBuffer(4), new DataView(new ArrayBuffer(4))]) {
    const what = String(bad);
    await t.throwsAsync(c.read(bad as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, `read(${what})`);
    await t.throwsAsync(c.peek(bad as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, `peek(${what})`);
    await t.throwsAsync(c.readExact(bad as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, `readExact(${what})`);
    await t.throwsAsync(r.read(bad as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, `half read(${what})`);
  }
  // The stream is unharmed.
  await s.write('fine');
  t.is(await readString(c, 4, 'read'), 'fine');
  c.close();
  s.close();
  l.close();
});

test('a write of a typed array, DataView or ArrayBuffer whose memory was transferred away writes nothing, as a detached Uint8Array does, instead of failing without a code', async (t) => {
  const { l, c, s } = await tcpPair();
  /** `view` of a fresh buffer, made before the buffer's memory is transferred away. */
  const detached = (view: (ab: ArrayBuffer) => unknown): Uint8Array => {
    const ab = new ArrayBuffer(8);
    const v = view(ab);
    structuredClone(ab, { transfer: [ab] });
    return v as Uint8Array;
  };
  const views: Array<[string, Uint8Array]> = [
    ['Uint8Array', detached((ab) => new Uint8Array(ab))],
    ['Float32Array', detached((ab) => new Float32Array(ab))],
    ['DataView', detached((ab) => new DataView(ab))],
    ['ArrayBuffer', detached((ab) => ab)],
  ];
  for (const [what, v] of views) t.is(await c.write(v), 0, what);
  // Nothing went out in their place: the peer reads the next write's bytes first.
  await c.write('next');
  t.is(await readString(s, 4, 'read'), 'next');
  c.close();
  s.close();
  l.close();
});

test('UDP receives given something other than a Uint8Array are TypeErrors ERR_INVALID_ARG_TYPE; recvMany below 1 is a RangeError ERR_OUT_OF_RANGE', async (t) => {
  const u = await UdpSocket.bind('127.0.0.1:0');
  for (const bad of ['buf', 16, null, undefined, new ArrayBuffer(4)]) {
    await t.throwsAsync(u.recv(bad as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, `recv(${String(bad)})`);
    await t.throwsAsync(u.recvFrom(bad as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, `recvFrom(${String(bad)})`);
    await t.throwsAsync(u.peekFrom(bad as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, `peekFrom(${String(bad)})`);
  }
  for (const max of [0, -1, 1.5, NaN]) {
    await t.throwsAsync(u.recvMany(max), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }, `recvMany(${max})`);
  }
  // Nothing was left waiting: a datagram goes to the next receive.
  const s = await UdpSocket.bind('127.0.0.1:0');
  await s.sendTo(Buffer.from('ok'), u.localAddr());
  const buf = Buffer.alloc(4);
  t.is(await withTimeout(u.recv(buf), 5000, 'recv'), 2);
  t.is(buf.toString('utf8', 0, 2), 'ok');
  s.close();
  u.close();
});

test('UDP TTLs out of range are RangeErrors ERR_OUT_OF_RANGE, a non-number a TypeError; a multicast TTL of 0 is accepted', async (t) => {
  const u = await UdpSocket.bind('127.0.0.1:0');
  for (const ttl of [0, 256, -1, 1.5]) {
    t.throws(() => u.setTtl(ttl), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }, `setTtl(${ttl})`);
  }
  t.throws(() => u.setTtl('64' as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  for (const ttl of [256, -1, 1.5]) {
    t.throws(() => u.setMulticastTtlV4(ttl), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }, `setMulticastTtlV4(${ttl})`);
  }
  t.notThrows(() => {
    u.setTtl(1);
    u.setTtl(255);
    u.setMulticastTtlV4(0);
    u.setMulticastTtlV4(255);
  });
  u.close();
});

test('TcpStream setNoDelay, setKeepAlive and connect() refuse a non-boolean switch with a TypeError instead of reading it as truthy', async (t) => {
  const { l, c, s } = await tcpPair();
  for (const junk of ['no', 0, 1, null, {}]) {
    t.throws(() => c.setNoDelay(junk as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, `setNoDelay(${String(junk)})`);
    t.throws(() => c.setKeepAlive(junk as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, `setKeepAlive(${String(junk)})`);
  }
  t.notThrows(() => c.setNoDelay());
  t.notThrows(() => c.setKeepAlive(false));
  await t.throwsAsync(TcpStream.connect(l.localAddr(), { noDelay: 'false' as never }), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  await t.throwsAsync(TcpStream.connect(l.localAddr(), { keepAlive: 1 as never }), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  // A Node library calling the Duplex's setNoDelay(1) is coerced there, as node:net does.
  const d = c.toNodeStream() as unknown as { setNoDelay(on?: unknown): unknown; setKeepAlive(on?: unknown, ms?: number): unknown };
  t.notThrows(() => d.setNoDelay(1));
  t.notThrows(() => d.setKeepAlive(1, 1000));
  c.close();
  s.close();
  l.close();
});

test('TcpSocket setReuseAddr/setReusePort and TcpListener.bind reuseAddr/reusePort refuse a non-boolean switch with a TypeError instead of reading it as truthy', async (t) => {
  const sock = TcpSocket.v4();
  for (const junk of ['false', 0, 1, null, {}]) {
    t.throws(() => sock.setReuseAddr(junk as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, `setReuseAddr(${String(junk)})`);
    t.throws(() => sock.setReusePort(junk as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, `setReusePort(${String(junk)})`);
    await t.throwsAsync(TcpListener.bind('127.0.0.1:0', { reuseAddr: junk as never }), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
    await t.throwsAsync(TcpListener.bind('127.0.0.1:0', { reusePort: junk as never }), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  }
  t.notThrows(() => sock.setReuseAddr(false));
  t.notThrows(() => sock.setReusePort(true));
  const l = await TcpListener.bind('127.0.0.1:0', { reuseAddr: false, reusePort: true });
  l.close();
});

test('TcpStream setTtl(0) and setKeepAlive(true, -1) are RangeErrors ERR_OUT_OF_RANGE', async (t) => {
  const { l, c, s } = await tcpPair();
  t.throws(() => c.setTtl(0), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => c.setTtl(256), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => c.setKeepAlive(true, -1), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => c.setKeepAlive(true, '1000' as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  c.close();
  s.close();
  l.close();
});

// ---------------------------------------------------------------------------------------------
// Aborted waits

test('accept() with an aborted signal rejects at once; an accept() aborted while waiting leaves the listener accepting', async (t) => {
  const l = await TcpListener.bind('127.0.0.1:0');
  const already = await t.throwsAsync(l.accept({ signal: AbortSignal.abort() }), { instanceOf: AbortError, code: 'ABORT_ERR' });
  t.is((already!.cause as Error).name, 'AbortError', 'the cause is the signal’s reason');
  const ac = new AbortController();
  const waiting = l.accept({ signal: ac.signal });
  t.false(await isSettled(waiting));
  const reason = new Error('stop accepting');
  ac.abort(reason);
  t.is(await t.throwsAsync(waiting), reason);
  await roundTrip(t, l.accept(), () => TcpStream.connect(l.localAddr()), 'hi', 'after the abort');
  l.close();
});

test('read, readExact, readChunk and readToEnd with an aborted signal reject with an AbortError ABORT_ERR', async (t) => {
  const { l, c, s } = await tcpPair();
  const signal = AbortSignal.abort();
  await t.throwsAsync(s.read(Buffer.alloc(4), { signal }), { instanceOf: AbortError, code: 'ABORT_ERR' });
  await t.throwsAsync(s.readExact(Buffer.alloc(4), { signal }), { instanceOf: AbortError, code: 'ABORT_ERR' });
  await t.throwsAsync(s.readChunk({ signal }), { instanceOf: AbortError, code: 'ABORT_ERR' });
  await t.throwsAsync(s.readToEnd({ signal }), { instanceOf: AbortError, code: 'ABORT_ERR' });
  const custom = new Error('my reason');
  await t.throwsAsync(s.read(Buffer.alloc(4), { signal: AbortSignal.abort(custom) }), { is: custom });
  await c.write('data');
  t.is(await readString(s, 4, 'read after the aborted calls'), 'data');
  c.close();
  s.close();
  l.close();
});

test('read, readExact, readChunk and readToEnd aborted while waiting reject with the reason, and a later read still gets the data', async (t) => {
  const { l, c, s } = await tcpPair();
  const calls: Array<[string, (signal: AbortSignal) => Promise<unknown>]> = [
    ['read', (signal) => s.read(Buffer.alloc(4), { signal })],
    ['readExact', (signal) => s.readExact(Buffer.alloc(4), { signal })],
    ['readChunk', (signal) => s.readChunk({ signal })],
    ['readToEnd', (signal) => s.readToEnd({ signal })],
  ];
  let i = 0;
  for (const [name, call] of calls) {
    const ac = new AbortController();
    const p = call(ac.signal);
    t.false(await isSettled(p), `${name} waits`);
    ac.abort();
    await t.throwsAsync(withTimeout(p, 5000, name), { instanceOf: AbortError, code: 'ABORT_ERR' }, name);
    // The aborted wait gave up its place: the next bytes go to the next read.
    const text = `dat${i++}`;
    await c.write(text);
    t.is(await readString(s, 4, `read after an aborted ${name}`), text, name);
  }
  c.close();
  s.close();
  l.close();
});

test('recvFrom, peekFrom and recvMany reject when aborted, and the datagram goes to the next receive', async (t) => {
  const u = await UdpSocket.bind('127.0.0.1:0');
  const sender = await UdpSocket.bind('127.0.0.1:0');
  const buf = Buffer.alloc(8);
  const signal = AbortSignal.abort();
  await t.throwsAsync(u.recvFrom(buf, { signal }), { instanceOf: AbortError, code: 'ABORT_ERR' });
  await t.throwsAsync(u.peekFrom(buf, { signal }), { instanceOf: AbortError, code: 'ABORT_ERR' });
  await t.throwsAsync(u.recvMany(4, { signal }), { instanceOf: AbortError, code: 'ABORT_ERR' });
  const calls: Array<[string, (signal: AbortSignal) => Promise<unknown>]> = [
    ['recvFrom', (sig) => u.recvFrom(buf, { signal: sig })],
    ['peekFrom', (sig) => u.peekFrom(buf, { signal: sig })],
    ['recvMany', (sig) => u.recvMany(4, { signal: sig })],
  ];
  for (const [name, call] of calls) {
    const ac = new AbortController();
    const p = call(ac.signal);
    t.false(await isSettled(p), `${name} waits`);
    const reason = new Error(`stop ${name}`);
    ac.abort(reason);
    t.is(await t.throwsAsync(withTimeout(p, 5000, name)), reason, name);
    await sender.sendTo(Buffer.from(name), u.localAddr());
    const d = await withTimeout(u.recvFrom(buf), 5000, `recvFrom after an aborted ${name}`);
    t.is(buf.toString('utf8', 0, d.bytes), name);
    t.deepEqual(d.address, sender.localAddr());
  }
  sender.close();
  u.close();
});

const unixDir = process.platform === 'win32' ? '' : mkdtempSync(path.join(tmpdir(), 'kyoto-surface-'));
test.after.always(() => {
  if (unixDir !== '') rmSync(unixDir, { recursive: true, force: true });
});

unixTest('UnixListener.accept() and UnixStream.connect() honour abort signals', async (t) => {
  const p = path.join(unixDir, 'abort.sock');
  const l = await UnixListener.bind(p);
  await t.throwsAsync(l.accept({ signal: AbortSignal.abort() }), { instanceOf: AbortError, code: 'ABORT_ERR' });
  const ac = new AbortController();
  const waiting = l.accept({ signal: ac.signal });
  t.false(await isSettled(waiting));
  ac.abort();
  await t.throwsAsync(withTimeout(waiting, 5000, 'accept'), { instanceOf: AbortError, code: 'ABORT_ERR' });
  const reason = new Error('no connect');
  await t.throwsAsync(UnixStream.connect(p, { signal: AbortSignal.abort(reason) }), { is: reason });
  await t.throwsAsync(UnixStream.connect(p, { signal: AbortSignal.abort() }), { instanceOf: AbortError, code: 'ABORT_ERR' });
  // The listener still accepts.
  await roundTrip(t, l.accept(), () => UnixStream.connect(p), 'unix', 'after the aborts');
  l.close();
});

// ---------------------------------------------------------------------------------------------
// toNodeStream()

test('toNodeStream() is a stream.Duplex that carries data both ways with a kyoto peer', async (t) => {
  const { l, c, s } = await tcpPair();
  const d = c.toNodeStream();
  t.true(d instanceof Duplex);
  t.is(c.toNodeStream(), d, 'one Duplex per stream');
  const received: Buffer[] = [];
  const ended = new Promise<void>((resolve, reject) => {
    d.on('data', (chunk: Buffer) => received.push(chunk));
    d.on('end', resolve);
    d.on('error', reject);
  });
  await new Promise<void>((resolve, reject) => d.write('from node', (err) => (err ? reject(err) : resolve())));
  t.is(await readString(s, 9, 'kyoto peer read'), 'from node');
  await s.write('from kyoto');
  await s.shutdown();
  await withTimeout(ended, 5000, "the Duplex's end");
  t.is(Buffer.concat(received).toString(), 'from kyoto');
  d.end();
  t.is((await withTimeout(s.readToEnd(), 5000, 'EOF after end()')).length, 0);
  d.destroy();
  t.true(c.closed, 'destroying the Duplex closes the stream');
  s.close();
  l.close();
});

// ---------------------------------------------------------------------------------------------
// IPv4 broadcast and multicast: a namespace of the test's own, with 10.9.0.1/24 added on v0.

const addV4 = `require('node:child_process').execFileSync('ip', ['-4', 'addr', 'add', '10.9.0.1/24', 'brd', '+', 'dev', 'v0']);`;

linuxTest('a datagram a socket with setBroadcast(true) sends to the subnet broadcast address reaches a socket bound to 0.0.0.0', async (t) => {
  const out = await runInLinkNamespace(
    `const { UdpSocket } = require('kyoto/net');
     (async () => {
       ${addV4}
       const r = await UdpSocket.bind({ host: '0.0.0.0', port: 0 });
       const port = r.localAddr().port;
       const s = await UdpSocket.bind({ host: '10.9.0.1', port: 0 });
       s.setBroadcast(true);
       await s.sendTo(Buffer.from('to all'), { address: '10.9.0.255', port });
       const buf = Buffer.alloc(16);
       const d = await r.recvFrom(buf, { signal: AbortSignal.timeout(5000) });
       console.log(JSON.stringify({ got: buf.toString('utf8', 0, d.bytes), from: d.address, sender: s.localAddr() }));
       r.close(); s.close();
     })().catch((e) => { console.error(e); process.exit(1); });`,
    20_000,
  );
  const r = JSON.parse(out);
  t.is(r.got, 'to all');
  t.deepEqual(r.from, r.sender);
  t.is(r.from.address, '10.9.0.1');
});

linuxTest('a UDP socket that joined an IPv4 group receives what is sent to it, and stops after leaving', async (t) => {
  const out = await runInLinkNamespace(
    `const { UdpSocket } = require('kyoto/net');
     (async () => {
       ${addV4}
       const r = await UdpSocket.bind({ host: '0.0.0.0', port: 0 });
       const port = r.localAddr().port;
       r.joinMulticastV4('239.1.2.3', '10.9.0.1');
       // Bound to v0's address: its multicast leaves by v0 (no multicast route needed).
       const s = await UdpSocket.bind({ host: '10.9.0.1', port: 0 });
       s.setMulticastLoopV4(true);
       s.setMulticastTtlV4(1);
       await s.sendTo(Buffer.from('group'), { address: '239.1.2.3', port });
       const buf = Buffer.alloc(16);
       const d = await r.recvFrom(buf, { signal: AbortSignal.timeout(5000) });
       const got = [buf.toString('utf8', 0, d.bytes), d.address.address];
       r.leaveMulticastV4('239.1.2.3', '10.9.0.1');
       await s.sendTo(Buffer.from('after'), { address: '239.1.2.3', port });
       const late = await r.recv(buf, { signal: AbortSignal.timeout(300) }).then(() => 'received', (e) => e.name);
       let again;
       try { r.leaveMulticastV4('239.1.2.3', '10.9.0.1'); again = 'left twice'; } catch (e) { again = [e.code, e.syscall]; }
       console.log(JSON.stringify({ got, late, again }));
       r.close(); s.close();
     })().catch((e) => { console.error(e); process.exit(1); });`,
    20_000,
  );
  const r = JSON.parse(out);
  t.deepEqual(r.got, ['group', '10.9.0.1']);
  t.is(r.late, 'TimeoutError', 'nothing arrives once the group is left');
  t.deepEqual(r.again, ['EADDRNOTAVAIL', 'dropMembership']);
});

test('returning from a stream iterator while its next() waits ends that next(), and the data goes to the next read', async (t) => {
  const { l, c, s } = await tcpPair();
  const it = s[Symbol.asyncIterator]();
  const pending = it.next();
  t.deepEqual(await it.return!(), { done: true, value: undefined });
  t.deepEqual(await pending, { done: true, value: undefined });
  await c.write('first');
  const buf = Buffer.alloc(16);
  const n = await withTimeout(s.read(buf), 5000, 'the read after the iteration');
  t.is(buf.subarray(0, n).toString(), 'first');
  for (const x of [l, c, s]) x.close();
});

test("returning from a listener's iterator while its next() waits ends that next(), and the connection goes to the next accept()", async (t) => {
  const l = await TcpListener.bind('127.0.0.1:0');
  const it = l[Symbol.asyncIterator]();
  const pending = it.next();
  t.deepEqual(await withTimeout(it.return!(), 5000, 'return()'), { done: true, value: undefined });
  t.deepEqual(await withTimeout(pending, 5000, 'the pending next()'), { done: true, value: undefined });
  t.deepEqual(await it.next(), { done: true, value: undefined }, 'the iteration stays ended');
  const c = await TcpStream.connect(l.localAddr());
  const [s] = await withTimeout(l.accept(), 5000, 'the accept after the iteration');
  await c.write('first');
  t.is(await readString(s, 5, 'read'), 'first');
  for (const x of [l, c, s]) x.close();
});

test('a read made before copy() took the stream resolves 0 once the copy reached end of stream', async (t) => {
  const a = await tcpPair();
  const b = await tcpPair();
  const before = a.s.read(Buffer.alloc(16));
  const copying = copy(a.s, b.c);
  await a.c.write('sixteen bytes!!!');
  await a.c.shutdown();
  t.is(await withTimeout(copying, 5000, 'the copy'), 16);
  t.is(await withTimeout(before, 5000, 'the read made before the copy'), 0);
  for (const p of [a, b]) for (const x of [p.l, p.c, p.s]) x.close();
});

test('setKeepAlive takes delays under a second and past the kernel\'s limit (rounded up, capped)', async (t) => {
  const { l, c, s } = await tcpPair();
  for (const ms of [1, 500, 1500, 40_000_000]) t.notThrows(() => c.setKeepAlive(true, ms), `${ms} ms`);
  for (const x of [l, c, s]) x.close();
});

test('a connection accepted natively just as its listener closes is closed, not leaked (multi_thread)', async (t) => {
  // A client process connects while this child's JS thread is busy: a worker accepts it, and its
  // accept event is still on its way when the listener closes.
  const r = await runNodeChild(
    `process.env.KYOTO_NET_FLAVOR = 'multi_thread';
     const { spawn } = require('node:child_process');
     const { TcpListener } = require('kyoto/net');
     (async () => {
       const l = await TcpListener.bind('127.0.0.1:0');
       l.accept().catch(() => {}); // armed: a worker accepts as soon as the client connects
       const client = spawn(process.execPath, ['-e', \`
         const c = require('node:net').connect(\${l.localAddr().port}, '127.0.0.1');
         c.on('error', () => {});
         c.resume();
         c.on('close', () => { console.log('client: closed'); process.exit(0); });
         setTimeout(() => { console.log('client: still open after 5 s'); process.exit(1); }, 5000);
       \`], { stdio: 'inherit' });
       const until = Date.now() + 1500;
       while (Date.now() < until);
       l.close();
       client.on('exit', () => {});
     })();`,
    20_000,
  );
  t.false(r.timedOut);
  t.is(r.out.trim(), 'client: closed');
});

test('toNodeStream().setTimeout(ms) is an idle timeout: traffic keeps putting it off, silence lets it fire', async (t) => {
  const { l, c, s } = await tcpPair();
  const d = s.toNodeStream() as Duplex & { setTimeout(ms: number, cb?: () => void): unknown };
  d.resume();
  let timeouts = 0;
  d.setTimeout(1000, () => timeouts++);
  const pinging = setInterval(() => void c.write('ping').catch(() => {}), 50);
  await realDelay(1600);
  clearInterval(pinging);
  t.is(timeouts, 0, 'no timeout while data kept arriving');
  await withTimeout(new Promise((r) => d.once('timeout', r)), 10_000, 'the idle timeout');
  d.destroy();
  for (const x of [l, c]) x.close();
});

test("toNodeStream() has net.Socket's ref() and unref(): a keep-alive http.Agent reuses it, and an unref()ed one does not hold the process", async (t) => {
  // A keep-alive Agent unref()s a socket when it goes idle and ref()s it when a request reuses it.
  const server = http.createServer((_req, res) => res.end('hi'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const c = await TcpStream.connect({ host: '127.0.0.1', port });
  const d = c.toNodeStream() as Duplex & { ref(): unknown; unref(): unknown };
  t.is(d.unref(), d);
  t.is(d.ref(), d);
  const agent = new http.Agent({ keepAlive: true });
  let made = 0;
  (agent as unknown as { createConnection: () => Duplex }).createConnection = () => {
    made++;
    return d;
  };
  const get = (): Promise<string> => httpGetBody(agent, '127.0.0.1', port);
  t.is(await withTimeout(get(), 5000, 'the first request'), 'hi');
  t.is(await withTimeout(get(), 5000, 'the request on the reused socket'), 'hi');
  t.is(made, 1, 'the second request reused the idle socket');
  agent.destroy();
  server.close();

  const child = await runNodeChild(
    `const { TcpListener, TcpStream } = require('kyoto/net');
     (async () => {
       const l = await TcpListener.bind('127.0.0.1:0');
       const c = await TcpStream.connect(l.localAddr());
       const [s] = await l.accept();
       l.close();
       const d = c.toNodeStream();
       d.resume(); // a read is pending
       d.unref();
       console.log('reading');
       setTimeout(() => console.log('held'), 5000).unref();
     })();`,
    20_000,
  );
  t.false(child.timedOut);
  t.is(child.out.trim(), 'reading', 'the unref()ed Duplex did not hold the process');
});

test("toNodeStream() ends with its peer, as a net.Socket does: a keep-alive http.Agent drops an idle socket the server closed and sends the next request on a new one", async (t) => {
  // The peer's FIN ends the Duplex's own side too (node:net's default allowHalfOpen: false), so it
  // closes, and the peer reads end of stream.
  {
    const { l, c, s } = await tcpPair();
    const d = c.toNodeStream();
    d.resume();
    const closed = new Promise((r) => d.once('close', r));
    await s.shutdown();
    await withTimeout(closed, 5000, "the Duplex's close after the peer's FIN");
    t.is((await withTimeout(s.readToEnd(), 5000, 'EOF from the Duplex')).length, 0);
    t.true(c.closed);
    for (const x of [s, l]) x.close();
  }
  const server = http.createServer((_req, res) => res.end('hi'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const streams = [await TcpStream.connect({ host: '127.0.0.1', port }), await TcpStream.connect({ host: '127.0.0.1', port })];
  const agent = new http.Agent({ keepAlive: true });
  const made: Duplex[] = [];
  (agent as unknown as { createConnection: () => Duplex }).createConnection = () => {
    const d = streams[made.length].toNodeStream();
    made.push(d);
    return d;
  };
  const get = (): Promise<string> => httpGetBody(agent, '127.0.0.1', port);
  t.is(await withTimeout(get(), 5000, 'the first request'), 'hi');
  const idleClosed = new Promise((r) => made[0].once('close', r));
  server.closeIdleConnections();
  await withTimeout(idleClosed, 5000, 'the idle socket closing after the server closed it');
  t.is(await withTimeout(get(), 5000, 'the request after the server closed the idle connection'), 'hi');
  t.is(made.length, 2, 'the second request went out on a new connection');
  agent.destroy();
  server.close();
  for (const x of streams) x.close();
});

test('closing a TcpStream under its toNodeStream() destroys the Duplex without an error: close, no uncaught error', async (t) => {
  const { l, c, s } = await tcpPair();
  const d = s.toNodeStream();
  const errors: Error[] = [];
  d.on('error', (e) => errors.push(e));
  d.resume(); // reading: a read is pending when the stream closes
  const closed = new Promise((r) => d.once('close', r));
  s.close();
  await withTimeout(closed, 5000, "the Duplex's close");
  t.true(d.destroyed);
  t.deepEqual(errors, []);
  // One that was not reading yet closes the same way.
  const d2 = c.toNodeStream();
  d2.on('error', (e) => errors.push(e));
  const closed2 = new Promise((r) => d2.once('close', r));
  c.close();
  await withTimeout(closed2, 5000, "the second Duplex's close");
  t.deepEqual(errors, []);
  l.close();
});

test('shutdown() made while earlier writes wait for room sends its FIN after them: the peer reads every byte, then EOF', async (t) => {
  const { l, c, s } = await tcpPair();
  const chunk = Buffer.alloc(64 * 1024, 1);
  let accepted = 0;
  // Fill until a write waits for room (the peer is not reading).
  let pending: Promise<number> | undefined;
  for (let i = 0; i < 4096 && pending === undefined; i++) {
    const w = c.write(chunk);
    if (await isSettled(w)) accepted += await w;
    else pending = w;
  }
  t.truthy(pending, 'a write waits for room');
  const big = c.write(Buffer.alloc(4 << 20, 2)); // another, large, behind it
  const fin = c.shutdown();
  await t.throwsAsync(c.write('after'), { code: 'ERR_STREAM_WRITE_AFTER_END' });
  const total = accepted + chunk.length + (4 << 20);
  const got = await withTimeout(s.readToEnd(), 20_000, 'reading to EOF');
  t.is(got.length, total);
  t.is(await pending, chunk.length);
  t.is(await big, 4 << 20);
  await fin;
  for (const x of [l, c, s]) x.close();
});

test('close() with a linger time and unsent data returns without stopping the thread, and the data still reaches the peer', async (t) => {
  const { l, c, s } = await tcpPair();
  // Unsent data: more than the kernel buffers hold while the peer does not read.
  const chunk = Buffer.alloc(1 << 20, 3);
  let written = 0;
  for (let i = 0; i < 32; i++) {
    const w = c.write(chunk);
    if (!(await Promise.race([w.then(() => true), realDelay(200).then(() => false)]))) {
      void w.catch(() => {});
      written += chunk.length; // taken or queued: it goes out before the end of stream
      break;
    }
    written += chunk.length;
  }
  c.setLinger(5000);
  // The kernel's close(2) with SO_LINGER set would stop this thread for up to 5 s: a timer set
  // right after the close must not wait anywhere near that long.
  const before = Date.now();
  c.close();
  await new Promise((r) => setTimeout(r, 0));
  t.true(Date.now() - before < 2500, `the thread went on after ${Date.now() - before} ms`);
  const got = await withTimeout(s.readToEnd(), 20_000, 'the peer reading to the end');
  t.is(got.length, written);
  for (const x of [s, l]) x.close();
});

test.serial('TcpStream.connect tries every address a host name has, in order, and rejects with the last one\'s error when none accepts', async (t) => {
  // The name has ::1 first, where nothing listens (or IPv6 is off), then 127.0.0.1, as a dual-stack
  // name does when only one family serves (Tokio's connect tries each in turn).
  const addrs = [
    { address: '::1', family: 6 },
    { address: '127.0.0.1', family: 4 },
  ];
  const l = await TcpListener.bind('127.0.0.1:0');
  const gone = await TcpListener.bind('127.0.0.1:0');
  const closedPort = gone.localAddr().port;
  gone.close();
  try {
    await withFakeLookup('two.kyoto-test.invalid', () => addrs, async () => {
      const c = await withTimeout(TcpStream.connect({ host: 'two.kyoto-test.invalid', port: l.localAddr().port }), 5000, 'connect');
      t.is(c.peerAddr().address, '127.0.0.1');
      const [s] = await withTimeout(l.accept(), 5000, 'accept');
      await c.write('ping');
      t.is(await readString(s, 4, 'server read'), 'ping');
      c.close();
      s.close();
      const e = await t.throwsAsync(withTimeout(TcpStream.connect(`two.kyoto-test.invalid:${closedPort}`), 5000, 'refused connect'), {
        code: 'ECONNREFUSED',
      });
      t.like(e, { syscall: 'connect', address: '127.0.0.1', port: closedPort });
    });
  } finally {
    l.close();
  }
});

test.serial('TcpListener.bind binds the first address of a host name that can be bound, and rejects with the last one\'s error when none can', async (t) => {
  // 192.0.2.1 (TEST-NET-1) is no address of this host: binding it fails with EADDRNOTAVAIL at once.
  let addrs = [
    { address: '192.0.2.1', family: 4 },
    { address: '127.0.0.1', family: 4 },
  ];
  await withFakeLookup('bind.kyoto-test.invalid', () => addrs, async () => {
    const l = await TcpListener.bind('bind.kyoto-test.invalid:0');
    t.is(l.localAddr().address, '127.0.0.1');
    l.close();
    addrs = [addrs[1], addrs[0]];
    const used = await TcpListener.bind('127.0.0.1:0');
    const e = await t.throwsAsync(TcpListener.bind({ host: 'bind.kyoto-test.invalid', port: used.localAddr().port }), { code: 'EADDRNOTAVAIL' });
    t.like(e, { syscall: 'listen', address: '192.0.2.1' });
    used.close();
  });
});

test.serial('a host name is looked up for every connect, so a changed address is followed', async (t) => {
  // The name first points at a listener on 127.0.0.1, then at one on 127.0.0.2 (Linux routes all
  // of 127/8 to loopback; elsewhere the second half is skipped).
  const first = await TcpListener.bind('127.0.0.1:0');
  const second = await TcpListener.bind('127.0.0.2:0').catch(() => undefined);
  let target = '127.0.0.1';
  let lookups = 0;
  const answer = (): Array<{ address: string; family: number }> => {
    lookups++;
    return [{ address: target, family: 4 }];
  };
  try {
    await withFakeLookup('service.kyoto-test.invalid', answer, async () => {
      const c1 = await TcpStream.connect({ host: 'service.kyoto-test.invalid', port: first.localAddr().port });
      t.is(c1.peerAddr().address, '127.0.0.1');
      c1.close();
      if (second !== undefined) {
        target = '127.0.0.2';
        const c2 = await TcpStream.connect({ host: 'service.kyoto-test.invalid', port: second.localAddr().port });
        t.is(c2.peerAddr().address, '127.0.0.2');
        c2.close();
      }
      t.is(lookups, second === undefined ? 1 : 2, 'one lookup per connect');
    });
  } finally {
    first.close();
    second?.close();
  }
});

test('flush() and shutdown() after a write the kernel refused reject with its error instead of confirming the bytes', async (t) => {
  for (const kind of ['tcp reset', 'unix peer closed'] as const) {
    let c: TcpStream;
    let rest: Array<{ close(): void }> = [];
    if (kind === 'tcp reset') {
      const { l, c: client, s } = await tcpPair();
      s.setLinger(0);
      s.close();
      c = client;
      rest = [l];
    } else {
      if (!UNIX_SOCKETS) continue;
      const [a, b] = UnixStream.pair();
      b.close();
      c = a;
    }
    // The reset (or close) has reached us: the read sees it (and the kernel reports EPIPE to
    // writes from then on).
    if (kind === 'tcp reset') await t.throwsAsync(withTimeout(c.read(Buffer.alloc(8)), 5000, 'the reset'), { code: 'ECONNRESET' });
    else t.is(await withTimeout(c.read(Buffer.alloc(8)), 5000, 'the end of stream'), 0);
    await c.write('payload'); // taken: the write table goes out later
    const code = 'EPIPE';
    await t.throwsAsync(c.flush(), { code, message: /^write/ }, `${kind}: flush`);
    await t.throwsAsync(c.flush(), { code }, `${kind}: flush again`);
    await t.throwsAsync(c.shutdown(), { code }, `${kind}: shutdown`);
    c.close();
    for (const x of rest) x.close();
  }
});

test("toNodeStream(): end() after a write the kernel refused ends in 'error' and 'close', not 'finish'", async (t) => {
  const { l, c, s } = await tcpPair();
  s.setLinger(0);
  s.close();
  await t.throwsAsync(withTimeout(c.read(Buffer.alloc(8)), 5000, 'the reset'), { code: 'ECONNRESET' });
  const d = c.toNodeStream();
  const events: string[] = [];
  for (const e of ['finish', 'error', 'close']) d.on(e, (x?: { code?: string }) => events.push(x?.code ? `${e}:${x.code}` : e));
  d.write('after the reset');
  d.end();
  await withTimeout(new Promise((r) => d.once('close', r)), 5000, "the Duplex's close");
  t.deepEqual(events, ['error:EPIPE', 'close']);
  l.close();
});

test('a peer reset found by a queued write also fails the reads: ECONNRESET, not a clean end of stream', async (t) => {
  const { l, c, s } = await tcpPair();
  await s.write('partial response');
  // More than the kernel takes, queued without waiting for it.
  for (let i = 0; i < 2000; i++) c.write(Buffer.alloc(8192)).catch(() => {});
  const all = c.readToEnd();
  await realDelay(50);
  s.setLinger(0);
  s.close();
  const e = await t.throwsAsync(withTimeout(all, 10_000, 'readToEnd'), { code: 'ECONNRESET' });
  t.is((e as Error & { syscall?: string }).syscall, 'read');
  for (const x of [l, c]) x.close();
});
