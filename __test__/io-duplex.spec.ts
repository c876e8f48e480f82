// duplex(): an in-memory pair "with the TCP stream methods" (API.md, kyoto/io), closing and
// shutting down like a TCP connection.
import test from 'ava';
import { DuplexStream, duplex } from '../index';
import { httpGetBody, isSettled, withTimeout } from './helpers';
import * as http from 'node:http';
import type { Duplex } from 'node:stream';

test('a duplex() end reads exactly, peeks, reads chunks, iterates and reads to the end', async (t) => {
  const [a, b] = duplex(1024);
  t.true(a instanceof DuplexStream);
  await b.write('hello ');
  await b.write('world');
  const four = Buffer.alloc(4);
  t.is(await a.peek(four), 4);
  t.is(four.toString(), 'hell');
  t.is(await a.readExact(four), 4);
  t.is(four.toString(), 'hell', 'peek left the bytes for readExact');
  t.is((await a.readChunk())!.toString(), 'o ');
  await b.write('!');
  const seen: string[] = [];
  const iterating = (async () => {
    for await (const c of a) seen.push(c.toString());
  })();
  await b.shutdown();
  await withTimeout(iterating, 5000, 'iteration ends at EOF');
  t.deepEqual(seen, ['world', '!']);
  t.is((await a.readToEnd()).length, 0);
  t.is(await a.read(Buffer.alloc(4)), 0);
  await t.throwsAsync(a.readExact(Buffer.alloc(1)), { code: 'ERR_UNEXPECTED_EOF' });
  a.close();
  b.close();
});

test('shutdown() is idempotent, the peer reads what was buffered and then EOF, and later writes are refused', async (t) => {
  const [a, b] = duplex(16);
  await a.write('abc');
  await Promise.all([a.shutdown(), a.shutdown(), a.shutdown()]);
  await t.throwsAsync(a.write('more'), { code: 'ERR_STREAM_WRITE_AFTER_END' });
  t.is((await b.readToEnd()).toString(), 'abc');
  // The other direction is still open.
  await b.write('back');
  const four = Buffer.alloc(4);
  await a.readExact(four);
  t.is(four.toString(), 'back');
  a.close();
  b.close();
});

test('close() fails its own waiting and later calls with ERR_SOCKET_CLOSED; the peer reads EOF and its writes get EPIPE', async (t) => {
  const [a, b] = duplex(4);
  const reading = a.read(Buffer.alloc(4));
  await a.write('full'); // fills a → b
  const blocked = a.write('more');
  await new Promise((r) => setTimeout(r, 10));
  t.false(await isSettled(blocked), 'no room: the write waits');
  await b.write('xy'); // buffered towards a, dropped when a closes
  t.is(await reading, 2);
  const reading2 = a.read(Buffer.alloc(4));
  a.close();
  await t.throwsAsync(blocked, { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(reading2, { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(a.read(Buffer.alloc(1)), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(a.write('x'), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(a.flush(), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(a.shutdown(), { code: 'ERR_SOCKET_CLOSED' });
  // The peer still gets what a wrote before closing, then EOF.
  t.is((await b.readToEnd()).toString(), 'full');
  const err = await t.throwsAsync(b.write('to nobody'));
  t.like(err as unknown as Record<string, unknown>, { code: 'EPIPE', syscall: 'write' });
  t.is(typeof (err as unknown as { errno: unknown }).errno, 'number');
  b.close();
});

test('a peer closing wakes a write waiting for room with EPIPE', async (t) => {
  const [a, b] = duplex(2);
  await a.write('ab');
  const blocked = a.write('cd');
  await new Promise((r) => setTimeout(r, 10));
  t.false(await isSettled(blocked));
  b.close();
  await t.throwsAsync(withTimeout(blocked, 5000, 'blocked write settles'), { code: 'EPIPE' });
  a.close();
});

test('reads and writes waiting on a duplex() end can be aborted, and the stream goes on working', async (t) => {
  const [a, b] = duplex(2);
  const reason = new Error('stop');
  const ac = new AbortController();
  const read = a.read(Buffer.alloc(4), { signal: ac.signal });
  ac.abort(reason);
  await t.throwsAsync(read, { is: reason });
  await b.write('ok');
  const two = Buffer.alloc(2);
  t.is(await a.read(two), 2);
  t.is(two.toString(), 'ok');

  await a.write('zz');
  const ac2 = new AbortController();
  const write = a.write('yy', { signal: ac2.signal });
  await new Promise((r) => setTimeout(r, 10));
  ac2.abort();
  await t.throwsAsync(write, { code: 'ABORT_ERR' });
  t.is((await b.readChunk())!.toString(), 'zz');
  await t.throwsAsync(a.read(Buffer.alloc(1), { signal: AbortSignal.abort() }), { code: 'ABORT_ERR' });
  a.close();
  b.close();
});

test('split() halves of a duplex() end: closing the write half ends the peer, closing both closes the end', async (t) => {
  const [a, b] = duplex(64);
  const [r, w] = a.split();
  await w.writeAll('via half');
  await w.flush();
  w.close();
  t.is((await b.readToEnd()).toString(), 'via half');
  await b.write('back');
  const four = Buffer.alloc(4);
  t.is(await r.readExact(four), 4);
  t.is(four.toString(), 'back');
  t.false(a.closed);
  r.close();
  t.true(a.closed);
  b.close();
});

test('a disposed duplex() end is closed', async (t) => {
  const [a, b] = duplex(8);
  await a[Symbol.asyncDispose]();
  t.true(a.closed);
  t.is(await b.read(Buffer.alloc(1)), 0);
  b.close();
});

test('reads waiting together on a duplex() end each get bytes in turn, never a false EOF', async (t) => {
  const [a, b] = duplex(64);
  const r1 = b.read(Buffer.alloc(100));
  const r2 = b.read(Buffer.alloc(100));
  await a.write('hello');
  t.is(await r1, 5);
  t.false(await isSettled(r2), 'the second read still waits: the stream has not ended');
  await a.write('world');
  t.is(await r2, 5);
  const c1 = b.readChunk();
  const c2 = b.readChunk();
  await a.write('one');
  await a.write('two');
  t.deepEqual([(await c1)?.toString(), (await c2)?.toString()], ['one', 'two']);
  // Two iterations' next() at once, and a read racing close(): data or ERR_SOCKET_CLOSED, never 0.
  const it = b[Symbol.asyncIterator]();
  const n1 = it.next();
  const n2 = it.next();
  await a.write('x');
  await a.write('y');
  t.deepEqual([(await n1).value?.toString(), (await n2).value?.toString()], ['x', 'y']);
  const racing = b.read(Buffer.alloc(4));
  await a.write('z');
  b.close();
  const got = await racing.then((n) => `read ${n}`, (e: { code?: string }) => e.code);
  t.true(got === 'read 1' || got === 'ERR_SOCKET_CLOSED', got);
  a.close();
});

test('a zero-length write on a full duplex() end resolves at once, and shutdown() after close() still resolves', async (t) => {
  const [a, b] = duplex(4);
  await a.write('abcd');
  t.is(await withTimeout(a.write(new Uint8Array(0)), 2000, 'an empty write on a full pipe'), 0);
  await a.shutdown();
  a.close();
  await t.notThrowsAsync(a.shutdown(), 'the shutdown already happened: the same outcome again');
  b.close();
});

test('closing a split read half twice does not close the stream under its open write half', async (t) => {
  const [a, b] = duplex(64);
  const [r, w] = a.split();
  r.close();
  r.close();
  t.false(a.closed);
  t.is(await w.write('still open'), 10);
  t.is((await b.readChunk())?.toString(), 'still open');
  w.close();
  t.true(a.closed, 'both halves closed: the stream is closed');
  b.close();
});

test('a duplex() write made while an earlier one waits for room goes after it, not into the room a read made', async (t) => {
  const [a, b] = duplex(4);
  const first = a.write('AAAAAAAA'); // 4 bytes in, waits for room for the rest
  await new Promise((r) => setImmediate(r));
  const two = Buffer.alloc(2);
  const read = b.read(two); // makes room for 2 bytes at once...
  const second = a.write('BB'); // ...which this later write must not take
  t.is(await read, 2);
  const rest = Buffer.alloc(8);
  await withTimeout(b.readExact(rest), 5000, 'the rest');
  t.is(two.toString() + rest.toString(), 'AAAAAAAABB');
  t.deepEqual(await Promise.all([first, second]), [8, 2]);
  a.close();
  b.close();
});

test('shutdown() of a duplex() end lets a write made before it finish, then ends the stream', async (t) => {
  const [a, b] = duplex(4);
  const write = a.write('AAAAAAAA'); // waits for room after 4 bytes
  const shutdown = a.shutdown();
  await t.throwsAsync(a.write('late'), { code: 'ERR_STREAM_WRITE_AFTER_END' });
  const all = await withTimeout(b.readToEnd(), 5000, 'readToEnd');
  t.is(all.toString(), 'AAAAAAAA');
  t.is(await write, 8);
  await t.notThrowsAsync(shutdown);
  a.close();
  b.close();
});

test('closing both split halves of a duplex() end lets a write made before finish, then closes the end', async (t) => {
  const [a, b] = duplex(4);
  const [rh, wh] = a.split();
  const write = wh.write('AAAAAAAA'); // waits for room after 4 bytes
  rh.close();
  wh.close();
  const all = await withTimeout(b.readToEnd(), 5000, 'readToEnd');
  t.is(all.toString(), 'AAAAAAAA');
  t.is(await write, 8);
  await new Promise((r) => setImmediate(r));
  t.true(a.closed);
  b.close();
});

test('closing a duplex() end destroys its toNodeStream() without an error, as closing a TCP stream does', async (t) => {
  for (const reading of [true, false]) {
    const [a, b] = duplex(64);
    const d = a.toNodeStream();
    const errors: unknown[] = [];
    d.on('error', (e) => errors.push(e));
    const closed = new Promise<void>((r) => d.once('close', () => r()));
    if (reading) {
      d.on('data', () => {});
      await b.write('hi');
      await new Promise((r) => setImmediate(r));
    }
    a.close();
    await withTimeout(closed, 5000, `'close' (reading: ${reading})`);
    t.true(d.destroyed);
    t.deepEqual(errors, [], `reading: ${reading}`);
    b.close();
  }
});

test('peek() into an empty buffer on a duplex() end with nothing buffered resolves 0 at once, as read() and a TCP peek do', async (t) => {
  const [a, b] = duplex(8);
  t.is(await withTimeout(a.peek(new Uint8Array(0)), 5000, 'an empty peek'), 0);
  await b.write('x');
  t.is(await a.peek(new Uint8Array(0)), 0);
  t.is((await a.readChunk())!.toString(), 'x');
  a.close();
  await t.throwsAsync(a.peek(new Uint8Array(0)), { code: 'ERR_SOCKET_CLOSED' });
  b.close();
});

test('return() of a duplex() iterator ends its waiting next(), and the data goes to the next read, as on a TCP stream', async (t) => {
  const [a, b] = duplex(64);
  const it = a[Symbol.asyncIterator]();
  const waiting = it.next();
  await it.return!();
  t.deepEqual(await withTimeout(waiting, 5000, 'the waiting next()'), { done: true, value: undefined });
  await b.write('data');
  const buf = Buffer.alloc(8);
  const n = await withTimeout(a.read(buf), 5000, 'the read after return()');
  t.is(buf.subarray(0, n).toString(), 'data');
  a.close();
  b.close();
});

test("a duplex() end's toNodeStream() behaves as a net.Socket for http: ends with its peer, and has the socket methods http.Agent calls", async (t) => {
  // The peer's end of stream ends this side too and the Duplex closes (net.Socket's default).
  {
    const [a, b] = duplex(64);
    const d = a.toNodeStream();
    d.resume();
    const closed = new Promise((r) => d.once('close', r));
    await b.shutdown();
    await withTimeout(closed, 5000, "the Duplex's close after the peer's end");
    t.is((await withTimeout(b.readToEnd(), 5000, 'end of stream from the Duplex')).length, 0);
  }
  // A keep-alive http.Agent calls setKeepAlive(), unref(), setTimeout() on an idle socket and ref()
  // on reuse: over an in-memory pair all exist and return the Duplex.
  const server = http.createServer((_req, res) => res.end('hi'));
  const agent = new http.Agent({ keepAlive: true });
  const made: Duplex[] = [];
  (agent as unknown as { createConnection: () => Duplex }).createConnection = () => {
    const [a, b] = duplex(4096);
    server.emit('connection', b.toNodeStream());
    const d = a.toNodeStream();
    made.push(d);
    return d;
  };
  const get = (): Promise<string> => httpGetBody(agent, 'in-memory');
  t.is(await withTimeout(get(), 5000, 'the first request'), 'hi');
  t.is(await withTimeout(get(), 5000, 'the second request'), 'hi');
  t.is(made.length, 1, 'the second request reused the idle connection');
  t.is((made[0] as unknown as { unref(): Duplex }).unref(), made[0]);
  t.is((made[0] as unknown as { ref(): Duplex }).ref(), made[0]);
  agent.destroy();
  server.close();
});

test("a duplex() end's toNodeStream() emits 'timeout' after setTimeout(ms) without reads or writes, as a net.Socket", async (t) => {
  const [a, b] = duplex(64);
  const d = a.toNodeStream();
  d.resume();
  const timedOut = new Promise<void>((r) => (d as unknown as { setTimeout(ms: number, cb: () => void): void }).setTimeout(30, r));
  await b.write(Buffer.from('x')); // activity first; the timer then restarts
  await withTimeout(timedOut, 5000, "'timeout'");
  t.false(d.destroyed, "'timeout' only tells; it does not close");
  d.destroy();
});
